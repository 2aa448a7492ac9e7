/**
 * BlockVetter: the daemon's hold on block decisions until the kernel has said, for
 * each address, whether it is a live TCP/SCTP peer of this host right now — the
 * second half of the check right before a block, too slow for the JS thread (a walk
 * of the kernel's established hash: milliseconds, hundreds of them on a host with
 * 100,000 connections). Decisions wait for the next event-loop turn while no check
 * runs, then go as one batch (one walk for all of them); while one runs, the next
 * batch gathers behind it (SerialBatches, as for the firewall). One batch is in
 * flight at a time. Each decision's answer goes to `onVetted` in the order they were
 * added. Runs on the main thread; the check itself runs off it. Invariant: nothing
 * the check or `onVetted` throws escapes (it reaches `onError`); a check that throws
 * or rejects answers null for the batch (the snapshot guards and the route check
 * still held), as a failed live check always has.
 */
import { type Address, parseAddress } from '../policy/addr.js'
import type { Decision } from '../policy/decision.js'
import type { GuardReason } from '../policy/guards.js'
import { SerialBatches } from './serial-batches.js'

export interface BlockVetterOptions {
  /** The kernel's answer per address, in order: why it must not be blocked, or null. */
  check(addresses: readonly Address[]): Promise<ReadonlyArray<GuardReason | null>>
  /** One decision's answer. A throw from here is passed to `onError`. */
  onVetted(decision: Decision, refusal: GuardReason | null): void
  onError(err: unknown): void
}

export interface BlockVetterStats {
  /** Block decisions held for the check, batches asked, and how many the check refused. */
  held: number
  batches: number
  refused: number
}

/** Runs `fn`, turning a synchronous throw into a rejection. */
async function safely<T>(fn: () => Promise<T>): Promise<T> {
  return await fn()
}

/** A batch is asked at once past this many decisions (the native side splits larger ones anyway). */
const BATCH_MAX = 4096

export class BlockVetter {
  readonly #opts: BlockVetterOptions
  readonly #batches: SerialBatches<Decision>
  readonly #counts: BlockVetterStats = { held: 0, batches: 0, refused: 0 }

  constructor(options: BlockVetterOptions) {
    this.#opts = options
    this.#batches = new SerialBatches((batch) => this.#vet(batch), { batchMs: 0, batchMax: BATCH_MAX })
  }

  /** Holds a block decision; its answer comes with the next batch. */
  add(decision: Decision): void {
    this.#counts.held++
    this.#batches.add(decision)
  }

  /** Resolves when the batch in flight (if any) has been answered and handed on. */
  idle(): Promise<void> {
    return this.#batches.idle()
  }

  /** Asks about everything pending and waits until nothing is pending or in flight. */
  drain(): Promise<void> {
    return this.#batches.drain()
  }

  stats(): BlockVetterStats {
    return { ...this.#counts }
  }

  async #vet(batch: readonly Decision[]): Promise<void> {
    this.#counts.batches++
    // One target per address, however many decisions name it.
    const index = new Map<string, number>()
    const targets: Address[] = []
    for (const d of batch) {
      if (index.has(d.src)) continue
      const a = parseAddress(d.src)
      if (a === null) continue
      index.set(d.src, targets.length)
      targets.push(a)
    }
    let answers: ReadonlyArray<GuardReason | null> = []
    try {
      answers = await safely(() => this.#opts.check(targets))
    } catch (err) {
      this.#opts.onError(err)
    }
    for (const d of batch) {
      const i = index.get(d.src)
      const refusal = i === undefined ? null : (answers[i] ?? null)
      if (refusal !== null) this.#counts.refused++
      try {
        this.#opts.onVetted(d, refusal)
      } catch (err) {
        this.#opts.onError(err)
      }
    }
  }
}
