/**
 * Forgery alerts: a packet with positive evidence of forgery (attribution `forged`)
 * that claims an address portanoia guards — one of the host's own, a gateway, a
 * resolver, an admin's peer, the allowlist — means someone on the network is forging
 * that address. The policy never blocks such an address anyway (guards); this says
 * that it is being forged, where the frames came from (the interface, the bridge it is
 * a port of, the forger's link-layer address) and who really holds it. Once per
 * claimed address and guard per `windowMs`, with the packets since the last alert
 * counted; at most `maxTracked` claims remembered. Pure: the guard question is
 * injected (the daemon passes the guards' snapshot, then the kernel's live answer
 * within a budget).
 */
import type { Trigger } from '../policy/decision.js'
import type { GuardReason } from '../policy/guards.js'
import { HIT_KEY_WORDS, hitKey, KEY_SOURCE } from '../hit-key.js'
import type { Hit } from '../types.js'
import { WordMap } from '../word-map.js'
import type { Attributed } from './types.js'

export interface Forgery {
  /** The claimed (guarded) address. */
  src: string
  family: 4 | 6
  guard: GuardReason
  evidence: readonly string[]
  /** The frame's link-layer source: the forging station. */
  srcMac?: string
  /** Who holds the address on the link (the confirmed entry, or the MACs that answered). */
  holder?: string
  /** Where the frames came in; a bridge port names the forger's port. */
  interface: string
  bridge?: string
  trigger: Trigger
  /** Forged packets claiming it since the last alert (this one included). */
  count: number
  firstSeen: number
  lastSeen: number
}

export interface ForgeryAlertsOptions {
  /** Why `src` is guarded, or null. */
  guardOf: (src: string) => GuardReason | null
  /** The bridge an interface is a port of (by ifindex), when it is one. */
  bridgeOf?: (ifindex: number) => string | undefined
  now?: () => number
  windowMs?: number
  maxTracked?: number
}

interface Claim {
  guard: GuardReason | null
  guardAt: number
  alertedAt: number
  count: number
  firstSeen: number
}

export class ForgeryAlerts {
  readonly #guardOf: (src: string) => GuardReason | null
  readonly #bridgeOf: (ifindex: number) => string | undefined
  readonly #now: () => number
  readonly #windowMs: number
  /** By the claimed address's key (lib/hit-key.ts): a forged flood hashes no string per packet. */
  readonly #claims: WordMap<Claim>
  readonly #key = new Int32Array(HIT_KEY_WORDS)
  #alerts = 0
  #forgedPackets = 0

  constructor(options: ForgeryAlertsOptions) {
    this.#guardOf = options.guardOf
    this.#bridgeOf = options.bridgeOf ?? (() => undefined)
    this.#now = options.now ?? Date.now
    this.#windowMs = options.windowMs ?? 60_000
    this.#claims = new WordMap(KEY_SOURCE, options.maxTracked ?? 4096)
  }

  /** A hit and its attribution: an alert when it is forged and claims a guarded address (once per window). */
  observe(hit: Hit, answer: Pick<Attributed, 'attribution' | 'evidence' | 'detail'>): Forgery | null {
    if (answer.attribution !== 'forged') return null
    this.#forgedPackets++
    const now = this.#now()
    const key = this.#key
    if (!hitKey(hit, key)) return null
    let c = this.#claims.get(key)
    if (c === undefined || now - c.guardAt >= this.#windowMs) {
      // The guard is asked once per claimed address and window: a flood of forged
      // sources costs one question each, not one per packet.
      const guard = this.#guardOf(hit.src)
      c = { guard, guardAt: now, alertedAt: c?.alertedAt ?? -Infinity, count: c?.count ?? 0, firstSeen: c?.firstSeen ?? hit.time }
      this.#claims.set(key, c)
    }
    const src = hit.src
    if (c.guard === null) return null
    c.count++
    if (now - c.alertedAt < this.#windowMs) return null
    const count = c.count
    const firstSeen = c.firstSeen
    c.alertedAt = now
    c.count = 0
    c.firstSeen = hit.time
    this.#alerts++
    const f: Forgery = {
      src,
      family: hit.family,
      guard: c.guard,
      evidence: [...answer.evidence],
      interface: hit.interface,
      trigger: { dst: hit.dst, dstPort: hit.dstPort, srcPort: hit.srcPort, proto: hit.proto, kind: hit.kind, interface: hit.interface },
      count,
      firstSeen,
      lastSeen: hit.time,
    }
    const mac = hit.srcMac ?? (typeof answer.detail.frameMac === 'string' ? answer.detail.frameMac : undefined)
    if (mac !== undefined) f.srcMac = mac
    if (typeof answer.detail.holder === 'string') f.holder = answer.detail.holder
    const bridge = hit.ifindex === 0 ? undefined : this.#bridgeOf(hit.ifindex)
    if (bridge !== undefined) f.bridge = bridge
    return f
  }

  stats(): { forgedPackets: number; forgeryAlerts: number } {
    return { forgedPackets: this.#forgedPackets, forgeryAlerts: this.#alerts }
  }
}
