/**
 * Wall-clock time with sub-millisecond resolution, for comparing against the kernel's
 * capture timestamps (hit.time: CLOCK_REALTIME, ms with µs precision), plus the
 * percentile arithmetic the latency figures use. Date.now() is the right clock but
 * only has whole milliseconds; performance.timeOrigin + performance.now() has the
 * resolution but is anchored once at process start and then follows the monotonic
 * clock, which NTP slewing moves away from CLOCK_REALTIME by up to 0.5 ms per second.
 * So a RealtimeClock re-anchors: it catches the instant Date.now() ticks to the next
 * millisecond and pairs it with performance.now(). The tick is only known to lie
 * between two readings — after the last Date.now() that still showed the old
 * millisecond began, and before the first one that shows the new one returned — and
 * on a loaded machine the process can be preempted anywhere in that window, which
 * once put the anchor most of a millisecond off (a negative packet → JS median). So
 * each reading is bracketed by performance.now(), the window's width is measured, the
 * anchor is the window's midpoint, and a window wider than 20 µs is retried (the
 * narrowest of up to 20 is kept): `uncertaintyMs` is the bound that results. Trials are
 * seconds long, so one anchor per trial keeps the drift far below what is measured.
 * Pure apart from reading clocks (which tests may replace); used on the main thread of
 * the bench process and of its child receivers.
 */
import { performance } from 'node:perf_hooks'

/** The two clocks a RealtimeClock pairs: whole-ms wall time and a fine monotonic one, both in ms. */
export interface ClockSources {
  wall(): number
  mono(): number
}

const SYSTEM_CLOCKS: ClockSources = { wall: () => Date.now(), mono: () => performance.now() }
/** An anchor window this narrow (ms) is accepted at once. */
const GOOD_WINDOW_MS = 0.02
const MAX_ATTEMPTS = 20

export class RealtimeClock {
  readonly #clocks: ClockSources
  #offset = 0
  #uncertaintyMs = Number.POSITIVE_INFINITY

  constructor(clocks: ClockSources = SYSTEM_CLOCKS) {
    this.#clocks = clocks
    this.anchor()
  }

  /**
   * Finds a millisecond edge of the wall clock on the monotonic clock: spins (about
   * 1 ms per attempt) until Date.now() changes, bracketing each Date.now() with
   * performance.now(); keeps the narrowest bracket of up to 20 attempts, stopping
   * early at one under 20 µs.
   */
  anchor(): void {
    const { wall, mono } = this.#clocks
    let best = Number.POSITIVE_INFINITY
    for (let attempt = 0; attempt < MAX_ATTEMPTS && best > GOOD_WINDOW_MS; attempt++) {
      let lastOldStart = mono()
      const old = wall()
      let start = mono()
      let seen = wall()
      let end = mono()
      while (seen === old) {
        lastOldStart = start
        start = mono()
        seen = wall()
        end = mono()
      }
      // The reading that still showed `old` began at lastOldStart; the one that
      // showed `seen` returned by `end`: the edge to `seen` lies between the two.
      const width = end - lastOldStart
      if (width < best) {
        best = width
        this.#offset = seen - (lastOldStart + end) / 2
      }
    }
    this.#uncertaintyMs = best / 2
  }

  /** Milliseconds since the epoch, fractional. */
  now(): number {
    return this.#offset + this.#clocks.mono()
  }

  /** How far the last anchor can be off, at most (ms): half its window. */
  get uncertaintyMs(): number {
    return this.#uncertaintyMs
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
