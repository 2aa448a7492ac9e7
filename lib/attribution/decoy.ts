/**
 * Decoy grouping: the same probe from several source addresses within a few
 * milliseconds (nmap -D sends each probe once from every decoy and once from the real
 * sender, back to back, with the same ports, flags, IP ID, window and options) makes the
 * sources one group, and the one source nothing says was forged is named its likely
 * sender. Runs on the JS thread, per hit, after the hit's attribution was read.
 *
 * Cost: `observe` is O(1) and allocates nothing while no probe repeats across sources —
 * a direct-mapped table of recent probes keyed by the hit's PROBE_SHAPE (numbers from
 * the record), whose slots hold references to the source strings the decoder already
 * made. Work and allocation begin only when a second source repeats a probe (a
 * coincidence): then the slot's members are folded into a group when its window has
 * passed (the next hit on the slot, or `sweep`). Memory is fixed by the options:
 * `slots` × `maxProbeSources` references for probes, at most `maxGroups` groups of at
 * most `maxMembers` sources, and a source → group index of `maxGroups` × `maxMembers`.
 *
 * Grouping never changes a verdict: members get the evidence names `decoy` (and the
 * sender `decoy:sender`) through `mark`, added to what the validators said. A real
 * scanner among decoys stays what its own evidence makes it (plausible or verified).
 */

import type { Attribution, Hit, Proto, ScanKind } from '../types.js'
import { PROBE_SHAPE } from '../types.js'
import { FifoMap } from './fifo-map.js'

export interface DecoyOptions {
  /** Milliseconds within which copies of one probe count as one (default 10). */
  windowMs?: number
  /** Probe slots (a power of two; default 4096). */
  slots?: number
  /** Sources remembered per probe (default 16; nmap takes up to 128 decoys, the rest are not grouped). */
  maxProbeSources?: number
  /** Groups remembered (default 256; the oldest is forgotten first). */
  maxGroups?: number
  /** Sources per group (default 32). */
  maxMembers?: number
  /** A group with no new probe for this long has ended, ms (default 60 s). */
  idleMs?: number
  /** A group is reported once every member's answer settled, or this long after it formed, ms (default 2 s). */
  settleMs?: number
  /** Adds evidence names to every answer about a source for `ms` (the Attributor's `mark`). */
  mark?: (src: string, names: readonly string[], ms: number) => void
}

/** One member of a group: its source and what its packets' evidence said. */
export interface DecoyMember {
  readonly src: string
  /** The caller's number for the source (scan tracking passes its source hash). */
  readonly key: number
  attribution: Attribution
  /** An answer about it was still open when last seen. */
  pending: boolean
}

/** A decoy group: sources that sent the same probes within milliseconds of each other. */
export interface DecoyGroup {
  /** Unique within this grouper. */
  readonly id: number
  readonly members: DecoyMember[]
  /** Sources beyond maxMembers that also sent its probes (counted, not kept). */
  extraMembers: number
  /** Probes seen sent from several of its members. */
  probes: number
  /** The probed address, family, protocol and kind of its first probe. */
  readonly dst: string
  readonly family: 4 | 6
  readonly proto: Proto
  readonly kind: ScanKind
  /** Distinct destination ports of its probes (the first 32). */
  readonly ports: number[]
  readonly firstSeen: number
  lastSeen: number
  /** Set when the group was reported (the one member not forged, if exactly one). */
  reported: boolean
  sender: string | undefined
}

/** Evidence names decoy grouping adds (attribution/types.ts EVIDENCE lists them). */
export const DECOY_EVIDENCE = 'decoy'
export const DECOY_SENDER_EVIDENCE = 'decoy:sender'

const DEFAULTS = { windowMs: 10, slots: 4096, maxProbeSources: 16, maxGroups: 256, maxMembers: 32, idleMs: 60_000, settleMs: 2000 } as const
const MAX_PORTS = 32

/** A probe's shape for hits that were not decoded from a record (tests, tools): from their fields. */
function shapeOf(hit: Hit): number {
  const own = hit[PROBE_SHAPE]
  if (own !== undefined) return own.call(hit)
  let h = 0x811c9dc5
  const text = `${hit.dst} ${hit.dstPort} ${hit.srcPort} ${hit.proto} ${hit.kind} ${hit.tcpFlags} ${hit.ipId}`
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return h | 0
}

export class DecoyGrouper {
  readonly #windowMs: number
  readonly #mask: number
  readonly #perProbe: number
  readonly #maxMembers: number
  readonly #idleMs: number
  readonly #settleMs: number
  readonly #mark: (src: string, names: readonly string[], ms: number) => void
  // The probe table, one slot per shape hash (direct-mapped).
  readonly #shape: Int32Array
  readonly #t0: Float64Array
  readonly #count: Uint8Array
  readonly #srcs: Array<string | undefined>
  readonly #keys: Int32Array
  readonly #attrs: Array<Attribution | undefined>
  readonly #evidence: Array<readonly string[] | undefined>
  /** What the probe of a coincidence was (read from its second copy; set only while the slot is one). */
  readonly #probe: Array<{ dst: string; dstPort: number; family: 4 | 6; proto: Proto; kind: ScanKind } | undefined>
  readonly #groups: FifoMap<number, DecoyGroup>
  readonly #bySource: FifoMap<string, DecoyGroup>
  #nextId = 1
  readonly #stats = { coincidences: 0, groups: 0, reported: 0 }

  constructor(options: DecoyOptions = {}) {
    const slots = options.slots ?? DEFAULTS.slots
    if (!Number.isInteger(Math.log2(slots))) throw new RangeError(`decoy slots must be a power of two, got ${slots}`)
    this.#windowMs = options.windowMs ?? DEFAULTS.windowMs
    this.#mask = slots - 1
    this.#perProbe = Math.min(255, options.maxProbeSources ?? DEFAULTS.maxProbeSources)
    this.#maxMembers = options.maxMembers ?? DEFAULTS.maxMembers
    this.#idleMs = options.idleMs ?? DEFAULTS.idleMs
    this.#settleMs = options.settleMs ?? DEFAULTS.settleMs
    this.#mark = options.mark ?? ((): void => {})
    this.#shape = new Int32Array(slots)
    this.#t0 = new Float64Array(slots)
    this.#count = new Uint8Array(slots)
    this.#srcs = new Array<string | undefined>(slots * this.#perProbe).fill(undefined)
    this.#keys = new Int32Array(slots * this.#perProbe)
    this.#attrs = new Array<Attribution | undefined>(slots * this.#perProbe).fill(undefined)
    this.#evidence = new Array<readonly string[] | undefined>(slots * this.#perProbe).fill(undefined)
    this.#probe = new Array<{ dst: string; dstPort: number; family: 4 | 6; proto: Proto; kind: ScanKind } | undefined>(slots).fill(undefined)
    const maxGroups = options.maxGroups ?? DEFAULTS.maxGroups
    this.#groups = new FifoMap(maxGroups)
    this.#bySource = new FifoMap(maxGroups * this.#maxMembers)
  }

  /**
   * One hit; `key`, a number the caller knows the source by, is handed back in the
   * group's members; `src`, `time` and `attribution` are the hit's, when the caller read
   * them already. O(1); allocates only when a probe repeats across sources.
   */
  observe(hit: Hit, key = 0, src = hit.src, time = hit.time, attribution: Attribution = hit.attribution): void {
    if (hit.verified) return
    const shape = shapeOf(hit)
    const slot = shape & this.#mask
    const n = this.#count[slot]!
    if (n > 0 && this.#shape[slot] === shape && time - this.#t0[slot]! <= this.#windowMs) {
      const base = slot * this.#perProbe
      for (let i = 0; i < n; i++) if (this.#srcs[base + i] === src) return // the same source again: a retransmission
      if (n >= this.#perProbe) return
      this.#srcs[base + n] = src
      this.#keys[base + n] = key
      this.#attrs[base + n] = attribution
      this.#evidence[base + n] = hit.evidence
      this.#count[slot] = n + 1
      if (n === 1) {
        this.#stats.coincidences++
        // Plain values, not the hit: a decoded hit would keep its whole batch alive.
        this.#probe[slot] = { dst: hit.dst, dstPort: hit.dstPort, family: hit.family, proto: hit.proto, kind: hit.kind }
      }
      return
    }
    if (n > 1) this.#fold(slot, time)
    this.#shape[slot] = shape
    this.#t0[slot] = time
    this.#count[slot] = 1
    const base = slot * this.#perProbe
    this.#srcs[base] = src
    this.#keys[base] = key
    this.#attrs[base] = attribution
    // The evidence (shared, frozen) only tells whether the answer was pending: read at the fold.
    this.#evidence[base] = hit.evidence
  }

  /** A pending answer about `src` settled (the Attributor's onSettled). */
  settled(src: string, attribution: Attribution): void {
    const g = this.#bySource.get(src)
    if (g === undefined) return
    for (const m of g.members) {
      if (m.src !== src) continue
      if (m.attribution !== 'forged') m.attribution = attribution
      m.pending = false
    }
  }

  /** The live group `src` is a member of. */
  groupOf(src: string, now: number): DecoyGroup | undefined {
    const g = this.#bySource.get(src)
    return g !== undefined && g.lastSeen + this.#idleMs > now ? g : undefined
  }

  /**
   * Folds every probe whose window passed into its group, then returns the groups to
   * report now (settled, or formed `settleMs` ago: each once) and those that ended
   * (no probe for `idleMs`; forgotten). Call it a few times a second.
   */
  sweep(now: number): { report: DecoyGroup[]; ended: DecoyGroup[] } {
    for (let slot = 0; slot <= this.#mask; slot++) {
      if (this.#count[slot]! > 1 && now - this.#t0[slot]! > this.#windowMs) this.#fold(slot, now)
    }
    const report: DecoyGroup[] = []
    const ended: DecoyGroup[] = []
    for (const g of this.#groups.values()) {
      if (g.lastSeen + this.#idleMs <= now) {
        ended.push(g)
        continue
      }
      if (!g.reported && (now - g.firstSeen >= this.#settleMs || g.members.every((m) => !m.pending))) {
        this.#report(g)
        report.push(g)
      }
    }
    for (const g of ended) {
      this.#groups.delete(g.id)
      for (const m of g.members) if (this.#bySource.get(m.src) === g) this.#bySource.delete(m.src)
    }
    return { report, ended }
  }

  stats(): { coincidences: number; groups: number; reported: number; active: number } {
    return { ...this.#stats, active: this.#groups.size }
  }

  // -------------------------------------------------------------------------

  /** A slot's sources sent one probe: into the group of any of them, or a new one. */
  #fold(slot: number, now: number): void {
    const n = this.#count[slot]!
    const probe = this.#probe[slot]
    this.#count[slot] = 0
    this.#probe[slot] = undefined
    if (probe === undefined) return
    const base = slot * this.#perProbe
    let g: DecoyGroup | undefined
    for (let i = 0; i < n && g === undefined; i++) g = this.groupOf(this.#srcs[base + i]!, now)
    if (g === undefined) {
      g = {
        id: this.#nextId++,
        members: [],
        extraMembers: 0,
        probes: 0,
        dst: probe.dst,
        family: probe.family,
        proto: probe.proto,
        kind: probe.kind,
        ports: [],
        firstSeen: this.#t0[slot]!,
        lastSeen: this.#t0[slot]!,
        reported: false,
        sender: undefined,
      }
      this.#groups.set(g.id, g)
      this.#stats.groups++
    }
    g.probes++
    g.lastSeen = Math.max(g.lastSeen, this.#t0[slot]!)
    const port = probe.dstPort
    if (g.ports.length < MAX_PORTS && !g.ports.includes(port)) g.ports.push(port)
    let joined = false
    for (let i = 0; i < n; i++) {
      const src = this.#srcs[base + i]!
      const attribution = this.#attrs[base + i]!
      const pending = this.#evidence[base + i]?.includes('pending') === true
      this.#srcs[base + i] = undefined
      this.#evidence[base + i] = undefined
      const m = g.members.find((x) => x.src === src)
      if (m !== undefined) {
        // Forged stays forged: one packet with evidence of forgery is enough.
        if (m.attribution !== 'forged') m.attribution = attribution
        m.pending = pending && m.attribution !== 'forged'
      } else if (g.members.length < this.#maxMembers) {
        g.members.push({ src, key: this.#keys[base + i]!, attribution, pending })
        joined = true
      } else {
        g.extraMembers++
      }
      if (this.#bySource.get(src) !== g) this.#bySource.set(src, g)
    }
    // Members that joined after the report get their marks too.
    if (joined && g.reported) this.#report(g)
  }

  #report(g: DecoyGroup): void {
    const candidates = g.members.filter((m) => m.attribution !== 'forged')
    g.sender = candidates.length === 1 ? candidates[0]!.src : undefined
    if (!g.reported) this.#stats.reported++
    g.reported = true
    for (const m of g.members) this.#mark(m.src, m.src === g.sender ? [DECOY_EVIDENCE, DECOY_SENDER_EVIDENCE] : [DECOY_EVIDENCE], this.#idleMs)
  }
}
