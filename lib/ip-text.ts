/**
 * Address text from bytes: the one RFC 5952 formatter (lower-case, longest zero run
 * compressed, leftmost on ties; IPv4 as a dotted quad). The decoder calls it for
 * every hit, the crafter and the policy's address parser reuse it. Pure.
 */

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16))
const DEC = Array.from({ length: 256 }, (_, i) => String(i))

/** Formats 16 address bytes at `offset`: IPv4-mapped as dotted quad, else RFC 5952 IPv6. */
export function formatAddressBytes(buf: Uint8Array, offset: number, v4: boolean): string {
  if (v4) {
    // Table lookups: four number-to-string conversions per hit add up under a flood.
    return `${DEC[buf[offset + 12]!]}.${DEC[buf[offset + 13]!]}.${DEC[buf[offset + 14]!]}.${DEC[buf[offset + 15]!]}`
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
