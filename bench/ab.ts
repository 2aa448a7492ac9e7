/**
 * Two or more builds of this package side by side at the generator's ceiling (issue 9):
 * the quick way to judge a change to the capture thread or the library's hot path when
 * one throughput run is within this machine's noise of the next.
 *
 *   sudo node dist/bench/ab.js ROOT_A ROOT_B [ROOT_C ...] [--runs 3] [--rounds 3] [--seconds 3]
 *
 * Each ROOT is a checkout with its addon and dist/ built (e.g. a `git worktree` of main
 * beside the branch). A run is bench/e2e.ts's runE2e, imported from that build's own dist,
 * with three configs: the C TPACKET_V3 reader, portanoia read with `for await`, and with
 * `batches()` — the throughput section's receivers, so its figures are the section's. Runs
 * alternate between the builds (A, B, …, A, B, …) so drift on the host hits every build
 * alike. Printed per run: CPU ns a hit of the receiver process (every thread) and its ratio
 * to the C reader in the same run, of it the JS thread's and the capture thread's, the
 * offered rate and the hits that went missing; then
 * the median of each build's runs. Builds must share the bench's interface (runE2e's
 * options and result); namespaces and children are runE2e's, torn down on every path out.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import type { E2eConfig, E2eResult, runE2e as RunE2e } from './e2e.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
  },
})

function count(name: string, text: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > 100) {
    console.error(`ab: --${name} must be an integer 1..100, not ${JSON.stringify(text)}`)
    process.exit(2)
  }
  return n
}

if (positionals.length < 2) {
  console.error('usage: node dist/bench/ab.js ROOT_A ROOT_B [ROOT_C ...] [--runs 3] [--rounds 3] [--seconds 3]')
  process.exit(2)
}
const runs = count('runs', values.runs)
const rounds = count('rounds', values.rounds)
const seconds = count('seconds', values.seconds)

const CONFIGS: readonly E2eConfig[] = [
  { name: 'C reader', receiver: 'tpacket' },
  { name: 'for await', receiver: 'portanoia' },
  { name: 'batches()', receiver: 'portanoia', sensor: { batches: true } },
]

interface Build {
  label: string
  root: string
  run: typeof RunE2e
  ns: Record<string, number[]>
}

const builds: Build[] = []
for (const [i, root] of positionals.entries()) {
  const file = resolve(root, 'dist/bench/e2e.js')
  if (!existsSync(file)) {
    console.error(`ab: ${file} does not exist: ${root} must be a checkout of portanoia built with \`npm run build\``)
    process.exit(2)
  }
  const mod = (await import(pathToFileURL(file).href)) as { runE2e: typeof RunE2e }
  builds.push({ label: String.fromCharCode(65 + i), root: resolve(root), run: mod.runE2e, ns: {} })
}
for (const b of builds) console.log(`${b.label}: ${b.root}`)

function figure(e: E2eResult, name: string): { line: string; ns: number } {
  const c = e.configs.find((x) => x.name === name)
  if (c === undefined || c.trials === 0) return { line: `${name} failed`, ns: Number.NaN }
  const ratio = c.vsBaseline === undefined ? '' : ` (${c.vsBaseline.cpuNsPerHit.median.toFixed(2)}×)`
  const split = c.receiver === 'portanoia' ? ` [JS ${c.threadNsPerHit.main.median.toFixed(0)}, capture ${c.threadNsPerHit.capture.median.toFixed(0)}]` : ''
  return {
    line: `${name} ${c.cpuNsPerHit.median.toFixed(0)}${ratio}${split} at ${(c.offeredPps.median / 1e6).toFixed(3)} Mpps, missing ${c.missing.median}`,
    ns: c.cpuNsPerHit.median,
  }
}

for (let r = 0; r < runs; r++) {
  for (const b of builds) {
    const e = await b.run({ rounds, seconds, ceilingRounds: 1, configs: CONFIGS })
    const parts = CONFIGS.map((c) => {
      const f = figure(e, c.name)
      ;(b.ns[c.name] ??= []).push(f.ns)
      return f.line
    })
    console.log(`${b.label} run ${r + 1}: ${parts.join(' | ')}`)
  }
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s[s.length >> 1]!
}
console.log('\nCPU ns a hit, median of runs:')
for (const b of builds) {
  console.log(`${b.label}: ${CONFIGS.map((c) => `${c.name} ${median(b.ns[c.name] ?? []).toFixed(0)}`).join(' | ')}`)
}
