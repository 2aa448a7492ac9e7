/**
 * `npm run bench`: runs the benchmark sections one at a time on the main thread
 * (micro, throughput, host-traffic, latency, blocking, guards — each a module with
 * `run(options): Promise<SectionResult>`, contract in bench/section.ts), prints each
 * section's table and the targets with met/missed, writes the results JSON (schema
 * `portanoia-bench/2`, documented in BENCHMARKS.md), renders every chart a section
 * returns to SVG next to it, and regenerates the results part of BENCHMARKS.md
 * between its markers (bench/report.ts). Flags: --quick (smoke run, under 2 minutes,
 * not for conclusions), --only a,b (section names), --rounds N, --seconds S,
 * --out FILE (results JSON; charts go to FILE without .json), --markdown FILE (report
 * to update; default BENCHMARKS.md for a full run, none for --quick), --no-markdown,
 * --no-install (report a missing ethtool, libpcap-dev or npm cap instead of
 * installing it with apt-get/npm; the test suite's smoke run uses it), --from FILE (measure nothing: redraw the charts and the report of an earlier
 * results JSON, e.g. after a change to the renderer). Exits 1, with the reasons, when
 * any section could not be measured.
 */
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg, release } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { PACKAGE_ROOT } from '../lib/binding.js'
import { runMicro } from './micro.bench.js'
import { renderReport, type BenchReport } from './report.js'
import type { SectionOptions, SectionResult, SectionRunner } from './section.js'
import { fmt, table } from './stats.js'
import { renderChart } from './svg.js'

const SECTIONS = ['micro', 'throughput', 'host-traffic', 'latency', 'blocking', 'guards'] as const
type SectionName = (typeof SECTIONS)[number]

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    out: { type: 'string' },
    markdown: { type: 'string' },
    'no-markdown': { type: 'boolean', default: false },
    'no-install': { type: 'boolean', default: false },
    from: { type: 'string' },
  },
})

const quick = values.quick
const log = (line: string): void => console.error(`[bench] ${line}`)
const only = values.only?.split(',').map((s) => s.trim()) ?? [...SECTIONS]
const unknown = only.filter((s) => !(SECTIONS as readonly string[]).includes(s))
if (values.from !== undefined) {
  // Redraw only: the measurements stay as they were recorded.
  const from = values.from
  const old = JSON.parse(await readFile(from, 'utf8')) as BenchReport
  if (old.schema !== 'portanoia-bench/2') throw new Error(`${from}: schema ${String(old.schema)}, expected portanoia-bench/2`)
  const dir = from.replace(/\.json$/, '')
  await mkdir(dir, { recursive: true })
  for (const c of old.charts) {
    const spec = old.sections[c.section]?.charts?.find((x) => x.id === c.id)
    if (spec !== undefined) await writeFile(join(dirname(from), c.file), renderChart(spec))
  }
  const md = values.markdown ?? join(PACKAGE_ROOT, 'BENCHMARKS.md')
  const existing = await readFile(md, 'utf8').catch(() => '')
  await writeFile(md, renderReport(existing, old, { markdownFile: md, resultsFile: from }))
  console.log(`charts of ${from} redrawn in ${dir}; report regenerated in ${md}`)
  process.exit(0)
}
if (unknown.length > 0) {
  console.error(`--only takes a comma-separated list of ${SECTIONS.join(', ')}; unknown: ${unknown.join(', ')}`)
  process.exit(2)
}
const wanted = SECTIONS.filter((s) => only.includes(s))

/** The micro benchmarks predate the section contract: adapted here. */
const micro: SectionRunner = async (options) => {
  const m = await runMicro({ quick: options.quick, log: options.log })
  return {
    name: 'micro',
    title: 'Micro benchmarks (tinybench + native)',
    ok: m.figures.length > 0,
    ...(m.nativeError !== undefined && { warnings: [m.nativeError] }),
    rows: m.figures.map((f) => ({ benchmark: f.name, 'median [min..max]': fmt(f.value, (x) => x.toPrecision(3)), unit: f.unit, note: f.note ?? '' })),
    notes: [`${m.rounds} rounds; compileFilter: ${m.filters.map((f) => `${f.ports} ports → ${f.instructions} instructions${f.exact ? '' : ' (merged)'}`).join(', ')}.`],
    details: m,
  }
}

/**
 * A section module written in parallel (latency, blocking) is loaded when its file is
 * there, so the harness builds and runs before it lands; its absence is a reported
 * failure, not a crash.
 */
async function loadSection(name: SectionName): Promise<SectionRunner | string> {
  if (name === 'micro') return micro
  const file = fileURLToPath(new URL(`./${name}.js`, import.meta.url))
  if (!existsSync(file)) return `bench/${name}.ts is not part of this build (no ${relative(PACKAGE_ROOT, file)})`
  const mod = (await import(`./${name}.js`)) as { run?: unknown }
  if (typeof mod.run !== 'function') return `bench/${name}.ts does not export run(options)`
  return mod.run as SectionRunner
}

const started = new Date()
const stamp = started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')
const outFile = values.out ?? join(PACKAGE_ROOT, 'bench', 'results', `${stamp}.json`)
const chartDir = outFile.replace(/\.json$/, '')
const markdown = values['no-markdown'] ? undefined : (values.markdown ?? (quick || values.only !== undefined ? undefined : join(PACKAGE_ROOT, 'BENCHMARKS.md')))
const cores = availableParallelism() >= 2 ? { sender: 1, receiver: 0 } : { sender: 0, receiver: 0 }

const report: BenchReport = {
  schema: 'portanoia-bench/2',
  startedAt: started.toISOString(),
  finishedAt: '',
  durationSeconds: 0,
  command: ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
  mode: quick ? 'quick' : 'full',
  machine: {
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    kernel: release(),
    node: process.version,
    root: process.getuid?.() === 0,
    loadavgStart: loadavg(),
    loadavgEnd: [],
    cores,
  },
  sections: {},
  targets: [],
  charts: [],
  failures: [],
}

for (const name of wanted) {
  const options: SectionOptions = {
    quick,
    rounds: values.rounds !== undefined ? Number(values.rounds) : quick ? 1 : 5,
    seconds: values.seconds !== undefined ? Number(values.seconds) : quick ? 1 : 3,
    cores,
    log,
    netnsPrefix: 'pnperf-',
    install: !values['no-install'],
  }
  const t0 = Date.now()
  log(`section ${name}…`)
  let result: SectionResult
  const runner = await loadSection(name)
  if (typeof runner === 'string') {
    result = { name, ok: false, reason: runner, rows: [] }
  } else {
    try {
      result = await runner(options)
    } catch (err) {
      result = { name, ok: false, reason: `threw: ${(err as Error).stack ?? String(err)}`, rows: [] }
    }
  }
  log(`section ${name}: ${result.ok ? 'ok' : `NOT MEASURED: ${result.reason ?? 'no reason given'}`} (${((Date.now() - t0) / 1000).toFixed(0)} s)`)
  report.sections[name] = result
  if (!result.ok) report.failures.push(`${name}: ${result.reason ?? 'no reason given'}`)
  else if (result.rows.length === 0) report.failures.push(`${name}: reported ok but produced no rows`)
  for (const t of result.targets ?? []) report.targets.push({ section: name, ...t })
}

// Charts: one SVG per chart spec, next to the JSON.
await mkdir(chartDir, { recursive: true })
for (const [name, s] of Object.entries(report.sections)) {
  for (const c of s.charts ?? []) {
    const file = join(chartDir, `${name}-${c.id}.svg`)
    await writeFile(file, renderChart(c))
    report.charts.push({ section: name, id: c.id, title: c.title, file: relative(dirname(outFile), file) })
  }
}

const finished = new Date()
report.finishedAt = finished.toISOString()
report.durationSeconds = (finished.getTime() - started.getTime()) / 1000
report.machine.loadavgEnd = loadavg()

const m = report.machine
console.log(`\nportanoia benchmarks (${report.mode}) — ${m.nproc} cores, ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}`)
console.log(`load average at start ${m.loadavgStart.map((x) => x.toFixed(2)).join(' ')}, at end ${m.loadavgEnd.map((x) => x.toFixed(2)).join(' ')}; ${report.durationSeconds.toFixed(0)} s\n`)
for (const s of Object.values(report.sections)) {
  console.log(`== ${s.title ?? s.name}${s.ok ? '' : ` — NOT MEASURED: ${s.reason ?? ''}`}`)
  if (s.rows.length > 0) {
    const cols = Object.keys(s.rows[0]!)
    console.log(table([cols, ...s.rows.map((r) => cols.map((c) => String(r[c] ?? '')))]))
  }
  for (const r of s.ratios ?? []) console.log(`  ${r.name}: ${fmt(r.value, (x) => `${x.toFixed(3)}×`)}`)
  for (const w of s.warnings ?? []) console.log(`  warning: ${w}`)
  console.log('')
}
if (report.targets.length > 0) {
  console.log('targets (issue 4):')
  for (const t of report.targets) console.log(`  [${t.met ? 'MET' : 'MISSED'}] ${t.statement}: ${t.measured}${t.note !== undefined ? ` (${t.note})` : ''}`)
}
if (quick) console.log('(quick mode: a smoke run with one short round; draw no conclusions from it)')

await mkdir(dirname(outFile), { recursive: true })
await writeFile(outFile, `${JSON.stringify(report, null, 2)}\n`)
console.log(`results written to ${outFile}; charts in ${chartDir}`)

if (markdown !== undefined) {
  const existing = await readFile(markdown, 'utf8').catch(() => '')
  await writeFile(markdown, renderReport(existing, report, { markdownFile: markdown, resultsFile: outFile }))
  console.log(`report regenerated in ${markdown}`)
}

if (report.failures.length > 0) {
  console.error(`\nbench: ${report.failures.length} section(s) could not be measured:`)
  for (const f of report.failures) console.error(`  - ${f}`)
  process.exitCode = 1
}
