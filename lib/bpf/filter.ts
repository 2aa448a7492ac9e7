/**
 * Compiles the tripwire set into the classic-BPF socket filter that runs in the
 * kernel in front of the AF_PACKET ring, so that only probes to tripwire ports ever
 * reach user space. The program is link-layer agnostic: it reads the packet only
 * through SKF_NET_OFF-relative and ancillary loads, so the same program works on
 * Ethernet, loopback, the `any` device and tun interfaces. What it does, in order:
 *
 *   drop our own transmissions (pkttype OUTGOING); dispatch on skb->protocol,
 *   looking through one in-band 802.1Q/802.1ad tag (the QinQ inner tag that the
 *   kernel's one-tag untagging leaves in the data); IPv4: drop non-first fragments,
 *   header length via `ldx msh`; IPv6: walk up to IPV6_EXT_HEADER_LIMIT extension
 *   headers (hop-by-hop, routing, destination, AH, fragment — dropping non-first
 *   fragments), accepting a chain still undecided after that; then match the
 *   destination port (bytes 2–3 of TCP, UDP and SCTP alike) against that protocol's
 *   sorted ranges with a balanced binary search of jge/jgt. IP protocol tripwires
 *   ('47/ip') are one more such search, over the IPv4 protocol field or the IPv6 next
 *   header after the extension headers, reached only by packets whose protocol is none
 *   of the tripwire transports: TCP, UDP and SCTP traffic pays nothing for them, and
 *   without IP protocol tripwires the program is the same as before they existed.
 *
 * If the exact program would not fit the instruction budget, the closest gaps
 * between ranges are merged until it fits and the result says `exact: false`:
 * the kernel then passes a superset, and user space must re-check the exact set
 * (portInSet in ports.ts). Pure and synchronous.
 *
 * Limits, by design (the README lists them): it matches the destination port only;
 * it looks through one in-band tag, so frames with three or more tags on the wire
 * are dropped; it drops non-first fragments, and IPv6 first fragments that break
 * RFC 7112 by not carrying the header chain through the port; an IPv6 chain still
 * undecided after IPV6_EXT_HEADER_LIMIT headers is accepted for user space to
 * judge; tunnels and other encapsulations (GRE, VXLAN, IP-in-IP, 6in4, MPLS,
 * PPPoE, ESP) are not entered and are dropped.
 */

import { PortanoiaError } from '../errors.js'
import { PROTO_NUMBERS } from '../types.js'
import type { PortRange, Proto, TransportProto } from '../types.js'
import { BPF_MAXINSNS, SKF_AD_PKTTYPE, SKF_AD_PROTOCOL, SOCK_FILTER_SIZE, ad, assemble, net } from './asm.js'
import type { Insn } from './asm.js'

export const DEFAULT_SNAP_LEN = 512
/** IPv6 extension headers the filter walks before it gives up and passes the packet. */
export const IPV6_EXT_HEADER_LIMIT = 8

const PROTOS: readonly Proto[] = ['tcp', 'udp', 'sctp', 'ip']
const TRANSPORTS: readonly TransportProto[] = ['tcp', 'udp', 'sctp']
const PACKET_OUTGOING = 4
const ETH_P_IP = 0x0800
const ETH_P_IPV6 = 0x86dd
const ETH_P_8021Q = 0x8100
const ETH_P_8021AD = 0x88a8
const NEXTHDR_HOP = 0
const NEXTHDR_ROUTING = 43
const NEXTHDR_FRAGMENT = 44
const NEXTHDR_AUTH = 51
const NEXTHDR_DEST = 60

export interface FilterOptions {
  /** Bytes of each accepted packet to capture (the program's accept value). Default 512. */
  snapLen?: number
  /** Instruction budget, at most BPF_MAXINSNS (4096). Default 4096. */
  maxInstructions?: number
}

export interface CompiledFilter {
  /** struct sock_filter[], little-endian, ready for SO_ATTACH_FILTER. */
  program: Buffer
  instructions: number
  /** False when ranges were merged to fit: the kernel passes a superset of the set. */
  exact: boolean
  /** The ranges the program actually matches (equal to the input when exact). */
  matched: PortRange[]
}

type ByProto = Record<Proto, PortRange[]>

function badPort(message: string): PortanoiaError {
  return new PortanoiaError('PORTANOIA_BAD_PORT', message, { hint: 'normalise the set with parsePorts() first' })
}

/** Groups, sorts and merges overlapping or adjacent ranges (the filter only needs the union). */
function normalise(ranges: readonly PortRange[]): ByProto {
  const out: ByProto = { tcp: [], udp: [], sctp: [], ip: [] }
  const sorted = [...ranges].sort((a, b) => a.from - b.from)
  for (const r of sorted) {
    if (!PROTOS.includes(r.proto)) throw badPort(`unknown protocol ${String(r.proto)}`)
    const max = r.proto === 'ip' ? 255 : 65535
    if (!Number.isInteger(r.from) || !Number.isInteger(r.to) || r.from < 0 || r.to > max || r.from > r.to) {
      throw badPort(`bad port range ${String(r.from)}-${String(r.to)}/${r.proto}`)
    }
    const list = out[r.proto]
    const last = list[list.length - 1]
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to)
    else list.push({ proto: r.proto, from: r.from, to: r.to })
  }
  return out
}

function flatten(by: ByProto): PortRange[] {
  return PROTOS.flatMap((p) => by[p])
}

/** Merges the `count` smallest gaps between neighbouring ranges of the same protocol. */
function mergeGaps(by: ByProto, count: number): ByProto {
  const gaps: Array<{ proto: Proto; i: number; size: number }> = []
  for (const proto of PROTOS) {
    const list = by[proto]
    for (let i = 0; i + 1 < list.length; i++) {
      gaps.push({ proto, i, size: (list[i + 1]?.from ?? 0) - (list[i]?.to ?? 0) - 1 })
    }
  }
  gaps.sort((a, b) => a.size - b.size || PROTOS.indexOf(a.proto) - PROTOS.indexOf(b.proto) || a.i - b.i)
  const close = new Set(gaps.slice(0, count).map((g) => `${g.proto}:${g.i}`))
  const out: ByProto = { tcp: [], udp: [], sctp: [], ip: [] }
  for (const proto of PROTOS) {
    by[proto].forEach((r, i) => {
      const list = out[proto]
      const last = list[list.length - 1]
      if (last && close.has(`${proto}:${i - 1}`)) last.to = r.to
      else list.push({ ...r })
    })
  }
  return out
}

/**
 * The balanced search over ranges[lo..hi]. A is the destination port; what the
 * path so far proved about it (lb ≤ A ≤ ub) spares comparisons at the leaves.
 */
function search(out: Insn[], tag: string, ranges: readonly PortRange[], lo: number, hi: number, lb: number, ub: number): void {
  if (lo === hi) {
    const r = ranges[lo]
    if (r === undefined) return
    const low = lb < r.from
    const high = ub > r.to
    if (low && high && r.from === r.to) out.push({ op: 'jeq', k: r.from, jt: 'accept', jf: 'drop' })
    else if (low && high) out.push({ op: 'jge', k: r.from, jf: 'drop' }, { op: 'jgt', k: r.to, jt: 'drop', jf: 'accept' })
    else if (low) out.push({ op: 'jge', k: r.from, jt: 'accept', jf: 'drop' })
    else if (high) out.push({ op: 'jgt', k: r.to, jt: 'drop', jf: 'accept' })
    else out.push({ op: 'ja', to: 'accept' })
    return
  }
  const mid = (lo + hi + 1) >> 1
  const pivot = ranges[mid]?.from ?? 0
  const right = `${tag}_${mid}_${hi}`
  out.push({ op: 'jge', k: pivot, jt: right })
  search(out, tag, ranges, lo, mid - 1, lb, Math.min(ub, pivot - 1))
  out.push({ op: 'label', name: right })
  search(out, tag, ranges, mid, hi, Math.max(lb, pivot), ub)
}

/** Where a packet of no tripwire transport goes: the IP protocol search, or out. */
const OTHER_PROTO = (by: ByProto): string => (by.ip.length > 0 ? 'ipproto' : 'drop')

function ipv4(out: Insn[], base: number): void {
  out.push(
    { op: 'label', name: `ipv4_${base}` },
    // Non-first fragments carry no transport header: nothing to match.
    { op: 'ldh', k: net(base + 6) },
    { op: 'jset', k: 0x1fff, jt: 'drop' },
    { op: 'ldxmsh', k: net(base) },
  )
  if (base !== 0) out.push({ op: 'txa' }, { op: 'add', k: base }, { op: 'tax' })
  out.push({ op: 'ldb', k: net(base + 9) }, { op: 'ja', to: 'l4' })
}

function transportJumps(present: readonly TransportProto[]): Insn[] {
  return present.map((p) => ({ op: 'jeq', k: PROTO_NUMBERS[p], jt: p }) as const)
}

/**
 * The IPv6 walk. Invariant at each `ext_i`: X is the offset (from the network
 * header) of the header whose type is in A. Routing, hop-by-hop and destination
 * options are (len+1)*8 bytes, AH (len+2)*4, the fragment header 8.
 */
function ipv6(out: Insn[], present: readonly TransportProto[], other: string): void {
  out.push(
    { op: 'label', name: 'ipv6_4' },
    { op: 'ldxi', k: 4 },
    { op: 'ja', to: 'ipv6' },
    { op: 'label', name: 'ipv6_0' },
    { op: 'ldxi', k: 0 },
    { op: 'label', name: 'ipv6' },
    { op: 'txa' },
    { op: 'add', k: 40 },
    { op: 'tax' },
    // next header sits at 6 within the fixed header, i.e. 34 bytes back from X
    { op: 'ldb', k: net(6 - 40), ind: true },
  )
  for (let i = 0; i <= IPV6_EXT_HEADER_LIMIT; i++) {
    const last = i === IPV6_EXT_HEADER_LIMIT
    const next = `ext_${i + 1}`
    out.push(
      { op: 'label', name: `ext_${i}` },
      ...transportJumps(present),
      { op: 'jeq', k: NEXTHDR_HOP, jt: last ? 'accept' : `opt_${i}` },
      { op: 'jeq', k: NEXTHDR_DEST, jt: last ? 'accept' : `opt_${i}` },
      { op: 'jeq', k: NEXTHDR_ROUTING, jt: last ? 'accept' : `opt_${i}` },
      { op: 'jeq', k: NEXTHDR_FRAGMENT, jt: last ? 'accept' : `frag_${i}` },
      { op: 'jeq', k: NEXTHDR_AUTH, jt: last ? 'accept' : `ah_${i}`, jf: other },
    )
    if (last) break
    for (const [name, plus, shift] of [
      [`opt_${i}`, 1, 3],
      [`ah_${i}`, 2, 2],
    ] as const) {
      out.push(
        { op: 'label', name },
        { op: 'ldb', k: net(1), ind: true },
        { op: 'add', k: plus },
        { op: 'lsh', k: shift },
        { op: 'add', x: true },
        { op: 'st', k: 0 },
        { op: 'ldb', k: net(0), ind: true },
        { op: 'ldxm', k: 0 },
        { op: 'ja', to: next },
      )
    }
    out.push(
      { op: 'label', name: `frag_${i}` },
      { op: 'ldh', k: net(2), ind: true },
      { op: 'jset', k: 0xfff8, jt: 'drop' },
      { op: 'txa' },
      { op: 'add', k: 8 },
      { op: 'tax' },
      { op: 'ldb', k: net(-8), ind: true },
      // falls through into ext_{i+1}
    )
  }
}

/** The program source for a normalised set; exported for disassembly in tests and debugging. */
export function filterSource(ranges: readonly PortRange[], snapLen = DEFAULT_SNAP_LEN): Insn[] {
  return source(normalise(ranges), snapLen)
}

function source(by: ByProto, snapLen: number): Insn[] {
  const present = TRANSPORTS.filter((p) => by[p].length > 0)
  if (present.length === 0 && by.ip.length === 0) return [{ op: 'ret', k: 0 }]
  const other = OTHER_PROTO(by)
  const out: Insn[] = [
    { op: 'ld', k: ad(SKF_AD_PKTTYPE) },
    { op: 'jeq', k: PACKET_OUTGOING, jt: 'drop' },
    { op: 'ld', k: ad(SKF_AD_PROTOCOL) },
    { op: 'jeq', k: ETH_P_IP, jt: 'ipv4_0' },
    { op: 'jeq', k: ETH_P_IPV6, jt: 'ipv6_0' },
    { op: 'jeq', k: ETH_P_8021Q, jt: 'tagged' },
    { op: 'jeq', k: ETH_P_8021AD, jf: 'drop' },
    // One tag still in the data: NET+0 is its TCI, NET+2 the inner ethertype.
    { op: 'label', name: 'tagged' },
    { op: 'ldh', k: net(2) },
    { op: 'jeq', k: ETH_P_IP, jt: 'ipv4_4' },
    { op: 'jeq', k: ETH_P_IPV6, jt: 'ipv6_4', jf: 'drop' },
  ]
  ipv4(out, 0)
  ipv4(out, 4)
  ipv6(out, present, other)
  out.push({ op: 'label', name: 'l4' }, ...transportJumps(present), { op: 'ja', to: other })
  for (const p of present) {
    out.push({ op: 'label', name: p }, { op: 'ldh', k: net(2), ind: true })
    search(out, p, by[p], 0, by[p].length - 1, 0, 65535)
  }
  // A holds the IPv4 protocol or the IPv6 next header on both paths here.
  if (by.ip.length > 0) {
    out.push({ op: 'label', name: 'ipproto' })
    search(out, 'ip', by.ip, 0, by.ip.length - 1, 0, 255)
  }
  out.push({ op: 'label', name: 'accept' }, { op: 'ret', k: snapLen }, { op: 'label', name: 'drop' }, { op: 'ret', k: 0 })
  return out
}

/**
 * Compiles the filter for a set of ranges (normally parsePorts() output; overlapping
 * input is merged). Throws PortanoiaError PORTANOIA_BAD_FILTER when even one range
 * per protocol does not fit the budget.
 */
export function compileFilter(ranges: readonly PortRange[], opts: FilterOptions = {}): CompiledFilter {
  const snapLen = opts.snapLen ?? DEFAULT_SNAP_LEN
  const max = opts.maxInstructions ?? BPF_MAXINSNS
  if (!Number.isInteger(snapLen) || snapLen < 1 || snapLen > 0xffffffff) {
    throw new PortanoiaError('PORTANOIA_BAD_FILTER', `snapLen ${String(snapLen)} is not an integer in 1..2^32-1`, {
      hint: 'pass the number of bytes to capture per packet, e.g. 512',
    })
  }
  if (!Number.isInteger(max) || max < 1 || max > BPF_MAXINSNS) {
    throw new PortanoiaError('PORTANOIA_BAD_FILTER', `maxInstructions ${String(max)} is not in 1..${BPF_MAXINSNS}`, {
      hint: `the kernel refuses programs longer than BPF_MAXINSNS (${BPF_MAXINSNS})`,
    })
  }
  const exactSet = normalise(ranges)
  const build = (by: ByProto): Buffer => assemble(source(by, snapLen), { maxInstructions: Number.POSITIVE_INFINITY })
  const done = (program: Buffer, by: ByProto, exact: boolean): CompiledFilter => ({
    program,
    instructions: program.length / SOCK_FILTER_SIZE,
    exact,
    matched: flatten(by),
  })

  const first = build(exactSet)
  if (first.length / SOCK_FILTER_SIZE <= max) return done(first, exactSet, true)

  // Too big: estimate the cost per range from the two ends (one range per
  // protocol vs. all of them), aim below the budget, and tighten until it fits.
  const present = PROTOS.filter((p) => exactSet[p].length > 0)
  const total = flatten(exactSet).length
  const floorSet = mergeGaps(exactSet, total)
  const floor = build(floorSet).length / SOCK_FILTER_SIZE
  if (floor > max) {
    throw new PortanoiaError('PORTANOIA_BAD_FILTER', `the filter needs at least ${floor} instructions (budget ${max})`, {
      hint: 'raise maxInstructions (up to 4096)',
    })
  }
  const perRange = (first.length / SOCK_FILTER_SIZE - floor) / Math.max(1, total - present.length)
  let target = Math.min(total - 1, present.length + Math.floor((max - floor) / perRange))
  for (;;) {
    if (target <= present.length) return done(build(floorSet), floorSet, false)
    const merged = mergeGaps(exactSet, total - target)
    const program = build(merged)
    if (program.length / SOCK_FILTER_SIZE <= max) return done(program, merged, false)
    target = Math.min(target - 1, Math.floor(target * 0.97))
  }
}
