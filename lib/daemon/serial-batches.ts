/**
 * SerialBatches: the batching both of the daemon's slow stages share (the kernel's
 * peer check, block-vetter.ts; the firewall, firewall-batcher.ts). Items wait for the
 * next event-loop turn (or `batchMs`) while the consumer is idle, go out at once when
 * `batchMax` accumulate, and pile up into one batch while a batch runs, so a flood
 * costs one consumer call per consumer time, never one per item. At most one batch
 * is in flight. Runs on the main thread. Invariant: `run` must not reject (its owner
 * reports its own failures); a rejection would only end that batch.
 */
export interface SerialBatchesOptions {
  /** Longest an item waits while the consumer is idle; 0: the next event-loop turn. */
  batchMs: number
  /** A batch goes out at once when it holds this many items. */
  batchMax: number
}

export class SerialBatches<T> {
  readonly #run: (batch: T[]) => Promise<void>
  readonly #opts: SerialBatchesOptions
  #pending: T[] = []
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined
  #busy: Promise<void> = Promise.resolve()
  #inFlight = false

  constructor(run: (batch: T[]) => Promise<void>, options: SerialBatchesOptions) {
    this.#run = run
    this.#opts = options
  }

  /** Queues an item; it goes out with the next batch. */
  add(item: T): void {
    this.#pending.push(item)
    if (this.#pending.length >= this.#opts.batchMax) this.flush()
    else if (this.#timer === undefined && !this.#inFlight) {
      // A running batch flushes what accumulated when it ends; only an idle consumer
      // needs a timer. setImmediate runs after this drain's decisions.
      this.#timer = this.#opts.batchMs === 0 ? setImmediate(() => this.flush()) : setTimeout(() => this.flush(), this.#opts.batchMs)
    }
  }

  /** Sends what is pending as one batch, behind the batch in flight (if any). */
  flush(): void {
    if (this.#timer !== undefined) {
      if (this.#opts.batchMs === 0) clearImmediate(this.#timer as NodeJS.Immediate)
      else clearTimeout(this.#timer as NodeJS.Timeout)
      this.#timer = undefined
    }
    if (this.#inFlight || this.#pending.length === 0) return
    const batch = this.#pending
    this.#pending = []
    this.#inFlight = true
    const run = this.#run
    this.#busy = (async () => await run(batch))()
      .catch(() => {})
      .finally(() => {
        this.#inFlight = false
        if (this.#pending.length > 0) this.flush()
      })
  }

  /** Resolves when the batch in flight (if any) has settled. */
  idle(): Promise<void> {
    return this.#busy
  }

  /** Flushes and waits until nothing is pending or in flight. */
  async drain(): Promise<void> {
    this.flush()
    for (;;) {
      const busy = this.#busy
      await busy
      if (busy === this.#busy && this.#pending.length === 0) return
      this.flush()
    }
  }
}
