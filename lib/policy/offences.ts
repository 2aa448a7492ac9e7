/**
 * Offences: how often each address was blocked from verified evidence, for the
 * escalation ladder (`blockTtl: '1h,1d,7d'`: the n-th block of an address within
 * `forgetAfterMs` of its previous one gets step n). Pure and synchronous; the clock
 * is the caller's. Runs on the main thread. Invariants: at most `max` addresses are
 * remembered, the one whose last offence is oldest forgotten first (a Map's
 * insertion order is kept as last-offence order by re-inserting on every offence);
 * an address whose last offence is older than `forgetAfterMs` starts again at 1.
 * Only verified blocks are offences: a forged packet must not push a victim up the
 * ladder. The daemon persists entries() in its state file and load()s them at start.
 */

/** One address's history: how many blocks in a row (each within forgetAfter of the last), and when the last was. */
export interface Offence {
  address: string
  count: number
  /** ms since the epoch. */
  last: number
}

/** Addresses remembered by default (≈ 60 bytes each in the state file). */
export const DEFAULT_MAX_OFFENCES = 65_536

export class Offences {
  readonly #byAddress = new Map<string, { count: number; last: number }>()
  readonly #max: number

  constructor(max = DEFAULT_MAX_OFFENCES) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`max must be a positive integer, got ${String(max)}`)
    this.#max = max
  }

  get size(): number {
    return this.#byAddress.size
  }

  /** Which offence the next block of `address` would be (1 for a first or forgotten one), without recording it. */
  next(address: string, now: number, forgetAfterMs: number): number {
    const o = this.#byAddress.get(address)
    return o === undefined || now - o.last > forgetAfterMs ? 1 : o.count + 1
  }

  /** Records a block of `address` now; returns which offence it is (1-based). */
  record(address: string, now: number, forgetAfterMs: number): number {
    const count = this.next(address, now, forgetAfterMs)
    this.#byAddress.delete(address)
    this.#byAddress.set(address, { count, last: now })
    if (this.#byAddress.size > this.#max) {
      const oldest = this.#byAddress.keys().next()
      if (oldest.done !== true) this.#byAddress.delete(oldest.value)
    }
    return count
  }

  /** The history of `address` as it stands (a copy), or undefined. */
  get(address: string): { count: number; last: number } | undefined {
    const o = this.#byAddress.get(address)
    return o === undefined ? undefined : { ...o }
  }

  /**
   * Puts `address` back as get() saw it before a record() that did not stand (the
   * check right before the block refused it): a refused block is no offence.
   */
  restore(address: string, before: { count: number; last: number } | undefined): void {
    this.#byAddress.delete(address)
    if (before !== undefined) this.#byAddress.set(address, { ...before })
  }

  /** Forgets `address` (an operator's unblock says it was a mistake). */
  forget(address: string): boolean {
    return this.#byAddress.delete(address)
  }

  /** Every entry younger than `forgetAfterMs`, oldest last offence first. */
  entries(now: number, forgetAfterMs: number): Offence[] {
    const out: Offence[] = []
    for (const [address, o] of this.#byAddress) if (now - o.last <= forgetAfterMs) out.push({ address, count: o.count, last: o.last })
    return out
  }

  /**
   * Takes over saved entries (the state file): applied in last-offence order, so the
   * bound keeps the most recent; entries already known keep the later of the two.
   */
  load(entries: readonly Offence[], now: number, forgetAfterMs: number): number {
    let taken = 0
    for (const e of [...entries].sort((a, b) => a.last - b.last)) {
      if (!(e.count >= 1) || !Number.isFinite(e.last) || now - e.last > forgetAfterMs) continue
      const have = this.#byAddress.get(e.address)
      if (have !== undefined && have.last >= e.last) continue
      this.#byAddress.delete(e.address)
      this.#byAddress.set(e.address, { count: Math.floor(e.count), last: e.last })
      taken++
    }
    // Loaded entries may be older than ones recorded since start: restore the order.
    const sorted = [...this.#byAddress].sort((a, b) => a[1].last - b[1].last)
    this.#byAddress.clear()
    for (const [k, v] of sorted.slice(-this.#max)) this.#byAddress.set(k, v)
    return taken
  }
}

/** The step of `ladder` for the n-th offence (1-based): the last step once past the end. */
export function ladderStep(ladder: readonly number[], offence: number): number {
  const i = Math.min(Math.max(1, offence), ladder.length) - 1
  return ladder[i] as number
}
