/**
 * Gets the npm `cap` package (libpcap for Node) ready for the throughput and
 * host-traffic sections without making it a dependency of portanoia: it is installed
 * with `npm install --prefix CAP_DIR`, a folder under the package's
 * node_modules/.cache (on the addon's file system, so cap.node loads even where /tmp
 * is noexec), kept between runs (a rebuild costs ~10 s that a quick run cannot spare)
 * and removable at any time. cap compiles against libpcap's headers; when they are
 * missing and we are root on a Debian-like system, libpcap-dev is installed with
 * apt-get. Installing happens only when the caller allows it (`npm run bench` does,
 * `--no-install` and the test suite's smoke run do not; .ci/run prepares cap with
 * `node dist/bench/cap.js`). Never throws: an unavailable receiver is a reason string.
 */
import { execFile } from 'node:child_process'
import { access, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { PACKAGE_ROOT } from '../lib/binding.js'

const run = promisify(execFile)

/** Where cap lives; kept between runs. */
export const CAP_DIR = join(PACKAGE_ROOT, 'node_modules', '.cache', 'pnperf-cap')
const BUILT = join(CAP_DIR, 'node_modules', 'cap', 'build', 'Release', 'cap.node')

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false)

export type CapStatus = { ok: true; dir: string; note: string } | { ok: false; reason: string }

/** Whether cap is built in CAP_DIR (nothing is installed to find out). */
export function capReady(): Promise<boolean> {
  return exists(BUILT)
}

export async function prepareCap(log: (line: string) => void, install = true): Promise<CapStatus> {
  if (await exists(BUILT)) return { ok: true, dir: CAP_DIR, note: `cap reused from ${CAP_DIR}` }
  if (!install) return { ok: false, reason: `cap is not installed in ${CAP_DIR} (\`node dist/bench/cap.js\` installs it, as .ci/run does)` }
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
    if (!(await exists(BUILT))) {
      // Some npm versions skip install scripts unless allowed: build it ourselves.
      await run('npx', ['--yes', 'node-gyp', 'rebuild'], { cwd: join(CAP_DIR, 'node_modules', 'cap'), timeout: 300_000 })
    }
    if (!(await exists(BUILT))) return { ok: false, reason: `npm install cap finished but ${BUILT} was not built` }
    notes.push(`cap installed into ${CAP_DIR}`)
    return { ok: true, dir: CAP_DIR, note: notes.join('; ') }
  } catch (err) {
    const e = err as Error & { stderr?: string }
    const detail = (e.stderr ?? '').trim().split('\n').slice(-3).join(' | ')
    return { ok: false, reason: `cannot install the npm cap package: ${e.message.split('\n')[0]!}${detail !== '' ? ` (${detail})` : ''}` }
  }
}

// `node dist/bench/cap.js`: install cap now (CI does this before `npm test`); exit 1 when it cannot be.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const status = await prepareCap((line) => console.error(line))
  console.log(status.ok ? status.note : status.reason)
  if (!status.ok) process.exitCode = 1
}
