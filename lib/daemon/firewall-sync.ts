/**
 * FirewallSync: keeps what the daemon believes blocked and what the kernel holds
 * the same, with the kernel as the truth. On a timer (cheap: a terse read of the
 * table's shape), on the firewall's change notifications (`nft monitor`: a table,
 * set, chain or rule deleted, elements deleted) and when asked (a verified connect
 * from an address believed blocked proves a block missing), it
 * - puts back the table's shape when any of it is gone (a `nft flush ruleset`, a
 *   service reload) and re-adds every block the engine and the fleet link hold to
 *   the sets that were recreated, with the time they have left;
 * - forgets blocks whose element disappeared while its set stayed (an operator's
 *   `portanoia unblock`, `nft delete element`): the engine and the fleet link no
 *   longer count them;
 * - takes over elements it did not know (added by hand): the engine adopts local
 *   ones, the fleet link fleet ones with their tag; adopted blocks on guarded
 *   addresses are removed;
 * - aligns the believed expiry with the kernel's;
 * - last, where the firewall keeps a mirror (nftables enforcing at ingress: the
 *   netdev table's sets), brings it in step with the record (one `restored` event
 *   with missing ['netdev elements'] when anything was written).
 * The full comparison reads every element, so it runs only when something points
 * at a difference, and otherwise every `fullMs`. One run at a time; a trigger during
 * a run schedules one more. Each finding is one `firewall` event. Runs on the main
 * thread; nothing it does throws into the caller (failures become `error` events).
 */
import { type FirewallEvent, firewallEvent } from './events.js'
import type { ActiveBlock, AdoptedBlock, AdoptResult } from '../policy/engine.js'
import type { ActiveBlockEntry, BlockRequest, Evidence, FirewallChange, FirewallWatch, FleetTag, Responder, ResponderResult } from '../responders/types.js'

/** The firewall, as the sync uses it: a responder that can repair, list and (optionally) watch. */
export type SyncFirewall = Pick<Responder, 'name' | 'block' | 'unblock' | 'list' | 'watch'> & {
  repair(): Promise<string[]>
  /** A firewall enforcing in a second table (nftables' netdev ingress): brings it in step with the record; what changed. */
  mirror?(): Promise<string[]>
}

/** What the sync needs from the policy engine. */
export interface SyncEngine {
  /** Blocks the firewall confirmed, with when. */
  confirmedBlocks(): Array<ActiveBlock & { confirmedAt: number }>
  isBlocked(src: string): boolean
  release(src: string): boolean
  adopt(blocks: readonly AdoptedBlock[]): AdoptResult
  setExpiry(src: string, expiresAt: number): void
}

/** A fleet ban as the fleet link holds it. */
export interface SyncFleetBan {
  address: string
  family: 4 | 6
  expiresAt: number
  tag: FleetTag
  appliedAt: number
}

/** What the sync needs from the fleet link's pull side. */
export interface SyncFleet {
  bans(): SyncFleetBan[]
  forget(addresses: readonly string[]): void
  adopt(entries: readonly ActiveBlockEntry[]): void
}

export interface FirewallSyncOptions {
  engine: SyncEngine
  /** The fleet link's pull side, when bans are pulled. */
  fleet?: () => SyncFleet | null
  emit(e: FirewallEvent): void
  onError(err: unknown): void
  /** Shape check period, ms. Default 5000. */
  intervalMs?: number
  /** Full comparison period, ms. Default 60,000. */
  fullMs?: number
  /** Longest wait after a trigger, to gather a burst of notifications. Default 50 ms. */
  debounceMs?: number
  now?: () => number
}

/** What a firewall's start() found and changed (NftablesResponder.startReport). */
export interface StartReport {
  /** What was missing or of an earlier layout, when a table existed. */
  problems: string[]
  /** Addresses moved from the sets of an earlier version. */
  migrated: string[]
}

/**
 * The events for what the firewall's start() did to an existing table: a migration
 * from an earlier layout, parts of the shape put back. A first start (no table) is
 * not news.
 */
export function startReport(firewall: object, emit: (e: FirewallEvent) => void): void {
  const report = (firewall as { startReport?: StartReport | null }).startReport
  const name = (firewall as { name?: string }).name ?? 'firewall'
  if (report === undefined || report === null) return
  // A migration replaces sets and rules wholesale: that is its one event.
  if (report.migrated.length > 0 || report.problems.some((p) => p.startsWith('legacy'))) {
    emit(firewallEvent({ op: 'migrated', responder: name, addresses: report.migrated }))
  } else if (report.problems.length > 0) {
    emit(firewallEvent({ op: 'restored', responder: name, addresses: [], missing: report.problems }))
  }
}

// An element this close to its end is left to expire, not adopted (the engine may
// just have let its own block lapse a rounding second before the kernel).
const ADOPT_MIN_LEFT_MS = 5000

export class FirewallSync {
  readonly #fw: SyncFirewall
  readonly #opts: FirewallSyncOptions
  readonly #now: () => number
  readonly #intervalMs: number
  readonly #fullMs: number
  readonly #debounceMs: number
  #timer: NodeJS.Timeout | undefined
  #debounce: NodeJS.Timeout | undefined
  #running: Promise<void> | null = null
  #again = false
  #wantFull = false
  #lastFull = 0
  #closed = false
  #watch: FirewallWatch | null = null
  #counts = { checks: 0, full: 0, restored: 0, forgotten: 0, adopted: 0, repairs: 0, failures: 0 }

  constructor(firewall: SyncFirewall, options: FirewallSyncOptions) {
    this.#fw = firewall
    this.#opts = options
    this.#now = options.now ?? Date.now
    this.#intervalMs = options.intervalMs ?? 5000
    this.#fullMs = options.fullMs ?? 60_000
    this.#debounceMs = options.debounceMs ?? 50
    this.#lastFull = this.#now()
  }

  /** Starts the timer and, where the firewall can, the change notifications. */
  start(): this {
    this.#timer = setInterval(() => this.trigger(), this.#intervalMs)
    this.#timer.unref()
    try {
      this.#watch = this.#fw.watch?.((c) => this.#onChange(c)) ?? null
    } catch (err) {
      this.#opts.onError(err)
    }
    return this
  }

  /** Asks for a check soon; `full` compares every element too. */
  trigger(full = false): void {
    if (this.#closed) return
    if (full) this.#wantFull = true
    if (this.#debounce !== undefined) return
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined
      void this.run()
    }, this.#debounceMs)
    this.#debounce.unref()
  }

  /** Runs a check now (after the one in progress); resolves when it is done. */
  run(): Promise<void> {
    if (this.#running !== null) {
      this.#again = true
      return this.#running
    }
    this.#running = this.#once()
      .catch((err: unknown) => {
        this.#counts.failures++
        this.#opts.onError(err)
      })
      .finally(() => {
        this.#running = null
        if (this.#again && !this.#closed) {
          this.#again = false
          void this.run()
        }
      })
    return this.#running
  }

  stats(): Record<string, number> {
    return { ...this.#counts }
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#timer !== undefined) clearInterval(this.#timer)
    if (this.#debounce !== undefined) clearTimeout(this.#debounce)
    await this.#watch?.stop()
    await this.#running
  }

  #onChange(_c: FirewallChange): void {
    // Any deletion under our table is a lost shape or someone's unblock (ours are
    // already forgotten by the time the kernel reports them): compare everything.
    this.trigger(true)
  }

  async #once(): Promise<void> {
    if (this.#closed) return
    this.#counts.checks++
    const started = this.#now()
    // repair() also reports what a write repaired on its own since it was last asked
    // (block() met a vanished table): those sets came back empty too.
    const problems = await this.#fw.repair()
    const full = problems.length > 0 || this.#wantFull || started - this.#lastFull >= this.#fullMs
    if (!full) return
    this.#wantFull = false
    this.#lastFull = started
    this.#counts.full++
    if (problems.length > 0) this.#counts.repairs++
    const kernel = await this.#fw.list()
    const recreated = (evidence: Evidence, family: 4 | 6): boolean =>
      problems.includes('table') || problems.some((p) => p === `set ${evidence}${family}` || p === `set ${evidence}${family} (type)`)
    const held = new Map<string, ActiveBlockEntry>()
    for (const e of kernel) if (e.evidence !== undefined) held.set(`${e.evidence}|${e.address}`, e)

    const now = this.#now()
    const restore: BlockRequest[] = []
    const forgotten: string[] = []
    // The engine's blocks the firewall confirmed before this look began.
    const engine = this.#opts.engine
    for (const b of engine.confirmedBlocks()) {
      if (b.confirmedAt > started || !(b.expiresAt > now)) continue
      const evidence: Evidence = b.verified ? 'verified' : 'spoofable'
      const e = held.get(`${evidence}|${b.src}`)
      if (e !== undefined) {
        if (e.expiresInMs !== undefined && Math.abs(now + e.expiresInMs - b.expiresAt) > 2000) engine.setExpiry(b.src, now + e.expiresInMs)
        continue
      }
      if (recreated(evidence, b.family)) {
        if (Number.isFinite(b.expiresAt)) restore.push({ address: b.src, family: b.family, ttlMs: b.expiresAt - now, evidence })
      } else {
        engine.release(b.src)
        forgotten.push(b.src)
      }
    }
    const fleet = this.#opts.fleet?.() ?? null
    if (fleet !== null) {
      for (const ban of fleet.bans()) {
        if (ban.appliedAt > started || !(ban.expiresAt > now)) continue
        if (held.has(`fleet|${ban.address}`)) continue
        if (recreated('fleet', ban.family)) {
          restore.push({ address: ban.address, family: ban.family, ttlMs: ban.expiresAt - now, evidence: 'fleet', fleet: ban.tag })
        } else {
          fleet.forget([ban.address])
          forgotten.push(ban.address)
        }
      }
    }
    // Elements nobody here knew: adopted (the kernel is the truth).
    const lasting = (e: ActiveBlockEntry): boolean => e.expiresInMs === undefined || e.expiresInMs >= ADOPT_MIN_LEFT_MS
    const local = kernel.filter((e) => e.evidence !== 'fleet' && lasting(e) && !engine.isBlocked(e.address))
    const adopted: string[] = []
    if (local.length > 0) {
      const r = engine.adopt(
        local.map((e) => ({
          src: e.address,
          verified: e.evidence !== 'spoofable',
          ...(e.expiresInMs !== undefined && { expiresInMs: e.expiresInMs }),
          ...(e.timeoutMs !== undefined && { timeoutMs: e.timeoutMs }),
        })),
      )
      adopted.push(...local.map((e) => e.address))
      if (r.guarded.length > 0) {
        const srcs = r.guarded.map((g) => g.src)
        await this.#fw.unblock(srcs)
        for (const s of srcs) engine.release(s)
      }
    }
    if (fleet !== null) {
      const known = new Set(fleet.bans().map((b) => b.address))
      const unknown = kernel.filter((e) => e.evidence === 'fleet' && lasting(e) && !known.has(e.address))
      if (unknown.length > 0) {
        fleet.adopt(unknown)
        adopted.push(...unknown.map((e) => e.address))
      }
    }
    let result: ResponderResult | undefined
    if (restore.length > 0) result = await this.#fw.block(restore)
    const event = (op: FirewallEvent['op'], addresses: readonly string[], missing?: readonly string[]): void =>
      this.#opts.emit(firewallEvent({ op, responder: this.#fw.name, addresses, ...(missing !== undefined && { missing }) }, this.#now()))
    if (problems.length > 0 || restore.length > 0) {
      this.#counts.restored += result?.applied.length ?? 0
      event('restored', result?.applied ?? [], problems)
      if (result !== undefined && result.failed.length > 0) this.#opts.onError(new Error(`restoring ${result.failed.length} block(s) failed: ${result.failed[0]?.error ?? ''}`))
    }
    if (forgotten.length > 0) {
      this.#counts.forgotten += forgotten.length
      event('forgotten', forgotten)
    }
    if (adopted.length > 0) {
      this.#counts.adopted += adopted.length
      event('adopted', adopted)
    }
    const mirrored = (await this.#fw.mirror?.()) ?? []
    if (mirrored.length > 0) {
      this.#counts.restored += mirrored.length
      event('restored', mirrored, ['netdev elements'])
    }
  }
}
