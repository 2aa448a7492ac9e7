/**
 * The contract between bench/run.ts and the benchmark sections it runs (throughput,
 * host traffic, latency, blocking, micro). Each section module exports
 * `run(options: SectionOptions): Promise<SectionResult>`; run.ts calls them one at a
 * time on the main thread, prints `rows` as a table, writes the whole result into the
 * results JSON (`sections[name]`), draws every entry of `charts` as an SVG bar chart
 * (median bar, min..max whisker) and lists every entry of `targets` with met/missed in
 * BENCHMARKS.md. A section never throws for an expected failure (not root, tool
 * missing): it returns `ok: false` with a `reason` a reader can act on, and run.ts
 * exits non-zero. Types only, no code: both sides import this file.
 */

/** Median [min..max] over rounds; `n` is how many finite values went in. Same shape as stats.ts's Summary. */
export interface SectionSummary {
  median: number
  min: number
  max: number
  n: number
}

/** What run.ts hands every section. */
export interface SectionOptions {
  /** Smoke run (`--quick`): the section must finish within its share of 2 minutes; no conclusions. */
  quick: boolean
  /** Interleaved rounds to run (full: at least 5). */
  rounds: number
  /** Seconds per trial where the section has trials of a fixed length. */
  seconds: number
  /** CPU cores to pin the traffic generator and the measured receiver to (distinct when the machine has 2+). */
  cores: { sender: number; receiver: number }
  /** Progress lines go here (stderr), never to stdout, which carries the summary. */
  log: (line: string) => void
  /** Namespace name prefix the section must use (`pnperf-`), so cleanup and reviewers can find them. */
  netnsPrefix: string
  /**
   * Whether a missing helper (ethtool, libpcap-dev, the npm `cap` receiver) may be
   * installed on the spot (apt-get, npm). False with `--no-install`, as the test
   * suite's smoke run passes: then what is missing is reported, never installed.
   */
  install: boolean
}

/**
 * A ratio measured in the same run (configurations interleaved), e.g. "bulk TCP with
 * portanoia / without sensor". Conclusions are drawn from these, not from absolutes.
 */
export interface SectionRatio {
  /** What is divided by what, in words: "iperf3 bulk: portanoia / no sensor". */
  name: string
  value: SectionSummary
}

/** One bar of a chart: median with a min..max whisker. */
export interface ChartBar {
  label: string
  value: SectionSummary
}

/**
 * A bar chart run.ts renders to bench/results/<date>/<section>-<id>.svg. Bars may be
 * grouped (e.g. one group per offered rate, one bar per receiver): `series` names the
 * bars inside each group, in the same order in every group, so colours stay stable.
 */
export interface ChartSpec {
  /** File-name safe id, unique within the section: `delivered`, `cpu`, `p99`. */
  id: string
  title: string
  /** Axis label: `fraction of offered`, `% of one core`, `ms`, `bans/s`. */
  unit: string
  /** How values print: fraction → percent, ms, plain SI number. Default `si`. */
  format?: 'percent' | 'si' | 'ms' | 'ratio'
  groups: Array<{ label: string; bars: ChartBar[] }>
  /** Optional horizontal line (a target or 1.0× reference). */
  reference?: { value: number; label: string }
  /** Log scale for values spanning decades (ban rates, latencies). */
  log?: boolean
}

/** One of issue 4's targets, judged by the section that measured it. */
export interface SectionTarget {
  /** The target as the issue states it: "packet → JS p99 < 5 ms". */
  statement: string
  met: boolean
  /** The figure it was judged on, in words with units: "p99 3.1 ms [2.8..4.0] at 100k hits/s". */
  measured: string
  /** Why it counts as met/missed when that is not obvious from `measured` (projection, caveat). */
  note?: string
}

/** What every section's `run()` resolves to. */
export interface SectionResult {
  /** Section key in the JSON and the report: `throughput`, `host-traffic`, `latency`, `blocking`, `micro`. */
  name: string
  /** Human title for the report heading. */
  title?: string
  /** False when nothing of this section could be measured; `reason` says why. */
  ok: boolean
  reason?: string
  /** Partial failures (one receiver unavailable, one trial failed) when `ok` is still true. */
  warnings?: string[]
  /**
   * The section's summary table, one record per row, columns in insertion order of
   * the first row. Numbers are raw (fractions as 0..1, times in ms unless the column
   * name says otherwise); strings are already formatted (e.g. "1.2M [1.1M..1.3M]").
   */
  rows: Array<Record<string, number | string>>
  ratios?: SectionRatio[]
  charts?: ChartSpec[]
  targets?: SectionTarget[]
  /** Section-specific raw data (per-trial figures) kept in the JSON for other tools; not rendered. */
  details?: unknown
  /** Free-text method notes rendered under the section's table (cores, durations, caveats). */
  notes?: string[]
}

/** The signature each section module exports as `run`. */
export type SectionRunner = (options: SectionOptions) => Promise<SectionResult>
