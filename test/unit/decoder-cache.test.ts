/**
 * The decoder's address-text cache and its batch hand-out (lib/decode.ts), on records
 * written as the capture thread writes them: whatever the cache keeps or evicts, every
 * hit's `src` is its own address, and takeBatch() hands out exactly the loaded hits in
 * order. Pure TS, no addon.
 */
import { describe, expect, test } from 'vitest'
import { HitDecoder } from '../../lib/decode.js'
import type { Hit } from '../../lib/types.js'
import { hitRecord } from '../helpers/fake-binding.js'

/** `n` distinct IPv4 sources, drawn from 198.18.0.0/15 with a fixed seed. */
function sources(n: number): string[] {
  const seen = new Set<number>()
  let x = 0x2545f491
  while (seen.size < n) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    seen.add((x >>> 0) & 0x1ffff)
  }
  return [...seen].map((h) => `198.${18 + (h >>> 16)}.${(h >>> 8) & 0xff}.${h & 0xff}`)
}

function words(addresses: readonly string[]): Int32Array {
  const buf = Buffer.concat(addresses.map((src, i) => hitRecord({ src, dstPort: 2222, srcPort: 1024 + (i % 60000), kind: 'syn' })))
  return new Int32Array(buf.buffer, buf.byteOffset, buf.length / 4)
}

describe('HitDecoder address text', () => {
  test('every hit names its own source while the cache evicts (20,000 sources, three laps)', () => {
    // Far more sources than the cache holds per set: sets overflow and evict on every lap.
    const addrs = sources(20_000)
    const w = words(addrs)
    const decoder = new HitDecoder(() => 'veth0')
    for (let lap = 0; lap < 3; lap++) {
      decoder.load(w, 0, addrs.length)
      const wrong: string[] = []
      for (let i = 0; i < addrs.length; i++) {
        const src = decoder.take().src
        if (src !== addrs[i]) wrong.push(`${i}: ${src} != ${addrs[i]}`)
      }
      expect(wrong.slice(0, 5)).toEqual([])
    }
  })
})

describe('HitDecoder.takeBatch', () => {
  test('hands out exactly the loaded hits, in order, as a new array each time', () => {
    const addrs = sources(1500)
    const w = words(addrs)
    const decoder = new HitDecoder(() => 'veth0')
    decoder.load(w, 100, 1000)
    const batch: Hit[] = decoder.takeBatch()
    expect(batch).toHaveLength(1000)
    expect(decoder.left).toBe(0)
    expect(batch.map((h) => h.src)).toEqual(addrs.slice(100, 1100))
    expect(batch.every((h) => h.kind === 'syn' && h.dstPort === 2222)).toBe(true)
    expect(decoder.takeBatch()).toEqual([])
  })
})
