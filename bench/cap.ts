/**
 * Gets the npm `cap` package (libpcap for Node) ready for the throughput and
 * host-traffic sections without making it a dependency of portanoia: it is installed
 * with `npm install --prefix <scratch>` into a scratch folder under the OS temp
 * directory, which is kept between runs (a rebuild costs ~10 s that a quick run can
 * not spare) and can be deleted at any time. cap compiles against libpcap's headers;
 * when they are missing and we are root on a Debian-like system, libpcap-dev is
 * installed with apt-get. Never throws: an unavailable receiver is a reason string.
 */
import { execFile } from 'node:child_process'
import { access, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Where cap lives; kept between runs. */
export const CAP_DIR = join(tmpdir(), 'pnperf-cap')

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false)

export type CapStatus = { ok: true; dir: string; note: string } | { ok: false; reason: string }

export async function prepareCap(log: (line: string) => void): Promise<CapStatus> {
  const built = join(CAP_DIR, 'node_modules', 'cap', 'build', 'Release', 'cap.node')
  if (await exists(built)) return { ok: true, dir: CAP_DIR, note: `cap reused from ${CAP_DIR}` }
  const notes: string[] = []
  try {
    if (!(await exists('/usr/include/pcap.h')) && !(await exists('/usr/include/pcap/pcap.h'))) {
      if (process.getuid?.() !== 0) return { ok: false, reason: 'libpcap headers missing (install libpcap-dev) and not root to install them' }
      log('cap: libpcap-dev missing, installing it with apt-get…')
      await run('apt-get', ['install', '-y', 'libpcap-dev'], { timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
      notes.push('libpcap-dev installed with apt-get')
    }
    await mkdir(CAP_DIR, { recursive: true })
    log(`cap: npm install --prefix ${CAP_DIR} cap…`)
    await run('npm', ['install', '--prefix', CAP_DIR, '--no-save', '--no-audit', '--no-fund', 'cap'], { timeout: 300_000 })
    if (!(await exists(built))) {
      // Some npm versions skip install scripts unless allowed: build it ourselves.
      await run('npx', ['--yes', 'node-gyp', 'rebuild'], { cwd: join(CAP_DIR, 'node_modules', 'cap'), timeout: 300_000 })
    }
    if (!(await exists(built))) return { ok: false, reason: `npm install cap finished but ${built} was not built` }
    notes.push(`cap installed into ${CAP_DIR}`)
    return { ok: true, dir: CAP_DIR, note: notes.join('; ') }
  } catch (err) {
    const e = err as Error & { stderr?: string }
    const detail = (e.stderr ?? '').trim().split('\n').slice(-3).join(' | ')
    return { ok: false, reason: `cannot install the npm cap package: ${e.message.split('\n')[0]!}${detail !== '' ? ` (${detail})` : ''}` }
  }
}
