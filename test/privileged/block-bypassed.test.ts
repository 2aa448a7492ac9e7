/**
 * Proof that a block works (issue 12), with the real nft of a test namespace that
 * routes between two peers: a scanner blocked on the input hook still reaches the
 * other peer through the sensor, because the drop rules do not cover the forward
 * path. The capture sees the forwarded packet, and the daemon raises one
 * `block-bypassed` event (path `forward`) for the address — once: a second forwarded
 * connect, in a later policy window (so the engine reports it again), raises none,
 * which the sentinel (the second scanner's own bypass, sent
 * after it) proves without waiting on the clock.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { BlockBypassedEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun, netnsStream } from '../../lib/responders/run.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftElements } from '../helpers/nft.js'
import { tcpConnect } from '../helpers/tcp.js'
import { waitFor } from '../helpers/wait.js'

warnIfNotRoot('test/privileged/block-bypassed.test.ts')

const TRIPWIRE = 2222

let net: TestNet | undefined
const daemons: Daemon[] = []

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close()
  await net?.destroy()
  net = undefined
})

describe.skipIf(!IS_ROOT)('block-bypassed', () => {
  it('a blocked scanner routed through the host while only the input hook drops: one event per address, with the path', async () => {
    net = await createTestNet({ peers: 2 })
    const [x, y] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    expect((await net.sensorExec('sysctl', ['-w', 'net.ipv4.ip_forward=1'])).code).toBe(0)
    expect((await x.peer.exec('ip', ['route', 'add', '198.18.1.0/24', 'via', x.sensor.ipv4])).code).toBe(0)
    expect((await y.peer.exec('ip', ['route', 'add', '198.18.0.0/24', 'via', y.sensor.ipv4])).code).toBe(0)
    const events: PortanoiaEvent[] = []
    const ns = net.sensorNs
    const daemon = await Daemon.compose({
      ports: [`${TRIPWIRE}/tcp`],
      netns: ns,
      firewall: new NftablesResponder({ run: netnsRun(ns), monitor: netnsStream(ns) }),
      statsIntervalMs: 0,
      // A short window: x's second forwarded connect below opens a new one, so the
      // engine reports it again and only the daemon's once-per-address rule holds it back.
      policy: { windowMs: 1000 },
      onEvent: (e) => events.push(e),
    })
    daemons.push(daemon)
    const bypassed = (): BlockBypassedEvent[] => events.filter((e): e is BlockBypassedEvent => e.type === 'block-bypassed')

    // Both peers scan the sensor and are blocked on input.
    for (const p of [x, y]) {
      await tcpConnect(p.peer, p.sensor.ipv4, TRIPWIRE)
      await waitFor(`the block of ${p.peer.ipv4}`, async () => ((await nftElements(net!.sensorExec, ['verified4'])).includes(p.peer.ipv4) ? true : undefined))
    }
    expect(await tcpConnect(x.peer, x.sensor.ipv4, TRIPWIRE, 800)).toBe('timeout')
    expect(bypassed()).toEqual([])

    // x reaches y through the sensor: nothing listens there, and the RST comes back — the block did not hold.
    expect(await tcpConnect(x.peer, y.peer.ipv4, TRIPWIRE)).toMatch(/refused|reset/)
    const first = await waitFor('the bypass of x', () => bypassed().find((e) => e.src === x.peer.ipv4))
    expect(first).toMatchObject({ path: 'forward', family: 4, dst: y.peer.ipv4, dstPort: TRIPWIRE, proto: 'tcp' })
    expect(Date.parse(first.blockedUntil ?? '')).toBeGreaterThan(Date.now())

    // Once per address: x again in a later window, then y's own bypass as the sentinel.
    await new Promise((r) => setTimeout(r, 1500))
    expect(await tcpConnect(x.peer, y.peer.ipv4, TRIPWIRE)).toMatch(/refused|reset/)
    expect(await tcpConnect(y.peer, x.peer.ipv4, TRIPWIRE)).toMatch(/refused|reset/)
    await waitFor('the bypass of y (sentinel)', () => bypassed().find((e) => e.src === y.peer.ipv4))
    expect(bypassed().map((e) => e.src)).toEqual([x.peer.ipv4, y.peer.ipv4])
  }, 120_000)
})
