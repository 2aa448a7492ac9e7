/**
 * IPv6 through the whole daemon, by its public entry (Daemon.start with a config,
 * as an embedding service calls it), inside test namespaces with the sensor
 * namespace's real nft: a verified IPv6 connect ends as an element of `verified6` that
 * cuts that peer off over IPv6 and nothing else; forged IPv6 SYNs carrying the
 * host's own address, its IPv6 gateway and an established IPv6 peer are refused with
 * guard decisions taken from the namespace's real state (addresses, routes,
 * sockets), whatever mechanism reads it, while an unguarded forged source is
 * blocked. Nothing touches the host's own firewall.
 */
import type { ChildProcess } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftElements } from '../helpers/nft.js'
import { canonicalIp, probeFrame, sendFrames } from '../helpers/probes.js'
import { holdConnection, startService, tcpConnect } from '../helpers/tcp.js'
import { waitFor } from '../helpers/wait.js'

warnIfNotRoot('test/privileged/daemon-ipv6.test.ts')

const TRIPWIRE = 2222
const SERVICE = 8080

let net: TestNet | undefined
const children: ChildProcess[] = []
const daemons: Daemon[] = []

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close()
  for (const c of children.splice(0)) await stop(c)
  await net?.destroy()
  net = undefined
})

async function start(n: TestNet, config: { block?: string } = {}) {
  const events: PortanoiaEvent[] = []
  const daemon = await Daemon.start({ tcp: [TRIPWIRE], netns: n.sensorNs, statsInterval: '1h', ...config }, { onEvent: (e) => events.push(e) })
  daemons.push(daemon)
  const decisions = (): DecisionEvent[] => events.filter((e): e is DecisionEvent => e.type === 'decision')
  return { daemon, decisions }
}

describe.skipIf(!IS_ROOT)('Daemon over IPv6', () => {
  it('a verified IPv6 connect ends in verified6 and cuts that source off over IPv6 only', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    children.push(await startService(a.sensor, SERVICE))
    expect(await tcpConnect(a.peer, a.sensor.ipv6, SERVICE)).toBe('connected')
    const { decisions } = await start(net)
    const src = canonicalIp(a.peer.ipv6) // fd52:43dd::2

    expect(await tcpConnect(a.peer, a.sensor.ipv6, TRIPWIRE)).toMatch(/connected|reset/)
    const blocked = await waitFor('a block decision', () => decisions().find((d) => d.reason === 'blocked'))
    expect(blocked).toMatchObject({ action: 'block', src, family: 6, verified: true, ttlMs: 3_600_000 })
    await waitFor('the verified6 element', async () => ((await nftElements(net!.sensorExec, ['verified6'])).includes(src) ? true : undefined))
    expect(await nftElements(net.sensorExec, ['verified4', 'spoofable4', 'fleet4'])).toEqual([])

    expect(await tcpConnect(a.peer, a.sensor.ipv6, SERVICE)).toBe('timeout')
    // The same peer over IPv4, and another peer over IPv6, still get through.
    expect(await tcpConnect(a.peer, a.sensor.ipv4, SERVICE)).toBe('connected')
    expect(await tcpConnect(b.peer, b.sensor.ipv6, SERVICE)).toBe('connected')
  })

  it('forged IPv6 sources that are the host, its gateway or an established peer are refused, from the host facts', async () => {
    // The sensor's IPv6 default route goes via peer 0 (fd52:43dd::2): its gateway.
    net = await createTestNet({ peers: 2, defaultRoute: true })
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    children.push(await startService(b.sensor, SERVICE))
    // Peer 1 holds an established IPv6 connection to the sensor: an admin's session.
    children.push(await holdConnection(b.peer, b.sensor.ipv6, SERVICE))
    const { decisions } = await start(net, { block: 'all' })

    const syn = (link: typeof a, src: string, srcPort: number): Uint8Array =>
      probeFrame(link.peer, link.sensor, { family: 6, proto: 'tcp', src, srcPort, dstPort: TRIPWIRE })
    sendFrames(a.peer, [
      syn(a, a.sensor.ipv6, 40001), // the sensor's own address
      syn(a, a.peer.ipv6, 40002), // its IPv6 gateway
    ])
    sendFrames(b.peer, [syn(b, b.peer.ipv6, 40003)]) // the established peer
    const want: Record<string, string> = {
      [canonicalIp(a.sensor.ipv6)]: 'guard:self',
      [canonicalIp(a.peer.ipv6)]: 'guard:gateway',
      [canonicalIp(b.peer.ipv6)]: 'guard:peer',
    }
    await waitFor('three guard decisions', () => (Object.keys(want).every((src) => decisions().some((d) => d.src === src)) ? true : undefined))
    for (const [src, reason] of Object.entries(want)) {
      const ds = decisions().filter((d) => d.src === src)
      expect(ds.map((d) => [d.action, d.reason])).toEqual([['none', reason]])
    }
    // The control: a spoofable IPv6 source that is none of those is blocked under block 'all'
    // (off-link, routed back through the link it came in on: nothing says it is forged).
    const control = 'fd52:43dd:99::99'
    sendFrames(a.peer, [syn(a, control, 40004)])
    await waitFor('the control block', () => decisions().find((d) => d.src === control && d.reason === 'blocked'))
    await waitFor('the control element', async () => ((await nftElements(net!.sensorExec, ['spoofable6'])).length > 0 ? true : undefined))
    expect(await nftElements(net.sensorExec)).toEqual([control])
  })
})
