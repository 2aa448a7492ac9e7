/**
 * Micro benchmarks: the per-item costs on the hit path and the one-off cost of the
 * kernel filter. Two kinds, reported side by side:
 *   - tinybench, in this process: parse+classify through the addon's parseFrame test
 *     entry (N-API call, argument checks and a Buffer copy included: an upper bound,
 *     not what the capture thread pays), decodeHit per hit, compileFilter for 1, 100
 *     and 10,000 ports;
 *   - native, compiled at bench time from bench/native/micro_bench.cc against the
 *     addon's own packet_parse.cc and hit_ring.h: ParseNetwork / ParseEthernet per
 *     frame, and HitRing push+drain per record on one thread and across two cores.
 * Every figure is median [min..max] over rounds; within a round the tasks run one
 * after another (interleaved across rounds). Frames are the end-to-end benchmark's SYN
 * pool (bench/traffic.ts). Runs on the bench's main thread plus the native child.
 */
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { Bench } from 'tinybench'
import { loadBinding, PACKAGE_ROOT } from '../lib/binding.js'
import { compileFilter } from '../lib/bpf/filter.js'
import { decodeHit, HIT_RECORD_SIZE } from '../lib/decode.js'
import { removeScratch, scratchDir } from '../lib/lab/scratch.js'
import type { PortRange } from '../lib/types.js'
import { summarize, type Summary } from './stats.js'
import { buildSynPool, xorshift32, type FramePool } from './traffic.js'

const run = promisify(execFile)

export interface MicroOptions {
  quick: boolean
  log?: (line: string) => void
}

export interface MicroFigure {
  name: string
  unit: 'ns/frame' | 'ns/record' | 'ns/hit' | 'ms/program'
  value: Summary
  note?: string
}

export interface MicroResult {
  rounds: number
  figures: MicroFigure[]
  /** compileFilter details per port count: instructions and whether the set is exact. */
  filters: Array<{ ports: number; instructions: number; exact: boolean }>
  /** Why the native part could not run, when it could not. */
  nativeError?: string
}

/** `count` distinct, non-adjacent ports (so none merge into ranges), split over TCP and UDP. */
export function scatteredPorts(count: number, seed = 7): PortRange[] {
  const next = xorshift32(seed)
  const taken = new Set<number>()
  const out: PortRange[] = []
  while (out.length < count) {
    // Even numbers only: no two chosen ports are adjacent, so each is its own range.
    const port = 2 + 2 * (next() % 32766)
    const proto = out.length % 2 === 0 ? 'tcp' : 'udp'
    const key = port * 2 + (proto === 'tcp' ? 0 : 1)
    if (taken.has(key)) continue
    taken.add(key)
    out.push({ proto, from: port, to: port })
  }
  return out
}

function poolForMicro(): FramePool {
  return buildSynPool({ count: 1024, dst: '198.18.0.1', dstPort: 2222, dstMac: '02:52:00:00:00:01', srcMac: '02:52:00:00:00:02' })
}

/** The pool's frames as individual Buffers (what parseFrame takes). */
function splitFrames(pool: FramePool): Buffer[] {
  const out: Buffer[] = []
  let at = 0
  for (const len of pool.lengths) {
    out.push(pool.frames.subarray(at, at + len))
    at += len
  }
  return out
}

async function runNative(pool: FramePool, repeats: number): Promise<Record<string, number[]>> {
  const dir = await scratchDir('pnperf-micro-')
  try {
    const exe = join(dir, 'micro_bench')
    await run(
      'g++',
      ['-O2', '-std=c++17', '-pthread', '-o', exe, join(PACKAGE_ROOT, 'bench', 'native', 'micro_bench.cc'), join(PACKAGE_ROOT, 'native', 'packet_parse.cc')],
      { timeout: 120_000 },
    )
    const file = join(dir, 'frames.bin')
    const parts: Buffer[] = []
    for (const frame of splitFrames(pool)) {
      const len = Buffer.alloc(4)
      len.writeUInt32LE(frame.length)
      parts.push(len, frame)
    }
    await writeFile(file, Buffer.concat(parts))
    const { stdout } = await run(exe, [file, String(repeats)], { timeout: 300_000 })
    return JSON.parse(stdout) as Record<string, number[]>
  } finally {
    await removeScratch(dir)
  }
}

export async function runMicro(options: MicroOptions): Promise<MicroResult> {
  const log = options.log ?? (() => {})
  const rounds = options.quick ? 3 : 5
  const binding = loadBinding()
  const pool = poolForMicro()
  const frames = splitFrames(pool)

  // Records for the decoder: the addon's own output for the pool's frames, one batch.
  const records = Buffer.alloc(frames.length * HIT_RECORD_SIZE)
  frames.forEach((frame, i) => {
    const { result, record } = binding.parseFrame(frame, { ifindex: 2 })
    if (result !== 0) throw new Error(`parseFrame did not classify frame ${i} as a hit (result ${result})`)
    record.copy(records, i * HIT_RECORD_SIZE)
  })
  const ifname = (): string => 'pns0'

  const portSets = [1, 100, 10_000].map((n) => ({ n, ranges: n === 1 ? [{ proto: 'tcp' as const, from: 2222, to: 2222 }] : scatteredPorts(n) }))
  const filters = portSets.map(({ n, ranges }) => {
    const f = compileFilter(ranges)
    return { ports: n, instructions: f.instructions, exact: f.exact }
  })

  // Items per tinybench iteration, so one iteration is far above the timer's resolution.
  const PARSE_PER_ITER = 256
  const perItem: Record<string, number> = { 'parseFrame (N-API)': PARSE_PER_ITER, decodeHit: frames.length }
  let sink = 0
  const series: Record<string, number[]> = {}
  for (let r = 0; r < rounds; r++) {
    // `iterations` is the minimum per task (tinybench runs until both budgets are spent):
    // low, so the 10,000-port compile (~100 ms each) does not dominate the run.
    const bench = new Bench({ time: options.quick ? 100 : 300, iterations: options.quick ? 5 : 10, warmupTime: options.quick ? 20 : 100, warmupIterations: 2 })
    let cursor = 0
    bench.add('parseFrame (N-API)', () => {
      for (let i = 0; i < PARSE_PER_ITER; i++) {
        sink += binding.parseFrame(frames[cursor]!).result
        cursor = (cursor + 1) & (frames.length - 1)
      }
    })
    bench.add('decodeHit', () => {
      for (let i = 0; i < frames.length; i++) sink += decodeHit(records, i * HIT_RECORD_SIZE, ifname).srcPort
    })
    for (const { n, ranges } of portSets) {
      bench.add(`compileFilter ${n} port${n === 1 ? '' : 's'}`, () => {
        sink += compileFilter(ranges).instructions
      })
    }
    await bench.run()
    for (const task of bench.tasks) {
      const result = task.result
      if (result.state !== 'completed') throw new Error(`micro: ${task.name} ${result.state}${'error' in result ? `: ${String(result.error)}` : ''}`)
      // latency is in ms per iteration.
      const per = perItem[task.name]
      const value = per === undefined ? result.latency.mean : (result.latency.mean * 1e6) / per
      ;(series[task.name] ??= []).push(value)
    }
    log(`micro: tinybench round ${r + 1}/${rounds} done`)
  }
  if (sink === -1) log('') // keeps `sink` alive for the optimiser

  const figures: MicroFigure[] = [
    {
      name: 'parse+classify via parseFrame (N-API)',
      unit: 'ns/frame',
      value: summarize(series['parseFrame (N-API)'] ?? []),
      note: 'includes the N-API call, option checks and a 96-byte Buffer copy per call',
    },
    { name: 'decodeHit', unit: 'ns/hit', value: summarize(series.decodeHit ?? []), note: 'one Hit from a 96-byte record, test entry (copies the record; the Sensor decodes whole batches)' },
  ]
  for (const { n } of portSets) {
    const name = `compileFilter ${n} port${n === 1 ? '' : 's'}`
    const f = filters.find((x) => x.ports === n)!
    figures.push({
      name,
      unit: 'ms/program',
      value: summarize(series[name] ?? []),
      note: `${f.instructions} instructions, ${f.exact ? 'exact' : 'superset (gaps merged to fit 4096)'}`,
    })
  }

  const result: MicroResult = { rounds, figures, filters }
  try {
    const native = await runNative(pool, rounds)
    figures.unshift(
      { name: 'ParseNetwork (native, capture-thread path)', unit: 'ns/frame', value: summarize(native.parseNetworkNs ?? []) },
      { name: 'ParseEthernet (native)', unit: 'ns/frame', value: summarize(native.parseEthernetNs ?? []) },
      {
        name: 'HitRing push+drain, one thread',
        unit: 'ns/record',
        value: summarize(native.ringSameThreadNs ?? []),
        note: 'push batches of 64, drain 1024 into a buffer',
      },
    )
    if ((native.ringCrossThreadNs ?? []).length > 0) {
      figures.splice(3, 0, {
        name: 'HitRing push+drain, two cores',
        unit: 'ns/record',
        value: summarize(native.ringCrossThreadNs ?? []),
        note: 'producer on core 1, consumer on core 0, spinning; cache-line transfers included',
      })
    }
    log('micro: native done')
  } catch (err) {
    result.nativeError = `native micro benchmarks could not run (they need g++): ${(err as Error).message}`
  }
  return result
}

// Runnable on its own: node dist/bench/micro.bench.js [--quick]
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runMicro({ quick: process.argv.includes('--quick'), log: (l) => console.error(l) })
  console.log(JSON.stringify(r, null, 2))
}
