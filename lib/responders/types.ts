/**
 * The one interface every responder implements, and the values that cross it.
 * Firewall responders (nftables, ipset) apply blocks; notifier responders (exec,
 * webhook, jsonl) are told about decisions. A responder never throws into the
 * pipeline: every call resolves to a result that says what failed, per action.
 * Commands are run through an injected `run(cmd, args, input?)` so tests pass a
 * fake that records calls instead of mocking modules.
 */
import type { Decision } from '../policy/decision.js'

/** One address to block. `address` is canonical and validated before it gets here. */
export interface BlockRequest {
  address: string
  family: 4 | 6
  ttlMs: number
  /** Replace an existing (shorter) block: reset its timeout. */
  upgrade?: boolean
}

/** A block as the kernel holds it. */
export interface ActiveBlockEntry {
  address: string
  family: 4 | 6
  /** Time left, ms; undefined for a block without expiry. */
  expiresInMs?: number
  /** The timeout it was added with, ms. */
  timeoutMs?: number
}

export interface ResponderResult {
  responder: string
  ok: boolean
  /** Addresses (or decision sources) the call applied to. */
  applied: string[]
  /** Addresses that failed, with the error. */
  failed: Array<{ address: string; error: string }>
  /** unblock(): addresses that were not blocked, so there was nothing to remove (not a failure). */
  absent?: string[]
  /** Notifiers: decisions refused because the queue was full (also counted in stats().dropped). */
  dropped?: number
  /** The exact script or argv that was (or, in dry-run, would be) executed. */
  script?: string
  /** True when nothing was executed because the responder runs in dry-run mode. */
  dryRun?: boolean
}

export interface RunResult {
  /** Exit code; 127 when the program could not be started, 124 when it was killed on timeout. */
  code: number
  stdout: string
  stderr: string
  /** Set when the run was killed because it exceeded its timeout. */
  timedOut?: boolean
}

/** Runs argv without a shell; `input` goes to stdin. Never rejects on a non-zero exit. */
export type RunFn = (cmd: string, args: readonly string[], input?: string) => Promise<RunResult>

export interface Responder {
  readonly name: string
  /**
   * Firewall responders: the longest block they can hold, ms. The daemon refuses a
   * policy TTL above it before anything starts, and fleet bans are clamped to it.
   */
  readonly maxTtlMs?: number
  /**
   * Prepares state (creates or adopts the firewall table); returns blocks found in the kernel.
   * The one call that rejects (with a PortanoiaError carrying a hint): it runs before the
   * pipeline, and a firewall that cannot be set up must stop the daemon from starting.
   */
  start(): Promise<ActiveBlockEntry[]>
  /** Firewall responders: add blocks, in one batch. Notifiers: resolve ok with nothing applied. */
  block(requests: readonly BlockRequest[]): Promise<ResponderResult>
  unblock(addresses: readonly string[]): Promise<ResponderResult>
  /**
   * Blocks currently in the kernel (firewall responders); [] for notifiers. A read-only
   * query for `portanoia list`: rejects with a PortanoiaError when the kernel cannot be read
   * (an absent table is not an error: it lists nothing).
   */
  list(): Promise<ActiveBlockEntry[]>
  /**
   * Notifiers act on decision events (which actions is their option); firewall responders
   * ignore this. Resolves when this call's deliveries have finished or been given up, so a
   * capture loop should dispatch it without awaiting; the queue behind it is bounded.
   */
  notify(decisions: readonly Decision[]): Promise<ResponderResult>
  /** Firewall responders: removes everything the responder created, and nothing else. */
  uninstall?(): Promise<ResponderResult>
  /** Counters for the `stats` event (applied, failed, queued, dropped, …). */
  stats?(): Record<string, number>
  /** Stops accepting work, drops what is still queued (counted), waits for what is in flight. Idempotent. */
  close(): Promise<void>
}
