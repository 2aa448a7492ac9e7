/**
 * Running one benchmark section on its own (`node dist/bench/latency.js --quick`):
 * the flags every section takes, the same defaults as bench/run.ts, and a plain-text
 * rendering of its result. bench/run.ts renders the full report itself.
 */
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import type { SectionOptions, SectionResult } from './section.js'
import { fmt, table } from './stats.js'

/** Parses `--quick --rounds N --seconds S --json --no-install`, runs the section, prints it; exit code 1 when nothing was measured. */
export async function runStandalone(run: (options: SectionOptions) => Promise<SectionResult>): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      json: { type: 'boolean', default: false },
      'no-install': { type: 'boolean', default: false },
    },
  })
  const quick = values.quick
  const r = await run({
    quick,
    rounds: values.rounds !== undefined ? Number(values.rounds) : quick ? 2 : 5,
    seconds: values.seconds !== undefined ? Number(values.seconds) : quick ? 1 : 3,
    cores: availableParallelism() >= 2 ? { sender: 1, receiver: 0 } : { sender: 0, receiver: 0 },
    log: (line) => console.error(`[bench] ${line}`),
    netnsPrefix: 'pnperf-',
    install: !values['no-install'],
  })
  printSection(r, values.json)
  if (!r.ok) process.exitCode = 1
}

/** Prints a section's rows, targets and notes (standalone runs only; run.ts renders its own). */
export function printSection(r: SectionResult, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(r, null, 2))
    return
  }
  if (!r.ok) console.log(`${r.name}: not measured: ${r.reason ?? '?'}`)
  const head = Object.keys(r.rows[0] ?? {})
  if (head.length > 0) console.log(table([head, ...r.rows.map((row) => head.map((k) => String(row[k] ?? '')))]))
  for (const ratio of r.ratios ?? []) console.log(`${ratio.name}: ${fmt(ratio.value, (x) => `${x.toFixed(2)}×`)}`)
  for (const t of r.targets ?? []) console.log(`target ${t.statement}: ${t.met ? 'MET' : 'MISSED'} — ${t.measured}${t.note !== undefined ? ` (${t.note})` : ''}`)
  for (const w of r.warnings ?? []) console.log(`warning: ${w}`)
  for (const n of r.notes ?? []) console.log(`note: ${n}`)
}
