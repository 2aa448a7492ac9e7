/**
 * CompactSources: what the policy engine keeps of a source whose window so far was only
 * counted — every hit of it went into an open breaker's totals, nothing was emitted for
 * it — as numbers in typed arrays by its slot in the source table (lib/word-map.ts),
 * instead of a SourceState object. Under a flood of forged sources almost every tracked
 * source is one of these; an object per source that lives until it is evicted is what
 * the garbage collector spent its time on (issue 9). The engine turns a compact source
 * back into a SourceState when its next hit comes (or its text is named), and back again
 * after the hit if it still qualifies. What it keeps is exactly what such a state holds
 * that a later hit or decision reads: the window's start, counts, the one port, the kind
 * bits, the shared evidence array, which breaker counted it and what pressure it added,
 * and the guards' generation it was found unguarded in.
 * Pure, synchronous, JS thread only.
 */

/** Bits of `flags`. */
export const DEMAND_COUNTED = 1
export const REPORT_COUNTED = 2

const NONE: readonly string[] = Object.freeze([])

export class CompactSources<B> {
  windowStart = new Float64Array(0)
  lastSeen = new Float64Array(0)
  /** The latest hit's capture time, its ports (src | dst << 16), proto index | kind index << 8. */
  lastTime = new Float64Array(0)
  lastPorts = new Int32Array(0)
  lastProtoKind = new Int32Array(0)
  /** The latest hit's destination and interface (the decoder's shared strings). */
  lastDst: string[] = []
  lastInterface: string[] = []
  count = new Int32Array(0)
  /** The guards' generation its no-guard answer is valid for; -1: ask again. */
  guardGeneration = new Int32Array(0)
  kinds = new Int32Array(0)
  plausible = new Int32Array(0)
  forged = new Int32Array(0)
  resets = new Int32Array(0)
  port = new Int32Array(0)
  flags = new Uint8Array(0)
  evidence: Array<readonly string[]> = []
  suppressedBy: Array<B | null> = []

  /** Makes room for `slot` (arrays grow by doubling; existing entries keep their places). */
  ensure(slot: number): void {
    const n = this.count.length
    if (slot < n) return
    let size = Math.max(16, n)
    while (size <= slot) size *= 2
    const grow = <T extends Float64Array | Int32Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(size)
      b.set(a)
      return b
    }
    this.windowStart = grow(this.windowStart, (k) => new Float64Array(k))
    this.lastSeen = grow(this.lastSeen, (k) => new Float64Array(k))
    this.lastTime = grow(this.lastTime, (k) => new Float64Array(k))
    this.lastPorts = grow(this.lastPorts, (k) => new Int32Array(k))
    this.lastProtoKind = grow(this.lastProtoKind, (k) => new Int32Array(k))
    this.count = grow(this.count, (k) => new Int32Array(k))
    this.guardGeneration = grow(this.guardGeneration, (k) => new Int32Array(k))
    this.kinds = grow(this.kinds, (k) => new Int32Array(k))
    this.plausible = grow(this.plausible, (k) => new Int32Array(k))
    this.forged = grow(this.forged, (k) => new Int32Array(k))
    this.resets = grow(this.resets, (k) => new Int32Array(k))
    this.port = grow(this.port, (k) => new Int32Array(k))
    this.flags = grow(this.flags, (k) => new Uint8Array(k))
    for (let i = n; i < size; i++) {
      this.evidence.push(NONE)
      this.suppressedBy.push(null)
      this.lastDst.push('')
      this.lastInterface.push('')
    }
  }

  /** Drops the references a slot holds (its numbers are overwritten by the next use). */
  release(slot: number): void {
    if (slot < this.suppressedBy.length) {
      this.suppressedBy[slot] = null
      this.evidence[slot] = NONE
    }
  }
}

