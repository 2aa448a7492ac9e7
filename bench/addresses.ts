/**
 * Addresses to ban in the blocking benchmarks: distinct IPv4 addresses inside the
 * project's test range 198.18.0.0/15, outside the link's own 198.18.0.0/24 (so never
 * an address of a bench namespace) and, where traffic must keep flowing, outside the
 * set of sources the sender uses. Enumerated in order, so every configuration and run
 * bans the same addresses. Also reads the source addresses back out of a FramePool,
 * which is how "not the sender's" is made exact rather than assumed. Pure.
 */
import type { FramePool } from './traffic.js'

/** How many addresses ipv4Bans can produce at most (510 /24s + one, .1 to .254). */
export const MAX_BANS = 511 * 254

/**
 * `count` distinct addresses 198.18.1.1, 198.18.1.2, … 198.19.255.254 (skipping .0
 * and .255), leaving out those in `exclude`.
 */
export function ipv4Bans(count: number, exclude: ReadonlySet<string> = new Set()): string[] {
  if (!Number.isInteger(count) || count < 0) throw new RangeError('count must be a non-negative integer')
  const out: string[] = []
  for (let c = 1; c < 512 && out.length < count; c++) {
    for (let d = 1; d < 255 && out.length < count; d++) {
      const a = `198.${18 + (c >> 8)}.${c & 0xff}.${d}`
      if (!exclude.has(a)) out.push(a)
    }
  }
  if (out.length < count) throw new RangeError(`only ${out.length} addresses left in 198.18.0.0/15 after exclusions, ${count} asked`)
  return out
}

/** The IPv4 source address of every frame of an untagged Ethernet II pool. */
export function poolSources(pool: FramePool): Set<string> {
  const out = new Set<string>()
  let at = 0
  for (const len of pool.lengths) {
    // Ethernet header 14 bytes, then the IPv4 source at offset 12 of the IP header.
    const ethertype = pool.frames.readUInt16BE(at + 12)
    if (ethertype === 0x0800) {
      const s = at + 14 + 12
      out.add(`${pool.frames[s]}.${pool.frames[s + 1]}.${pool.frames[s + 2]}.${pool.frames[s + 3]}`)
    }
    at += len
  }
  return out
}
