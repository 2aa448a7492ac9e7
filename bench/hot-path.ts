/**
 * The daemon's per-hit JavaScript path on its own, without a kernel (issue 9): records
 * built in memory are decoded (lib/decode.ts), attributed (the daemon's
 * AttributionPipeline over a fake of the kernel's link facts: every 198.18.0.0/15
 * source has no route back) and decided (PolicyEngine with `--block all`, the daemon's
 * options), as the daemon's capture loop does. A quick, unprivileged companion to
 * bench/daemon-cost.ts for trying a change to the hot path; the end-to-end figure is
 * that bench's.
 *
 *   node dist/bench/hot-path.js [--case flood|scanner] [--hits 3000000] [--pool 100000] [--pps 500000] [--no-scans]
 *
 * The clock is simulated at `--pps`, so windows, budgets and breakers behave as under
 * that rate. Prints ns of this process's CPU (user + system, GC included) per hit.
 */
import { parseArgs } from 'node:util'
import { AttributionPipeline } from '../lib/daemon/attribution.js'
import { ATTRIBUTE_HITS, HIT_FLAGS, HIT_RECORD_SIZE, HitDecoder } from '../lib/decode.js'
import type { NativeBinding, NativeLink, NativeLinkFacts, NativeNeighbour, NativeProbeAnswer, NativeRoute } from '../lib/binding.js'
import { RTN } from '../lib/binding.js'
import { ScanTracker } from '../lib/daemon/scans.js'
import { PolicyEngine } from '../lib/policy/engine.js'
import type { Sensor } from '../lib/sensor.js'
import type { Hit } from '../lib/types.js'

const { values } = parseArgs({
  options: {
    case: { type: 'string', default: 'flood' },
    hits: { type: 'string', default: '3000000' },
    pool: { type: 'string', default: '100000' },
    pps: { type: 'string', default: '' },
    'no-scans': { type: 'boolean', default: false },
  },
})
const scanner = values.case === 'scanner'
const total = Number(values.hits)
const pool = scanner ? 1 : Number(values.pool)
const pps = values.pps !== '' ? Number(values.pps) : scanner ? 10_000 : 500_000

class NoRouteBack implements NativeLinkFacts {
  route(address: string): NativeRoute {
    return address.startsWith('198.18.') || address.startsWith('198.19.') ? { type: RTN.unreachable, oif: 0, table: 0 } : { type: RTN.unicast, oif: 2, table: 254 }
  }
  neighbour(): NativeNeighbour | null {
    return null
  }
  links(): NativeLink[] {
    return [{ ifindex: 2, name: 'veth0', type: 1, flags: 0x1043, master: 0, link: 0, kind: 'veth', mac: '02:00:00:00:00:02' }]
  }
  probe(): void {}
  answers(): NativeProbeAnswer[] {
    return []
  }
  close(): void {}
}

const WORDS = HIT_RECORD_SIZE / 4
const BATCH = 512
let clock = 1_800_000_000_000
const now = (): number => clock
const decoder = new HitDecoder(() => 'veth0')
const sensor = { [ATTRIBUTE_HITS]: (fn: ((hit: Hit) => never) | null) => decoder.attribute(fn) } as unknown as Sensor
const engine = new PolicyEngine({ config: { block: 'all' }, now, liveGuard: () => null, isLocal: () => true, vetBlocks: true })
const pipeline = new AttributionPipeline({
  sensor,
  engine,
  live: null,
  now,
  binding: { LinkFacts: NoRouteBack } as unknown as NativeBinding,
  emit: () => {},
  handle: () => {},
  log: () => {},
})
// The daemon's wiring: its clock is the capture's, decoy members' names go through the attributor.
const scans = values['no-scans'] ? null : new ScanTracker({ now, decoy: { mark: (src, names, ms) => pipeline.attributor.mark(src, names, ms) } })
if (scans !== null) pipeline.attributor.onSettled((src, answer) => scans.settled(src, answer.attribution))

// Sources: random hosts of 198.18.0.0/15 (scanner: the one peer 198.18.0.2, connecting first).
let seed = 0x504e5046
const rnd = (): number => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return seed >>> 0
}
const srcWords = new Int32Array(pool)
for (let i = 0; i < pool; i++) {
  const host = scanner ? 2 : (rnd() & 0x1ffff) | 1
  srcWords[i] = 198 | ((18 + (host >>> 16)) << 8) | (((host >>> 8) & 0xff) << 16) | ((host & 0xff) << 24)
}
const records = new Int32Array(BATCH * WORDS)
function fill(first: number): void {
  // Capture times in ns as two words: one BigInt per batch, not per record (the bench's
  // own cost is inside the figure it prints).
  const base = BigInt(Math.round(clock * 1e6))
  const baseLo = Number(base & 0xffffffffn)
  const baseHi = Number(base >> 32n)
  for (let i = 0; i < BATCH; i++) {
    const q = i * WORDS
    const n = first + i
    const lo = baseLo + Math.round((i * 1e9) / pps)
    records[q] = lo | 0
    records[q + 1] = (baseHi + (lo >= 2 ** 32 ? 1 : 0)) | 0
    records[q + 2] = 0
    records[q + 3] = 0
    records[q + 4] = 0xffff0000 | 0
    records[q + 5] = srcWords[n % pool]!
    records[q + 9] = 198 | (18 << 8) | (1 << 24)
    records[q + 10] = (1024 + (n % 60000)) | (2222 << 16)
    records[q + 11] = 2
    const kind = scanner && n < 8 ? 2 : 1
    records[q + 12] = 4 | (6 << 8) | (kind << 16) | (2 << 24)
    records[q + 13] = scanner && n < 8 ? 0 : 64
    records[q + 14] = HIT_FLAGS.ipv4 | HIT_FLAGS.srcMac | (scanner && n < 8 ? HIT_FLAGS.verified : 0) | (60 << 16)
    records[q + 16] = 0x00000202
    records[q + 17] = 0x0101
  }
}

let decisions = 0
const hits: Hit[] = []
function run(count: number): void {
  for (let done = 0; done < count; done += BATCH) {
    fill(done)
    hits.length = 0
    decoder.decode(records, 0, BATCH, hits)
    for (const hit of hits) {
      const ds = engine.observe(hit)
      pipeline.observe(hit)
      scans?.observe(hit)
      decisions += ds.length
      clock += 1000 / pps
    }
  }
}
run(Math.min(total, 200_000))
const cpu0 = process.cpuUsage()
const t0 = process.hrtime.bigint()
run(total)
const cpu = process.cpuUsage(cpu0)
const wall = Number(process.hrtime.bigint() - t0) / 1e9
const ns = ((cpu.user + cpu.system) * 1000) / total
const stats = engine.stats()
console.log(JSON.stringify({ case: values.case, hits: total, pool, pps, nsPerHit: Math.round(ns), wallSeconds: +wall.toFixed(2), rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20), decisions, policy: { trackedSources: stats.trackedSources, evictions: stats.evictions, decisions: Object.fromEntries(Object.entries(stats.decisions).filter(([, v]) => v > 0)), suppressedHits: stats.suppressedHits, breaker: stats.breaker, reportBreaker: stats.reportBreaker }, attribution: pipeline.stats(), scans: scans?.stats() ?? null }))
