/**
 * contrib/portanoia.service as systemd reads it: `systemd-analyze verify` accepts it
 * with nothing to say (a misspelt directive is only a warning there, so silence is
 * the bar, and a misspelt copy proves the check can fail), `systemd-analyze
 * security --offline` rates its exposure at most 3.0 ("OK"), and the directives the
 * design relies on are there: the unprivileged user, exactly the ambient and
 * bounding capabilities, the hardening, the runtime directory for the control
 * socket, reload by SIGHUP. No root needed; skipped loudly without systemd-analyze
 * (.ci/run installs the systemd package).
 */
import { execFile, execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const UNIT = join(import.meta.dirname, '../../contrib/portanoia.service')

const HAVE_ANALYZE = ((): boolean => {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()
if (!HAVE_ANALYZE) console.warn('\n*** SKIPPED: test/unit/systemd-unit.test.ts needs systemd-analyze (apt-get install systemd). ***\n')

function analyze(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('systemd-analyze', args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

/** `Key=value` lines of the unit, by key (a key may repeat). */
async function directives(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>()
  for (const line of (await readFile(UNIT, 'utf8')).split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (m === null) continue
    out.set(m[1] as string, [...(out.get(m[1] as string) ?? []), m[2] as string])
  }
  return out
}

describe.skipIf(!HAVE_ANALYZE)('contrib/portanoia.service', () => {
  it('systemd-analyze verify accepts it without a word, and flags a misspelt copy', async () => {
    const r = await analyze(['verify', UNIT])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const dir = await mkdtemp(join(tmpdir(), 'pnunit-'))
    try {
      const bad = join(dir, 'portanoia.service')
      await writeFile(bad, (await readFile(UNIT, 'utf8')).replace('ProtectSystem=strict', 'ProtectSytem=strict'))
      const b = await analyze(['verify', bad])
      expect(b.stderr).toMatch(/Unknown key 'ProtectSytem'/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it('is rated OK (exposure ≤ 3.0) by systemd-analyze security', async () => {
    const r = await analyze(['security', '--offline=true', UNIT])
    const m = /Overall exposure level for portanoia\.service: (\d+\.\d+)/.exec(r.stdout)
    expect(m, r.stdout + r.stderr).not.toBeNull()
    expect(Number(m![1])).toBeLessThanOrEqual(3.0)
  }, 60_000)

  it('runs as portanoia with exactly the capabilities it needs, hardened, reloading on SIGHUP', async () => {
    const d = await directives()
    const one = (k: string): string | undefined => d.get(k)?.[0]
    expect(one('User')).toBe('portanoia')
    expect(one('AmbientCapabilities')?.split(' ').sort()).toEqual(['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'])
    expect(one('CapabilityBoundingSet')?.split(' ').sort()).toEqual(['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'])
    for (const [k, v] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['RuntimeDirectory', 'portanoia'],
      ['RuntimeDirectoryMode', '0700'],
      // The state file's directory (lib/daemon/state-file.ts's STATE_DIR), writable under ProtectSystem=strict.
      ['StateDirectory', 'portanoia'],
      ['StateDirectoryMode', '0700'],
      ['ExecReload', '/bin/kill -HUP $MAINPID'],
    ]) {
      expect(one(k as string), k).toBe(v)
    }
    expect(one('RestrictAddressFamilies')?.split(' ')).toEqual(expect.arrayContaining(['AF_UNIX', 'AF_NETLINK', 'AF_PACKET', 'AF_INET', 'AF_INET6']))
    expect(one('ExecStart')).toMatch(/portanoia watch$/)
  })
})
