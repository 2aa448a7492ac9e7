/**
 * WordMap (lib/word-map.ts) and the hit keys it is used with (lib/hit-key.ts): the
 * FifoMap contract — bound, oldest evicted first, set keeps the place, touch refreshes —
 * under churn and deletes, checked against a plain Map model; and keys that tell IPv4
 * from IPv6 while folding IPv4-mapped IPv6 into IPv4, as the policy does.
 */
import { describe, expect, it } from 'vitest'
import { addressKey, HIT_KEY_WORDS, hitKey, KEY_SOURCE, keyAddress, textKey } from '../../lib/hit-key.js'
import { formatAddress, parseAddress } from '../../lib/policy/addr.js'
import type { Hit } from '../../lib/types.js'
import { WordMap } from '../../lib/word-map.js'

const k = (...w: number[]): Int32Array => Int32Array.from(w)

function keyOf(text: string): Int32Array {
  const out = new Int32Array(HIT_KEY_WORDS)
  expect(textKey(text, out)).toBe(true)
  return out.subarray(0, KEY_SOURCE)
}

describe('WordMap', () => {
  it('evicts the oldest insertion once full; set on a present key keeps its place', () => {
    const m = new WordMap<string>(2, 3)
    m.set(k(1, 1), 'a')
    m.set(k(2, 2), 'b')
    m.set(k(3, 3), 'c')
    m.set(k(1, 1), 'a2')
    expect(m.size).toBe(3)
    m.set(k(4, 4), 'd')
    expect(m.get(k(1, 1))).toBeUndefined()
    expect([...m.values()]).toEqual(['b', 'c', 'd'])
    expect(m.evictions).toBe(1)
  })

  it('touch moves an entry to the young end, so it is evicted last', () => {
    const m = new WordMap<number>(1, 3)
    for (const x of [1, 2, 3]) m.set(k(x), x)
    m.touch(m.find(k(1)))
    m.set(k(4), 4)
    expect(m.get(k(2))).toBeUndefined()
    expect([...m.values()]).toEqual([3, 1, 4])
  })

  it('keys differ in any word: no two keys that share a hash bucket are confused', () => {
    const m = new WordMap<number>(5, 1000)
    // Keys differing only in one word each, and in the family word.
    for (let i = 1; i <= 200; i++) {
      m.set(k(4, 0, 0, 0, i), i)
      m.set(k(6, 0, 0, 0, i), 1000 + i)
      m.set(k(6, i, 0, 0, 0), 2000 + i)
    }
    expect(m.size).toBe(600)
    for (let i = 1; i <= 200; i++) {
      expect(m.get(k(4, 0, 0, 0, i))).toBe(i)
      expect(m.get(k(6, 0, 0, 0, i))).toBe(1000 + i)
      expect(m.get(k(6, i, 0, 0, 0))).toBe(2000 + i)
    }
    expect(m.get(k(4, 0, 0, 1, 0))).toBeUndefined()
  })

  it('matches a Map model under random inserts, deletes, touches and a bound, growing its slots', () => {
    let seed = 12345
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed % n
    }
    const max = 257
    const m = new WordMap<number>(3, max)
    const model = new Map<string, number>()
    const evict = (): void => {
      const oldest = model.keys().next().value as string
      model.delete(oldest)
    }
    for (let step = 0; step < 20_000; step++) {
      // A small key space, so deletes and re-inserts of present keys are frequent.
      const a = rnd(40)
      const b = rnd(3) - 1
      const key = k(a, b, a ^ b)
      const name = `${a},${b}`
      const op = rnd(10)
      if (op < 6) {
        if (!model.has(name) && model.size >= max) evict()
        // insert() for a key just found absent, as the engine does for a new source.
        if (!model.has(name) && rnd(2) === 0) {
          expect(m.find(key)).toBe(-1)
          m.insert(key, step)
        } else m.set(key, step)
        model.set(name, step)
      } else if (op < 9) {
        expect(m.delete(key)).toBe(model.delete(name))
      } else {
        const s = m.find(key)
        expect(s >= 0).toBe(model.has(name))
        if (s >= 0) {
          m.touch(s)
          const v = model.get(name)!
          model.delete(name)
          model.set(name, v)
        }
      }
      expect(m.size).toBe(model.size)
    }
    expect([...m.values()]).toEqual([...model.values()])
    for (const [name, v] of model) {
      const [a, b] = name.split(',').map(Number) as [number, number]
      expect(m.get(k(a, b, a ^ b))).toBe(v)
    }
  })

  it('never holds more than its bound under churn; under a lowered bound it never grows and fills only to it', () => {
    const m = new WordMap<number>(1, 1000)
    for (let i = 0; i < 50_000; i++) {
      m.set(k(i), i)
      expect(m.size).toBeLessThanOrEqual(1000)
    }
    expect(m.evictions).toBe(49_000)
    m.max = 10
    // One eviction per new key: the table does not grow, nor is it emptied at once.
    for (let i = 0; i < 2000; i++) m.set(k(-1 - i), i)
    expect(m.size).toBe(1000)
    expect(m.get(k(-2000))).toBe(1999)
    expect(m.get(k(49_999))).toBeUndefined()
    for (let i = 0; i < 995; i++) m.deleteSlot(m.oldest)
    for (let i = 0; i < 20; i++) m.set(k(5000 + i), i)
    expect(m.size).toBe(10)
    expect([...m.values()]).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
  })

  it('refuses a bound or width it cannot hold', () => {
    expect(() => new WordMap(0, 10)).toThrow(RangeError)
    expect(() => new WordMap(2, 0)).toThrow(RangeError)
    expect(() => new WordMap(2, 1.5)).toThrow(RangeError)
  })
})

describe('hit keys', () => {
  it('tell an IPv4 source from the IPv6 one with the same last word, and fold IPv4-mapped IPv6 into IPv4', () => {
    const v4 = keyOf('198.18.0.7')
    const mapped = keyOf('::ffff:198.18.0.7')
    const v6 = keyOf('::c612:7')
    expect([...mapped]).toEqual([...v4])
    expect(v4[4]).toBe(v6[4])
    expect([...v6]).not.toEqual([...v4])
    const m = new WordMap<string>(KEY_SOURCE, 10)
    m.set(v4, 'v4')
    m.set(v6, 'v6')
    expect(m.get(mapped)).toBe('v4')
    expect(m.get(v6)).toBe('v6')
  })

  it('round-trip through Address for both families', () => {
    for (const text of ['198.18.0.7', '0.0.0.1', '255.255.255.255', 'fd52:43dd::1', 'fd52:43dd:ffff:1:2:3:4:5', '::1']) {
      const key = keyOf(text)
      expect(formatAddress(keyAddress(key))).toBe(text)
      const again = new Int32Array(KEY_SOURCE)
      addressKey(parseAddress(text)!, again)
      expect([...again]).toEqual([...key])
    }
  })

  it('of a hit without a record carry its interface, link-layer source and TTL; a non-address has none', () => {
    const base = { src: '198.18.0.7', ifindex: 3, ttl: 64, srcMac: '02:00:00:00:00:0a' } as Hit
    const a = new Int32Array(HIT_KEY_WORDS)
    const b = new Int32Array(HIT_KEY_WORDS)
    expect(hitKey(base, a)).toBe(true)
    expect(hitKey({ ...base, srcMac: '02:00:00:00:00:0b' } as Hit, b)).toBe(true)
    expect([...a]).not.toEqual([...b])
    expect(hitKey({ ...base, ttl: 63 } as Hit, b)).toBe(true)
    expect([...a]).not.toEqual([...b])
    expect(hitKey({ ...base, srcMac: undefined } as Hit, b)).toBe(true)
    expect(b[7]! >>> 24).toBe(0)
    expect(a[7]! >>> 24).toBe(1)
    expect(hitKey({ ...base, src: 'not an address' } as Hit, b)).toBe(false)
  })
})

describe('BlockTable', () => {
  it('answers by text and by key alike, through sets, deletes and deletes while iterating', async () => {
    const { BlockTable } = await import('../../lib/policy/block-table.js')
    const t = new BlockTable<number>()
    expect(t.getByKey(keyOf('198.18.0.7'))).toBeUndefined()
    t.set('198.18.0.7', 1).set('fd52:43dd::7', 2).set('198.18.0.8', 3)
    expect(t.get('198.18.0.7')).toBe(1)
    expect(t.getByKey(keyOf('198.18.0.7'))).toBe(1)
    expect(t.getByKey(keyOf('::ffff:198.18.0.7'))).toBe(1)
    expect(t.getByKey(keyOf('fd52:43dd::7'))).toBe(2)
    for (const [src] of t) if (src !== 'fd52:43dd::7') t.delete(src)
    expect(t.size).toBe(1)
    expect(t.getByKey(keyOf('198.18.0.7'))).toBeUndefined()
    expect(t.getByKey(keyOf('198.18.0.8'))).toBeUndefined()
    expect(t.delete('198.18.0.8')).toBe(false)
    expect(() => t.set('not an address', 4)).toThrow(RangeError)
    expect(t.size).toBe(1)
  })
})
