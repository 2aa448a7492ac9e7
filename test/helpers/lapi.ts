/**
 * A private CrowdSec Local API for the privileged fleet tests (Debian's crowdsec
 * 1.4.6; the facts it relies on are in docs/architecture.md, "Testing against
 * CrowdSec's Local API"): a temporary config directory with its own SQLite
 * database, an `operator` machine whose credentials cscli uses, and start/stop of `crowdsec -no-cs` (API only) wherever the caller spawns it —
 * in a test namespace, listening on that namespace's test-network address. Machines
 * and bouncers are registered with cscli writing the database directly, so LAPI
 * need not run for that. LAPI is ended by its PID; cleanup() removes the directory.
 */
import { type ChildProcess, execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { stopChild } from '../../lib/lab/netns.js'
import { hasCommand } from './tools.js'

const execFileP = promisify(execFile)

/** crowdsec, cscli and nft are installed (CI: .ci/run installs crowdsec offline). */
export const HAVE_CROWDSEC = hasCommand('crowdsec') && hasCommand('cscli') && hasCommand('nft')

export interface LapiOptions {
  /** Address LAPI listens on (a test-network address of the namespace it runs in). */
  host: string
  port: number
  /** Starts argv where LAPI should run (e.g. a namespace's spawn()). */
  spawn: (cmd: string, args: readonly string[]) => ChildProcess
  /** True when `url` + '/health' answers 200 from where the hosts are. */
  probe: (healthUrl: string) => Promise<boolean>
}

export interface Lapi {
  dir: string
  /** The config file: `cscli -c CONFIG ...` (decisions add/delete need LAPI reachable from where cscli runs). */
  config: string
  /** `http://HOST:PORT`. */
  url: string
  /** Registers a watcher machine; returns the password file (mode 0600). */
  addMachine(name: string, password?: string): Promise<string>
  /** Registers a bouncer with `key` (random by default); returns the key file (mode 0600). */
  addBouncer(name: string, key?: string): Promise<string>
  /** Starts LAPI and waits until /health answers (60 s at most: a loaded machine starts it slowly). */
  start(): Promise<void>
  /** Ends LAPI by PID. */
  stop(): Promise<void>
  /** stop() and remove the directory. */
  cleanup(): Promise<void>
}

/** Prepares the directory, the config and the operator machine; LAPI is not started yet. */
export async function createLapi(options: LapiOptions): Promise<Lapi> {
  const dir = await mkdtemp(join(tmpdir(), 'portanoia-lapi-'))
  const config = join(dir, 'config.yaml')
  const listen = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`
  for (const d of ['log', 'data']) await mkdir(join(dir, d))
  await writeFile(join(dir, 'creds.yaml'), '')
  await copyFile('/etc/crowdsec/profiles.yaml', join(dir, 'profiles.yaml'))
  await writeFile(
    config,
    [
      `common: {daemonize: false, log_media: file, log_level: info, log_dir: ${dir}/log/}`,
      `config_paths: {config_dir: ${dir}/, data_dir: ${dir}/data/, hub_dir: /usr/share/crowdsec/hub/, index_path: /usr/share/crowdsec/hub/.index.json}`,
      `db_config: {type: sqlite, db_path: ${dir}/data/crowdsec.db, use_wal: true}`,
      'api:',
      `  client: {credentials_path: ${dir}/creds.yaml}`,
      `  server: {listen_uri: "${listen}", profiles_path: ${dir}/profiles.yaml}`,
      'prometheus: {enabled: false}',
      '',
    ].join('\n'),
  )
  const cscli = async (args: string[]): Promise<void> => {
    await execFileP('cscli', ['-c', config, ...args], { timeout: 30_000 })
  }
  // cscli itself talks to LAPI as machine `operator` (creds.yaml).
  await cscli(['machines', 'add', 'operator', '--password', randomBytes(16).toString('hex'), '-f', join(dir, 'creds.yaml'), '--force'])

  let lapi: ChildProcess | null = null
  const stop = async (): Promise<void> => {
    if (lapi !== null) await stopChild(lapi)
    lapi = null
  }
  return {
    dir,
    config,
    url: `http://${listen}`,
    async addMachine(name, password = randomBytes(16).toString('hex')) {
      await cscli(['machines', 'add', name, '--password', password, '-f', join(dir, `${name}.creds.yaml`), '--force'])
      const file = join(dir, `${name}.password`)
      await writeFile(file, `${password}\n`)
      await chmod(file, 0o600)
      return file
    },
    async addBouncer(name, key = randomBytes(16).toString('hex')) {
      await cscli(['bouncers', 'add', name, '-k', key])
      const file = join(dir, `${name}.key`)
      await writeFile(file, `${key}\n`)
      await chmod(file, 0o600)
      return file
    },
    async start() {
      const child = options.spawn('crowdsec', ['-c', config, '-no-cs'])
      lapi = child
      child.stdout?.resume()
      child.stderr?.resume()
      const t0 = Date.now()
      for (;;) {
        if (await options.probe(`http://${listen}/health`)) return
        if (child.exitCode !== null) throw new Error(`crowdsec exited with ${child.exitCode}; see ${dir}/log`)
        if (Date.now() - t0 > 60_000) throw new Error('LAPI did not come up within 60 s')
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    stop,
    async cleanup() {
      await stop().catch(() => {})
      // LAPI may still be flushing its log and WAL as it exits: retry a directory that refills.
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 })
    },
  }
}

/** A probe for createLapi: GET /health with node from inside a namespace (its exec()). */
export function probeFrom(
  exec: (cmd: string, args: readonly string[], o?: { timeoutMs?: number }) => Promise<{ code: number }>,
): (url: string) => Promise<boolean> {
  return async (url: string): Promise<boolean> => {
    const script = `fetch(${JSON.stringify(url)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`
    return (await exec(process.execPath, ['-e', script], { timeoutMs: 5000 })).code === 0
  }
}
