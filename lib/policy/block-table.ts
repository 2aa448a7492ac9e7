/**
 * BlockTable: the policy engine's blocks of one kind (verified or spoofable), by the
 * canonical text of the blocked address, with an index by the address's key words
 * (lib/hit-key.ts) so the question every hit asks — is its source blocked? — costs a
 * hash of a few integers, not the hash of a string made for that hit. Blocks change
 * rarely (a block, an expiry, an unblock), so the index is kept in step on every
 * change; the text side is a Map, whose iteration tolerates deletes, as the engine's
 * sweeps rely on. Pure, synchronous. Never evicts: the engine bounds spoofable blocks
 * itself (maxActiveBlocks); the index's own bound is far above any table it will hold.
 */
import { HIT_KEY_WORDS, KEY_SOURCE, textKey } from '../hit-key.js'
import { WordMap } from '../word-map.js'

const INDEX_MAX = 2 ** 26

export class BlockTable<R> {
  readonly #byText = new Map<string, R>()
  readonly #byKey = new WordMap<R>(KEY_SOURCE, INDEX_MAX)
  readonly #key = new Int32Array(HIT_KEY_WORDS)

  get size(): number {
    return this.#byText.size
  }

  get(src: string): R | undefined {
    return this.#byText.get(src)
  }

  /** The block on the source whose key is `key[at .. at + 4]`. */
  getByKey(key: ArrayLike<number>, at = 0): R | undefined {
    return this.#byText.size === 0 ? undefined : this.#byKey.get(key, at)
  }

  /** Sets the block on `src` (canonical text; anything else is refused, as no hit could match it). */
  set(src: string, rec: R): this {
    if (!textKey(src, this.#key)) throw new RangeError(`not an address: ${src}`)
    this.#byText.set(src, rec)
    this.#byKey.set(this.#key, rec)
    return this
  }

  delete(src: string): boolean {
    if (!this.#byText.delete(src)) return false
    if (textKey(src, this.#key)) this.#byKey.delete(this.#key)
    return true
  }

  [Symbol.iterator](): IterableIterator<[string, R]> {
    return this.#byText.entries()
  }
}
