/**
 * FirewallBatcher: turns the daemon's stream of block requests into few, large
 * firewall transactions. Requests wait for the next event-loop turn (or `batchMs`)
 * while the firewall is idle, go out at once when `batchMax` accumulate, and pile up
 * into one batch while a transaction runs, so a flood costs one `nft -f -` per
 * transaction time, never one process per address (the batching is SerialBatches').
 * Calls are serialised: at most one block() is in flight. Runs on the main thread.
 * Invariant: nothing a responder throws or rejects escapes; it reaches the owner
 * through `onSettled`.
 */
import type { BlockRequest, Responder, ResponderResult } from '../responders/types.js'
import { SerialBatches } from './serial-batches.js'

export interface FirewallBatcherOptions {
  /** Longest a request waits while the firewall is idle; 0: the next event-loop turn. */
  batchMs: number
  /** A batch goes out at once when it holds this many requests. */
  batchMax: number
  /**
   * The outcome of one batch: the responder's result, or what it threw. Called once
   * per batch; a throw from here is passed to `onError`.
   */
  onSettled(batch: readonly BlockRequest[], outcome: { result: ResponderResult } | { error: unknown }): void
  onError(err: unknown): void
}

export interface FirewallBatcherStats {
  /** Requests sent to the firewall. */
  requested: number
  batches: number
  applied: number
  failed: number
}

/** Runs `fn`, turning a synchronous throw into a rejection. */
async function safely<T>(fn: () => Promise<T>): Promise<T> {
  return await fn()
}

export class FirewallBatcher {
  readonly #fw: Responder
  readonly #batches: SerialBatches<BlockRequest>
  readonly #counts: FirewallBatcherStats = { requested: 0, batches: 0, applied: 0, failed: 0 }

  constructor(fw: Responder, options: FirewallBatcherOptions) {
    this.#fw = fw
    this.#batches = new SerialBatches(async (batch) => {
      this.#counts.requested += batch.length
      this.#counts.batches++
      await safely(() => fw.block(batch))
        .then(
          (result) => {
            this.#counts.applied += result.applied.length
            this.#counts.failed += result.failed.length
            options.onSettled(batch, { result })
          },
          (error: unknown) => {
            this.#counts.failed += batch.length
            options.onSettled(batch, { error })
          },
        )
        .catch((err: unknown) => options.onError(err))
    }, options)
  }

  get responder(): Responder {
    return this.#fw
  }

  /** Queues a request; it goes out with the next batch. */
  add(request: BlockRequest): void {
    this.#batches.add(request)
  }

  /** Sends what is pending as one batch, behind the transaction in flight (if any). */
  flush(): void {
    this.#batches.flush()
  }

  /** Resolves when the transaction in flight (if any) has settled. */
  idle(): Promise<void> {
    return this.#batches.idle()
  }

  /** Flushes and waits until nothing is pending or in flight. */
  drain(): Promise<void> {
    return this.#batches.drain()
  }

  stats(): FirewallBatcherStats {
    return { ...this.#counts }
  }
}
