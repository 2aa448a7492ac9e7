/**
 * The decoder (lib/decode.ts) end to end against the real parser: frames crafted by
 * lib/lab/frames.ts go through the addon's parseFrame test entry (the capture
 * thread's own ParseEthernet / ParseNetwork), and decodeHit must give back, field by
 * field, what the crafted spec says: addresses, ports, protocol, kind, flags, TTL, IP
 * id, VLAN, fragment / options / extension-header / truncation bits, time and
 * interface. Expectations come from the spec and from the scan-kind table in
 * docs/architecture.md (Contracts), never from the code under test. formatAddress is checked against two independent
 * references (a plain RFC 5952 implementation written differently, and WHATWG URL's
 * IPv6 serializer) on every zero-run shape and on random addresses. Needs the built
 * addon, not root.
 */
import { describe, expect, test } from 'vitest'
import { loadBinding } from '../../lib/binding.js'
import {
  ACK,
  CWR,
  ECE,
  FIN,
  PSH,
  RST,
  SCTP_COOKIE_ECHO,
  SCTP_INIT,
  SYN,
  URG,
  buildFrame,
  buildPacket,
  fragmentFrame,
  ipToBytes,
} from '../../lib/lab/frames.js'
import type { ProbeSpec } from '../../lib/lab/frames.js'
import { HIT_FLAGS, HIT_RECORD_LAYOUT, HIT_RECORD_SIZE, decodeHit, formatAddress } from '../../lib/decode.js'
import type { Hit, ScanKind } from '../../lib/types.js'

const binding = loadBinding()
const PARSE_HIT = 0 // ParseResult::kHit

const IFNAMES: Record<number, string> = { 7: 'pns0', 12: 'eth-test' }
const ifname = (i: number): string => IFNAMES[i] ?? `if${i}`

// ---------------------------------------------------------------- references

/** RFC 5952 by string surgery: full hex groups, then replace the longest ":0:0..." run. */
function rfc5952(bytes: Uint8Array): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16))
  const joined = `:${groups.join(':')}:`
  // Candidate runs of zero groups, longest first; on a tie the leftmost (first match) wins.
  for (let len = 8; len >= 2; len--) {
    const run = `:${Array<string>(len).fill('0').join(':')}:`
    const at = joined.indexOf(run)
    if (at < 0) continue
    const out = `${joined.slice(0, at)}::${joined.slice(at + run.length)}`
    // Strip the sentinel colons added around the groups (but keep a '::' at either end).
    let s = out
    if (s.startsWith(':') && !s.startsWith('::')) s = s.slice(1)
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1)
    return s
  }
  return groups.join(':')
}

/** WHATWG URL host serializer: also RFC 5952 for non-mapped addresses. */
function viaUrl(bytes: Uint8Array): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16).padStart(4, '0'))
  const host = new URL(`http://[${groups.join(':')}]/`).hostname
  return host.slice(1, -1)
}

function bytesOfWords(words: readonly number[]): Uint8Array {
  const b = new Uint8Array(16)
  words.forEach((w, i) => {
    b[2 * i] = w >> 8
    b[2 * i + 1] = w & 0xff
  })
  return b
}

/** Deterministic PRNG (mulberry32), so a failure reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---------------------------------------------------------------- helpers

function parse(frame: Uint8Array, meta: Parameters<typeof binding.parseFrame>[1] = {}): Hit {
  const { result, record } = binding.parseFrame(Buffer.from(frame), meta)
  expect(result, 'parseFrame result').toBe(PARSE_HIT)
  expect(record.length).toBe(HIT_RECORD_SIZE)
  return decodeHit(record, 0, ifname)
}

/** The canonical text of an address as the crafter was given it. */
function canonical(addr: string): string {
  const b = ipToBytes(addr)
  return b.length === 4 ? Array.from(b).join('.') : rfc5952(b)
}

/** What every hit of `spec` must say, from the spec alone. */
function expectedFrom(spec: ProbeSpec, kind: ScanKind): Partial<Hit> {
  const v4 = ipToBytes(spec.src).length === 4
  return {
    src: canonical(spec.src),
    dst: canonical(spec.dst),
    srcPort: spec.srcPort,
    dstPort: spec.dstPort,
    family: v4 ? 4 : 6,
    proto: spec.proto,
    kind,
    ttl: spec.ttl ?? 64,
    verified: false,
    truncated: false,
  }
}

const V4 = { src: '198.18.0.2', dst: '198.18.0.1' }
const V6 = { src: 'fd52:43dd:0:0:0:0:0:2', dst: 'fd52:43dd::1' }

// Kinds by flag combination, as docs/architecture.md's scan-kind table has them (ECE/CWR say nothing about intent).
const TCP_KINDS: Array<[string, number, ScanKind]> = [
  ['SYN', SYN, 'syn'],
  ['SYN+ECE+CWR', SYN | ECE | CWR, 'syn'],
  ['FIN', FIN, 'fin'],
  ['null', 0, 'null'],
  ['FIN+PSH+URG', FIN | PSH | URG, 'xmas'],
  ['ACK', ACK, 'ack'],
  ['FIN+ACK', FIN | ACK, 'maimon'],
  ['RST', RST, 'rst'],
  ['SYN+ACK', SYN | ACK, 'odd-flags'],
  ['SYN+FIN', SYN | FIN, 'odd-flags'],
  ['PSH', PSH, 'odd-flags'],
]

// ---------------------------------------------------------------- decodeHit

describe('decodeHit on records from the native parser', () => {
  for (const [family, addrs] of [['IPv4', V4], ['IPv6', V6]] as const) {
    for (const [name, flags, kind] of TCP_KINDS) {
      test(`${family} TCP ${name} → ${kind}`, () => {
        const spec: ProbeSpec = { ...addrs, proto: 'tcp', srcPort: 40000 + flags, dstPort: 2222, tcpFlags: flags, ttl: 51, ipId: 0xbeef }
        const frame = buildFrame(spec)
        const hit = parse(frame, { ifindex: 7, tsSec: 1_700_000_000 })
        expect(hit).toMatchObject(expectedFrom(spec, kind))
        expect(hit.tcpFlags).toBe(flags)
        expect(hit.ipId).toBe(family === 'IPv4' ? 0xbeef : 0) // IPv6 has an id only in a fragment header
        expect(hit.wireLen).toBe(frame.length)
        expect(hit.time).toBe(1_700_000_000_000)
        expect(hit.timeNs).toBe(1_700_000_000_000_000_000n)
        expect(hit.ifindex).toBe(7)
        expect(hit.interface).toBe('pns0')
        expect(hit).toMatchObject({ fragment: false, ipOptions: false, extHeaders: false })
        expect(hit.vlan).toBeUndefined()
        expect(hit.sctpChunk).toBeUndefined()
      })
    }

    test(`${family} UDP`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'udp', srcPort: 5353, dstPort: 5353, ttl: 1, payload: new Uint8Array(12) }
      const frame = buildFrame(spec)
      const hit = parse(frame, { ifindex: 12 })
      expect(hit).toMatchObject(expectedFrom(spec, 'udp'))
      expect(hit.tcpFlags).toBe(0)
      expect(hit.interface).toBe('eth-test')
      expect(hit.wireLen).toBe(frame.length)
    })

    for (const [chunk, kind] of [[SCTP_INIT, 'sctp-init'], [SCTP_COOKIE_ECHO, 'sctp-cookie-echo'], [3, 'sctp-other']] as const) {
      test(`${family} SCTP chunk ${chunk} → ${kind}`, () => {
        const spec: ProbeSpec = { ...addrs, proto: 'sctp', srcPort: 7777, dstPort: 2905, sctpChunk: chunk, ttl: 200 }
        const hit = parse(buildFrame(spec))
        expect(hit).toMatchObject(expectedFrom(spec, kind))
        expect(hit.sctpChunk).toBe(chunk)
        expect(hit.tcpFlags).toBe(0)
      })
    }

    test(`${family} 802.1Q tag`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'tcp', srcPort: 1, dstPort: 65535, vlan: [{ id: 100 }] }
      const frame = buildFrame(spec)
      const hit = parse(frame)
      expect(hit).toMatchObject(expectedFrom(spec, 'syn'))
      expect(hit.vlan).toBe(100)
      expect(hit.wireLen).toBe(frame.length)
    })

    test(`${family} QinQ (802.1ad outer, 802.1Q inner) reports the outer id`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'udp', srcPort: 53, dstPort: 161, vlan: [{ id: 4094, tpid: 0x88a8 }, { id: 7 }] }
      const hit = parse(buildFrame(spec))
      expect(hit).toMatchObject(expectedFrom(spec, 'udp'))
      expect(hit.vlan).toBe(4094)
    })

    test(`${family} tag stripped by the kernel (vlanTci) keeps only the VLAN id bits`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'tcp', srcPort: 1234, dstPort: 22 }
      const hit = parse(buildFrame(spec), { vlanTci: (5 << 13) | 300 }) // priority 5, id 300
      expect(hit.vlan).toBe(300)
    })

    test(`${family} truncated capture keeps the wire length`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'tcp', srcPort: 4444, dstPort: 3389, payload: new Uint8Array(100) }
      const frame = buildFrame(spec)
      const hit = parse(frame.subarray(0, frame.length - 60), { wireLen: frame.length })
      expect(hit).toMatchObject({ ...expectedFrom(spec, 'syn'), truncated: true })
      expect(hit.wireLen).toBe(frame.length)
    })

    test(`${family} from the network header (ParseNetwork, as on a cooked capture)`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'tcp', srcPort: 999, dstPort: 2222, tcpFlags: FIN }
      const pkt = buildPacket(spec)
      const hit = parse(pkt, { ethertype: family === 'IPv4' ? 0x0800 : 0x86dd })
      expect(hit).toMatchObject(expectedFrom(spec, 'fin'))
      expect(hit.wireLen).toBe(pkt.length)
    })
  }

  test('IPv4 options', () => {
    const spec: ProbeSpec = { ...V4, proto: 'tcp', srcPort: 5, dstPort: 2222, ipOptions: Uint8Array.from([0x94, 4, 0, 0]) } // router alert
    const hit = parse(buildFrame(spec))
    expect(hit).toMatchObject({ ...expectedFrom(spec, 'syn'), ipOptions: true, extHeaders: false })
  })

  test('IPv6 extension header chain', () => {
    const spec: ProbeSpec = {
      ...V6,
      proto: 'udp',
      srcPort: 5,
      dstPort: 5353,
      ipv6ExtHeaders: [{ type: 'hop-by-hop' }, { type: 'destination', length: 16 }, { type: 'routing' }, { type: 'ah' }],
    }
    const hit = parse(buildFrame(spec))
    expect(hit).toMatchObject({ ...expectedFrom(spec, 'udp'), extHeaders: true, ipOptions: false, fragment: false })
  })

  for (const [family, addrs] of [['IPv4', V4], ['IPv6', V6]] as const) {
    // 8 transport bytes: ports only; 16: up to the flag byte; 24: a whole TCP header.
    test(`${family} first fragment with ports only → fragment, flags unknown`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'tcp', srcPort: 31337, dstPort: 2222, ipId: 0x4242, payload: new Uint8Array(40) }
      const [first] = fragmentFrame(buildFrame(spec), 8, 0xabcdef01)
      const hit = parse(first!)
      expect(hit).toMatchObject({ ...expectedFrom(spec, 'fragment'), fragment: true, tcpFlags: 0 })
      expect(hit.ipId).toBe(family === 'IPv4' ? 0x4242 : 0xabcdef01)
      expect(hit.extHeaders).toBe(family === 'IPv6') // the fragment header is an extension header
    })

    test(`${family} first fragment reaching the flag byte keeps the flags, kind fragment`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'tcp', srcPort: 31337, dstPort: 2222, payload: new Uint8Array(40) }
      const [first] = fragmentFrame(buildFrame(spec), 16)
      expect(parse(first!)).toMatchObject({ ...expectedFrom(spec, 'fragment'), fragment: true, tcpFlags: SYN })
    })

    test(`${family} first fragment with the whole TCP header is classified`, () => {
      const spec: ProbeSpec = { ...addrs, proto: 'tcp', srcPort: 31337, dstPort: 2222, tcpFlags: FIN | PSH | URG, payload: new Uint8Array(40) }
      const [first] = fragmentFrame(buildFrame(spec), 24)
      expect(parse(first!)).toMatchObject({ ...expectedFrom(spec, 'xmas'), fragment: true, tcpFlags: FIN | PSH | URG })
    })
  }

  test('IPv6 addresses decode canonically through the record', () => {
    const cases = ['::1', 'fd52:43dd::', '2001:db8:0:0:1:0:0:1', '1:0:0:2:0:0:0:3', 'fe80::abcd:0:0:0', '0:1:0:1:0:1:0:1']
    for (const src of cases) {
      const hit = parse(buildFrame({ src, dst: 'fd52:43dd::1', proto: 'udp', srcPort: 1, dstPort: 2 }))
      expect(hit.src).toBe(rfc5952(ipToBytes(src)))
      expect(hit.family).toBe(6)
    }
  })

  test('records at an offset in a batch buffer decode independently', () => {
    const specs: ProbeSpec[] = [
      { ...V4, proto: 'tcp', srcPort: 1, dstPort: 2222 },
      { ...V6, proto: 'udp', srcPort: 2, dstPort: 5353 },
      { ...V4, proto: 'sctp', srcPort: 3, dstPort: 2905 },
    ]
    const batch = Buffer.alloc(specs.length * HIT_RECORD_SIZE, 0xa5)
    specs.forEach((s, i) => binding.parseFrame(Buffer.from(buildFrame(s))).record.copy(batch, i * HIT_RECORD_SIZE))
    specs.forEach((s, i) => {
      const hit = decodeHit(batch, i * HIT_RECORD_SIZE, ifname)
      expect(hit).toMatchObject({ src: canonical(s.src), srcPort: s.srcPort, dstPort: s.dstPort, proto: s.proto })
    })
  })

  test('sub-millisecond timestamps: time is within a microsecond of the kernel stamp, timeNs is exact', () => {
    const { record } = binding.parseFrame(Buffer.from(buildFrame({ ...V4, proto: 'tcp', srcPort: 1, dstPort: 2 })))
    record.writeBigUInt64LE(1_700_000_000_123_456_789n, 0)
    const hit = decodeHit(record, 0, ifname)
    expect(hit.timeNs).toBe(1_700_000_000_123_456_789n)
    // 1_700_000_000_123.456789 ms exactly; a double near 1.7e12 resolves ~0.24 µs.
    expect(Math.abs(hit.time - 1_700_000_000_123.456789)).toBeLessThan(0.001)
    expect(Math.floor(hit.time)).toBe(1_700_000_000_123)
    // timeNs is computed on access and stays out of JSON (a BigInt would make stringify throw).
    expect(JSON.parse(JSON.stringify(hit))).not.toHaveProperty('timeNs')
  })

  test('interface is empty (and the name lookup skipped) for ifindex 0', () => {
    let calls = 0
    const { record } = binding.parseFrame(Buffer.from(buildFrame({ ...V4, proto: 'tcp', srcPort: 1, dstPort: 2 })))
    const hit = decodeHit(record, 0, () => {
      calls++
      return 'x'
    })
    expect(hit.interface).toBe('')
    expect(calls).toBe(0)
  })
})

// ---------------------------------------------------------------- attribution fields

/** The raw record of a frame the parser calls a hit. */
function rawRecord(frame: Uint8Array, meta: Parameters<typeof binding.parseFrame>[1] = {}): Buffer {
  const { result, record } = binding.parseFrame(Buffer.from(frame), meta)
  expect(result, 'parseFrame result').toBe(PARSE_HIT)
  return record
}

interface Attribution {
  srcMac: number[]
  window: number
  mss: number
  wscale: number
  optCount: number
  opts: number[]
  tsVal: number
  flags: number
}

/** Bytes 64..95, read at the offsets native/hit_record.h pins (as written in layout.test.ts). */
function attribution(r: Buffer): Attribution {
  const L = HIT_RECORD_LAYOUT
  return {
    srcMac: [...r.subarray(L.srcMac, L.srcMac + 6)],
    window: r.readUInt16LE(L.tcpWindow),
    mss: r.readUInt16LE(L.tcpMss),
    wscale: r[L.tcpWscale]!,
    optCount: r[L.tcpOptCount]!,
    opts: [...r.subarray(L.tcpOpts, L.tcpOpts + 12)],
    tsVal: r.readUInt32LE(L.tcpTsVal),
    flags: r.readUInt16LE(L.flags),
  }
}

const MSS_1460 = [2, 4, 0x05, 0xb4]
const padTo12 = (kinds: number[]): number[] => [...kinds, ...Array<number>(12 - kinds.length).fill(0)]

describe('attribution fields of the record (source MAC, TCP window and options)', () => {
  const base: ProbeSpec = { ...V4, proto: 'tcp', srcPort: 40000, dstPort: 2222, srcMac: '02:aa:bb:cc:dd:ee' }

  test('an nmap-style SYN: window 1024, MSS 1460 only', () => {
    const a = attribution(rawRecord(buildFrame({ ...base, window: 1024, tcpOptions: Uint8Array.from(MSS_1460) })))
    expect(a).toMatchObject({ window: 1024, mss: 1460, wscale: 0, optCount: 1, opts: padTo12([2]), tsVal: 0 })
    expect(a.srcMac).toEqual([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
    expect(a.flags & HIT_FLAGS.srcMac).toBe(HIT_FLAGS.srcMac)
    expect(a.flags & (HIT_FLAGS.tcpOptsMore | HIT_FLAGS.tcpOptsBad)).toBe(0)
  })

  test('a Linux-style SYN: MSS, SACK permitted, timestamps, NOP, window scale, in wire order', () => {
    const options = [...MSS_1460, 4, 2, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 1, 3, 3, 7]
    const a = attribution(rawRecord(buildFrame({ ...base, window: 64240, tcpOptions: Uint8Array.from(options) })))
    expect(a).toMatchObject({ window: 64240, mss: 1460, wscale: 7, optCount: 5, opts: padTo12([2, 4, 8, 1, 3]), tsVal: 0x12345678 })
    expect(a.flags & (HIT_FLAGS.tcpOptsMore | HIT_FLAGS.tcpOptsBad)).toBe(0)
  })

  test('options padded with End of Option List: the walk stops at the EOL', () => {
    // MSS then WS (7 bytes), padded by the crafter with one EOL byte.
    const a = attribution(rawRecord(buildFrame({ ...base, tcpOptions: Uint8Array.from([...MSS_1460, 3, 3, 2]) })))
    expect(a).toMatchObject({ mss: 1460, wscale: 2, optCount: 3, opts: padTo12([2, 3, 0]) })
  })

  test('more options than the record holds: the first 12 kinds, the count, and the flag', () => {
    const a = attribution(rawRecord(buildFrame({ ...base, tcpOptions: new Uint8Array(16).fill(1) })))
    expect(a).toMatchObject({ optCount: 16, opts: Array<number>(12).fill(1) })
    expect(a.flags & HIT_FLAGS.tcpOptsMore).toBe(HIT_FLAGS.tcpOptsMore)
  })

  for (const [name, options] of [
    ['an option longer than the header', [1, 2, 40, 0]],
    ['a zero-length option', [1, 0x1e, 0, 0]],
    ['a kind without its length byte at the end', [1, 1, 1, 5]],
  ] as const) {
    test(`${name}: the walk stops, the flag says so, the probe is still a hit`, () => {
      const hit = parse(buildFrame({ ...base, tcpOptions: Uint8Array.from(options) }))
      expect(hit.kind).toBe('syn')
      const a = attribution(rawRecord(buildFrame({ ...base, tcpOptions: Uint8Array.from(options) })))
      expect(a.flags & HIT_FLAGS.tcpOptsBad).toBe(HIT_FLAGS.tcpOptsBad)
      expect(a.mss).toBe(0)
    })
  }

  test('no options: window only', () => {
    const a = attribution(rawRecord(buildFrame({ ...base, window: 65535 })))
    expect(a).toMatchObject({ window: 65535, mss: 0, optCount: 0, opts: padTo12([]), tsVal: 0 })
  })

  test('IPv6 carries the same summary', () => {
    const a = attribution(rawRecord(buildFrame({ ...base, ...V6, window: 2048, tcpOptions: Uint8Array.from([...MSS_1460, 1, 1, 4, 2]) })))
    expect(a).toMatchObject({ window: 2048, mss: 1460, optCount: 4, opts: padTo12([2, 1, 1, 4]) })
  })

  test('UDP, SCTP and fragments carry no TCP fields', () => {
    for (const spec of [
      { ...base, proto: 'udp' as const },
      { ...base, proto: 'sctp' as const },
    ]) {
      const a = attribution(rawRecord(buildFrame(spec)))
      expect(a).toMatchObject({ window: 0, mss: 0, optCount: 0, opts: padTo12([]), tsVal: 0 })
      expect(a.srcMac).toEqual([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
    }
    const [first] = fragmentFrame(buildFrame({ ...base, window: 777, tcpOptions: Uint8Array.from(MSS_1460), payload: new Uint8Array(40) }), 16)
    expect(attribution(rawRecord(first!))).toMatchObject({ window: 0, mss: 0, optCount: 0 })
  })

  test('from the network header (no link header given) there is no source MAC', () => {
    const a = attribution(rawRecord(buildPacket(base), { ethertype: 0x0800 }))
    expect(a.srcMac).toEqual([0, 0, 0, 0, 0, 0])
    expect(a.flags & HIT_FLAGS.srcMac).toBe(0)
  })
})

// ---------------------------------------------------------------- formatAddress

describe('formatAddress', () => {
  test('the references agree with each other and with RFC 5952 examples', () => {
    const examples: Array<[number[], string]> = [
      [[0x2001, 0xdb8, 0, 0, 0, 0, 2, 1], '2001:db8::2:1'],
      [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
      [[0x2001, 0, 0, 1, 0, 0, 0, 1], '2001:0:0:1::1'], // the longer run wins
      [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'], // the first run wins a tie
      [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
      [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
      [[1, 0, 0, 0, 0, 0, 0, 0], '1::'],
      [[0xabcd, 0xef, 0, 0, 0, 0, 0, 0xa], 'abcd:ef::a'],
    ]
    for (const [words, text] of examples) {
      const b = bytesOfWords(words)
      expect(rfc5952(b)).toBe(text)
      expect(viaUrl(b)).toBe(text)
      expect(formatAddress(b, 0, false)).toBe(text)
    }
  })

  test('every zero-run shape (all 256 zero/non-zero patterns of the 8 groups)', () => {
    const rand = prng(1)
    for (let mask = 0; mask < 256; mask++) {
      for (let rep = 0; rep < 4; rep++) {
        const words = Array.from({ length: 8 }, (_, i) => {
          if ((mask >> i) & 1) return 0
          // Mix 1-, 2-, 3- and 4-digit groups so leading-zero handling is covered.
          const digits = 1 + Math.floor(rand() * 4)
          return 1 + Math.floor(rand() * (16 ** digits - 1))
        })
        const b = bytesOfWords(words)
        const expected = rfc5952(b)
        expect(viaUrl(b)).toBe(expected)
        expect(formatAddress(b, 0, false), words.map((w) => w.toString(16)).join(':')).toBe(expected)
      }
    }
  })

  test('random addresses at random buffer offsets', () => {
    const rand = prng(0x5952)
    const buf = new Uint8Array(64)
    for (let n = 0; n < 20_000; n++) {
      for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rand() * 256)
      const offset = Math.floor(rand() * 48)
      // Zero about half of the groups so runs of every length and position appear.
      for (let g = 0; g < 8; g++) {
        if (rand() < 0.5) {
          buf[offset + 2 * g] = 0
          buf[offset + 2 * g + 1] = 0
        } else if (rand() < 0.3) {
          buf[offset + 2 * g] = 0 // a small group: fewer than four hex digits
        }
      }
      const b = buf.slice(offset, offset + 16)
      const got = formatAddress(buf, offset, false)
      expect(got).toBe(rfc5952(b))
      expect(got).toBe(viaUrl(b))
    }
  })

  test('IPv4 (mapped) renders the last four bytes as a dotted quad', () => {
    const rand = prng(4)
    for (let n = 0; n < 2000; n++) {
      const b = new Uint8Array(16)
      b[10] = 0xff
      b[11] = 0xff
      for (let i = 12; i < 16; i++) b[i] = Math.floor(rand() * 256)
      expect(formatAddress(b, 0, true)).toBe(`${b[12]}.${b[13]}.${b[14]}.${b[15]}`)
    }
    expect(formatAddress(bytesOfWords([0, 0, 0, 0, 0, 0xffff, 0, 0]), 0, true)).toBe('0.0.0.0')
    expect(formatAddress(bytesOfWords([0, 0, 0, 0, 0, 0xffff, 0xffff, 0xffff]), 0, true)).toBe('255.255.255.255')
  })
})
