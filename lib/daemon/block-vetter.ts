/**
 * BlockVetter: the daemon's hold on block decisions until the kernel has said, for
 * each address, whether it is a live TCP/SCTP peer of this host right now — the
 * second half of the check right before a block, too slow for the JS thread (a walk
 * of the kernel's established hash: milliseconds, hundreds of them on a host with
 * 100,000 connections). Decisions wait for the next event-loop turn while no check
 * runs, then go as one batch (one walk for all of them); while one runs, the next
 * batch gathers behind it (SerialBatches, as for the firewall). Each decision's
 * answer goes to `onVetted` in the order they were added. Runs on the main thread;
 * the check itself runs off it.
 *
 * Invariants. No decision is handed on before its answer, and every decision gets
 * one: a peer check that rejects, or does not answer within `timeoutMs`, answers
 * 'unchecked' for its whole batch (the engine then blocks no spoofable source: fail
 * safe), with one `onError` per run of failures. Bounded: at most `maxHeld`
 * decisions wait or are in flight (past that a decision is answered 'unchecked' at
 * once), so no batch is larger (an idle check gets one at BATCH_MAX already), below
 * the native limit of 65,536 targets a call; at most one check call is
 * outstanding — one that timed out and still runs holds the next batch back (until
 * that batch's own deadline), so the native queue never grows. Nothing the check or
 * `onVetted` throws escapes (it reaches `onError`).
 */
import { PortanoiaError } from '../errors.js'
import { type Address, parseAddress } from '../policy/addr.js'
import type { Decision } from '../policy/decision.js'
import type { VetAnswer } from '../policy/engine.js'
import type { GuardReason } from '../policy/guards.js'
import { SerialBatches } from './serial-batches.js'

export interface BlockVetterOptions {
  /** The kernel's answer per address, in order: why it must not be blocked, or null. Rejects when it cannot answer. */
  check(addresses: readonly Address[]): Promise<ReadonlyArray<GuardReason | null>>
  /** One decision's answer. A throw from here is passed to `onError`. */
  onVetted(decision: Decision, answer: VetAnswer): void
  /** A check that failed (PORTANOIA_PEER_CHECK_FAILED, the cause attached), once per run of failures; a throw from onVetted. */
  onError(err: unknown): void
  /** Longest wait for the check's answer, ms. Default CHECK_TIMEOUT_MS. */
  timeoutMs?: number
  /** Most decisions waiting or in flight. Default MAX_HELD. */
  maxHeld?: number
}

export interface BlockVetterStats {
  /** Block decisions held for the check, batches asked, and how many the check refused. */
  held: number
  batches: number
  refused: number
  /** Decisions answered 'unchecked': their batch's check failed or timed out, or too many waited. */
  unchecked: number
  /** Batches whose check failed (rejected or timed out). */
  failedBatches: number
}

/** Runs `fn`, turning a synchronous throw into a rejection. */
async function safely<T>(fn: () => Promise<T>): Promise<T> {
  return await fn()
}

/** An idle check is asked at once past this many decisions (the native side splits large programs anyway). */
const BATCH_MAX = 4096
/**
 * A walk with 100,000 sockets on the host takes tens of milliseconds; seconds mean
 * the libuv pool is starved or the kernel stuck, and a block should not wait on that.
 */
export const CHECK_TIMEOUT_MS = 2000
/** Far above what the engine's caps let through in one check's time; only a stuck check fills it. */
export const MAX_HELD = 16_384

const HINT = 'spoofable sources are reported (peer-check-failed), not blocked, until the check answers again; verified ones are still blocked'

export class BlockVetter {
  readonly #opts: BlockVetterOptions
  readonly #timeoutMs: number
  readonly #maxHeld: number
  readonly #batches: SerialBatches<Decision>
  readonly #counts: BlockVetterStats = { held: 0, batches: 0, refused: 0, unchecked: 0, failedBatches: 0 }
  /** Decisions waiting or in flight. */
  #inside = 0
  /** The check call still outstanding, if any (it may outlive its batch after a timeout). */
  #checking: Promise<void> | null = null
  /** The latest batch (or overflow) failed: the next failure is not reported again. */
  #failing = false

  constructor(options: BlockVetterOptions) {
    this.#opts = options
    this.#timeoutMs = options.timeoutMs ?? CHECK_TIMEOUT_MS
    this.#maxHeld = options.maxHeld ?? MAX_HELD
    this.#batches = new SerialBatches((batch) => this.#vet(batch), { batchMs: 0, batchMax: BATCH_MAX })
  }

  /** Holds a block decision; its answer comes with the next batch (at once, 'unchecked', when too many wait). */
  add(decision: Decision): void {
    this.#counts.held++
    if (this.#inside >= this.#maxHeld) {
      this.#failed(new PortanoiaError('PORTANOIA_PEER_CHECK_FAILED', `live peer check: ${this.#maxHeld} block decisions already wait for it`, { hint: HINT }))
      this.#answer(decision, 'unchecked')
      return
    }
    this.#inside++
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

  #answer(d: Decision, answer: VetAnswer): void {
    if (answer === 'unchecked') this.#counts.unchecked++
    else if (answer !== null) this.#counts.refused++
    try {
      this.#opts.onVetted(d, answer)
    } catch (err) {
      this.#opts.onError(err)
    }
  }

  #failed(err: PortanoiaError): void {
    if (this.#failing) return
    this.#failing = true
    this.#opts.onError(err)
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
    let answers: ReadonlyArray<GuardReason | null> | null = null
    try {
      answers = await this.#ask(targets)
      this.#failing = false
    } catch (err) {
      this.#counts.failedBatches++
      this.#failed(
        err instanceof PortanoiaError && err.code === 'PORTANOIA_PEER_CHECK_FAILED'
          ? err
          : new PortanoiaError('PORTANOIA_PEER_CHECK_FAILED', `live peer check failed: ${(err as Error)?.message ?? String(err)}`, { hint: HINT, cause: err }),
      )
    }
    for (const d of batch) {
      this.#inside--
      const i = index.get(d.src)
      // No answer for it (a failed check, or an answer too short): unchecked, never "not a peer".
      const answer: VetAnswer = answers === null || i === undefined || i >= answers.length ? 'unchecked' : (answers[i] ?? null)
      this.#answer(d, answer)
    }
  }

  /** The check's answers, or a rejection when it failed or missed the deadline. */
  async #ask(targets: readonly Address[]): Promise<ReadonlyArray<GuardReason | null>> {
    if (targets.length === 0) return []
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#timeoutMs)
    })
    const late = (): PortanoiaError =>
      new PortanoiaError('PORTANOIA_PEER_CHECK_FAILED', `live peer check: no answer within ${this.#timeoutMs} ms`, { hint: HINT })
    try {
      // A check that timed out may still run: the next one waits behind it, never beside it.
      const previous = this.#checking
      if (previous !== null && (await Promise.race([previous.then(() => 'done' as const), deadline])) === 'timeout') throw late()
      const asked = safely(() => this.#opts.check(targets))
      const settled = asked.then(
        () => {},
        () => {},
      )
      this.#checking = settled
      void settled.then(() => {
        if (this.#checking === settled) this.#checking = null
      })
      const r = await Promise.race([asked, deadline])
      if (r === 'timeout') throw late()
      return r
    } finally {
      clearTimeout(timer)
    }
  }
}
