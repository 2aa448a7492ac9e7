/**
 * The events attribution adds to the stream, in the style of lib/daemon/events.ts:
 * documented interfaces, zod schemas checked against them at compile time, builders.
 * `forgery`: someone is forging an address portanoia guards. Pure, no I/O. Compatibility rule as for every event: fields are only added.
 */

import { z } from 'zod'
import { EVENT_SCHEMA_VERSION } from '../daemon/event-version.js'
import { isValidAddress } from '../policy/addr.js'
import type { Trigger } from '../policy/decision.js'
import type { GuardReason } from '../policy/guards.js'
import { SCAN_KINDS, type ScanKind } from '../types.js'
import type { Forgery } from './forgery.js'

/**
 * A packet with positive evidence of forgery claims an address portanoia guards (its
 * own, a gateway, a resolver, an admin's peer, the allowlist): someone on the network
 * is forging that address. Once per address and guard per minute, with the count.
 */
export interface ForgeryEvent {
  type: 'forgery'
  /** ISO 8601, UTC: when the alert was raised. */
  time: string
  v: 1
  /** The address being forged, canonical. */
  src: string
  family: 4 | 6
  /** Which guard protects it: 'self', 'gateway', 'resolver', 'peer', 'allowlist' or 'special'. */
  guard: GuardReason
  /** The evidence of forgery (link:mismatch, link:no-answer, rpf:other-interface, rpf:no-route, self, hops:mismatch, …). */
  evidence: string[]
  /** The forged frames' link-layer source: the forging station. */
  srcMac?: string
  /** The link-layer address(es) that really hold the address (space-separated). */
  holder?: string
  /** The interface the forged frames came in on; a bridge port names the forger's port. */
  interface: string
  /** The bridge that interface is a port of. */
  bridge?: string
  /** The latest forged packet. */
  trigger: Trigger
  /** Forged packets claiming it since the last alert (this one included). */
  count: number
  firstSeen: string
  lastSeen: string
}

const KIND_VALUES = SCAN_KINDS.filter((k): k is ScanKind => k !== 'none')
const isoTime = z.iso.datetime()
const address = z.string().refine((s) => isValidAddress(s), 'not a canonical IP address')
const port = z.number().int().min(0).max(65535)
const count = z.number().int().min(0)
const family = z.union([z.literal(4), z.literal(6)])
const kind = z.enum(KIND_VALUES as [ScanKind, ...ScanKind[]])
const proto = z.enum(['tcp', 'udp', 'sctp', 'ip'])
const version = z.literal(EVENT_SCHEMA_VERSION)

export const forgeryEventSchema = z.object({
  type: z.literal('forgery'),
  time: isoTime,
  v: version,
  src: address,
  family,
  guard: z.enum(['self', 'gateway', 'resolver', 'peer', 'allowlist', 'special']),
  evidence: z.array(z.string()),
  srcMac: z.string().optional(),
  holder: z.string().optional(),
  interface: z.string(),
  bridge: z.string().optional(),
  trigger: z.object({ dst: address, dstPort: port, srcPort: port, proto, kind, interface: z.string() }),
  count,
  firstSeen: isoTime,
  lastSeen: isoTime,
})

type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
const schemasMatch: Same<z.infer<typeof forgeryEventSchema>, ForgeryEvent> = true
void schemasMatch

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

export function forgeryEvent(f: Forgery, time = Date.now()): ForgeryEvent {
  const e: ForgeryEvent = {
    type: 'forgery',
    time: iso(time),
    v: EVENT_SCHEMA_VERSION,
    src: f.src,
    family: f.family,
    guard: f.guard,
    evidence: [...f.evidence],
    interface: f.interface,
    trigger: { ...f.trigger },
    count: f.count,
    firstSeen: iso(f.firstSeen),
    lastSeen: iso(f.lastSeen),
  }
  if (f.srcMac !== undefined) e.srcMac = f.srcMac
  if (f.holder !== undefined) e.holder = f.holder
  if (f.bridge !== undefined) e.bridge = f.bridge
  return e
}
