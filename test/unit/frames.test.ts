/**
 * Unit tests for lib/lab/frames.ts. Every checksum the crafter writes is checked
 * here against a second, deliberately naive implementation (word loop over a Buffer,
 * bit-at-a-time CRC32c), so a bug in the crafter cannot hide behind the same bug in
 * its verifier. Also covers address text round trips, VLAN layout, IPv6 extension
 * chains and both fragmenters.
 */

import { describe, expect, test } from 'vitest'
import {
  ACK,
  FIN,
  SYN,
  buildFrame,
  buildPacket,
  bytesToIp,
  crc32c,
  fragmentFrame,
  fragmentPacket,
  ipToBytes,
  locateNetwork,
  parseMac,
} from '../../lib/lab/frames.js'
import type { ProbeSpec } from '../../lib/lab/frames.js'

// --- independent reference implementations -------------------------------------

function onesSum(bytes: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let s = 0
  for (let i = 0; i < b.length; i += 2) s += i + 1 < b.length ? b.readUInt16BE(i) : (b[i] ?? 0) * 256
  while (s >> 16) s = (s & 0xffff) + (s >> 16)
  return s
}

function pseudo(src: Uint8Array, dst: Uint8Array, proto: number, len: number): Uint8Array {
  if (src.length === 4) return Uint8Array.from([...src, ...dst, 0, proto, len >> 8, len & 0xff])
  return Uint8Array.from([...src, ...dst, 0, 0, len >> 8, len & 0xff, 0, 0, 0, proto])
}

function crc32cSlow(data: Uint8Array): number {
  let crc = 0xffffffff
  for (const byte of data) {
    crc ^= byte
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1
  }
  return (~crc) >>> 0
}

interface Parsed {
  version: 4 | 6
  src: Uint8Array
  dst: Uint8Array
  proto: number
  l4: Uint8Array
  ipHeader: Uint8Array
}

/** Walks an unfragmented IP packet to its transport segment. */
function parseIp(p: Uint8Array): Parsed {
  if (p[0]! >> 4 === 4) {
    const hl = (p[0]! & 15) * 4
    const total = (p[2]! << 8) | p[3]!
    return { version: 4, src: p.subarray(12, 16), dst: p.subarray(16, 20), proto: p[9]!, l4: p.subarray(hl, total), ipHeader: p.subarray(0, hl) }
  }
  let next = p[6]!
  let at = 40
  while (next === 0 || next === 43 || next === 60 || next === 51) {
    const len = next === 51 ? (p[at + 1]! + 2) * 4 : (p[at + 1]! + 1) * 8
    next = p[at]!
    at += len
  }
  return { version: 6, src: p.subarray(8, 24), dst: p.subarray(24, 40), proto: next, l4: p.subarray(at), ipHeader: p.subarray(0, 40) }
}

function checkL4(parsed: Parsed): void {
  const { src, dst, proto, l4 } = parsed
  if (proto === 6 || proto === 17) {
    expect(onesSum(Uint8Array.from([...pseudo(src, dst, proto, l4.length), ...l4]))).toBe(0xffff)
  } else if (proto === 132) {
    const copy = Uint8Array.from(l4)
    const stored = Buffer.from(copy).readUInt32LE(8)
    copy.fill(0, 8, 12)
    expect(stored).toBe(crc32cSlow(copy))
  } else {
    throw new Error(`unexpected proto ${proto}`)
  }
}

const v4: ProbeSpec = { src: '198.18.0.1', dst: '198.18.0.2', proto: 'tcp', srcPort: 40000, dstPort: 2222 }
const v6: ProbeSpec = { src: 'fd52:43dd::1', dst: 'fd52:43dd::2', proto: 'tcp', srcPort: 40000, dstPort: 2222 }

// --- tests -------------------------------------------------------------------------

describe('checksums', () => {
  test('CRC32c known answer', () => {
    const nine = new TextEncoder().encode('123456789')
    expect(crc32c(nine)).toBe(0xe3069283)
    expect(crc32cSlow(nine)).toBe(0xe3069283)
  })

  for (const base of [v4, v6]) {
    for (const proto of ['tcp', 'udp', 'sctp'] as const) {
      for (const payloadLen of [0, 1, 7, 100]) {
        test(`IPv${base === v4 ? 4 : 6} ${proto} payload ${payloadLen}`, () => {
          const payload = Uint8Array.from({ length: payloadLen }, (_, i) => (i * 37 + 11) & 0xff)
          const pkt = buildPacket({ ...base, proto, payload })
          const parsed = parseIp(pkt)
          if (parsed.version === 4) expect(onesSum(parsed.ipHeader)).toBe(0xffff)
          expect(parsed.proto).toBe({ tcp: 6, udp: 17, sctp: 132 }[proto])
          expect((parsed.l4[2]! << 8) | parsed.l4[3]!).toBe(2222)
          checkL4(parsed)
        })
      }
    }
  }

  test('IPv4 options are padded and covered by the header checksum', () => {
    // Record Route with room for one address: 7 bytes, so one byte of padding.
    const pkt = buildPacket({ ...v4, ipOptions: Uint8Array.from([7, 7, 4, 0, 0, 0, 0]) })
    expect(pkt[0]! & 15).toBe(7)
    expect(pkt[27]).toBe(0)
    const parsed = parseIp(pkt)
    expect(onesSum(parsed.ipHeader)).toBe(0xffff)
    checkL4(parsed)
  })

  test('IPv6 extension chain links every next-header and keeps the TCP checksum', () => {
    const pkt = buildPacket({
      ...v6,
      ipv6ExtHeaders: [{ type: 'hop-by-hop' }, { type: 'routing', length: 24 }, { type: 'destination', length: 16 }, { type: 'ah' }],
    })
    expect(pkt[6]).toBe(0)
    expect(pkt[40]).toBe(43)
    expect(pkt[48]).toBe(60)
    expect(pkt[49]).toBe(2)
    expect(pkt[72]).toBe(51)
    expect(pkt[88]).toBe(6)
    expect(pkt[89]).toBe(2)
    expect((pkt[4]! << 8) | pkt[5]!).toBe(pkt.length - 40)
    checkL4(parseIp(pkt))
  })
})

describe('layout', () => {
  test('TCP defaults and flags', () => {
    const pkt = buildPacket({ ...v4, seq: 7, ack: 9, window: 512, ttl: 33, ipId: 0xbeef, tcpFlags: FIN | ACK })
    expect(pkt[8]).toBe(33)
    expect((pkt[4]! << 8) | pkt[5]!).toBe(0xbeef)
    const tcp = pkt.subarray(20)
    expect(Buffer.from(tcp).readUInt32BE(4)).toBe(7)
    expect(Buffer.from(tcp).readUInt32BE(8)).toBe(9)
    expect(tcp[12]).toBe(0x50)
    expect(tcp[13]).toBe(FIN | ACK)
    expect(Buffer.from(tcp).readUInt16BE(14)).toBe(512)
    expect(buildPacket(v4)[33]).toBe(SYN)
  })

  test('SCTP INIT has tag 0 and a 20-byte chunk; COOKIE ECHO a non-zero tag', () => {
    const init = parseIp(buildPacket({ ...v4, proto: 'sctp' })).l4
    expect(Buffer.from(init).readUInt32BE(4)).toBe(0)
    expect(init[12]).toBe(1)
    expect(Buffer.from(init).readUInt16BE(14)).toBe(20)
    expect(init.length).toBe(32)
    const echo = parseIp(buildPacket({ ...v4, proto: 'sctp', sctpChunk: 10 })).l4
    expect(echo[12]).toBe(10)
    expect(Buffer.from(echo).readUInt32BE(4)).not.toBe(0)
  })

  test('Ethernet header with two tags, outer first', () => {
    const f = buildFrame({ ...v6, vlan: [{ id: 100, tpid: 0x88a8 }, { id: 200 }], srcMac: 'aa:bb:cc:dd:ee:ff' })
    const b = Buffer.from(f)
    expect(b.subarray(0, 6).toString('hex')).toBe('020000000002')
    expect(b.subarray(6, 12).toString('hex')).toBe('aabbccddeeff')
    expect(b.readUInt16BE(12)).toBe(0x88a8)
    expect(b.readUInt16BE(14)).toBe(100)
    expect(b.readUInt16BE(16)).toBe(0x8100)
    expect(b.readUInt16BE(18)).toBe(200)
    expect(b.readUInt16BE(20)).toBe(0x86dd)
    expect(locateNetwork(f)).toEqual({ offset: 22, ethertype: 0x86dd })
    expect(f.subarray(22)).toEqual(buildPacket(v6))
  })
})

describe('addresses', () => {
  test.each([
    ['198.18.0.1', '198.18.0.1'],
    ['::', '::'],
    ['::1', '::1'],
    ['FD52:43DD:0:0:0:0:0:1', 'fd52:43dd::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1'],
    ['64:ff9b::198.18.0.1', '64:ff9b::c612:1'],
  ])('%s → %s', (text, canonical) => {
    const bytes = ipToBytes(text)
    expect(bytes.length).toBe(text.includes(':') ? 16 : 4)
    expect(bytesToIp(bytes)).toBe(canonical)
  })

  test('bad input throws RangeError', () => {
    expect(() => ipToBytes('1.2.3')).toThrow(RangeError)
    expect(() => ipToBytes('fe80::1%eth0')).toThrow(RangeError)
    expect(() => parseMac('02:00:00:00:00')).toThrow(RangeError)
    expect(() => parseMac('02:00:00:00:00:zz')).toThrow(RangeError)
    expect(() => bytesToIp(new Uint8Array(5))).toThrow(RangeError)
    expect(() => buildFrame({ ...v4, dst: '::1' })).toThrow(/same address family/)
    expect(() => buildFrame({ ...v4, dstPort: 65536 })).toThrow(RangeError)
    expect(() => buildFrame({ ...v4, srcPort: 1.5 })).toThrow(RangeError)
    expect(() => buildFrame({ ...v4, ttl: 256 })).toThrow(RangeError)
    expect(() => buildFrame({ ...v4, vlan: [{ id: 4096 }] })).toThrow(RangeError)
    expect(() => buildFrame({ ...v4, ipOptions: new Uint8Array(41) })).toThrow(RangeError)
    expect(() => buildFrame({ ...v6, ipv6ExtHeaders: [{ type: 'routing', length: 12 }] })).toThrow(RangeError)
    expect(() => buildFrame({ ...v4, ipv6ExtHeaders: [{ type: 'routing' }] })).toThrow(RangeError)
    expect(() => fragmentFrame(buildFrame(v4), 12)).toThrow(RangeError)
  })
})

describe('fragmentation', () => {
  /** Reassembles IPv4 fragments by offset and returns the transport bytes. */
  function reassemble4(frags: Uint8Array[]): Uint8Array {
    const out: number[] = []
    for (const f of frags) {
      expect(onesSum(f.subarray(0, (f[0]! & 15) * 4))).toBe(0xffff)
      const off = (((f[6]! << 8) | f[7]!) & 0x1fff) * 8
      expect(off).toBe(out.length)
      out.push(...f.subarray((f[0]! & 15) * 4, (f[2]! << 8) | f[3]!))
    }
    return Uint8Array.from(out)
  }

  test('IPv4: offsets, MF, id, options copied only when flagged, reassembly', () => {
    const payload = Uint8Array.from({ length: 30 }, (_, i) => i)
    // Record Route (not copied) then a copied option (type 0x94 Router Alert, 4 bytes).
    const spec: ProbeSpec = { ...v4, payload, ipId: 0x4242, ipOptions: Uint8Array.from([7, 3, 4, 0x94, 4, 0, 0]) }
    const frame = buildFrame({ ...spec, vlan: [{ id: 7 }] })
    const frags = fragmentFrame(frame, 16)
    expect(frags).toHaveLength(4) // 50 bytes of TCP+payload
    for (const [i, f] of frags.entries()) {
      expect(Buffer.from(f.subarray(0, 18))).toEqual(Buffer.from(frame.subarray(0, 18)))
      const ip = f.subarray(18)
      expect((ip[4]! << 8) | ip[5]!).toBe(0x4242)
      const mf = (ip[6]! & 0x20) !== 0
      expect(mf).toBe(i < 3)
      expect(ip[0]! & 15).toBe(i === 0 ? 7 : 6)
      if (i > 0) expect(ip[20]).toBe(0x94)
    }
    const l4 = reassemble4(frags.map((f) => f.subarray(18)))
    expect(l4).toEqual(buildPacket(spec).subarray(28))
  })

  test('IPv6: fragment header after hop-by-hop and routing, destination options fragmentable', () => {
    const spec: ProbeSpec = { ...v6, proto: 'udp', payload: new Uint8Array(20).fill(9), ipv6ExtHeaders: [{ type: 'hop-by-hop' }, { type: 'routing' }, { type: 'destination' }] }
    const pkt = buildPacket(spec)
    const frags = fragmentPacket(pkt, 16, 0xabcdef01)
    // fragmentable part: 8 (dest opts) + 8 (UDP) + 20 = 36 bytes → 16 + 16 + 4
    expect(frags).toHaveLength(3)
    const data: number[] = []
    for (const [i, f] of frags.entries()) {
      expect(f[48]).toBe(44) // routing header's next header now points at the fragment header
      const fh = f.subarray(56, 64)
      expect(fh[0]).toBe(60)
      const offMf = (fh[2]! << 8) | fh[3]!
      expect(offMf & ~7).toBe(i * 16)
      expect(offMf & 1).toBe(i < 2 ? 1 : 0)
      expect(Buffer.from(fh).readUInt32BE(4)).toBe(0xabcdef01)
      expect((f[4]! << 8) | f[5]!).toBe(f.length - 40)
      data.push(...f.subarray(64))
    }
    expect(Uint8Array.from(data)).toEqual(pkt.subarray(56))
  })

  test('IPv6 without extension headers: IPv6 next header becomes 44', () => {
    const frags = fragmentPacket(buildPacket({ ...v6, payload: new Uint8Array(40) }), 24)
    expect(frags.map((f) => f[6])).toEqual([44, 44, 44])
    expect(frags.map((f) => f[40])).toEqual([6, 6, 6])
  })

  test('refuses to fragment a fragment', () => {
    const [first] = fragmentPacket(buildPacket({ ...v4, payload: new Uint8Array(40) }), 8)
    expect(() => fragmentPacket(first!, 8)).toThrow(/already a fragment/)
    const [first6] = fragmentPacket(buildPacket({ ...v6, payload: new Uint8Array(40) }), 8)
    expect(() => fragmentPacket(first6!, 8)).toThrow(/already a fragment/)
  })
})
