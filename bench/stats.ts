/**
 * Summaries for noisy measurements: every figure the benchmarks report is the median
 * of its rounds with the range [min..max] beside it, because on a shared machine the
 * spread is part of the result (15-30 % run to run is normal here). Pure functions.
 */

export interface Summary {
  median: number
  min: number
  max: number
  n: number
}

/** Median [min..max] of the finite values; NaN fields when there are none. */
export function summarize(values: readonly number[]): Summary {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  const n = v.length
  if (n === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 }
  const mid = n >> 1
  const median = n % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2
  return { median, min: v[0]!, max: v[n - 1]!, n }
}

/** A number with three significant digits and an SI suffix (1.23M, 456k, 7.89). */
export function si(x: number): string {
  if (!Number.isFinite(x)) return 'n/a'
  const a = Math.abs(x)
  if (a >= 1e9) return `${(x / 1e9).toPrecision(3)}G`
  if (a >= 1e6) return `${(x / 1e6).toPrecision(3)}M`
  if (a >= 1e3) return `${(x / 1e3).toPrecision(3)}k`
  if (a === 0) return '0'
  return x.toPrecision(3)
}

/** "median [min..max]" with a formatter for each number. */
export function fmt(s: Summary, f: (x: number) => string = si): string {
  if (s.n === 0) return 'n/a'
  if (s.n === 1) return f(s.median)
  return `${f(s.median)} [${f(s.min)}..${f(s.max)}]`
}

export const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(x >= 0.9995 && x < 1 ? 3 : 1)}%` : 'n/a')
export const ratio = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : 'n/a')

/** Renders rows as a fixed-width text table (first row is the header). */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  const line = (row: readonly string[]): string => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()
  const out = [line(rows[0] ?? [])]
  out.push(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of rows.slice(1)) out.push(line(row))
  return out.join('\n')
}

/** The same rows as a Markdown table. */
export function markdownTable(rows: readonly (readonly string[])[]): string {
  const [head, ...body] = rows
  if (head === undefined) return ''
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`]
  for (const row of body) out.push(`| ${row.join(' | ')} |`)
  return out.join('\n')
}
