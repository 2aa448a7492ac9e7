/**
 * The pressure gauges behind the policy engine's two circuit breakers (spoofable
 * blocking, and per-source decisions about spoofable sources): a count of events in
 * the trailing minute, kept in twelve 5 s buckets so memory and time per call are
 * constant whatever the flood, and a list of the trailing minute's timestamps that
 * never grows past the cap it enforces. Pure, synchronous, no I/O; the engine owns
 * the clock.
 */

const MINUTE_MS = 60_000
const BUCKET_MS = 5000
const BUCKETS = MINUTE_MS / BUCKET_MS

/** Events per trailing minute, approximately (5 s resolution), in constant memory. */
export class MinuteGauge {
  readonly #buckets: Array<{ slot: number; n: number }> = Array.from({ length: BUCKETS }, () => ({ slot: -Infinity, n: 0 }))

  add(now: number): void {
    const slot = Math.floor(now / BUCKET_MS)
    const b = this.#buckets[((slot % BUCKETS) + BUCKETS) % BUCKETS] as { slot: number; n: number }
    if (b.slot !== slot) {
      b.slot = slot
      b.n = 0
    }
    b.n++
  }

  lastMinute(now: number): number {
    const slot = Math.floor(now / BUCKET_MS)
    let n = 0
    for (const b of this.#buckets) if (b.slot <= slot && slot - b.slot < BUCKETS) n += b.n
    return n
  }
}

/** Exact times of admitted events in the trailing minute; the caller admits at most `cap`. */
export class MinuteLog {
  #times: number[] = []

  /** Events admitted in the trailing minute. */
  count(now: number): number {
    const cut = now - MINUTE_MS
    let i = 0
    while (i < this.#times.length && (this.#times[i] as number) <= cut) i++
    if (i > 0) this.#times = this.#times.slice(i)
    return this.#times.length
  }

  add(now: number): void {
    this.#times.push(now)
  }

  /** Takes back one event admitted at `at` (a block refused after all). */
  remove(at: number): void {
    const i = this.#times.lastIndexOf(at)
    if (i !== -1) this.#times.splice(i, 1)
  }
}
