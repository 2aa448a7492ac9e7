/**
 * The fleet link against a real CrowdSec Local API (Debian's crowdsec 1.4.6):
 * LAPI runs with a temporary config in the sensor-side namespace of a two-peer
 * test network, listening on 198.18.0.1:8090; hosts A and B are the peer
 * namespaces, each running test/helpers/fleet-host.ts (the fleet wiring with the
 * real nftables responder) and reaching LAPI over their veth. A pushes a local
 * block, B applies it from the stream and lifts it when the decision is deleted;
 * a fleet ban on B's gateway is refused on B and applied on A; with LAPI killed, A
 * keeps blocking and its pushes queue (bounded) and go out when LAPI is back. How
 * fast any of it happens is printed, not asserted. LAPI and the hosts are ended
 * by PID; namespaces always go. LAPI itself is set up by test/helpers/lapi.ts
 * (shared with fleet-watch.test.ts).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PACKAGE_ROOT } from '../../lib/binding.js'
import { expectTimeLeft } from '../helpers/expiry.js'
import { createLapi, HAVE_CROWDSEC, type Lapi, probeFrom } from '../helpers/lapi.js'
import { createTestNet, IS_ROOT, stop, type TestNet } from '../helpers/netns.js'

const execFileP = promisify(execFile)
if (!IS_ROOT) console.warn('\n*** SKIPPED: test/privileged/crowdsec.test.ts needs root (namespaces, nftables). ***\n')
else if (!HAVE_CROWDSEC) {
  console.warn(
    '\n*** SKIPPED: test/privileged/crowdsec.test.ts needs crowdsec + cscli (apt-get install crowdsec; see .ci/run) and nft. ***\n',
  )
}

const LAPI_ADDR = '198.18.0.1'
const LAPI_PORT = 8090
const ATTACKER = '198.18.77.7'
/** The repository, wherever vitest was started from. */
const ROOT = PACKAGE_ROOT
/** How long to wait for a fleet effect before calling it missing: generous, not a latency claim. */
const WAIT_MS = 30_000

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
  let lapiServer: Lapi | null = null
  let build = ''
  const hosts: HostProc[] = []
  const files: Record<string, { passwordFile: string; bouncerKeyFile: string }> = {}

  // Ready when /health answers from host A's side of the veth.
  const startLapi = (): Promise<void> => lapiServer!.start()
  const stopLapi = (): Promise<void> => lapiServer!.stop()

  function startHost(ns: string, name: string, guards: Record<string, string[]>, extra: Record<string, unknown> = {}): HostProc {
    const cfg = {
      crowdsec: {
        url: `http://${LAPI_ADDR}:${LAPI_PORT}`,
        machine: name,
        ...files[name],
        pushIntervalMs: 200,
        pullIntervalMs: 500,
        timeoutMs: 2000,
        ...extra,
      },
      guards,
    }
    const child = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, join(build, 'test/helpers/fleet-host.js'), JSON.stringify(cfg)],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    )
    const h = new HostProc(child)
    hosts.push(h)
    return h
  }

  // tsc of the fleet host and LAPI's start take minutes on a loaded machine.
  beforeAll(async () => {
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

    net = await createTestNet({ peers: 2 })
    const n = net
    lapiServer = await createLapi({
      host: LAPI_ADDR,
      port: LAPI_PORT,
      spawn: (cmd, args) => n.sensorSpawn(cmd, args),
      probe: probeFrom(n.links[0]!.peer.exec),
    })
    for (const name of ['host-a', 'host-b']) {
      files[name] = { passwordFile: await lapiServer.addMachine(name), bouncerKeyFile: await lapiServer.addBouncer(`${name}-bouncer`) }
    }

    // Host B (peer 1) reaches LAPI's address on the other link through the LAPI namespace.
    const b = net.links[1]!.peer
    const r = await b.exec('ip', ['route', 'add', `${LAPI_ADDR}/32`, 'via', net.links[1]!.sensor.ipv4])
    if (r.code !== 0) throw new Error(`route: ${r.stderr}`)
    await startLapi()
  }, 300_000)

  afterAll(async () => {
    for (const h of hosts) await stop(h.child).catch(() => {})
    await lapiServer?.cleanup()
    await net?.destroy()
    if (build !== '') await rm(build, { recursive: true, force: true })
  })

  it('shares blocks, honours deletions and guards, and rides out a LAPI outage', { timeout: 600_000 }, async () => {
    const netw = net!
    const A = startHost(netw.links[0]!.peer.ns, 'host-a', { gateways: [LAPI_ADDR] }, { queueLimit: 20 })
    // B's gateway is the LAPI namespace's address on B's link.
    const B = startHost(netw.links[1]!.peer.ns, 'host-b', { gateways: [netw.links[1]!.sensor.ipv4] })
    await A.waitFor((l) => l.type === 'ready', 30_000, 'A ready')
    await B.waitFor((l) => l.type === 'ready', 30_000, 'B ready')

    // --- A blocks an attacker locally; B applies it from the fleet.
    const t0 = Date.now()
    expect((await A.cmd({ op: 'block', src: ATTACKER })).ok).toBe(true)
    const applied = await B.waitFor(
      (l) => l.type === 'decision' && l.src === ATTACKER && l.action === 'block',
      WAIT_MS,
      'B applying the fleet ban',
    )
    // How fast is a benchmark's question; here it is only reported.
    console.log(`fleet ban A → LAPI → B in ${Date.now() - t0} ms`)
    expect(applied).toMatchObject({ source: 'fleet', reason: 'fleet', origin: 'portanoia', scenario: 'portanoia/verified-connect' })
    expectTimeLeft(applied.ttlMs as number, 3_600_000, t0)
    expect(await B.blocks()).toContain(ATTACKER)
    // A receives its own decision back and leaves its local block alone.
    await A.waitFor((l) => l.type === 'fleet' && l.op === 'skipped' && l.why === 'own' && l.src === ATTACKER, WAIT_MS, 'A skipping its own decision')

    // --- The decision is deleted in LAPI: B lifts it; A's local block stays.
    const del = await A.cmd({ op: 'delete', src: ATTACKER })
    expect(del.deleted).toBeGreaterThanOrEqual(1)
    await B.waitFor((l) => l.type === 'fleet' && l.op === 'unblocked' && l.src === ATTACKER, WAIT_MS, 'B lifting the ban')
    expect(await B.blocks()).not.toContain(ATTACKER)
    expect(await A.blocks()).toContain(ATTACKER)

    // --- A fleet ban on B's gateway: refused on B (guard), applied on A.
    const gwB = netw.links[1]!.sensor.ipv4
    await netw.sensorExec('cscli', ['-c', lapiServer!.config, 'decisions', 'add', '--ip', gwB, '--duration', '1h', '--reason', 'test'])
      .then((r) => expect(r.code, r.stderr).toBe(0))
    const refused = await B.waitFor((l) => l.type === 'decision' && l.src === gwB, WAIT_MS, 'B refusing the guarded ban')
    expect(refused).toMatchObject({ action: 'none', reason: 'guard:gateway', source: 'fleet', origin: 'cscli' })
    await A.waitFor((l) => l.type === 'decision' && l.src === gwB && l.action === 'block', WAIT_MS, 'A applying it')
    expect(await A.blocks()).toContain(gwB)
    expect(await B.blocks()).not.toContain(gwB)

    // --- LAPI dies: A keeps blocking locally (offer() is a synchronous enqueue), the queue stays bounded.
    await stopLapi()
    for (let i = 0; i < 30; i++) expect((await A.cmd({ op: 'block', src: `198.18.78.${i}` })).ok).toBe(true)
    await A.waitFor((l) => l.type === 'fleet' && l.op === 'push-failed', WAIT_MS, 'A reporting the push failure')
    const down = (await A.stats())['fleet-push']!
    expect(down.queued).toBeLessThanOrEqual(20)
    expect(down.drops).toBe(10)
    expect(down.pushFailures).toBeGreaterThan(0)
    expect((await A.blocks()).filter((a) => a.startsWith('198.18.78.'))).toHaveLength(30)
    await B.waitFor((l) => l.type === 'fleet' && l.op === 'pull-failed', WAIT_MS, 'B reporting the pull failure')

    // --- LAPI is back: A's queue drains, B applies what A kept.
    await startLapi()
    await A.waitFor((l) => l.type === 'fleet' && l.op === 'push-recovered', 60_000, 'A pushing again')
    await expect.poll(async () => (await A.stats())['fleet-push']!.queued, { timeout: WAIT_MS }).toBe(0)
    const after = (await A.stats())['fleet-push']!
    expect(after.pushes).toBe(1 + 20)
    await B.waitFor((l) => l.type === 'fleet' && l.op === 'pull-recovered', 60_000, 'B pulling again')
    await expect
      .poll(async () => (await B.blocks()).filter((a) => a.startsWith('198.18.78.')).length, { timeout: WAIT_MS })
      .toBe(20)
  })
})
