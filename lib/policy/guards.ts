/**
 * Guards: the addresses portanoia must never block, kept as one immutable set per
 * reason (self, gateway, resolver, peer, allowlist, special) and swapped in as a
 * whole by `update()`, so a check never sees half of a refresh. The facts come from
 * the kernel (lib/daemon/host-watch.ts, rtnetlink); live peers are not a snapshot
 * but a check right before each block (the engine's `liveGuard`). Also the pure
 * parsers for the text the host still describes itself with: resolv.conf(5) and the
 * /proc/net socket tables (the listening ports `--unused` leaves alone). No I/O
 * here; every parser skips lines it does not understand rather than throwing,
 * because a kernel adding a column must not take the daemon down.
 */

import { PortanoiaError } from '../errors.js'
import {
  type Address,
  type Cidr,
  CidrSet,
  classifyAddress,
  classifyV4,
  directedBroadcast,
  formatAddress,
  makeAddress,
  parseAddress,
  toAddress,
} from './addr.js'
import { cidrOverlaps, lastOf } from './prefixes.js'

export type GuardReason = 'self' | 'gateway' | 'resolver' | 'peer' | 'allowlist' | 'special'

/** Check order: the first matching reason is the one reported. */
export const GUARD_REASONS: readonly GuardReason[] = ['special', 'self', 'gateway', 'resolver', 'peer', 'allowlist']

/** One address configured on an interface of this host. */
export interface InterfaceAddress {
  address: string
  prefixLength: number
  interface?: string
}

/**
 * Facts about the host, by category. In `update()`, a category that is present
 * replaces the previous one; an absent category is kept.
 */
export interface GuardSnapshot {
  /** Own addresses with prefixes: guarded as `self`; IPv4 directed broadcasts as `special`. */
  interfaces?: readonly InterfaceAddress[]
  /** Further own addresses (e.g. a VIP the interfaces do not show). */
  self?: readonly string[]
  /** IPv4 and IPv6 next hops of the routing tables. */
  gateways?: readonly string[]
  /** DNS resolvers. */
  resolvers?: readonly string[]
  /** Remote addresses of established connections (the daemon asks the kernel live instead). */
  peers?: readonly string[]
  /** Operator-configured networks or addresses (CIDR syntax). */
  allowlist?: readonly string[]
}

interface GuardState {
  readonly self: CidrSet
  readonly broadcasts: CidrSet
  readonly gateway: CidrSet
  readonly resolver: CidrSet
  readonly peer: CidrSet
  readonly allowlist: CidrSet
}

type SetName = keyof GuardState

function buildSet(category: string, entries: readonly string[], exact: boolean): CidrSet {
  const set = new CidrSet()
  for (const entry of entries) {
    if (exact) {
      const a = parseAddress(entry)
      if (a === null) {
        throw new PortanoiaError('PORTANOIA_BAD_GUARD', `${category}: ${JSON.stringify(entry)} is not an IP address`, {
          hint: 'guard entries for self, gateways, resolvers and peers are single addresses',
        })
      }
      set.add({ family: a.family, network: a.value, prefix: a.family === 4 ? 32 : 128 })
    } else {
      try {
        set.add(entry)
      } catch (e) {
        if (e instanceof PortanoiaError) {
          throw new PortanoiaError(e.code, `${category}: ${e.message}`, { hint: e.hint, cause: e })
        }
        throw e
      }
    }
  }
  return set
}

/**
 * The guard sets. `check()` is called for every hit, so it does no allocation
 * beyond parsing a string address.
 */
export class Guards {
  #state: GuardState
  #generation = 0

  constructor(snapshot: GuardSnapshot = {}) {
    const empty = new CidrSet()
    this.#state = {
      self: empty,
      broadcasts: empty,
      gateway: empty,
      resolver: empty,
      peer: empty,
      allowlist: empty,
    }
    this.update(snapshot)
  }

  /**
   * Replaces the categories present in `snapshot`. All new sets are built before
   * any is installed: an invalid entry throws PortanoiaError and changes nothing.
   */
  update(snapshot: GuardSnapshot): void {
    const next: Partial<Record<SetName, CidrSet>> = {}
    if (snapshot.interfaces !== undefined || snapshot.self !== undefined) {
      const interfaces = snapshot.interfaces ?? []
      const own = [...interfaces.map((i) => i.address), ...(snapshot.self ?? [])]
      next.self = buildSet('self', own, true)
      const broadcasts = new CidrSet()
      for (const i of interfaces) {
        const b = directedBroadcast(i.address, i.prefixLength)
        if (b !== null) broadcasts.add({ family: 4, network: b.value, prefix: 32 })
      }
      next.broadcasts = broadcasts
    }
    if (snapshot.gateways !== undefined) next.gateway = buildSet('gateways', snapshot.gateways, true)
    if (snapshot.resolvers !== undefined) next.resolver = buildSet('resolvers', snapshot.resolvers, true)
    if (snapshot.peers !== undefined) next.peer = buildSet('peers', snapshot.peers, true)
    if (snapshot.allowlist !== undefined) next.allowlist = buildSet('allowlist', snapshot.allowlist, false)
    // One assignment: a concurrent reader (the next check) sees either all of the
    // old sets or all of the new ones.
    this.#state = { ...this.#state, ...next }
    this.#generation++
  }

  /** Changes on every update: lets callers cache a `check()` result per address. */
  get generation(): number {
    return this.#generation
  }

  /** Why `addr` must not be blocked, or null. Unparseable input is never guarded. */
  check(addr: string | Address): GuardReason | null {
    const a = toAddress(addr)
    if (a === null) return null
    const s = this.#state
    if (a.family === 4) {
      // Once per new source under a flood: one conversion off bigint, then numbers only.
      const n = Number(a.value)
      if (classifyV4(n) !== null || s.broadcasts.hasV4(n)) return 'special'
      if (s.self.hasV4(n)) return 'self'
      if (s.gateway.hasV4(n)) return 'gateway'
      if (s.resolver.hasV4(n)) return 'resolver'
      if (s.peer.hasV4(n)) return 'peer'
      if (s.allowlist.hasV4(n)) return 'allowlist'
      return null
    }
    if (classifyAddress(a) !== null || s.broadcasts.has(a)) return 'special'
    if (s.self.has(a)) return 'self'
    if (s.gateway.has(a)) return 'gateway'
    if (s.resolver.has(a)) return 'resolver'
    if (s.peer.has(a)) return 'peer'
    if (s.allowlist.has(a)) return 'allowlist'
    return null
  }

  /**
   * Why no address of `network` may be blocked — a prefix ban — or null: the first
   * reason whose set overlaps the network (an own address,
   * gateway, resolver, known peer or allowlisted network inside it, or an allowlisted
   * network holding it), or `special` when its first or last address is special or
   * it holds a directed broadcast of this host's. Established peers are asked of the
   * kernel live by the caller.
   */
  checkNetwork(network: Cidr): GuardReason | null {
    const s = this.#state
    const overlaps = (set: CidrSet): boolean => {
      for (const c of set) if (cidrOverlaps(c, network)) return true
      return false
    }
    const first = { family: network.family, value: network.network }
    if (classifyAddress(first) !== null || classifyAddress(lastOf(network)) !== null) return 'special'
    if (overlaps(s.self)) return 'self'
    if (overlaps(s.gateway)) return 'gateway'
    if (overlaps(s.resolver)) return 'resolver'
    if (overlaps(s.peer)) return 'peer'
    if (overlaps(s.allowlist)) return 'allowlist'
    // Last: a network holding an own broadcast mostly holds the own address too, which says more.
    if (overlaps(s.broadcasts)) return 'special'
    return null
  }

  /** Entries per reason (special counts only the directed broadcasts). */
  counts(): Record<GuardReason, number> {
    const s = this.#state
    return {
      special: s.broadcasts.size,
      self: s.self.size,
      gateway: s.gateway.size,
      resolver: s.resolver.size,
      peer: s.peer.size,
      allowlist: s.allowlist.size,
    }
  }
}

// ---------------------------------------------------------------------------
// Parsers for the host's own descriptions of itself. Text in, addresses out.

/** Byte order of the u32 words /proc prints with %08X (the host's). */
export type Endianness = 'LE' | 'BE'

function dataLines(text: string): string[][] {
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length > 1)
}

/** A u32 printed with %08X from a network-order word, back to an address value. */
function v4FromHexWord(hex: string, endianness: Endianness): bigint | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return null
  const word = Number.parseInt(hex, 16)
  if (endianness === 'BE') return BigInt(word)
  const swapped = (((word & 0xff) << 24) | ((word & 0xff00) << 8) | ((word >>> 8) & 0xff00) | (word >>> 24)) >>> 0
  return BigInt(swapped)
}

function v6FromHexWords(hex: string, endianness: Endianness): bigint | null {
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) return null
  let value = 0n
  for (let i = 0; i < 4; i++) {
    const w = v4FromHexWord(hex.slice(i * 8, i * 8 + 8), endianness)
    if (w === null) return null
    value = (value << 32n) | w
  }
  return value
}

function unique(values: Iterable<string>): string[] {
  return [...new Set(values)]
}

/**
 * Nameservers from resolv.conf(5) text. Comments start with '#' or ';'; a zone
 * index (fe80::1%eth0) is dropped because guards compare addresses, not scopes.
 */
export function parseResolvConf(text: string): string[] {
  const out: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim()
    const m = /^nameserver\s+(\S+)/.exec(line)
    if (m === null) continue
    const addr = parseAddress((m[1] as string).replace(/%.*$/, ''))
    if (addr !== null) out.push(formatAddress(addr))
  }
  return unique(out)
}

/** One row of /proc/net/tcp, tcp6, udp or udp6. */
export interface SocketEntry {
  local: string
  localPort: number
  remote: string
  remotePort: number
  /** Kernel TCP state number (1 ESTABLISHED, 10 LISTEN; UDP uses 7 for unconnected). */
  state: number
}

export const TCP_LISTEN = 0x0a

function parseEndpoint(text: string, endianness: Endianness): { addr: string; port: number } | null {
  const colon = text.indexOf(':')
  if (colon === -1) return null
  const hex = text.slice(0, colon)
  const port = Number.parseInt(text.slice(colon + 1), 16)
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) return null
  if (hex.length === 8) {
    const v = v4FromHexWord(hex, endianness)
    return v === null ? null : { addr: formatAddress({ family: 4, value: v }), port }
  }
  const v = v6FromHexWords(hex, endianness)
  return v === null ? null : { addr: formatAddress(makeAddress(6, v)), port }
}

/**
 * Rows of /proc/net/{tcp,tcp6,udp,udp6}. Addresses are printed as host-order u32
 * words (four of them for IPv6), ports as plain hex. IPv4-mapped peers on tcp6
 * sockets come back as IPv4.
 */
export function parseProcNetSockets(text: string, endianness: Endianness = 'LE'): SocketEntry[] {
  const out: SocketEntry[] = []
  for (const f of dataLines(text)) {
    if (f.length < 4) continue
    const local = parseEndpoint(f[1] as string, endianness)
    const remote = parseEndpoint(f[2] as string, endianness)
    const state = Number.parseInt(f[3] as string, 16)
    if (local === null || remote === null || !Number.isInteger(state)) continue
    out.push({ local: local.addr, localPort: local.port, remote: remote.addr, remotePort: remote.port, state })
  }
  return out
}
