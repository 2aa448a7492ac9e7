/**
 * journald-friendly output: log lines get syslog priority prefixes only when
 * stderr is the very stream systemd connected to the journal (JOURNAL_STREAM's
 * device:inode equals stderr's), and the built CLI uses them (`<3>` for the error
 * that ends it). No root; the "journal" is a temporary file whose device and inode
 * the test puts in JOURNAL_STREAM, as systemd would for its socket.
 */
import { spawn } from 'node:child_process'
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { forJournal, isJournalStream } from '../../lib/cli/journal.js'

const CLI = join(import.meta.dirname, '../../dist/lib/cli/main.js')
const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function journalFile(): Promise<{ path: string; fd: number; stream: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'pnjournal-'))
  dirs.push(dir)
  const path = join(dir, 'journal')
  const fd = openSync(path, 'w')
  const st = fstatSync(fd)
  return { path, fd, stream: `${st.dev}:${st.ino}` }
}

describe('journald priorities', () => {
  it('are used only when JOURNAL_STREAM names the stream itself', async () => {
    const j = await journalFile()
    try {
      expect(isJournalStream({ JOURNAL_STREAM: j.stream }, j.fd)).toBe(true)
      expect(isJournalStream({}, j.fd)).toBe(false)
      // Another file: a child whose stderr was redirected away from the journal.
      const other = await journalFile()
      expect(isJournalStream({ JOURNAL_STREAM: j.stream }, other.fd)).toBe(false)
      closeSync(other.fd)
      expect(isJournalStream({ JOURNAL_STREAM: 'garbage' }, j.fd)).toBe(false)
    } finally {
      closeSync(j.fd)
    }
  })

  it('prefix every line with its priority, and nothing otherwise', () => {
    expect(forJournal('portanoia: watching\n', 'info', true)).toBe('<6>portanoia: watching\n')
    expect(forJournal('portanoia: x\n  hint: y\n', 'error', true)).toBe('<3>portanoia: x\n<3>  hint: y\n')
    expect(forJournal('portanoia: slow', 'warn', true)).toBe('<4>portanoia: slow')
    expect(forJournal('portanoia: x\n', 'error', false)).toBe('portanoia: x\n')
  })

  it('the built CLI writes its error with <3> to the journal stream, and plainly elsewhere', async () => {
    const run = async (env: Record<string, string>): Promise<string> => {
      const j = await journalFile()
      const child = spawn(process.execPath, [CLI, 'watch', '--tcp', '2222', '--block-ttl', '5x'], {
        stdio: ['ignore', 'ignore', j.fd],
        env: { ...process.env, ...env, ...(env.JOURNAL_STREAM === 'SELF' && { JOURNAL_STREAM: j.stream }) },
      })
      const code = await new Promise<number | null>((r) => child.once('exit', r))
      closeSync(j.fd)
      expect(code).toBe(2)
      return readFileSync(j.path, 'utf8')
    }
    expect(await run({ JOURNAL_STREAM: 'SELF' })).toBe('<3>portanoia: --block-ttl: "5x" is not a duration\n<3>  hint: write a number and a unit: 500ms, 90s, 5m, 1h, 2d (or combined: 1h30m)\n')
    expect(await run({ JOURNAL_STREAM: '' })).toBe('portanoia: --block-ttl: "5x" is not a duration\n  hint: write a number and a unit: 500ms, 90s, 5m, 1h, 2d (or combined: 1h30m)\n')
  })
})
