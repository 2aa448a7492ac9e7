/**
 * The words of a hit's table key (types.ts HIT_KEY), for hits decoded from a record and
 * for hits built any other way alike, and the conversions between a key's address
 * words and the policy's Address. The per-hit tables (lib/word-map.ts) of the policy
 * engine and the attributor use the first KEY_SOURCE words (the source: family and
 * address) or all HIT_KEY_WORDS (the packet signature the attributor's answers depend
 * on). Pure; JS thread.
 *
 * Key words: [0] family (4, or 6; IPv4-mapped IPv6 folded to 4), [1..4] the address's 16
 * bytes as little-endian words as the record holds them (IPv4: 0, 0, 0, its word), [5]
 * the interface index, [6] the link-layer source's first four bytes, [7] its last two,
 * the TTL << 16 and 1 << 24 when the frame had a link-layer source.
 */
import { type Address, makeAddress, parseAddress } from './policy/addr.js'
import { HIT_KEY, HIT_KEY_WORDS, type Hit } from './types.js'

export { HIT_KEY_WORDS }
/** Words of a source key: family and address. */
export const KEY_SOURCE = 5
/** The third address word of an IPv4-mapped IPv6 address (bytes 00 00 ff ff, little-endian). */
export const MAPPED_WORD = 0xffff0000 | 0

/** Network-order u32 ↔ the record's little-endian word (first octet in the low byte). */
function bswap(w: number): number {
  return ((w & 0xff) << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24)
}

/** Writes `addr`'s source key (family and address words) into `out[at .. at + 4]`. */
export function addressKey(addr: Address, out: Int32Array, at = 0): void {
  const a = makeAddress(addr.family, addr.value)
  if (a.family === 4) {
    out[at] = 4
    out[at + 1] = 0
    out[at + 2] = 0
    out[at + 3] = 0
    out[at + 4] = bswap(Number(a.value))
    return
  }
  out[at] = 6
  for (let i = 0; i < 4; i++) out[at + 1 + i] = bswap(Number((a.value >> BigInt(96 - 32 * i)) & 0xffff_ffffn))
}

/** The source key of an address's text; false (and `out` untouched) when it is not one. */
export function textKey(text: string, out: Int32Array, at = 0): boolean {
  const a = parseAddress(text)
  if (a === null) return false
  addressKey(a, out, at)
  return true
}

/** The Address of a source key. */
export function keyAddress(key: ArrayLike<number>, at = 0): Address {
  if (key[at] === 4) return { family: 4, value: BigInt(bswap(key[at + 4]!) >>> 0) }
  let v = 0n
  for (let i = 0; i < 4; i++) v = (v << 32n) | BigInt(bswap(key[at + 1 + i]!) >>> 0)
  return makeAddress(6, v)
}

/**
 * Writes `hit`'s key into `out[at .. at + 7]`: from the record when it was decoded from
 * one, else from its fields (its source text parsed once). False when its source is not
 * an address (nothing written that a table could match).
 */
export function hitKey(hit: Hit, out: Int32Array, at = 0): boolean {
  const fromRecord = hit[HIT_KEY]
  if (fromRecord !== undefined) {
    fromRecord.call(hit, out, at)
    return true
  }
  if (!textKey(hit.src, out, at)) return false
  out[at + 5] = hit.ifindex | 0
  const mac = hit.srcMac
  const ttl = (hit.ttl & 0xff) << 16
  if (mac === undefined || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) {
    out[at + 6] = 0
    out[at + 7] = ttl
    return true
  }
  const b = mac.split(':').map((x) => parseInt(x, 16))
  out[at + 6] = b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)
  out[at + 7] = b[4]! | (b[5]! << 8) | ttl | (1 << 24)
  return true
}
