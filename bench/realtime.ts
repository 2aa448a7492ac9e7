/**
 * Wall-clock time with sub-millisecond resolution, for comparing against the kernel's
 * capture timestamps (hit.time: CLOCK_REALTIME, ms with µs precision), plus the
 * percentile arithmetic the latency figures use. Date.now() is the right clock but
 * only has whole milliseconds; performance.timeOrigin + performance.now() has the
 * resolution but is anchored once at process start and then follows the monotonic
 * clock, which NTP slewing moves away from CLOCK_REALTIME by up to 0.5 ms per second.
 * So a RealtimeClock re-anchors: it catches the instant Date.now() ticks to the next
 * millisecond and pairs it with performance.now(), which places the monotonic clock
 * on the wall clock to within a few µs; trials are seconds long, so one anchor per
 * trial keeps the drift far below what is measured. Pure apart from reading clocks;
 * used on the main thread of the bench process and of its child receivers.
 */
import { performance } from 'node:perf_hooks'

export class RealtimeClock {
  #offset = 0

  constructor() {
    this.anchor()
  }

  /**
   * Spins (at most ~1 ms) until Date.now() changes, then records the offset between
   * the wall clock and performance.now() at that edge.
   */
  anchor(): void {
    const start = Date.now()
    let now = start
    let mono = performance.now()
    while (now === start) {
      mono = performance.now()
      now = Date.now()
    }
    // The edge happened between the previous performance.now() and this Date.now():
    // `mono` was read just before the Date.now() that saw the new millisecond.
    this.#offset = now - mono
  }

  /** Milliseconds since the epoch, fractional. */
  now(): number {
    return this.#offset + performance.now()
  }
}

/** The q-quantile (0..1) of sorted values, nearest-rank; NaN when empty. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length
  if (n === 0) return Number.NaN
  const rank = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))
  return sorted[rank]!
}

export interface Percentiles {
  n: number
  median: number
  p99: number
  max: number
  min: number
}

/** Median, p99, min and max of the values (copied and sorted; the input is left alone). */
export function percentiles(values: ArrayLike<number>): Percentiles {
  const sorted = Float64Array.from(values).sort()
  return {
    n: sorted.length,
    median: quantileSorted(sorted, 0.5),
    p99: quantileSorted(sorted, 0.99),
    min: sorted.length > 0 ? sorted[0]! : Number.NaN,
    max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
  }
}
