/**
 * IP protocol tripwires end to end: a sensor watching '47/ip' and '50/ip' (and one TCP
 * port for the sentinel) sees nmap -sO's probes of those protocols as hits of kind
 * `ip-proto` — IPv4 and IPv6 — and nothing of the protocols it does not watch (103, and
 * ICMP, which nmap -sO also probes). A crafted IPv6 packet whose protocol sits behind
 * extension headers is seen by its last next header. The sentinel (a TCP connect after
 * everything else) proves that the unwatched probes had their chance to arrive.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { open, type Sensor } from '../../lib/sensor.js'
import type { Hit } from '../../lib/types.js'
import { createTestNet, IS_ROOT, type Link, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { canonicalIp, collectHits, probeFrame, sendFrames } from '../helpers/probes.js'

warnIfNotRoot('test/privileged/ip-proto.test.ts')

const NMAP = ['-n', '-Pn', '--max-retries', '0', '-T5', '--initial-rtt-timeout', '50ms', '--max-rtt-timeout', '100ms']
const SENTINEL = 2222

describe.skipIf(!IS_ROOT)('IP protocol tripwires', () => {
  let net: TestNet
  let link: Link
  let sensor: Sensor
  const hits: Hit[] = []

  beforeAll(async () => {
    net = await createTestNet()
    link = net.links[0]!
    sensor = await open({ ports: [`${SENTINEL}/tcp`, '47/ip', '50/ip'], netns: net.sensorPath, listen: true })
    for (const target of [link.sensor.ipv4, link.sensor.ipv6]) {
      const v6 = target.includes(':') ? ['-6'] : []
      const r = await link.peer.exec('nmap', [...v6, ...NMAP, '-sO', '-p', '1,47,50,103', target], { timeoutMs: 60_000 })
      if (r.code !== 0) throw new Error(`nmap -sO ${target} failed (${r.code}): ${r.stderr}`)
    }
    // GRE behind a hop-by-hop and a destination-options header.
    sendFrames(link.peer, [
      probeFrame(link.peer, link.sensor, {
        family: 6,
        proto: 'ip',
        ipProto: 47,
        srcPort: 0,
        dstPort: 0,
        payload: new Uint8Array(8),
        ipv6ExtHeaders: [{ type: 'hop-by-hop' }, { type: 'destination' }],
      }),
    ])
    const r = await link.peer.exec('nmap', [...NMAP, '-sT', '-p', String(SENTINEL), link.sensor.ipv4], { timeoutMs: 60_000 })
    if (r.code !== 0) throw new Error(`nmap -sT failed (${r.code}): ${r.stderr}`)
    const got = await collectHits(sensor, (hs) => hs.some((h) => h.kind === 'connect'), 60_000)
    expect(got.matched).toBe(true)
    hits.push(...got.hits)
  }, 180_000)

  afterAll(async () => {
    await sensor?.close()
    await net?.destroy()
  })

  for (const family of [4, 6] as const) {
    it(`nmap -sO over IPv${family}: the watched protocols are hits of kind ip-proto, the others are not seen`, () => {
      const src = canonicalIp(family === 4 ? link.peer.ipv4 : link.peer.ipv6)
      const mine = hits.filter((h) => h.family === family && h.kind === 'ip-proto' && h.src === src)
      expect(new Set(mine.map((h) => h.dstPort))).toEqual(new Set([47, 50]))
      for (const h of mine) {
        expect(h.proto).toBe('ip')
        expect(h.srcPort).toBe(0)
        expect(h.dst).toBe(canonicalIp(family === 4 ? link.sensor.ipv4 : link.sensor.ipv6))
        expect(h.interface).toBe(link.sensor.ifname)
      }
    })
  }

  it('the protocol behind IPv6 extension headers is the last next header', () => {
    expect(hits.some((h) => h.family === 6 && h.kind === 'ip-proto' && h.dstPort === 47 && h.extHeaders)).toBe(true)
  })

  it('nothing of an unwatched protocol, and nothing but the sentinel on TCP', () => {
    for (const h of hits) {
      if (h.kind === 'ip-proto') expect([47, 50]).toContain(h.dstPort)
      else expect(h.proto === 'tcp' && h.dstPort === SENTINEL).toBe(true)
    }
    const stats = sensor.stats()
    expect(stats.hits).toBeGreaterThanOrEqual(hits.length)
  })
})
