/**
 * The daemon's attribution side, one object (AttributionPipeline) so daemon.ts stays
 * the assembly: it attaches an Attributor to the sensor (the built-in validators for
 * the watched namespace, then the embedding service's own), hears pending answers
 * settle and has the policy decide those sources again, and raises a `forgery` event
 * when a forged packet claims an address the guards protect. Runs on the main thread; every
 * table it fills from traffic is bounded (lib/attribution), and nothing it does throws
 * into the capture loop (failures are logged once per kind).
 */
import { attach } from '../attribution/attach.js'
import type { Attributor } from '../attribution/attributor.js'
import { forgeryEvent } from '../attribution/events.js'
import { ForgeryAlerts } from '../attribution/forgery.js'
import type { LinkView } from '../attribution/link-view.js'
import type { ReversePathMode } from '../attribution/reverse-path.js'
import type { Attributed, Validator } from '../attribution/types.js'
import type { NativeBinding } from '../binding.js'
import { parseAddress } from '../policy/addr.js'
import type { Decision } from '../policy/decision.js'
import type { PolicyEngine } from '../policy/engine.js'
import type { GuardReason } from '../policy/guards.js'
import type { Sensor } from '../sensor.js'
import type { Hit } from '../types.js'
import type { PortanoiaEvent } from './events.js'
import type { LiveChecks } from './host-watch.js'

export interface AttributionConfig {
  /** Strict reverse path (default), loose, or off. */
  reversePath?: ReversePathMode | 'off'
  /** Ask the link (ARP/NS) about on-link sources the neighbour table cannot answer for. Default true. */
  linkProbe?: boolean
  /** Validators of an embedding service, after the built-ins. */
  validators?: readonly Validator[]
}

export interface AttributionPipelineOptions extends AttributionConfig {
  sensor: Sensor
  engine: PolicyEngine
  live: LiveChecks | null
  /** Path of the watched namespace, when not this process's. */
  netns?: string
  binding?: NativeBinding
  now?: () => number
  emit: (event: PortanoiaEvent) => void
  handle: (decisions: readonly Decision[]) => void
  log: (level: 'info' | 'warn', message: string) => void
}

/** Live peer questions for forgery alerts, a second (each walks the established-socket hash). */
const LIVE_GUARD_CHECKS_PER_S = 20

export class AttributionPipeline {
  readonly attributor: Attributor
  readonly #links: LinkView
  readonly #engine: PolicyEngine
  readonly #live: LiveChecks | null
  readonly #forgeries: ForgeryAlerts
  readonly #emit: (event: PortanoiaEvent) => void
  readonly #handle: (decisions: readonly Decision[]) => void
  readonly #log: (level: 'info' | 'warn', message: string) => void
  readonly #warned = new Set<string>()
  readonly #now: () => number
  #liveBudget = LIVE_GUARD_CHECKS_PER_S
  #liveBudgetAt = -Infinity
  #closed = false

  constructor(options: AttributionPipelineOptions) {
    this.#engine = options.engine
    this.#live = options.live
    this.#emit = options.emit
    this.#handle = options.handle
    this.#log = options.log
    this.#now = options.now ?? Date.now
    const made = attach(options.sensor, {
      ...(options.netns !== undefined && { netns: options.netns }),
      ...(options.validators !== undefined && { validators: options.validators }),
      ...(options.reversePath !== undefined && { reversePath: options.reversePath }),
      ...(options.linkProbe !== undefined && { linkProbe: options.linkProbe }),
      ...(options.binding !== undefined && { binding: options.binding }),
      ...(options.now !== undefined && { now: options.now }),
      // A forger claims a guarded address where it hurts: ask the link about those every time.
      ask: (src) => options.engine.guards.check(src) !== null,
      onError: (what, err) => this.#warnOnce(what, err),
    })
    this.attributor = made.attributor
    this.#links = made.links
    this.#forgeries = new ForgeryAlerts({
      now: this.#now,
      guardOf: (src) => this.#guardOf(src),
      bridgeOf: (ifindex) => {
        const master = this.#links.link(ifindex)?.master ?? 0
        const m = master === 0 ? undefined : this.#links.link(master)
        return m?.kind === 'bridge' ? m.name : undefined
      },
    })
    this.attributor.onSettled((src, answer, hit) => this.#settled(src, answer, hit))
  }

  /** After the policy saw `hit` (not a reply): a forgery alert when it is one. */
  observe(hit: Hit): void {
    if (this.#closed) return
    if (hit.attribution === 'forged') this.#forgery(hit, this.attributor.answerFor(hit))
  }

  stats(): Record<string, number> {
    const a = this.attributor.stats()
    const f = this.#forgeries.stats()
    return { ...a, ...f }
  }

  /** Closes the attributor (and the link handles it opened). Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.attributor.close()
  }

  // -------------------------------------------------------------------------

  #settled(src: string, answer: Attributed, hit: Hit): void {
    if (this.#closed) return
    try {
      this.#handle(this.#engine.reattribute(src, answer, hit))
      if (answer.attribution === 'forged') this.#forgery(hit, answer)
    } catch (err) {
      this.#warnOnce('settle', err)
    }
  }

  #forgery(hit: Hit, answer: Attributed): void {
    const f = this.#forgeries.observe(hit, answer)
    if (f !== null) this.#emit(forgeryEvent(f))
  }

  /** The guards' snapshot, then (rationed) the kernel's live answer: an admin's session is a peer. */
  #guardOf(src: string): GuardReason | null {
    const snap = this.#engine.guards.check(src)
    if (snap !== null || this.#live === null) return snap
    const now = this.#now()
    if (now - this.#liveBudgetAt >= 1000) {
      this.#liveBudgetAt = now
      this.#liveBudget = LIVE_GUARD_CHECKS_PER_S
    }
    if (this.#liveBudget <= 0) return null
    this.#liveBudget--
    const addr = parseAddress(src)
    return addr === null ? null : this.#live.guard(addr)
  }

  #warnOnce(what: string, err: unknown): void {
    const code = (err as { code?: unknown }).code
    const key = `${what}:${typeof code === 'string' ? code : ''}`
    if (this.#warned.has(key)) return
    this.#warned.add(key)
    this.#log('warn', `attribution: ${what} failed (${err instanceof Error ? err.message : String(err)}); its evidence is missing until it works`)
  }
}
