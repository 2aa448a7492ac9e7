/**
 * Unit tests for lib/bpf/filter.ts: the compiled tripwire filter runs in the TS VM
 * against frames crafted by lib/lab/frames.ts, after the same untagging the kernel
 * does before AF_PACKET sees them (contextFromFrame). Covers both IP families and
 * all three transports, wrong protocol, outgoing packets, IPv4 options, IPv6
 * extension chains (and the walk limit), VLAN and QinQ, fragments, link-layer
 * agnosticism, the port-space edges, and the instruction budget with 10,000 ports.
 */

import { describe, expect, test } from 'vitest'
import { decode } from '../../lib/bpf/asm.js'
import type { SockFilter } from '../../lib/bpf/asm.js'
import { IPV6_EXT_HEADER_LIMIT, compileFilter } from '../../lib/bpf/filter.js'
import { parsePorts, portInSet } from '../../lib/bpf/ports.js'
import { PACKET_BROADCAST, PACKET_OTHERHOST, PACKET_OUTGOING, contextFromFrame, contextFromPacket, runFilter, runFilterTrace } from '../../lib/bpf/vm.js'
import { ACK, FIN, buildFrame, buildPacket, fragmentFrame } from '../../lib/lab/frames.js'
import type { Ipv6ExtHeader, ProbeSpec } from '../../lib/lab/frames.js'
import { isPortanoiaError } from '../../lib/errors.js'
import type { PortRange, Proto } from '../../lib/types.js'

const SNAP = 512
const set = parsePorts(['2222/tcp', '9000-9010/udp', '2905/sctp', 1, 65535, '65535/udp', '1/sctp', '5060/udp', '5060/sctp'])
const compiled = compileFilter(set)
const prog = decode(compiled.program)

const v4 = { src: '198.18.0.1', dst: '198.18.0.2', srcPort: 40000 } as const
const v6 = { src: 'fd52:43dd::1', dst: 'fd52:43dd::2', srcPort: 40000 } as const

function verdict(frame: Uint8Array, p: readonly SockFilter[] = prog, pktType = 0): number {
  return runFilter(p, contextFromFrame(frame, { pktType }))
}

function probe(family: 4 | 6, proto: Proto, dstPort: number, extra: Partial<ProbeSpec> = {}): Uint8Array {
  return buildFrame({ ...(family === 4 ? v4 : v6), proto, dstPort, ...extra })
}

describe('basic matching', () => {
  test('the program fits and is exact', () => {
    expect(compiled.exact).toBe(true)
    expect(compiled.instructions).toBe(compiled.program.length / 8)
    expect(compiled.instructions).toBeLessThan(400)
    expect(compiled.matched).toEqual(set)
  })

  for (const family of [4, 6] as const) {
    describe(`IPv${family}`, () => {
      test.each([
        ['tcp', 2222],
        ['udp', 9000],
        ['udp', 9005],
        ['udp', 9010],
        ['sctp', 2905],
        ['udp', 5060],
        ['sctp', 5060],
      ] as const)('%s/%i to a tripwire is accepted with snapLen', (proto, port) => {
        expect(verdict(probe(family, proto, port))).toBe(SNAP)
      })

      test.each([
        ['tcp', 22],
        ['tcp', 2221],
        ['tcp', 2223],
        ['udp', 8999],
        ['udp', 9011],
        ['sctp', 2904],
      ] as const)('%s/%i (not a tripwire) is dropped', (proto, port) => {
        expect(verdict(probe(family, proto, port))).toBe(0)
      })

      test('wrong protocol is dropped', () => {
        expect(verdict(probe(family, 'udp', 2222))).toBe(0)
        expect(verdict(probe(family, 'sctp', 2222))).toBe(0)
        expect(verdict(probe(family, 'tcp', 9005))).toBe(0)
        expect(verdict(probe(family, 'tcp', 2905))).toBe(0)
      })

      test('every TCP flag combination and SCTP chunk reaches user space', () => {
        for (const tcpFlags of [0, FIN, ACK, FIN | ACK, 0xff]) expect(verdict(probe(family, 'tcp', 2222, { tcpFlags }))).toBe(SNAP)
        for (const sctpChunk of [1, 10, 6]) expect(verdict(probe(family, 'sctp', 2905, { sctpChunk }))).toBe(SNAP)
      })

      test('our own outgoing packets are dropped; broadcast and otherhost are not', () => {
        const f = probe(family, 'tcp', 2222)
        expect(verdict(f, prog, PACKET_OUTGOING)).toBe(0)
        expect(verdict(f, prog, PACKET_BROADCAST)).toBe(SNAP)
        expect(verdict(f, prog, PACKET_OTHERHOST)).toBe(SNAP)
      })

      test('one VLAN tag (moved out of band by the kernel) and QinQ (inner tag in-band)', () => {
        expect(verdict(probe(family, 'tcp', 2222, { vlan: [{ id: 10 }] }))).toBe(SNAP)
        expect(verdict(probe(family, 'tcp', 22, { vlan: [{ id: 10 }] }))).toBe(0)
        const qinq = probe(family, 'udp', 9001, { vlan: [{ id: 100, tpid: 0x88a8 }, { id: 200 }] })
        expect(contextFromFrame(qinq).protocol).toBe(0x8100)
        expect(verdict(qinq)).toBe(SNAP)
        expect(verdict(probe(family, 'udp', 9011, { vlan: [{ id: 100, tpid: 0x88a8 }, { id: 200 }] }))).toBe(0)
        expect(verdict(probe(family, 'sctp', 2905, { vlan: [{ id: 1, tpid: 0x8100 }, { id: 2, tpid: 0x88a8 }] }))).toBe(SNAP)
      })

      test('link-layer agnostic: the same program on a bare IP packet (tun, cooked)', () => {
        const spec: ProbeSpec = { ...(family === 4 ? v4 : v6), proto: 'tcp', dstPort: 2222 }
        expect(runFilter(prog, contextFromPacket(buildPacket(spec)))).toBe(SNAP)
        expect(runFilter(prog, contextFromPacket(buildPacket({ ...spec, dstPort: 2224 })))).toBe(0)
      })

      test('a frame cut short before the destination port is dropped', () => {
        const f = probe(family, 'tcp', 2222)
        const l4 = 14 + (family === 4 ? 20 : 40)
        expect(verdict(f.subarray(0, l4 + 3))).toBe(0)
        expect(verdict(f.subarray(0, l4 + 4))).toBe(SNAP)
      })
    })
  }

  test('non-IP frames are dropped', () => {
    const arp = probe(4, 'tcp', 2222)
    arp[12] = 0x08
    arp[13] = 0x06
    expect(verdict(arp)).toBe(0)
    const innerArp = probe(4, 'tcp', 2222, { vlan: [{ id: 1, tpid: 0x88a8 }, { id: 2 }] })
    innerArp[20] = 0x08
    innerArp[21] = 0x06
    expect(verdict(innerArp)).toBe(0)
  })

  test('two in-band tags (three on the wire) are beyond the filter: dropped', () => {
    const f = probe(4, 'tcp', 2222, { vlan: [{ id: 1, tpid: 0x88a8 }, { id: 2 }, { id: 3 }] })
    expect(verdict(f)).toBe(0)
  })
})

describe('IPv4 header length and fragments', () => {
  test('IPv4 options move the transport header; ldx msh finds it', () => {
    for (const len of [1, 4, 11, 40]) {
      const ipOptions = new Uint8Array(len).fill(1) // NOPs
      expect(verdict(probe(4, 'tcp', 2222, { ipOptions }))).toBe(SNAP)
      expect(verdict(probe(4, 'tcp', 2223, { ipOptions }))).toBe(0)
      expect(verdict(probe(4, 'udp', 9003, { ipOptions, vlan: [{ id: 5, tpid: 0x88a8 }, { id: 6 }] }))).toBe(SNAP)
    }
  })

  test('a SYN split into 8-byte fragments: only the first (carrying the ports) passes', () => {
    for (const vlan of [undefined, [{ id: 100, tpid: 0x88a8 as const }, { id: 200 }]]) {
      const frags = fragmentFrame(probe(4, 'tcp', 2222, { vlan }), 8)
      expect(frags).toHaveLength(3)
      expect(frags.map((f) => verdict(f))).toEqual([SNAP, 0, 0])
      // the same split to a port that is no tripwire: the first fragment is dropped too
      expect(fragmentFrame(probe(4, 'tcp', 2223, { vlan }), 8).map((f) => verdict(f))).toEqual([0, 0, 0])
    }
  })
})

describe('IPv6 extension headers and fragments', () => {
  const chain = (types: Ipv6ExtHeader['type'][]): Ipv6ExtHeader[] => types.map((type) => ({ type }))

  test('hop-by-hop + routing + destination before TCP, UDP and SCTP', () => {
    const ipv6ExtHeaders = chain(['hop-by-hop', 'routing', 'destination'])
    expect(verdict(probe(6, 'tcp', 2222, { ipv6ExtHeaders }))).toBe(SNAP)
    expect(verdict(probe(6, 'udp', 9002, { ipv6ExtHeaders }))).toBe(SNAP)
    expect(verdict(probe(6, 'sctp', 2905, { ipv6ExtHeaders }))).toBe(SNAP)
    expect(verdict(probe(6, 'tcp', 2221, { ipv6ExtHeaders }))).toBe(0)
    expect(verdict(probe(6, 'udp', 2222, { ipv6ExtHeaders }))).toBe(0)
  })

  test('long headers and AH use their own length units', () => {
    const ipv6ExtHeaders: Ipv6ExtHeader[] = [
      { type: 'hop-by-hop', length: 64 },
      { type: 'ah', length: 24 },
      { type: 'destination', length: 2048 },
    ]
    expect(verdict(probe(6, 'tcp', 2222, { ipv6ExtHeaders }))).toBe(SNAP)
    expect(verdict(probe(6, 'tcp', 2220, { ipv6ExtHeaders }))).toBe(0)
  })

  test(`up to ${IPV6_EXT_HEADER_LIMIT} extension headers are decided; a longer chain is passed to user space`, () => {
    const full = chain(new Array(IPV6_EXT_HEADER_LIMIT).fill('destination'))
    expect(verdict(probe(6, 'tcp', 2222, { ipv6ExtHeaders: full }))).toBe(SNAP)
    expect(verdict(probe(6, 'tcp', 2220, { ipv6ExtHeaders: full }))).toBe(0)
    const longer = chain(new Array(IPV6_EXT_HEADER_LIMIT + 1).fill('destination'))
    expect(verdict(probe(6, 'tcp', 2220, { ipv6ExtHeaders: longer }))).toBe(SNAP)
  })

  test('a chain ending in a non-transport protocol is dropped', () => {
    const icmp = probe(6, 'udp', 9000, { ipv6ExtHeaders: chain(['hop-by-hop']) })
    icmp[14 + 40] = 58 // hop-by-hop next header: ICMPv6
    expect(verdict(icmp)).toBe(0)
    const noNext = probe(6, 'udp', 9000)
    noNext[14 + 6] = 59
    expect(verdict(noNext)).toBe(0)
  })

  test('fragments: first passes when it carries the port, the rest are dropped', () => {
    const plain = fragmentFrame(probe(6, 'tcp', 2222, { payload: new Uint8Array(20) }), 16)
    expect(plain.map((f) => verdict(f))).toEqual([SNAP, 0, 0])
    const withChain = fragmentFrame(
      probe(6, 'udp', 9010, { payload: new Uint8Array(40), ipv6ExtHeaders: chain(['hop-by-hop', 'routing']), vlan: [{ id: 3 }] }),
      24,
    )
    expect(withChain.map((f) => verdict(f))).toEqual([SNAP, 0])
    expect(fragmentFrame(probe(6, 'tcp', 2221, { payload: new Uint8Array(20) }), 16).map((f) => verdict(f))).toEqual([0, 0, 0])
  })
})

describe('IP protocol tripwires', () => {
  const withIp = parsePorts(['2222/tcp', '9000-9010/udp', '2905/sctp', '47/ip', '50/ip', '97-99/ip'])
  const ipProg = decode(compileFilter(withIp).program)
  const only = decode(compileFilter(parsePorts(['47/ip'])).program)
  const ip = (family: 4 | 6, ipProto: number, extra: Partial<ProbeSpec> = {}): Uint8Array =>
    buildFrame({ ...(family === 4 ? v4 : v6), proto: 'ip', ipProto, dstPort: 0, payload: new Uint8Array(16), ...extra })

  for (const family of [4, 6] as const) {
    test(`IPv${family}: a packet of a watched protocol passes, others and non-first fragments do not`, () => {
      for (const n of [47, 50, 97, 98, 99]) expect(verdict(ip(family, n), ipProg)).toBe(SNAP)
      for (const n of [2, 4, 41, 46, 48, 96, 100, 103]) expect(verdict(ip(family, n), ipProg)).toBe(0)
      expect(verdict(ip(family, 47, { vlan: [{ id: 7 }] }), ipProg)).toBe(SNAP)
      // The transports keep their port tripwires, and only those.
      expect(verdict(probe(family, 'tcp', 2222), ipProg)).toBe(SNAP)
      expect(verdict(probe(family, 'tcp', 47), ipProg)).toBe(0)
      expect(verdict(probe(family, 'udp', 9005), ipProg)).toBe(SNAP)
      const frags = fragmentFrame(ip(family, 47, { payload: new Uint8Array(64) }), 16)
      expect(frags.map((f) => verdict(f, ipProg))).toEqual([SNAP, ...frags.slice(1).map(() => 0)])
      // A set of IP protocols only.
      expect(verdict(ip(family, 47), only)).toBe(SNAP)
      expect(verdict(probe(family, 'tcp', 2222), only)).toBe(0)
    })
  }

  test('IPv6: the protocol is the next header after the extension headers (ESP ends a chain)', () => {
    const ipv6ExtHeaders: Ipv6ExtHeader[] = [{ type: 'hop-by-hop' }, { type: 'destination' }]
    expect(verdict(ip(6, 50, { ipv6ExtHeaders }), ipProg)).toBe(SNAP)
    expect(verdict(ip(6, 47, { ipv6ExtHeaders }), ipProg)).toBe(SNAP)
    expect(verdict(ip(6, 58, { ipv6ExtHeaders }), ipProg)).toBe(0)
    expect(verdict(ip(6, 59), ipProg)).toBe(0)
  })

  test('unrelated TCP, UDP and SCTP traffic costs exactly what it cost without IP protocol tripwires', () => {
    const plain = decode(compileFilter(parsePorts(['2222/tcp', '9000-9010/udp', '2905/sctp'])).program)
    const steps = (p: readonly SockFilter[], frame: Uint8Array): number => runFilterTrace(p, contextFromFrame(frame)).steps
    for (const family of [4, 6] as const) {
      for (const frame of [probe(family, 'tcp', 443), probe(family, 'tcp', 2222), probe(family, 'udp', 53), probe(family, 'udp', 9004), probe(family, 'sctp', 2905)]) {
        expect(steps(ipProg, frame)).toBe(steps(plain, frame))
      }
    }
    // What it does cost: a packet of another protocol walks the protocol search too.
    expect(steps(ipProg, ip(4, 1))).toBeGreaterThan(steps(plain, ip(4, 1)))
    expect(steps(ipProg, ip(4, 1)) - steps(plain, ip(4, 1))).toBeLessThanOrEqual(6)
  })
})

describe('port space and budget', () => {
  const run = (p: readonly SockFilter[], proto: Proto, port: number): number =>
    runFilter(p, contextFromFrame(probe(4, proto, port)))

  test('ranges at 1 and 65535', () => {
    for (const [proto, port, want] of [
      ['tcp', 1, SNAP],
      ['tcp', 2, 0],
      ['tcp', 65534, 0],
      ['tcp', 65535, SNAP],
      ['udp', 65535, SNAP],
      ['udp', 1, 0],
      ['sctp', 1, SNAP],
      ['sctp', 65535, 0],
    ] as const) {
      expect(run(prog, proto, port)).toBe(want)
    }
    const all = decode(compileFilter(parsePorts(['1-65535/udp'])).program)
    for (const port of [1, 2, 1000, 65534, 65535]) expect(run(all, 'udp', port)).toBe(SNAP)
    expect(run(all, 'tcp', 1000)).toBe(0)
    const edges = decode(compileFilter(parsePorts(['1-100', '65000-65535'])).program)
    expect([1, 100, 101, 64999, 65000, 65535].map((p) => run(edges, 'tcp', p))).toEqual([SNAP, SNAP, 0, 0, SNAP, SNAP])
  })

  test('an empty set compiles to a program that drops everything', () => {
    const none = compileFilter([])
    expect(none.instructions).toBe(1)
    expect(run(decode(none.program), 'tcp', 2222)).toBe(0)
  })

  test('snapLen is the accept value; options are checked', () => {
    const p = decode(compileFilter(set, { snapLen: 96 }).program)
    expect(run(p, 'tcp', 2222)).toBe(96)
    for (const opts of [{ snapLen: 0 }, { snapLen: 1.5 }, { maxInstructions: 4097 }, { maxInstructions: 0 }]) {
      expect(() => compileFilter(set, opts)).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_FILTER' }))
    }
    try {
      compileFilter(set, { maxInstructions: 50 })
      throw new Error('expected a refusal')
    } catch (e) {
      expect(isPortanoiaError(e, 'PORTANOIA_BAD_FILTER')).toBe(true)
    }
  })

  test('overlapping input is merged rather than refused', () => {
    const r: PortRange[] = [
      { proto: 'tcp', from: 10, to: 20 },
      { proto: 'tcp', from: 15, to: 30 },
      { proto: 'tcp', from: 31, to: 31 },
    ]
    expect(compileFilter(r).matched).toEqual([{ proto: 'tcp', from: 10, to: 31 }])
  })

  test('10,000 scattered ports: merged to fit 4096 instructions, every tripwire accepted, O(log n) steps', () => {
    // every other port from 20000, on tcp; and 1000 on udp from 40000
    const specs = [
      ...Array.from({ length: 9000 }, (_, i) => 20000 + 2 * i),
      ...Array.from({ length: 1000 }, (_, i) => `${40000 + 3 * i}/udp`),
    ]
    const ranges = parsePorts(specs)
    expect(ranges).toHaveLength(10000)
    const big = compileFilter(ranges)
    expect(big.instructions).toBeLessThanOrEqual(4096)
    expect(big.instructions).toBeGreaterThan(3500) // it used the budget rather than collapsing the set
    const isExact = big.matched.length === ranges.length
    expect(big.exact).toBe(isExact)
    expect(big.exact).toBe(false)
    const p = decode(big.program)
    let maxSteps = 0
    for (const r of ranges) {
      const { result, steps } = runFilterTrace(p, contextFromFrame(probe(4, r.proto, r.from)))
      expect(result).toBe(SNAP)
      maxSteps = Math.max(maxSteps, steps)
    }
    expect(maxSteps).toBeLessThan(40)
    // what it lets through besides the tripwires is exactly `matched`
    for (let port = 19990; port < 20100; port++) {
      expect(run(p, 'tcp', port)).toBe(portInSet(big.matched, 'tcp', port) ? SNAP : 0)
    }
    expect(run(p, 'tcp', 19999)).toBe(0)
    expect(run(p, 'udp', 20000)).toBe(0)
    expect(run(p, 'sctp', 40000)).toBe(0)
  })

  test('a 10,000-port contiguous set stays exact and tiny', () => {
    const r = compileFilter(parsePorts(['30000-39999']))
    expect(r.exact).toBe(true)
    expect(r.instructions).toBeLessThan(300) // mostly the unrolled IPv6 walk
  })

  test('1,000 scattered ports fit exactly', () => {
    const ranges = parsePorts(Array.from({ length: 1000 }, (_, i) => 1 + 7 * i))
    const r = compileFilter(ranges)
    expect(r.exact).toBe(true)
    const p = decode(r.program)
    for (const port of [1, 8, 6994, 2, 6995]) expect(run(p, 'tcp', port)).toBe(portInSet(ranges, 'tcp', port) ? SNAP : 0)
  })

  test('a small budget forces a superset that still contains every tripwire', () => {
    const ranges = parsePorts(['22', '23', '25', '80', '443', '8080', '8443', '3306/tcp', '53/udp', '161/udp'])
    const exact = compileFilter(ranges)
    const small = compileFilter(ranges, { maxInstructions: exact.instructions - 4 })
    expect(small.exact).toBe(false)
    expect(small.instructions).toBeLessThanOrEqual(exact.instructions - 4)
    const p = decode(small.program)
    for (const r of ranges) expect(run(p, r.proto, r.from)).toBe(SNAP)
    for (const r of ranges) expect(portInSet(small.matched, r.proto, r.from) && portInSet(small.matched, r.proto, r.to)).toBe(true)
    expect(small.matched.length).toBeLessThan(ranges.length)
  })
})
