/**
 * Attribution with real tools in namespaces. The sensor namespace has two links
 * (198.18.0.0/24 to peer 0, 198.18.1.0/24 to peer 1) and, in the first part, no
 * default route: an address on neither link has no route back.
 *
 * - Peer 0 scans for real (nmap, every TCP scan type, UDP, IPv4 and IPv6): no hit from
 *   its address is ever `forged` — the false-accusation count is measured and must be 0.
 * - nmap -S (IPv6) and hping3 -a (IPv4) with an on-link address nobody holds: `forged`,
 *   `link:no-answer` (the sensor's own ARP/NS question goes unanswered, whatever the
 *   forger's ARP request planted in the neighbour table).
 * - hping3 -a with peer 1's address, sent on link 0: `forged`, `rpf:other-interface`.
 * - nmap -D RND:4: the random decoys are `forged` (`rpf:no-route`), the real sender not.
 * - The daemon with --block all (real nft): a forged source is reported `forged` and
 *   never blocked, a real scanner from the same link is blocked, and forged packets
 *   claiming the gateway and the host itself raise `forgery` events.
 * - Backscatter: a forged SYN that claims a neighbour's address makes the tripwire
 *   listener send its SYN-ACK to that neighbour, whose kernel answers with a RST: a real
 *   packet from the neighbour (`link:match`). With --block all the neighbour is never
 *   blocked for it; the forger, scanning for real afterwards, is.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { attachAttributor } from '../../lib/attribution/attach.js'
import type { Attributor } from '../../lib/attribution/attributor.js'
import type { Attributed } from '../../lib/attribution/types.js'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, ForgeryEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun } from '../../lib/responders/run.js'
import { open, type Sensor } from '../../lib/sensor.js'
import type { Hit } from '../../lib/types.js'
import { createBridgeNet, type NetnsHost } from '../../lib/lab/netns.js'
import { createTestNet, IS_ROOT, type Link, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftElements } from '../helpers/nft.js'
import { canonicalIp, collectHits } from '../helpers/probes.js'
import { waitFor } from '../helpers/wait.js'

warnIfNotRoot('test/privileged/attribution.test.ts')

const NMAP = ['-n', '-Pn', '--max-retries', '0', '-T5', '--initial-rtt-timeout', '50ms', '--max-rtt-timeout', '100ms']

/** Real scans from peer 0, one port each: the scan types whose packets carry the sender's own address. */
const REAL: ReadonlyArray<{ flag: string; port: number; proto: 'tcp' | 'udp' }> = [
  { flag: '-sS', port: 2001, proto: 'tcp' },
  { flag: '-sT', port: 2002, proto: 'tcp' },
  { flag: '-sF', port: 2003, proto: 'tcp' },
  { flag: '-sN', port: 2004, proto: 'tcp' },
  { flag: '-sX', port: 2005, proto: 'tcp' },
  { flag: '-sA', port: 2006, proto: 'tcp' },
  { flag: '-sM', port: 2007, proto: 'tcp' },
  { flag: '-sU', port: 2008, proto: 'udp' },
]
const FORGED_S = 2010
const FORGED_A = 2011
const DECOYS = 2012
const SENTINEL = 2013

async function run(link: Link, cmd: string, args: readonly string[]): Promise<void> {
  const r = await link.peer.exec(cmd, args, { timeoutMs: 60_000 })
  // hping3 exits 1 for "sent, no reply": a forged source gets no reply by design.
  const ok = cmd === 'hping3' ? [0, 1] : [0]
  if (!ok.includes(r.code)) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
}

/** The settled answer for a hit (a link question may be open for a moment). */
function settled(attributor: Attributor, hit: Hit): Promise<Attributed> {
  return waitFor(`the answer about ${hit.src}`, () => {
    const a = attributor.answerFor(hit)
    return a.pending ? undefined : a
  })
}

describe.skipIf(!IS_ROOT)('attribution with real tools', () => {
  let net: TestNet
  let a: Link
  let b: Link
  let sensor: Sensor
  let attributor: Attributor
  const hits: Hit[] = []
  const answers = new Map<Hit, Attributed>()

  beforeAll(async () => {
    net = await createTestNet({ peers: 2 })
    ;[a, b] = net.links as [Link, Link]
    sensor = await open({
      ports: [...REAL.map((s) => ({ port: s.port, proto: s.proto })), FORGED_S, FORGED_A, DECOYS, SENTINEL],
      netns: net.sensorPath,
      listen: true,
    })
    attributor = attachAttributor(sensor, { netns: net.sensorPath })
    for (const family of [4, 6] as const) {
      const target = family === 4 ? a.sensor.ipv4 : a.sensor.ipv6
      const v6 = family === 6 ? ['-6'] : []
      for (const s of REAL) await run(a, 'nmap', [...v6, ...NMAP, s.flag, '-p', String(s.port), target])
    }
    // An on-link address nobody holds: nmap -S over IPv6, hping3 -a over IPv4 (nmap 7.93
    // refuses an IPv4 -S address that is not the interface's: "failed to determine route").
    await run(a, 'nmap', ['-6', ...NMAP, '-sS', '-S', 'fd52:43dd:0::77', '-e', a.peer.ifname, '-p', String(FORGED_S), a.sensor.ipv6])
    await run(a, 'hping3', ['-q', '-S', '-c', '1', '-a', '198.18.0.77', '-p', String(FORGED_S), a.sensor.ipv4])
    // Peer 1's address, sent on link 0.
    await run(a, 'hping3', ['-q', '-S', '-c', '1', '-a', b.peer.ipv4, '-p', String(FORGED_A), a.sensor.ipv4])
    await run(a, 'nmap', [...NMAP, '-sS', '-D', 'RND:4', '-p', String(DECOYS), a.sensor.ipv4])
    // The sentinel: a connect after everything else, from the real sender.
    await run(a, 'nmap', [...NMAP, '-sT', '-p', String(SENTINEL), a.sensor.ipv4])
    const got = await collectHits(sensor, (hs) => hs.some((h) => h.dstPort === SENTINEL && h.verified), 60_000)
    expect(got.matched).toBe(true)
    hits.push(...got.hits)
    for (const h of hits) {
      void h.attribution // asks the attributor, as the daemon’s loop does
      answers.set(h, await settled(attributor, h))
    }
  }, 240_000)

  afterAll(async () => {
    attributor?.close()
    await sensor?.close()
    await net?.destroy()
  })

  const of = (pred: (h: Hit) => boolean): Array<[Hit, Attributed]> => [...answers].filter(([h]) => pred(h))

  it('a real scanner is never called forged: every scan type, both families', () => {
    const real = new Set([canonicalIp(a.peer.ipv4), canonicalIp(a.peer.ipv6)])
    const mine = of((h) => real.has(h.src))
    const counts = { verified: 0, plausible: 0, forged: 0 }
    for (const [, ans] of mine) counts[ans.attribution]++
    // Every scan type's probe, in both families (plus the decoy scan's real probe and the sentinel).
    for (const family of [4, 6]) {
      for (const s of REAL) expect(mine.some(([h]) => h.family === family && h.dstPort === s.port)).toBe(true)
    }
    expect(counts.forged).toBe(0)
    expect(counts.verified).toBeGreaterThan(0)
    expect(counts.plausible).toBeGreaterThan(0)
    // Plausible for a reason: the link layer and the route back vouch for it.
    for (const [h, ans] of mine) {
      if (ans.attribution !== 'plausible' || h.kind === 'connect') continue
      expect(ans.evidence).toContain('link:match')
      expect(ans.evidence).toContain('rpf:pass')
    }
  })

  it('nmap -S / hping3 -a with an on-link address nobody holds: forged by the link layer (IPv6 and IPv4)', () => {
    for (const unused of ['198.18.0.77', canonicalIp('fd52:43dd:0::77')]) {
      const mine = of((h) => h.src === unused && h.dstPort === FORGED_S)
      expect(mine.length).toBeGreaterThan(0)
      for (const [, ans] of mine) {
        expect(ans.attribution).toBe('forged')
        expect(ans.evidence).toContain('link:no-answer')
      }
    }
  })

  it('hping3 -a with another link’s address: forged by the reverse path', () => {
    const mine = of((h) => h.dstPort === FORGED_A)
    expect(mine.map(([h]) => h.src)).toContain(b.peer.ipv4)
    for (const [h, ans] of mine) {
      expect(h.src).toBe(b.peer.ipv4)
      expect(ans.attribution).toBe('forged')
      expect(ans.evidence).toContain('rpf:other-interface')
    }
  })

  it('nmap -D RND: the decoys are forged (no route back), the real sender is not', () => {
    const mine = of((h) => h.dstPort === DECOYS && h.kind === 'syn')
    const decoys = mine.filter(([h]) => h.src !== a.peer.ipv4)
    expect(new Set(decoys.map(([h]) => h.src)).size).toBe(4)
    for (const [, ans] of decoys) {
      expect(ans.attribution).toBe('forged')
      expect(ans.evidence).toContain('rpf:no-route')
    }
    const real = mine.filter(([h]) => h.src === a.peer.ipv4)
    expect(real.length).toBeGreaterThan(0)
    for (const [, ans] of real) expect(ans.attribution).not.toBe('forged')
  })

  it('counts what it did', () => {
    const s = attributor.stats()
    expect(s.forged).toBeGreaterThan(0)
    expect(s.checks).toBeGreaterThan(0)
  })
})

describe.skipIf(!IS_ROOT)('the daemon acts on attribution', () => {
  it('--block all: a forged source is reported, never blocked; a real one is; forging the gateway or the host raises forgery events', async () => {
    // Peer 0 is the gateway (default route); the forger and the real scanner sit on link 1.
    const net = await createTestNet({ peers: 2, defaultRoute: true })
    const events: PortanoiaEvent[] = []
    let daemon: Daemon | undefined
    try {
      const [a, b] = net.links as [Link, Link]
      daemon = await Daemon.compose({
        ports: ['2222/tcp', '2223/tcp'],
        netns: net.sensorNs,
        firewall: new NftablesResponder({ run: netnsRun(net.sensorNs) }),
        policy: { block: 'all' },
        statsIntervalMs: 0,
        onEvent: (e) => events.push(e),
        onLog: () => {},
      })
      const decisions = (): DecisionEvent[] => events.filter((e): e is DecisionEvent => e.type === 'decision')
      const forgeries = (): ForgeryEvent[] => events.filter((e): e is ForgeryEvent => e.type === 'forgery')

      // On link 1: an address of link 1 nobody holds, the gateway's (on link 0), the host's own.
      await run(b, 'hping3', ['-q', '-S', '-c', '1', '-a', '198.18.1.77', '-p', '2222', b.sensor.ipv4])
      await run(b, 'hping3', ['-q', '-S', '-c', '1', '-a', a.peer.ipv4, '-p', '2222', b.sensor.ipv4])
      await run(b, 'hping3', ['-q', '-S', '-c', '1', '-a', a.sensor.ipv4, '-p', '2222', b.sensor.ipv4])
      const forged = await waitFor('the forged decision', () => decisions().find((d) => d.src === '198.18.1.77' && d.reason === 'forged'))
      expect(forged).toMatchObject({ action: 'report', attribution: 'forged' })
      expect(forged.evidence).toContain('link:no-answer')
      const gateway = await waitFor('the gateway forgery', () => forgeries().find((f) => f.src === a.peer.ipv4))
      expect(gateway).toMatchObject({ guard: 'gateway', interface: b.sensor.ifname, srcMac: b.peer.mac })
      expect(gateway.evidence).toContain('rpf:other-interface')
      const self = await waitFor('the self forgery', () => forgeries().find((f) => f.src === a.sensor.ipv4))
      expect(self).toMatchObject({ guard: 'self' })

      // The sentinel: a real SYN scan from peer 1 after the forged ones is blocked.
      await run(b, 'nmap', [...NMAP, '-sS', '-p', '2223', b.sensor.ipv4])
      const blocked = await waitFor('the real scanner’s block', () => decisions().find((d) => d.src === b.peer.ipv4 && d.reason === 'blocked'))
      expect(blocked.attribution).toBe('plausible')
      await waitFor('its nft element', async () => ((await nftElements(net.sensorExec)).includes(b.peer.ipv4) ? true : undefined))
      const elements = await nftElements(net.sensorExec)
      expect(elements).not.toContain('198.18.1.77')
      expect(elements).not.toContain(a.peer.ipv4)
      expect(elements).not.toContain(a.sensor.ipv4)
      expect(decisions().filter((d) => d.src === '198.18.1.77').map((d) => d.action)).not.toContain('block')
    } finally {
      await daemon?.close()
      await net.destroy()
    }
  }, 180_000)
})

describe.skipIf(!IS_ROOT)('a reset is an answer, not a probe', () => {
  it('--block all: a forged SYN claiming a neighbour draws its RST; the neighbour is not blocked, the forger scanning for real is', async () => {
    // One switched segment: the sensor, the forger and an innocent neighbour.
    const net = await createBridgeNet({ prefix: 'pnt-', hosts: 3 })
    const events: PortanoiaEvent[] = []
    let daemon: Daemon | undefined
    try {
      const [host, forger, neighbour] = net.hosts as [NetnsHost, NetnsHost, NetnsHost]
      daemon = await Daemon.compose({
        ports: ['2222/tcp', '2223/tcp'],
        netns: host.ns,
        firewall: new NftablesResponder({ run: netnsRun(host.ns) }),
        policy: { block: 'all' },
        statsIntervalMs: 0,
        hits: true,
        onEvent: (e) => events.push(e),
        onLog: () => {},
      })
      const decisions = (): DecisionEvent[] => events.filter((e): e is DecisionEvent => e.type === 'decision')
      const hitsFrom = (src: string, kind: string): number =>
        events.filter((e) => e.type === 'hit' && e.src === src && e.kind === kind).length

      // The listener's SYN-ACK goes to the neighbour, who never sent a SYN: it resets.
      const r = await forger.exec('hping3', ['-q', '-S', '-c', '3', '-i', 'u20000', '-a', neighbour.ipv4, '-p', '2222', host.ipv4], { timeoutMs: 30_000 })
      if (![0, 1].includes(r.code)) throw new Error(`hping3 failed (${r.code}): ${r.stderr}`)
      await waitFor('the neighbour’s RST', () => (hitsFrom(neighbour.ipv4, 'rst') > 0 ? true : undefined))

      // The sentinel: the forger scans for real afterwards, and is blocked.
      const n = await forger.exec('nmap', [...NMAP, '-sS', '-p', '2223', host.ipv4], { timeoutMs: 60_000 })
      if (n.code !== 0) throw new Error(`nmap failed (${n.code}): ${n.stderr}`)
      await waitFor('the forger’s block', () => decisions().find((d) => d.src === forger.ipv4 && d.reason === 'blocked'))
      await waitFor('its nft element', async () => ((await nftElements(host.exec)).includes(forger.ipv4) ? true : undefined))

      expect(await nftElements(host.exec)).not.toContain(neighbour.ipv4)
      const about = decisions().filter((d) => d.src === neighbour.ipv4)
      expect(about.map((d) => d.action)).not.toContain('block')
      // Still seen and said: the forged SYNs are reported as forged.
      expect(about.some((d) => d.reason === 'forged')).toBe(true)
      const ping = await neighbour.exec('ping', ['-c', '1', '-W', '2', host.ipv4])
      expect(ping.code).toBe(0)
    } finally {
      await daemon?.close()
      await net.destroy()
    }
  }, 180_000)
})
