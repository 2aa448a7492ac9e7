/**
 * Prefix bans (`--aggregate N`): when N addresses of one IPv4 /24 or IPv6 /64
 * (lengths configurable) are blocked from verified evidence at once, the whole
 * prefix is blocked and the single blocks in it are retired. This module is the
 * pure part: which prefixes have reached the threshold, the bans in force and the
 * refusals it remembers, and whether a network overlaps a guarded one. Whether a
 * prefix may be blocked is decided right before the block by the daemon (guard
 * facts, then the kernel's live answer over the whole prefix). Runs on the main
 * thread; the clock is the caller's. Invariants:
 * - only verified blocks count (a forged packet must not grow into a ban of its
 *   victim's network), and only blocks the firewall confirmed;
 * - a prefix is never proposed while a ban of it is in force, nor within
 *   `retryMs` of a refusal (a guarded prefix is not asked about on every batch);
 * - a ban lasts as long as the longest block it replaces, so retiring a single
 *   block never shortens it;
 * - at most `maxBans` bans are remembered (the soonest to expire go first).
 */
import { type Address, type Cidr, cidrContains, type Family, formatCidr, parseAddress } from './addr.js'

export interface AggregateConfig {
  /** Verified blocks of one prefix that make it a prefix ban. At least 2. */
  threshold: number
  /** IPv4 prefix length, 8..31. Default 24. */
  prefix4: number
  /** IPv6 prefix length, 16..127. Default 64. */
  prefix6: number
}

export const DEFAULT_PREFIX4 = 24
export const DEFAULT_PREFIX6 = 64
/** Shortest and longest prefix lengths accepted per family: never a whole /0 to /7, never a single address. */
export const PREFIX_LIMITS: Readonly<Record<Family, readonly [number, number]>> = Object.freeze({ 4: [8, 31], 6: [16, 127] })

/** A confirmed block as the engine reports it. */
export interface BlockFact {
  src: string
  family: Family
  verified: boolean
  /** ms since the epoch. */
  expiresAt: number
}

export interface PrefixCandidate {
  cidr: Cidr
  /** 'a.b.c.0/24', 'x:y::/64'. */
  prefix: string
  /** Verified members, the ones that made the threshold. */
  members: string[]
  /** Every block inside it (verified and spoofable) that the ban replaces. */
  covered: string[]
  /** The latest expiry among `covered`. */
  expiresAt: number
}

export interface PrefixBan {
  cidr: Cidr
  prefix: string
  family: Family
  expiresAt: number
  members: string[]
}

const V4_BITS = 32
const V6_BITS = 128

function mask(family: Family, prefix: number): bigint {
  const bits = family === 4 ? V4_BITS : V6_BITS
  const all = (1n << BigInt(bits)) - 1n
  return prefix === 0 ? 0n : (all >> BigInt(bits - prefix)) << BigInt(bits - prefix)
}

/** The network of `prefix` bits that holds `addr`. */
export function networkOf(addr: Address, prefix: number): Cidr {
  return { family: addr.family, network: addr.value & mask(addr.family, prefix), prefix }
}

/** True when one network contains the other (networks either nest or are disjoint). */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false
  const shorter = Math.min(a.prefix, b.prefix)
  const m = mask(a.family, shorter)
  return (a.network & m) === (b.network & m)
}

/** The last address of a network (for a range check at its end). */
export function lastOf(cidr: Cidr): Address {
  const bits = cidr.family === 4 ? V4_BITS : V6_BITS
  const host = (1n << BigInt(bits - cidr.prefix)) - 1n
  return { family: cidr.family, value: cidr.network | host }
}

export class PrefixBans {
  readonly #config: AggregateConfig
  readonly #retryMs: number
  readonly #maxBans: number
  readonly #bans = new Map<string, PrefixBan>()
  readonly #refused = new Map<string, number>()

  constructor(config: AggregateConfig, options: { retryMs?: number; maxBans?: number } = {}) {
    this.#config = config
    this.#retryMs = options.retryMs ?? 60_000
    this.#maxBans = options.maxBans ?? 65_536
  }

  get config(): AggregateConfig {
    return this.#config
  }

  /** The prefix length for a family. */
  lengthOf(family: Family): number {
    return family === 4 ? this.#config.prefix4 : this.#config.prefix6
  }

  /**
   * Prefixes that reached the threshold among `blocks` (the firewall's confirmed
   * blocks, still running at `now`), not banned and not refused within retryMs.
   */
  candidates(blocks: Iterable<BlockFact>, now: number): PrefixCandidate[] {
    const groups = new Map<string, PrefixCandidate>()
    for (const b of blocks) {
      if (!(b.expiresAt > now)) continue
      const addr = parseAddress(b.src)
      if (addr === null) continue
      const cidr = networkOf(addr, this.lengthOf(addr.family))
      const key = formatCidr(cidr)
      let g = groups.get(key)
      if (g === undefined) groups.set(key, (g = { cidr, prefix: key, members: [], covered: [], expiresAt: 0 }))
      if (b.verified) g.members.push(b.src)
      g.covered.push(b.src)
      g.expiresAt = Math.max(g.expiresAt, b.expiresAt)
    }
    const out: PrefixCandidate[] = []
    for (const [key, g] of groups) {
      if (g.members.length < this.#config.threshold) continue
      if (this.covering(g.cidr, now) !== undefined) continue
      const refusedAt = this.#refused.get(key)
      if (refusedAt !== undefined && now - refusedAt < this.#retryMs) continue
      out.push(g)
    }
    return out
  }

  /** Remembers that `prefix` may not be banned now (a guard): not proposed again for retryMs. */
  refuse(prefix: string, now: number): void {
    this.#refused.set(prefix, now)
    if (this.#refused.size > this.#maxBans) {
      for (const [k, at] of this.#refused) if (now - at >= this.#retryMs) this.#refused.delete(k)
    }
  }

  /** A ban the firewall confirmed. */
  add(ban: PrefixBan): void {
    this.#bans.delete(ban.prefix)
    this.#bans.set(ban.prefix, ban)
    this.#refused.delete(ban.prefix)
    if (this.#bans.size > this.#maxBans) {
      const soonest = [...this.#bans.values()].sort((a, b) => a.expiresAt - b.expiresAt)[0]
      if (soonest !== undefined) this.#bans.delete(soonest.prefix)
    }
  }

  /** Forgets a ban (lifted, or gone from the kernel). */
  delete(prefix: string): boolean {
    return this.#bans.delete(prefix)
  }

  /** The ban in force that holds `target` (an address or a network inside it), if any. */
  covering(target: Cidr | Address | string, now: number): PrefixBan | undefined {
    const t = typeof target === 'string' ? parseAddress(target) : target
    if (t === null) return undefined
    const cidr: Cidr = 'value' in t ? { family: t.family, network: t.value, prefix: t.family === 4 ? V4_BITS : V6_BITS } : t
    for (const ban of this.#bans.values()) {
      if (!(ban.expiresAt > now)) continue
      if (ban.cidr.family === cidr.family && ban.cidr.prefix <= cidr.prefix && cidrContains(ban.cidr, { family: cidr.family, value: cidr.network })) return ban
    }
    return undefined
  }

  /** Bans in force at `now`; expired ones are dropped. */
  active(now: number): PrefixBan[] {
    const out: PrefixBan[] = []
    for (const [k, ban] of this.#bans) {
      if (ban.expiresAt > now) out.push(ban)
      else this.#bans.delete(k)
    }
    return out
  }
}
