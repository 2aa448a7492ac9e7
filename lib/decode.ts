/**
 * Decoding of HitRecords (native/hit_record.h) from the buffer the Sensor owns into
 * Hit objects. Runs on the JS thread for every hit, so it reads fields with
 * DataView-free Buffer accessors and formats addresses by hand (no string splits,
 * no net module). The layout table here is what lib/binding.ts checks the addon's
 * exported offsets against.
 */
import { formatAddressBytes as formatAddress } from './ip-text.js'
import type { Hit, Proto, ScanKind } from './types.js'
import { SCAN_KINDS } from './types.js'

export { formatAddress }

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

/** Little-endian u32 without Buffer's bounds-checked accessor (offsets come from our own loop). */
function u32(buf: Buffer, at: number): number {
  return (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0
}

const PROTO_NAMES: Array<Proto | undefined> = []
PROTO_NAMES[6] = 'tcp'
PROTO_NAMES[17] = 'udp'
PROTO_NAMES[132] = 'sctp'

/**
 * A decoded hit. A class rather than a literal so every hit shares one hidden
 * class, and so `timeNs` can be computed on demand: a BigInt per hit cost more than
 * the rest of the decode, and as a getter it also keeps `JSON.stringify(hit)` from
 * throwing on a BigInt.
 */
class DecodedHit implements Hit {
  time: number
  src: string
  srcPort: number
  dst: string
  dstPort: number
  family: 4 | 6
  proto: Proto
  kind: ScanKind
  tcpFlags: number
  ttl: number
  verified: boolean
  interface: string
  ifindex: number
  vlan?: number
  fragment: boolean
  ipOptions: boolean
  extHeaders: boolean
  truncated: boolean
  sctpChunk?: number
  ipId: number
  wireLen: number
  #tsHi: number
  #tsLo: number

  constructor(buf: Buffer, offset: number, ifname: (index: number) => string, dst: string | undefined) {
    const flags = buf[offset + 56]! | (buf[offset + 57]! << 8)
    const v4 = (flags & HIT_FLAGS.ipv4) !== 0
    const protoNumber = buf[offset + 49]!
    const kindIndex = buf[offset + 50]!
    const ifindex = u32(buf, offset + 44)
    this.#tsLo = u32(buf, offset)
    this.#tsHi = u32(buf, offset + 4)
    // 2^32 ns = 4294.967296 ms; the sum keeps sub-microsecond resolution.
    this.time = this.#tsHi * 4294.967296 + this.#tsLo / 1e6
    this.src = formatAddress(buf, offset + 8, v4)
    this.srcPort = buf[offset + 40]! | (buf[offset + 41]! << 8)
    this.dst = dst ?? formatAddress(buf, offset + 24, v4)
    this.dstPort = buf[offset + 42]! | (buf[offset + 43]! << 8)
    this.family = v4 ? 4 : 6
    this.proto = PROTO_NAMES[protoNumber] ?? 'sctp'
    this.kind = (kindIndex > 0 && kindIndex < SCAN_KINDS.length ? SCAN_KINDS[kindIndex] : 'odd-flags') as ScanKind
    this.tcpFlags = buf[offset + 51]!
    this.ttl = buf[offset + 52]!
    this.verified = (flags & HIT_FLAGS.verified) !== 0
    this.interface = ifindex === 0 ? '' : ifname(ifindex)
    this.ifindex = ifindex
    this.vlan = (flags & HIT_FLAGS.vlan) !== 0 ? buf[offset + 54]! | (buf[offset + 55]! << 8) : undefined
    this.fragment = (flags & HIT_FLAGS.fragment) !== 0
    this.ipOptions = (flags & HIT_FLAGS.ipOptions) !== 0
    this.extHeaders = (flags & HIT_FLAGS.extHeaders) !== 0
    this.truncated = (flags & HIT_FLAGS.truncated) !== 0
    this.sctpChunk = protoNumber === 132 ? buf[offset + 53]! : undefined
    this.ipId = u32(buf, offset + 60)
    this.wireLen = buf[offset + 58]! | (buf[offset + 59]! << 8)
  }

  /** Capture time in nanoseconds since the epoch, exactly as the kernel stamped it. */
  get timeNs(): bigint {
    return (BigInt(this.#tsHi) << 32n) | BigInt(this.#tsLo)
  }
}

/**
 * Decodes HitRecords. Keeps the last destination address it formatted: a host has
 * few addresses, so most hits reuse the string instead of formatting it again.
 */
export class HitDecoder {
  #lastDst = new Uint8Array(16)
  #lastDstString: string | undefined
  #lastV4 = false
  #lastIfindex = -1
  #lastIfname = ''
  #ifname: (index: number) => string

  constructor(ifname: (index: number) => string) {
    // Hits come in runs from one interface: remember the last name, ask for others.
    this.#ifname = (index) => {
      if (index !== this.#lastIfindex) {
        this.#lastIfname = ifname(index)
        this.#lastIfindex = index
      }
      return this.#lastIfname
    }
  }

  decode(buf: Buffer, offset: number): Hit {
    const at = offset + 24
    // The IPv4 flag decides how the same 16 bytes print, so it is part of the key;
    // an IPv4-mapped address differs only in its last four bytes.
    const v4 = (buf[offset + 56]! & HIT_FLAGS.ipv4) !== 0
    let dst = v4 === this.#lastV4 ? this.#lastDstString : undefined
    if (dst !== undefined) {
      const last = this.#lastDst
      for (let i = v4 ? 12 : 0; i < 16; i++) {
        if (buf[at + i] !== last[i]) {
          dst = undefined
          break
        }
      }
    }
    const hit = new DecodedHit(buf, offset, this.#ifname, dst)
    if (dst === undefined) {
      const last = this.#lastDst
      for (let i = 0; i < 16; i++) last[i] = buf[at + i]!
      this.#lastDstString = hit.dst
      this.#lastV4 = v4
    }
    return hit
  }
}

/**
 * Decodes the record at `offset`. `ifname` maps an interface index to its name
 * (the Sensor caches them); records come only from our addon, so fields are trusted
 * to be in range, but an unknown kind still decodes as 'odd-flags' rather than throw.
 */
export function decodeHit(buf: Buffer, offset: number, ifname: (index: number) => string): Hit {
  return new DecodedHit(buf, offset, ifname, undefined)
}
