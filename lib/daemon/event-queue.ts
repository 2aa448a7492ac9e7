/**
 * EventQueue: the daemon's events as an async iterator, for consumers that prefer
 * `for await` to a callback. Events are kept only from the first iterator call on,
 * up to `max` unread; past that, new events are dropped and counted, so a consumer
 * that stops reading costs bounded memory. `end()` finishes every pending and future
 * `next()`. Runs on the main thread; push() never blocks and never throws.
 */

export class EventQueue<T> implements AsyncIterable<T> {
  readonly #max: number
  #items: T[] = []
  // Index of the oldest unread item: shift() on a large array is O(n) per call.
  #head = 0
  #waiters: Array<(r: IteratorResult<T, undefined>) => void> = []
  #iterating = false
  #ended = false
  #dropped = 0

  constructor(max: number) {
    this.#max = max
  }

  /** Events dropped because nobody read them. */
  get dropped(): number {
    return this.#dropped
  }

  push(item: T): void {
    if (!this.#iterating || this.#ended) return
    const w = this.#waiters.shift()
    if (w !== undefined) {
      w({ done: false, value: item })
      return
    }
    if (this.#items.length - this.#head >= this.#max) {
      this.#dropped++
      return
    }
    this.#items.push(item)
  }

  /** No more events: pending and later next() calls resolve done. */
  end(): void {
    this.#ended = true
    for (const w of this.#waiters.splice(0)) w({ done: true, value: undefined })
  }

  #take(): T | undefined {
    if (this.#head >= this.#items.length) return undefined
    const item = this.#items[this.#head] as T
    this.#head++
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    this.#iterating = true
    return {
      next: () => {
        const item = this.#take()
        if (item !== undefined) return Promise.resolve({ done: false, value: item })
        if (this.#ended) return Promise.resolve({ done: true, value: undefined })
        return new Promise((resolve) => this.#waiters.push(resolve))
      },
      return: async () => ({ done: true, value: undefined }),
    }
  }
}
