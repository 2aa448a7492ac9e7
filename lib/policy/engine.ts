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
import { HIT_KEY, type Attribution, type Hit, isAnswer, type Proto, SCAN_KINDS, type ScanKind } from '../types.js'
import { HIT_KEY_WORDS, hitKey, KEY_SOURCE, keyAddress, textKey } from '../hit-key.js'
import { WordMap } from '../word-map.js'
import { type Address, type Family, formatAddress, parseAddress } from './addr.js'
import { type PolicyConfig, resolvePolicyConfig } from './config.js'
import type { Action, BreakerState, Decision, ReasonCode, Trigger } from './decision.js'
import { MinuteGauge, MinuteLog } from './breaker.js'
import { BlockTable } from './block-table.js'
import { CompactSources, DEMAND_COUNTED, REPORT_COUNTED } from './compact-sources.js'
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
  /** The already-blocked verdicts on it (unverified, verified source), made on first use. */
  already?: [Verdict | undefined, Verdict | undefined]
}

const NO_EVIDENCE: readonly string[] = Object.freeze([])

/** One source's window: what it sent, what was decided. One class, so one shape for every source. */
class SourceState {
  // Every field is set in reset(), the one place a new source's values are written: a
  // state is reused for the next new source after #shrink, and must keep nothing of the last.
  src!: string
  addr!: Address
  /** Its slot in the source table that holds it (lib/word-map.ts). */
  slot!: number
  windowStart!: number
  firstSeen!: number
  lastSeen!: number
  count!: number
  verifiedCount!: number
  /** proto index × 65536 + port; a short array, linear search beats a Set at this size. */
  ports!: number[]
  portsTruncated!: boolean
  /** Bit i set for SCAN_KINDS[i]. */
  kinds!: number
  /**
   * The latest hit's fields a decision reports (its trigger) or a reapply needs: copied,
   * so the engine keeps no hit (a kept hit would keep its batch, or cost a copy per hit).
   */
  lastTime!: number
  lastVerified!: boolean
  lastDst!: string
  lastDstPort!: number
  lastSrcPort!: number
  lastProto!: Proto
  lastKind!: ScanKind
  lastInterface!: string
  /** `guards.check()` result, valid while `guardGeneration` matches the guards'. */
  guard!: GuardReason | null
  guardGeneration!: number
  emitted!: Verdict | null
  last!: Verdict | null
  sinceEmit!: number
  demandCounted!: boolean
  reportCounted!: boolean
  /** The breaker this source was last counted into (a source counts once per breaker). */
  suppressedBy!: Breaker | null
  /** Packets whose attribution settled plausible (or verified by the source's memory), and forged. */
  plausible!: number
  forged!: number
  /**
   * Resets from a spoofable source: answers, never probes (RFC 9293 never sends a RST
   * unprompted). A forged SYN that claims a neighbour makes a tripwire listener send
   * it a SYN-ACK, and its own kernel resets: a real packet from an innocent address.
   * Counted as hits, never as evidence that the source probed this host.
   */
  resets!: number
  /** The latest packet's attribution was still being checked. */
  pending!: boolean
  /**
   * Evidence names its packets carried, first seen first, at most MAX_EVIDENCE: an
   * attributor's frozen answer shared until a name must be added (`ownEvidence`).
   */
  evidence!: readonly string[]
  ownEvidence!: boolean
  /**
   * The caller's check (vetBlocks) could not answer for a spoofable block of this
   * source: it is not blocked, nor asked about again, for the rest of its window.
   */
  unchecked!: boolean

  constructor(src: string, addr: Address, now: number, port: number) {
    this.reset(src, addr, now, port, [port])
  }

  /** A new source's state (`ports`: an array to own, holding `port` alone). */
  reset(src: string, addr: Address, now: number, port: number, ports: number[]): void {
    this.src = src
    this.addr = addr
    this.slot = -1
    this.windowStart = now
    this.firstSeen = now
    this.lastSeen = now
    this.count = 0
    this.verifiedCount = 0
    ports[0] = port
    this.ports = ports
    this.portsTruncated = false
    this.kinds = 0
    this.lastTime = 0
    this.lastVerified = false
    this.lastDst = ''
    this.lastDstPort = 0
    this.lastSrcPort = 0
    this.lastProto = 'tcp'
    this.lastKind = 'syn'
    this.lastInterface = ''
    this.guard = null
    this.guardGeneration = -1
    this.emitted = null
    this.last = null
    this.sinceEmit = 0
    this.demandCounted = false
    this.reportCounted = false
    this.suppressedBy = null
    this.plausible = 0
    this.forged = 0
    this.resets = 0
    this.pending = false
    this.evidence = NO_EVIDENCE
    this.ownEvidence = false
    this.unchecked = false
  }
}

/** The value of a source table's slot whose source is kept compact (#compact). */
const COMPACT = new SourceState('', { family: 4, value: 0n }, 0, 0)

interface Breaker {
  cause: BreakerCause
  openedAt: number
  src: string
  family: Family
  trigger: Trigger
  sources: number
  hits: number
  /** The shared verdicts counted into it, by the shared verdict they stand for (no allocation per hit). */
  suppressed: Map<Verdict, Verdict>
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
  const have = st.evidence
  if (names === have) return
  if (have.length === 0 && names.length <= MAX_EVIDENCE && Object.isFrozen(names) && !names.includes('pending')) {
    // The attributor's answers are shared frozen arrays: the source's next hits bring the same one.
    st.evidence = names
    return
  }
  for (const n of names) {
    if (n === 'pending' || st.evidence.includes(n)) continue
    if (st.evidence.length >= MAX_EVIDENCE) return
    if (!st.ownEvidence) {
      st.evidence = [...st.evidence]
      st.ownEvidence = true
    }
    ;(st.evidence as string[]).push(n)
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

function triggerOf(st: SourceState): Trigger {
  return {
    dst: st.lastDst,
    dstPort: st.lastDstPort,
    srcPort: st.lastSrcPort,
    proto: st.lastProto,
    kind: st.lastKind,
    interface: st.lastInterface,
  }
}

/** Verdicts without per-source fields, shared (frozen: a verdict is never changed once made). */
const SHARED = new Set<Verdict>()
function shared(action: Action, reason: ReasonCode, verified: boolean): Verdict {
  const v = Object.freeze({ action, reason, verified }) as Verdict
  SHARED.add(v)
  return v
}
const SHARED_VERDICTS = new Map<string, Verdict>()
function verdict(action: Action, reason: ReasonCode, verified: boolean): Verdict {
  const k = `${action} ${reason} ${verified ? 1 : 0}`
  let v = SHARED_VERDICTS.get(k)
  if (v === undefined) SHARED_VERDICTS.set(k, (v = shared(action, reason, verified)))
  return v
}
const TRANSIT = verdict('none', 'transit', false)
const BELOW = [verdict('none', 'below-threshold', false), verdict('none', 'below-threshold', true)] as const
const HELD: Verdict = Object.freeze({ action: 'none', reason: 'below-threshold', verified: false, hold: true }) as Verdict

/** The verdict on a source blocked already, made once per block record (and expiry). */
function alreadyBlocked(b: BlockRecord, verified: boolean): Verdict {
  const i = verified ? 1 : 0
  const expiresAt = Number.isFinite(b.expiresAt) ? b.expiresAt : undefined
  const cached = b.already?.[i]
  if (cached !== undefined && cached.expiresAt === expiresAt) return cached
  const v: Verdict = { action: 'none', reason: 'already-blocked', verified }
  if (expiresAt !== undefined) v.expiresAt = expiresAt
  ;(b.already ??= [undefined, undefined])[i] = Object.freeze(v) as Verdict
  return v
}
const REPORT_ONLY = verdict('report', 'spoofable-report-only', false)
const FORGED = verdict('report', 'forged', false)
const PEER_CHECK_FAILED = verdict('report', 'peer-check-failed', false)
const RESET_ONLY = verdict('report', 'reset-only', false)
const RATE_CAPPED = verdict('report', 'rate-capped', false)
const ACTIVE_CAPPED = verdict('report', 'active-cap', false)

/** `v` counted into the open breaker `b`: one verdict per breaker and shared verdict, made once. */
function suppressedInto(b: Breaker, v: Verdict): Verdict {
  if (!SHARED.has(v)) return { ...v, suppress: b }
  let s = b.suppressed.get(v)
  if (s === undefined) b.suppressed.set(v, (s = Object.freeze({ ...v, suppress: b }) as Verdict))
  return s
}
const GUARD_VERDICTS: Partial<Record<GuardReason, readonly [Verdict, Verdict]>> = {}
function guardVerdict(reason: GuardReason, verified: boolean): Verdict {
  const pair = (GUARD_VERDICTS[reason] ??= [verdict('none', `guard:${reason}`, false), verdict('none', `guard:${reason}`, true)])
  return pair[verified ? 1 : 0]
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

  // Keyed by the source's address words (lib/hit-key.ts), bounded by maxTrackedSources.
  // Insertion order is window-start order (a new window re-inserts), so the oldest
  // entry is the eviction victim.
  readonly #verifiedSources: WordMap<SourceState>
  readonly #spoofableSources: WordMap<SourceState>
  /** The spoofable sources that were only counted so far, by slot (compact-sources.ts); their slot holds COMPACT. */
  readonly #compact = new CompactSources<Breaker>()
  /** A shrunk source's state object, kept for the next new source (#newState). */
  #spare: SourceState | null = null
  /** Sources of transit hits: their own table, so forwarded traffic is never evidence. */
  readonly #transitSources: WordMap<SourceState>
  /** The current hit's key (observe), and one for the calls that name a source by its text. */
  readonly #key = new Int32Array(HIT_KEY_WORDS)
  readonly #textKey = new Int32Array(HIT_KEY_WORDS)
  /** The decisions of the current call (observe, reattribute, tick), and how they are added. */
  #out: Decision[] | null = null
  readonly #push = (d: Decision): void => {
    this.#decisions[d.reason]++
    ;(this.#out ??= []).push(d)
  }
  readonly #verifiedBlocks = new BlockTable<BlockRecord>()
  readonly #spoofableBlocks = new BlockTable<BlockRecord>()
  /** New spoofable blocks in the trailing minute; never more than the cap. */
  readonly #recentBlocks = new MinuteLog()
  /** Spoofable sources that crossed the threshold: the blocking breaker's view of pressure. */
  readonly #demand = new MinuteGauge()
  /** Per-source decisions about spoofable sources in the trailing minute; never more than the cap. */
  readonly #recentReports = new MinuteLog()
  /** Spoofable sources wanting a decision of their own: the report breaker's view of pressure. */
  readonly #reportDemand = new MinuteGauge()
  #breaker: Breaker | null = null
  #reportBreaker: Breaker | null = null
  #lastMaintain = -Infinity

  #hits = 0
  #transitHits = 0
  #liveChecks = 0
  #liveRefusals = 0
  #invalid = 0
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
    const max = this.#config.maxTrackedSources
    this.#verifiedSources = new WordMap(KEY_SOURCE, max)
    this.#spoofableSources = new WordMap(KEY_SOURCE, max)
    this.#transitSources = new WordMap(KEY_SOURCE, max)
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
    for (const table of [this.#verifiedSources, this.#spoofableSources, this.#transitSources]) table.max = next.maxTrackedSources
  }

  /**
   * Accounts one hit and returns the decisions to emit now: usually none or one;
   * also any window summaries and a breaker close that fell due. Never throws on
   * packet data.
   */
  observe(hit: Hit): readonly Decision[] {
    const now = this.#now()
    this.#hits++
    const push = this.#push
    this.#out = null
    this.#maintain(now, push, false)

    const transit = this.#isLocal !== null && !this.#isLocal(hit.dst)
    if (transit) this.#transitHits++
    const st = this.#track(hit, now, push, transit)
    if (st === null) this.#invalid++
    else if (transit) this.#decide(st, TRANSIT, now, push)
    else if (this.#decide(st, this.#evaluate(st, this.#key, now), now, push)) this.#shrink(st)
    return this.#take() ?? NO_DECISIONS
  }

  /** The decisions gathered by the current call, handed out (the next call starts afresh). */
  #take(): Decision[] | null {
    const out = this.#out
    this.#out = null
    return out
  }

  /**
   * A tracked source's attribution settled (the attributor's answer to a packet that
   * was still being checked): the source is decided again, as if a hit had come, but
   * nothing is counted as a hit. Returns the decisions to emit now (a block that was
   * waiting for the evidence, or `forged`).
   */
  reattribute(src: string, answer: { attribution: Attribution; evidence: readonly string[] }, hit?: Hit): readonly Decision[] {
    // A reset's answer was never waited for, nor does it count (see SourceState.resets).
    if (hit !== undefined && isAnswer(hit)) return NO_DECISIONS
    const st = this.#lookup(src, false)?.[1]
    if (st === undefined) return NO_DECISIONS
    const now = this.#now()
    this.#out = null
    st.pending = false
    if (answer.attribution === 'forged') st.forged++
    else st.plausible++
    addEvidence(st, answer.evidence)
    this.#decide(st, this.#evaluate(st, this.#textKey, now), now, this.#push, true)
    return this.#take() ?? NO_DECISIONS
  }

  /**
   * Emits (or counts) the verdict for a source, per the one-decision-per-window rules.
   * True when it was counted into an open breaker (nothing emitted for it).
   */
  #decide(st: SourceState, verdict: Verdict, now: number, push: (d: Decision) => void, settled = false): boolean {
    if (verdict.hold === true) {
      if (!settled) st.sinceEmit++
      return false
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
      return true
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
    return false
  }

  /**
   * After a hit counted into a breaker: a spoofable source of which nothing was emitted,
   * with one port and shared evidence, is kept as numbers (#compact) instead of an
   * object (its SourceState dies young). Everything it holds that a later hit or
   * decision reads is kept; #expand brings it back.
   */
  #shrink(st: SourceState): void {
    if (st.emitted !== null || st.verifiedCount > 0 || st.pending || st.unchecked || st.ownEvidence || st.portsTruncated || st.ports.length !== 1) return
    const table = this.#spoofableSources
    const s = st.slot
    if (s < 0 || table.valueAt(s) !== st) return
    const c = this.#compact
    c.ensure(s)
    c.windowStart[s] = st.windowStart
    c.lastSeen[s] = st.lastSeen
    c.lastTime[s] = st.lastTime
    c.lastPorts[s] = st.lastSrcPort | (st.lastDstPort << 16)
    c.lastProtoKind[s] = (PROTO_INDEX[st.lastProto] ?? 0) | ((KIND_INDEX.get(st.lastKind) ?? 0) << 8)
    c.lastDst[s] = st.lastDst
    c.lastInterface[s] = st.lastInterface
    c.count[s] = st.count
    c.guardGeneration[s] = st.guard === null ? st.guardGeneration : -1
    c.kinds[s] = st.kinds
    c.plausible[s] = st.plausible
    c.forged[s] = st.forged
    c.resets[s] = st.resets
    c.port[s] = st.ports[0]!
    c.flags[s] = (st.demandCounted ? DEMAND_COUNTED : 0) | (st.reportCounted ? REPORT_COUNTED : 0)
    c.evidence[s] = st.evidence
    c.suppressedBy[s] = st.suppressedBy
    table.setValueAt(s, COMPACT)
    // Nothing else holds it (no decision was built from it, no vetting names it): the next
    // new source reuses the object, so a forged flood's sources die as numbers, not garbage.
    this.#spare = st
  }

  /** A new source's state: the one #shrink left, when there is one. */
  #newState(src: string, addr: Address, now: number, port: number): SourceState {
    const spare = this.#spare
    if (spare === null) return new SourceState(src, addr, now, port)
    this.#spare = null
    spare.reset(src, addr, now, port, spare.ports)
    return spare
  }

  /** The SourceState of a compact source in `slot` of the spoofable table (`key`: its key). */
  #expand(slot: number, key: Int32Array, hit: Hit | null): SourceState {
    const c = this.#compact
    const addr = keyAddress(key)
    const src = hit !== null && hit[HIT_KEY] !== undefined && addr.family === hit.family ? hit.src : formatAddress(addr)
    const st = this.#newState(src, addr, c.windowStart[slot]!, c.port[slot]!)
    st.slot = slot
    st.lastSeen = c.lastSeen[slot]!
    st.lastTime = c.lastTime[slot]!
    const ports = c.lastPorts[slot]!
    st.lastSrcPort = ports & 0xffff
    st.lastDstPort = ports >>> 16
    const pk = c.lastProtoKind[slot]!
    st.lastProto = PROTO_BY_INDEX[pk & 0xff] ?? 'tcp'
    st.lastKind = (SCAN_KINDS[pk >>> 8] ?? 'odd-flags') as ScanKind
    st.lastDst = c.lastDst[slot]!
    st.lastInterface = c.lastInterface[slot]!
    st.count = c.count[slot]!
    const generation = c.guardGeneration[slot]!
    if (generation >= 0) st.guardGeneration = generation
    st.kinds = c.kinds[slot]!
    st.plausible = c.plausible[slot]!
    st.forged = c.forged[slot]!
    st.resets = c.resets[slot]!
    const flags = c.flags[slot]!
    st.demandCounted = (flags & DEMAND_COUNTED) !== 0
    st.reportCounted = (flags & REPORT_COUNTED) !== 0
    st.evidence = c.evidence[slot]!
    st.suppressedBy = c.suppressedBy[slot]!
    c.release(slot)
    this.#spoofableSources.setValueAt(slot, st)
    return st
  }

  /**
   * Time-driven work: expire blocks, close ended windows (their summaries), close
   * the breaker when pressure has fallen. Call about once a second; `observe` also
   * does it, at most once a second, but a quiet sensor calls nothing.
   */
  tick(): readonly Decision[] {
    this.#out = null
    this.#maintain(this.#now(), this.#push, true)
    return this.#take() ?? []
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
      evictions: this.#verifiedSources.evictions + this.#spoofableSources.evictions + this.#transitSources.evictions,
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

  /** The table and state of the source `src` names (its text), if tracked. */
  #lookup(src: string, transit: boolean): [WordMap<SourceState>, SourceState] | null {
    const key = this.#textKey
    if (!textKey(src, key)) return null
    return this.#find(key, transit)
  }

  #find(key: Int32Array, transit: boolean): [WordMap<SourceState>, SourceState] | null {
    if (transit) {
      const t = this.#transitSources.find(key)
      return t < 0 ? null : [this.#transitSources, this.#transitSources.valueAt(t)]
    }
    const v = this.#verifiedSources.find(key)
    if (v >= 0) return [this.#verifiedSources, this.#verifiedSources.valueAt(v)]
    const s = this.#spoofableSources.find(key)
    if (s < 0) return null
    const st = this.#spoofableSources.valueAt(s)
    return [this.#spoofableSources, st === COMPACT ? this.#expand(s, key, null) : st]
  }

  /** The source's state with this hit added, or null when `hit.src` is not an address. */
  #track(hit: Hit, now: number, push: (d: Decision) => void, transit: boolean): SourceState | null {
    // Keyed by the record's address words: no text is parsed, built or hashed for a hit.
    const key = this.#key
    if (!hitKey(hit, key)) return null
    let table: WordMap<SourceState>
    let slot: number
    if (transit) {
      table = this.#transitSources
      slot = table.find(key)
    } else {
      table = this.#verifiedSources
      slot = table.find(key)
      if (slot < 0) {
        table = this.#spoofableSources
        slot = table.find(key)
      }
    }
    let st = slot < 0 ? undefined : table.valueAt(slot)
    if (st === COMPACT) st = this.#expand(slot, key, hit)
    if (st !== undefined && now >= st.windowStart + this.#config.windowMs) {
      this.#endWindow(st, table, now, push)
      st = undefined
    }
    const verified = hit.verified
    const portKey = (PROTO_INDEX[hit.proto] ?? 0) * 65536 + hit.dstPort
    if (st === undefined) {
      table = transit ? this.#transitSources : verified ? this.#verifiedSources : this.#spoofableSources
      const addr = keyAddress(key)
      // A decoded hit's text is canonical unless an IPv4-mapped IPv6 source folded to IPv4.
      const src = hit[HIT_KEY] !== undefined && addr.family === hit.family ? hit.src : formatAddress(addr)
      st = this.#newState(src, addr, now, portKey)
      // Absent from every table (found nowhere above, or its window's state just removed).
      st.slot = table.insert(key, st)
    } else {
      if (verified && !transit && table === this.#spoofableSources) {
        // Verified evidence moves the source out of reach of forged-traffic churn.
        table.deleteSlot(st.slot)
        st.slot = this.#verifiedSources.insert(key, st)
      }
      const ports = st.ports
      if (!ports.includes(portKey)) {
        if (ports.length < this.#config.maxPortsPerSource) ports.push(portKey)
        else st.portsTruncated = true
      }
    }
    st.count++
    if (verified && !transit) st.verifiedCount++
    if (isAnswer(hit)) {
      // Its attribution speaks for the reset, not for a probe: neither counted nor waited for.
      st.resets++
    } else {
      const evidence = hit.evidence
      st.pending = !verified && evidence.includes('pending')
      if (!verified && !st.pending) {
        if (hit.attribution === 'forged') st.forged++
        else st.plausible++
      }
      if (evidence.length > 0) addEvidence(st, evidence)
    }
    st.lastSeen = now
    const kind = hit.kind
    st.kinds |= 1 << (KIND_INDEX.get(kind) ?? 0)
    st.lastTime = hit.time
    st.lastVerified = verified
    st.lastDst = hit.dst
    st.lastDstPort = hit.dstPort
    st.lastSrcPort = hit.srcPort
    st.lastProto = hit.proto
    st.lastKind = kind
    st.lastInterface = hit.interface
    return st
  }

  /** `key`: the source's key words (the hit's, or those of the text that named it). */
  #evaluate(st: SourceState, key: Int32Array, now: number): Verdict {
    const cfg = this.#config
    const verified = st.verifiedCount > 0
    if (st.guardGeneration !== this.#guards.generation) {
      st.guard = this.#guards.check(st.addr)
      st.guardGeneration = this.#guards.generation
    }
    const guard = st.guard
    if (guard !== null) return guardVerdict(guard, verified)

    const block = this.#activeBlockOf(st, key, now)
    if (verified) {
      if (block?.verified === true) {
        // A handshake completed although the kernel should drop this source: the
        // block is gone (a flushed ruleset, a deleted element). Put it back, once per
        // confirmation, with the time it has left.
        if (st.lastVerified && block.confirmedAt !== undefined && st.lastTime > block.confirmedAt + REAPPLY_MARGIN_MS && Number.isFinite(block.expiresAt)) {
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
        return alreadyBlocked(block, verified)
      }
      if (st.verifiedCount < cfg.threshold) {
        return block !== undefined ? alreadyBlocked(block, verified) : BELOW[1]
      }
      return this.#refuseLive(st, true) ?? this.#applyBlock(st, now, true, block !== undefined)
    }

    if (block !== undefined) return alreadyBlocked(block, verified)
    if (st.count < cfg.spoofableThreshold) return BELOW[0]
    if (!this.#blockAll) return REPORT_ONLY
    // Never act on a forged source, and wait for the evidence before acting at all.
    const attribution = sourceAttribution(st)
    if (attribution === 'forged') return FORGED
    if (attribution === 'pending') return HELD
    // Only answers from it (resets): someone may have made this host write to it.
    if (st.count - st.resets < cfg.spoofableThreshold) return RESET_ONLY

    // The check right before its block could not answer this window: no new attempt.
    if (st.unchecked === true) return PEER_CHECK_FAILED
    if (!st.demandCounted) {
      st.demandCounted = true
      this.#demand.add(now)
    }
    const b = this.#breaker
    if (b !== null) return suppressedInto(b, b.cause === 'rate-capped' ? RATE_CAPPED : ACTIVE_CAPPED)
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
    return guardVerdict(reason, verified)
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
    const rec: BlockRecord = { family: st.addr.family, verified, expiresAt, trigger: triggerOf(st) }
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
    const b: Breaker = { cause, openedAt: now, src: st.src, family: st.addr.family, trigger: triggerOf(st), sources: 0, hits: 0, suppressed: new Map() }
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
    if (this.#reportBreaker !== null) return suppressedInto(this.#reportBreaker, v)
    if (this.#recentReports.count(now) >= this.#config.maxReportsPerMinute) return this.#openBreaker('report-capped', st, now)
    this.#recentReports.add(now)
    return v
  }

  #activeBlock(src: string, now: number): BlockRecord | undefined {
    return this.#liveBlock(this.#verifiedBlocks, src, now) ?? this.#liveBlock(this.#spoofableBlocks, src, now)
  }

  #liveBlock(table: BlockTable<BlockRecord>, src: string, now: number): BlockRecord | undefined {
    const r = table.get(src)
    if (r === undefined || r.expiresAt > now) return r
    table.delete(src)
    return undefined
  }

  /** #activeBlock of a tracked source, by its key (`key`: the source's key words). */
  #activeBlockOf(st: SourceState, key: Int32Array, now: number): BlockRecord | undefined {
    const r = this.#verifiedBlocks.getByKey(key) ?? this.#spoofableBlocks.getByKey(key)
    if (r === undefined || r.expiresAt > now) return r
    // Expired: the text path deletes it from whichever table holds it.
    return this.#activeBlock(st.src, now)
  }

  #expireTable(table: BlockTable<BlockRecord>, now: number): void {
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
    const windowMs = this.#config.windowMs
    const compact = this.#compact
    for (const table of [this.#verifiedSources, this.#spoofableSources, this.#transitSources]) {
      for (let s = table.oldest; s >= 0; ) {
        const next = table.next(s)
        const st = table.valueAt(s)
        if (st === COMPACT) {
          // Nothing was emitted for it: its window ends without a summary.
          if (now >= compact.windowStart[s]! + windowMs) {
            compact.release(s)
            table.deleteSlot(s)
          }
        } else if (now >= st.windowStart + windowMs) this.#endWindow(st, table, now, push)
        s = next
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
      trigger: b.trigger,
    }
  }

  #endWindow(st: SourceState, table: WordMap<SourceState>, now: number, push: (d: Decision) => void): void {
    table.deleteSlot(st.slot)
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
      trigger: triggerOf(st),
    }
    if (v.ttlMs !== undefined) d.ttlMs = v.ttlMs
    if (v.expiresAt !== undefined) d.expiresAt = v.expiresAt
    if (v.upgrade === true) d.upgrade = true
    if (v.offence !== undefined) d.offence = v.offence
    if (v.breaker !== undefined) d.breaker = v.breaker
    return d
  }
}
