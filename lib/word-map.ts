/**
 * WordMap: a map keyed by a fixed number of 32-bit words, bounded by count, oldest
 * insertion evicted first — the FifoMap contract without a string key. The per-hit
 * tables (the policy engine's sources, the attributor's answers and per-source facts)
 * key by the address words of the hit's record (lib/decode.ts, SOURCE_WORDS), so a hit
 * costs a hash of a few integers and no string is built, hashed or collected for it.
 * Pure, synchronous, JS thread only.
 *
 * Layout: slots are structs of arrays (keys in one Int32Array, values in one array),
 * found through an open-addressing index (linear probing, load at most one half,
 * deletion by backward shift, so no tombstones accumulate under churn); insertion order
 * is a doubly linked list through the slots, so eviction, delete and touch are O(1).
 * Slots are allocated on demand, doubling up to the bound, so an idle table stays small.
 * Invariants: size ≤ max; a key is in the index iff its slot is linked; a slot's number
 * stays its own until it is deleted or evicted (callers may hold it across calls that do
 * not insert or delete).
 */

const EMPTY = -1
const MIN_SLOTS = 16

function indexSizeFor(slots: number): number {
  let n = 32
  while (n < slots * 2) n *= 2
  return n
}

export class WordMap<V> {
  /** Words per key. */
  readonly width: number
  #max: number
  #slots = 0
  #keys: Int32Array = new Int32Array(0)
  #hashes: Int32Array = new Int32Array(0)
  #values: Array<V | undefined> = []
  #older: Int32Array = new Int32Array(0)
  #younger: Int32Array = new Int32Array(0)
  /** Slot + 1 per index position; 0 is empty. */
  #index: Int32Array = new Int32Array(0)
  #mask = 0
  #free: Int32Array = new Int32Array(0)
  #freeCount = 0
  #oldest = EMPTY
  #youngest = EMPTY
  #size = 0
  #evictions = 0

  constructor(width: number, max: number) {
    if (!Number.isSafeInteger(width) || width < 1 || width > 16) throw new RangeError(`width must be an integer 1..16, got ${String(width)}`)
    this.width = width
    this.#max = WordMap.#checkMax(max)
    this.#grow(Math.min(MIN_SLOTS, this.#max))
  }

  static #checkMax(max: number): number {
    if (!Number.isSafeInteger(max) || max < 1 || max > 2 ** 26) throw new RangeError(`max must be an integer 1..2^26, got ${String(max)}`)
    return max
  }

  get size(): number {
    return this.#size
  }

  get max(): number {
    return this.#max
  }

  /**
   * A new bound. A lower one is reached by evicting one entry per new key (as the
   * engine's reload promises), never all at once.
   */
  set max(max: number) {
    this.#max = WordMap.#checkMax(max)
  }

  /** Entries deleted to respect the bound, since creation. */
  get evictions(): number {
    return this.#evictions
  }

  /** The slot holding `key` (its first `width` words from `at`), or -1. */
  find(key: ArrayLike<number>, at = 0): number {
    // Most per-hit tables are empty most of the time (marks, verified sources, blocks):
    // no hash and no probe into an index line that is not in cache.
    if (this.#size === 0) return -1
    const w = this.width
    const h = hashWords(key, at, w)
    const keys = this.#keys
    const hashes = this.#hashes
    const index = this.#index
    const mask = this.#mask
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const s = index[i]! - 1
      if (s < 0) return -1
      if (hashes[s] !== h) continue
      const k = s * w
      let j = 0
      while (j < w && keys[k + j] === key[at + j]) j++
      if (j === w) return s
    }
  }

  get(key: ArrayLike<number>, at = 0): V | undefined {
    const s = this.find(key, at)
    return s < 0 ? undefined : this.#values[s]
  }

  /** The value in a slot find() or set() returned. */
  valueAt(slot: number): V {
    return this.#values[slot]!
  }

  setValueAt(slot: number, value: V): void {
    this.#values[slot] = value
  }

  /** Copies the key of `slot` into `out` from `at`. */
  keyAt(slot: number, out: { [i: number]: number }, at = 0): void {
    const w = this.width
    for (let j = 0; j < w; j++) out[at + j] = this.#keys[slot * w + j]!
  }

  /**
   * Sets `key` to `value` and returns its slot. A key already present keeps its place in
   * the order (as Map.set does); a new one goes to the young end, evicting the oldest
   * entry when the map is full (one per new key: a lowered bound is reached gradually).
   */
  set(key: ArrayLike<number>, value: V, at = 0): number {
    const found = this.find(key, at)
    if (found >= 0) {
      this.#values[found] = value
      return found
    }
    return this.insert(key, value, at)
  }

  /**
   * Adds `key`, which the caller has just found absent (find() returned -1, nothing
   * inserted since), and returns its slot: set() without its second probe. A key that is
   * present would be indexed twice.
   */
  insert(key: ArrayLike<number>, value: V, at = 0): number {
    if (this.#size >= this.#max && this.#oldest !== EMPTY) {
      this.deleteSlot(this.#oldest)
      this.#evictions++
    }
    if (this.#freeCount === 0) this.#grow(Math.min(this.#max, this.#slots * 2))
    const s = this.#free[--this.#freeCount]!
    const w = this.width
    for (let j = 0; j < w; j++) this.#keys[s * w + j] = key[at + j]!
    const h = hashWords(key, at, w)
    this.#hashes[s] = h
    this.#values[s] = value
    this.#link(s)
    this.#place(s, h)
    this.#size++
    return s
  }

  delete(key: ArrayLike<number>, at = 0): boolean {
    const s = this.find(key, at)
    if (s < 0) return false
    this.deleteSlot(s)
    return true
  }

  /** Deletes the entry in `slot` (a slot find() or set() returned, still occupied). */
  deleteSlot(slot: number): void {
    const index = this.#index
    const mask = this.#mask
    let i = this.#hashes[slot]! & mask
    while (index[i] !== slot + 1) i = (i + 1) & mask
    // Backward shift: every entry after the hole that would be found through it moves
    // up, so probes never need a tombstone.
    for (let j = (i + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      const home = this.#hashes[index[j]! - 1]! & mask
      if (((j - home) & mask) >= ((j - i) & mask)) {
        index[i] = index[j]!
        i = j
      }
    }
    index[i] = 0
    this.#unlink(slot)
    this.#values[slot] = undefined
    this.#free[this.#freeCount++] = slot
    this.#size--
  }

  /** Moves the entry in `slot` to the young end (a refresh), keeping its value. */
  touch(slot: number): void {
    if (slot === this.#youngest) return
    this.#unlink(slot)
    this.#link(slot)
  }

  /** The oldest entry's slot, or -1 when empty. */
  get oldest(): number {
    return this.#oldest
  }

  /** The slot inserted after `slot` (toward the young end), or -1. */
  next(slot: number): number {
    return this.#younger[slot]!
  }

  /** Values, oldest first. The entry just yielded may be deleted meanwhile; no other. */
  *values(): Generator<V> {
    for (let s = this.#oldest; s !== EMPTY; ) {
      const next = this.#younger[s]!
      yield this.#values[s]!
      s = next
    }
  }

  clear(): void {
    for (let s = this.#oldest; s !== EMPTY; ) {
      const next = this.#younger[s]!
      this.deleteSlot(s)
      s = next
    }
  }

  #link(s: number): void {
    this.#older[s] = this.#youngest
    this.#younger[s] = EMPTY
    if (this.#youngest !== EMPTY) this.#younger[this.#youngest] = s
    else this.#oldest = s
    this.#youngest = s
  }

  #unlink(s: number): void {
    const older = this.#older[s]!
    const younger = this.#younger[s]!
    if (older !== EMPTY) this.#younger[older] = younger
    else this.#oldest = younger
    if (younger !== EMPTY) this.#older[younger] = older
    else this.#youngest = older
  }

  #place(s: number, h: number): void {
    const index = this.#index
    const mask = this.#mask
    let i = h & mask
    while (index[i] !== 0) i = (i + 1) & mask
    index[i] = s + 1
  }

  /** More slots (up to `slots`); existing slots keep their numbers. */
  #grow(slots: number): void {
    const old = this.#slots
    if (slots <= old) return
    const w = this.width
    const keys = new Int32Array(slots * w)
    keys.set(this.#keys)
    this.#keys = keys
    const hashes = new Int32Array(slots)
    hashes.set(this.#hashes)
    this.#hashes = hashes
    const older = new Int32Array(slots)
    older.set(this.#older)
    this.#older = older
    const younger = new Int32Array(slots)
    younger.set(this.#younger)
    this.#younger = younger
    for (let s = old; s < slots; s++) this.#values.push(undefined)
    const free = new Int32Array(slots)
    free.set(this.#free.subarray(0, this.#freeCount))
    // Lowest slot numbers handed out first.
    for (let s = slots - 1; s >= old; s--) free[this.#freeCount++] = s
    this.#free = free
    this.#slots = slots
    const size = indexSizeFor(slots)
    if (size !== this.#index.length) {
      this.#index = new Int32Array(size)
      this.#mask = size - 1
      for (let s = this.#oldest; s !== EMPTY; s = this.#younger[s]!) this.#place(s, this.#hashes[s]!)
    }
  }
}

/** A 32-bit hash of `width` words (multiply-xorshift per word, a final avalanche). */
export function hashWords(key: ArrayLike<number>, at: number, width: number): number {
  let h = 0x2545f491 ^ width
  for (let j = 0; j < width; j++) {
    h = Math.imul(h ^ (key[at + j]! | 0), 0x9e3779b1)
    h ^= h >>> 15
  }
  h = Math.imul(h ^ (h >>> 13), 0x85ebca6b)
  return h ^ (h >>> 16)
}
