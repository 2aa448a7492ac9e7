/**
 * `npm run bench -- --quick` as CI runs it: the built harness (dist/bench/run.js) as a
 * child process, writing its JSON, charts and report into a temporary folder, never
 * the committed BENCHMARKS.md or bench/results/. It checks that the command exits 0,
 * that every section (micro, throughput, host-traffic, latency, blocking, guards) was
 * measured and produced rows with numbers in them, that each chart was written as
 * SVG, and that the report has its generated block — not the values, which a smoke
 * run on a shared machine cannot vouch for. It runs with --no-install: the tools the
 * harness uses (iperf3, ethtool, cc, g++, nft, and the npm `cap` receiver in
 * bench/cap.ts's CAP_DIR) are installed by .ci/run, never by `npm test`; when one is
 * missing, or without root (namespaces, AF_PACKET, nft), the test is skipped loudly.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { PACKAGE_ROOT } from '../../lib/binding.js'
import { capReady } from '../../bench/cap.js'
import type { BenchReport } from '../../bench/report.js'
import { BEGIN, END } from '../../bench/report.js'
import { IS_ROOT, warnIfNotRoot } from '../helpers/netns.js'
import { hasCommand } from '../helpers/tools.js'

const FILE = 'test/privileged/bench-quick.test.ts'
warnIfNotRoot(FILE)

const missing = [...['iperf3', 'ethtool', 'cc', 'g++', 'nft'].filter((c) => !hasCommand(c)), ...((await capReady()) ? [] : ['npm cap (node dist/bench/cap.js)'])]
if (IS_ROOT && missing.length > 0) {
  console.warn(`\n*** SKIPPED: ${FILE} needs ${missing.join(', ')}; .ci/run installs them (npm test never does). ***\n`)
}

const SECTIONS = ['micro', 'throughput', 'host-traffic', 'latency', 'blocking', 'guards']
let dir: string | undefined

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

function runBench(args: readonly string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'dist', 'bench', 'run.js'), ...args], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    // The harness ends its own children and namespaces on SIGTERM.
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs)
    child.once('error', reject)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

describe.skipIf(!IS_ROOT || missing.length > 0)('npm run bench -- --quick', () => {
  // The harness says --quick takes under 2 minutes on a quiet machine; a loaded one takes longer.
  it('measures every section and writes JSON, SVG charts and a report outside the repository', { timeout: 620_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'pnperf-test-'))
    const committed = join(PACKAGE_ROOT, 'BENCHMARKS.md')
    const before = await stat(committed).then((s) => s.mtimeMs, () => 0)
    const out = join(dir, 'quick.json')
    const markdown = join(dir, 'BENCHMARKS.md')
    const started = Date.now()
    const r = await runBench(['--quick', '--no-install', '--out', out, '--markdown', markdown], 600_000)
    const seconds = (Date.now() - started) / 1000
    expect(r.code, `exit ${String(r.code)} after ${seconds.toFixed(0)} s\n${r.stdout}\n${r.stderr.slice(-4000)}`).toBe(0)

    const report = JSON.parse(await readFile(out, 'utf8')) as BenchReport
    expect(report.schema).toBe('portanoia-bench/2')
    expect(report.mode).toBe('quick')
    expect(report.failures).toEqual([])
    for (const name of SECTIONS) {
      const s = report.sections[name]
      expect(s, `section ${name} missing`).toBeDefined()
      expect(s!.ok, `${name}: ${s!.reason ?? ''}`).toBe(true)
      expect(s!.rows.length, `${name} has no rows`).toBeGreaterThan(0)
      // Some cell of the table holds a measured number (a digit that is not a label).
      const figures = s!.rows.flatMap((row) => Object.entries(row).slice(1).map(([, v]) => v))
      expect(figures.some((v) => (typeof v === 'number' ? Number.isFinite(v) : /\d/.test(v) && v !== 'n/a')), `${name} has no figures`).toBe(true)
    }
    expect(report.targets.length).toBeGreaterThan(0)
    for (const t of report.targets) expect(typeof t.met).toBe('boolean')

    expect(report.charts.length).toBeGreaterThan(0)
    for (const c of report.charts) {
      const svg = await readFile(join(dir, c.file), 'utf8')
      expect(svg.startsWith('<svg ')).toBe(true)
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true)
    }
    const md = await readFile(markdown, 'utf8')
    expect(md).toContain(BEGIN)
    expect(md).toContain(END)
    expect(md).toContain('### Targets (issues 4 and 9)')

    const after = await stat(committed).then((s) => s.mtimeMs, () => 0)
    expect(after, 'the quick run touched the committed BENCHMARKS.md').toBe(before)
  })
})
