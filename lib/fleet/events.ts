/**
 * The events the fleet link adds to the stream, in the style of lib/daemon/events.ts:
 * documented interfaces, zod schemas checked against them at compile time, and
 * builders. Two kinds: a decision-like `decision` event with `source: 'fleet'`
 * (a fleet ban applied here, or refused here because a local guard protects the
 * address) and a `fleet` event for everything else worth a line (a ban lifted by
 * the fleet, a decision skipped and why, LAPI going down or coming back, queue
 * drops). Fleet decisions carry no ports, kinds or counts — the evidence lives on
 * the host that saw it — which is why they are not DecisionEvents. Pure, no I/O.
 * Compatibility rule as for lib/daemon/events.ts: fields are only ever added.
 */

import { z } from 'zod'
import { EVENT_SCHEMA_VERSION } from '../daemon/event-version.js'
import { isValidAddress } from '../policy/addr.js'
import type { GuardReason } from '../policy/guards.js'

/** Why a fleet decision was applied (`fleet`) or refused (`guard:*`: local guards win). */
export type FleetDecisionReason = 'fleet' | `guard:${GuardReason}`

/** A ban from the fleet, as this host handled it. */
export interface FleetDecisionEvent {
  type: 'decision'
  /** ISO 8601, UTC. */
  time: string
  v: 1
  /** Always 'fleet': the decision came from CrowdSec's Local API, not from this host's sensor. */
  source: 'fleet'
  /** 'block' when the ban was applied through the local responder, 'none' when refused. */
  action: 'block' | 'none'
  reason: FleetDecisionReason
  /** The banned address, canonical. */
  src: string
  family: 4 | 6
  /** Remaining ban time applied, ms (on `block`). */
  ttlMs?: number
  /** When the applied ban ends (on `block`). */
  expiresAt?: string
  /** The decision's origin in LAPI: 'portanoia', 'crowdsec', 'cscli', 'CAPI', … */
  origin: string
  /** The decision's scenario, e.g. 'portanoia/verified-connect'. */
  scenario: string
  /** LAPI's decision id, when it sent one. */
  fleetId?: number
}

export const FLEET_OPS = [
  'unblocked',
  'skipped',
  'apply-failed',
  'push-failed',
  'push-recovered',
  'pull-failed',
  'pull-recovered',
  'dropped',
  'abandoned',
  'clamped',
] as const
/**
 * `unblocked`: a fleet ban was deleted in LAPI (or a guard now protects it) and lifted here.
 * `skipped`: a fleet decision was not applied (`why` says: own, scope, type, bad-value, bad-duration, expired).
 * `apply-failed`: the responder failed; retried at the next poll.
 * `push-failed` / `pull-failed`: LAPI could not be reached or refused (first failure of a run, or a new error).
 * `push-recovered` / `pull-recovered`: LAPI answers again after failures.
 * `dropped`: the push queue was full; its oldest alert was dropped. `abandoned`: an alert gave up after its retries.
 * `clamped`: a ban longer than the local firewall holds was applied for the longest it holds (`detail`: 'LAPI's → applied'); once per decision.
 */
export type FleetOp = (typeof FLEET_OPS)[number]

export const SKIP_WHYS = ['own', 'scope', 'type', 'bad-value', 'bad-duration', 'expired'] as const
export type SkipWhy = (typeof SKIP_WHYS)[number]

export interface FleetEvent {
  type: 'fleet'
  time: string
  v: 1
  op: FleetOp
  /** The address concerned, when one is. */
  src?: string
  /** On `skipped`: why. */
  why?: SkipWhy
  /** On `skipped` for a non-Ip scope or a non-ban type: what LAPI sent (e.g. 'Range', 'captcha'); on `clamped`: the durations. */
  detail?: string
  /** On failures: a PORTANOIA_LAPI_* code, or the responder's. */
  code?: string
  message?: string
  hint?: string
  /** HTTP status, when LAPI answered. */
  status?: number
  /** On `push-failed`: alerts waiting; on `*-recovered`: failed attempts during the outage. */
  count?: number
}

export type FleetStreamEvent = FleetDecisionEvent | FleetEvent

// ---------------------------------------------------------------------------
// Schemas, checked both ways against the interfaces.

const isoTime = z.iso.datetime()
const version = z.literal(EVENT_SCHEMA_VERSION)
const address = z.string().refine((s) => isValidAddress(s), 'not a canonical IP address')
const guardReason = z.enum(['guard:special', 'guard:self', 'guard:gateway', 'guard:resolver', 'guard:peer', 'guard:allowlist'])

export const fleetDecisionEventSchema = z.object({
  type: z.literal('decision'),
  time: isoTime,
  v: version,
  source: z.literal('fleet'),
  action: z.enum(['block', 'none']),
  reason: z.union([z.literal('fleet'), guardReason]),
  src: address,
  family: z.union([z.literal(4), z.literal(6)]),
  ttlMs: z.number().int().min(0).optional(),
  expiresAt: isoTime.optional(),
  origin: z.string(),
  scenario: z.string(),
  fleetId: z.number().int().optional(),
})

export const fleetEventSchema = z.object({
  type: z.literal('fleet'),
  time: isoTime,
  v: version,
  op: z.enum(FLEET_OPS),
  src: z.string().optional(),
  why: z.enum(SKIP_WHYS).optional(),
  detail: z.string().optional(),
  code: z.string().optional(),
  message: z.string().optional(),
  hint: z.string().optional(),
  status: z.number().int().optional(),
  count: z.number().int().min(0).optional(),
})

type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
const schemasMatch: [
  Same<z.infer<typeof fleetDecisionEventSchema>, FleetDecisionEvent>,
  Same<z.infer<typeof fleetEventSchema>, FleetEvent>,
] = [true, true]
void schemasMatch

// ---------------------------------------------------------------------------
// Builders

export function fleetDecisionEvent(
  fields: Omit<FleetDecisionEvent, 'type' | 'time' | 'v' | 'source'>,
  time: number = Date.now(),
): FleetDecisionEvent {
  return { type: 'decision', time: new Date(time).toISOString(), v: EVENT_SCHEMA_VERSION, source: 'fleet', ...fields }
}

export function fleetEvent(fields: Omit<FleetEvent, 'type' | 'time' | 'v'>, time: number = Date.now()): FleetEvent {
  return { type: 'fleet', time: new Date(time).toISOString(), v: EVENT_SCHEMA_VERSION, ...fields }
}
