/**
 * A Map bounded by count: inserting past `max` deletes the oldest insertion. Attribution
 * keeps every table it fills from traffic in one of these (cached answers, learned hop
 * counts, verified sources, decoy windows), so a flood of forged sources costs at most
 * `max` entries per table. Pure, synchronous.
 *
 * Eviction walks one long-lived key iterator instead of calling `keys().next()` afresh:
 * V8 leaves deleted slots in place until a rehash, and a fresh iterator would rescan
 * every slot deleted before it, making each eviction O(evictions so far) under churn.
 */
export class FifoMap<K, V> {
  readonly #map = new Map<K, V>()
  readonly #max: number
  #cursor: Iterator<K> | undefined
  #evictions = 0

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`max must be an integer ≥ 1, got ${String(max)}`)
    this.#max = max
  }

  get size(): number {
    return this.#map.size
  }

  /** Entries deleted to respect the bound, since creation. */
  get evictions(): number {
    return this.#evictions
  }

  get(key: K): V | undefined {
    return this.#map.get(key)
  }

  has(key: K): boolean {
    return this.#map.has(key)
  }

  /** Sets `key`; a new key goes to the young end, evicting the oldest when full. */
  set(key: K, value: V): this {
    if (!this.#map.has(key) && this.#map.size >= this.#max) this.#evictOldest()
    this.#map.set(key, value)
    return this
  }

  /** Moves `key` to the young end (a refresh), keeping its value. */
  touch(key: K): void {
    const v = this.#map.get(key)
    if (v === undefined) return
    this.#map.delete(key)
    this.#map.set(key, v)
  }

  delete(key: K): boolean {
    return this.#map.delete(key)
  }

  values(): IterableIterator<V> {
    return this.#map.values()
  }

  entries(): IterableIterator<[K, V]> {
    return this.#map.entries()
  }

  clear(): void {
    this.#map.clear()
    this.#cursor = undefined
  }

  #evictOldest(): void {
    for (let attempt = 0; attempt < 2; attempt++) {
      this.#cursor ??= this.#map.keys()
      const next = this.#cursor.next()
      if (next.done !== true) {
        this.#map.delete(next.value)
        this.#evictions++
        return
      }
      // An exhausted iterator never sees later insertions: start a new one.
      this.#cursor = undefined
    }
  }
}
