/**
 * Which ports local services already use, and the tripwire sets that follow from
 * it: `portanoia watch` skips default tripwires a service listens on, and
 * `--unused` keeps "every port in the range that nothing listens on" in sync with
 * the live socket table. Pure, no I/O: the /proc text comes from host-view.ts.
 * Invariant of every set built here: no port that a local service listens on is a
 * tripwire, and no two ranges overlap (parsePorts would refuse them).
 */
import { parsePorts } from './bpf/ports.js'
import { parseProcNetSockets, TCP_LISTEN } from './policy/guards.js'
import type { Endianness } from './policy/guards.js'
import type { PortRange, PortSpec, Proto, TransportProto } from './types.js'

/** Ports with a listening (TCP, SCTP) or bound unconnected (UDP) socket, per protocol. */
export type ListeningPorts = Record<TransportProto, ReadonlySet<number>>

/** Whether a local socket uses `port` (IP protocol tripwires have no sockets). */
function inUse(listening: ListeningPorts, proto: Proto, port: number): boolean {
  return proto !== 'ip' && listening[proto].has(port)
}

/** The /proc/net files the listening table is read from; null when absent (no IPv6, no SCTP module). */
export interface SocketTables {
  tcp: string | null
  tcp6: string | null
  udp: string | null
  udp6: string | null
  /** /proc/net/sctp/eps */
  sctp: string | null
}

// UDP has no LISTEN: a socket bound and not connected shows TCP_CLOSE (7); a
// connected client socket shows ESTABLISHED and is not a service.
const UDP_UNCONNECTED = 0x07

/** Local ports of SCTP endpoints from /proc/net/sctp/eps (columns: ENDPT SOCK STY SST HBKT LPORT ...). */
export function parseSctpEps(text: string): number[] {
  const out: number[] = []
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 6) continue
    const port = Number(f[5])
    if (Number.isInteger(port) && port > 0 && port <= 65535) out.push(port)
  }
  return out
}

export function listeningPorts(tables: SocketTables, endianness: Endianness = 'LE'): ListeningPorts {
  const tcp = new Set<number>()
  const udp = new Set<number>()
  const sctp = new Set<number>()
  for (const text of [tables.tcp, tables.tcp6]) {
    if (text === null) continue
    for (const e of parseProcNetSockets(text, endianness)) if (e.state === TCP_LISTEN) tcp.add(e.localPort)
  }
  for (const text of [tables.udp, tables.udp6]) {
    if (text === null) continue
    for (const e of parseProcNetSockets(text, endianness)) if (e.state === UDP_UNCONNECTED && e.localPort > 0) udp.add(e.localPort)
  }
  if (tables.sctp !== null) for (const p of parseSctpEps(tables.sctp)) sctp.add(p)
  return { tcp, udp, sctp }
}

/** Tripwires a scanner looks for and a server rarely offers: remote shells, databases, caches, desktops. */
export const DEFAULT_TRIPWIRES: readonly string[] = [
  // telnet, MS RPC, SMB, MSSQL, alt-SSH, alt-telnet, RDP, VNC, Redis, Elasticsearch, memcached, MongoDB
  '23/tcp', '135/tcp', '445/tcp', '1433/tcp', '2222/tcp', '2323/tcp', '3389/tcp', '5900/tcp',
  '6379/tcp', '9200/tcp', '11211/tcp', '27017/tcp',
  // TFTP, SSDP, memcached-UDP (amplification probes); SIP is left out: VoIP hosts serve it.
  '69/udp', '1900/udp', '11211/udp',
]

export interface PortSelection {
  ports: PortRange[]
  /** Requested tripwires left out because a local service uses them. */
  skipped: PortRange[]
}

function expand(ranges: readonly PortRange[]): Array<{ proto: Proto; port: number }> {
  const out: Array<{ proto: Proto; port: number }> = []
  for (const r of ranges) for (let p = r.from; p <= r.to; p++) out.push({ proto: r.proto, port: p })
  return out
}

/** Merges single ports back into canonical ranges (sorted per protocol, adjacent joined). */
function collapse(items: ReadonlyArray<{ proto: Proto; port: number }>): PortRange[] {
  const specs: PortSpec[] = []
  const byProto = new Map<Proto, number[]>()
  for (const i of items) {
    let list = byProto.get(i.proto)
    if (list === undefined) byProto.set(i.proto, (list = []))
    list.push(i.port)
  }
  for (const [proto, list] of byProto) {
    const sorted = [...new Set(list)].sort((a, b) => a - b)
    let start = sorted[0]
    let prev = start
    for (let k = 1; k <= sorted.length; k++) {
      const p = sorted[k]
      if (p !== undefined && prev !== undefined && p === prev + 1) {
        prev = p
        continue
      }
      if (start !== undefined && prev !== undefined) specs.push({ from: start, to: prev, proto })
      start = p
      prev = p
    }
  }
  return specs.length === 0 ? [] : parsePorts(specs)
}

/** `wanted` minus the ports a local service listens on; the skipped ones are reported. */
export function withoutListening(wanted: readonly PortRange[], listening: ListeningPorts): PortSelection {
  const keep: Array<{ proto: Proto; port: number }> = []
  const skip: Array<{ proto: Proto; port: number }> = []
  for (const i of expand(wanted)) (inUse(listening, i.proto, i.port) ? skip : keep).push(i)
  return { ports: collapse(keep), skipped: collapse(skip) }
}

/**
 * The live tripwire set for `--unused`: the explicit tripwires as given, plus every
 * port of the `unused` ranges that no local socket uses, that is not already an
 * explicit tripwire, and that is outside the `ephemeral` range (the namespace's
 * ip_local_port_range: the host's own outgoing connections take their local ports
 * there, and the answers to them would look like probes). Explicit tripwires are
 * kept even when something listens on them: the operator named them, and the
 * sensor's own listener is one of those sockets.
 */
export function unusedTripwires(
  explicit: readonly PortRange[],
  unused: readonly PortRange[],
  listening: ListeningPorts,
  ephemeral: readonly [number, number] | null = null,
): PortRange[] {
  const taken = new Set(expand(explicit).map((i) => `${i.proto}/${i.port}`))
  const [lo, hi] = ephemeral ?? [1, 0]
  const free = expand(unused).filter(
    (i) => !inUse(listening, i.proto, i.port) && !taken.has(`${i.proto}/${i.port}`) && !(i.port >= lo && i.port <= hi),
  )
  return collapse([...expand(explicit), ...free])
}

/** Same tripwire set (both canonical)? */
export function samePorts(a: readonly PortRange[], b: readonly PortRange[]): boolean {
  return a.length === b.length && a.every((r, i) => r.proto === b[i]?.proto && r.from === b[i]?.from && r.to === b[i]?.to)
}
