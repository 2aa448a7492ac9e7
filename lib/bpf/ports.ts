/**
 * The tripwire port set: turns what users write ('2222/tcp', '9000-9010/udp', 2222,
 * objects) into a canonical list of PortRange — validated, per protocol, sorted by
 * port, adjacent ranges merged — which is what the filter compiler and user-space
 * re-check consume. Pure, no I/O. Invariants of the output: 1 ≤ from ≤ to ≤ 65535,
 * ordered tcp, udp, sctp and then by `from`, and no two ranges of one protocol touch
 * or overlap. Overlap in the *input* is an error rather than silently merged: a
 * port listed twice is usually a typo in someone's config.
 */

import { PortanoiaError } from '../errors.js'
import type { PortRange, PortSpec, Proto } from '../types.js'

const PROTOS: readonly Proto[] = ['tcp', 'udp', 'sctp']

const FORMAT_HINT = "write a port as 2222, '2222/tcp', '9000-9010/udp', '2905/sctp', { port, proto } or { from, to, proto }"

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
  throw bad(spec, `unknown protocol ${describe(p)}`, 'use tcp, udp or sctp')
}

function toPort(spec: unknown, v: unknown): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n)) throw bad(spec, `${describe(v)} is not an integer`)
  if (n < 1 || n > 65535) {
    throw bad(spec, `${n} is outside 1..65535`, 'ports are 1..65535 (port 0 cannot be connected to, so it cannot be a tripwire)')
  }
  return n
}

function parseOne(spec: PortSpec): Parsed {
  const source = describe(spec)
  if (typeof spec === 'number') {
    const port = toPort(spec, spec)
    return { proto: 'tcp', from: port, to: port, source }
  }
  if (typeof spec === 'string') {
    const m = /^\s*([^/\s-]+)(?:\s*-\s*([^/\s]+))?\s*(?:\/\s*(\S+))?\s*$/.exec(spec)
    if (!m) throw bad(spec, 'not a port, range or port/proto')
    const from = toPort(spec, m[1])
    const to = m[2] === undefined ? from : toPort(spec, m[2])
    return checkOrder(spec, { proto: toProto(spec, m[3]), from, to, source })
  }
  if (typeof spec === 'object' && spec !== null) {
    const proto = toProto(spec, spec.proto)
    if ('port' in spec) {
      const port = toPort(spec, spec.port)
      return { proto, from: port, to: port, source }
    }
    if ('from' in spec && 'to' in spec) {
      return checkOrder(spec, { proto, from: toPort(spec, spec.from), to: toPort(spec, spec.to), source })
    }
  }
  throw bad(spec, 'not a port, range or port/proto')
}

function checkOrder(spec: unknown, r: Parsed): Parsed {
  if (r.from > r.to) throw bad(spec, `range ${r.from}-${r.to} is reversed`, `write it as ${r.to}-${r.from}`)
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
