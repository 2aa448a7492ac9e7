/**
 * Packet crafting for tests and benchmarks: builds complete Ethernet II frames
 * (optionally 802.1Q/802.1ad tagged) and bare IP packets carrying one TCP, UDP or
 * SCTP probe, with every checksum a receiver checks filled in (IPv4 header, TCP/UDP
 * over the IPv4 or IPv6 pseudo-header, SCTP CRC32c), and splits them into IPv4 or
 * IPv6 fragments. Pure and synchronous: it allocates fresh arrays and never touches
 * the network. Invariants: every output is a self-consistent wire image (lengths,
 * checksums, next-header chains agree), and bad input throws a RangeError before
 * anything is built.
 */

import { isIP } from 'node:net'
import { formatAddressBytes } from '../ip-text.js'

/** TCP flag bits, as they sit in byte 13 of the TCP header. */
export const FIN = 0x01
export const SYN = 0x02
export const RST = 0x04
export const PSH = 0x08
export const ACK = 0x10
export const URG = 0x20
export const ECE = 0x40
export const CWR = 0x80
export const TCP_FLAGS = { FIN, SYN, RST, PSH, ACK, URG, ECE, CWR } as const

/** SCTP chunk types a scanner sends first. */
export const SCTP_INIT = 1
export const SCTP_COOKIE_ECHO = 10

export const ETHERTYPE_IPV4 = 0x0800
export const ETHERTYPE_IPV6 = 0x86dd
export const ETHERTYPE_VLAN = 0x8100
export const ETHERTYPE_QINQ = 0x88a8

export const IPPROTO_HOPOPTS = 0
export const IPPROTO_TCP = 6
export const IPPROTO_UDP = 17
export const IPPROTO_ROUTING = 43
export const IPPROTO_FRAGMENT = 44
export const IPPROTO_AH = 51
export const IPPROTO_DSTOPTS = 60
export const IPPROTO_SCTP = 132

export type Ipv6ExtType = 'hop-by-hop' | 'destination' | 'routing' | 'ah'

export interface Ipv6ExtHeader {
  type: Ipv6ExtType
  /** Whole header in bytes, a multiple of 8 (default 8; AH default 16). */
  length?: number
}

export interface VlanTag {
  id: number
  tpid?: 0x8100 | 0x88a8
}

export interface ProbeSpec {
  /** IPv4 dotted or IPv6 text; src and dst must be the same family. */
  src: string
  dst: string
  /** 'ip': an IP packet of protocol `ipProto` whose payload is `payload` (ports ignored). */
  proto: 'tcp' | 'udp' | 'sctp' | 'ip'
  /** The IPv4 protocol / IPv6 next header, with proto 'ip' (47 GRE, 50 ESP, ...). */
  ipProto?: number
  srcPort: number
  dstPort: number
  /** Default SYN. */
  tcpFlags?: number
  seq?: number
  ack?: number
  window?: number
  /** Raw TCP options, after the fixed header; padded with End-of-Options to a multiple of 4 bytes (at most 40). */
  tcpOptions?: Uint8Array
  /** IPv4 TTL or IPv6 hop limit, default 64. */
  ttl?: number
  /** IPv4 identification. */
  ipId?: number
  /** Raw IPv4 options; padded with End-of-Options to a multiple of 4 bytes. */
  ipOptions?: Uint8Array
  /** IPv6 extension headers, in chain order, before the transport header. */
  ipv6ExtHeaders?: Ipv6ExtHeader[]
  /** First SCTP chunk type: 1 INIT (default), 10 COOKIE ECHO, others. */
  sctpChunk?: number
  payload?: Uint8Array
  /** In-band tags, outer first. */
  vlan?: VlanTag[]
  srcMac?: string
  dstMac?: string
}

const DEFAULT_SRC_MAC = '02:00:00:00:00:01'
const DEFAULT_DST_MAC = '02:00:00:00:00:02'

// ---------------------------------------------------------------------------
// Addresses

export function parseMac(s: string): Uint8Array {
  const parts = s.split(/[:-]/)
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) {
    throw new RangeError(`bad MAC address ${JSON.stringify(s)}: expected six hex pairs like 02:00:00:00:00:01`)
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16))
}

/** 4 bytes for IPv4, 16 for IPv6, network order. */
export function ipToBytes(s: string): Uint8Array {
  const family = typeof s === 'string' && !s.includes('%') ? isIP(s) : 0
  if (family === 4) return Uint8Array.from(s.split('.'), (p) => Number(p))
  if (family !== 6) {
    throw new RangeError(`bad IP address ${JSON.stringify(s)}: expected IPv4 dotted or IPv6 text without a zone`)
  }
  let text = s
  // An embedded dotted quad (::ffff:1.2.3.4) is the last two groups written in decimal.
  const lastColon = text.lastIndexOf(':')
  if (text.includes('.', lastColon)) {
    const q = text.slice(lastColon + 1).split('.').map(Number)
    const hi = (((q[0] ?? 0) << 8) | (q[1] ?? 0)).toString(16)
    const lo = (((q[2] ?? 0) << 8) | (q[3] ?? 0)).toString(16)
    text = `${text.slice(0, lastColon + 1)}${hi}:${lo}`
  }
  const toGroups = (t: string): number[] => (t === '' ? [] : t.split(':').map((g) => parseInt(g, 16)))
  let groups: number[]
  const dbl = text.indexOf('::')
  if (dbl >= 0) {
    const head = toGroups(text.slice(0, dbl))
    const rest = toGroups(text.slice(dbl + 2))
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest]
  } else {
    groups = toGroups(text)
  }
  const out = new Uint8Array(16)
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8
    out[i * 2 + 1] = g & 0xff
  })
  return out
}

/** Inverse of ipToBytes; IPv6 in RFC 5952 form, IPv4-mapped as ::ffff:a.b.c.d. */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.')
  if (b.length !== 16) throw new RangeError(`an IP address is 4 or 16 bytes, got ${b.length}`)
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff
  if (mapped) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`
  return formatAddressBytes(b, 0, false)
}

// ---------------------------------------------------------------------------
// Checksums

/** The 16-bit one's-complement sum of the Internet checksum, not yet inverted. */
function sum16(data: Uint8Array, initial = 0): number {
  let sum = initial
  for (let i = 0; i + 1 < data.length; i += 2) sum += ((data[i] ?? 0) << 8) | (data[i + 1] ?? 0)
  if (data.length % 2 === 1) sum += (data[data.length - 1] ?? 0) << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000)
  return sum
}

/** RFC 1071 checksum of `data`, optionally continuing a previous sum. */
export function internetChecksum(data: Uint8Array, initial = 0): number {
  return ~sum16(data, initial) & 0xffff
}

function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, proto: number, length: number): number {
  const pseudo =
    src.length === 4 ? new Uint8Array(12) : new Uint8Array(40)
  const view = new DataView(pseudo.buffer)
  pseudo.set(src, 0)
  pseudo.set(dst, src.length)
  if (src.length === 4) {
    pseudo[9] = proto
    view.setUint16(10, length)
  } else {
    view.setUint32(32, length)
    pseudo[39] = proto
  }
  return sum16(pseudo)
}

let crc32cTable: Uint32Array | undefined

/** CRC32c (Castagnoli, reflected), as SCTP uses it. */
export function crc32c(data: Uint8Array): number {
  if (!crc32cTable) {
    crc32cTable = new Uint32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
      crc32cTable[n] = c >>> 0
    }
  }
  let crc = 0xffffffff
  for (const byte of data) crc = (crc >>> 8) ^ (crc32cTable[(crc ^ byte) & 0xff] ?? 0)
  return (crc ^ 0xffffffff) >>> 0
}

// ---------------------------------------------------------------------------
// Validation

function checkInt(name: string, v: number, max: number, min = 0): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${String(v)}`)
  }
  return v
}

// ---------------------------------------------------------------------------
// Transport headers

function buildTransport(spec: ProbeSpec, src: Uint8Array, dst: Uint8Array): { proto: number; bytes: Uint8Array } {
  checkInt('srcPort', spec.srcPort, 0xffff)
  checkInt('dstPort', spec.dstPort, 0xffff)
  const payload = spec.payload ?? new Uint8Array(0)
  switch (spec.proto) {
    case 'tcp': {
      const options = spec.tcpOptions ?? new Uint8Array(0)
      const optLen = Math.ceil(options.length / 4) * 4
      if (optLen > 40) throw new RangeError(`tcpOptions: at most 40 bytes, got ${options.length}`)
      const seg = new Uint8Array(20 + optLen + payload.length)
      const v = new DataView(seg.buffer)
      v.setUint16(0, spec.srcPort)
      v.setUint16(2, spec.dstPort)
      v.setUint32(4, checkInt('seq', spec.seq ?? 0x10000000, 0xffffffff))
      v.setUint32(8, checkInt('ack', spec.ack ?? 0, 0xffffffff))
      seg[12] = (5 + optLen / 4) << 4
      seg[13] = checkInt('tcpFlags', spec.tcpFlags ?? SYN, 0xff)
      v.setUint16(14, checkInt('window', spec.window ?? 1024, 0xffff))
      seg.set(options, 20) // the padding stays 0: End of Option List
      seg.set(payload, 20 + optLen)
      v.setUint16(16, internetChecksum(seg, pseudoHeaderSum(src, dst, IPPROTO_TCP, seg.length)))
      return { proto: IPPROTO_TCP, bytes: seg }
    }
    case 'udp': {
      const dgram = new Uint8Array(8 + payload.length)
      const v = new DataView(dgram.buffer)
      v.setUint16(0, spec.srcPort)
      v.setUint16(2, spec.dstPort)
      v.setUint16(4, dgram.length)
      dgram.set(payload, 8)
      // A computed zero is sent as all ones: zero means "no checksum" (and is illegal on IPv6).
      const c = internetChecksum(dgram, pseudoHeaderSum(src, dst, IPPROTO_UDP, dgram.length))
      v.setUint16(6, c === 0 ? 0xffff : c)
      return { proto: IPPROTO_UDP, bytes: dgram }
    }
    case 'sctp': {
      const type = checkInt('sctpChunk', spec.sctpChunk ?? SCTP_INIT, 0xff)
      // INIT carries a fixed 16-byte body (initiate tag, a_rwnd, streams, initial TSN);
      // COOKIE ECHO carries an opaque cookie; anything else is a bare chunk header.
      let body: Uint8Array
      if (type === SCTP_INIT) {
        body = new Uint8Array(16)
        const bv = new DataView(body.buffer)
        bv.setUint32(0, 0x5ca1ab1e) // initiate tag: must be non-zero
        bv.setUint32(4, 106496) // a_rwnd
        bv.setUint16(8, 10) // outbound streams
        bv.setUint16(10, 2048) // inbound streams
        bv.setUint32(12, 0x00c0ffee) // initial TSN
      } else if (type === SCTP_COOKIE_ECHO) {
        body = Uint8Array.from([0xc0, 0x0c, 0x1e, 0x00, 0x00, 0x00, 0x00, 0x01])
      } else {
        body = new Uint8Array(0)
      }
      const chunkLen = 4 + body.length + payload.length
      const padded = (chunkLen + 3) & ~3
      const pkt = new Uint8Array(12 + padded)
      const v = new DataView(pkt.buffer)
      v.setUint16(0, spec.srcPort)
      v.setUint16(2, spec.dstPort)
      // INIT must carry verification tag 0; later chunks carry the peer's tag.
      v.setUint32(4, type === SCTP_INIT ? 0 : 0x5eed1234)
      pkt[12] = type
      pkt[13] = 0
      v.setUint16(14, chunkLen)
      pkt.set(body, 16)
      pkt.set(payload, 16 + body.length)
      // The CRC goes on the wire least significant byte first (RFC 9260 appendix A).
      v.setUint32(8, crc32c(pkt), true)
      return { proto: IPPROTO_SCTP, bytes: pkt }
    }
    case 'ip':
      return { proto: checkInt('ipProto', spec.ipProto ?? -1, 0xff), bytes: payload }
    default: {
      const never: never = spec.proto
      throw new RangeError(`proto must be tcp, udp, sctp or ip, got ${String(never)}`)
    }
  }
}

// ---------------------------------------------------------------------------
// IP layer

const EXT_NUMBERS: Readonly<Record<Ipv6ExtType, number>> = {
  'hop-by-hop': IPPROTO_HOPOPTS,
  destination: IPPROTO_DSTOPTS,
  routing: IPPROTO_ROUTING,
  ah: IPPROTO_AH,
}

function buildExtHeader(h: Ipv6ExtHeader, next: number): Uint8Array {
  const len = h.length ?? (h.type === 'ah' ? 16 : 8)
  if (!Number.isInteger(len) || len % 8 !== 0 || len < (h.type === 'ah' ? 16 : 8) || len > 2048) {
    throw new RangeError(`IPv6 ${h.type} header length must be a multiple of 8 in ${h.type === 'ah' ? 16 : 8}..2048, got ${String(len)}`)
  }
  const b = new Uint8Array(len)
  b[0] = next
  if (h.type === 'ah') {
    // AH counts in 4-byte units minus 2, unlike every other extension header.
    b[1] = len / 4 - 2
    new DataView(b.buffer).setUint32(4, 0x00000100) // SPI
    new DataView(b.buffer).setUint32(8, 1) // sequence number
    return b
  }
  b[1] = len / 8 - 1
  if (h.type === 'routing') {
    // Type 253 (experimental) with segments left 0: every node skips it and goes on.
    b[2] = 253
    b[3] = 0
    return b
  }
  // Options area: one PadN option covering everything after the first two bytes.
  b[2] = 1
  b[3] = len - 4
  return b
}

function familyOf(spec: ProbeSpec): { src: Uint8Array; dst: Uint8Array } {
  const src = ipToBytes(spec.src)
  const dst = ipToBytes(spec.dst)
  if (src.length !== dst.length) {
    throw new RangeError(`src ${spec.src} and dst ${spec.dst} must be the same address family`)
  }
  return { src, dst }
}

/** An IPv4 or IPv6 packet (no link layer) carrying the probe. */
export function buildPacket(spec: ProbeSpec): Uint8Array {
  const { src, dst } = familyOf(spec)
  const ttl = checkInt('ttl', spec.ttl ?? 64, 0xff)
  const l4 = buildTransport(spec, src, dst)
  if (src.length === 4) {
    if (spec.ipv6ExtHeaders?.length) throw new RangeError('ipv6ExtHeaders given for an IPv4 probe')
    const opts = spec.ipOptions ?? new Uint8Array(0)
    const optLen = (opts.length + 3) & ~3
    if (optLen > 40) throw new RangeError(`IPv4 options are at most 40 bytes, got ${opts.length}`)
    const hlen = 20 + optLen
    const total = hlen + l4.bytes.length
    if (total > 0xffff) throw new RangeError(`IPv4 packet would be ${total} bytes (max 65535)`)
    const pkt = new Uint8Array(total)
    const v = new DataView(pkt.buffer)
    pkt[0] = 0x40 | (hlen / 4)
    v.setUint16(2, total)
    v.setUint16(4, checkInt('ipId', spec.ipId ?? 0x1234, 0xffff))
    pkt[8] = ttl
    pkt[9] = l4.proto
    pkt.set(src, 12)
    pkt.set(dst, 16)
    pkt.set(opts, 20) // the padding stays zero: End of Options List
    v.setUint16(10, internetChecksum(pkt.subarray(0, hlen)))
    pkt.set(l4.bytes, hlen)
    return pkt
  }
  if (spec.ipOptions?.length) throw new RangeError('ipOptions given for an IPv6 probe')
  const exts = spec.ipv6ExtHeaders ?? []
  const built: Uint8Array[] = []
  exts.forEach((h, i) => {
    const nextType = exts[i + 1]?.type
    const next = nextType === undefined ? l4.proto : EXT_NUMBERS[nextType]
    if (EXT_NUMBERS[h.type] === undefined) throw new RangeError(`unknown IPv6 extension header ${String(h.type)}`)
    built.push(buildExtHeader(h, next))
  })
  const extLen = built.reduce((n, b) => n + b.length, 0)
  const payloadLen = extLen + l4.bytes.length
  if (payloadLen > 0xffff) throw new RangeError(`IPv6 payload would be ${payloadLen} bytes (no jumbograms)`)
  const pkt = new Uint8Array(40 + payloadLen)
  const v = new DataView(pkt.buffer)
  pkt[0] = 0x60
  v.setUint16(4, payloadLen)
  const first = exts[0]
  pkt[6] = first === undefined ? l4.proto : EXT_NUMBERS[first.type]
  pkt[7] = ttl
  pkt.set(src, 8)
  pkt.set(dst, 24)
  let at = 40
  for (const b of built) {
    pkt.set(b, at)
    at += b.length
  }
  pkt.set(l4.bytes, at)
  return pkt
}

// ---------------------------------------------------------------------------
// Link layer

function linkHeader(spec: Pick<ProbeSpec, 'srcMac' | 'dstMac' | 'vlan'>, ethertype: number): Uint8Array {
  const tags = spec.vlan ?? []
  const hdr = new Uint8Array(14 + 4 * tags.length)
  const v = new DataView(hdr.buffer)
  hdr.set(parseMac(spec.dstMac ?? DEFAULT_DST_MAC), 0)
  hdr.set(parseMac(spec.srcMac ?? DEFAULT_SRC_MAC), 6)
  tags.forEach((t, i) => {
    const tpid = t.tpid ?? ETHERTYPE_VLAN
    if (tpid !== ETHERTYPE_VLAN && tpid !== ETHERTYPE_QINQ) {
      throw new RangeError(`VLAN tpid must be 0x8100 or 0x88a8, got 0x${Number(tpid).toString(16)}`)
    }
    v.setUint16(12 + 4 * i, tpid)
    v.setUint16(14 + 4 * i, checkInt('vlan id', t.id, 4095))
  })
  v.setUint16(hdr.length - 2, ethertype)
  return hdr
}

/** An Ethernet II frame (destination MAC first, no FCS) carrying the probe. */
export function buildFrame(spec: ProbeSpec): Uint8Array {
  const pkt = buildPacket(spec)
  const hdr = linkHeader(spec, pkt[0] === 0x60 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4)
  const frame = new Uint8Array(hdr.length + pkt.length)
  frame.set(hdr, 0)
  frame.set(pkt, hdr.length)
  return frame
}

/** Where the IP packet starts in an Ethernet frame (after any in-band tags), and its ethertype. */
export function locateNetwork(frame: Uint8Array): { offset: number; ethertype: number } {
  let at = 12
  for (;;) {
    if (at + 2 > frame.length) throw new RangeError('frame too short for its Ethernet header')
    const type = ((frame[at] ?? 0) << 8) | (frame[at + 1] ?? 0)
    if (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) {
      at += 4
      continue
    }
    return { offset: at + 2, ethertype: type }
  }
}

// ---------------------------------------------------------------------------
// Fragmentation

function checkFragmentSize(n: number): void {
  if (!Number.isInteger(n) || n < 8 || n % 8 !== 0) {
    throw new RangeError(`fragmentPayloadBytes must be a positive multiple of 8, got ${String(n)}`)
  }
}

/** IPv4 options that must be repeated in every fragment (copied bit set), re-padded. */
function copiedOptions(opts: Uint8Array): Uint8Array {
  const kept: number[] = []
  for (let i = 0; i < opts.length; ) {
    const type = opts[i] ?? 0
    if (type === 0) break
    if (type === 1) {
      i++
      continue
    }
    const len = opts[i + 1] ?? 0
    if (len < 2) break
    if (type & 0x80) kept.push(...opts.subarray(i, i + len))
    i += len
  }
  while (kept.length % 4 !== 0) kept.push(0)
  return Uint8Array.from(kept)
}

function fragmentIpv4(pkt: Uint8Array, size: number): Uint8Array[] {
  const v = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength)
  const hlen = ((pkt[0] ?? 0) & 0x0f) * 4
  if ((v.getUint16(6) & 0x3fff) !== 0) throw new RangeError('packet is already a fragment')
  const total = v.getUint16(2)
  const data = pkt.subarray(hlen, total)
  const laterOpts = copiedOptions(pkt.subarray(20, hlen))
  const out: Uint8Array[] = []
  for (let off = 0; off < data.length; off += size) {
    const chunk = data.subarray(off, Math.min(off + size, data.length))
    const header = off === 0 ? pkt.subarray(0, hlen) : Uint8Array.from([...pkt.subarray(0, 20), ...laterOpts])
    const frag = new Uint8Array(header.length + chunk.length)
    const fv = new DataView(frag.buffer)
    frag.set(header, 0)
    frag.set(chunk, header.length)
    frag[0] = 0x40 | (header.length / 4)
    fv.setUint16(2, frag.length)
    const more = off + size < data.length ? 0x2000 : 0
    fv.setUint16(6, (v.getUint16(6) & 0x4000) | more | (off / 8))
    fv.setUint16(10, 0)
    fv.setUint16(10, internetChecksum(frag.subarray(0, header.length)))
    out.push(frag)
  }
  return out
}

function fragmentIpv6(pkt: Uint8Array, size: number, id: number): Uint8Array[] {
  // The unfragmentable part runs through the last hop-by-hop or routing header
  // (destination options before a routing header ride along, RFC 8200 4.5).
  let next = pkt[6] ?? 0
  let at = 40
  let unfragEnd = 40
  let nextAtUnfragEnd = next
  let nextFieldAt = 6
  let nextFieldAtUnfragEnd = 6
  while (next === IPPROTO_HOPOPTS || next === IPPROTO_ROUTING || next === IPPROTO_DSTOPTS) {
    const len = ((pkt[at + 1] ?? 0) + 1) * 8
    const here = next
    nextFieldAt = at
    next = pkt[at] ?? 0
    at += len
    if (here !== IPPROTO_DSTOPTS) {
      unfragEnd = at
      nextAtUnfragEnd = next
      nextFieldAtUnfragEnd = nextFieldAt
    }
  }
  if (next === IPPROTO_FRAGMENT) throw new RangeError('packet is already a fragment')
  const unfrag = pkt.subarray(0, unfragEnd)
  const data = pkt.subarray(unfragEnd)
  const out: Uint8Array[] = []
  for (let off = 0; off < data.length; off += size) {
    const chunk = data.subarray(off, Math.min(off + size, data.length))
    const frag = new Uint8Array(unfrag.length + 8 + chunk.length)
    const fv = new DataView(frag.buffer)
    frag.set(unfrag, 0)
    frag[nextFieldAtUnfragEnd] = IPPROTO_FRAGMENT
    const fh = unfrag.length
    frag[fh] = nextAtUnfragEnd
    const more = off + size < data.length ? 1 : 0
    fv.setUint16(fh + 2, off | more) // offset in 8-byte units sits in the top 13 bits
    fv.setUint32(fh + 4, id >>> 0)
    frag.set(chunk, fh + 8)
    fv.setUint16(4, frag.length - 40)
    out.push(frag)
  }
  return out
}

/**
 * Splits an IP packet (no link layer) into fragments carrying `fragmentPayloadBytes`
 * of the fragmentable part each (the last one may be shorter). `id` is the IPv6
 * fragment identification; IPv4 keeps the packet's own id.
 */
export function fragmentPacket(pkt: Uint8Array, fragmentPayloadBytes: number, id = 0x0000f00d): Uint8Array[] {
  checkFragmentSize(fragmentPayloadBytes)
  const version = (pkt[0] ?? 0) >> 4
  if (version === 4) return fragmentIpv4(pkt, fragmentPayloadBytes)
  if (version === 6) return fragmentIpv6(pkt, fragmentPayloadBytes, id)
  throw new RangeError(`not an IP packet (version ${version})`)
}

/** As fragmentPacket, on an Ethernet frame; every fragment keeps the frame's L2 header and tags. */
export function fragmentFrame(frame: Uint8Array, fragmentPayloadBytes: number, id?: number): Uint8Array[] {
  const { offset } = locateNetwork(frame)
  const l2 = frame.subarray(0, offset)
  return fragmentPacket(frame.subarray(offset), fragmentPayloadBytes, id).map((p) => {
    const f = new Uint8Array(l2.length + p.length)
    f.set(l2, 0)
    f.set(p, l2.length)
    return f
  })
}
