/**
 * The policy's configuration: the PolicyConfig shape, its documented defaults
 * (DEFAULT_POLICY, the one home of every policy default), and resolvePolicyConfig,
 * which merges input over the defaults and refuses unknown fields and bad values
 * with PORTANOIA_BAD_POLICY naming the field. Pure, no I/O.
 */

import { PortanoiaError } from '../errors.js'

export type BlockMode = 'verified' | 'all' | 'off'

export interface PolicyConfig {
  /**
   * 'verified' blocks sources that completed a handshake; 'all' also blocks
   * spoofable ones (short TTL, capped); 'off' blocks nothing and is exactly
   * 'verified' in dry-run: decisions say what the default policy would do.
   */
  block: BlockMode
  /** Lifetime of a block from verified evidence: the first step of `blockTtlLadderMs`. */
  blockTtlMs: number
  /**
   * The escalation ladder: the n-th verified block of one address, each within
   * `forgetAfterMs` of the one before, lasts step n (the last step from then on).
   * Never shorter from one step to the next; `[blockTtlMs]` when not given.
   */
  blockTtlLadderMs: readonly number[]
  /** An address whose last verified block is older than this starts the ladder again. */
  forgetAfterMs: number
  /**
   * Lifetime of a block from spoofable evidence; never longer than `blockTtlMs` (a
   * forged packet must not buy a longer ban than a proven handshake). When it is not
   * given, it is the shorter of its default and `blockTtlMs`.
   */
  spoofableTtlMs: number
  /** Completed handshakes from one source in a window before it is blocked. */
  threshold: number
  /** Hits of any kind from one spoofable source in a window before it is acted on. */
  spoofableThreshold: number
  /** Aggregation window; each source's window opens at its first hit. */
  windowMs: number
  /** New blocks from spoofable evidence per trailing minute. */
  maxBlocksPerMinute: number
  /** Blocks from spoofable evidence active at once. */
  maxActiveBlocks: number
  /**
   * New per-source decisions about spoofable sources per trailing minute (reports,
   * below-threshold notes, wide-range guards); past it they are counted, not emitted,
   * until the rate falls (`report-capped`).
   */
  maxReportsPerMinute: number
  /** Sources tracked per table (verified / spoofable-only); the oldest is evicted. */
  maxTrackedSources: number
  /** Distinct ports remembered per source and window. */
  maxPortsPerSource: number
  /** Decide and account as usual, but report would-be blocks (`dry-run`) instead of blocking. */
  dryRun: boolean
}

/**
 * Defaults. A handshake to a port nobody serves is deliberate, so one is enough
 * (threshold 1). Spoofable evidence also uses 1: a forger sends N packets as easily
 * as one, so a higher number buys no safety; the safety is in the short TTL and the
 * caps. 60 new spoofable blocks a minute and 1000 active bound what forged traffic
 * can do to the firewall (at most 1000 addresses denied for 5 minutes) while a
 * steady trickle of real scanners (60/min × 5 min = 300) stays below the active cap.
 * 600 spoofable sources decided a minute is ten a second, far above what real
 * scanners of one host add up to, yet a forged flood of a million sources costs
 * ~600 decisions and a summary instead of a million.
 */
export const DEFAULT_POLICY: Readonly<PolicyConfig> = Object.freeze({
  block: 'verified',
  blockTtlMs: 60 * 60_000,
  blockTtlLadderMs: Object.freeze([60 * 60_000]),
  forgetAfterMs: 30 * 86_400_000,
  spoofableTtlMs: 5 * 60_000,
  threshold: 1,
  spoofableThreshold: 1,
  windowMs: 60_000,
  maxBlocksPerMinute: 60,
  maxActiveBlocks: 1000,
  maxReportsPerMinute: 600,
  maxTrackedSources: 16_384,
  maxPortsPerSource: 32,
  dryRun: false,
})

const BLOCK_MODES: readonly BlockMode[] = ['verified', 'all', 'off']

const INT_LIMITS: Readonly<Record<Exclude<keyof PolicyConfig, 'block' | 'dryRun' | 'blockTtlLadderMs'>, readonly [number, string]>> = {
  // nft timeouts have second granularity.
  blockTtlMs: [1000, 'at least 1000 (1 s)'],
  forgetAfterMs: [1000, 'at least 1000 (1 s)'],
  spoofableTtlMs: [1000, 'at least 1000 (1 s)'],
  threshold: [1, 'at least 1'],
  spoofableThreshold: [1, 'at least 1'],
  windowMs: [1000, 'at least 1000 (1 s)'],
  maxBlocksPerMinute: [1, 'at least 1'],
  maxActiveBlocks: [1, 'at least 1'],
  maxReportsPerMinute: [1, 'at least 1'],
  maxTrackedSources: [1, 'at least 1'],
  maxPortsPerSource: [1, 'at least 1'],
}

function badPolicy(field: string, message: string, hint: string): PortanoiaError {
  return new PortanoiaError('PORTANOIA_BAD_POLICY', `policy.${field}: ${message}`, { hint })
}

/**
 * Defaults merged with `input`, validated. Throws PortanoiaError
 * (PORTANOIA_BAD_POLICY) naming the field; unknown fields are errors, since a
 * misspelt cap silently falling back to its default is how floods get through.
 */
export function resolvePolicyConfig(input: Partial<PolicyConfig> = {}): PolicyConfig {
  const out: PolicyConfig = { ...DEFAULT_POLICY }
  for (const [key, value] of Object.entries(input) as Array<[string, unknown]>) {
    if (value === undefined) continue
    if (key === 'block') {
      if (!BLOCK_MODES.includes(value as BlockMode)) {
        throw badPolicy(key, `${JSON.stringify(value)} is not a block mode`, "use 'verified', 'all' or 'off'")
      }
      out.block = value as BlockMode
    } else if (key === 'blockTtlLadderMs') {
      if (!Array.isArray(value) || value.length === 0 || value.length > 32) throw badPolicy(key, 'must be a list of 1 to 32 durations in ms', 'e.g. [3600000, 86400000]')
      let prev = 0
      for (const step of value as unknown[]) {
        if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 1000) throw badPolicy(key, `${JSON.stringify(step)} is not an integer at least 1000 (1 s)`, 'each step is a block lifetime in ms')
        if (step < prev) throw badPolicy(key, `step ${step} ms is shorter than the one before (${prev} ms)`, 'a repeat offender never gets a shorter block: list the steps from shortest to longest')
        prev = step
      }
      out.blockTtlLadderMs = Object.freeze([...(value as number[])])
    } else if (key === 'dryRun') {
      if (typeof value !== 'boolean') throw badPolicy(key, 'must be true or false', 'pass a boolean')
      out.dryRun = value
    } else if (Object.hasOwn(INT_LIMITS, key)) {
      const [min, text] = INT_LIMITS[key as keyof typeof INT_LIMITS]
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
        throw badPolicy(key, `${JSON.stringify(value)} is not an integer ${text}`, `set ${key} to an integer ${text}`)
      }
      out[key as keyof typeof INT_LIMITS] = value
    } else {
      throw badPolicy(key, 'unknown setting', `known settings: ${Object.keys(DEFAULT_POLICY).join(', ')}`)
    }
  }
  // One name for the first step: the ladder wins, a lone TTL is a ladder of one.
  if (input.blockTtlLadderMs !== undefined) {
    const first = out.blockTtlLadderMs[0] as number
    if (input.blockTtlMs !== undefined && input.blockTtlMs !== first) {
      throw badPolicy('blockTtlMs', `${input.blockTtlMs} ms differs from the ladder's first step (${first} ms)`, 'give one of blockTtlMs and blockTtlLadderMs')
    }
    out.blockTtlMs = first
  } else {
    out.blockTtlLadderMs = Object.freeze([out.blockTtlMs])
  }
  if (input.spoofableTtlMs === undefined) out.spoofableTtlMs = Math.min(out.spoofableTtlMs, out.blockTtlMs)
  if (out.spoofableTtlMs > out.blockTtlMs) {
    throw badPolicy(
      'spoofableTtlMs',
      `${out.spoofableTtlMs} ms is longer than blockTtlMs (${out.blockTtlMs} ms): a forged packet would buy a longer block than a completed handshake`,
      'make the spoofable TTL at most the verified one',
    )
  }
  return out
}
