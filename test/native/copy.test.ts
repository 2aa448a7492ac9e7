/**
 * The express lane's exactly-once rule (native/copy_matcher.h, wired as Capture wires it):
 * builds native/test/copy_stress.cc from source into a scratch folder under
 * AddressSanitizer + UBSan (no node-gyp, no addon, no root), runs it on several seeds, and
 * requires, for every key, as many reports as frames, with one copy of every twice-read
 * frame cancelled, whichever of the two rings was read first, across hundreds of lane
 * switches and with the V2 ring dropping copies. Then it builds the two broken wirings
 * (main-ring copies never tracked, express copies never tracked) and requires the same
 * program to catch both, so a green run means the checks can fail. A missing compiler
 * skips with a warning.
 */
import { execFile } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const source = join(root, 'native/test/copy_stress.cc')
const flags = ['-std=c++17', '-Wall', '-Wextra', '-Wshadow', '-Wconversion', '-Werror', '-O1', '-g', '-fno-omit-frame-pointer', '-fsanitize=address,undefined', '-fno-sanitize-recover=undefined']
const env = { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' }

interface RunResult {
  code: number | null
  output: string
  stdout: string
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const failure = err as (Error & { code?: unknown }) | null
      const code = failure === null ? 0 : typeof failure.code === 'number' ? failure.code : null
      resolvePromise({ code, output: `${stdout}${stderr}`, stdout: String(stdout) })
    })
  })
}

interface CopyReport {
  ok: boolean
  frames: number
  reported: number
  cancelled: number
  expressCopies: number
  expressDrops: number
  ringFirst: number
  switches: number
  wrongKeys: number
  extra: number
  missing: number
  maxPending: number
}

function report(r: RunResult): CopyReport {
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'))
  if (line === undefined) throw new Error(`copy_stress printed no report (exit ${String(r.code)}):\n${r.output}`)
  return JSON.parse(line) as CopyReport
}

describe('express lane copies: exactly one report per frame', () => {
  let dir = ''
  let cxx: string | null = null
  let bin = ''

  beforeAll(async () => {
    dir = await scratchDir('portanoia-copy-')
    const [gcc, clang] = await Promise.all([run('g++', ['--version'], 10_000), run('clang++', ['--version'], 10_000)])
    cxx = gcc.code === 0 ? 'g++' : clang.code === 0 ? 'clang++' : null
    if (cxx === null) {
      console.warn('\n*** SKIPPED: the copy stress test needs g++ or clang++ ***\n')
      return
    }
    bin = join(dir, 'copy_stress')
    const build = await run(cxx, [...flags, source, '-o', bin], 120_000)
    expect(build.code, build.output).toBe(0)
  })

  afterAll(async () => {
    if (dir !== '') await removeScratch(dir)
  })

  test('every key reported as often as it was on the wire, on several seeds', async (ctx) => {
    if (cxx === null) return ctx.skip()
    const seeds = [1, 2, 3, Date.now() % 1_000_000]
    const runs = await Promise.all(seeds.map((seed) => run(bin, ['200000', String(seed)], 60_000)))
    runs.forEach((r, i) => {
      expect(r.output, `seed ${seeds[i]}`).not.toMatch(/ERROR: AddressSanitizer|runtime error:/)
      expect(r.code, `seed ${seeds[i]}:\n${r.output}`).toBe(0)
      const rep = report(r)
      expect(rep).toMatchObject({ ok: true, wrongKeys: 0, extra: 0, missing: 0 })
      expect(rep.reported).toBe(rep.frames)
      expect(rep.cancelled).toBe(rep.expressCopies)
      // The run must have gone through every path, or the zeros above mean nothing.
      expect(rep.ringFirst, 'no main-ring copy was read before its express copy').toBeGreaterThan(100)
      expect(rep.expressDrops, 'the V2 ring never dropped').toBeGreaterThan(100)
      expect(rep.switches, 'the lane never switched').toBeGreaterThan(100)
      expect(rep.expressCopies).toBeGreaterThan(10_000)
      // Balances are forgotten: the table stays small.
      expect(rep.maxPending).toBeLessThan(2000)
    })
  })

  test('the checks catch a broken wiring', async (ctx) => {
    if (cxx === null) return ctx.skip()
    for (const [mutant, what] of [['1', 'main-ring copies never tracked'], ['2', 'express copies never tracked']] as const) {
      const r = await run(bin, ['200000', '5', mutant], 60_000)
      expect(r.code, `${what} went unnoticed:\n${r.output}`).toBe(1)
      const rep = report(r)
      expect(rep.ok).toBe(false)
      expect(rep.extra).toBeGreaterThan(0)
    }
  })
})
