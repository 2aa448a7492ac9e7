/**
 * Address arithmetic for the policy layer: strict parsing of IPv4/IPv6 literals into
 * (family, bigint) pairs, the one canonical text form every other module compares and
 * hands to a firewall, CIDR parsing, a CIDR set with a lookup cost bounded by the
 * number of distinct prefix lengths, and the classification of addresses that must
 * never be blocked because of what they are (loopback, link-local, multicast,
 * broadcast, unspecified, IPv4-compatible). Pure, no I/O. Invariant: an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) is always turned into its IPv4 form on the way in,
 * so a guarded IPv4 host cannot be reached through its mapped spelling.
 */

import { PortanoiaError } from '../errors.js'
import { formatAddressBytes } from '../ip-text.js'

export type Family = 4 | 6

/** A parsed address. For family 4 `value` < 2^32; IPv4-mapped IPv6 never appears here. */
export interface Address {
  readonly family: Family
  readonly value: bigint
}

/** A network: `network` has no bits set below `prefix`. */
export interface Cidr {
  readonly family: Family
  readonly network: bigint
  readonly prefix: number
}

/** Why an address is special regardless of this host's configuration. */
export type SpecialKind = 'unspecified' | 'loopback' | 'link-local' | 'multicast' | 'broadcast' | 'ipv4-compat'

const MAPPED_PREFIX = 0xffffn
const V4_BITS = 32
const V6_BITS = 128
const MAX_V4 = 0xffff_ffffn
const MAX_V6 = (1n << 128n) - 1n
// Characters a canonical literal can contain: anything else (spaces, ';', '%', '/',
// upper case) is refused before parsing, so a literal can be spliced into an nft
// script or an argv without any quoting question arising.
const CANONICAL_CHARS = /^[0-9a-f.:]{2,39}$/

/** Dotted quad to a u32, or -1. A hand-rolled scan: this runs once per hit. */
function parseV4Number(text: string): number {
  const n = text.length
  if (n < 7 || n > 15) return -1
  let value = 0
  let octet = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === 46) {
      if (digits === 0) return -1
      value = value * 256 + octet
      dots++
      octet = 0
      digits = 0
      continue
    }
    if (c < 48 || c > 57) return -1
    // Leading zeros are refused: inet_aton() reads them as octal, so '010' would
    // mean 8 to one tool and 10 to another.
    if (digits > 0 && octet === 0) return -1
    octet = octet * 10 + (c - 48)
    digits++
    if (octet > 255) return -1
  }
  if (dots !== 3 || digits === 0) return -1
  return value * 256 + octet
}

function parseV4(text: string): bigint | null {
  const v = parseV4Number(text)
  return v < 0 ? null : BigInt(v)
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 97 && c <= 102) return c - 87
  if (c >= 65 && c <= 70) return c - 55
  return -1
}

/** Four 32-bit words to the 128-bit value: fewer bigint operations than eight groups. */
function fromWords(w0: number, w1: number, w2: number, w3: number): bigint {
  return (BigInt(w0) << 96n) | (BigInt(w1) << 64n) | (BigInt(w2) << 32n) | BigInt(w3)
}

/**
 * RFC 4291 §2.2 text to a value: hex groups of 1–4 digits, at most one '::', an
 * optional dotted quad in place of the last two groups. A single left-to-right
 * scan, no regex or split: this runs once per hit from a new IPv6 source.
 */
function parseV6(text: string): bigint | null {
  const n = text.length
  if (n < 2 || n > 45) return null
  const groups: number[] = []
  let gapAt = -1
  let i = 0
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return null
    gapAt = 0
    i = 2
  }
  while (i < n) {
    let j = i
    let v = 0
    while (j < n && j - i < 5) {
      const d = hexDigit(text.charCodeAt(j))
      if (d < 0) break
      v = v * 16 + d
      j++
    }
    if (j < n && text.charCodeAt(j) === 46) {
      const v4 = parseV4Number(text.slice(i))
      if (v4 < 0) return null
      groups.push(v4 >>> 16, v4 & 0xffff)
      break
    }
    if (j === i || j - i > 4) return null
    groups.push(v)
    if (j === n) break
    if (text.charCodeAt(j) !== 58) return null
    j++
    if (j < n && text.charCodeAt(j) === 58) {
      if (gapAt !== -1) return null
      gapAt = groups.length
      j++
    } else if (j === n) {
      return null
    }
    i = j
  }
  if (gapAt === -1 ? groups.length !== 8 : groups.length > 7) return null
  if (gapAt !== -1) groups.splice(gapAt, 0, ...new Array<number>(8 - groups.length).fill(0))
  const g = groups as [number, number, number, number, number, number, number, number]
  return fromWords(g[0] * 0x10000 + g[1], g[2] * 0x10000 + g[3], g[4] * 0x10000 + g[5], g[6] * 0x10000 + g[7])
}

/** Builds an Address, folding IPv4-mapped IPv6 into IPv4. */
export function makeAddress(family: Family, value: bigint): Address {
  if (family === 6 && value >> 32n === MAPPED_PREFIX) return { family: 4, value: value & MAX_V4 }
  return { family, value }
}

/**
 * Parses any valid IPv4 or IPv6 literal (no zone index, no prefix, no brackets).
 * Returns null for anything else; ::ffff:a.b.c.d comes back as IPv4.
 */
export function parseAddress(text: string): Address | null {
  if (typeof text !== 'string') return null
  if (text.includes(':')) {
    const v6 = parseV6(text)
    return v6 === null ? null : makeAddress(6, v6)
  }
  const v4 = parseV4(text)
  return v4 === null ? null : { family: 4, value: v4 }
}

function formatV4(value: bigint): string {
  const n = Number(value)
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

function formatV6(value: bigint): string {
  // Four BigInt steps (one per 32-bit word), not sixteen: this runs per IPv6 source.
  const bytes = new Uint8Array(16)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, Number(BigInt.asUintN(32, value >> 96n)))
  view.setUint32(4, Number(BigInt.asUintN(32, value >> 64n)))
  view.setUint32(8, Number(BigInt.asUintN(32, value >> 32n)))
  view.setUint32(12, Number(BigInt.asUintN(32, value)))
  return formatAddressBytes(bytes, 0, false)
}

/** The canonical text: dotted quad, or RFC 5952 lower-case compressed IPv6. */
export function formatAddress(addr: Address): string {
  const a = makeAddress(addr.family, addr.value)
  return a.family === 4 ? formatV4(a.value) : formatV6(a.value)
}

/** Canonical form of a literal, or null when it is not an address. */
export function normalizeAddress(text: string): string | null {
  const a = parseAddress(text)
  return a === null ? null : formatAddress(a)
}

/**
 * The addresses an operator names (block, unblock — from the CLI, the control
 * socket or the API), each made canonical. Every entry is checked before any is
 * used; the first that is not an IPv4 or IPv6 literal throws PORTANOIA_BAD_ADDRESS.
 */
export function normalizeAddresses(values: readonly unknown[]): string[] {
  const out: string[] = []
  for (const v of values) {
    const n = typeof v === 'string' ? normalizeAddress(v) : null
    if (n === null) {
      throw new PortanoiaError('PORTANOIA_BAD_ADDRESS', `${JSON.stringify(v)} is not an IPv4 or IPv6 address`, {
        hint: 'give addresses like 203.0.113.7 or 2001:db8::7',
      })
    }
    if (!out.includes(n)) out.push(n)
  }
  return out
}

/**
 * True only for an address already in canonical form (what `normalizeAddress`
 * returns). This is the gate before anything reaches `nft`, ipset or an argv:
 * '198.18.0.1' passes; '198.18.0.1 ', '::FFFF:198.18.0.1', '198.18.0.1;', 'fe80::1%eth0'
 * and '198.018.0.1' do not.
 */
export function isValidAddress(text: unknown): text is string {
  return typeof text === 'string' && CANONICAL_CHARS.test(text) && normalizeAddress(text) === text
}

const V4_MASKS: readonly number[] = Array.from({ length: V4_BITS + 1 }, (_, p) =>
  p === 0 ? 0 : (0xffff_ffff << (V4_BITS - p)) >>> 0,
)
const V6_MASKS: readonly bigint[] = Array.from({ length: V6_BITS + 1 }, (_, p) =>
  p === 0 ? 0n : (MAX_V6 >> BigInt(V6_BITS - p)) << BigInt(V6_BITS - p),
)

function maskOf(family: Family, prefix: number): bigint {
  return family === 4 ? BigInt(V4_MASKS[prefix] as number) : (V6_MASKS[prefix] as bigint)
}

function badCidr(text: string, why: string, hint: string): PortanoiaError {
  return new PortanoiaError('PORTANOIA_BAD_CIDR', `${JSON.stringify(text)} is not a valid network: ${why}`, { hint })
}

const CIDR_HINT = "write an address (198.18.0.1, fd52:43dd::1) or a network (198.18.0.0/15, fd52:43dd::/32)"

/**
 * Parses 'a.b.c.d/n', 'x::/n' or a bare address (a /32 or /128). Throws a
 * PortanoiaError (PORTANOIA_BAD_CIDR) that says what is wrong: host bits set below the
 * prefix are refused, not silently cleared, because '198.18.5.3/15' in an allowlist
 * is more often a typo than a wish. An IPv4-mapped network (::ffff:198.18.0.0/111)
 * becomes the IPv4 network it describes.
 */
export function parseCidr(text: string): Cidr {
  if (typeof text !== 'string' || text.trim() === '') throw badCidr(String(text), 'empty', CIDR_HINT)
  const trimmed = text.trim()
  const slash = trimmed.indexOf('/')
  const addrText = slash === -1 ? trimmed : trimmed.slice(0, slash)
  const addr = addrText.includes(':') ? parseV6(addrText) : parseV4(addrText)
  if (addr === null) throw badCidr(text, `${JSON.stringify(addrText)} is not an IPv4 or IPv6 address`, CIDR_HINT)
  let family: Family = addrText.includes(':') ? 6 : 4
  const bits = family === 4 ? V4_BITS : V6_BITS
  let prefix = bits
  if (slash !== -1) {
    const p = trimmed.slice(slash + 1)
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > bits) {
      throw badCidr(text, `prefix length ${JSON.stringify(p)} is not 0..${bits}`, CIDR_HINT)
    }
    prefix = Number(p)
  }
  let value = addr
  if (family === 6 && value >> 32n === MAPPED_PREFIX) {
    if (prefix < 96) {
      throw badCidr(text, 'an IPv4-mapped network needs a prefix of at least 96', 'write the IPv4 network instead')
    }
    family = 4
    value &= MAX_V4
    prefix -= 96
  }
  const network = value & maskOf(family, prefix)
  if (network !== value) {
    const suggestion = `${formatAddress({ family, value: network })}/${prefix}`
    throw badCidr(text, 'host bits are set below the prefix length', `did you mean ${suggestion}?`)
  }
  return { family, network, prefix }
}

export function formatCidr(cidr: Cidr): string {
  return `${formatAddress({ family: cidr.family, value: cidr.network })}/${cidr.prefix}`
}

export function cidrContains(cidr: Cidr, addr: Address): boolean {
  return cidr.family === addr.family && (addr.value & maskOf(cidr.family, cidr.prefix)) === cidr.network
}

/** An Address from text or a (possibly IPv4-mapped) Address; allocates only when folding. */
export function toAddress(addr: string | Address): Address | null {
  if (typeof addr === 'string') return parseAddress(addr)
  return addr.family === 6 && addr.value >> 32n === MAPPED_PREFIX ? makeAddress(6, addr.value) : addr
}

/**
 * A set of networks with membership in O(distinct prefix lengths): one hash set of
 * masked networks per prefix length, probed from the longest prefix down. Exact
 * addresses are just /32 and /128 networks, so a set of thousands of peers costs
 * one probe. IPv4 keys are plain numbers to keep the hot path off bigint.
 */
export class CidrSet {
  #v4 = new Map<number, Set<number>>()
  #v6 = new Map<number, Set<bigint>>()
  #v4Prefixes: number[] = []
  /** The sets of #v4Prefixes, in the same order (no Map lookup per probe). */
  #v4Sets: Array<Set<number>> = []
  #v6Prefixes: number[] = []
  #size = 0

  constructor(entries: Iterable<string | Cidr> = []) {
    for (const e of entries) this.add(e)
  }

  /** Adds a network or address; strings go through `parseCidr` (and may throw). */
  add(entry: string | Cidr): void {
    const cidr = typeof entry === 'string' ? parseCidr(entry) : entry
    if (cidr.family === 4) {
      let set = this.#v4.get(cidr.prefix)
      if (set === undefined) {
        set = new Set()
        this.#v4.set(cidr.prefix, set)
        this.#v4Prefixes = [...this.#v4.keys()].sort((a, b) => b - a)
        this.#v4Sets = this.#v4Prefixes.map((p) => this.#v4.get(p) as Set<number>)
      }
      const key = Number(cidr.network)
      if (!set.has(key)) this.#size++
      set.add(key)
    } else {
      let set = this.#v6.get(cidr.prefix)
      if (set === undefined) {
        set = new Set()
        this.#v6.set(cidr.prefix, set)
        this.#v6Prefixes = [...this.#v6.keys()].sort((a, b) => b - a)
      }
      if (!set.has(cidr.network)) this.#size++
      set.add(cidr.network)
    }
  }

  /** True when some network in the set contains the address; false for non-addresses. */
  has(addr: string | Address): boolean {
    const a = toAddress(addr)
    if (a === null) return false
    if (a.family === 4) return this.hasV4(Number(a.value))
    for (const p of this.#v6Prefixes) {
      if ((this.#v6.get(p) as Set<bigint>).has(a.value & (V6_MASKS[p] as bigint))) return true
    }
    return false
  }

  /** has() of an IPv4 address as its u32: the guards ask every set about one address. */
  hasV4(n: number): boolean {
    const prefixes = this.#v4Prefixes
    const sets = this.#v4Sets
    for (let i = 0; i < prefixes.length; i++) {
      if (sets[i]!.has((n & V4_MASKS[prefixes[i]!]!) >>> 0)) return true
    }
    return false
  }

  /** Number of distinct networks. */
  get size(): number {
    return this.#size
  }

  *[Symbol.iterator](): IterableIterator<Cidr> {
    for (const [prefix, set] of this.#v4) for (const n of set) yield { family: 4, network: BigInt(n), prefix }
    for (const [prefix, set] of this.#v6) for (const network of set) yield { family: 6, network, prefix }
  }
}

/**
 * What makes an address special on its own (no host configuration needed), or
 * null. IPv4: 0.0.0.0/8 (this network; only ever a source during DHCP), 127/8,
 * 169.254/16, 224/4, 255.255.255.255. IPv6: ::, ::1, fe80::/10, ff00::/8, and
 * ::/96 (deprecated IPv4-compatible: no real host sends from one, and a forged one
 * may embed a guarded IPv4 address).
 */
export function classifyAddress(addr: string | Address): SpecialKind | null {
  const a = toAddress(addr)
  if (a === null) return null
  const v = a.value
  if (a.family === 4) return classifyV4(Number(v))
  if (v === 0n) return 'unspecified'
  if (v === 1n) return 'loopback'
  if (v >> 118n === 0x3fan) return 'link-local'
  if (v >> 120n === 0xffn) return 'multicast'
  if (v >> 32n === 0n) return 'ipv4-compat'
  return null
}

/** classifyAddress of an IPv4 address as its u32. */
export function classifyV4(n: number): SpecialKind | null {
  const top = n >>> 24
  if (top === 0) return 'unspecified'
  if (top === 127) return 'loopback'
  if (n >>> 16 === 0xa9fe) return 'link-local'
  if (top >= 224 && top <= 239) return 'multicast'
  if (n === 0xffff_ffff) return 'broadcast'
  return null
}

/**
 * The directed broadcast address of an IPv4 interface prefix (198.18.0.1/24 →
 * 198.18.0.255), or null where there is none (IPv6, /31, /32).
 */
export function directedBroadcast(address: string | Address, prefixLength: number): Address | null {
  const a = toAddress(address)
  if (a === null || a.family !== 4 || !Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 30) {
    return null
  }
  return { family: 4, value: (a.value | ~maskOf(4, prefixLength)) & MAX_V4 }
}
