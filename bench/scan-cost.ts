/**
 * What scan tracking and decoy grouping (lib/daemon/scans.ts, lib/attribution/decoy.ts)
 * add to the daemon's per-hit cost, on the JS thread, without a network:
 *
 *   node dist/bench/scan-cost.js [--hits 1000000] [--rounds 5]
 *
 * Records are built as the capture thread writes them and decoded in batches of 1,024 by
 * the sensor's own HitDecoder. Per hit, the baseline reads what the daemon's loop reads
 * anyway (src, kind, dstPort, attribution, time); the measured case does the same and then
 * ScanTracker.observe(hit), with a sweep every 250k hits (the daemon's timer: every
 * 250 ms at 1M hits/s). Three traffic mixes: one SYN from each of 100,000 forged sources
 * (a flood: the table churns), one nmap-like scanner over 60,000 ports, and nmap -D
 * with 10 decoys (every probe a coincidence: grouping's worst case). Reported: ns/hit
 * of both, median of rounds (interleaved), and the difference. Single-threaded.
 */
import { parseArgs } from 'node:util'
import { HIT_FLAGS, HIT_RECORD_LAYOUT as L, HIT_RECORD_SIZE, HitDecoder } from '../lib/decode.js'
import { ScanTracker } from '../lib/daemon/scans.js'
import type { Hit } from '../lib/types.js'

const { values } = parseArgs({ options: { hits: { type: 'string', default: '1000000' }, rounds: { type: 'string', default: '5' } } })
const N = Number(values.hits)
const ROUNDS = Number(values.rounds)
const BATCH = 1024

interface Spec {
  src: number
  dstPort: number
  ipId: number
  ttl: number
}

/** `n` records, IPv4 SYNs with nmap's window and MSS, sources as 32-bit numbers. */
function records(n: number, spec: (i: number) => Spec): Int32Array {
  const buf = Buffer.alloc(n * HIT_RECORD_SIZE)
  const t0 = BigInt(Date.now()) * 1_000_000n
  for (let i = 0; i < n; i++) {
    const o = i * HIT_RECORD_SIZE
    const s = spec(i)
    buf.writeBigUInt64LE(t0 + BigInt(i) * 1000n, o + L.tsNs)
    buf.writeUInt16BE(0xffff, o + L.src + 10)
    buf.writeUInt32BE(s.src >>> 0, o + L.src + 12)
    buf.writeUInt16BE(0xffff, o + L.dst + 10)
    buf.writeUInt32BE(0xc6120001, o + L.dst + 12)
    buf.writeUInt16LE(46997, o + L.srcPort)
    buf.writeUInt16LE(s.dstPort, o + L.dstPort)
    buf.writeUInt32LE(2, o + L.ifindex)
    buf[o + L.family] = 4
    buf[o + L.proto] = 6
    buf[o + L.kind] = 1
    buf[o + L.tcpFlags] = 0x02
    buf[o + L.ttl] = s.ttl
    buf.writeUInt16LE(HIT_FLAGS.ipv4, o + L.flags)
    buf.writeUInt32LE(s.ipId, o + L.ipId)
    buf.writeUInt16LE(1024, o + L.tcpWindow)
    buf.writeUInt16LE(1460, o + L.tcpMss)
    buf[o + L.tcpOptCount] = 1
    buf[o + L.tcpOpts] = 2
  }
  return new Int32Array(buf.buffer, buf.byteOffset, buf.length / 4)
}

const mixes: Record<string, Int32Array> = {
  'flood: 100,000 forged sources, one SYN each': records(N, (i) => ({ src: 0xcb000000 + (i % 100_000), dstPort: 2222, ipId: i & 0xffff, ttl: 40 + (i % 20) })),
  'one scanner, 60,000 ports': records(N, (i) => ({ src: 0xc6120002, dstPort: 1 + (i % 60_000), ipId: i & 0xffff, ttl: 47 })),
  'nmap -D with 10 decoys': records(N, (i) => ({ src: 0x0a000000 + (i % 11), dstPort: 1 + (Math.floor(i / 11) % 60_000), ipId: Math.floor(i / 11) & 0xffff, ttl: 37 + (i % 23) })),
}

let sink = 0
function pass(words: Int32Array, tracker: ScanTracker | null): number {
  const decoder = new HitDecoder(() => 'eth0')
  const out: Hit[] = []
  const start = process.hrtime.bigint()
  for (let first = 0; first < N; first += BATCH) {
    out.length = 0
    decoder.decode(words, first, Math.min(BATCH, N - first), out)
    for (const h of out) {
      sink += h.src.length + h.dstPort + h.kind.length + h.attribution.length + h.time
      tracker?.observe(h)
    }
    if (tracker !== null && (first / BATCH) % 244 === 243) tracker.sweep(Date.now())
  }
  return Number(process.hrtime.bigint() - start) / N
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(`scan-cost: ${N} hits a pass, ${ROUNDS} rounds, node ${process.version}`)
console.log('| traffic | baseline ns/hit | with ScanTracker.observe ns/hit | added ns/hit |')
console.log('| --- | --- | --- | --- |')
for (const [name, words] of Object.entries(mixes)) {
  const base: number[] = []
  const withScans: number[] = []
  pass(words, null)
  pass(words, new ScanTracker())
  for (let r = 0; r < ROUNDS; r++) {
    base.push(pass(words, null))
    withScans.push(pass(words, new ScanTracker()))
  }
  const b = median(base)
  const w = median(withScans)
  console.log(`| ${name} | ${b.toFixed(0)} | ${w.toFixed(0)} | ${(w - b).toFixed(0)} |`)
}
if (sink === 42) console.log('')
