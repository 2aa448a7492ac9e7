/**
 * Guards that hold at the moment of blocking (issue 8), each reproduction with real
 * nft in test namespaces and `--block all`, so a forged SYN would be blocked unless
 * a guard holds: an admin's session opened after the daemon started (with a forged
 * source nobody guards in the same drain, which is blocked), also on a host holding
 * 10,000 connections; a peer check that fails (no spoofable source blocked, a
 * verified scanner still is); an address
 * added while it runs (and a block on an address that later becomes the host's,
 * which must be lifted); an address on an interface that is UP without carrier; the
 * second hop of an ECMP route; a gateway reached only through policy routing; a flow
 * the sensor namespace merely forwards; and `--unused` over the ephemeral range, where
 * the SYN-ACK of the host's own outbound connection must not get the server blocked.
 * Every "nothing was blocked" check waits for a sentinel first: a forged source that
 * no guard covers, sent after the probe under test, whose block proves the pipeline
 * had already decided on everything before it.
 */
import type { ChildProcess } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon, type DaemonOptions } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import { type HostView, netnsHostView } from '../../lib/daemon/host-view.js'
import { SYN } from '../../lib/lab/frames.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun } from '../../lib/responders/run.js'
import { jsonLines, startWatch, stopWatches, waitFor as cliWaitFor } from '../helpers/cli.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftElements as nftElementsIn } from '../helpers/nft.js'
import { probeFrame, sendFrames } from '../helpers/probes.js'
import { holdConnection, manyConnections, openConnection, startService, tcpConnect } from '../helpers/tcp.js'
import { internals } from '../helpers/internals.js'

warnIfNotRoot('test/privileged/guards-live.test.ts')

const TRIPWIRE = 2222
const SERVICE = 8080

type Link = TestNet['links'][0]

let net: TestNet | undefined
const children: ChildProcess[] = []
const daemons: Daemon[] = []

afterEach(async () => {
  await stopWatches()
  for (const d of daemons.splice(0)) await d.close()
  for (const c of children.splice(0)) await stop(c)
  await net?.destroy()
  net = undefined
})

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

async function startDaemon(n: TestNet, options: Partial<DaemonOptions> = {}) {
  const events: PortanoiaEvent[] = []
  const logs: string[] = []
  const daemon = await Daemon.compose({
    ports: [`${TRIPWIRE}/tcp`],
    netns: n.sensorNs,
    firewall: new NftablesResponder({ run: netnsRun(n.sensorNs) }),
    policy: { block: 'all' },
    // The guards are under test: attribution would stop these forged probes first
    // (test/privileged/attribution.test.ts shows that), so it is off here.
    attribution: false,
    statsIntervalMs: 0,
    onEvent: (e) => events.push(e),
    onLog: (_level, m) => logs.push(m),
    ...options,
  })
  daemons.push(daemon)
  const decisions = (): DecisionEvent[] => events.filter((e): e is DecisionEvent => e.type === 'decision')
  return { daemon, events, logs, decisions }
}

/** The addresses in portanoia's sets; a failing nft fails the test (test/helpers/nft.ts). */
const nftElements = (n: TestNet): Promise<string[]> => nftElementsIn(n.sensorExec)

async function ip(n: TestNet, args: string[]): Promise<void> {
  const r = await n.sensorExec('ip', args)
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
}

/** A SYN to the tripwire from link `l`'s peer, carrying `src`. */
function forgedSyn(l: Link, src: string, n: number): Uint8Array {
  return probeFrame(l.peer, l.sensor, { family: 4, proto: 'tcp', src, srcPort: 41000 + n, dstPort: TRIPWIRE, tcpFlags: SYN })
}

/**
 * Sends the probes under test, then a sentinel from an unguarded forged source; when
 * the sentinel's block decision is there, every earlier probe has been decided.
 */
async function probeThenSentinel(d: Awaited<ReturnType<typeof startDaemon>>, l: Link, srcs: string[], sentinel = '198.18.0.250') {
  sendFrames(l.peer, [...srcs.map((s, i) => forgedSyn(l, s, i)), forgedSyn(l, sentinel, 99)])
  await waitFor('the sentinel block', () => d.decisions().find((x) => x.src === sentinel && x.reason === 'blocked'))
  await waitFor('the sentinel element', async () => ((await nftElements(net!)).includes(sentinel) ? true : undefined))
}

/** The real host view of `ns`, except that its peer check fails as sock_diag refusing would. */
function failingPeerCheck(real: HostView): HostView {
  const live = real.live
  if (live === null) throw new Error('the host view has no live checks')
  return {
    label: real.label,
    start: () => real.start(),
    current: () => real.current(),
    subscribe: (fn) => real.subscribe(fn),
    live: {
      ...live,
      peers: async () => {
        throw Object.assign(new Error('SOCK_DIAG_BY_FAMILY: Operation not permitted (test)'), { code: 'EPERM' })
      },
    },
    listening: () => real.listening(),
    localPortRange: () => real.localPortRange(),
    inForce: () => real.inForce(),
    stats: () => real.stats(),
    setWarn: (fn) => real.setWarn(fn),
    ignorePeersOn: (ports) => real.ignorePeersOn(ports),
    close: () => real.close(),
  }
}

function reasonsOf(d: Awaited<ReturnType<typeof startDaemon>>, src: string): string[] {
  return d.decisions().filter((x) => x.src === src).map((x) => x.reason)
}

describe.skipIf(!IS_ROOT)('guards hold at the moment of blocking', () => {
  it('an admin session opened after start: forged SYNs with its address get guard:peer, never a blocked event or element, while a forged source in the same drain is blocked; the session lives', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [Link, Link]
    children.push(await startService(b.sensor, SERVICE))
    const d = await startDaemon(net)
    // The admin logs in now, after the daemon read its facts.
    const session = await holdConnection(b.peer, b.sensor.ipv4, SERVICE)
    children.push(session)
    // One send: the admin's address, a forged source nobody guards, the admin's again.
    await probeThenSentinel(d, a, [b.peer.ipv4, '198.18.0.252', b.peer.ipv4])
    expect(reasonsOf(d, b.peer.ipv4)).toEqual(['guard:peer'])
    expect(reasonsOf(d, '198.18.0.252')).toEqual(['blocked'])
    expect(d.events.some((e) => e.type === 'decision' && e.src === b.peer.ipv4 && e.action === 'block')).toBe(false)
    expect(await nftElements(net)).toEqual(['198.18.0.250', '198.18.0.252'])
    expect(session.exitCode).toBeNull()
    expect(await tcpConnect(b.peer, b.sensor.ipv4, SERVICE)).toBe('connected')
    // The counts say the same: the refusal, and the blocks it did not undo.
    await d.daemon.close()
    const stats = d.events.filter((e) => e.type === 'stats').at(-1) as Extract<PortanoiaEvent, { type: 'stats' }>
    expect(stats.policy.decisions).toMatchObject({ blocked: 2, 'guard:peer': 1 })
    expect(stats.responders?.['daemon']).toMatchObject({ vetRefused: 1 })
  })

  it('on a host with 10,000 connections: forged SYNs claiming an admin\'s address or the busy client\'s get guard:peer, an unguarded one in the same drain is blocked; the session lives', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [Link, Link]
    // A busy service: 10,000 connections from one client, every one in the kernel's established hash.
    await manyConnections(b.sensor, b.peer, b.sensor.ipv4, 9100, 10_000, children)
    children.push(await startService(a.sensor, SERVICE))
    const d = await startDaemon(net)
    const session = await holdConnection(a.peer, a.sensor.ipv4, SERVICE)
    children.push(session)
    await probeThenSentinel(d, a, [a.peer.ipv4, b.peer.ipv4, '198.18.0.252', a.peer.ipv4])
    expect(reasonsOf(d, a.peer.ipv4)).toEqual(['guard:peer'])
    expect(reasonsOf(d, b.peer.ipv4)).toEqual(['guard:peer'])
    expect(reasonsOf(d, '198.18.0.252')).toEqual(['blocked'])
    expect(await nftElements(net)).toEqual(['198.18.0.250', '198.18.0.252'])
    expect(session.exitCode).toBeNull()
    expect(await tcpConnect(a.peer, a.sensor.ipv4, SERVICE)).toBe('connected')
  })

  it('a peer check that fails blocks no spoofable source (peer-check-failed, an error event says why), and a verified scanner is still blocked', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [Link, Link]
    children.push(await startService(a.sensor, SERVICE))
    const session = await holdConnection(a.peer, a.sensor.ipv4, SERVICE)
    children.push(session)
    const d = await startDaemon(net, { host: failingPeerCheck(netnsHostView(net.sensorNs)) })
    sendFrames(a.peer, [forgedSyn(a, a.peer.ipv4, 1), forgedSyn(a, '198.18.0.253', 2)])
    await waitFor('both reports', () => (reasonsOf(d, '198.18.0.253').length > 0 && reasonsOf(d, a.peer.ipv4).length > 0 ? true : undefined))
    // A verified scanner after them: its block is the sentinel that everything before it was carried out.
    expect(await tcpConnect(b.peer, b.sensor.ipv4, TRIPWIRE)).not.toBe('timeout')
    await waitFor('the verified block', () => d.decisions().find((x) => x.src === b.peer.ipv4 && x.reason === 'blocked'))
    await waitFor('its element', async () => ((await nftElements(net!)).includes(b.peer.ipv4) ? true : undefined))
    expect(reasonsOf(d, a.peer.ipv4)).toEqual(['peer-check-failed'])
    expect(reasonsOf(d, '198.18.0.253')).toEqual(['peer-check-failed'])
    expect(await nftElements(net)).toEqual([b.peer.ipv4])
    expect(d.events.filter((e) => e.type === 'error')).toMatchObject([{ responder: 'guards', code: 'PORTANOIA_PEER_CHECK_FAILED' }])
    expect(session.exitCode).toBeNull()
  })

  it('an address added at runtime is guarded at once, and a block on it is lifted', async () => {
    net = await createTestNet()
    const [a] = net.links as [Link]
    const d = await startDaemon(net)
    // A forged source that is nobody's yet gets blocked...
    await probeThenSentinel(d, a, ['198.18.51.1'], '198.18.0.251')
    await waitFor('the first block', async () => ((await nftElements(net!)).includes('198.18.51.1') ? true : undefined))
    // ...then both addresses become the host's own.
    await ip(net, ['addr', 'add', '198.18.50.1/32', 'dev', 'lo'])
    await ip(net, ['addr', 'add', '198.18.51.1/32', 'dev', 'lo'])
    const lifted = await waitFor('the lift', () => d.decisions().find((x) => x.src === '198.18.51.1' && x.action === 'unblock'))
    expect(lifted.reason).toBe('guard:self')
    await waitFor('the element gone', async () => ((await nftElements(net!)).includes('198.18.51.1') ? undefined : true))
    await probeThenSentinel(d, a, ['198.18.50.1'])
    expect(reasonsOf(d, '198.18.50.1')).toEqual(['guard:self'])
    expect(await nftElements(net)).toEqual(['198.18.0.250', '198.18.0.251'])
    // The host reaches its new address (nothing of it is blocked).
    const ping = await net.sensorExec('ping', ['-c', '1', '-W', '1', '198.18.51.1'])
    expect(ping.code).toBe(0)
  })

  it('an own address on an interface that is UP without carrier is guarded (portanoia watch run inside the namespace)', async () => {
    net = await createTestNet()
    const [a] = net.links as [Link]
    // docker0 whose containers are gone: a bridge UP, its one port without carrier
    // (the veth's other end is down), so the bridge is NO-CARRIER, not RUNNING.
    await ip(net, ['link', 'add', 'pnbr0', 'type', 'bridge'])
    await ip(net, ['addr', 'add', '198.18.77.1/24', 'dev', 'pnbr0'])
    await ip(net, ['link', 'add', 'pnv0', 'type', 'veth', 'peer', 'name', 'pnv1'])
    await ip(net, ['link', 'set', 'pnv0', 'master', 'pnbr0'])
    await ip(net, ['link', 'set', 'pnv0', 'up'])
    await ip(net, ['link', 'set', 'pnbr0', 'up'])
    expect((await net.sensorExec('ip', ['link', 'show', 'pnbr0'])).stdout).toMatch(/NO-CARRIER/)
    // The CLI in the namespace sees it as its own host: the local view, which used to
    // take addresses from os.networkInterfaces() (RUNNING interfaces only).
    const w = await startWatch(['watch', '--tcp', String(TRIPWIRE), '--block', 'all', '--no-attribution', '--json'], { netns: net.sensorNs })
    const decisions = (): Array<{ src: string; reason: string }> => jsonLines(w.out(), (e) => e.type === 'decision')
    sendFrames(a.peer, ['198.18.77.1', '198.18.77.255', '198.18.0.250'].map((s, i) => forgedSyn(a, s, i)))
    await cliWaitFor('the sentinel block', () => decisions().some((x) => x.src === '198.18.0.250' && x.reason === 'blocked'))
    expect(decisions().filter((x) => x.src === '198.18.77.1').map((x) => x.reason)).toEqual(['guard:self'])
    expect(decisions().filter((x) => x.src === '198.18.77.255').map((x) => x.reason)).toEqual(['guard:special'])
    await cliWaitFor('the sentinel element', async () => (await nftElements(net!)).length > 0)
    expect(await nftElements(net)).toEqual(['198.18.0.250'])
  })

  it('the second hop of an ECMP route and a gateway reached through policy routing are guarded', async () => {
    net = await createTestNet({ peers: 3 })
    const [a, b, c] = net.links as [Link, Link, Link]
    await ip(net, ['route', 'add', '198.18.64.0/24', 'nexthop', 'via', a.peer.ipv4, 'nexthop', 'via', b.peer.ipv4])
    await ip(net, ['route', 'add', 'default', 'via', c.peer.ipv4, 'table', '100'])
    await ip(net, ['rule', 'add', 'from', c.sensor.ipv4, 'table', '100'])
    const d = await startDaemon(net)
    await probeThenSentinel(d, a, [b.peer.ipv4, c.peer.ipv4])
    expect(reasonsOf(d, b.peer.ipv4)).toEqual(['guard:gateway'])
    expect(reasonsOf(d, c.peer.ipv4)).toEqual(['guard:gateway'])
    expect(await nftElements(net)).toEqual(['198.18.0.250'])
  })

  it('a gateway added at runtime in another table is guarded at once', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [Link, Link]
    const d = await startDaemon(net)
    await ip(net, ['route', 'add', 'default', 'via', b.peer.ipv4, 'table', '200'])
    await waitFor('the route in force', () => (d.daemon.guardFacts().gateways.some((g) => g.address === b.peer.ipv4) ? true : undefined))
    await probeThenSentinel(d, a, [b.peer.ipv4])
    expect(reasonsOf(d, b.peer.ipv4)).toEqual(['guard:gateway'])
  })

  it('forwarded traffic is transit: a host routing X→Y:6379 blocks nobody', async () => {
    net = await createTestNet({ peers: 2 })
    const [x, y] = net.links as [Link, Link]
    expect((await net.sensorExec('sysctl', ['-w', 'net.ipv4.ip_forward=1'])).code).toBe(0)
    expect((await x.peer.exec('ip', ['route', 'add', '198.18.1.0/24', 'via', x.sensor.ipv4])).code).toBe(0)
    expect((await y.peer.exec('ip', ['route', 'add', '198.18.0.0/24', 'via', y.sensor.ipv4])).code).toBe(0)
    const d = await startDaemon(net, { ports: ['6379/tcp', `${TRIPWIRE}/tcp`] })
    // X connects to Y:6379 through the sensor namespace (nothing listens there: a RST).
    expect(await tcpConnect(x.peer, y.peer.ipv4, 6379)).toMatch(/refused|reset/)
    await probeThenSentinel(d, x, [])
    expect(reasonsOf(d, x.peer.ipv4)).toEqual(['transit'])
    expect(d.decisions().find((e) => e.src === x.peer.ipv4)).toMatchObject({ action: 'none', trigger: { dst: y.peer.ipv4, dstPort: 6379 } })
    expect(await nftElements(net)).toEqual(['198.18.0.250'])
    expect(await tcpConnect(x.peer, y.peer.ipv4, 6379)).toMatch(/refused|reset/)
  })

  it('--unused leaves out the ephemeral range, and replies to the host\'s own connections are not probes', async () => {
    net = await createTestNet()
    const [a] = net.links as [Link]
    expect((await net.sensorExec('sysctl', ['-w', 'net.ipv4.ip_local_port_range=40000 50000'])).code).toBe(0)
    children.push(await startService(a.peer, 9090))
    const d = await startDaemon(net, { ports: [], unused: ['30000-65535/tcp'] })
    expect(d.logs.some((l) => /40000-50000/.test(l) && /ip_local_port_range/.test(l))).toBe(true)
    expect(internals(d.daemon).sensor.ports).toEqual([
      { proto: 'tcp', from: 30000, to: 39999 },
      { proto: 'tcp', from: 50001, to: 65535 },
    ])
    // The host's first outbound connection: its SYN-ACK lands on an ephemeral port.
    const outbound = await openConnection(a.sensor, a.peer.ipv4, 9090)
    children.push(outbound.child)
    expect(outbound.localPort).toBeGreaterThanOrEqual(40000)
    expect(outbound.localPort).toBeLessThanOrEqual(50000)
    // A client that binds its own port inside an unused range: its replies hit a tripwire
    // and are recognised as replies.
    const bound = await a.sensor.exec(process.execPath, [
      '-e',
      `const s=require('node:net').connect({host:${JSON.stringify(a.peer.ipv4)},port:9090,localPort:35000},()=>{console.log('ok');setTimeout(()=>process.exit(0),300)});s.on('error',(e)=>{console.log(e.code);process.exit(1)})`,
    ])
    expect(bound.stdout.trim()).toBe('ok')
    sendFrames(a.peer, [probeFrame(a.peer, a.sensor, { family: 4, proto: 'tcp', src: '198.18.0.250', srcPort: 41099, dstPort: 31000, tcpFlags: SYN })])
    await waitFor('the sentinel block', () => d.decisions().find((x) => x.src === '198.18.0.250' && x.reason === 'blocked'))
    await waitFor('the sentinel element', async () => ((await nftElements(net!)).includes('198.18.0.250') ? true : undefined))
    expect(reasonsOf(d, a.peer.ipv4)).toEqual([])
    expect(await nftElements(net)).toEqual(['198.18.0.250'])
    expect(internals(d.daemon).host.stats()?.replies).toBeGreaterThan(0)
  })
})
