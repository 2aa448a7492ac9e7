/**
 * The fleet link against a real CrowdSec Local API (Debian's crowdsec 1.4.6):
 * LAPI runs with a temporary config in the sensor-side namespace of a two-peer
 * test network, listening on 198.18.0.1:8090; hosts A and B are the peer
 * namespaces, each running test/helpers/fleet-host.ts (the fleet wiring with the
 * real nftables responder) and reaching LAPI over their veth. A pushes a local
 * block, B applies it from the stream within 5 s and lifts it when the decision
 * is deleted; a fleet ban on B's gateway is refused on B and applied on A; with
 * LAPI killed, A's pushes queue (bounded) without slowing the caller and go out
 * when LAPI is back. LAPI and the hosts are ended by PID; namespaces always go.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestNet, IS_ROOT, stop, type TestNet } from '../helpers/netns.js'

const execFileP = promisify(execFile)

function has(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const HAVE_CROWDSEC = has('crowdsec') && has('cscli') && has('nft')
if (!IS_ROOT) console.warn('\n*** SKIPPED: test/privileged/crowdsec.test.ts needs root (namespaces, nftables). ***\n')
else if (!HAVE_CROWDSEC) {
  console.warn(
    '\n*** SKIPPED: test/privileged/crowdsec.test.ts needs crowdsec + cscli (apt-get install crowdsec; see .ci/run) and nft. ***\n',
  )
}

const LAPI_ADDR = '198.18.0.1'
const LAPI_PORT = 8090
const ATTACKER = '198.18.77.7'
const ROOT = process.cwd()

interface Line {
  type: string
  [k: string]: unknown
}

/** A fleet-host child: its JSON lines, and commands with replies. */
class HostProc {
  readonly lines: Line[] = []
  readonly child: ChildProcess
  #seq = 0

  constructor(child: ChildProcess) {
    this.child = child
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        this.lines.push(JSON.parse(l) as Line)
      } catch {
        this.lines.push({ type: 'text', text: l })
      }
    })
    child.stderr?.on('data', (b: Buffer) => process.stderr.write(`[fleet-host] ${b.toString()}`))
  }

  async waitFor(pred: (l: Line) => boolean, timeoutMs: number, what: string): Promise<Line> {
    const t0 = Date.now()
    for (;;) {
      const hit = this.lines.find(pred)
      if (hit !== undefined) return hit
      const fatal = this.lines.find((l) => l.type === 'fatal')
      if (fatal !== undefined) throw new Error(`fleet host died: ${String(fatal.message)}`)
      if (this.child.exitCode !== null) throw new Error(`fleet host exited with ${this.child.exitCode} while waiting for ${what}`)
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; lines: ${JSON.stringify(this.lines.slice(-10))}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  async cmd(c: Record<string, unknown>, timeoutMs = 15_000): Promise<Line> {
    const id = ++this.#seq
    this.child.stdin!.write(`${JSON.stringify({ ...c, id })}\n`)
    return await this.waitFor((l) => l.type === 'reply' && l.id === id, timeoutMs, `reply to ${String(c.op)}`)
  }

  async stats(): Promise<Record<string, Record<string, number>>> {
    return (await this.cmd({ op: 'stats' })).stats as Record<string, Record<string, number>>
  }

  async blocks(): Promise<string[]> {
    return (await this.cmd({ op: 'list' })).blocks as string[]
  }
}

describe.skipIf(!IS_ROOT || !HAVE_CROWDSEC)('fleet through a real CrowdSec LAPI', () => {
  let net: TestNet | null = null
  let dir = ''
  let build = ''
  let lapi: ChildProcess | null = null
  const hosts: HostProc[] = []
  const password = randomBytes(16).toString('hex')
  const keyA = randomBytes(16).toString('hex')
  const keyB = randomBytes(16).toString('hex')

  async function startLapi(): Promise<void> {
    lapi = net!.sensorSpawn('crowdsec', ['-c', join(dir, 'config.yaml'), '-no-cs'])
    lapi.stdout?.resume()
    lapi.stderr?.resume()
    // Ready when /health answers from host A's side of the veth.
    const probe = `fetch('http://${LAPI_ADDR}:${LAPI_PORT}/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`
    const t0 = Date.now()
    for (;;) {
      const r = await net!.links[0]!.peer.exec(process.execPath, ['-e', probe], { timeoutMs: 5000 })
      if (r.code === 0) return
      if (lapi.exitCode !== null) throw new Error(`crowdsec exited with ${lapi.exitCode}; see ${dir}/log`)
      if (Date.now() - t0 > 15_000) throw new Error('LAPI did not come up within 15 s')
      await new Promise((res) => setTimeout(res, 100))
    }
  }

  async function stopLapi(): Promise<void> {
    if (lapi !== null) await stop(lapi)
    lapi = null
  }

  function startHost(ns: string, name: string, key: string, guards: Record<string, string[]>, extra: Record<string, unknown> = {}): HostProc {
    const cfg = {
      crowdsec: {
        url: `http://${LAPI_ADDR}:${LAPI_PORT}`,
        machine: name,
        passwordFile: join(dir, `${name}.password`),
        bouncerKeyFile: join(dir, `${name}.key`),
        pushIntervalMs: 200,
        pullIntervalMs: 500,
        timeoutMs: 2000,
        ...extra,
      },
      guards,
    }
    void key
    const child = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, join(build, 'test/helpers/fleet-host.js'), JSON.stringify(cfg)],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    )
    const h = new HostProc(child)
    hosts.push(h)
    return h
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portanoia-lapi-'))
    // The fleet host runs in a plain node inside a namespace: compile just its
    // import graph under node_modules/.cache (inside the repo, so packages resolve;
    // not build/, which a concurrent node-gyp rebuild wipes).
    build = join(ROOT, 'node_modules', '.cache', `portanoia-fleet-it-${process.pid}`)
    await execFileP(
      process.execPath,
      [
        join(ROOT, 'node_modules/typescript/bin/tsc'),
        '--outDir', build, '--rootDir', ROOT, '--module', 'nodenext', '--moduleResolution', 'nodenext',
        '--target', 'es2022', '--strict', '--skipLibCheck', '--types', 'node', '--declaration', 'false', '--sourceMap', 'false',
        join(ROOT, 'test/helpers/fleet-host.ts'),
      ],
      { cwd: ROOT, timeout: 120_000 },
    ).catch((e: { stdout?: string }) => {
      // Type errors elsewhere do not stop tsc from emitting; a missing output does.
      if (!existsSync(join(build, 'test/helpers/fleet-host.js'))) throw new Error(`tsc failed: ${e.stdout ?? String(e)}`)
    })

    for (const d of ['log', 'data']) await mkdir(join(dir, d))
    await writeFile(join(dir, 'creds.yaml'), '')
    await copyFile('/etc/crowdsec/profiles.yaml', join(dir, 'profiles.yaml'))
    await writeFile(
      join(dir, 'config.yaml'),
      [
        `common: {daemonize: false, log_media: file, log_level: info, log_dir: ${dir}/log/}`,
        `config_paths: {config_dir: ${dir}/, data_dir: ${dir}/data/, hub_dir: /usr/share/crowdsec/hub/, index_path: /usr/share/crowdsec/hub/.index.json}`,
        `db_config: {type: sqlite, db_path: ${dir}/data/crowdsec.db, use_wal: true}`,
        'api:',
        `  client: {credentials_path: ${dir}/creds.yaml}`,
        `  server: {listen_uri: "${LAPI_ADDR}:${LAPI_PORT}", profiles_path: ${dir}/profiles.yaml}`,
        'prometheus: {enabled: false}',
        '',
      ].join('\n'),
    )
    const cscli = async (args: string[]): Promise<void> => {
      await execFileP('cscli', ['-c', join(dir, 'config.yaml'), ...args], { timeout: 30_000 })
    }
    // cscli itself talks to LAPI as machine `operator` (creds.yaml).
    await cscli(['machines', 'add', 'operator', '--password', password, '-f', join(dir, 'creds.yaml'), '--force'])
    for (const [name, key] of [['host-a', keyA], ['host-b', keyB]] as const) {
      await cscli(['machines', 'add', name, '--password', password, '-f', join(dir, `${name}.creds.yaml`), '--force'])
      await cscli(['bouncers', 'add', `${name}-bouncer`, '-k', key])
      await writeFile(join(dir, `${name}.password`), `${password}\n`)
      await writeFile(join(dir, `${name}.key`), `${key}\n`)
      await chmod(join(dir, `${name}.password`), 0o600)
      await chmod(join(dir, `${name}.key`), 0o600)
    }

    net = await createTestNet({ peers: 2 })
    // Host B (peer 1) reaches LAPI's address on the other link through the LAPI namespace.
    const b = net.links[1]!.peer
    const r = await b.exec('ip', ['route', 'add', `${LAPI_ADDR}/32`, 'via', net.links[1]!.sensor.ipv4])
    if (r.code !== 0) throw new Error(`route: ${r.stderr}`)
    await startLapi()
  })

  afterAll(async () => {
    for (const h of hosts) await stop(h.child).catch(() => {})
    await stopLapi().catch(() => {})
    await net?.destroy()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
    if (build !== '') await rm(build, { recursive: true, force: true })
  })

  it('shares blocks, honours deletions and guards, and rides out a LAPI outage', async () => {
    const netw = net!
    const A = startHost(netw.links[0]!.peer.ns, 'host-a', keyA, { gateways: [LAPI_ADDR] }, { queueLimit: 20 })
    // B's gateway is the LAPI namespace's address on B's link.
    const B = startHost(netw.links[1]!.peer.ns, 'host-b', keyB, { gateways: [netw.links[1]!.sensor.ipv4] })
    await A.waitFor((l) => l.type === 'ready', 30_000, 'A ready')
    await B.waitFor((l) => l.type === 'ready', 30_000, 'B ready')

    // --- A blocks an attacker locally; B applies it from the fleet within 5 s.
    const t0 = Date.now()
    expect((await A.cmd({ op: 'block', src: ATTACKER })).ok).toBe(true)
        const applied = await B.waitFor(
      (l) => l.type === 'decision' && l.src === ATTACKER && l.action === 'block',
      5000,
      'B applying the fleet ban',
    )
    const latency = Date.now() - t0
    console.log(`fleet ban A → LAPI → B in ${latency} ms`)
    expect(applied).toMatchObject({ source: 'fleet', reason: 'fleet', origin: 'portanoia', scenario: 'portanoia/verified-connect' })
    expect(applied.ttlMs as number).toBeGreaterThan(3_590_000)
    expect(await B.blocks()).toContain(ATTACKER)
    // A receives its own decision back and leaves its local block alone.
    await A.waitFor((l) => l.type === 'fleet' && l.op === 'skipped' && l.why === 'own' && l.src === ATTACKER, 5000, 'A skipping its own decision')

    // --- The decision is deleted in LAPI: B lifts it; A's local block stays.
    const del = await A.cmd({ op: 'delete', src: ATTACKER })
    expect(del.deleted).toBeGreaterThanOrEqual(1)
    await B.waitFor((l) => l.type === 'fleet' && l.op === 'unblocked' && l.src === ATTACKER, 5000, 'B lifting the ban')
    expect(await B.blocks()).not.toContain(ATTACKER)
    expect(await A.blocks()).toContain(ATTACKER)

    // --- A fleet ban on B's gateway: refused on B (guard), applied on A.
    const gwB = netw.links[1]!.sensor.ipv4
    await netw.sensorExec('cscli', ['-c', join(dir, 'config.yaml'), 'decisions', 'add', '--ip', gwB, '--duration', '1h', '--reason', 'test'])
      .then((r) => expect(r.code, r.stderr).toBe(0))
    const refused = await B.waitFor((l) => l.type === 'decision' && l.src === gwB, 5000, 'B refusing the guarded ban')
    expect(refused).toMatchObject({ action: 'none', reason: 'guard:gateway', source: 'fleet', origin: 'cscli' })
    await A.waitFor((l) => l.type === 'decision' && l.src === gwB && l.action === 'block', 5000, 'A applying it')
    expect(await A.blocks()).toContain(gwB)
    expect(await B.blocks()).not.toContain(gwB)

    // --- LAPI dies: A keeps blocking locally, offers stay instant, the queue stays bounded.
    await stopLapi()
    const slowest: number[] = []
    for (let i = 0; i < 30; i++) {
      const r = await A.cmd({ op: 'block', src: `198.18.78.${i}` })
      expect(r.ok).toBe(true)
      slowest.push(r.offerUs as number)
    }
    expect(Math.max(...slowest)).toBeLessThan(20_000)
    await A.waitFor((l) => l.type === 'fleet' && l.op === 'push-failed', 10_000, 'A reporting the push failure')
    const down = (await A.stats())['fleet-push']!
    expect(down.queued).toBeLessThanOrEqual(20)
    expect(down.drops).toBe(10)
    expect(down.pushFailures).toBeGreaterThan(0)
    expect((await A.blocks()).filter((a) => a.startsWith('198.18.78.'))).toHaveLength(30)
    await B.waitFor((l) => l.type === 'fleet' && l.op === 'pull-failed', 10_000, 'B reporting the pull failure')

    // --- LAPI is back: A's queue drains, B applies what A kept.
    await startLapi()
    await A.waitFor((l) => l.type === 'fleet' && l.op === 'push-recovered', 40_000, 'A pushing again')
    await expect.poll(async () => (await A.stats())['fleet-push']!.queued, { timeout: 10_000 }).toBe(0)
    const after = (await A.stats())['fleet-push']!
    expect(after.pushes).toBe(1 + 20)
    await B.waitFor((l) => l.type === 'fleet' && l.op === 'pull-recovered', 30_000, 'B pulling again')
    await expect
      .poll(async () => (await B.blocks()).filter((a) => a.startsWith('198.18.78.')).length, { timeout: 10_000 })
      .toBe(20)
  })
})
