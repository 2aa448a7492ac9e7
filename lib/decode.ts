/**
 * Decoding of HitRecords (native/hit_record.h) from the buffer the Sensor owns into
 * Hit objects. Runs on the JS thread for every hit, so it reads fields with
 * DataView-free Buffer accessors and formats addresses by hand (no string splits,
 * no net module). The layout table here is what lib/binding.ts checks the addon's
 * exported offsets against.
 */
import type { Hit, Proto, ScanKind } from './types.js'
import { SCAN_KINDS } from './types.js'

export const HIT_RECORD_SIZE = 64

export const HIT_RECORD_LAYOUT = {
  tsNs: 0,
  src: 8,
  dst: 24,
  srcPort: 40,
  dstPort: 42,
  ifindex: 44,
  family: 48,
  proto: 49,
  kind: 50,
  tcpFlags: 51,
  ttl: 52,
  sctpChunk: 53,
  vlan: 54,
  flags: 56,
  wireLen: 58,
  ipId: 60,
} as const satisfies Record<string, number>

export const HIT_FLAGS = {
  fragment: 1 << 0,
  ipOptions: 1 << 1,
  vlan: 1 << 2,
  truncated: 1 << 3,
  verified: 1 << 4,
  extHeaders: 1 << 5,
  ipv4: 1 << 6,
} as const

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16))

/** Formats 16 address bytes at `offset`: IPv4-mapped as dotted quad, else RFC 5952 IPv6. */
export function formatAddress(buf: Uint8Array, offset: number, v4: boolean): string {
  if (v4) {
    return `${buf[offset + 12]}.${buf[offset + 13]}.${buf[offset + 14]}.${buf[offset + 15]}`
  }
  const words = new Array<number>(8)
  for (let i = 0; i < 8; i++) words[i] = (buf[offset + 2 * i]! << 8) | buf[offset + 2 * i + 1]!
  // RFC 5952: compress the longest run of two or more zero words (the first one on ties).
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  let out = ''
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += i === 0 ? '::' : ':'
      i += bestLen - 1
      continue
    }
    const w = words[i]!
    out += (w >> 8 === 0 ? HEX[w]! : (w >> 8).toString(16) + HEX[w & 0xff]!.padStart(2, '0'))
    if (i < 7) out += ':'
  }
  return out
}

function protoName(n: number): Proto {
  return n === 6 ? 'tcp' : n === 17 ? 'udp' : 'sctp'
}

/**
 * Decodes the record at `offset`. `ifname` maps an interface index to its name
 * (the Sensor caches them); records come only from our addon, so fields are trusted
 * to be in range, but an unknown kind still decodes as 'odd-flags' rather than throw.
 */
export function decodeHit(buf: Buffer, offset: number, ifname: (index: number) => string): Hit {
  const flags = buf.readUInt16LE(offset + 56)
  const v4 = (flags & HIT_FLAGS.ipv4) !== 0
  const proto = protoName(buf[offset + 49]!)
  const kindIndex = buf[offset + 50]!
  const kind = (kindIndex > 0 && kindIndex < SCAN_KINDS.length ? SCAN_KINDS[kindIndex] : 'odd-flags') as ScanKind
  const timeNs = buf.readBigUInt64LE(offset)
  const ifindex = buf.readUInt32LE(offset + 44)
  const hit: Hit = {
    time: Number(timeNs / 1000n) / 1000,
    timeNs,
    src: formatAddress(buf, offset + 8, v4),
    srcPort: buf.readUInt16LE(offset + 40),
    dst: formatAddress(buf, offset + 24, v4),
    dstPort: buf.readUInt16LE(offset + 42),
    family: v4 ? 4 : 6,
    proto,
    kind,
    tcpFlags: buf[offset + 51]!,
    ttl: buf[offset + 52]!,
    verified: (flags & HIT_FLAGS.verified) !== 0,
    interface: ifindex === 0 ? '' : ifname(ifindex),
    ifindex,
    fragment: (flags & HIT_FLAGS.fragment) !== 0,
    ipOptions: (flags & HIT_FLAGS.ipOptions) !== 0,
    extHeaders: (flags & HIT_FLAGS.extHeaders) !== 0,
    truncated: (flags & HIT_FLAGS.truncated) !== 0,
    ipId: buf.readUInt32LE(offset + 60),
    wireLen: buf.readUInt16LE(offset + 58),
  }
  if ((flags & HIT_FLAGS.vlan) !== 0) hit.vlan = buf.readUInt16LE(offset + 54)
  if (proto === 'sctp') hit.sctpChunk = buf[offset + 53]!
  return hit
}
