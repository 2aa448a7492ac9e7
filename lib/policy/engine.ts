/**
 * PolicyEngine: turns the sensor's Hits into Decisions. Pure and synchronous: time
 * comes from an injected clock, host facts from a Guards instance, and the output is
 * a list of decisions for the caller to hand to responders and the event stream.
 * Per hit the order is destination (transit?) → guards → verification → aggregation
 * → threshold → attribution → caps → the live guard check → block. Attribution comes
 * with the hit (`hit.attribution`, `hit.evidence`, lib/attribution): under `--block all`
 * a spoofable source is blocked only once its evidence says plausible — a source all of
 * whose packets are forged is reported (`forged`) and never blocked, and one whose
 * check is still running is held: no decision until the answer comes (`reattribute`),
 * which decides it again (a link question settles within a second or two). Two more answers are injected
 * like the clock: `isLocal` (is the hit addressed to this host? if not it is transit,
 * reported once per source window and never blocked) and `liveGuard` (the kernel's
 * word on the one address about to be blocked, asked right before every block: a
 * refusal is a `guard:*` decision, not a block).
 *
 * Invariants:
 * - Memory is bounded: at most `maxTrackedSources` sources in each of two tables
 *   (sources with verified evidence, sources with only spoofable evidence), the
 *   oldest window evicted first; spoofable blocks never exceed `maxActiveBlocks`.
 *   Verified blocks live in their own table, so no amount of forged traffic can
 *   evict one or stop a new one.
 * - Output is bounded: per source and window, one decision when the window opens,
 *   one more when it escalates (below threshold → report → block, or spoofable →
 *   verified), and one summary (`final`) when it closes with hits not yet reported.
 *   While the spoofable-blocking breaker is open, capped sources are counted, not
 *   reported one by one; the breaker's open and close decisions carry the totals.
 *   The same holds for decisions about spoofable sources in any mode: past
 *   `maxReportsPerMinute` new ones a minute the report breaker opens, and forged
 *   sources are counted until the rate falls, so a million forged sources cost a
 *   bounded number of decisions. Verified sources and the guards whose addresses
 *   are few (self, gateway, resolver, peer) are never suppressed.
 * - A `block` decision is emitted exactly once per block the engine makes, and only
 *   after the live guard check passed for that address; once more (`reapplied`) when
 *   a completed handshake from a blocked source, after the firewall confirmed its
 *   block, proves the block is no longer in the kernel. With `vetBlocks` the check has
 *   a second, asynchronous half that the caller runs (the daemon's batched peer
 *   check): block decisions (`blocked`, `reapplied`, and `dry-run`'s would-be blocks)
 *   are handed out to be held, and vet() says what to emit instead — the block, or,
 *   undone in every table and counter, a `guard:*` decision — so the counts and the
 *   stream stay exactly what they would have been had the check been synchronous.
 *   A check that cannot answer fails safe: no spoofable source is blocked on it (a
 *   `peer-check-failed` report instead, once per source window).
 * - Transit hits never count as evidence against their source.
 */

import { PortanoiaError } from '../errors.js'
import { type Attribution, type Hit, type Proto, RETAIN_HIT, SCAN_KINDS, type ScanKind, SOURCE_ADDRESS } from '../types.js'
import { type Address, type Family, formatAddress, makeAddress, parseAddress } from './addr.js'
import { type PolicyConfig, resolvePolicyConfig } from './config.js'
import type { Action, BreakerState, Decision, ReasonCode, Trigger } from './decision.js'
import { MinuteGauge, MinuteLog } from './breaker.js'
import { type GuardReason, Guards } from './guards.js'
import { ladderStep, Offences } from './offences.js'

/** A block found in the kernel at start (e.g. read from the nft sets). */
export interface AdoptedBlock {
  src: string
  /** Time left; absent for a block without expiry. */
  expiresInMs?: number
  /** The element's original timeout, used to guess `verified` when it is not given. */
  timeoutMs?: number
  /**
   * Whether it came from verified evidence. When absent: a timeout longer than
   * `spoofableTtlMs` (or none) means verified, otherwise spoofable, so adopted
   * spoofable blocks keep counting against `maxActiveBlocks` after a restart.
   */
  verified?: boolean
}

export interface AdoptResult {
  adopted: number
  /** Entries whose `src` is not an address (ignored). */
  invalid: string[]
  /** Adopted blocks on addresses the guards now protect: the caller should remove them. */
  guarded: Array<{ src: string; reason: GuardReason }>
}

export interface ActiveBlock {
  src: string
  family: Family
  verified: boolean
  /** Infinity for adopted blocks without expiry. */
  expiresAt: number
}

export interface PolicyStats {
  hits: number
  /** Hits not addressed to this host (forwarded, multicast): reported as `transit`, never blocked. */
  transitHits: number
  /** Live guard checks made right before a block, and how many refused it. */
  liveChecks: number
  liveRefusals: number
  /** Hits whose source was not an address (a sensor bug if ever non-zero). */
  invalidSources: number
  trackedSources: number
  /** Sources dropped from tracking to respect `maxTrackedSources`. */
  evictions: number
  /** Decisions emitted, by reason. */
  decisions: Record<ReasonCode, number>
  activeBlocks: { verified: number; spoofable: number }
  /** New spoofable blocks in the trailing minute. */
  spoofableBlocksLastMinute: number
  breaker: BreakerState
  breakerCause?: Exclude<BreakerCause, 'report-capped'>
  breakerTrips: number
  /** Hits reported only through a breaker's totals (either breaker), since start. */
  suppressedHits: number
  /** 'open' while per-source decisions about spoofable sources are suspended (`report-capped`). */
  reportBreaker: BreakerState
  reportBreakerTrips: number
  /** Sources handled without a decision of their own inside either breaker, since start. */
  suppressedSources: number
}

export interface PolicyEngineOptions {
  config?: Partial<PolicyConfig>
  guards?: Guards
  /** Milliseconds; default Date.now. */
  now?: () => number
  /**
   * The kernel's answer for the one address about to be blocked, asked right before
   * every block (never per hit): why it must not be blocked now (a live TCP/SCTP peer,
   * an address that just became the host's), or null. Default: the snapshot guards only.
   */
  liveGuard?: (src: Address) => GuardReason | null
  /**
   * Whether a hit's destination (canonical text) is this host: an own unicast address
   * or a broadcast. False makes the hit transit. Default: every hit is local.
   */
  isLocal?: (dst: string) => boolean
  /**
   * The history of verified blocks per address, for the escalation ladder
   * (`blockTtlLadderMs`); the daemon passes the one it loaded from its state file.
   * Default: a new, empty one.
   */
  offences?: Offences
  /**
   * The caller checks every block further before carrying it out (asynchronously: the
   * daemon asks the kernel about peers off the JS thread, batched) and calls vet()
   * with the answer for each block decision it was handed. Until then the block is
   * held: the source is `already-blocked`, guard changes do not lift it, and an
   * end-of-window summary of it waits. Default false.
   */
  vetBlocks?: boolean
}

type BreakerCause = 'rate-capped' | 'active-cap' | 'report-capped'

/**
 * The caller's answer for a held block (vet()): a guard that refuses it, null to let
 * it pass, or 'unchecked' when the check could not answer.
 */
export type VetAnswer = GuardReason | null | 'unchecked'

interface Verdict {
  action: Action
  reason: ReasonCode
  verified: boolean
  ttlMs?: number
  expiresAt?: number
  upgrade?: boolean
  offence?: number
  breaker?: BreakerState
  /** Counted into this open breaker instead of being reported. */
  suppress?: Breaker
  /** Waiting for the source's attribution: nothing is emitted until reattribute(). */
  hold?: true
  /** A block for the caller to vet (vetBlocks): how to undo it. */
  vet?: Omit<Vetting, 'src' | 'held'>
}

/** A block decision handed out before the caller's own check answered (vetBlocks). */
interface Vetting {
  src: string
  /** The block's record: made by it, or (reapplied) the one it puts back. */
  record: BlockRecord
  /** True when the decision did not make `record` (reapplied): a refusal keeps it. */
  putBack?: boolean
  /** The spoofable block a verified one replaced: back in force if the new one is refused. */
  displaced?: BlockRecord
  /** When a new spoofable block entered the rate cap's log. */
  rateAt?: number
  /** A verified block's place on the escalation ladder, and the history it replaced. */
  offence?: { before: { count: number; last: number } | undefined }
  /** End-of-window summaries of the source that came due meanwhile: they would speak of the block. */
  held: Decision[]
}

interface BlockRecord {
  family: Family
  verified: boolean
  expiresAt: number
  /** The hit that led to the block; absent for adopted blocks. */
  trigger?: Trigger
  /** When the firewall said the block is in the kernel (confirm()); unset until then. */
  confirmedAt?: number
  /** Refused by the caller's check (vetBlocks): never put back in force. */
  refused?: boolean
}

interface SourceState {
  src: string
  addr: Address
  windowStart: number
  firstSeen: number
  lastSeen: number
  count: number
  verifiedCount: number
  /** proto index × 65536 + port; a short array, linear search beats a Set at this size. */
  ports: number[]
  portsTruncated: boolean
  /** Bit i set for SCAN_KINDS[i]. */
  kinds: number
  lastHit: Hit
  /** `guards.check()` result, valid while `guardGeneration` matches the guards'. */
  guard: GuardReason | null
  guardGeneration: number
  emitted: Verdict | null
  last: Verdict | null
  sinceEmit: number
  demandCounted: boolean
  reportCounted: boolean
  /** The breaker this source was last counted into (a source counts once per breaker). */
  suppressedBy: Breaker | null
  /** Packets whose attribution settled plausible (or verified by the source's memory), and forged. */
  plausible: number
  forged: number
  /**
   * Resets from a spoofable source: answers, never probes (RFC 9293 never sends a RST
   * unprompted). A forged SYN that claims a neighbour makes a tripwire listener send
   * it a SYN-ACK, and its own kernel resets: a real packet from an innocent address.
   * Counted as hits, never as evidence that the source probed this host.
   */
  resets: number
  /** The latest packet's attribution was still being checked. */
  pending: boolean
  /** Evidence names its packets carried, first seen first, at most MAX_EVIDENCE. */
  evidence: string[]
  /**
   * The caller's check (vetBlocks) could not answer for a spoofable block of this
   * source: it is not blocked, nor asked about again, for the rest of its window.
   */
  unchecked?: boolean
}

interface Breaker {
  cause: BreakerCause
  openedAt: number
  src: string
  family: Family
  hit: Hit
  sources: number
  hits: number
}

const MINUTE_MS = 60_000
/**
 * A handshake accepted this long after the firewall confirmed a block proves the
 * block missing. Shorter gaps can be a handshake that completed before the block
 * and was accepted (stamped) just after; the margin keeps that race from reading as
 * proof, and the nft monitor and the reconcile timer cover the gap.
 */
export const REAPPLY_MARGIN_MS = 1000
const MAINTAIN_EVERY_MS = 1000
// Guards whose addresses are few (the host's own facts): their decisions stay one per
// source and window even under the report breaker. `allowlist` and `special` cover
// whole ranges a forger can draw a million sources from.
const FEW_ADDRESS_GUARDS: ReadonlySet<ReasonCode> = new Set(['guard:self', 'guard:gateway', 'guard:resolver', 'guard:peer'])
const PROTO_INDEX: Readonly<Record<Proto, number>> = { tcp: 0, udp: 1, sctp: 2, ip: 3 }
const PROTO_BY_INDEX: readonly Proto[] = ['tcp', 'udp', 'sctp', 'ip']
const KIND_INDEX: ReadonlyMap<string, number> = new Map(SCAN_KINDS.map((k, i) => [k, i]))
const NO_DECISIONS: readonly Decision[] = Object.freeze([])
const MAX_EVIDENCE = 16

/** A source's attribution over its window; `pending` while only unsettled answers vouch for it. */
/** A RST (with or without ACK) from a source that did not complete a handshake. */
function isReset(hit: Hit): boolean {
  return hit.kind === 'rst' && !hit.verified
}

function sourceAttribution(st: SourceState): Attribution | 'pending' {
  if (st.verifiedCount > 0) return 'verified'
  if (st.plausible > 0) return 'plausible'
  if (st.pending) return 'pending'
  return st.forged > 0 ? 'forged' : 'plausible'
}

/** What a decision says: a source still being checked is plausible so far. */
function reportedAttribution(st: SourceState): Attribution {
  const a = sourceAttribution(st)
  return a === 'pending' ? 'plausible' : a
}

function addEvidence(st: SourceState, names: readonly string[]): void {
  for (const n of names) {
    if (n === 'pending' || st.evidence.includes(n)) continue
    if (st.evidence.length >= MAX_EVIDENCE) return
    st.evidence.push(n)
  }
}

function rank(v: Verdict): number {
  if (v.action === 'block') return 3
  if (v.action === 'report') return 2
  return v.reason === 'below-threshold' ? 0 : 1
}

function zeroCounts(): Record<ReasonCode, number> {
  return {
    blocked: 0,
    'already-blocked': 0,
    'below-threshold': 0,
    'spoofable-report-only': 0,
    'guard:self': 0,
    'guard:gateway': 0,
    'guard:resolver': 0,
    'guard:peer': 0,
    'guard:allowlist': 0,
    'guard:special': 0,
    'rate-capped': 0,
    'active-cap': 0,
    'dry-run': 0,
    'report-capped': 0,
    transit: 0,
    reapplied: 0,
    forged: 0,
    'peer-check-failed': 0,
    'reset-only': 0,
  }
}

function triggerOf(hit: Hit): Trigger {
  return {
    dst: hit.dst,
    dstPort: hit.dstPort,
    srcPort: hit.srcPort,
    proto: hit.proto,
    kind: hit.kind,
    interface: hit.interface,
  }
}

export class PolicyEngine {
  #config: Readonly<PolicyConfig>
  readonly #guards: Guards
  readonly #now: () => number
  #blockAll: boolean
  readonly #dryRun: boolean
  readonly #liveGuard: ((src: Address) => GuardReason | null) | null
  readonly #isLocal: ((dst: string) => boolean) | null
  readonly #offences: Offences
  readonly #vetBlocks: boolean
  /** Block decisions handed out and not yet vetted, by the decision object, and the latest per source. */
  readonly #vetting = new Map<Decision, Vetting>()
  readonly #vettingBySrc = new Map<string, Vetting>()

  // Insertion order is window-start order (a new window re-inserts), so the first
  // key is always the oldest: that is the eviction victim.
  readonly #verifiedSources = new Map<string, SourceState>()
  readonly #spoofableSources = new Map<string, SourceState>()
  /** Sources of transit hits: their own table, so forwarded traffic is never evidence. */
  readonly #transitSources = new Map<string, SourceState>()
  readonly #verifiedBlocks = new Map<string, BlockRecord>()
  readonly #spoofableBlocks = new Map<string, BlockRecord>()
  /** New spoofable blocks in the trailing minute; never more than the cap. */
  readonly #recentBlocks = new MinuteLog()
  /** Spoofable sources that crossed the threshold: the blocking breaker's view of pressure. */
  readonly #demand = new MinuteGauge()
  /** Per-source decisions about spoofable sources in the trailing minute; never more than the cap. */
  readonly #recentReports = new MinuteLog()
  /** Spoofable sources wanting a decision of their own: the report breaker's view of pressure. */
  readonly #reportDemand = new MinuteGauge()
  readonly #cursors = new Map<Map<string, SourceState>, Iterator<string>>()
  #breaker: Breaker | null = null
  #reportBreaker: Breaker | null = null
  #lastMaintain = -Infinity

  #hits = 0
  #transitHits = 0
  #liveChecks = 0
  #liveRefusals = 0
  #invalid = 0
  #evictions = 0
  #breakerTrips = 0
  #reportBreakerTrips = 0
  #suppressedHits = 0
  #suppressedSources = 0
  readonly #decisions = zeroCounts()

  constructor(options: PolicyEngineOptions = {}) {
    this.#config = Object.freeze(resolvePolicyConfig(options.config))
    this.#guards = options.guards ?? new Guards()
    this.#now = options.now ?? Date.now
    this.#liveGuard = options.liveGuard ?? null
    this.#isLocal = options.isLocal ?? null
    this.#offences = options.offences ?? new Offences()
    this.#vetBlocks = options.vetBlocks === true
    this.#blockAll = this.#config.block === 'all'
    this.#dryRun = this.#config.dryRun || this.#config.block === 'off'
  }

  get config(): Readonly<PolicyConfig> {
    return this.#config
  }

  get guards(): Guards {
    return this.#guards
  }

  /** The escalation ladder's history (what the daemon saves in its state file). */
  get offences(): Offences {
    return this.#offences
  }

  /**
   * Why `src` must not be blocked now — the guards' snapshot, then the kernel's
   * synchronous live answer (`liveGuard`), as before every block the engine makes — or
   * null. For blocks the engine does not decide itself (an operator's). With
   * `vetBlocks` the caller asks its own further check, as it does for the engine's.
   */
  guardOf(src: string): GuardReason | null {
    const addr = parseAddress(src)
    if (addr === null) return null
    return this.#guards.check(addr) ?? this.#liveGuard?.(addr) ?? null
  }

  /**
   * A new policy for a running engine (a reload), keeping what it knows: tracked
   * sources, blocks and their expiry (a shorter TTL applies to new blocks only, so
   * no block is shortened), the breaker. New thresholds and caps apply from the next
   * hit; a lower `maxTrackedSources` is reached by evicting as new sources arrive.
   * Dry-run cannot change here (a firewall responder is made for one mode): that
   * throws PORTANOIA_BAD_POLICY and changes nothing.
   */
  reconfigure(config: Partial<PolicyConfig>): void {
    const next = resolvePolicyConfig(config)
    if (next.dryRun || next.block === 'off' ? !this.#dryRun : this.#dryRun) {
      throw new PortanoiaError('PORTANOIA_BAD_POLICY', 'dry-run (dryRun, block off) cannot change on a running engine', {
        hint: 'restart with the new setting',
      })
    }
    this.#config = Object.freeze(next)
    this.#blockAll = next.block === 'all'
  }

  /**
   * Accounts one hit and returns the decisions to emit now: usually none or one;
   * also any window summaries and a breaker close that fell due. Never throws on
   * packet data.
   */
  observe(hit: Hit): readonly Decision[] {
    const now = this.#now()
    this.#hits++
    let out: Decision[] | null = null
    const push = (d: Decision): void => {
      this.#decisions[d.reason]++
      ;(out ??= []).push(d)
    }
    this.#maintain(now, push, false)

    const transit = this.#isLocal !== null && !this.#isLocal(hit.dst)
    if (transit) this.#transitHits++
    const st = this.#track(hit, now, push, transit)
    if (st === null) {
      this.#invalid++
      return out ?? NO_DECISIONS
    }

    this.#decide(st, transit ? { action: 'none', reason: 'transit', verified: false } : this.#evaluate(st, now), now, push)
    return out ?? NO_DECISIONS
  }

  /**
   * A tracked source's attribution settled (the attributor's answer to a packet that
   * was still being checked): the source is decided again, as if a hit had come, but
   * nothing is counted as a hit. Returns the decisions to emit now (a block that was
   * waiting for the evidence, or `forged`).
   */
  reattribute(src: string, answer: { attribution: Attribution; evidence: readonly string[] }, hit?: Hit): readonly Decision[] {
    // A reset's answer was never waited for, nor does it count (see SourceState.resets).
    if (hit !== undefined && isReset(hit)) return NO_DECISIONS
    const st = this.#verifiedSources.get(src) ?? this.#spoofableSources.get(src)
    if (st === undefined) return NO_DECISIONS
    const now = this.#now()
    let out: Decision[] | null = null
    const push = (d: Decision): void => {
      this.#decisions[d.reason]++
      ;(out ??= []).push(d)
    }
    st.pending = false
    if (answer.attribution === 'forged') st.forged++
    else st.plausible++
    addEvidence(st, answer.evidence)
    this.#decide(st, this.#evaluate(st, now), now, push, true)
    return out ?? NO_DECISIONS
  }

  /** Emits (or counts) the verdict for a source, per the one-decision-per-window rules. */
  #decide(st: SourceState, verdict: Verdict, now: number, push: (d: Decision) => void, settled = false): void {
    if (verdict.hold === true) {
      if (!settled) st.sinceEmit++
      return
    }
    const v = this.#capReports(st, verdict, now)
    st.last = v
    if (v.suppress !== undefined) {
      const b = v.suppress
      b.hits++
      this.#suppressedHits++
      if (st.suppressedBy !== b) {
        st.suppressedBy = b
        b.sources++
        this.#suppressedSources++
      }
      if (!settled) st.sinceEmit++
      return
    }
    const e = st.emitted
    if (
      e === null ||
      v.action === 'block' ||
      v.breaker !== undefined ||
      rank(v) > rank(e) ||
      // A refusal is said, even after a lower-ranked decision was (a live guard that
      // refused an upgrade to a verified block).
      (v.reason !== e.reason && v.reason.startsWith('guard:')) ||
      // Proof that the address is real matters only where something may be done about it.
      (v.verified && !e.verified && v.action !== 'none')
    ) {
      const d = this.#build(st, v, now, false)
      push(d)
      if (v.vet !== undefined) this.#hold(d, st.src, v.vet)
      st.emitted = v
      st.sinceEmit = 0
    } else if (!settled) {
      st.sinceEmit++
    }
  }

  /**
   * Time-driven work: expire blocks, close ended windows (their summaries), close
   * the breaker when pressure has fallen. Call about once a second; `observe` also
   * does it, at most once a second, but a quiet sensor calls nothing.
   */
  tick(): readonly Decision[] {
    const out: Decision[] = []
    this.#maintain(
      this.#now(),
      (d) => {
        this.#decisions[d.reason]++
        out.push(d)
      },
      true,
    )
    return out
  }

  /**
   * The answer of the caller's own check for a block decision it held (`vetBlocks`):
   * the decisions to emit in its place, in order. Passed (`answer` null, and the
   * snapshot guards still silent): `d`, then any end-of-window summary of its source
   * that came due meanwhile. Refused (a GuardReason): the block is undone — its record
   * (a spoofable block it replaced comes back), its place in the rate cap or on the
   * escalation ladder, its decision count — and a `guard:*` decision (with the refusal remembered as a live
   * guard's) stands in for it, the held summaries saying the same. `'unchecked'`: the
   * check could not answer (it failed, timed out, or too much was waiting). It fails
   * safe: a spoofable source is not blocked — the block is undone as for a refusal but
   * keeps its place in the rate cap (so a check that keeps failing under a flood still
   * trips the breaker), and a `peer-check-failed` report stands in for it, the source
   * not asked about again until its window ends; a verified source proved its address
   * with a handshake, and its block passes. A block the engine no longer holds (an
   * operator's unblock released it meanwhile) is dropped: [] and its count undone. A
   * decision that was not handed out to be held is returned as it is.
   */
  vet(d: Decision, answer: VetAnswer): Decision[] {
    const entry = this.#vetting.get(d)
    if (entry === undefined) return [d]
    this.#vetting.delete(d)
    const src = entry.src
    if (this.#vettingBySrc.get(src) === entry) this.#vettingBySrc.delete(src)
    const now = this.#now()
    const current = this.#verifiedBlocks.get(src) ?? this.#spoofableBlocks.get(src)
    if (current === undefined) {
      this.#decisions[d.reason]--
      return []
    }
    const guard = (answer === 'unchecked' ? null : answer) ?? this.#guards.check(src)
    const unchecked = guard === null && answer === 'unchecked' && !d.verified
    if (guard === null && !unchecked) {
      for (const h of entry.held) this.#decisions[h.reason]++
      return [d, ...entry.held]
    }
    this.#decisions[d.reason]--
    if (entry.putBack !== true) {
      const rec = entry.record
      rec.refused = true
      const table = rec.verified ? this.#verifiedBlocks : this.#spoofableBlocks
      if (table.get(src) === rec) {
        table.delete(src)
        const prev = entry.displaced
        if (prev !== undefined && prev.refused !== true && prev.expiresAt > now) this.#spoofableBlocks.set(src, prev)
      }
    }
    const v: Verdict =
      guard !== null
        ? { action: 'none', reason: `guard:${guard}`, verified: d.verified }
        : { action: 'report', reason: 'peer-check-failed', verified: d.verified }
    if (guard !== null) {
      if (entry.rateAt !== undefined) this.#recentBlocks.remove(entry.rateAt)
      if (entry.offence !== undefined) this.#offences.restore(src, entry.offence.before)
      this.#liveRefusals++
    }
    const st = this.#lookup(src, false)?.[1]
    if (st !== undefined) {
      if (guard !== null) {
        st.guard = guard
        st.guardGeneration = this.#guards.generation
      } else {
        st.unchecked = true
      }
      st.emitted = v
      st.last = v
    }
    const out: Decision[] = [d, ...entry.held].map((x) => {
      const r: Decision = { ...x, action: v.action, reason: v.reason, time: x === d ? now : x.time }
      delete r.ttlMs
      delete r.expiresAt
      delete r.upgrade
      this.#decisions[r.reason]++
      return r
    })
    return out
  }

  #hold(d: Decision, src: string, vet: NonNullable<Verdict['vet']>): void {
    const entry: Vetting = { ...vet, src, held: [] }
    this.#vetting.set(d, entry)
    this.#vettingBySrc.set(src, entry)
  }

  /**
   * Takes over blocks that already exist in the kernel (a restart), so their sources
   * are `already-blocked` and spoofable ones count against the active cap.
   */
  adopt(blocks: readonly AdoptedBlock[]): AdoptResult {
    const now = this.#now()
    const result: AdoptResult = { adopted: 0, invalid: [], guarded: [] }
    const sorted = [...blocks].sort(
      (a, b) => (a.expiresInMs ?? Number.POSITIVE_INFINITY) - (b.expiresInMs ?? Number.POSITIVE_INFINITY),
    )
    for (const b of sorted) {
      const addr = typeof b.src === 'string' ? parseAddress(b.src) : null
      if (addr === null) {
        result.invalid.push(String(b.src))
        continue
      }
      const src = formatAddress(addr)
      const left = b.expiresInMs ?? Number.POSITIVE_INFINITY
      if (!(left > 0)) continue
      const verified =
        b.verified ?? (b.timeoutMs === undefined ? left > this.#config.spoofableTtlMs : b.timeoutMs > this.#config.spoofableTtlMs)
      // Adopted blocks are in the kernel: confirmed now.
      const rec: BlockRecord = { family: addr.family, verified, expiresAt: now + left, confirmedAt: now }
      this.#verifiedBlocks.delete(src)
      this.#spoofableBlocks.delete(src)
      ;(verified ? this.#verifiedBlocks : this.#spoofableBlocks).set(src, rec)
      result.adopted++
      const guard = this.#guards.check(addr)
      if (guard !== null) result.guarded.push({ src, reason: guard })
    }
    return result
  }

  /** The firewall confirmed the block on `src` is in the kernel (its write returned). */
  confirm(src: string): void {
    const rec = this.#recordOf(src)
    if (rec !== undefined) rec.confirmedAt = this.#now()
  }

  /** When the firewall confirmed the running block on `src`; undefined when none is confirmed. */
  confirmedAt(src: string): number | undefined {
    const rec = this.#recordOf(src)
    return rec !== undefined && rec.expiresAt > this.#now() ? rec.confirmedAt : undefined
  }

  /** Blocks the firewall has confirmed and that are not yet expired, with when. */
  confirmedBlocks(): Array<ActiveBlock & { confirmedAt: number }> {
    const now = this.#now()
    const out: Array<ActiveBlock & { confirmedAt: number }> = []
    for (const table of [this.#verifiedBlocks, this.#spoofableBlocks]) {
      for (const [src, r] of table) {
        if (r.expiresAt > now && r.confirmedAt !== undefined) {
          out.push({ src, family: r.family, verified: r.verified, expiresAt: r.expiresAt, confirmedAt: r.confirmedAt })
        }
      }
    }
    return out
  }

  /** Sets the end of a block to what the kernel says (the kernel is the truth). */
  setExpiry(src: string, expiresAt: number): void {
    const rec = this.#recordOf(src)
    if (rec !== undefined && Number.isFinite(expiresAt)) rec.expiresAt = expiresAt
  }

  #recordOf(src: string): BlockRecord | undefined {
    const addr = parseAddress(src)
    if (addr === null) return undefined
    const key = formatAddress(addr)
    return this.#verifiedBlocks.get(key) ?? this.#spoofableBlocks.get(key)
  }

  /** Forgets a block (after an operator's unblock). True when there was one. */
  release(src: string): boolean {
    const addr = parseAddress(src)
    if (addr === null) return false
    const key = formatAddress(addr)
    const a = this.#verifiedBlocks.delete(key)
    const b = this.#spoofableBlocks.delete(key)
    return a || b
  }

  /**
   * After the guard facts changed: every active block (made here or adopted) on an
   * address the guards now protect is forgotten and returned as an `unblock` decision
   * (reason `guard:*`) for the caller to carry out.
   */
  liftGuarded(): Decision[] {
    const now = this.#now()
    const out: Decision[] = []
    for (const table of [this.#verifiedBlocks, this.#spoofableBlocks]) {
      for (const [src, r] of table) {
        // A block still being vetted is not in the firewall yet; vet() asks the guards again.
        if (r.expiresAt <= now || this.#vettingBySrc.has(src)) continue
        const reason = this.#guards.check(src)
        if (reason === null) continue
        table.delete(src)
        const d = this.unblockDecision(src, reason, r)
        if (d !== null) out.push(d)
      }
    }
    return out
  }

  /**
   * An `unblock` decision for `src` (which the engine forgets, if it held a block):
   * also for blocks the engine never knew, found in the firewall. Null for a non-address.
   */
  unblockDecision(src: string, reason: GuardReason, record?: { verified: boolean; trigger?: Trigger }): Decision | null {
    const addr = parseAddress(src)
    if (addr === null) return null
    const key = formatAddress(addr)
    const rec = record ?? this.#verifiedBlocks.get(key) ?? this.#spoofableBlocks.get(key)
    this.#verifiedBlocks.delete(key)
    this.#spoofableBlocks.delete(key)
    const now = this.#now()
    const d: Decision = {
      action: 'unblock',
      reason: `guard:${reason}`,
      src: key,
      family: addr.family,
      verified: rec?.verified ?? false,
      attribution: rec?.verified === true ? 'verified' : 'plausible',
      evidence: [],
      ports: [],
      portsTruncated: false,
      kinds: [],
      count: 0,
      verifiedCount: 0,
      firstSeen: now,
      lastSeen: now,
      windowStart: now,
      windowMs: this.#config.windowMs,
      time: now,
      final: false,
    }
    if (rec?.trigger !== undefined) d.trigger = rec.trigger
    this.#decisions[d.reason]++
    return d
  }

  /** Whether the engine holds an unexpired block for `src` (in dry-run: a simulated one). */
  isBlocked(src: string): boolean {
    const addr = parseAddress(src)
    return addr !== null && this.#activeBlock(formatAddress(addr), this.#now()) !== undefined
  }

  activeBlocks(): ActiveBlock[] {
    const now = this.#now()
    const out: ActiveBlock[] = []
    for (const table of [this.#verifiedBlocks, this.#spoofableBlocks]) {
      for (const [src, r] of table) {
        if (r.expiresAt > now) out.push({ src, family: r.family, verified: r.verified, expiresAt: r.expiresAt })
      }
    }
    return out
  }

  stats(): PolicyStats {
    const now = this.#now()
    this.#expireBlocks(now)
    const s: PolicyStats = {
      hits: this.#hits,
      invalidSources: this.#invalid,
      transitHits: this.#transitHits,
      liveChecks: this.#liveChecks,
      liveRefusals: this.#liveRefusals,
      trackedSources: this.#verifiedSources.size + this.#spoofableSources.size + this.#transitSources.size,
      evictions: this.#evictions,
      decisions: { ...this.#decisions },
      activeBlocks: { verified: this.#verifiedBlocks.size, spoofable: this.#spoofableBlocks.size },
      spoofableBlocksLastMinute: this.#recentBlocks.count(now),
      breaker: this.#breaker === null ? 'closed' : 'open',
      breakerTrips: this.#breakerTrips,
      suppressedHits: this.#suppressedHits,
      reportBreaker: this.#reportBreaker === null ? 'closed' : 'open',
      reportBreakerTrips: this.#reportBreakerTrips,
      suppressedSources: this.#suppressedSources,
    }
    // The blocking breaker is only ever opened with a blocking cause.
    if (this.#breaker !== null) s.breakerCause = this.#breaker.cause as Exclude<BreakerCause, 'report-capped'>
    return s
  }

  // -------------------------------------------------------------------------

  #lookup(src: string, transit: boolean): [Map<string, SourceState>, SourceState] | null {
    if (transit) {
      const t = this.#transitSources.get(src)
      return t === undefined ? null : [this.#transitSources, t]
    }
    const v = this.#verifiedSources.get(src)
    if (v !== undefined) return [this.#verifiedSources, v]
    const s = this.#spoofableSources.get(src)
    return s === undefined ? null : [this.#spoofableSources, s]
  }

  /** The source's state with this hit added, or null when `hit.src` is not an address. */
  #track(hit: Hit, now: number, push: (d: Decision) => void, transit: boolean): SourceState | null {
    // Sources repeat (a scanner sends many packets), and the sensor's text is
    // usually canonical already: try it as a key before parsing.
    let found = this.#lookup(hit.src, transit)
    let src = hit.src
    let addr: Address
    if (found !== null) {
      addr = found[1].addr
    } else {
      // A sensor's hit carries its source as numbers from the record: no text to parse.
      const numeric = hit[SOURCE_ADDRESS]?.()
      const parsed = numeric !== undefined ? makeAddress(numeric.family, numeric.value) : parseAddress(hit.src)
      if (parsed === null) return null
      addr = parsed
      // The sensor's text is canonical unless an IPv4-mapped IPv6 source folded to IPv4.
      src = numeric !== undefined && numeric.family === parsed.family ? hit.src : formatAddress(parsed)
      if (src !== hit.src) found = this.#lookup(src, transit)
    }
    // Kept until the source's next hit or its window's end: a hit of its own, not a view
    // that would keep the sensor's whole batch alive (types.ts RETAIN_HIT).
    const kept = hit[RETAIN_HIT]?.() ?? hit
    let table = found?.[0] ?? this.#spoofableSources
    let st = found?.[1]
    if (st !== undefined && now >= st.windowStart + this.#config.windowMs) {
      this.#endWindow(st, table, now, push)
      st = undefined
    }
    if (st === undefined) {
      table = transit ? this.#transitSources : hit.verified ? this.#verifiedSources : this.#spoofableSources
      st = {
        src,
        addr,
        windowStart: now,
        firstSeen: now,
        lastSeen: now,
        count: 0,
        verifiedCount: 0,
        ports: [],
        portsTruncated: false,
        kinds: 0,
        lastHit: kept,
        guard: null,
        guardGeneration: -1,
        emitted: null,
        last: null,
        sinceEmit: 0,
        demandCounted: false,
        reportCounted: false,
        suppressedBy: null,
        plausible: 0,
        forged: 0,
        resets: 0,
        pending: false,
        evidence: [],
      }
      this.#insert(table, st)
    } else if (hit.verified && !transit && table === this.#spoofableSources) {
      // Verified evidence moves the source out of reach of forged-traffic churn.
      this.#spoofableSources.delete(src)
      this.#insert(this.#verifiedSources, st)
    }
    st.count++
    if (hit.verified && !transit) st.verifiedCount++
    if (isReset(hit)) {
      // Its attribution speaks for the reset, not for a probe: neither counted nor waited for.
      st.resets++
    } else {
      const evidence = hit.evidence
      st.pending = !hit.verified && evidence.includes('pending')
      if (!hit.verified && !st.pending) {
        if (hit.attribution === 'forged') st.forged++
        else st.plausible++
      }
      if (evidence.length > 0) addEvidence(st, evidence)
    }
    st.lastSeen = now
    st.lastHit = kept
    st.kinds |= 1 << (KIND_INDEX.get(hit.kind) ?? 0)
    const portKey = (PROTO_INDEX[hit.proto] ?? 0) * 65536 + hit.dstPort
    if (!st.ports.includes(portKey)) {
      if (st.ports.length < this.#config.maxPortsPerSource) st.ports.push(portKey)
      else st.portsTruncated = true
    }
    return st
  }

  #insert(table: Map<string, SourceState>, st: SourceState): void {
    if (table.size >= this.#config.maxTrackedSources && this.#evictOldest(table)) this.#evictions++
    table.set(st.src, st)
  }

  /**
   * Deletes the table's oldest entry. A fresh `keys().next()` would be O(n) here:
   * V8 leaves deleted slots in place until a rehash and a new iterator walks them
   * from the start, so under churn every eviction rescans all earlier evictions.
   * One long-lived iterator walks them once: every key before its position has
   * been deleted, so the next key it yields is the oldest present one.
   */
  #evictOldest(table: Map<string, SourceState>): boolean {
    for (let attempt = 0; attempt < 2; attempt++) {
      let cursor = this.#cursors.get(table)
      if (cursor === undefined) {
        cursor = table.keys()
        this.#cursors.set(table, cursor)
      }
      const next = cursor.next()
      if (next.done !== true) {
        table.delete(next.value)
        return true
      }
      // An exhausted iterator never sees later insertions: start a new one.
      this.#cursors.delete(table)
    }
    return false
  }

  #evaluate(st: SourceState, now: number): Verdict {
    const cfg = this.#config
    const verified = st.verifiedCount > 0
    if (st.guardGeneration !== this.#guards.generation) {
      st.guard = this.#guards.check(st.addr)
      st.guardGeneration = this.#guards.generation
    }
    const guard = st.guard
    if (guard !== null) return { action: 'none', reason: `guard:${guard}`, verified }

    const block = this.#activeBlock(st.src, now)
    const already = (b: BlockRecord): Verdict => {
      const v: Verdict = { action: 'none', reason: 'already-blocked', verified }
      if (Number.isFinite(b.expiresAt)) v.expiresAt = b.expiresAt
      return v
    }
    if (verified) {
      if (block?.verified === true) {
        // A handshake completed although the kernel should drop this source: the
        // block is gone (a flushed ruleset, a deleted element). Put it back, once per
        // confirmation, with the time it has left.
        const hit = st.lastHit
        if (hit.verified && block.confirmedAt !== undefined && hit.time > block.confirmedAt + REAPPLY_MARGIN_MS && Number.isFinite(block.expiresAt)) {
          block.confirmedAt = undefined
          if (this.#dryRun) return { action: 'none', reason: 'already-blocked', verified, expiresAt: block.expiresAt }
          // Guards hold at the moment of blocking, also when a block is put back.
          const put: Verdict = {
            action: 'block',
            reason: 'reapplied',
            verified,
            ttlMs: Math.max(1000, Math.ceil((block.expiresAt - now) / 1000) * 1000),
            expiresAt: block.expiresAt,
          }
          if (this.#vetBlocks) put.vet = { record: block, putBack: true }
          return this.#refuseLive(st, true) ?? put
        }
        return already(block)
      }
      if (st.verifiedCount < cfg.threshold) {
        return block !== undefined ? already(block) : { action: 'none', reason: 'below-threshold', verified }
      }
      return this.#refuseLive(st, true) ?? this.#applyBlock(st, now, true, block !== undefined)
    }

    if (block !== undefined) return already(block)
    if (st.count < cfg.spoofableThreshold) return { action: 'none', reason: 'below-threshold', verified }
    if (!this.#blockAll) return { action: 'report', reason: 'spoofable-report-only', verified }
    // Never act on a forged source, and wait for the evidence before acting at all.
    const attribution = sourceAttribution(st)
    if (attribution === 'forged') return { action: 'report', reason: 'forged', verified }
    if (attribution === 'pending') return { action: 'none', reason: 'below-threshold', verified, hold: true }
    // Only answers from it (resets): someone may have made this host write to it.
    if (st.count - st.resets < cfg.spoofableThreshold) return { action: 'report', reason: 'reset-only', verified }

    // The check right before its block could not answer this window: no new attempt.
    if (st.unchecked === true) return { action: 'report', reason: 'peer-check-failed', verified }
    if (!st.demandCounted) {
      st.demandCounted = true
      this.#demand.add(now)
    }
    if (this.#breaker !== null) {
      return { action: 'report', reason: this.#breaker.cause, verified, suppress: this.#breaker }
    }
    if (this.#recentBlocks.count(now) >= cfg.maxBlocksPerMinute) return this.#openBreaker('rate-capped', st, now)
    if (this.#spoofableBlocks.size >= cfg.maxActiveBlocks) {
      this.#expireTable(this.#spoofableBlocks, now)
      if (this.#spoofableBlocks.size >= cfg.maxActiveBlocks) return this.#openBreaker('active-cap', st, now)
    }
    return this.#refuseLive(st, false) ?? this.#applyBlock(st, now, false, false)
  }

  /**
   * The live guard check, right before a block: the kernel's answer for this one
   * address. A refusal is remembered with the guard generation, as a snapshot guard
   * would be, so the source's next hits do not ask again until the facts change.
   */
  #refuseLive(st: SourceState, verified: boolean): Verdict | null {
    if (this.#liveGuard === null) return null
    this.#liveChecks++
    const reason = this.#liveGuard(st.addr)
    if (reason === null) return null
    this.#liveRefusals++
    st.guard = reason
    st.guardGeneration = this.#guards.generation
    return { action: 'none', reason: `guard:${reason}`, verified }
  }

  #applyBlock(st: SourceState, now: number, verified: boolean, upgrade: boolean): Verdict {
    const cfg = this.#config
    // Only verified blocks climb the ladder: forged evidence must not lengthen a
    // victim's next block. Dry-run says which step it would be without counting it.
    let offence: number | undefined
    let before: { offence: { before: { count: number; last: number } | undefined } } | undefined
    if (verified && !this.#dryRun) before = { offence: { before: this.#offences.get(st.src) } }
    if (verified) offence = this.#dryRun ? this.#offences.next(st.src, now, cfg.forgetAfterMs) : this.#offences.record(st.src, now, cfg.forgetAfterMs)
    const ttlMs = offence !== undefined ? ladderStep(cfg.blockTtlLadderMs, offence) : cfg.spoofableTtlMs
    const expiresAt = now + ttlMs
    const rec: BlockRecord = { family: st.addr.family, verified, expiresAt, trigger: triggerOf(st.lastHit) }
    const vet: NonNullable<Verdict['vet']> = { record: rec, ...before }
    if (verified) {
      const displaced = this.#spoofableBlocks.get(st.src)
      if (displaced !== undefined) vet.displaced = displaced
      this.#spoofableBlocks.delete(st.src)
      this.#verifiedBlocks.delete(st.src)
      this.#verifiedBlocks.set(st.src, rec)
    } else {
      this.#spoofableBlocks.set(st.src, rec)
      this.#recentBlocks.add(now)
      vet.rateAt = now
    }
    const v: Verdict = this.#dryRun
      ? { action: 'report', reason: 'dry-run', verified, ttlMs, expiresAt }
      : { action: 'block', reason: 'blocked', verified, ttlMs, expiresAt }
    if (upgrade) v.upgrade = true
    if (offence !== undefined) v.offence = offence
    if (this.#vetBlocks) v.vet = vet
    return v
  }

  #openBreaker(cause: BreakerCause, st: SourceState, now: number): Verdict {
    const b: Breaker = { cause, openedAt: now, src: st.src, family: st.addr.family, hit: st.lastHit, sources: 0, hits: 0 }
    if (cause === 'report-capped') {
      this.#reportBreaker = b
      this.#reportBreakerTrips++
    } else {
      this.#breaker = b
      this.#breakerTrips++
    }
    return { action: 'report', reason: cause, verified: false, breaker: 'open' }
  }

  /**
   * The report cap: the first decision of a spoofable source's window (a report, a
   * below-threshold note, a wide-range guard) is admitted while fewer than
   * `maxReportsPerMinute` were in the trailing minute; the one past it opens the
   * report breaker, and while it is open such sources are counted, not decided.
   * Blocks, escalations of sources already decided, verified sources and the
   * few-address guards pass untouched.
   */
  #capReports(st: SourceState, v: Verdict, now: number): Verdict {
    if (v.verified || v.action === 'block' || st.emitted !== null || v.suppress !== undefined || v.breaker !== undefined) return v
    if (FEW_ADDRESS_GUARDS.has(v.reason)) return v
    if (!st.reportCounted) {
      st.reportCounted = true
      this.#reportDemand.add(now)
    }
    if (this.#reportBreaker !== null) return { ...v, suppress: this.#reportBreaker }
    if (this.#recentReports.count(now) >= this.#config.maxReportsPerMinute) return this.#openBreaker('report-capped', st, now)
    this.#recentReports.add(now)
    return v
  }

  #activeBlock(src: string, now: number): BlockRecord | undefined {
    return this.#liveBlock(this.#verifiedBlocks, src, now) ?? this.#liveBlock(this.#spoofableBlocks, src, now)
  }

  #liveBlock(table: Map<string, BlockRecord>, src: string, now: number): BlockRecord | undefined {
    const r = table.get(src)
    if (r === undefined || r.expiresAt > now) return r
    table.delete(src)
    return undefined
  }

  #expireTable(table: Map<string, BlockRecord>, now: number): void {
    for (const [src, r] of table) if (r.expiresAt <= now) table.delete(src)
  }

  #expireBlocks(now: number): void {
    this.#expireTable(this.#verifiedBlocks, now)
    this.#expireTable(this.#spoofableBlocks, now)
  }

  #maintain(now: number, push: (d: Decision) => void, force: boolean): void {
    if (!force && now - this.#lastMaintain < MAINTAIN_EVERY_MS) return
    this.#lastMaintain = now
    this.#expireBlocks(now)
    for (const table of [this.#verifiedSources, this.#spoofableSources, this.#transitSources]) {
      for (const st of table.values()) {
        if (now >= st.windowStart + this.#config.windowMs) this.#endWindow(st, table, now, push)
      }
    }
    // Hysteresis: close only well below the caps, or every expiring block would
    // re-trip it and the operator would read a flapping breaker.
    const cfg = this.#config
    const b = this.#breaker
    if (
      b !== null &&
      now - b.openedAt >= MINUTE_MS &&
      this.#demand.lastMinute(now) <= Math.floor(cfg.maxBlocksPerMinute / 2) &&
      this.#spoofableBlocks.size <= Math.floor((cfg.maxActiveBlocks * 3) / 4)
    ) {
      this.#breaker = null
      push(this.#breakerClosed(b, now))
    }
    const r = this.#reportBreaker
    if (r !== null && now - r.openedAt >= MINUTE_MS && this.#reportDemand.lastMinute(now) <= Math.floor(cfg.maxReportsPerMinute / 2)) {
      this.#reportBreaker = null
      push(this.#breakerClosed(r, now))
    }
  }

  /** The decision that closes a breaker: the source that opened it, the time open, and the totals. */
  #breakerClosed(b: Breaker, now: number): Decision {
    return {
      action: 'none',
      reason: b.cause,
      src: b.src,
      family: b.family,
      verified: false,
      attribution: 'plausible',
      evidence: [],
      ports: [],
      portsTruncated: false,
      kinds: [],
      count: 0,
      verifiedCount: 0,
      firstSeen: b.openedAt,
      lastSeen: now,
      windowStart: b.openedAt,
      windowMs: now - b.openedAt,
      time: now,
      final: false,
      breaker: 'closed',
      suppressed: { sources: b.sources, hits: b.hits },
      trigger: triggerOf(b.hit),
    }
  }

  #endWindow(st: SourceState, table: Map<string, SourceState>, now: number, push: (d: Decision) => void): void {
    table.delete(st.src)
    const last = st.last
    if (st.emitted === null || st.sinceEmit === 0 || last === null || last.suppress !== undefined) return
    const summary: Verdict = { action: last.action === 'block' ? 'none' : last.action, reason: last.reason, verified: last.verified }
    if (last.expiresAt !== undefined) summary.expiresAt = last.expiresAt
    if (last.ttlMs !== undefined) summary.ttlMs = last.ttlMs
    const d = this.#build(st, summary, now, true)
    // A block still being vetted: the summary waits for the answer (vet()).
    const vetting = this.#vettingBySrc.get(st.src)
    if (vetting !== undefined) vetting.held.push(d)
    else push(d)
  }

  #build(st: SourceState, v: Verdict, now: number, final: boolean): Decision {
    const d: Decision = {
      action: v.action,
      reason: v.reason,
      src: st.src,
      family: st.addr.family,
      verified: v.verified,
      attribution: reportedAttribution(st),
      evidence: [...st.evidence],
      ports: [...st.ports]
        .sort((a, b) => a - b).map((k) => `${k % 65536}/${PROTO_BY_INDEX[Math.floor(k / 65536)]}`),
      portsTruncated: st.portsTruncated,
      kinds: SCAN_KINDS.filter((_, i) => (st.kinds & (1 << i)) !== 0) as ScanKind[],
      count: st.count,
      verifiedCount: st.verifiedCount,
      firstSeen: st.firstSeen,
      lastSeen: st.lastSeen,
      windowStart: st.windowStart,
      windowMs: this.#config.windowMs,
      time: now,
      final,
      trigger: triggerOf(st.lastHit),
    }
    if (v.ttlMs !== undefined) d.ttlMs = v.ttlMs
    if (v.expiresAt !== undefined) d.expiresAt = v.expiresAt
    if (v.upgrade === true) d.upgrade = true
    if (v.offence !== undefined) d.offence = v.offence
    if (v.breaker !== undefined) d.breaker = v.breaker
    return d
  }
}
