/**
 * Fuzz layer for native/packet_parse.cc, the code that reads attacker-controlled bytes on
 * the capture thread. Builds two programs into a scratch folder (lib/lab/scratch.ts: not
 * /tmp, which may be noexec), straight from the sources (no
 * node-gyp, no addon): parse_selftest (ASan + UBSan, clang++ or else g++), which runs the
 * known-answer tests and a seeded mutation loop and writes the seed corpus; and the
 * libFuzzer target (clang++ only), which then runs for a bounded time from that corpus.
 * Missing toolchains skip with a warning instead of passing quietly. On failure the
 * folder is kept: it holds the crashing input libFuzzer wrote.
 */

import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const sources = ['native/packet_parse.cc', 'native/fuzz/parse_fuzz.cc'].map((p) => join(root, p))
const selftestSource = join(root, 'native/fuzz/parse_selftest.cc')

// The addon's warning set, made fatal: the parser must build clean under both compilers.
const warnings = ['-std=c++17', '-Wall', '-Wextra', '-Wshadow', '-Wconversion', '-Werror']
const sanitize = ['-g', '-O1', '-fno-omit-frame-pointer', '-fno-sanitize-recover=undefined']
const sanitizerEnv = {
  ...process.env,
  ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
}

const fuzzSeconds = 20
const selftestIterations = 300_000

interface RunResult {
  code: number | null
  signal: string | null
  output: string
}

// execFile without a shell; resolves on failure too, so the output can be asserted on.
function run(cmd: string, args: string[], timeoutMs: number, cwd?: string): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    execFile(
      cmd,
      args,
      { cwd, env: sanitizerEnv, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const failure = err as (NodeJS.ErrnoException & { code?: unknown; signal?: string }) | null
        let code: number | null = 0
        if (failure) code = typeof failure.code === 'number' ? failure.code : null
        resolvePromise({ code, signal: failure?.signal ?? null, output: `${stdout}${stderr}` })
      },
    )
  })
}

async function have(cmd: string): Promise<boolean> {
  const result = await run(cmd, ['--version'], 10_000)
  return result.code === 0
}

function sanitizerReports(output: string): string[] {
  const markers = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:', 'invariant violated']
  return markers.filter((marker) => output.includes(marker))
}

describe('packet_parse under sanitizers', () => {
  let dir = ''
  let failed = false
  let selftestCompiler: string | null = null
  let fuzzerReason: string | null = null
  let selftestBuild: Promise<RunResult> | null = null
  let fuzzerBuild: Promise<RunResult> | null = null

  beforeAll(async () => {
    // Built programs run from a scratch folder beside the build, not from a maybe-noexec /tmp.
    dir = await scratchDir('portanoia-fuzz-')
    await mkdir(join(dir, 'seeds'))
    await mkdir(join(dir, 'corpus'))

    const [clang, gcc] = await Promise.all([have('clang++'), have('g++')])
    selftestCompiler = clang ? 'clang++' : gcc ? 'g++' : null
    if (selftestCompiler) {
      selftestBuild = run(
        selftestCompiler,
        [
          ...warnings,
          ...sanitize,
          '-fsanitize=address,undefined',
          selftestSource,
          ...sources,
          '-o',
          join(dir, 'parse_selftest'),
        ],
        120_000,
      )
    }

    if (!clang) {
      fuzzerReason = 'clang++ not found'
      return
    }
    // Probe the runtime with an empty target first, so a missing libclang_rt.fuzzer skips
    // while a compile error in our own target still fails.
    const probe = join(dir, 'probe.cc')
    const probeSource = 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n'
    await writeFile(probe, probeSource)
    const probeArgs = ['-fsanitize=fuzzer,address,undefined', probe, '-o', join(dir, 'probe')]
    const probeBuild = await run('clang++', probeArgs, 60_000)
    if (probeBuild.code !== 0) {
      const lastLine = probeBuild.output.trim().split('\n').pop()
      fuzzerReason = `clang++ cannot link -fsanitize=fuzzer (libFuzzer runtime missing?): ${lastLine}`
      return
    }
    fuzzerBuild = run(
      'clang++',
      [...warnings, ...sanitize, '-fsanitize=fuzzer,address,undefined', ...sources, '-o', join(dir, 'parse_fuzz')],
      120_000,
    )
  })

  afterAll(async () => {
    if (!dir) return
    if (failed) {
      console.warn(`fuzz.test: keeping ${dir} for the failing input and binaries`)
      return
    }
    await removeScratch(dir)
  })

  test('self-test: known answers and a seeded mutation loop', async (ctx) => {
    if (!selftestBuild) {
      console.warn('\n*** fuzz.test: SKIPPING the parser self-test: no clang++ or g++ installed ***\n')
      ctx.skip()
      return
    }
    failed = true
    const build = await selftestBuild
    expect(build.code, `${selftestCompiler} failed:\n${build.output}`).toBe(0)

    const result = await run(
      join(dir, 'parse_selftest'),
      [String(selftestIterations), '1', '--corpus', join(dir, 'seeds')],
      60_000,
    )
    expect(sanitizerReports(result.output), result.output).toEqual([])
    expect(result.code, result.output).toBe(0)
    expect(result.output).toContain('known-answer tests passed')
    expect(result.output).toContain(`${selftestIterations} mutations`)
    failed = false
  }, 90_000)

  test('libFuzzer: bounded run from the generated corpus', async (ctx) => {
    if (!fuzzerBuild) {
      console.warn(`\n*** fuzz.test: SKIPPING the libFuzzer run: ${fuzzerReason ?? 'not built'} ***\n`)
      ctx.skip()
      return
    }
    failed = true
    const build = await fuzzerBuild
    expect(build.code, `clang++ -fsanitize=fuzzer failed:\n${build.output}`).toBe(0)

    // The self-test writes the seeds; without them the fuzzer still runs, from nothing.
    const result = await run(
      join(dir, 'parse_fuzz'),
      [
        join(dir, 'corpus'),
        join(dir, 'seeds'),
        `-max_total_time=${fuzzSeconds}`,
        '-rss_limit_mb=2048',
        '-max_len=1024',
        '-timeout=10',
        '-print_final_stats=1',
        `-artifact_prefix=${dir}/`,
      ],
      (fuzzSeconds + 25) * 1000,
      dir,
    )
    const execs = /stat::number_of_executed_units:\s*(\d+)/.exec(result.output)?.[1]
    const rate = /stat::average_exec_per_sec:\s*(\d+)/.exec(result.output)?.[1]
    console.log(`fuzz.test: libFuzzer ran ${execs ?? '?'} inputs in ${fuzzSeconds} s (${rate ?? '?'} exec/s)`)

    expect(sanitizerReports(result.output), result.output.slice(-8000)).toEqual([])
    expect(result.signal, result.output.slice(-8000)).toBeNull()
    expect(result.code, result.output.slice(-8000)).toBe(0)
    expect(Number(execs)).toBeGreaterThan(0)
    failed = false
  }, (fuzzSeconds + 40) * 1000)
})
