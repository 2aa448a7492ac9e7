/**
 * nmap against the sensor, end to end: for IPv4 and IPv6, every scan type nmap has
 * for TCP, UDP and SCTP is run from the attacker namespace against its own tripwire
 * port in the sensor namespace, and each must come back with the kind the wire
 * shows, the attacker as source, the sensor's address and port as destination, and
 * `verified` only for the completed handshake. One sensor per family; scans run one
 * after another with tight nmap timings. Each scan gets a port of its own so hits
 * can be told apart by port even when a straggler (the RST an attacker's kernel
 * sends after a SYN/ACK) arrives late.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { open, type Sensor } from '../../lib/sensor.js'
import type { Hit, ScanKind } from '../../lib/types.js'
import { createTestNet, IS_ROOT, warnIfNotRoot, type Link, type TestNet } from '../helpers/netns.js'
import { canonicalIp, collectFor, collectHits } from '../helpers/probes.js'

warnIfNotRoot('test/privileged/sensor-nmap.test.ts')

interface Scan {
  flag: string
  port: number
  proto: 'tcp' | 'udp' | 'sctp'
  /** The kind the scan itself must produce. */
  kind: ScanKind
  /**
   * Every kind the scan may produce on its port: the probe's kind plus what the
   * attacker's own stack adds (the RST a raw SYN scanner's kernel sends back after our
   * listener's SYN/ACK; the handshake's last ACK of a connect).
   */
  allowed: ScanKind[]
}

const SCANS: Scan[] = [
  { flag: '-sT', port: 2001, proto: 'tcp', kind: 'connect', allowed: ['syn', 'ack', 'connect', 'rst', 'maimon'] },
  { flag: '-sS', port: 2002, proto: 'tcp', kind: 'syn', allowed: ['syn', 'rst'] },
  { flag: '-sF', port: 2003, proto: 'tcp', kind: 'fin', allowed: ['fin'] },
  { flag: '-sN', port: 2004, proto: 'tcp', kind: 'null', allowed: ['null'] },
  { flag: '-sX', port: 2005, proto: 'tcp', kind: 'xmas', allowed: ['xmas'] },
  { flag: '-sA', port: 2006, proto: 'tcp', kind: 'ack', allowed: ['ack'] },
  { flag: '-sW', port: 2007, proto: 'tcp', kind: 'ack', allowed: ['ack'] },
  { flag: '-sM', port: 2008, proto: 'tcp', kind: 'maimon', allowed: ['maimon'] },
  { flag: '-sU', port: 2009, proto: 'udp', kind: 'udp', allowed: ['udp'] },
  { flag: '-sY', port: 2905, proto: 'sctp', kind: 'sctp-init', allowed: ['sctp-init'] },
  { flag: '-sZ', port: 2906, proto: 'sctp', kind: 'sctp-cookie-echo', allowed: ['sctp-cookie-echo'] },
]

// Fast enough for a test, still one real probe per scan: no retries, short RTT
// guesses (the namespaces answer in microseconds), no host discovery, no DNS.
const NMAP_TIMING = ['-n', '-Pn', '--max-retries', '0', '-T5', '--initial-rtt-timeout', '50ms', '--max-rtt-timeout', '100ms']

function expectedKinds(hits: readonly Hit[]): boolean {
  return SCANS.every((s) => hits.some((h) => h.dstPort === s.port && h.proto === s.proto && h.kind === s.kind))
}

describe.skipIf(!IS_ROOT)('sensor vs nmap', () => {
  let net: TestNet
  let link: Link

  beforeAll(async () => {
    net = await createTestNet()
    link = net.links[0]!
  })

  afterAll(async () => {
    await net?.destroy()
  })

  for (const family of [4, 6] as const) {
    describe(`IPv${family}`, () => {
      let sensor: Sensor
      const hits: Hit[] = []

      beforeAll(async () => {
        sensor = await open({
          ports: SCANS.map((s) => ({ port: s.port, proto: s.proto })),
          netns: net.sensorPath,
          listen: true,
        })
        const target = family === 4 ? link.sensor.ipv4 : link.sensor.ipv6
        for (const scan of SCANS) {
          const args = [...(family === 6 ? ['-6'] : []), ...NMAP_TIMING, '-p', String(scan.port), scan.flag, target]
          const res = await link.peer.exec('nmap', args, { timeoutMs: 30_000 })
          if (res.code !== 0) throw new Error(`nmap ${args.join(' ')} failed (${res.code}): ${res.stderr}`)
        }
        const got = await collectHits(sensor, expectedKinds, 5000)
        hits.push(...got.hits)
        // Late stragglers (an attacker RST, a duplicate) would land here; the per-port
        // checks below must hold for them too.
        hits.push(...(await collectFor(sensor, 150)))
      }, 120_000)

      afterAll(async () => {
        await sensor?.close()
      })

      for (const scan of SCANS) {
        it(`nmap ${scan.flag} → ${scan.kind}`, () => {
          const attacker = canonicalIp(family === 4 ? link.peer.ipv4 : link.peer.ipv6)
          const target = canonicalIp(family === 4 ? link.sensor.ipv4 : link.sensor.ipv6)
          const mine = hits.filter((h) => h.dstPort === scan.port && h.proto === scan.proto)
          expect(mine.map((h) => h.kind)).toContain(scan.kind)
          for (const h of mine) {
            expect(scan.allowed).toContain(h.kind)
            expect(h.src).toBe(attacker)
            expect(h.dst).toBe(target)
            expect(h.family).toBe(family)
            expect(h.srcPort).toBeGreaterThan(0)
            expect(h.verified).toBe(h.kind === 'connect')
            if (h.kind === 'connect') {
              expect(h.tcpFlags).toBe(0x10)
            } else {
              expect(h.interface).toBe(link.sensor.ifname)
              expect(h.ttl).toBeGreaterThan(0)
            }
          }
          if (scan.proto === 'sctp') {
            expect(mine.every((h) => h.sctpChunk === (scan.kind === 'sctp-init' ? 1 : 10))).toBe(true)
          }
          if (scan.flag === '-sT') {
            // The verified connect and the SYN that opened it come from the same socket.
            // The capture thread holds the connect until the handshake's last ACK has
            // been walked, so the three arrive in wire order.
            const connect = mine.find((h) => h.kind === 'connect')!
            const sameSocket = mine.filter((h) => h.srcPort === connect.srcPort).map((h) => h.kind)
            expect(sameSocket.slice(0, 3)).toEqual(['syn', 'ack', 'connect'])
          }
        })
      }

      it('reports nothing on ports that were not scanned, and nothing twice', () => {
        const scanned = new Set(SCANS.map((s) => `${s.port}/${s.proto}`))
        for (const h of hits) expect(scanned.has(`${h.dstPort}/${h.proto}`)).toBe(true)
        // One scan probe, one hit: the probe kinds (not the attacker's RST follow-ups)
        // each appear once per port. (The UDP port is one nmap has no payloads for: on
        // 5353 it would send several mDNS queries, each a hit of its own.)
        for (const scan of SCANS) {
          const probes = hits.filter((h) => h.dstPort === scan.port && h.proto === scan.proto && h.kind === scan.kind)
          expect(probes.map((h) => `${scan.flag} from ${h.srcPort}`)).toHaveLength(1)
        }
        const stats = sensor.stats()
        expect(stats.hits).toBeGreaterThanOrEqual(hits.length)
        expect(stats.connects).toBe(1)
        expect(stats.ringDrops).toBe(0)
      })
    })
  }
})
