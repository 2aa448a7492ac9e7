/**
 * journald-friendly log lines. When stderr is the journal — systemd sets
 * JOURNAL_STREAM to the device and inode of the stream it connected, and the
 * check compares them with stderr's own, as sd_journal_stream_fd(3) advises, so a
 * child whose stderr was redirected elsewhere does not inherit the prefix — each
 * line starts with its syslog priority (`<6>` info, `<4>` warning, `<3>` error),
 * which journald strips and records as PRIORITY (SyslogLevelPrefix=yes, the
 * default): `journalctl -p warning -u portanoia` then shows what needs attention.
 * Events on stdout stay JSON lines. Pure apart from the fstat of fd 2.
 */
import { fstatSync } from 'node:fs'

export type LogLevel = 'info' | 'warn' | 'error'

const PRIORITY: Record<LogLevel, string> = { info: '<6>', warn: '<4>', error: '<3>' }

/** Whether `fd` (default stderr) is the stream systemd connected to the journal. */
export function isJournalStream(env: NodeJS.ProcessEnv = process.env, fd = 2): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '')
  if (m === null) return false
  try {
    const st = fstatSync(fd, { bigint: true })
    return st.dev === BigInt(m[1] as string) && st.ino === BigInt(m[2] as string)
  } catch {
    return false
  }
}

/** Text with each line prefixed by its priority when `journal`, unchanged otherwise. */
export function forJournal(text: string, level: LogLevel, journal: boolean): string {
  if (!journal) return text
  const end = text.endsWith('\n') ? '\n' : ''
  const body = end === '' ? text : text.slice(0, -1)
  return `${body
    .split('\n')
    .map((l) => `${PRIORITY[level]}${l}`)
    .join('\n')}${end}`
}
