/**
 * The event stream's stable schema: what `portanoia watch --json` prints, one JSON
 * object per line, and what the pretty terminal output renders. Twelve types — `hit`,
 * `decision`, `stats`, `error`, `fleet`, `operator`, `firewall` (the kernel's firewall
 * differed from what the daemon believed, and the daemon followed the kernel),
 * `prefix`, `block-bypassed`, `forgery` (someone forges a guarded address), `scan` (hits
 * grouped into a scan, with its shape) and `decoy` (a decoy group and its sender) — each
 * with `type`, `time` (ISO 8601, UTC) and `v` (schema version); a
 * `decision` with `source: 'fleet'` is a CrowdSec fleet ban (lib/fleet/events.ts
 * defines the fleet shapes, lib/attribution/events.ts the forgery one; this module
 * includes them). The TypeScript interfaces are the documentation (the README is
 * generated from their JSDoc); the zod schemas are checked against them at compile
 * time and let consumers validate a line. Pure, no I/O. Compatibility rule: within
 * `v: 1` fields (and event types) are only ever added, never renamed, retyped or
 * removed; a reader skips types it does not know.
 */

import { z } from 'zod'
import { PortanoiaError } from '../errors.js'
import { EVENT_SCHEMA_VERSION } from './event-version.js'
import {
  type FleetDecisionEvent,
  type FleetEvent,
  fleetDecisionEventSchema,
  fleetEventSchema,
} from '../fleet/events.js'
import { type ForgeryEvent, forgeryEventSchema } from '../attribution/events.js'
import { isValidAddress } from '../policy/addr.js'
import { ACTIONS, type Action, type BreakerState, type Decision, REASON_CODES, type ReasonCode } from '../policy/decision.js'
import type { PolicyStats } from '../policy/engine.js'
import type { BlockPath } from '../responders/types.js'
import type { DecoyGroup } from '../attribution/decoy.js'
import { SCAN_TOOLS, type ScanTool } from './scan-tools.js'
import { SCAN_SHAPES, type ScanReport, type ScanShape } from './scans.js'
import { type Attribution, type Hit, type Proto, SCAN_KINDS, type ScanKind } from '../types.js'

export { EVENT_SCHEMA_VERSION }
export type { FleetDecisionEvent, FleetEvent, ForgeryEvent }

export type EventType = 'hit' | 'decision' | 'stats' | 'error' | 'fleet' | 'operator' | 'firewall' | 'prefix' | 'block-bypassed' | 'forgery' | 'scan' | 'decoy'

interface EventBase {
  /** Which of the event types this is. */
  type: EventType
  /** When it happened, ISO 8601 in UTC with milliseconds (`2025-01-31T12:00:00.000Z`). */
  time: string
  /** Schema version, 1. */
  v: 1
}

/** One probe to a tripwire, as the sensor saw it. Emitted only when hits are requested (they are per packet). */
export interface HitEvent extends EventBase {
  type: 'hit'
  /** Capture time (the kernel's timestamp) in ISO form. */
  time: string
  /** Capture time in nanoseconds since the epoch, as a decimal string (exceeds JSON's exact integers). */
  timeNs: string
  /** Source address, canonical (IPv4-mapped IPv6 is written as IPv4). Forgeable unless `verified`. */
  src: string
  srcPort: number
  /** Destination address: the address of this host the probe was sent to. */
  dst: string
  /** The tripwire port. */
  dstPort: number
  /** 4 or 6. */
  family: 4 | 6
  /** 'tcp', 'udp', 'sctp', or 'ip' for a hit of kind `ip-proto` (then `dstPort` is the IP protocol number). */
  proto: Proto
  /** Scan kind read from the wire: syn, connect, fin, null, xmas, ack, maimon, rst, odd-flags, udp, sctp-init, sctp-cookie-echo, sctp-other, fragment, ip-proto. */
  kind: ScanKind
  /** Raw TCP flag byte (0 for UDP and SCTP). */
  tcpFlags: number
  /** IPv4 TTL or IPv6 hop limit; 0 when unknown (completed handshakes). */
  ttl: number
  /** True only for a completed TCP handshake (`connect`): the source address cannot have been forged. */
  verified: boolean
  /** Interface the frame arrived on; '' when unknown. */
  interface: string
  /** Kernel interface index. */
  ifindex: number
  /** Outer VLAN id, when the frame was tagged. */
  vlan?: number
  /** The packet was an IP fragment. */
  fragment: boolean
  /** The IPv4 header carried options. */
  ipOptions: boolean
  /** The IPv6 packet carried extension headers. */
  extHeaders: boolean
  /** The capture was shorter than the packet. */
  truncated: boolean
  /** First SCTP chunk type (SCTP only). */
  sctpChunk?: number
  /** IPv4 identification or IPv6 fragment identification. */
  ipId: number
  /** Length of the frame on the wire, in bytes. */
  wireLen: number
  /** The frame's link-layer source address, when it had one. */
  srcMac?: string
  /** 'verified', 'plausible' (nothing says the source was forged) or 'forged' (positive evidence it was). */
  attribution: Attribution
  /** The evidence behind it, by stable name (link:match, link:mismatch, link:no-answer, rpf:pass, rpf:other-interface, hops:match, pending, unchecked, …). */
  evidence: string[]
}

/**
 * What the policy decided about one source, aggregated over its window: emitted
 * when the source's window opens, when the decision escalates, and once more at the
 * end of the window (`final`) if hits arrived after the last decision.
 */
export interface DecisionEvent extends EventBase {
  type: 'decision'
  /** When the decision was made. */
  time: string
  /**
   * 'block' (a responder adds a block), 'report' (worth telling someone, nothing changed), 'none', or
   * 'unblock' (a block in force was removed because a guard now covers its address; reason `guard:*`).
   */
  action: Action
  /**
   * Why: `blocked`; `already-blocked` (a block is in force; blocked sources still reach the sensor,
   * which sees packets before the firewall); `below-threshold`; `spoofable-report-only` (only forgeable
   * evidence and `--block verified`); `guard:self|gateway|resolver|peer|allowlist|special` (never blocked);
   * `rate-capped` / `active-cap` (a spoofable block refused by a cap); `dry-run` (would have been blocked);
   * `report-capped` (decisions about spoofable sources exceeded `maxReportsPerMinute`: further ones are counted
   * until the rate falls, on the breaker's open and close decisions);
   * `transit` (the hit was not addressed to this host — forwarded, or multicast — and never blocks anyone);
   * `forged` (`--block all`: every packet of the source had evidence of forgery — reported, never blocked; a source whose
   * evidence is still being gathered gets no decision until it is in).
   */
  reason: ReasonCode
  /** The source address, canonical. */
  src: string
  family: 4 | 6
  /** True when the window holds a completed handshake from `src`: the address is real. */
  verified: boolean
  /** The source's attribution over the window: 'verified', 'plausible', or 'forged' when every packet had evidence of forgery. */
  attribution: Attribution
  /** Evidence names its packets carried in the window (at most 16). */
  evidence: string[]
  /** Block lifetime in milliseconds: with `blocked`, and with `dry-run` (what would have been applied). */
  ttlMs?: number
  /** When the block expires: with `blocked`, `dry-run` and `already-blocked`. */
  expiresAt?: string
  /** True when a verified block replaces a shorter spoofable block on the same address. */
  upgrade?: boolean
  /** On a verified block: which block of this address it is within `forgetAfter` (1: a first one); `ttlMs` is that step of `blockTtl`'s ladder. */
  offence?: number
  /** Distinct tripwires touched in the window, as 'port/proto', sorted (tcp, udp, sctp, then port). */
  ports: string[]
  /** More distinct ports were touched than `ports` lists. */
  portsTruncated: boolean
  /** Distinct scan kinds seen in the window. */
  kinds: ScanKind[]
  /** Hits from `src` in the window so far. */
  count: number
  /** Of which completed handshakes. */
  verifiedCount: number
  /** First hit of the window. */
  firstSeen: string
  /** Latest hit. */
  lastSeen: string
  /** Start of the source's window (its first hit). */
  windowStart: string
  /** Window length in milliseconds. */
  windowMs: number
  /** The end-of-window summary; never carries `action: 'block'`. */
  final: boolean
  /**
   * Set when this decision opens or closes a circuit breaker (spoofable blocking: `rate-capped` / `active-cap`;
   * per-source decisions about spoofable sources: `report-capped`). While open, those sources are reported only
   * through these two events; on `closed`, the source fields repeat the source
   * that opened it and the window spans the time it was open.
   */
  breaker?: BreakerState
  /** With `breaker: 'closed'`: sources and hits handled report-only, without their own decision, while open. */
  suppressed?: { sources: number; hits: number }
  /**
   * The latest hit from `src`: the tripwire it touched and how. Absent only on an `unblock` of a block this run
   * did not make from a hit (adopted from the kernel at start, or listed by the firewall).
   */
  trigger?: {
    /** This host's address that was probed. */
    dst: string
    /** The tripwire port. */
    dstPort: number
    srcPort: number
    proto: Proto
    kind: ScanKind
    /** Interface name; '' when unknown. */
    interface: string
  }
}

/** Counters, emitted periodically and on exit. */
export interface StatsEvent extends EventBase {
  type: 'stats'
  /** Milliseconds since the watcher started. */
  uptimeMs?: number
  /** The policy engine's counters. */
  policy: {
    /** Hits seen. */
    hits: number
    /** Hits whose source was not an IP address (should stay 0). */
    invalidSources: number
    /** Hits not addressed to this host (forwarded, multicast): decided `transit`, never blocked. */
    transitHits?: number
    /** Live guard checks right before a block, and how many refused it. */
    liveChecks?: number
    liveRefusals?: number
    /** Sources currently aggregated. */
    trackedSources: number
    /** Sources dropped from tracking to bound memory. */
    evictions: number
    /** Decisions emitted, per reason code. */
    decisions: Record<ReasonCode, number>
    /** Blocks in force, by evidence. */
    activeBlocks: { verified: number; spoofable: number }
    /** New spoofable blocks in the trailing minute. */
    spoofableBlocksLastMinute: number
    /** 'open' while spoofable blocking is suspended. */
    breaker: BreakerState
    /** Which cap opened the breaker, while open. */
    breakerCause?: 'rate-capped' | 'active-cap'
    /** Times the breaker opened. */
    breakerTrips: number
    /** Hits handled inside a breaker (blocking or reports), without a decision of their own, since start. */
    suppressedHits: number
    /** 'open' while per-source decisions about spoofable sources are suspended (`report-capped`). */
    reportBreaker: BreakerState
    /** Times the report breaker opened. */
    reportBreakerTrips: number
    /** Sources handled inside a breaker without a decision of their own, since start. */
    suppressedSources: number
  }
  /** The sensor's counters (packets received, dropped by the kernel, dropped by the hit ring, …). */
  sensor?: Record<string, number>
  /** Per responder name, its counters (applied, failed, queued, dropped, …). */
  responders?: Record<string, Record<string, number>>
  /**
   * The guard facts in force and the kernel watch behind them: entries per guard (`self`, `gateway`,
   * `resolver`, `peer`, `allowlist`, `special`), `generation` (snapshots taken), `notifications`,
   * `overruns`, `dumpErrors`, `lastDumpUs`, `liveChecks`, `liveRefusals`, `replyChecks`, `replies`,
   * `replyChecksSkipped`, `sctp` (1 while SCTP associations are checked).
   */
  guards?: Record<string, number>
  /**
   * Attribution's counters: hits answered, `checks` run, `skipped` (budget spent), `cached`, `pending`,
   * answers by attribution (`verified`, `plausible`, `forged`), `forgedPackets`, `forgeryAlerts`.
   */
  attribution?: Record<string, number>
  /**
   * Scan tracking's counters: sources `tracked` now, hits `untracked` (table full of scans),
   * scans announced by shape (`vertical`, `horizontal`, `decoy`, `distributed`), `decoyProbes`
   * (probes seen from several sources), `decoyGroups`.
   */
  scans?: Record<string, number>
}

/** A responder failed to carry out an action. Capture and the other responders go on. */
export interface ErrorEvent extends EventBase {
  type: 'error'
  /** Which responder: 'nftables', 'ipset', 'exec', 'webhook', … */
  responder: string
  /** Stable error code: an errno name (EPERM, ETIMEDOUT) or a PORTANOIA_* code. */
  code: string
  /** What went wrong. */
  message: string
  /** What to do about it. */
  hint?: string
  /** The action that failed. */
  action?: Action
  /** The reason of the decision being carried out. */
  reason?: ReasonCode
  /** The source address concerned, when the failure concerns one. */
  src?: string
  /** All addresses of a failed batch. */
  addresses?: string[]
  /** How many things the error concerns when they are not listed (`PORTANOIA_OUTPUT_DROPPED`: events dropped). */
  count?: number
}

export const FIREWALL_OPS = ['restored', 'forgotten', 'adopted', 'migrated'] as const
/**
 * `restored`: part of the firewall's shape was gone (a `nft flush ruleset`, a deleted
 * chain) and was put back, with the blocks of the recreated sets and their time left.
 * `forgotten`: blocks the daemon held were removed from the kernel by someone else
 * (`portanoia unblock`, `nft delete element`); the daemon no longer counts them.
 * `adopted`: elements the daemon did not know (added by hand) are now counted as blocks.
 * `migrated`: at start, the sets of an earlier version were moved into the per-origin sets.
 */
export type FirewallOp = (typeof FIREWALL_OPS)[number]

/** The daemon found the kernel's firewall different from what it believed, and followed the kernel. */
export interface FirewallEvent extends EventBase {
  type: 'firewall'
  op: FirewallOp
  /** The firewall responder: 'nftables' or 'ipset'. */
  responder: string
  /** On `restored`: what was missing ('table', 'set verified4', 'chain input', 'rules input', …). */
  missing?: string[]
  /** Blocks concerned (restored, forgotten, adopted, migrated). */
  count: number
  /** The first 32 of their addresses. */
  addresses?: string[]
}

/**
 * An operator's action on the running daemon — a config reload (SIGHUP, `portanoia
 * reload`, Daemon.reload()), a block or an unblock (`portanoia block|unblock`
 * through the control socket, or the API) — applied or refused.
 */
export interface OperatorEvent extends EventBase {
  type: 'operator'
  /** 'reload', 'block' or 'unblock'. */
  op: 'reload' | 'block' | 'unblock'
  /** 'applied' (all of it), 'partial' (some addresses refused or failed), 'refused' (nothing changed). */
  outcome: 'applied' | 'partial' | 'refused'
  /** reload: the config fields applied (refused: that would have been). */
  changed?: string[]
  /** reload: the changed fields that need a restart (then nothing was applied). */
  restart?: string[]
  /** block, unblock: the addresses acted on (unblock: removed). */
  addresses?: string[]
  /** block: the addresses already blocked for at least as long, left alone. */
  kept?: string[]
  /** block: the block lifetime in milliseconds. */
  ttlMs?: number
  /** block: addresses never blocked, with the guard that protects each (`guard:self`, …). */
  refused?: Array<{ address: string; reason: string }>
  /** block, unblock: addresses the firewall failed on. */
  failed?: string[]
  /** Why it was refused: a PORTANOIA_* code or an errno name, the message and what to do. */
  code?: string
  message?: string
  hint?: string
}

export const PREFIX_OPS = ['blocked', 'refused', 'restored'] as const
/**
 * `blocked`: `--aggregate` addresses of one prefix were blocked from verified
 * evidence, so the prefix is, and its single blocks are retired. `refused`: a prefix
 * reached the threshold but may not be blocked (`reason`: `guard:*`, the first guarded
 * thing inside it; `check-failed`: the live check could not answer; `failed`: the
 * firewall refused it); it is not asked about again for a minute. `restored`: put
 * back after the kernel lost it (a flushed table, a reboot).
 */
export type PrefixOp = (typeof PREFIX_OPS)[number]

/** A prefix ban (`--aggregate`). */
export interface PrefixEvent extends EventBase {
  type: 'prefix'
  op: PrefixOp
  /** The network: '198.51.100.0/24', '2001:db8:1:2::/64'. */
  prefix: string
  family: 4 | 6
  /** How many verified blocks it held (blocked, refused), or bans put back (restored: one each). */
  count: number
  /** The first 32 of those addresses. */
  members?: string[]
  /** blocked, restored: the ban's lifetime in ms (the longest of the blocks it replaces). */
  ttlMs?: number
  expiresAt?: string
  /** blocked: single blocks removed from the kernel because the prefix covers them. */
  retired?: number
  /** refused: why. */
  reason?: string
}

/**
 * Proof that a block does not hold: a packet from an address the firewall confirmed
 * blocked (alone, or inside a prefix ban) reached this host on a path the block
 * should cover. `forward`: it was routed through the host (to a container, a routed
 * network) while the drop rules are on the input hook only — the capture sees it, and
 * nothing drops it. `input`: a handshake with a tripwire completed more than 1 s
 * after the block was confirmed (the block was missing; it is put back, `reapplied`).
 * Once per address.
 */
export interface BlockBypassedEvent extends EventBase {
  type: 'block-bypassed'
  src: string
  family: 4 | 6
  path: BlockPath
  /** The packet: where it went. */
  dst: string
  dstPort: number
  proto: Proto
  interface: string
  /** When the block it got past runs out. */
  blockedUntil?: string
  /** The prefix ban it got past, when that is what holds the address. */
  prefix?: string
}

/**
 * Hits grouped into a scan (lib/daemon/scans.ts). `start` when the scan is recognised
 * (at most a fraction of a second after the hit that made it one), `end` with the final
 * counts once none of its sources sent a hit for the idle time (30 s by default). Shapes:
 * `vertical` (one source, several ports), `horizontal` (one source, one or few ports on
 * several addresses of this host), `decoy` (a decoy group: the same probes from several
 * sources, see the `decoy` event), `distributed` (several sources not forged, the same
 * TCP fingerprint, port sets that do not overlap: one port set split between them).
 */
export interface ScanEvent extends EventBase {
  type: 'scan'
  /** Unique within this daemon run; the `start` and `end` of one scan share it. */
  id: number
  phase: 'start' | 'end'
  shape: ScanShape
  /** The one source (vertical, horizontal), or a decoy group's sender when exactly one member is not forged. */
  src?: string
  /** That source's attribution over the scan: verified, plausible, or forged when every packet was. */
  attribution?: Attribution
  /** The first 32 sources. */
  sources: string[]
  sourceCount: number
  family: 4 | 6
  proto: Proto
  kinds: ScanKind[]
  /** Addresses of this host probed (the first 8). */
  dsts: string[]
  /** Distinct ports probed, the first 32 (a source's first 16). */
  ports: number[]
  /** How many distinct ports, at least (counted in a 256-bit map per source). */
  portCount: number
  /** Packets from its sources so far. */
  hits: number
  /** The tool whose fingerprint most of its probes carry: nmap, masscan or zmap. */
  tool?: ScanTool
  /** The decoy group's id (decoy shape). */
  decoy?: number
  firstSeen: string
  lastSeen: string
}

/**
 * A decoy group (lib/attribution/decoy.ts): the same probe — ports, flags, IP ID, TCP
 * window and options — from several sources within milliseconds, as nmap -D sends
 * it. Once per group, when its members' attribution settled. `sender` is the one
 * member nothing says was forged, absent when none or several are; grouping never makes
 * a source forged (members get the evidence name `decoy`, the sender `decoy:sender`).
 */
export interface DecoyEvent extends EventBase {
  type: 'decoy'
  /** Unique within this daemon run (a decoy scan's `decoy` field). */
  id: number
  sender?: string
  /** The first 32 members and their attribution. */
  members: Array<{ src: string; attribution: Attribution }>
  memberCount: number
  /** The probe: the address of this host, family, protocol, kind, ports (the first 32). */
  dst: string
  family: 4 | 6
  proto: Proto
  kind: ScanKind
  ports: number[]
  /** Probes seen sent from several members so far. */
  probes: number
  firstSeen: string
  lastSeen: string
}

/**
 * Any event. A `decision` is either this host's (DecisionEvent, no `source`) or the
 * fleet's (FleetDecisionEvent, `source: 'fleet'`): tell them apart by `source`.
 */
export type PortanoiaEvent = HitEvent | DecisionEvent | StatsEvent | ErrorEvent | FleetDecisionEvent | FleetEvent | OperatorEvent | FirewallEvent | PrefixEvent | BlockBypassedEvent | ForgeryEvent | ScanEvent | DecoyEvent

// ---------------------------------------------------------------------------
// Schemas. Each is checked both ways against its interface below, so the two
// cannot drift apart silently.

const KIND_VALUES = SCAN_KINDS.filter((k): k is ScanKind => k !== 'none')
const isoTime = z.iso.datetime()
const address = z.string().refine((s) => isValidAddress(s), 'not a canonical IP address')
const port = z.number().int().min(0).max(65535)
const count = z.number().int().min(0)
const family = z.union([z.literal(4), z.literal(6)])
const proto = z.enum(['tcp', 'udp', 'sctp', 'ip'])
const kind = z.enum(KIND_VALUES as [ScanKind, ...ScanKind[]])
const action = z.enum(ACTIONS)
const reason = z.enum(REASON_CODES)
const version = z.literal(EVENT_SCHEMA_VERSION)
const attribution = z.enum(['verified', 'plausible', 'forged'])

export const hitEventSchema = z.object({
  type: z.literal('hit'),
  time: isoTime,
  v: version,
  timeNs: z.string().regex(/^\d+$/),
  src: address,
  srcPort: port,
  dst: address,
  dstPort: port,
  family,
  proto,
  kind,
  tcpFlags: z.number().int().min(0).max(255),
  ttl: z.number().int().min(0).max(255),
  verified: z.boolean(),
  interface: z.string(),
  ifindex: count,
  vlan: z.number().int().min(0).max(4095).optional(),
  fragment: z.boolean(),
  ipOptions: z.boolean(),
  extHeaders: z.boolean(),
  truncated: z.boolean(),
  sctpChunk: z.number().int().min(0).max(255).optional(),
  ipId: count,
  wireLen: count,
  srcMac: z.string().optional(),
  attribution,
  evidence: z.array(z.string()),
})

export const decisionEventSchema = z.object({
  type: z.literal('decision'),
  time: isoTime,
  v: version,
  action,
  reason,
  src: address,
  family,
  verified: z.boolean(),
  attribution,
  evidence: z.array(z.string()),
  ttlMs: count.optional(),
  expiresAt: isoTime.optional(),
  upgrade: z.boolean().optional(),
  offence: z.number().int().min(1).optional(),
  ports: z.array(z.string().regex(/^\d{1,5}\/(?:tcp|udp|sctp|ip)$/)),
  portsTruncated: z.boolean(),
  kinds: z.array(kind),
  count,
  verifiedCount: count,
  firstSeen: isoTime,
  lastSeen: isoTime,
  windowStart: isoTime,
  windowMs: count,
  final: z.boolean(),
  breaker: z.enum(['open', 'closed']).optional(),
  suppressed: z.object({ sources: count, hits: count }).optional(),
  trigger: z
    .object({
      dst: address,
      dstPort: port,
      srcPort: port,
      proto,
      kind,
      interface: z.string(),
    })
    .optional(),
})

export const statsEventSchema = z.object({
  type: z.literal('stats'),
  time: isoTime,
  v: version,
  uptimeMs: count.optional(),
  policy: z.object({
    hits: count,
    invalidSources: count,
    transitHits: count.optional(),
    liveChecks: count.optional(),
    liveRefusals: count.optional(),
    trackedSources: count,
    evictions: count,
    decisions: z.record(reason, count),
    activeBlocks: z.object({ verified: count, spoofable: count }),
    spoofableBlocksLastMinute: count,
    breaker: z.enum(['open', 'closed']),
    breakerCause: z.enum(['rate-capped', 'active-cap']).optional(),
    breakerTrips: count,
    suppressedHits: count,
    reportBreaker: z.enum(['open', 'closed']),
    reportBreakerTrips: count,
    suppressedSources: count,
  }),
  sensor: z.record(z.string(), z.number()).optional(),
  responders: z.record(z.string(), z.record(z.string(), z.number())).optional(),
  guards: z.record(z.string(), z.number()).optional(),
  attribution: z.record(z.string(), z.number()).optional(),
  scans: z.record(z.string(), z.number()).optional(),
})

export const errorEventSchema = z.object({
  type: z.literal('error'),
  time: isoTime,
  v: version,
  responder: z.string().min(1),
  code: z.string().min(1),
  message: z.string(),
  hint: z.string().optional(),
  action: action.optional(),
  reason: reason.optional(),
  src: address.optional(),
  addresses: z.array(address).optional(),
  count: count.optional(),
})

export const operatorEventSchema = z.object({
  type: z.literal('operator'),
  time: isoTime,
  v: version,
  op: z.enum(['reload', 'block', 'unblock']),
  outcome: z.enum(['applied', 'partial', 'refused']),
  changed: z.array(z.string()).optional(),
  restart: z.array(z.string()).optional(),
  addresses: z.array(address).optional(),
  kept: z.array(address).optional(),
  ttlMs: count.optional(),
  refused: z.array(z.object({ address, reason: z.string() })).optional(),
  failed: z.array(address).optional(),
  code: z.string().optional(),
  message: z.string().optional(),
  hint: z.string().optional(),
})

export const firewallEventSchema = z.object({
  type: z.literal('firewall'),
  time: isoTime,
  v: version,
  op: z.enum(FIREWALL_OPS),
  responder: z.string().min(1),
  missing: z.array(z.string()).optional(),
  count,
  addresses: z.array(address).optional(),
})

export const prefixEventSchema = z.object({
  type: z.literal('prefix'),
  time: isoTime,
  v: version,
  op: z.enum(PREFIX_OPS),
  prefix: z.string().max(64).regex(/^[0-9a-f:.]+\/\d{1,3}$/),
  family,
  count,
  members: z.array(address).optional(),
  ttlMs: count.optional(),
  expiresAt: isoTime.optional(),
  retired: count.optional(),
  reason: z.string().optional(),
})

export const blockBypassedEventSchema = z.object({
  type: z.literal('block-bypassed'),
  time: isoTime,
  v: version,
  src: address,
  family,
  path: z.enum(['input', 'forward']),
  dst: address,
  dstPort: port,
  proto,
  interface: z.string(),
  blockedUntil: isoTime.optional(),
  prefix: z.string().max(64).regex(/^[0-9a-f:.]+\/\d{1,3}$/).optional(),
})

export const scanEventSchema = z.object({
  type: z.literal('scan'),
  time: isoTime,
  v: version,
  id: count,
  phase: z.enum(['start', 'end']),
  shape: z.enum(SCAN_SHAPES as [ScanShape, ...ScanShape[]]),
  src: address.optional(),
  attribution: attribution.optional(),
  sources: z.array(address),
  sourceCount: count,
  family,
  proto,
  kinds: z.array(kind),
  dsts: z.array(address),
  ports: z.array(port),
  portCount: count,
  hits: count,
  tool: z.enum(SCAN_TOOLS).optional(),
  decoy: count.optional(),
  firstSeen: isoTime,
  lastSeen: isoTime,
})

export const decoyEventSchema = z.object({
  type: z.literal('decoy'),
  time: isoTime,
  v: version,
  id: count,
  sender: address.optional(),
  members: z.array(z.object({ src: address, attribution })),
  memberCount: count,
  dst: address,
  family,
  proto,
  kind,
  ports: z.array(port),
  probes: count,
  firstSeen: isoTime,
  lastSeen: isoTime,
})

// Two shapes share `type: 'decision'`, so `type` alone cannot dispatch: the fleet
// decision (which requires `source: 'fleet'`) is tried first, everything else goes
// through the discriminated union.
const localEventSchema = z.discriminatedUnion('type', [
  hitEventSchema,
  decisionEventSchema,
  statsEventSchema,
  errorEventSchema,
  fleetEventSchema,
  operatorEventSchema,
  firewallEventSchema,
  prefixEventSchema,
  blockBypassedEventSchema,
  forgeryEventSchema,
  scanEventSchema,
  decoyEventSchema,
])

/** Any event: a fleet decision (`source: 'fleet'`), or one of the others by `type`. */
export const eventSchema = z.union([fleetDecisionEventSchema, localEventSchema])

type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
const schemasMatch: [
  Same<z.infer<typeof hitEventSchema>, HitEvent>,
  Same<z.infer<typeof decisionEventSchema>, DecisionEvent>,
  Same<z.infer<typeof statsEventSchema>, StatsEvent>,
  Same<z.infer<typeof errorEventSchema>, ErrorEvent>,
  Same<z.infer<typeof operatorEventSchema>, OperatorEvent>,
  Same<z.infer<typeof firewallEventSchema>, FirewallEvent>,
  Same<z.infer<typeof prefixEventSchema>, PrefixEvent>,
  Same<z.infer<typeof blockBypassedEventSchema>, BlockBypassedEvent>,
  Same<z.infer<typeof scanEventSchema>, ScanEvent>,
  Same<z.infer<typeof decoyEventSchema>, DecoyEvent>,
] = [true, true, true, true, true, true, true, true, true, true]
void schemasMatch

// ---------------------------------------------------------------------------
// Builders: library values in, events out.

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

export function hitEvent(hit: Hit): HitEvent {
  const e: HitEvent = {
    type: 'hit',
    time: iso(hit.time),
    v: EVENT_SCHEMA_VERSION,
    timeNs: hit.timeNs.toString(),
    src: hit.src,
    srcPort: hit.srcPort,
    dst: hit.dst,
    dstPort: hit.dstPort,
    family: hit.family,
    proto: hit.proto,
    kind: hit.kind,
    tcpFlags: hit.tcpFlags,
    ttl: hit.ttl,
    verified: hit.verified,
    interface: hit.interface,
    ifindex: hit.ifindex,
    fragment: hit.fragment,
    ipOptions: hit.ipOptions,
    extHeaders: hit.extHeaders,
    truncated: hit.truncated,
    ipId: hit.ipId,
    wireLen: hit.wireLen,
    attribution: hit.attribution,
    evidence: [...hit.evidence],
  }
  if (hit.srcMac !== undefined) e.srcMac = hit.srcMac
  if (hit.vlan !== undefined) e.vlan = hit.vlan
  if (hit.sctpChunk !== undefined) e.sctpChunk = hit.sctpChunk
  return e
}

export function decisionEvent(d: Decision): DecisionEvent {
  const e: DecisionEvent = {
    type: 'decision',
    time: iso(d.time),
    v: EVENT_SCHEMA_VERSION,
    action: d.action,
    reason: d.reason,
    src: d.src,
    family: d.family,
    verified: d.verified,
    attribution: d.attribution,
    evidence: [...d.evidence],
    ports: [...d.ports],
    portsTruncated: d.portsTruncated,
    kinds: [...d.kinds],
    count: d.count,
    verifiedCount: d.verifiedCount,
    firstSeen: iso(d.firstSeen),
    lastSeen: iso(d.lastSeen),
    windowStart: iso(d.windowStart),
    windowMs: d.windowMs,
    final: d.final,
  }
  if (d.trigger !== undefined) e.trigger = { ...d.trigger }
  if (d.ttlMs !== undefined) e.ttlMs = d.ttlMs
  if (d.expiresAt !== undefined && Number.isFinite(d.expiresAt)) e.expiresAt = iso(d.expiresAt)
  if (d.upgrade === true) e.upgrade = true
  if (d.offence !== undefined) e.offence = d.offence
  if (d.breaker !== undefined) e.breaker = d.breaker
  if (d.suppressed !== undefined) e.suppressed = { ...d.suppressed }
  return e
}

export interface StatsInput {
  policy: PolicyStats
  sensor?: Record<string, number>
  responders?: Record<string, Record<string, number>>
  guards?: Record<string, number>
  attribution?: Record<string, number>
  scans?: Record<string, number>
  uptimeMs?: number
  /** Milliseconds; default now. */
  time?: number
}

export function statsEvent(input: StatsInput): StatsEvent {
  const e: StatsEvent = {
    type: 'stats',
    time: iso(input.time ?? Date.now()),
    v: EVENT_SCHEMA_VERSION,
    policy: { ...input.policy, decisions: { ...input.policy.decisions }, activeBlocks: { ...input.policy.activeBlocks } },
  }
  if (input.uptimeMs !== undefined) e.uptimeMs = Math.max(0, Math.round(input.uptimeMs))
  if (input.sensor !== undefined) e.sensor = { ...input.sensor }
  if (input.responders !== undefined) e.responders = { ...input.responders }
  if (input.guards !== undefined) e.guards = { ...input.guards }
  if (input.attribution !== undefined) e.attribution = { ...input.attribution }
  if (input.scans !== undefined) e.scans = { ...input.scans }
  return e
}

export interface ErrorInput {
  responder: string
  /** A PortanoiaError, a system error (its `code` is kept) or anything thrown. */
  error: unknown
  action?: Action
  reason?: ReasonCode
  src?: string
  addresses?: readonly string[]
  count?: number
  /** Milliseconds; default now. */
  time?: number
}

/** An `error` event from whatever a responder caught. */
/** A `firewall` event; addresses beyond the first 32 are only counted. */
export function firewallEvent(
  fields: { op: FirewallOp; responder: string; addresses: readonly string[]; missing?: readonly string[] },
  time: number = Date.now(),
): FirewallEvent {
  const e: FirewallEvent = { type: 'firewall', time: iso(time), v: EVENT_SCHEMA_VERSION, op: fields.op, responder: fields.responder, count: fields.addresses.length }
  if (fields.missing !== undefined && fields.missing.length > 0) e.missing = [...fields.missing]
  if (fields.addresses.length > 0) e.addresses = fields.addresses.slice(0, 32)
  return e
}

/** A `prefix` event; members beyond the first 32 are only counted. */
export function prefixEvent(
  fields: { op: PrefixOp; prefix: string; family: 4 | 6; members: readonly string[]; ttlMs?: number; expiresAt?: number; retired?: number; reason?: string },
  time: number = Date.now(),
): PrefixEvent {
  const e: PrefixEvent = { type: 'prefix', time: iso(time), v: EVENT_SCHEMA_VERSION, op: fields.op, prefix: fields.prefix, family: fields.family, count: fields.members.length }
  if (fields.members.length > 0) e.members = fields.members.slice(0, 32)
  if (fields.ttlMs !== undefined) e.ttlMs = Math.max(0, Math.round(fields.ttlMs))
  if (fields.expiresAt !== undefined && Number.isFinite(fields.expiresAt)) e.expiresAt = iso(fields.expiresAt)
  if (fields.retired !== undefined) e.retired = fields.retired
  if (fields.reason !== undefined) e.reason = fields.reason
  return e
}

/** A `scan` event from the tracker's report. */
export function scanEvent(r: ScanReport, time: number = Date.now()): ScanEvent {
  const e: ScanEvent = {
    type: 'scan',
    time: iso(time),
    v: EVENT_SCHEMA_VERSION,
    id: r.id,
    phase: r.phase,
    shape: r.shape,
    sources: r.sources.slice(0, 32),
    sourceCount: r.sourceCount,
    family: r.family,
    proto: r.proto,
    kinds: [...r.kinds],
    dsts: r.dsts.slice(0, 8),
    ports: r.ports.slice(0, 32),
    portCount: r.portCount,
    hits: r.hits,
    firstSeen: iso(r.firstSeen),
    lastSeen: iso(r.lastSeen),
  }
  if (r.src !== undefined) e.src = r.src
  if (r.attribution !== undefined) e.attribution = r.attribution
  if (r.tool !== undefined) e.tool = r.tool
  if (r.decoy !== undefined) e.decoy = r.decoy
  return e
}

/** A `decoy` event for a group the grouper reports. */
export function decoyEvent(g: DecoyGroup, time: number = Date.now()): DecoyEvent {
  const e: DecoyEvent = {
    type: 'decoy',
    time: iso(time),
    v: EVENT_SCHEMA_VERSION,
    id: g.id,
    members: g.members.slice(0, 32).map((m) => ({ src: m.src, attribution: m.attribution })),
    memberCount: g.members.length + g.extraMembers,
    dst: g.dst,
    family: g.family,
    proto: g.proto,
    kind: g.kind,
    ports: g.ports.slice(0, 32),
    probes: g.probes,
    firstSeen: iso(g.firstSeen),
    lastSeen: iso(g.lastSeen),
  }
  if (g.sender !== undefined) e.sender = g.sender
  return e
}

export function errorEvent(input: ErrorInput): ErrorEvent {
  const err = input.error
  let code = 'PORTANOIA_RESPONDER_FAILED'
  let message = String(err)
  let hint: string | undefined
  if (err instanceof Error) {
    message = err.message
    const c = (err as { code?: unknown }).code
    if (typeof c === 'string' && c !== '') code = c
  }
  if (err instanceof PortanoiaError) hint = err.hint
  const e: ErrorEvent = {
    type: 'error',
    time: iso(input.time ?? Date.now()),
    v: EVENT_SCHEMA_VERSION,
    responder: input.responder,
    code,
    message,
  }
  if (hint !== undefined) e.hint = hint
  if (input.action !== undefined) e.action = input.action
  if (input.reason !== undefined) e.reason = input.reason
  if (input.src !== undefined) e.src = input.src
  if (input.addresses !== undefined) e.addresses = [...input.addresses]
  if (input.count !== undefined) e.count = input.count
  return e
}

export type OperatorInput = Omit<OperatorEvent, 'type' | 'time' | 'v'> & {
  /** Milliseconds; default now. */
  at?: number
}

/** An `operator` event; empty lists are left out. */
export function operatorEvent(input: OperatorInput): OperatorEvent {
  const { at, ...fields } = input
  const e: OperatorEvent = { type: 'operator', time: iso(at ?? Date.now()), v: EVENT_SCHEMA_VERSION, op: fields.op, outcome: fields.outcome }
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || k === 'op' || k === 'outcome' || (Array.isArray(v) && v.length === 0)) continue
    ;(e as unknown as Record<string, unknown>)[k] = Array.isArray(v) ? [...(v as unknown[])] : v
  }
  return e
}

/** One line of the stream: the event as JSON followed by '\n'. */
export function toJsonLine(event: PortanoiaEvent): string {
  return `${JSON.stringify(event)}\n`
}

/**
 * Parses and validates one line (trailing newline allowed). Throws PortanoiaError
 * (PORTANOIA_BAD_EVENT) naming the first field that does not match the schema.
 */
export function parseEventLine(line: string): PortanoiaEvent {
  let doc: unknown
  try {
    doc = JSON.parse(line)
  } catch (e) {
    throw new PortanoiaError('PORTANOIA_BAD_EVENT', 'event line is not JSON', {
      hint: 'each line of the stream is one JSON object',
      cause: e,
    })
  }
  // Dispatch before validating, so an error names the field that is wrong rather
  // than "no union member matched".
  const isFleetDecision =
    typeof doc === 'object' && doc !== null && (doc as { type?: unknown }).type === 'decision' && 'source' in doc
  const r = isFleetDecision ? fleetDecisionEventSchema.safeParse(doc) : localEventSchema.safeParse(doc)
  if (!r.success) {
    const issue = r.error.issues[0]
    const where = issue === undefined || issue.path.length === 0 ? 'event' : issue.path.join('.')
    throw new PortanoiaError('PORTANOIA_BAD_EVENT', `${where}: ${issue?.message ?? 'invalid'}`, {
      hint: `this reader understands schema v${EVENT_SCHEMA_VERSION}`,
    })
  }
  return r.data
}
