/**
 * Hand-written SVG bar charts for the benchmark report (no chart library: the harness
 * adds no dependency). One chart is a ChartSpec from bench/section.ts: groups along
 * the x axis, one bar per series inside each group, the bar at the median and a
 * whisker from min to max, an optional dashed reference line (a target). Values that
 * were not measured (n = 0) are drawn as "n/a" instead of a bar, never as zero. Pure:
 * takes a spec, returns the SVG text; run.ts writes the files.
 */
import type { ChartSpec, SectionSummary } from './section.js'

const PALETTE = ['#2b6cb0', '#dd6b20', '#38a169', '#805ad5', '#d53f8c', '#718096', '#b7791f', '#319795']
const W = 760
const PLOT_TOP = 48
const PLOT_H = 260
const LEFT = 72
const RIGHT = 16

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** A value as the chart's format prints it. */
export function formatValue(x: number, format: ChartSpec['format'] = 'si'): string {
  if (!Number.isFinite(x)) return 'n/a'
  switch (format) {
    case 'percent':
      return `${(x * 100).toFixed(x >= 0.9995 && x < 1 ? 2 : x < 0.1 ? 1 : 0)}%`
    case 'ms':
      return `${x < 10 ? x.toPrecision(2) : x.toFixed(0)} ms`
    case 'ratio':
      return `${x.toFixed(2)}×`
    default: {
      const a = Math.abs(x)
      if (a >= 1e9) return `${(x / 1e9).toPrecision(3)}G`
      if (a >= 1e6) return `${(x / 1e6).toPrecision(3)}M`
      if (a >= 1e3) return `${(x / 1e3).toPrecision(3)}k`
      return a === 0 ? '0' : x.toPrecision(3)
    }
  }
}

/** Round axis maximum: 1, 2, 2.5 or 5 × 10^k at or above `x`. */
function niceMax(x: number): number {
  if (!(x > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(x))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p
  return 10 * p
}

const finite = (s: SectionSummary): boolean => s.n > 0 && Number.isFinite(s.median)

export function renderChart(spec: ChartSpec): string {
  const series: string[] = []
  for (const g of spec.groups) for (const b of g.bars) if (!series.includes(b.label)) series.push(b.label)
  const values: number[] = []
  for (const g of spec.groups) for (const b of g.bars) if (finite(b.value)) values.push(b.value.max, b.value.median)
  if (spec.reference !== undefined) values.push(spec.reference.value)
  const useLog = spec.log === true && values.every((v) => v > 0) && values.length > 0
  // No headroom factor: a delivered fraction of 1.0 should get a 0..100 % axis, not 0..200 %.
  const top = niceMax(Math.max(0, ...values.filter(Number.isFinite)))
  const lo = useLog ? 10 ** Math.floor(Math.log10(Math.min(...values))) : 0
  const hi = useLog ? 10 ** Math.ceil(Math.log10(Math.max(...values))) : top
  const y = (v: number): number => {
    const f = useLog ? (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1) : v / (hi || 1)
    return PLOT_TOP + PLOT_H - Math.min(1, Math.max(0, f)) * PLOT_H
  }
  const legendRows = Math.ceil(series.length / 3)
  const H = PLOT_TOP + PLOT_H + 44 + legendRows * 18 + 8
  const plotW = W - LEFT - RIGHT
  const groupW = plotW / Math.max(1, spec.groups.length)
  const barW = Math.min(48, (groupW * 0.8) / Math.max(1, series.length))
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="11">`)
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${esc(spec.title)}</text>`)
  out.push(`<text x="${W / 2}" y="36" text-anchor="middle" fill="#4a5568">median, whisker min..max over rounds</text>`)
  // Axis with 5 ticks (or one per decade on a log axis).
  const ticks: number[] = []
  if (useLog) for (let v = lo; v <= hi * 1.0001; v *= 10) ticks.push(v)
  else for (let i = 0; i <= 5; i++) ticks.push((hi * i) / 5)
  for (const t of ticks) {
    const ty = y(t)
    out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${ty.toFixed(1)}" y2="${ty.toFixed(1)}" stroke="#e2e8f0"/>`)
    out.push(`<text x="${LEFT - 6}" y="${(ty + 4).toFixed(1)}" text-anchor="end" fill="#4a5568">${esc(formatValue(t, spec.format))}</text>`)
  }
  out.push(`<text x="14" y="${PLOT_TOP + PLOT_H / 2}" transform="rotate(-90 14 ${PLOT_TOP + PLOT_H / 2})" text-anchor="middle" fill="#4a5568">${esc(spec.unit)}</text>`)
  out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${PLOT_TOP + PLOT_H}" y2="${PLOT_TOP + PLOT_H}" stroke="#2d3748"/>`)
  spec.groups.forEach((g, gi) => {
    const gx = LEFT + gi * groupW
    const start = gx + (groupW - barW * series.length) / 2
    for (const b of g.bars) {
      const si = series.indexOf(b.label)
      const x = start + si * barW
      const colour = PALETTE[si % PALETTE.length]!
      const title = `${b.label} — ${g.label}: ${formatValue(b.value.median, spec.format)} [${formatValue(b.value.min, spec.format)}..${formatValue(b.value.max, spec.format)}], n=${b.value.n}`
      if (!finite(b.value)) {
        out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${PLOT_TOP + PLOT_H - 4}" text-anchor="middle" fill="#a0aec0" font-size="9">n/a</text>`)
        continue
      }
      const by = y(b.value.median)
      const base = useLog ? PLOT_TOP + PLOT_H : y(0)
      out.push(`<rect x="${(x + 1).toFixed(1)}" y="${by.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${Math.max(0.5, base - by).toFixed(1)}" fill="${colour}"><title>${esc(title)}</title></rect>`)
      if (b.value.n > 1) {
        const cx = (x + barW / 2).toFixed(1)
        const y1 = y(b.value.min).toFixed(1)
        const y2 = y(b.value.max).toFixed(1)
        out.push(`<line x1="${cx}" x2="${cx}" y1="${y1}" y2="${y2}" stroke="#1a202c"/>`)
        out.push(`<line x1="${(x + barW / 2 - 4).toFixed(1)}" x2="${(x + barW / 2 + 4).toFixed(1)}" y1="${y1}" y2="${y1}" stroke="#1a202c"/>`)
        out.push(`<line x1="${(x + barW / 2 - 4).toFixed(1)}" x2="${(x + barW / 2 + 4).toFixed(1)}" y1="${y2}" y2="${y2}" stroke="#1a202c"/>`)
      }
      if (barW >= 22) {
        out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(Math.min(by, y(b.value.max)) - 4).toFixed(1)}" text-anchor="middle" font-size="9" fill="#1a202c">${esc(formatValue(b.value.median, spec.format))}</text>`)
      }
    }
    out.push(`<text x="${(gx + groupW / 2).toFixed(1)}" y="${PLOT_TOP + PLOT_H + 16}" text-anchor="middle" font-weight="600">${esc(g.label)}</text>`)
  })
  if (spec.reference !== undefined) {
    const ry = y(spec.reference.value).toFixed(1)
    out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${ry}" y2="${ry}" stroke="#c53030" stroke-dasharray="6 4"/>`)
    out.push(`<text x="${W - RIGHT - 4}" y="${(Number(ry) - 4).toFixed(1)}" text-anchor="end" fill="#c53030">${esc(spec.reference.label)}</text>`)
  }
  series.forEach((label, i) => {
    const lx = LEFT + (i % 3) * (plotW / 3)
    const ly = PLOT_TOP + PLOT_H + 36 + Math.floor(i / 3) * 18
    out.push(`<rect x="${lx}" y="${ly - 9}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]!}"/>`)
    out.push(`<text x="${lx + 16}" y="${ly + 1}">${esc(label)}</text>`)
  })
  out.push('</svg>')
  return `${out.join('\n')}\n`
}
