/**
 * A fake of the native LinkFacts for unit tests of attribution: routes, neighbour
 * entries and links set by the test, probes recorded, and answers the test decides
 * (a station that answers for an address, heard on an interface). Never touches a
 * kernel.
 */
import type { NativeLink, NativeLinkFacts, NativeNeighbour, NativeProbeAnswer, NativeRoute } from '../../lib/binding.js'
import { RTN } from '../../lib/binding.js'

export class FakeLinkFacts implements NativeLinkFacts {
  routes = new Map<string, NativeRoute>()
  neighbours = new Map<string, NativeNeighbour>()
  linkList: NativeLink[] = []
  /** address → stations that answer a probe for it (mac, heard on ifindex). */
  stations = new Map<string, Array<{ mac: string; ifindex: number }>>()
  probes: Array<{ address: string; ifindex: number; mac: string }> = []
  queued: NativeProbeAnswer[] = []
  calls = { route: 0, neighbour: 0, links: 0 }
  closed = false

  route(address: string): NativeRoute {
    this.calls.route++
    return this.routes.get(address) ?? { type: RTN.unreachable, oif: 0, table: 0 }
  }

  neighbour(address: string, ifindex: number): NativeNeighbour | null {
    this.calls.neighbour++
    const n = this.neighbours.get(address)
    return n !== undefined && n.ifindex === ifindex ? n : null
  }

  links(): NativeLink[] {
    this.calls.links++
    return this.linkList.map((l) => ({ ...l }))
  }

  probe(address: string, ifindex: number, mac: string): void {
    this.probes.push({ address, ifindex, mac })
    for (const s of this.stations.get(address) ?? []) this.queued.push({ address, mac: s.mac, ifindex: s.ifindex })
  }

  answers(): NativeProbeAnswer[] {
    return this.queued.splice(0)
  }

  close(): void {
    this.closed = true
  }

  // ---- test setup ------------------------------------------------------------

  link(ifindex: number, name: string, extra: Partial<NativeLink> = {}): this {
    this.linkList.push({ ifindex, name, type: 1, flags: 0x1043, master: 0, link: 0, kind: '', mac: `02:00:00:00:00:${ifindex.toString(16).padStart(2, '0')}`, ...extra })
    return this
  }

  onLink(address: string, oif: number): this {
    this.routes.set(address, { type: RTN.unicast, oif, table: 254 })
    return this
  }

  via(address: string, gateway: string, oif: number): this {
    this.routes.set(address, { type: RTN.unicast, oif, table: 254, gateway })
    return this
  }

  entry(address: string, ifindex: number, state: number, mac?: string): this {
    this.neighbours.set(address, { address, ifindex, state, flags: 0, ...(mac !== undefined && { mac }) })
    return this
  }

  station(address: string, mac: string, ifindex: number): this {
    const list = this.stations.get(address) ?? []
    list.push({ mac, ifindex })
    this.stations.set(address, list)
    return this
  }
}
