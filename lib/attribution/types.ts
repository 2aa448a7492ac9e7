/**
 * Attribution's vocabulary: is the source address written in a packet plausibly its
 * sender, or provably forged? The three answers, the stable evidence names every
 * built-in validator uses (operators alert on them: add, never rename), and the one
 * small interface every validator — built-in or an embedding service's own —
 * implements. Pure declarations.
 *
 * The fold rule (lib/attribution/attributor.ts applies it): `verified` beats everything
 * (the hit completed a handshake, or its source did within the verified memory); else
 * `forged` when any validator returned a forged verdict (positive evidence is needed);
 * else `plausible`. Evidence is the union of every validator's names, in validator order.
 */

import type { Attribution, Hit } from '../types.js'

export type { Attribution }

export const ATTRIBUTIONS: readonly Attribution[] = ['verified', 'plausible', 'forged']

/**
 * The evidence names of the built-in validators and of the attributor itself, with
 * what each one means. A validator of an embedding service adds its own names; the
 * convention is `NAME:what`.
 */
export const EVIDENCE = {
  'link:match': 'on-link source: the frame came from the link-layer address that holds the address (a confirmed neighbour entry, or the one answer to a fresh ARP/NS question)',
  'link:mismatch': 'on-link source: another link-layer address holds it (a confirmed neighbour entry, or the answer to a fresh question) — forged',
  'link:no-answer': 'on-link source: nobody on the link answers for the address — forged',
  'link:conflict': 'on-link source: several link-layer addresses answer for it, the frame’s among them (someone is claiming an address that is not theirs; no verdict)',
  'rpf:pass': 'the route back to the source leaves through the interface the packet arrived on',
  'rpf:no-route': 'there is no route back to the source (unreachable, blackhole, prohibit) — forged',
  'rpf:other-interface': 'the route back to the source leaves through another interface than the packet arrived on (strict reverse path) — forged',
  self: 'the packet claims one of this host’s own addresses and arrived from a link — forged',
  'hops:match': 'the hop count agrees with the distance learned from a completed handshake with this address',
  'hops:mismatch': 'the hop count differs from the distance learned from a completed handshake with this address — forged packet (a verified source stays verified)',
  decoy: 'the source is in a decoy group: the same probes (ports, flags, IP ID, TCP window and options) came from several sources within milliseconds, as nmap -D sends them (no verdict by itself)',
  'decoy:sender': 'in its decoy group, the only source nothing says was forged: the likely real sender (no verdict by itself)',
  pending: 'an asynchronous check (a link-layer question) has not answered yet: the attribution may still change',
  unchecked: 'no check ran: no attributor is attached, the frame carried nothing to check, or the check budget was spent',
  'validator-failed': 'a validator threw or rejected; its verdict is missing',
} as const satisfies Record<string, string>

export type EvidenceName = keyof typeof EVIDENCE

/** What a validator knows about one packet: the claimed source and how the frame came in. */
export interface ValidationContext {
  /** The claimed source address, canonical (IPv4-mapped IPv6 as IPv4). */
  readonly src: string
  readonly family: 4 | 6
  /** The address of this host the packet was sent to. */
  readonly dst: string
  /** Interface the frame arrived on; 0 when unknown (a verified connect comes from accept()). */
  readonly ifindex: number
  readonly interface: string
  /** Outer VLAN id, when the frame was tagged. */
  readonly vlan: number | undefined
  /** The frame's link-layer source (aa:bb:cc:dd:ee:ff), when it had one. */
  readonly srcMac: string | undefined
  /** IPv4 TTL or IPv6 hop limit; 0 when unknown. */
  readonly ttl: number
  /** The hit itself, for validators that need more (a detached copy: it may be kept). */
  readonly hit: Hit
}

export type Verdict = 'plausible' | 'forged'

/** One validator's answer about one packet. */
export interface ValidatorResult {
  /** A verdict needs evidence behind it; no verdict means "nothing to say either way". */
  verdict?: Verdict
  /** Stable names of what was found (EVIDENCE for the built-ins). */
  evidence: readonly string[]
  /** Details for people (the MAC that answered, the route's interface); text or numbers only. */
  detail?: Readonly<Record<string, string | number>>
}

/**
 * A source of evidence. `validate` runs once per source and packet signature (arrival
 * interface, link-layer source, TTL) and is cached; it runs on the JS thread, off the
 * capture thread, and must be cheap when synchronous (a netlink round trip, a table
 * lookup). Slow questions return a promise: until it settles, the hit says `pending`.
 * Null: nothing to say about this packet.
 */
export interface Validator {
  /** Names the validator in logs and in `validator-failed` details. */
  readonly name: string
  validate(ctx: ValidationContext): ValidatorResult | null | Promise<ValidatorResult | null>
  /**
   * Sees every hit the attributor is asked about, before the cache (learning from
   * verified traffic, say). Must be cheap: it runs per hit. True when what it knows
   * about `hit.src` changed: the cached answers about that source are dropped.
   */
  observe?(hit: Hit): boolean | void
  /** Releases what the validator holds (sockets, timers). */
  close?(): void
}

/** A hit's attribution: shared and frozen, one object per cached answer (never per hit). */
export interface Attributed {
  readonly attribution: Attribution
  readonly evidence: readonly string[]
  /** Details the validators gave, merged (later validators do not overwrite earlier keys). */
  readonly detail: Readonly<Record<string, string | number>>
  /** True while an asynchronous validator has not answered. */
  readonly pending: boolean
}
