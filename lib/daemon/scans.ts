/**
 * Scan tracking: the daemon's hits grouped into scans, each with a shape and, where the
 * probes carry a known fingerprint, a tool guess (scan-tools.ts). Runs on the JS thread:
 * `observe` per hit in the capture loop, `sweep` from a timer, which returns the `scan`
 * and `decoy` events to emit.
 *
 * Shapes:
 * - `vertical`: one source, at least `minPorts` distinct ports (of one or more addresses);
 * - `horizontal`: one source, fewer ports, at least `minAddresses` addresses of this host;
 * - `decoy`: one decoy group (lib/attribution/decoy.ts): the same probes from several
 *   sources, named by its sender when exactly one member is not forged;
 * - `distributed`: several sources, none forged on the majority of its packets, whose
 *   probes carry the same TCP fingerprint (window and options, kind) and whose port sets
 *   do not overlap, together at least `minPorts` ports: one port set split between them.
 * A source in a decoy group or a distributed scan gets no scan of its own.
 *
 * Events: a scan is announced once (`phase: 'start'`) at the first sweep after it is
 * recognised, and ends (`phase: 'end'`, final counts) when none of its sources sent a hit
 * for `idleMs`. A decoy group gets one `decoy` event when its members' attribution
 * settled (or `settleMs` after it formed) and its scan starts then.
 *
 * Memory is fixed when the tracker is made: a source table of `sets` × 2 entries (two-way
 * set-associative, keyed by a hash of the source words), each with a 256-bit map of the
 * ports it probed, its first 16 ports, its first 8 addresses, counters and tool votes —
 * about 200 bytes an entry, 1.6 MiB at the default 4,096 sets — plus at most `maxScans`
 * multi-source scans and the decoy grouper's own bounded tables. Per hit: O(1), no
 * allocation and no string built (the source and address strings are the decoder's).
 * A new source takes a free or idle entry, else one that has seen a single hit; when
 * both of its entries are established scans, the hit is not tracked (`untracked`), so
 * a flood of forged one-packet sources churns the single-hit entries and never evicts a
 * scan in progress, but a slow scanner's first probes can be lost in such a flood.
 */

import { type DecoyGroup, DecoyGrouper, type DecoyOptions } from '../attribution/decoy.js'
import { type Attribution, type Hit, isAnswer, type Proto, SCAN_KINDS, type ScanKind, SOURCE_HASH, TCP_SHAPE } from '../types.js'
import type { ScanEvent } from './events.js'
import { SCAN_TOOLS, toolName, toolOf } from './scan-tools.js'

export type ScanShape = 'vertical' | 'horizontal' | 'decoy' | 'distributed'
export const SCAN_SHAPES: readonly ScanShape[] = ['vertical', 'horizontal', 'decoy', 'distributed']

/** A scan as the tracker reports it: the `scan` event's fields, times in ms (events.ts scanEvent). */
export type ScanReport = Omit<ScanEvent, 'type' | 'time' | 'v' | 'firstSeen' | 'lastSeen'> & { firstSeen: number; lastSeen: number }

export interface ScanTrackerOptions {
  /** Sets of the source table (a power of two; two entries each). Default 4096. */
  sets?: number
  /** Distinct ports that make one source's probes a vertical scan. Default 3. */
  minPorts?: number
  /** Addresses of this host that make one source's probes a horizontal scan. Default 2. */
  minAddresses?: number
  /** A scan with no hit for this long has ended, ms. Default 30 s. */
  idleMs?: number
  /** Multi-source (distributed) scans in progress at most. Default 64. */
  maxScans?: number
  /** Decoy grouping's options (its `idleMs` defaults to this tracker's). */
  decoy?: DecoyOptions
  now?: () => number
}

export interface ScanTrackerStats {
  /** Sources with an entry now. */
  tracked: number
  /** Hits not tracked: both entries of their set held scans in progress. */
  untracked: number
  /** Scans announced, by shape. */
  vertical: number
  horizontal: number
  decoy: number
  distributed: number
  /** Decoy grouping: probes seen from several sources, groups formed. */
  decoyProbes: number
  decoyGroups: number
}

/** What a sweep hands the daemon: scans that started or ended, decoy groups to report. */
export interface SweepResult {
  scans: ScanReport[]
  decoys: DecoyGroup[]
}

/**
 * A candidate probed this recently may still turn out a decoy (its last probe's copies
 * are folded into groups once their window passed): it waits for the next sweep.
 */
const FRESH_MS = 50

const FREE = 0
const TRACKING = 1
/** Recognised alone (vertical/horizontal) and announced. */
const ANNOUNCED = 2
/** Part of a multi-source scan (decoy or distributed): no scan of its own. */
const FOLDED = 3

const PORT_WORDS = 8 // 256 bits
const KEPT_PORTS = 16
const KEPT_DSTS = 8
const MAX_LISTED = 32
const TOOLS = SCAN_TOOLS.length + 1

// Offsets of an entry's numbers in the strided table (STRIDE words an entry, two cache lines).
const E_HASH = 0
const E_STATE = 1
const E_FAMILY = 2
const E_HITS = 3
const E_FORGED = 4
const E_VERIFIED = 5
const E_KINDS = 6
const E_PORT_COUNT = 7
const E_PORTS_KEPT = 8
const E_DST_COUNT = 9
const E_TCP_SHAPE = 10
const E_SCAN_ID = 11
const E_IS_CANDIDATE = 12
/** Tool votes, TOOLS words. */
const E_VOTES = 16
/** The 256-bit port map, PORT_WORDS words. */
const E_BITS = 20
const STRIDE = 32

const KIND_BIT: Readonly<Record<string, number>> = Object.fromEntries(SCAN_KINDS.map((k, i) => [k, i]))

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333)
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24)
}

/** A source's hash for hits not decoded from a record (tests, tools). */
function hashText(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h | 0
}

interface MultiScan {
  id: number
  shape: 'decoy' | 'distributed'
  /** Entries of its sources (checked against the source when read: an entry can be reused). */
  entries: number[]
  srcs: string[]
  group: DecoyGroup | undefined
  firstSeen: number
}

export class ScanTracker {
  readonly #mask: number
  readonly #minPorts: number
  readonly #minAddresses: number
  readonly #idleMs: number
  readonly #maxScans: number
  readonly #now: () => number
  readonly decoys: DecoyGrouper
  // The source table, entry e = set * 2 + way: its numbers in one strided array (E_* offsets,
  // two cache lines an entry), so a new source touches few lines; times, ports, strings beside.
  readonly #n: Int32Array
  readonly #entries: number
  readonly #src: Array<string | undefined>
  readonly #proto: Array<Proto | undefined>
  readonly #first: Float64Array
  readonly #last: Float64Array
  readonly #ports: Uint16Array
  readonly #dsts: Array<string | undefined>
  /** Entries that may have become a scan alone, for the next sweep (each once: state says). */
  readonly #candidates: number[] = []
  readonly #multi = new Map<number, MultiScan>()
  /** Decoy group id → its scan id. */
  readonly #decoyScan = new Map<number, number>()
  #nextId = 1
  #untracked = 0
  readonly #announced = { vertical: 0, horizontal: 0, decoy: 0, distributed: 0 }

  constructor(options: ScanTrackerOptions = {}) {
    const sets = options.sets ?? 4096
    if (!Number.isInteger(Math.log2(sets))) throw new RangeError(`scan tracker sets must be a power of two, got ${sets}`)
    const n = sets * 2
    this.#mask = sets - 1
    this.#minPorts = options.minPorts ?? 3
    this.#minAddresses = options.minAddresses ?? 2
    this.#idleMs = options.idleMs ?? 30_000
    this.#maxScans = options.maxScans ?? 64
    this.#now = options.now ?? Date.now
    this.decoys = new DecoyGrouper({ idleMs: this.#idleMs, ...options.decoy })
    this.#entries = n
    this.#n = new Int32Array(n * STRIDE)
    this.#src = new Array<string | undefined>(n).fill(undefined)
    this.#proto = new Array<Proto | undefined>(n).fill(undefined)
    this.#first = new Float64Array(n)
    this.#last = new Float64Array(n)
    this.#ports = new Uint16Array(n * KEPT_PORTS)
    this.#dsts = new Array<string | undefined>(n * KEPT_DSTS).fill(undefined)
  }

  /** One hit, after its attribution was read. O(1), no allocation. */
  observe(hit: Hit): void {
    // An answer is no probe (types.ts isAnswer): neither a scan's nor a decoy group's.
    if (isAnswer(hit)) return
    const src = hit.src
    const own = hit[SOURCE_HASH]
    const h = own !== undefined ? own.call(hit) : hashText(src)
    const time = hit.time
    const attribution = hit.attribution
    this.decoys.observe(hit, h, src, time, attribution)
    const tcp = hit[TCP_SHAPE]
    const shape = tcp !== undefined ? tcp.call(hit) : 0
    const w0 = (h & this.#mask) * 2
    let e = -1
    if (this.#n[w0 * STRIDE + E_HASH] === h && this.#src[w0] === src && this.#n[w0 * STRIDE + E_STATE] !== FREE) e = w0
    else if (this.#n[(w0 + 1) * STRIDE + E_HASH] === h && this.#src[w0 + 1] === src && this.#n[(w0 + 1) * STRIDE + E_STATE] !== FREE) e = w0 + 1
    else {
      e = this.#admit(w0, time)
      if (e < 0) {
        this.#untracked++
        return
      }
      this.#start(e, h, src, hit, time, shape)
    }
    this.#n[e * STRIDE + E_HITS]!++
    if (time > this.#last[e]!) this.#last[e] = time
    if (attribution === 'forged') this.#n[e * STRIDE + E_FORGED]!++
    else if (attribution === 'verified') this.#n[e * STRIDE + E_VERIFIED] = 1
    const kind = hit.kind
    this.#n[e * STRIDE + E_KINDS]! |= 1 << (KIND_BIT[kind] ?? 0)
    // A completed handshake is the scanner's kernel answering, not a probe of the tool's: no vote.
    if (kind !== 'connect') this.#n[e * STRIDE + E_VOTES + toolOf(kind, shape, hit.ttl, hit.ipId)]!++
    let grew = false
    const port = hit.dstPort
    const bit = Math.imul(port, 0x9e3779b1) >>> 24
    const word = e * STRIDE + E_BITS + (bit >>> 5)
    const mask = 1 << (bit & 31)
    if ((this.#n[word]! & mask) === 0) {
      this.#n[word]! |= mask
      this.#n[e * STRIDE + E_PORT_COUNT]!++
      const kept = this.#n[e * STRIDE + E_PORTS_KEPT]!
      if (kept < KEPT_PORTS) {
        this.#ports[e * KEPT_PORTS + kept] = port
        this.#n[e * STRIDE + E_PORTS_KEPT] = kept + 1
      }
      grew = true
    }
    const count = this.#n[e * STRIDE + E_DST_COUNT]!
    if (count < KEPT_DSTS) {
      const dst = hit.dst
      const base = e * KEPT_DSTS
      let seen = false
      for (let i = 0; i < count; i++) {
        if (this.#dsts[base + i] === dst) {
          seen = true
          break
        }
      }
      if (!seen) {
        this.#dsts[base + count] = dst
        this.#n[e * STRIDE + E_DST_COUNT] = count + 1
        grew = true
      }
    }
    if (grew && this.#n[e * STRIDE + E_STATE] === TRACKING && this.#n[e * STRIDE + E_IS_CANDIDATE] === 0 && (this.#n[e * STRIDE + E_PORT_COUNT]! >= 2 || this.#n[e * STRIDE + E_DST_COUNT]! >= this.#minAddresses)) {
      // Two ports already: a shard of a distributed scan may never reach minPorts alone.
      this.#n[e * STRIDE + E_IS_CANDIDATE] = 1
      this.#candidates.push(e)
    }
  }

  /** A pending attribution about `src` settled (decoy groups follow it). */
  settled(src: string, attribution: Attribution): void {
    this.decoys.settled(src, attribution)
  }

  /**
   * Recognises and ends scans: call it a few times a second. Returns the scans that
   * started or ended since the last sweep and the decoy groups to report.
   */
  sweep(now = this.#now()): SweepResult {
    const scans: ScanReport[] = []
    const { report } = this.decoys.sweep(now)
    for (const g of report) this.#startDecoy(g, scans)
    // A candidate that was probed a moment ago may still turn out a decoy: its last
    // probe's copies are folded into groups only once their window passed.
    const fresh: number[] = []
    const ready: number[] = []
    for (const e of this.#candidates) {
      if (this.#n[e * STRIDE + E_STATE] !== TRACKING) {
        this.#n[e * STRIDE + E_IS_CANDIDATE] = 0
        continue
      }
      const src = this.#src[e]!
      const g = this.decoys.groupOf(src, now)
      if (g !== undefined) {
        // Its group's scan covers it, now or when the group is reported.
        const scan = this.#multi.get(this.#decoyScan.get(g.id) ?? 0)
        if (scan !== undefined) this.#attach(scan, [{ src, key: this.#n[e * STRIDE + E_HASH]! }], scans)
        else fresh.push(e)
        continue
      }
      if (now - this.#last[e]! <= FRESH_MS) fresh.push(e)
      else ready.push(e)
    }
    this.#candidates.length = 0
    this.#candidates.push(...fresh)
    this.#distributed(scans)
    for (const e of ready) {
      if (this.#n[e * STRIDE + E_STATE] !== TRACKING) {
        this.#n[e * STRIDE + E_IS_CANDIDATE] = 0
        continue
      }
      const shape = this.#n[e * STRIDE + E_PORT_COUNT]! >= this.#minPorts ? 'vertical' : this.#n[e * STRIDE + E_DST_COUNT]! >= this.#minAddresses ? 'horizontal' : undefined
      if (shape === undefined) {
        // Not (yet) a scan: asked again when it grows.
        this.#n[e * STRIDE + E_IS_CANDIDATE] = 0
        continue
      }
      const id = this.#nextId++
      this.#n[e * STRIDE + E_STATE] = ANNOUNCED
      this.#n[e * STRIDE + E_SCAN_ID] = id
      this.#n[e * STRIDE + E_IS_CANDIDATE] = 0
      this.#announced[shape]++
      scans.push(this.#single(e, id, 'start', shape))
    }
    this.#endIdle(now, scans)
    return { scans, decoys: report }
  }

  stats(): ScanTrackerStats {
    let tracked = 0
    for (let e = 0; e < this.#entries; e++) if (this.#n[e * STRIDE + E_STATE] !== FREE) tracked++
    const d = this.decoys.stats()
    return { tracked, untracked: this.#untracked, ...this.#announced, decoyProbes: d.coincidences, decoyGroups: d.groups }
  }

  // ------------------------------------------------------------------ entries

  /** A way for a new source: free, idle (its scan ends), or one that saw a single hit; -1 when both hold scans. */
  #admit(w0: number, now: number): number {
    let best = -1
    for (let e = w0; e < w0 + 2; e++) {
      if (this.#n[e * STRIDE + E_STATE] === FREE) return e
      if (this.#last[e]! + this.#idleMs <= now && this.#n[e * STRIDE + E_STATE] === TRACKING) return e
      if (this.#n[e * STRIDE + E_HITS]! < 2 && this.#n[e * STRIDE + E_STATE] === TRACKING && (best < 0 || this.#last[e]! < this.#last[best]!)) best = e
    }
    // Announced and folded entries end at the sweep, which reports them; until then they stay.
    return best
  }

  #start(e: number, h: number, src: string, hit: Hit, time: number, tcpShape: number): void {
    this.#n[e * STRIDE + E_HASH] = h
    this.#src[e] = src
    this.#n[e * STRIDE + E_STATE] = TRACKING
    this.#n[e * STRIDE + E_FAMILY] = hit.family
    this.#proto[e] = hit.proto
    this.#first[e] = time
    this.#last[e] = time
    this.#n[e * STRIDE + E_HITS] = 0
    this.#n[e * STRIDE + E_FORGED] = 0
    this.#n[e * STRIDE + E_VERIFIED] = 0
    this.#n[e * STRIDE + E_KINDS] = 0
    // Plain stores: a ranged fill() is a builtin call each, the larger part of a new source's cost.
    const n = this.#n
    for (let i = e * STRIDE + E_BITS; i < e * STRIDE + E_BITS + PORT_WORDS; i++) n[i] = 0
    this.#n[e * STRIDE + E_PORT_COUNT] = 0
    this.#n[e * STRIDE + E_PORTS_KEPT] = 0
    this.#n[e * STRIDE + E_DST_COUNT] = 0
    for (let i = e * STRIDE + E_VOTES; i < e * STRIDE + E_VOTES + TOOLS; i++) n[i] = 0
    this.#n[e * STRIDE + E_TCP_SHAPE] = tcpShape
    this.#n[e * STRIDE + E_SCAN_ID] = 0
    this.#n[e * STRIDE + E_IS_CANDIDATE] = 0
  }

  #free(e: number): void {
    this.#n[e * STRIDE + E_STATE] = FREE
    this.#src[e] = undefined
    this.#proto[e] = undefined
    for (let i = e * KEPT_DSTS; i < (e + 1) * KEPT_DSTS; i++) this.#dsts[i] = undefined
  }

  #fold(e: number, id: number): void {
    this.#n[e * STRIDE + E_STATE] = FOLDED
    this.#n[e * STRIDE + E_SCAN_ID] = id
    this.#n[e * STRIDE + E_IS_CANDIDATE] = 0
  }

  /** The entry still belongs to `src` and to scan `id`. */
  #owns(e: number, src: string, id: number): boolean {
    return this.#n[e * STRIDE + E_STATE] === FOLDED && this.#src[e] === src && this.#n[e * STRIDE + E_SCAN_ID] === id
  }

  // ------------------------------------------------------------------ shapes

  #startDecoy(g: DecoyGroup, out: ScanReport[]): void {
    const id = this.#nextId++
    this.#decoyScan.set(g.id, id)
    const scan: MultiScan = { id, shape: 'decoy', entries: [], srcs: [], group: g, firstSeen: g.firstSeen }
    this.#multi.set(id, scan)
    this.#attach(scan, g.members, out)
    this.#announced.decoy++
    out.push(this.#multiReport(scan, 'start'))
  }

  /** Folds the entries of `sources` into a multi-source scan (those still tracking or already its own). */
  #attach(scan: MultiScan, sources: ReadonlyArray<{ src: string; key: number }>, out: ScanReport[]): void {
    for (const { src, key } of sources) {
      const e = this.#find(src, key)
      if (e < 0) continue
      if (this.#n[e * STRIDE + E_STATE] === ANNOUNCED) {
        // A scan announced alone that turns out part of a decoy group ends here: the
        // group's scan counts its packets from now on.
        out.push(this.#single(e, this.#n[e * STRIDE + E_SCAN_ID]!, 'end', this.#n[e * STRIDE + E_PORT_COUNT]! >= this.#minPorts ? 'vertical' : 'horizontal'))
      }
      if (this.#n[e * STRIDE + E_STATE] === TRACKING || this.#n[e * STRIDE + E_STATE] === ANNOUNCED) this.#fold(e, scan.id)
      if (this.#owns(e, src, scan.id) && !scan.entries.includes(e)) {
        scan.entries.push(e)
        scan.srcs.push(src)
      }
    }
  }

  /** The entry of `src`, whose source hash is `h`; -1 when it has none. */
  #find(src: string, h: number): number {
    const w0 = (h & this.#mask) * 2
    for (let e = w0; e < w0 + 2; e++) if (this.#n[e * STRIDE + E_HASH] === h && this.#src[e] === src && this.#n[e * STRIDE + E_STATE] !== FREE) return e
    return -1
  }

  /**
   * Distributed scans among the sources not yet part of a scan: same TCP fingerprint
   * and kinds, each with two ports or more and not forged on most packets, port sets
   * that do not overlap, together minPorts ports. A walk of the table, per sweep.
   */
  #distributed(out: ScanReport[]): void {
    if (this.#multi.size >= this.#maxScans) return
    let cohorts: Map<string, number[]> | undefined
    for (let e = 0; e < this.#entries; e++) {
      if (this.#n[e * STRIDE + E_STATE] !== TRACKING || this.#n[e * STRIDE + E_PORT_COUNT]! < 2 || this.#n[e * STRIDE + E_TCP_SHAPE] === 0 || this.#n[e * STRIDE + E_FORGED]! * 2 > this.#n[e * STRIDE + E_HITS]!) continue
      if (this.decoys.groupOf(this.#src[e]!, this.#last[e]!) !== undefined) continue
      cohorts ??= new Map()
      const key = `${this.#n[e * STRIDE + E_FAMILY]} ${this.#n[e * STRIDE + E_TCP_SHAPE]} ${this.#n[e * STRIDE + E_KINDS]}`
      const c = cohorts.get(key)
      if (c === undefined) cohorts.set(key, [e])
      else c.push(e)
    }
    if (cohorts === undefined) return
    for (const members of cohorts.values()) {
      if (members.length < 2 || this.#multi.size >= this.#maxScans) continue
      const union = new Int32Array(PORT_WORDS)
      let overlap = false
      let ports = 0
      for (const e of members) {
        for (let i = 0; i < PORT_WORDS; i++) {
          const w = this.#n[e * STRIDE + E_BITS + i]!
          if ((union[i]! & w) !== 0) overlap = true
          union[i]! |= w
        }
      }
      if (overlap) continue
      for (let i = 0; i < PORT_WORDS; i++) ports += popcount(union[i]!)
      if (ports < this.#minPorts) continue
      const id = this.#nextId++
      const scan: MultiScan = { id, shape: 'distributed', entries: [], srcs: [], group: undefined, firstSeen: Math.min(...members.map((e) => this.#first[e]!)) }
      this.#multi.set(id, scan)
      for (const e of members) {
        this.#fold(e, id)
        scan.entries.push(e)
        scan.srcs.push(this.#src[e]!)
      }
      this.#announced.distributed++
      out.push(this.#multiReport(scan, 'start'))
    }
  }

  // ------------------------------------------------------------------ ends

  #endIdle(now: number, out: ScanReport[]): void {
    for (let e = 0; e < this.#entries; e++) {
      const state = this.#n[e * STRIDE + E_STATE]!
      if (state === FREE || this.#last[e]! + this.#idleMs > now) continue
      if (state === ANNOUNCED) out.push(this.#single(e, this.#n[e * STRIDE + E_SCAN_ID]!, 'end', this.#n[e * STRIDE + E_PORT_COUNT]! >= this.#minPorts ? 'vertical' : 'horizontal'))
      // Folded entries are read by their multi-source scan's end below, then freed.
      if (state !== FOLDED || !this.#multi.has(this.#n[e * STRIDE + E_SCAN_ID]!)) this.#free(e)
    }
    for (const scan of [...this.#multi.values()]) {
      const live = scan.entries.some((e, i) => this.#owns(e, scan.srcs[i]!, scan.id) && this.#last[e]! + this.#idleMs > now)
      if (live || (scan.group !== undefined && scan.group.lastSeen + this.#idleMs > now)) continue
      out.push(this.#multiReport(scan, 'end'))
      this.#multi.delete(scan.id)
      if (scan.group !== undefined) this.#decoyScan.delete(scan.group.id)
      scan.entries.forEach((e, i) => {
        if (this.#owns(e, scan.srcs[i]!, scan.id)) this.#free(e)
      })
    }
  }

  // ------------------------------------------------------------------ reports

  #tool(e: number): number {
    let best = 0
    let votes = 0
    let total = this.#n[e * STRIDE + E_VOTES]!
    for (let t = 1; t < TOOLS; t++) {
      const v = this.#n[e * STRIDE + E_VOTES + t]!
      total += v
      if (v > votes) {
        best = t
        votes = v
      }
    }
    // A guess only when most probes agree.
    return votes * 2 > total ? best : 0
  }

  #attribution(e: number): Attribution {
    if (this.#n[e * STRIDE + E_VERIFIED] === 1) return 'verified'
    return this.#n[e * STRIDE + E_HITS]! > 0 && this.#n[e * STRIDE + E_FORGED] === this.#n[e * STRIDE + E_HITS] ? 'forged' : 'plausible'
  }

  #kindNames(mask: number): ScanKind[] {
    const out: ScanKind[] = []
    for (let i = 1; i < SCAN_KINDS.length; i++) if ((mask & (1 << i)) !== 0) out.push(SCAN_KINDS[i] as ScanKind)
    return out
  }

  #single(e: number, id: number, phase: 'start' | 'end', shape: ScanShape): ScanReport {
    const src = this.#src[e]!
    const tool = toolName(this.#tool(e))
    const r: ScanReport = {
      id,
      phase,
      shape,
      src,
      attribution: this.#attribution(e),
      sources: [src],
      sourceCount: 1,
      family: this.#n[e * STRIDE + E_FAMILY] === 6 ? 6 : 4,
      proto: this.#proto[e] ?? 'tcp',
      kinds: this.#kindNames(this.#n[e * STRIDE + E_KINDS]!),
      dsts: this.#dsts.slice(e * KEPT_DSTS, e * KEPT_DSTS + this.#n[e * STRIDE + E_DST_COUNT]!) as string[],
      ports: Array.from(this.#ports.subarray(e * KEPT_PORTS, e * KEPT_PORTS + this.#n[e * STRIDE + E_PORTS_KEPT]!)),
      portCount: this.#n[e * STRIDE + E_PORT_COUNT]!,
      hits: this.#n[e * STRIDE + E_HITS]!,
      firstSeen: this.#first[e]!,
      lastSeen: this.#last[e]!,
    }
    if (tool !== undefined) r.tool = tool
    return r
  }

  #multiReport(scan: MultiScan, phase: 'start' | 'end'): ScanReport {
    const g = scan.group
    const union = new Int32Array(PORT_WORDS)
    const ports: number[] = []
    const dsts: string[] = []
    const votes = new Uint32Array(TOOLS)
    let hits = 0
    let kinds = 0
    let last = g?.lastSeen ?? scan.firstSeen
    let family: 4 | 6 = g?.family ?? 4
    let proto: Proto = g?.proto ?? 'tcp'
    scan.entries.forEach((e, i) => {
      if (!this.#owns(e, scan.srcs[i]!, scan.id)) return
      if (i === 0 && g === undefined) {
        family = this.#n[e * STRIDE + E_FAMILY] === 6 ? 6 : 4
        proto = this.#proto[e] ?? 'tcp'
      }
      hits += this.#n[e * STRIDE + E_HITS]!
      kinds |= this.#n[e * STRIDE + E_KINDS]!
      if (this.#last[e]! > last) last = this.#last[e]!
      for (let w = 0; w < PORT_WORDS; w++) union[w]! |= this.#n[e * STRIDE + E_BITS + w]!
      for (let k = 0; k < this.#n[e * STRIDE + E_PORTS_KEPT]!; k++) {
        const p = this.#ports[e * KEPT_PORTS + k]!
        if (ports.length < MAX_LISTED && !ports.includes(p)) ports.push(p)
      }
      for (let k = 0; k < this.#n[e * STRIDE + E_DST_COUNT]!; k++) {
        const d = this.#dsts[e * KEPT_DSTS + k]!
        if (dsts.length < KEPT_DSTS && !dsts.includes(d)) dsts.push(d)
      }
      for (let t = 0; t < TOOLS; t++) votes[t]! += this.#n[e * STRIDE + E_VOTES + t]!
    })
    if (g !== undefined) {
      for (const p of g.ports) if (ports.length < MAX_LISTED && !ports.includes(p)) ports.push(p)
      if (!dsts.includes(g.dst) && dsts.length < KEPT_DSTS) dsts.push(g.dst)
      kinds |= 1 << (KIND_BIT[g.kind] ?? 0)
    }
    let portCount = 0
    for (let w = 0; w < PORT_WORDS; w++) portCount += popcount(union[w]!)
    let tool = 0
    let total = 0
    for (let t = 0; t < TOOLS; t++) total += votes[t]!
    for (let t = 1; t < TOOLS; t++) if (votes[t]! * 2 > total && votes[t]! > 0) tool = t
    const sources = g !== undefined ? g.members.map((m) => m.src) : scan.srcs
    const r: ScanReport = {
      id: scan.id,
      phase,
      shape: scan.shape,
      sources: sources.slice(0, MAX_LISTED),
      sourceCount: sources.length + (g?.extraMembers ?? 0),
      family,
      proto,
      kinds: this.#kindNames(kinds),
      dsts,
      ports,
      portCount: Math.max(portCount, ports.length),
      hits,
      firstSeen: scan.firstSeen,
      lastSeen: last,
    }
    if (g !== undefined) {
      r.decoy = g.id
      if (g.sender !== undefined) {
        r.src = g.sender
        r.attribution = g.members.find((m) => m.src === g.sender)?.attribution ?? 'plausible'
      }
    }
    const name = toolName(tool)
    if (name !== undefined) r.tool = name
    return r
  }
}
