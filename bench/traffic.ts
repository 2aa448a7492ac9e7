/**
 * Benchmark traffic: a pool of pre-built SYN frames to one tripwire, each from a
 * distinct pseudo-random source in 198.18.0.0/15 (outside the link's own
 * 198.18.0.0/24, so no source is ever an address of either namespace), with correct
 * IPv4 and TCP checksums, packed into one buffer plus a lengths array: the shape the
 * addon's Sender takes. Built with lib/lab/frames.ts, so the bytes on the wire are
 * exactly those the tests use. Pure and deterministic for a given seed, so every
 * configuration in a run (and every run) offers the same pool.
 */
import { buildFrame, SYN } from '../lib/lab/frames.js'

export interface FramePool {
  /** The frames back to back. */
  frames: Buffer
  /** Length of each frame, in order. */
  lengths: Uint32Array
  /** The first frame alone, for micro benchmarks. */
  first: Buffer
}

export interface SynPoolOptions {
  count: number
  dst: string
  dstPort: number
  dstMac: string
  srcMac: string
  seed?: number
  /** Every frame from this one source (a scanner), each from its own source port; default: distinct sources. */
  src?: string
}

/** xorshift32: a seeded generator, so pools are reproducible (Math.random is not). */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

/** `count` SYN frames from distinct sources in 198.18.1.0–198.19.255.254 (or all from `src`). */
export function buildSynPool(options: SynPoolOptions): FramePool {
  const { count } = options
  // 198.18.0.0/15 minus the link's /24 and the .0/.255 host parts leaves ~129,000.
  if (!Number.isInteger(count) || count < 1 || count > 100_000) throw new RangeError('count must be 1..100000')
  const next = xorshift32(options.seed ?? 0x504e5046)
  const seen = new Set<number>()
  const parts: Uint8Array[] = []
  const lengths = new Uint32Array(count)
  let bytes = 0
  while (parts.length < count) {
    // 17 random bits: the offset inside 198.18.0.0/15.
    const host = next() & 0x1ffff
    const c = host >> 8
    const d = host & 0xff
    if (options.src === undefined && (c === 0 || d === 0 || d === 255 || seen.has(host))) continue
    seen.add(host)
    const src = options.src ?? `198.${18 + (c >> 8)}.${c & 0xff}.${d}`
    const frame = buildFrame({
      src,
      dst: options.dst,
      proto: 'tcp',
      srcPort: 1024 + (next() % 64000),
      dstPort: options.dstPort,
      tcpFlags: SYN,
      seq: next(),
      ipId: next() & 0xffff,
      srcMac: options.srcMac,
      dstMac: options.dstMac,
    })
    lengths[parts.length] = frame.length
    parts.push(frame)
    bytes += frame.length
  }
  const frames = Buffer.alloc(bytes)
  let at = 0
  for (const p of parts) {
    frames.set(p, at)
    at += p.length
  }
  return { frames, lengths, first: Buffer.from(parts[0]!) }
}
