/**
 * The tripwire port set: turns what users write ('2222/tcp', '9000-9010/udp', 2222,
 * objects) into a canonical list of PortRange — validated, per protocol, sorted by
 * port, adjacent ranges merged — which is what the filter compiler and user-space
 * re-check consume. Pure, no I/O. Invariants of the output: 1 ≤ from ≤ to ≤ 65535,
 * ordered tcp, udp, sctp, ip and then by `from`, and no two ranges of one protocol
 * touch or overlap. Overlap in the *input* is an error rather than silently merged: a
 * port listed twice is usually a typo in someone's config.
 *
 * 'N/ip' is an IP protocol tripwire: any packet of IP protocol N (0..255) to this host
 * is a hit. Refused, with the reason: the transports that have port tripwires (6, 17,
 * 132: every TCP packet would be a hit), ICMP and ICMPv6 (1, 58: every ping and every
 * neighbour discovery), the IPv6 extension headers the parser looks through (0, 43,
 * 44, 51, 60, 135, 139, 140: they are never the protocol a packet ends in), and 255
 * (reserved).
 */

import { PortanoiaError } from '../errors.js'
import type { PortRange, PortSpec, Proto } from '../types.js'

const PROTOS: readonly Proto[] = ['tcp', 'udp', 'sctp', 'ip']

const FORMAT_HINT = "write a port as 2222, '2222/tcp', '9000-9010/udp', '2905/sctp', { port, proto } or { from, to, proto }; an IP protocol as '47/ip'"

/** IP protocol numbers that cannot be tripwires, and why. */
const NOT_IP_TRIPWIRES: ReadonlyMap<number, string> = new Map([
  [6, 'TCP has port tripwires: every TCP packet would be a hit'],
  [17, 'UDP has port tripwires: every UDP packet would be a hit'],
  [132, 'SCTP has port tripwires: every SCTP packet would be a hit'],
  [1, 'every ping would be a hit'],
  [58, 'every IPv6 neighbour discovery would be a hit'],
  [0, 'an IPv6 extension header (hop-by-hop): the parser looks through it'],
  [43, 'an IPv6 extension header (routing): the parser looks through it'],
  [44, 'an IPv6 extension header (fragment): the parser looks through it'],
  [51, 'an IPv6 extension header (AH): the parser looks through it'],
  [60, 'an IPv6 extension header (destination options): the parser looks through it'],
  [135, 'an IPv6 extension header (mobility): the parser looks through it'],
  [139, 'an IPv6 extension header (HIP): the parser looks through it'],
  [140, 'an IPv6 extension header (shim6): the parser looks through it'],
  [255, 'reserved'],
])

interface Parsed extends PortRange {
  /** The spec as written, for error messages. */
  source: string
}

function describe(spec: unknown): string {
  try {
    return typeof spec === 'string' ? JSON.stringify(spec) : (JSON.stringify(spec) ?? String(spec))
  } catch {
    return String(spec)
  }
}

function bad(spec: unknown, why: string, hint = FORMAT_HINT): PortanoiaError {
  return new PortanoiaError('PORTANOIA_BAD_PORT', `bad tripwire port ${describe(spec)}: ${why}`, { hint })
}

function toProto(spec: unknown, p: unknown): Proto {
  if (p === undefined) return 'tcp'
  if (typeof p === 'string' && (PROTOS as readonly string[]).includes(p.toLowerCase())) return p.toLowerCase() as Proto
  throw bad(spec, `unknown protocol ${describe(p)}`, 'use tcp, udp, sctp, or ip for an IP protocol number')
}

function toPort(spec: unknown, v: unknown, proto: Proto): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n)) throw bad(spec, `${describe(v)} is not an integer`)
  if (proto === 'ip') {
    if (n < 0 || n > 255) throw bad(spec, `${n} is outside 0..255`, 'IP protocol numbers are 0..255, e.g. 47/ip (GRE), 50/ip (ESP)')
    const why = NOT_IP_TRIPWIRES.get(n)
    if (why !== undefined) throw bad(spec, `IP protocol ${n} cannot be a tripwire: ${why}`, 'pick protocols this host does not use, e.g. 47/ip (GRE), 50/ip (ESP), 112/ip (VRRP)')
    return n
  }
  if (n < 1 || n > 65535) {
    throw bad(spec, `${n} is outside 1..65535`, 'ports are 1..65535 (port 0 cannot be connected to, so it cannot be a tripwire)')
  }
  return n
}

function parseOne(spec: PortSpec): Parsed {
  const source = describe(spec)
  if (typeof spec === 'number') {
    const port = toPort(spec, spec, 'tcp')
    return { proto: 'tcp', from: port, to: port, source }
  }
  if (typeof spec === 'string') {
    const m = /^\s*([^/\s-]+)(?:\s*-\s*([^/\s]+))?\s*(?:\/\s*(\S+))?\s*$/.exec(spec)
    if (!m) throw bad(spec, 'not a port, range or port/proto')
    const proto = toProto(spec, m[3])
    const from = toPort(spec, m[1], proto)
    const to = m[2] === undefined ? from : toPort(spec, m[2], proto)
    return checkOrder(spec, { proto, from, to, source })
  }
  if (typeof spec === 'object' && spec !== null) {
    const proto = toProto(spec, spec.proto)
    if ('port' in spec) {
      const port = toPort(spec, spec.port, proto)
      return { proto, from: port, to: port, source }
    }
    if ('from' in spec && 'to' in spec) {
      return checkOrder(spec, { proto, from: toPort(spec, spec.from, proto), to: toPort(spec, spec.to, proto), source })
    }
  }
  throw bad(spec, 'not a port, range or port/proto')
}

function checkOrder(spec: unknown, r: Parsed): Parsed {
  if (r.from > r.to) throw bad(spec, `range ${r.from}-${r.to} is reversed`, `write it as ${r.to}-${r.from}`)
  if (r.proto === 'ip') for (let n = r.from; n <= r.to; n++) toPort(spec, n, 'ip')
  return r
}

/**
 * Validates and normalises a tripwire set. Throws PortanoiaError with code
 * PORTANOIA_BAD_PORT, PORTANOIA_NO_PORTS or PORTANOIA_DUPLICATE_PORT.
 */
export function parsePorts(specs: readonly PortSpec[]): PortRange[] {
  if (!Array.isArray(specs)) throw bad(specs, 'expected an array of port specs')
  if (specs.length === 0) {
    throw new PortanoiaError('PORTANOIA_NO_PORTS', 'no tripwire ports given', {
      hint: "pass at least one port that nothing on this host serves, e.g. ['2222/tcp']",
    })
  }
  const parsed = specs.map(parseOne)
  const out: PortRange[] = []
  for (const proto of PROTOS) {
    const mine = parsed.filter((r) => r.proto === proto).sort((a, b) => a.from - b.from || a.to - b.to)
    let prev: Parsed | undefined
    let open: PortRange | undefined
    for (const r of mine) {
      if (prev && r.from <= prev.to) {
        throw new PortanoiaError(
          'PORTANOIA_DUPLICATE_PORT',
          `port ${r.from}/${proto} is listed twice (${prev.source} and ${r.source})`,
          { hint: `list each ${proto} port once; remove or narrow one of the two` },
        )
      }
      if (open && r.from === open.to + 1) open.to = r.to
      else {
        open = { proto, from: r.from, to: r.to }
        out.push(open)
      }
      prev = prev && prev.to > r.to ? prev : r
    }
  }
  return out
}

/** Splits a comma- or whitespace-separated list ('22, 2222/tcp 53/udp') and parses it. */
export function parsePortList(text: string): PortRange[] {
  return parsePorts(text.split(/[\s,]+/).filter((s) => s !== ''))
}

/** Canonical text of a set: '22/tcp,9000-9010/udp'. parsePortList() reads it back. */
export function portsToString(ranges: readonly PortRange[]): string {
  return ranges.map((r) => `${r.from === r.to ? r.from : `${r.from}-${r.to}`}/${r.proto}`).join(',')
}

/** Number of ports in a set. */
export function portCount(ranges: readonly PortRange[]): number {
  return ranges.reduce((n, r) => n + r.to - r.from + 1, 0)
}

/** Whether `port` on `proto` is a tripwire of the (normalised) set: binary search. */
export function portInSet(ranges: readonly PortRange[], proto: Proto, port: number): boolean {
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const r = ranges[mid]
    if (r === undefined) break
    const order = PROTOS.indexOf(r.proto) - PROTOS.indexOf(proto) || (port < r.from ? 1 : port > r.to ? -1 : 0)
    if (order === 0) return true
    if (order > 0) hi = mid - 1
    else lo = mid + 1
  }
  return false
}
