/**
 * The library's per-hit JavaScript path on its own, without a kernel (issue 9): a
 * Sensor opened through the public open() over a fake addon whose drain() copies
 * prepared HitRecords into the drain buffer as the native side does (one memcpy per
 * batch), consumed as the throughput bench's receiver consumes them — a `for await`
 * loop, or `batches()`, reading `kind`, `src` and `dstPort`. A quick, unprivileged
 * companion to the throughput section for trying a change to decoding or iteration;
 * the end-to-end figures (capture thread and kernel included) are that section's.
 *
 *   node dist/bench/iterate.js [--hits 5000000] [--pool 4096] [--batch 1024] [--rounds 5]
 *
 * Prints ns of this process's CPU (user + system, GC included) per hit for each way,
 * median [min..max] over rounds, the ways alternating so drift hits all alike. Two of the
 * ways are V8's floor for the same loops, no Sensor and no records: `for await` over the
 * cheapest iterator (`next()` returns `Promise.resolve({ done: false, value })`, the value a
 * new object of three fields that the loop reads through getters, as it reads a hit's), and
 * the same objects handed over in arrays of `--batch` by an async generator, and one by one
 * by an async generator (the other shape an async iterable could have).
 */
import { parseArgs } from 'node:util'
import type { NativeBinding, NativeCapture, NativeCaptureOptions, NativeCaptureStats } from '../lib/binding.js'
import { HIT_FLAGS, HIT_RECORD_SIZE } from '../lib/decode.js'
import { open } from '../lib/sensor.js'
import { buildSynPool } from './traffic.js'

const { values } = parseArgs({
  options: {
    hits: { type: 'string', default: '5000000' },
    pool: { type: 'string', default: '4096' },
    batch: { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '5' },
  },
})
const total = Number(values.hits)
const pool = Number(values.pool)
// The sender's pool holds at most 100,000 distinct sources (bench/traffic.ts).
if (!Number.isInteger(pool) || pool < 1 || pool > 100_000) throw new Error(`iterate: --pool must be an integer 1..100000, not ${JSON.stringify(values.pool)}`)
const batch = Number(values.batch)
const rounds = Number(values.rounds)
const WORDS = HIT_RECORD_SIZE / 4

/**
 * The source address word (first octet in the low byte, as a record's words hold it) of each
 * frame of the throughput bench's SYN pool, in the order the sender sends them: the same
 * addresses, so the decoder's address cache sees what it sees end to end.
 */
function poolSources(count: number): Int32Array {
  const p = buildSynPool({ count, dst: '198.18.0.1', dstPort: 2222, dstMac: '02:52:00:00:00:01', srcMac: '02:52:00:00:00:02' })
  const out = new Int32Array(count)
  let at = 0
  for (let i = 0; i < count; i++) {
    out[i] = p.frames.readInt32LE(at + 14 + 12)
    at += p.lengths[i]!
  }
  return out
}

/** Records of SYNs from the sender's `pool` sources of 198.18.0.0/15, in its order. */
function records(count: number): Buffer {
  const sources = poolSources(pool)
  const b = Buffer.alloc(count * HIT_RECORD_SIZE)
  const w = new Int32Array(b.buffer, b.byteOffset, b.length / 4)
  const ns = BigInt(Date.now()) * 1_000_000n
  for (let i = 0; i < count; i++) {
    const q = i * WORDS
    w[q] = Number(ns & 0xffffffffn) | 0
    w[q + 1] = Number(ns >> 32n) | 0
    w[q + 4] = 0xffff0000 | 0
    w[q + 5] = sources[i % pool]!
    w[q + 8] = 0xffff0000 | 0
    w[q + 9] = 198 | (18 << 8) | (1 << 24)
    w[q + 10] = (1024 + (i % 60000)) | (2222 << 16)
    w[q + 11] = 2
    w[q + 12] = 4 | (6 << 8) | (1 << 16) | (2 << 24)
    w[q + 13] = 64
    w[q + 14] = HIT_FLAGS.ipv4 | HIT_FLAGS.srcMac | (60 << 16)
    w[q + 16] = 0x00000202
    w[q + 17] = 0x0101
  }
  return b
}

const STATS: NativeCaptureStats = {
  kernelPackets: 0, kernelDrops: 0, kernelFreezes: 0, frames: 0, hits: 0, ringDrops: 0,
  notTripwire: 0, malformed: 0, duplicates: 0, connects: 0, blocks: 0,
  expressHits: 0, expressCopies: 0, expressSwitches: 0, expressActive: 0, wakeups: 0,
}

/** A capture that always has `left` records ready, then ends. */
class Replay implements NativeCapture {
  static source = records(pool * 16)
  static left = 0
  #at = 0
  constructor(_options: NativeCaptureOptions) {}
  start(): void {}
  drain(buffer: Buffer): number {
    const src = Replay.source
    const n = Math.min(buffer.length / HIT_RECORD_SIZE, Replay.left, (src.length - this.#at) / HIT_RECORD_SIZE)
    if (n === 0) return 0
    src.copy(buffer, 0, this.#at, this.#at + n * HIT_RECORD_SIZE)
    this.#at = (this.#at + n * HIT_RECORD_SIZE) % src.length
    Replay.left -= n
    return n
  }
  arm(): boolean {
    return false
  }
  disarm(): void {}
  ended(): boolean {
    return Replay.left === 0
  }
  error(): null {
    return null
  }
  setFilter(): void {}
  addListener(): void {}
  removeListener(): void {}
  listenerPorts(): number[] {
    return []
  }
  stats(): NativeCaptureStats {
    return STATS
  }
  interfaceName(): string {
    return 'veth0'
  }
  ref(): void {}
  unref(): void {}
  close(): void {}
}
const binding = { Capture: Replay } as unknown as NativeBinding

/** The floors' item: three fields read through getters, like the hit fields the loops read. */
class Item {
  readonly #kind: string
  readonly #src: string
  readonly #dstPort: number
  constructor(kind: string, src: string, dstPort: number) {
    this.#kind = kind
    this.#src = src
    this.#dstPort = dstPort
  }
  get kind(): string {
    return this.#kind
  }
  get src(): string {
    return this.#src
  }
  get dstPort(): number {
    return this.#dstPort
  }
}

function trivialIterator(count: number): AsyncIterable<Item> {
  let i = 0
  const done: IteratorResult<Item, undefined> = { done: true, value: undefined }
  const it: AsyncIterator<Item, undefined> = {
    next: () => (i++ < count ? Promise.resolve({ done: false, value: new Item('syn', '198.18.0.2', 2222) }) : Promise.resolve(done)),
  }
  return { [Symbol.asyncIterator]: () => it }
}

async function* trivialBatches(count: number): AsyncGenerator<Item[], void, undefined> {
  for (let left = count; left > 0; left -= batch) {
    const n = Math.min(batch, left)
    const out = new Array<Item>(n)
    for (let i = 0; i < n; i++) out[i] = new Item('syn', '198.18.0.2', 2222)
    yield out
  }
}

async function* trivialGenerator(count: number): AsyncGenerator<Item, void, undefined> {
  for (let i = 0; i < count; i++) yield new Item('syn', '198.18.0.2', 2222)
}

type Floor = 'floor: for await' | 'floor: batches' | 'floor: generator'
/** V8's own cost of each way's loop for `count` items: ns of CPU an item. */
async function floor(way: Floor, count: number): Promise<number> {
  let syn = 0
  const cpu0 = process.cpuUsage()
  if (way === 'floor: for await' || way === 'floor: generator') {
    const items = way === 'floor: for await' ? trivialIterator(count) : trivialGenerator(count)
    for await (const hit of items) if (hit.kind === 'syn' && hit.dstPort === 2222 && hit.src !== '') syn++
  } else {
    for await (const hits of trivialBatches(count)) for (const hit of hits) if (hit.kind === 'syn' && hit.dstPort === 2222 && hit.src !== '') syn++
  }
  const cpu = process.cpuUsage(cpu0)
  if (syn !== count) throw new Error(`${way}: ${syn} of ${count} items read`)
  return ((cpu.user + cpu.system) * 1000) / count
}

type Way = 'for await' | 'batches()' | Floor
async function once(way: Way, count: number): Promise<number> {
  if (way !== 'for await' && way !== 'batches()') return floor(way, count)
  Replay.left = count
  const sensor = await open({ ports: ['2222/tcp'], listen: false, batch, binding })
  let syn = 0
  const cpu0 = process.cpuUsage()
  if (way === 'for await') {
    for await (const hit of sensor) if (hit.kind === 'syn' && hit.dstPort === 2222 && hit.src !== '') syn++
  } else {
    for await (const hits of sensor.batches()) for (const hit of hits) if (hit.kind === 'syn' && hit.dstPort === 2222 && hit.src !== '') syn++
  }
  const cpu = process.cpuUsage(cpu0)
  await sensor.close()
  if (syn !== count) throw new Error(`${way}: ${syn} of ${count} hits read`)
  return ((cpu.user + cpu.system) * 1000) / count
}

const ways: Way[] = ['for await', 'batches()', 'floor: for await', 'floor: batches', 'floor: generator']
for (const way of ways) await once(way, Math.min(total, 500_000))
const ns: Record<Way, number[]> = { 'for await': [], 'batches()': [], 'floor: for await': [], 'floor: batches': [], 'floor: generator': [] }
for (let r = 0; r < rounds; r++) for (const way of ways) ns[way].push(await once(way, total))
for (const way of ways) {
  const s = [...ns[way]].sort((a, b) => a - b)
  const f = (x: number): string => x.toFixed(0)
  console.log(`${way.padEnd(16)} ${f(s[s.length >> 1]!)} [${f(s[0]!)}..${f(s[s.length - 1]!)}] ns/hit  (${total} hits × ${rounds} rounds, pool ${pool}, batch ${batch})`)
}
