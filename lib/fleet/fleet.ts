/**
 * The fleet link through CrowdSec's Local API. FleetPush turns this host's block
 * decisions into LAPI alerts (one alert carrying one ban per decision), queued and
 * sent in batches from a timer: `push()` is a synchronous enqueue, so a slow or
 * dead LAPI never slows detection or local blocking. The queue is bounded (the
 * oldest alert goes first, counted and reported), coalesces by address, and
 * retries with capped exponential backoff. FleetPull polls the bouncer stream and
 * applies the fleet's bans through a local Responder with the time remaining,
 * idempotently: it remembers what it applied, lifts only bans it applied itself,
 * skips this host's own decisions coming back, skips what it cannot express
 * (Range and other scopes, non-ban types), clamps a ban longer than the firewall
 * holds (once, with one event), and lets local guards win — a ban on a guarded
 * address is refused with a `guard:*` decision event, and re-checked whenever the
 * guards change. Fleet bans live in the firewall apart from local blocks (evidence
 * 'fleet', tagged with their LAPI id, origin and scenario), so a deletion lifts the
 * fleet ban and never a local block, and a restart adopts them as fleet bans. Only
 * blocks from verified evidence are pushed unless `pushSpoofable` is set: a forged
 * packet must not become a fleet-wide ban on hosts with plain bouncers. Both run on the JS thread from unref'd timers,
 * never throw into the caller, and report through `onEvent` and `stats()`.
 */

import { PortanoiaError } from '../errors.js'
import type { Decision } from '../policy/decision.js'
import { parseAddress, formatAddress } from '../policy/addr.js'
import type { GuardReason } from '../policy/guards.js'
import type { ActiveBlockEntry, BlockRequest, FleetTag, Responder } from '../responders/types.js'
import {
  type FleetStreamEvent,
  type SkipWhy,
  fleetDecisionEvent,
  fleetEvent,
} from './events.js'
import {
  type DecisionStream,
  type LapiAlert,
  type LapiDecision,
  LapiError,
  formatGoDuration,
  parseGoDuration,
} from './lapi.js'

export const FLEET_ORIGIN = 'portanoia'
export const SCENARIO_VERIFIED = 'portanoia/verified-connect'
export const SCENARIO_SPOOFABLE = 'portanoia/spoofable-probe'

function errorFields(e: unknown): { code: string; message: string; hint?: string; status?: number } {
  if (e instanceof LapiError) {
    const out: { code: string; message: string; hint?: string; status?: number } = { code: e.code, message: e.message }
    if (e.hint !== undefined) out.hint = e.hint
    if (e.status !== undefined) out.status = e.status
    return out
  }
  if (e instanceof PortanoiaError) {
    return e.hint === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, hint: e.hint }
  }
  return { code: 'PORTANOIA_FLEET_FAILED', message: e instanceof Error ? e.message : String(e) }
}

// ---------------------------------------------------------------------------
// Alerts

/**
 * The alert for one local block: scenario by evidence, the ban lasting
 * `durationMs`, the message and one event summarising ports and kinds.
 */
export function alertFor(d: Decision, durationMs: number): LapiAlert {
  const scenario = d.verified ? SCENARIO_VERIFIED : SCENARIO_SPOOFABLE
  const ports = d.ports.join(' ') + (d.portsTruncated ? ' …' : '')
  const kinds = d.kinds.join(' ')
  const evidence = d.verified ? `${d.verifiedCount} completed handshake(s)` : 'spoofable probes only'
  const first = new Date(d.firstSeen).toISOString()
  const last = new Date(d.lastSeen).toISOString()
  const meta = [
    { key: 'source_ip', value: d.src },
    { key: 'service', value: 'portanoia' },
    { key: 'ports', value: ports },
    { key: 'kinds', value: kinds },
    { key: 'verified', value: String(d.verified) },
    { key: 'hits', value: String(d.count) },
    // Pushed decisions are blocks, which always come from a hit.
    { key: 'dst_port', value: String(d.trigger?.dstPort ?? 0) },
    { key: 'proto', value: d.trigger?.proto ?? 'tcp' },
  ]
  return {
    scenario,
    scenario_hash: '',
    scenario_version: '',
    message: `${d.src} touched tripwire port(s) ${ports || '(none)'} [${kinds}]: ${d.count} hit(s), ${evidence}`,
    events_count: Math.max(1, Math.min(2 ** 31 - 1, d.count)),
    start_at: first,
    stop_at: last,
    capacity: 0,
    leakspeed: '0',
    simulated: false,
    events: [{ timestamp: last, meta }],
    source: { scope: 'Ip', value: d.src, ip: d.src },
    decisions: [
      { origin: FLEET_ORIGIN, type: 'ban', scope: 'Ip', value: d.src, duration: formatGoDuration(durationMs), scenario },
    ],
  }
}

// ---------------------------------------------------------------------------
// Push

/** What FleetPush needs from a LAPI client. */
export interface AlertSink {
  pushAlerts(alerts: readonly LapiAlert[]): Promise<unknown>
}

export interface FleetPushOptions {
  client: AlertSink
  /** Flush period, ms. Default 1000. */
  intervalMs?: number
  /** Alerts per request; a full batch is sent without waiting for the period. Default 50. */
  batchSize?: number
  /** Alerts held at most; beyond, the oldest is dropped. Default 1000. */
  queueLimit?: number
  /** Attempts per alert while LAPI answers with errors. Default 5. Unreachable LAPI does not use them up. */
  maxAttempts?: number
  /** First backoff, ms; doubles per consecutive failure. Default 500. */
  backoffMs?: number
  /** Backoff ceiling, ms. Default 30 s. */
  maxBackoffMs?: number
  /** Ban length for a decision without a TTL, ms. Default 4 h. */
  defaultTtlMs?: number
  /**
   * Also push blocks from spoofable evidence (`--block all`). Default false: a
   * forged source would otherwise be banned fleet-wide, by bouncers that have no
   * guards of this host's.
   */
  pushSpoofable?: boolean
  onEvent?: (e: FleetStreamEvent) => void
  now?: () => number
  /** Jitter source in [0, 1); default Math.random. Tests pass () => 0. */
  random?: () => number
}

interface Queued {
  decision: Decision
  /** When the ban ends on our clock: the remaining time is what gets pushed. */
  deadline: number
  attempts: number
}

export interface FleetPushStats {
  /** Alerts LAPI accepted. */
  pushes: number
  /** Requests that failed (each attempt). */
  pushFailures: number
  /** Alerts dropped because the queue was full. */
  drops: number
  /** Alerts given up after maxAttempts. */
  abandoned: number
  /** Alerts whose ban ended while they waited. */
  expired: number
  /** Alerts waiting now. */
  queued: number
  [k: string]: number
}

export class FleetPush {
  readonly #client: AlertSink
  readonly #intervalMs: number
  readonly #batchSize: number
  readonly #queueLimit: number
  readonly #maxAttempts: number
  readonly #backoffMs: number
  readonly #maxBackoffMs: number
  readonly #defaultTtlMs: number
  readonly #pushSpoofable: boolean
  readonly #onEvent: (e: FleetStreamEvent) => void
  readonly #now: () => number
  readonly #random: () => number
  // Insertion order is age: the first entry is the oldest.
  readonly #queue = new Map<string, Queued>()
  // Addresses this host pushed, until their ban ends: FleetPull skips them when they come back.
  readonly #own = new Map<string, number>()
  #timer: NodeJS.Timeout | null = null
  #inFlight: Promise<void> | null = null
  #kick = false
  #retryAt = 0
  #failStreak = 0
  #lastError = ''
  #closed = false
  readonly #stats = { pushes: 0, pushFailures: 0, drops: 0, abandoned: 0, expired: 0 }

  constructor(options: FleetPushOptions) {
    this.#client = options.client
    this.#intervalMs = positive(options.intervalMs, 1000, 'intervalMs')
    this.#batchSize = positive(options.batchSize, 50, 'batchSize')
    this.#queueLimit = positive(options.queueLimit, 1000, 'queueLimit')
    this.#maxAttempts = positive(options.maxAttempts, 5, 'maxAttempts')
    this.#backoffMs = positive(options.backoffMs, 500, 'backoffMs')
    this.#maxBackoffMs = positive(options.maxBackoffMs, 30_000, 'maxBackoffMs')
    this.#defaultTtlMs = positive(options.defaultTtlMs, 4 * 3_600_000, 'defaultTtlMs')
    this.#pushSpoofable = options.pushSpoofable === true
    this.#onEvent = options.onEvent ?? (() => {})
    this.#now = options.now ?? Date.now
    this.#random = options.random ?? Math.random
  }

  /** Starts the flush timer. */
  start(): this {
    if (this.#timer === null && !this.#closed) {
      this.#timer = setInterval(() => void this.#tick(), this.#intervalMs)
      this.#timer.unref()
    }
    return this
  }

  /**
   * Enqueues a local decision; synchronous, never throws, never waits. Only
   * `block`/`blocked` decisions are pushed, and of those only verified ones unless
   * `pushSpoofable`; returns whether this one was queued.
   */
  push(d: Decision): boolean {
    if (this.#closed || d.action !== 'block' || d.reason !== 'blocked') return false
    if (!d.verified && !this.#pushSpoofable) return false
    const now = this.#now()
    const ttl = d.ttlMs !== undefined && d.ttlMs > 0 ? d.ttlMs : this.#defaultTtlMs
    const deadline = now + ttl
    this.#rememberOwn(d.src, deadline, now)
    // Coalesce: a newer decision for a queued address (an upgrade, say) replaces it.
    const prev = this.#queue.get(d.src)
    if (prev !== undefined) {
      this.#queue.delete(d.src)
    } else if (this.#queue.size >= this.#queueLimit) {
      // The oldest alert has the least ban time left and the fleet most needs to
      // hear about the newest attacker: drop from the front.
      const oldest = this.#queue.keys().next().value as string
      this.#queue.delete(oldest)
      this.#stats.drops++
      this.#onEvent(fleetEvent({ op: 'dropped', src: oldest, count: this.#stats.drops }, now))
    }
    this.#queue.set(d.src, { decision: d, deadline, attempts: prev?.attempts ?? 0 })
    if (this.#queue.size >= this.#batchSize && !this.#kick && this.#timer !== null) {
      // A full batch goes now, but never inside the caller's stack.
      this.#kick = true
      setImmediate(() => {
        this.#kick = false
        void this.#tick()
      }).unref()
    }
    return true
  }

  /** True while a ban this host pushed for `address` should be in force. */
  pushed(address: string): boolean {
    const until = this.#own.get(address)
    return until !== undefined && until > this.#now()
  }

  /** Sends what is queued now (ignoring backoff), one batch after another until empty or a failure. */
  async flush(): Promise<void> {
    this.#retryAt = 0
    for (;;) {
      const before = this.#queue.size
      await this.#send()
      if (this.#queue.size === 0 || this.#queue.size >= before || this.#retryAt > this.#now()) return
    }
  }

  stats(): FleetPushStats {
    return { ...this.#stats, queued: this.#queue.size }
  }

  /** Stops the timer and makes one last attempt (bounded by the client's timeout). Idempotent. */
  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    if (this.#closed) {
      await this.#inFlight
      return
    }
    this.#closed = true
    await this.#inFlight
    if (this.#queue.size > 0) await this.#send()
  }

  // -------------------------------------------------------------------------

  async #tick(): Promise<void> {
    if (this.#queue.size === 0 || this.#now() < this.#retryAt) return
    await this.#send()
  }

  #send(): Promise<void> {
    // One request at a time: the queue is only ever reshaped by one sender.
    if (this.#inFlight === null) {
      this.#inFlight = this.#sendBatch().finally(() => {
        this.#inFlight = null
      })
    }
    return this.#inFlight
  }

  async #sendBatch(): Promise<void> {
    const now = this.#now()
    const batch: Array<[string, Queued]> = []
    for (const [src, q] of this.#queue) {
      if (q.deadline - now < 1000) {
        // The ban ended (or is about to) while waiting: nothing left to share.
        this.#queue.delete(src)
        this.#stats.expired++
        continue
      }
      batch.push([src, q])
      if (batch.length >= this.#batchSize) break
    }
    if (batch.length === 0) return
    const alerts = batch.map(([, q]) => alertFor(q.decision, q.deadline - now))
    try {
      await this.#client.pushAlerts(alerts)
      for (const [src, q] of batch) if (this.#queue.get(src) === q) this.#queue.delete(src)
      this.#stats.pushes += batch.length
      if (this.#failStreak > 0) {
        this.#onEvent(fleetEvent({ op: 'push-recovered', count: this.#failStreak }, this.#now()))
      }
      this.#failStreak = 0
      this.#lastError = ''
      this.#retryAt = 0
    } catch (e) {
      this.#stats.pushFailures++
      this.#failStreak++
      const fields = errorFields(e)
      if (fields.message !== this.#lastError) {
        this.#lastError = fields.message
        this.#onEvent(fleetEvent({ op: 'push-failed', ...fields, count: this.#queue.size }, this.#now()))
      }
      // Attempts are spent only when LAPI answered and refused this request: an
      // unreachable LAPI is an outage, and so is a refused login (the password
      // is wrong for every alert alike, until the operator fixes it); the bounded
      // queue, not the retry count, limits what waits through those.
      const auth = e instanceof LapiError && e.code === 'PORTANOIA_LAPI_AUTH'
      const answered = e instanceof LapiError && e.status !== undefined && !auth
      const hopeless = e instanceof LapiError && !e.retryable && !auth
      for (const [src, q] of batch) {
        if (this.#queue.get(src) !== q) continue
        if (answered) q.attempts++
        if (hopeless || q.attempts >= this.#maxAttempts) {
          this.#queue.delete(src)
          this.#stats.abandoned++
          this.#onEvent(fleetEvent({ op: 'abandoned', src, ...fields }, this.#now()))
        }
      }
      const exp = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** Math.min(20, this.#failStreak - 1))
      this.#retryAt = this.#now() + exp * (1 + 0.2 * this.#random())
    }
  }

  #rememberOwn(src: string, deadline: number, now: number): void {
    this.#own.delete(src)
    this.#own.set(src, deadline)
    // Bounded like the queue, with room for what is in force: prune the expired
    // from the front, then the oldest if still too many.
    const cap = this.#queueLimit * 100
    for (const [a, until] of this.#own) {
      if (this.#own.size <= cap && until > now) break
      this.#own.delete(a)
    }
  }
}

// ---------------------------------------------------------------------------
// Pull

/** What FleetPull needs from a LAPI client. */
export interface DecisionSource {
  stream(startup: boolean): Promise<DecisionStream>
}

/** What FleetPull needs from the guards: a check, and a generation that changes on refresh. */
export interface GuardCheck {
  check(addr: string): GuardReason | null
  readonly generation?: number
}

export interface FleetPullOptions {
  client: DecisionSource
  responder: Pick<Responder, 'name' | 'block' | 'unblock' | 'maxTtlMs'>
  guards: GuardCheck
  /**
   * True when this host blocks `address` itself (the engine's active blocks, or
   * FleetPush.pushed): such addresses are not re-applied when they come back with
   * origin portanoia (a fleet deletion lifts only the fleet's own element anyway).
   */
  isLocalBlock?: (address: string) => boolean
  /** Poll period, ms. Default 2000. */
  intervalMs?: number
  /** Longest wait between polls while LAPI fails, ms. Default 15 s. */
  maxBackoffMs?: number
  /** Bans tracked at most (applied + refused + waiting for a retry). Default 200,000. */
  trackLimit?: number
  /** Longest ban the responder holds, ms: longer ones are clamped to it (once, with a `clamped` event). Default: the responder's maxTtlMs, else unlimited. */
  maxTtlMs?: number
  onEvent?: (e: FleetStreamEvent) => void
  now?: () => number
}

interface FleetBan {
  address: string
  family: 4 | 6
  expiresAt: number
  origin: string
  scenario: string
  id?: number
  /** When the responder confirmed it (set once applied). */
  appliedAt?: number
}

/** A fleet ban in force here, as the daemon's reconcile loop sees it. */
export interface AppliedFleetBan {
  address: string
  family: 4 | 6
  expiresAt: number
  tag: FleetTag
  appliedAt: number
}

export interface FleetPullStats {
  pulls: number
  pullFailures: number
  /** Bans applied through the responder. */
  applied: number
  /** Bans lifted because LAPI deleted them (or a guard now protects them). */
  unblocked: number
  /** Bans refused by a local guard. */
  refused: number
  /** Decisions not applied: own, Range and other scopes, non-ban types, unreadable. */
  skipped: number
  /** Responder failures (retried). */
  applyFailures: number
  /** Fleet bans in force here now. */
  active: number
  [k: string]: number
}

export class FleetPull {
  readonly #client: DecisionSource
  readonly #responder: Pick<Responder, 'name' | 'block' | 'unblock' | 'maxTtlMs'>
  readonly #guards: GuardCheck
  readonly #isLocalBlock: (address: string) => boolean
  readonly #intervalMs: number
  readonly #maxBackoffMs: number
  readonly #trackLimit: number
  readonly #maxTtlMs: number
  readonly #onEvent: (e: FleetStreamEvent) => void
  readonly #now: () => number
  readonly #applied = new Map<string, FleetBan>()
  readonly #refused = new Map<string, FleetBan & { guard: GuardReason }>()
  readonly #retry = new Map<string, FleetBan>()
  #guardGeneration: number | undefined
  #synced = false
  #timer: NodeJS.Timeout | null = null
  #polling: Promise<void> | null = null
  #failStreak = 0
  #lastError = ''
  #closed = false
  readonly #stats = { pulls: 0, pullFailures: 0, applied: 0, unblocked: 0, refused: 0, skipped: 0, applyFailures: 0 }

  constructor(options: FleetPullOptions) {
    this.#client = options.client
    this.#responder = options.responder
    this.#guards = options.guards
    this.#isLocalBlock = options.isLocalBlock ?? (() => false)
    this.#intervalMs = positive(options.intervalMs, 2000, 'intervalMs')
    this.#maxBackoffMs = positive(options.maxBackoffMs, 15_000, 'maxBackoffMs')
    this.#trackLimit = positive(options.trackLimit, 200_000, 'trackLimit')
    this.#maxTtlMs = positive(options.maxTtlMs ?? options.responder.maxTtlMs, Number.POSITIVE_INFINITY, 'maxTtlMs')
    this.#onEvent = options.onEvent ?? (() => {})
    this.#now = options.now ?? Date.now
    this.#guardGeneration = options.guards.generation
  }

  /** Starts polling: the first poll now (startup sync), then every intervalMs. */
  start(): this {
    if (this.#timer === null && !this.#closed) this.#schedule(0)
    return this
  }

  /** One poll: fetch changes and apply them. Never rejects; failures are counted and reported. */
  poll(): Promise<void> {
    if (this.#polling === null) {
      this.#polling = this.#pollOnce().finally(() => {
        this.#polling = null
      })
    }
    return this.#polling
  }

  /** Fleet bans in force here that the responder confirmed, for the reconcile loop. */
  bans(): AppliedFleetBan[] {
    this.#expire(this.#now())
    const out: AppliedFleetBan[] = []
    for (const b of this.#applied.values()) {
      if (b.appliedAt === undefined) continue
      out.push({ address: b.address, family: b.family, expiresAt: b.expiresAt, tag: tagOf(b), appliedAt: b.appliedAt })
    }
    return out
  }

  /**
   * Takes over fleet bans found in the kernel (a restart, or elements the reconcile
   * loop did not know), with their tag, so a LAPI deletion still lifts them. Those on
   * addresses a guard now protects are lifted.
   */
  async adopt(entries: readonly ActiveBlockEntry[]): Promise<number> {
    const now = this.#now()
    const lift: string[] = []
    let n = 0
    for (const e of entries) {
      if (e.evidence !== 'fleet' || e.expiresInMs === undefined || e.expiresInMs <= 0 || this.#applied.has(e.address)) continue
      const ban: FleetBan = {
        address: e.address,
        family: e.family,
        expiresAt: now + e.expiresInMs,
        origin: e.fleet?.origin || 'unknown',
        scenario: e.fleet?.scenario || 'unknown',
        appliedAt: now,
      }
      if (e.fleet?.id !== undefined) ban.id = e.fleet.id
      const guard = this.#guards.check(e.address)
      if (guard !== null) {
        this.#refuse(ban, guard)
        lift.push(e.address)
        continue
      }
      if (this.#applied.size >= this.#trackLimit) break
      this.#applied.set(e.address, ban)
      n++
    }
    if (lift.length > 0) await this.#unblock(lift)
    return n
  }

  /** Fleet bans in force here, by address. */
  active(): ReadonlyMap<string, Readonly<FleetBan>> {
    this.#expire(this.#now())
    return this.#applied
  }

  stats(): FleetPullStats {
    return { ...this.#stats, active: this.#applied.size }
  }

  /**
   * Forgets bans an operator lifted here (`portanoia unblock`), so the fleet's view
   * agrees with the kernel. LAPI still holds the decision: it is applied again only
   * when LAPI sends it again (a new decision, or the startup stream after a restart).
   */
  forget(addresses: readonly string[]): void {
    for (const a of addresses) {
      this.#applied.delete(a)
      this.#retry.delete(a)
    }
  }

  /**
   * Stops polling and waits for a poll in progress. Fleet bans stay in the
   * kernel with their timeouts (like local ones): a restart adopts them.
   */
  async close(): Promise<void> {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    await this.#polling
  }

  // -------------------------------------------------------------------------

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      void this.poll().then(() => {
        if (this.#closed) return
        const backoff = this.#failStreak === 0 ? this.#intervalMs : this.#intervalMs * 2 ** Math.min(10, this.#failStreak)
        this.#schedule(Math.min(Math.max(this.#intervalMs, this.#maxBackoffMs), backoff))
      })
    }, ms)
    this.#timer.unref()
  }

  async #pollOnce(): Promise<void> {
    let s: DecisionStream
    try {
      // Until one startup call succeeded, LAPI has no cursor for us worth trusting.
      s = await this.#client.stream(!this.#synced)
    } catch (e) {
      this.#stats.pullFailures++
      this.#failStreak++
      const fields = errorFields(e)
      if (fields.message !== this.#lastError) {
        this.#lastError = fields.message
        this.#onEvent(fleetEvent({ op: 'pull-failed', ...fields }, this.#now()))
      }
      await this.#retryFailed()
      return
    }
    this.#synced = true
    this.#stats.pulls++
    if (this.#failStreak > 0) this.#onEvent(fleetEvent({ op: 'pull-recovered', count: this.#failStreak }, this.#now()))
    this.#failStreak = 0
    this.#lastError = ''
    try {
      await this.#apply(s)
    } catch (e) {
      // A responder must not throw (it reports per action); if one does anyway,
      // the poll loop must survive it.
      this.#stats.applyFailures++
      this.#onEvent(fleetEvent({ op: 'apply-failed', ...errorFields(e) }, this.#now()))
    }
  }

  async #apply(s: DecisionStream): Promise<void> {
    const now = this.#now()
    this.#expire(now)
    // Deletions first: an address deleted and re-added in one answer ends up banned.
    const lift: string[] = []
    for (const d of s.deleted) {
      const address = parseAddress(d.value)
      if (address === null) continue
      const addr = formatAddress(address)
      this.#retry.delete(addr)
      const refused = this.#refused.get(addr)
      if (refused !== undefined && sameDecision(refused, d)) this.#refused.delete(addr)
      const ban = this.#applied.get(addr)
      // Only a ban we applied, and only for the decision that is deleted: LAPI
      // keeps one decision per address, and deleting a shorter one must not lift
      // the longer one we applied.
      if (ban === undefined || !sameDecision(ban, d)) continue
      this.#applied.delete(addr)
      // The fleet's own set only: a local block of the same address stays.
      lift.push(addr)
    }
    if (lift.length > 0) await this.#unblock(lift)

    const wanted = new Map<string, FleetBan>()
    for (const d of s.new) {
      const ban = this.#admit(d, now)
      if (ban !== null) wanted.set(ban.address, ban)
    }
    for (const [addr, ban] of this.#retry) if (!wanted.has(addr) && this.#allowed(ban)) wanted.set(addr, ban)
    this.#retry.clear()
    const unguarded = this.#reconcileGuards(wanted)
    if (unguarded.length > 0) await this.#unblock(unguarded)
    await this.#block([...wanted.values()], now)
  }

  /** Checks one stream decision; returns the ban to apply, or null (skipped, refused, already applied). */
  #admit(d: LapiDecision, now: number): FleetBan | null {
    if (d.scope.toLowerCase() !== 'ip') return this.#skip('scope', d.value, d.scope)
    if (d.type.toLowerCase() !== 'ban') return this.#skip('type', d.value, d.type)
    const address = parseAddress(d.value)
    if (address === null) return this.#skip('bad-value', undefined, d.value.slice(0, 64))
    const addr = formatAddress(address)
    let left = parseGoDuration(d.duration)
    if (left === null && d.until !== undefined) {
      const until = Date.parse(d.until)
      if (Number.isFinite(until)) left = until - Date.now()
    }
    if (left === null) return this.#skip('bad-duration', addr, d.duration.slice(0, 64))
    if (left < 1000) return this.#skip('expired', addr, d.duration)
    const clamped = left > this.#maxTtlMs
    if (clamped) left = this.#maxTtlMs
    // A host receives its own decisions back: its own block is already there.
    if (d.origin === FLEET_ORIGIN && this.#isLocalBlock(addr)) return this.#skip('own', addr, d.scenario)
    const ban: FleetBan = {
      address: addr,
      family: address.family,
      expiresAt: now + left,
      origin: d.origin,
      scenario: d.scenario,
    }
    if (d.id !== undefined) ban.id = d.id
    const guard = this.#guards.check(addr)
    if (guard !== null) {
      this.#refuse(ban, guard)
      return null
    }
    this.#refused.delete(addr)
    const have = this.#applied.get(addr)
    // Idempotent: a ban that already lasts as long (within a second) is not re-sent.
    if (have !== undefined && have.expiresAt >= ban.expiresAt - 1000) {
      if (ban.id !== undefined) have.id = ban.id
      return null
    }
    if (clamped) {
      // Once per decision: LAPI sends a decision once (the stream is a state sync), and
      // the clamped ban is then applied like any other, never retried for its length.
      this.#onEvent(
        fleetEvent({ op: 'clamped', src: addr, detail: `${d.duration.slice(0, 64)} → ${formatGoDuration(left)}`, message: `longer than ${this.#responder.name} holds` }, this.#now()),
      )
    }
    return ban
  }

  /** Guard check for a ban waiting for a retry (the guards may have changed meanwhile). */
  #allowed(ban: FleetBan): boolean {
    const guard = this.#guards.check(ban.address)
    if (guard === null) return true
    this.#refuse(ban, guard)
    return false
  }

  #skip(why: SkipWhy, src: string | undefined, detail: string): null {
    this.#stats.skipped++
    const fields: Parameters<typeof fleetEvent>[0] = { op: 'skipped', why, detail }
    if (src !== undefined) fields.src = src
    this.#onEvent(fleetEvent(fields, this.#now()))
    return null
  }

  #refuse(ban: FleetBan, guard: GuardReason): void {
    const prev = this.#refused.get(ban.address)
    if (prev === undefined || prev.guard !== guard || prev.id !== ban.id) {
      this.#stats.refused++
      const fields: Parameters<typeof fleetDecisionEvent>[0] = {
        action: 'none',
        reason: `guard:${guard}`,
        src: ban.address,
        family: ban.family,
        origin: ban.origin,
        scenario: ban.scenario,
      }
      if (ban.id !== undefined) fields.fleetId = ban.id
      this.#onEvent(fleetDecisionEvent(fields, this.#now()))
    }
    if (this.#refused.size < this.#trackLimit || prev !== undefined) this.#refused.set(ban.address, { ...ban, guard })
  }

  /**
   * Local guards win, also later: when the guards changed since the last poll,
   * refused bans that are no longer guarded become wanted, and applied bans that
   * now are guarded are lifted (and reported as refused). Returns the addresses to unblock.
   */
  #reconcileGuards(wanted: Map<string, FleetBan>): string[] {
    const gen = this.#guards.generation
    if (gen === undefined || gen === this.#guardGeneration) return []
    this.#guardGeneration = gen
    const now = this.#now()
    for (const [addr, ban] of this.#refused) {
      if (ban.expiresAt <= now) {
        this.#refused.delete(addr)
      } else if (this.#guards.check(addr) === null) {
        this.#refused.delete(addr)
        const { guard: _, ...plain } = ban
        if (!wanted.has(addr)) wanted.set(addr, plain)
      }
    }
    const lift: string[] = []
    for (const [addr, ban] of this.#applied) {
      const guard = this.#guards.check(addr)
      if (guard === null) continue
      this.#applied.delete(addr)
      this.#refuse(ban, guard)
      lift.push(addr)
    }
    return lift
  }

  async #block(bans: FleetBan[], now: number): Promise<void> {
    if (bans.length === 0) return
    // The fleet's own set, tagged: the firewall never shortens an element, and a
    // longer ban grows the one there.
    const requests: BlockRequest[] = bans.map((b) => ({
      address: b.address,
      family: b.family,
      ttlMs: Math.max(1000, b.expiresAt - now),
      evidence: 'fleet',
      fleet: tagOf(b),
    }))
    const result = await this.#responder.block(requests)
    const failed = new Map(result.failed.map((f) => [f.address, f.error]))
    for (const ban of bans) {
      const error = failed.get(ban.address)
      if (error !== undefined || (!result.ok && !result.applied.includes(ban.address))) {
        this.#stats.applyFailures++
        if (this.#retry.size < this.#trackLimit) this.#retry.set(ban.address, ban)
        this.#onEvent(
          fleetEvent(
            { op: 'apply-failed', src: ban.address, code: 'PORTANOIA_FLEET_APPLY', message: error ?? 'responder failed' },
            this.#now(),
          ),
        )
        continue
      }
      const isNew = !this.#applied.has(ban.address)
      if (isNew && this.#applied.size >= this.#trackLimit) {
        // Past the bound we stop tracking (the kernel still expires the ban); we
        // then cannot lift it on deletion, which is the safe side.
        this.#stats.applied++
        continue
      }
      ban.appliedAt = this.#now()
      this.#applied.set(ban.address, ban)
      this.#stats.applied++
      const fields: Parameters<typeof fleetDecisionEvent>[0] = {
        action: 'block',
        reason: 'fleet',
        src: ban.address,
        family: ban.family,
        ttlMs: Math.max(1000, Math.round(ban.expiresAt - now)),
        expiresAt: new Date(ban.expiresAt).toISOString(),
        origin: ban.origin,
        scenario: ban.scenario,
      }
      if (ban.id !== undefined) fields.fleetId = ban.id
      this.#onEvent(fleetDecisionEvent(fields, this.#now()))
    }
  }

  async #unblock(addresses: string[]): Promise<void> {
    try {
      const result = await this.#responder.unblock(addresses, { evidence: 'fleet' })
      const failed = new Set(result.failed.map((f) => f.address))
      for (const addr of addresses) {
        if (failed.has(addr)) {
          this.#stats.applyFailures++
          this.#onEvent(fleetEvent({ op: 'apply-failed', src: addr, code: 'PORTANOIA_FLEET_UNBLOCK', message: 'unblock failed' }, this.#now()))
          continue
        }
        this.#stats.unblocked++
        this.#onEvent(fleetEvent({ op: 'unblocked', src: addr }, this.#now()))
      }
    } catch (e) {
      this.#stats.applyFailures++
      this.#onEvent(fleetEvent({ op: 'apply-failed', ...errorFields(e) }, this.#now()))
    }
  }

  /** While LAPI is down, bans the responder failed to apply are still retried. */
  async #retryFailed(): Promise<void> {
    if (this.#retry.size === 0) return
    const now = this.#now()
    const bans = [...this.#retry.values()].filter((b) => b.expiresAt - now >= 1000 && this.#allowed(b))
    this.#retry.clear()
    try {
      await this.#block(bans, now)
    } catch (e) {
      this.#stats.applyFailures++
      this.#onEvent(fleetEvent({ op: 'apply-failed', ...errorFields(e) }, this.#now()))
    }
  }

  #expire(now: number): void {
    // The kernel expires the elements itself; forget them here too.
    for (const [addr, ban] of this.#applied) if (ban.expiresAt <= now) this.#applied.delete(addr)
  }
}

function tagOf(b: FleetBan): FleetTag {
  const tag: FleetTag = { origin: b.origin, scenario: b.scenario }
  if (b.id !== undefined) tag.id = b.id
  return tag
}

function sameDecision(ban: { id?: number }, d: LapiDecision): boolean {
  return ban.id === undefined || d.id === undefined || ban.id === d.id
}

function positive(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback
  if (!Number.isFinite(v) || v <= 0) {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `fleet ${name} must be a positive number, got ${v}`, {
      hint: 'leave it unset for the default',
    })
  }
  return v
}
