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
  /** The exact script or argv that was (or, in dry-run, would be) executed. */
  script?: string
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs argv without a shell; `input` goes to stdin. Never rejects on a non-zero exit. */
export type RunFn = (cmd: string, args: readonly string[], input?: string) => Promise<RunResult>

export interface Responder {
  readonly name: string
  /** Prepares state (creates or adopts the firewall table); returns blocks found in the kernel. */
  start(): Promise<ActiveBlockEntry[]>
  /** Firewall responders: add blocks, in one batch. Notifiers: resolve ok with nothing applied. */
  block(requests: readonly BlockRequest[]): Promise<ResponderResult>
  unblock(addresses: readonly string[]): Promise<ResponderResult>
  /** Blocks currently in the kernel (firewall responders); [] for notifiers. */
  list(): Promise<ActiveBlockEntry[]>
  /** Notifiers act on every decision event; firewall responders ignore this. */
  notify(decisions: readonly Decision[]): Promise<ResponderResult>
  close(): Promise<void>
}
