/**
 * Fleet mode end to end, as operators run it: two hosts, each the built CLI
 * `portanoia watch --netns NS --tcp PORT --crowdsec-* --json` started inside its
 * namespace (so its LAPI traffic crosses the test network), sharing one real
 * CrowdSec LAPI (test/helpers/lapi.ts). Topology: one switched segment
 * (createBridgeNet) holding LAPI, host A, host B and the attacker; B routes via
 * the hub, which is therefore B's gateway, and allowlists one more address. A
 * connect scan of A's tripwire gets the attacker dropped by B's nftables (the
 * time it took is printed, not asserted: latency is the benchmarks' business);
 * deleting the decision in LAPI (cscli) lifts it on B while A keeps its own
 * block; fleet bans on B's gateway and allowlisted address are refused on B with
 * guard decision events and applied on A. The metrics endpoints (inside each
 * host's namespace) count the pushes, pulls and fleet decisions. Processes are
 * ended by PID; the namespaces always go.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BridgeNet, createBridgeNet, type NetnsHost } from '../../lib/lab/netns.js'
import { createLapi, HAVE_CROWDSEC, type Lapi, probeFrom } from '../helpers/lapi.js'
import { IS_ROOT, stop } from '../helpers/netns.js'
import { nftElements } from '../helpers/nft.js'
import { tcpConnect } from '../helpers/tcp.js'

const FILE = 'test/privileged/fleet-watch.test.ts'
if (!IS_ROOT) console.warn(`\n*** SKIPPED: ${FILE} needs root (namespaces, AF_PACKET, nftables). ***\n`)
else if (!HAVE_CROWDSEC) console.warn(`\n*** SKIPPED: ${FILE} needs crowdsec + cscli (apt-get install crowdsec; see .ci/run) and nft. ***\n`)

const MAIN = join(import.meta.dirname, '../../dist/lib/cli/main.js')
const LAPI_PORT = 8090
const TRIPWIRE = 2323
const CLOSED = 2324
const ALLOWED_ON_B = '198.19.0.200'
/** How long to wait for a fleet effect before calling it missing: generous, not a latency claim. */
const WAIT_MS = 30_000

interface Line {
  type: string
  [k: string]: unknown
}

/** One `portanoia watch` child: its JSON event lines and its stderr log. */
class Watch {
  readonly events: Line[] = []
  log = ''
  readonly child: ChildProcess
  readonly exited: Promise<number | null>

  constructor(readonly name: string, child: ChildProcess) {
    this.child = child
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        this.events.push(JSON.parse(l) as Line)
      } catch {
        this.events.push({ type: 'text', text: l })
      }
    })
    child.stderr!.on('data', (b: Buffer) => {
      this.log += b.toString()
    })
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)))
  }

  async waitFor(pred: (l: Line) => boolean, timeoutMs: number, what: string): Promise<Line> {
    const t0 = Date.now()
    for (;;) {
      const hit = this.events.find(pred)
      if (hit !== undefined) return hit
      if (this.child.exitCode !== null) throw new Error(`${this.name} exited with ${this.child.exitCode} waiting for ${what}:\n${this.log}`)
      if (Date.now() - t0 > timeoutMs) {
        throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms; last events ${JSON.stringify(this.events.slice(-8))}\n${this.log}`)
      }
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  async waitLog(re: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const t0 = Date.now()
    for (;;) {
      const m = re.exec(this.log)
      if (m !== null) return m
      if (this.child.exitCode !== null) throw new Error(`${this.name} exited with ${this.child.exitCode}:\n${this.log}`)
      if (Date.now() - t0 > timeoutMs) throw new Error(`${this.name}: no log line ${String(re)}:\n${this.log}`)
      await new Promise((r) => setTimeout(r, 25))
    }
  }
}

/** The addresses in `inet portanoia`'s IPv4 sets of a host, every origin's (throws when nft fails). */
const blocked = (host: NetnsHost): Promise<string[]> => nftElements(host.exec, ['verified4', 'spoofable4', 'fleet4'])

/** Scrapes a metrics endpoint from inside a namespace (the daemon's sockets live there). */
async function scrape(host: NetnsHost, url: string): Promise<string> {
  const script = `fetch(${JSON.stringify(url)}).then(async r => { process.stdout.write(await r.text()) }, e => { console.error(e); process.exit(1) })`
  const r = await host.exec(process.execPath, ['-e', script], { timeoutMs: 10_000 })
  if (r.code !== 0) throw new Error(`scrape ${url}: ${r.stderr}`)
  return r.stdout
}

/** The value of one series in Prometheus text (`name{labels}` exactly as printed), or 0. */
function value(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  }
  return 0
}

describe.skipIf(!IS_ROOT || !HAVE_CROWDSEC)('portanoia watch in fleet mode (two hosts, one CrowdSec LAPI)', () => {
  let net: BridgeNet | null = null
  let lapi: Lapi | null = null
  const watches: Watch[] = []

  afterAll(async () => {
    for (const w of watches) await stop(w.child).catch(() => {})
    await lapi?.cleanup()
    await net?.destroy()
  })

  let lapiHost: NetnsHost
  let A: NetnsHost
  let B: NetnsHost
  let attacker: NetnsHost
  const creds: Record<string, { password: string; key: string }> = {}

  // LAPI's start takes minutes on a loaded machine.
  beforeAll(async () => {
    net = await createBridgeNet({ prefix: 'pnt-', hosts: 4 })
    ;[lapiHost, A, B, attacker] = net.hosts as [NetnsHost, NetnsHost, NetnsHost, NetnsHost]
    // B routes via the hub: the hub's address becomes B's gateway (and only B's).
    const r = await B.exec('ip', ['route', 'add', 'default', 'via', net.hub.ipv4])
    if (r.code !== 0) throw new Error(`route: ${r.stderr}`)
    lapi = await createLapi({
      host: lapiHost.ipv4,
      port: LAPI_PORT,
      spawn: (cmd, args) => lapiHost.spawn(cmd, args),
      probe: probeFrom(A.exec),
    })
    for (const name of ['host-a', 'host-b']) {
      creds[name] = { password: await lapi.addMachine(name), key: await lapi.addBouncer(`${name}-bouncer`) }
    }
    await lapi.start()
  }, 300_000)

  async function startWatch(name: string, host: NetnsHost, extra: string[] = []): Promise<Watch> {
    // Fast intervals from a config file; URL, machine and secret files from flags
    // (the flags override the file field by field).
    const config = join(lapi!.dir, `${name}.portanoia.json`)
    await writeFile(config, JSON.stringify({ crowdsec: { url: lapi!.url, pushIntervalMs: 200, pullIntervalMs: 500, timeoutMs: 2000 } }))
    const args = [
      'netns', 'exec', host.ns, process.execPath, MAIN, 'watch',
      '--netns', host.ns, '--tcp', String(TRIPWIRE), '--json', '--config', config, '--stats-interval', '1h',
      '--crowdsec-url', lapi!.url,
      '--crowdsec-machine', name,
      '--crowdsec-password-file', creds[name]!.password,
      '--crowdsec-bouncer-key-file', creds[name]!.key,
      '--metrics', '127.0.0.1:0',
      ...extra,
    ]
    const w = new Watch(name, spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }))
    watches.push(w)
    await w.waitLog(/watching /)
    await w.waitLog(/crowdsec: pushing blocks as .*, applying fleet bans/)
    return w
  }

  it('shares a scan of A with B, lifts it on deletion, and lets B\'s guards refuse fleet bans', { timeout: 300_000 }, async () => {
    const wa = await startWatch('host-a', A)
    const wb = await startWatch('host-b', B, ['--allow', ALLOWED_ON_B])
    const urlA = (await wa.waitLog(/metrics on (\S+)/))[1]!
    const urlB = (await wb.waitLog(/metrics on (\S+)/))[1]!
    // Both hosts answer the attacker before anything happens.
    expect(await tcpConnect(attacker, B.ipv4, CLOSED)).toBe('refused')

    // --- A connect scan of A's tripwire: A blocks, B blocks from the fleet.
    const t0 = Date.now()
    expect(await tcpConnect(attacker, A.ipv4, TRIPWIRE)).not.toBe('timeout')
    const local = await wa.waitFor((l) => l.type === 'decision' && l.src === attacker.ipv4 && l.action === 'block', WAIT_MS, 'A blocking the attacker')
    expect(local).toMatchObject({ reason: 'blocked', verified: true })
    expect(local.source).toBeUndefined()
    const fleetBan = await wb.waitFor(
      (l) => l.type === 'decision' && l.source === 'fleet' && l.src === attacker.ipv4 && l.action === 'block',
      WAIT_MS,
      'B applying the fleet ban',
    )
    // How fast is a benchmark's question; here it is only reported.
    console.log(`scan of A → blocked on B in ${Date.now() - t0} ms`)
    expect(fleetBan).toMatchObject({ reason: 'fleet', origin: 'portanoia', scenario: 'portanoia/verified-connect' })
    expect(await blocked(B)).toContain(attacker.ipv4)
    // The block is real: B now drops the attacker.
    expect(await tcpConnect(attacker, B.ipv4, CLOSED)).toBe('timeout')
    // A gets its own decision back and leaves it alone.
    await wa.waitFor((l) => l.type === 'fleet' && l.op === 'skipped' && l.why === 'own' && l.src === attacker.ipv4, WAIT_MS, 'A skipping its own decision')

    // --- Deleted in LAPI: lifted on B; A keeps the block from its own evidence.
    const del = await lapiHost.exec('cscli', ['-c', lapi!.config, 'decisions', 'delete', '--ip', attacker.ipv4])
    expect(del.code, del.stderr).toBe(0)
    await wb.waitFor((l) => l.type === 'fleet' && l.op === 'unblocked' && l.src === attacker.ipv4, WAIT_MS, 'B lifting the ban')
    expect(await blocked(B)).not.toContain(attacker.ipv4)
    expect(await tcpConnect(attacker, B.ipv4, CLOSED)).toBe('refused')
    expect(await blocked(A)).toContain(attacker.ipv4)

    // --- Fleet bans on B's gateway and on B's allowlist: refused on B, applied on A.
    const gatewayB = net!.hub.ipv4
    for (const [address, reason] of [[gatewayB, 'guard:gateway'], [ALLOWED_ON_B, 'guard:allowlist']] as const) {
      const add = await lapiHost.exec('cscli', ['-c', lapi!.config, 'decisions', 'add', '--ip', address, '--duration', '1h', '--reason', 'fleet-watch test'])
      expect(add.code, add.stderr).toBe(0)
      const refused = await wb.waitFor((l) => l.type === 'decision' && l.src === address, WAIT_MS, `B refusing ${address}`)
      expect(refused).toMatchObject({ source: 'fleet', action: 'none', reason, origin: 'cscli' })
      await wa.waitFor((l) => l.type === 'decision' && l.src === address && l.action === 'block', WAIT_MS, `A applying ${address}`)
      expect(await blocked(A)).toContain(address)
      expect(await blocked(B)).not.toContain(address)
    }
    // B still reaches its gateway.
    const ping = await B.exec('ping', ['-c', '1', '-W', '1', gatewayB])
    expect(ping.code).toBe(0)

    // --- The metrics saw it: pushes on A, fleet decisions and pulls on B.
    const ma = await scrape(A, urlA)
    const mb = await scrape(B, urlB)
    expect(value(ma, 'portanoia_fleet_pushes_total')).toBeGreaterThanOrEqual(1)
    expect(value(ma, 'portanoia_decisions_total{source="local",action="block",reason="blocked"}')).toBe(1)
    expect(value(ma, 'portanoia_hits_total{proto="tcp",kind="connect",verified="true",attribution="verified"}')).toBeGreaterThanOrEqual(1)
    expect(value(mb, 'portanoia_fleet_pulls_total')).toBeGreaterThanOrEqual(1)
    expect(value(mb, 'portanoia_decisions_total{source="fleet",action="block",reason="fleet"}')).toBe(1)
    expect(value(mb, 'portanoia_decisions_total{source="fleet",action="none",reason="guard:gateway"}')).toBe(1)
    expect(value(mb, 'portanoia_decisions_total{source="fleet",action="none",reason="guard:allowlist"}')).toBe(1)
    expect(value(mb, 'portanoia_fleet_unblocked_total')).toBe(1)

    // --- A clean stop: exit 0, the final stats event carries the fleet counters.
    for (const w of [wa, wb]) {
      process.kill(w.child.pid!, 'SIGTERM')
      expect(await w.exited).toBe(0)
    }
    const statsA = wa.events.filter((l) => l.type === 'stats').at(-1) as unknown as { responders: Record<string, Record<string, number>> }
    const statsB = wb.events.filter((l) => l.type === 'stats').at(-1) as unknown as { responders: Record<string, Record<string, number>> }
    expect(statsA.responders['fleet-push']).toMatchObject({ pushes: 1, queued: 0, drops: 0 })
    expect(statsB.responders['fleet-pull']).toMatchObject({ applied: 1, unblocked: 1, refused: 2 })
    // Secrets never reach the output.
    for (const w of [wa, wb]) {
      for (const name of ['host-a', 'host-b']) {
        for (const f of [creds[name]!.password, creds[name]!.key]) {
          const secret = (await readFile(f, 'utf8')).trim()
          expect(w.log).not.toContain(secret)
          expect(JSON.stringify(w.events)).not.toContain(secret)
        }
      }
    }
  })
})
