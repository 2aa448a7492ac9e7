/**
 * The decision vocabulary shared by the policy engine, the responders and the
 * events schema: actions, reason codes and the Decision value. Pure declarations.
 * The reason codes are part of the public contract (operators grep for them and
 * alert on them): add, never rename.
 */

import type { Attribution, Proto, ScanKind } from '../types.js'
import type { Family } from './addr.js'

/**
 * What a responder should do: add a block, tell someone, nothing, or remove a block
 * (`unblock`: a fact changed and a block in force now covers a guarded address).
 */
export const ACTIONS = ['block', 'report', 'none', 'unblock'] as const
export type Action = (typeof ACTIONS)[number]

export const REASON_CODES = [
  'blocked',
  'already-blocked',
  'below-threshold',
  'spoofable-report-only',
  'guard:self',
  'guard:gateway',
  'guard:resolver',
  'guard:peer',
  'guard:allowlist',
  'guard:special',
  'rate-capped',
  'active-cap',
  'dry-run',
  'report-capped',
  'transit',
  'reapplied',
  'forged',
  'peer-check-failed',
  'reset-only',
] as const
export type ReasonCode = (typeof REASON_CODES)[number]

/** State of the spoofable-blocking circuit breaker. */
export type BreakerState = 'open' | 'closed'

/** The latest hit of the source when the decision was made (exec tokens come from here). */
export interface Trigger {
  dst: string
  dstPort: number
  srcPort: number
  proto: Proto
  kind: ScanKind
  interface: string
}

/**
 * One decision about one source, aggregated over its window. Times are
 * milliseconds on the engine's clock. Only `action: 'block'` asks a responder to
 * change the firewall; everything else is information.
 */
export interface Decision {
  action: Action
  reason: ReasonCode
  /** Canonical address (IPv4-mapped IPv6 is reported as IPv4). */
  src: string
  family: Family
  /** True when the window holds at least one completed handshake from `src`. */
  verified: boolean
  /**
   * The source's attribution over the window: `verified` with a handshake; else
   * `plausible` when any of its packets was (or one is still being checked); `forged`
   * when every packet had positive evidence of forgery.
   */
  attribution: Attribution
  /** The evidence names its packets carried in the window (at most 16, first seen first). */
  evidence: string[]
  /** Block lifetime to apply: on `blocked`, and on `dry-run` (what would have been applied). */
  ttlMs?: number
  /** When the block ends: on `blocked`, `dry-run` and `already-blocked` (absent for blocks without expiry). */
  expiresAt?: number
  /** A verified block replacing a shorter spoofable one for the same address: responders must reset the timeout. */
  upgrade?: boolean
  /**
   * On a verified `blocked` (and its `dry-run`): which block of this address it is
   * within `forgetAfter` (1 for a first one); `ttlMs` is that step of the ladder.
   */
  offence?: number
  /** Distinct 'port/proto' touched in the window, sorted; at most the engine's per-source limit. */
  ports: string[]
  /** True when more distinct ports were touched than `ports` lists. */
  portsTruncated: boolean
  kinds: ScanKind[]
  /** Hits from `src` in the window. */
  count: number
  /** Hits that were completed handshakes. */
  verifiedCount: number
  firstSeen: number
  lastSeen: number
  windowStart: number
  windowMs: number
  /** Decision time. */
  time: number
  /** The end-of-window summary (counts since the last decision for the source); never a `block`. */
  final: boolean
  /** Set when the decision opens or closes the spoofable-blocking breaker. */
  breaker?: BreakerState
  /** On `breaker: 'closed'`: what was reported-only without a per-source decision while open. */
  suppressed?: { sources: number; hits: number }
  /**
   * The latest hit of the source. Absent only on an `unblock` of a block this run did
   * not make from a hit (adopted from the kernel at start, or listed by the firewall).
   */
  trigger?: Trigger
}
