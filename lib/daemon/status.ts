/**
 * What `portanoia status` shows: the running daemon's state, one part per
 * component, each part one small function reading that component only (the
 * sensor's tripwires and counters, the engine's policy and breaker, the guards'
 * facts, the kernel's blocks joined with their origins, the fleet link, the reload
 * history). Daemon.status() calls them in a row; a component that grows (live
 * guards, per-origin sets) changes its own function. Plain JSON values only, so
 * the control socket sends this as it is. Pure; runs on the main thread.
 */
import { portCount, portsToString } from '../bpf/ports.js'
import type { Fleet, FleetPullStats, FleetPushStats } from '../fleet/index.js'
import type { PolicyConfig } from '../policy/config.js'
import type { PolicyEngine, PolicyStats } from '../policy/engine.js'
import type { GuardReason, Guards } from '../policy/guards.js'
import type { ReasonCode } from '../policy/decision.js'
import type { Sensor } from '../sensor.js'
import type { PortRange } from '../types.js'
import { type BlockCounts, type BlockInfo, countBlocks } from './blocks.js'
import type { FirewallBatcherStats } from './firewall-batcher.js'
import type { GuardFactsInForce } from './host-watch.js'

export interface TripwireStatus {
  /** The tripwires in force, as `2222/tcp,3389/tcp`. */
  ports: string
  /** How many ports that is. */
  count: number
  /** TCP tripwires with an accept-and-reset listener (verified connects). */
  listeners: number
  /** `--unused` ranges the tripwires follow, or null. */
  unused: string | null
  interface: string
  /** 'this host' or 'namespace NAME'. */
  host: string
}

export interface BreakerStatus {
  state: PolicyStats['breaker']
  cause?: 'rate-capped' | 'active-cap'
  trips: number
  spoofableBlocksLastMinute: number
  suppressedHits: number
}

export interface CounterStatus {
  hits: number
  trackedSources: number
  evictions: number
  decisions: Record<ReasonCode, number>
  /** The sensor's running totals (kernelPackets, kernelDrops, ringDrops, …). */
  sensor: Record<string, number>
  firewall: FirewallBatcherStats
  droppedEvents: number
}

export interface BlockStatus {
  /** The kernel's blocks by origin and reason; null without a firewall backend. */
  kernel: BlockCounts | null
  /** Why the kernel could not be read, when it could not. */
  error?: { code: string; message: string }
  /** The policy's own view (in dry-run: simulated blocks). */
  policy: { verified: number; spoofable: number }
}

export interface GuardStatus {
  /** Entries in force per reason (special: the directed broadcasts; the fixed ranges are not counted). */
  counts: Record<GuardReason, number>
  /** When the kernel's facts in force were read (the last rtnetlink dump), and which snapshot. */
  factsAt: string
  generation: number
  /** The host's own addresses, as `address/prefix`. */
  self: string[]
  /** Next hops of every routing table. */
  gateways: string[]
  resolvers: string[]
  allowlist: string[]
}

export interface FleetStatus {
  url: string
  push: FleetPushStats | null
  pull: FleetPullStats | null
}

export interface ReloadRecord {
  at: string
  outcome: 'applied' | 'refused'
  /** Config fields that changed (applied), or that would have. */
  changed: string[]
  /** Fields that need a restart (a refusal for that reason). */
  restart?: string[]
  error?: { code: string; message: string }
}

export interface ReloadStatus {
  applied: number
  refused: number
  last: ReloadRecord | null
}

export interface DaemonStatus {
  version: string
  pid: number
  startedAt: string
  uptimeMs: number
  /** The control socket's path, or null when it is off (API callers). */
  control: string | null
  tripwires: TripwireStatus
  policy: PolicyConfig
  breaker: BreakerStatus
  counters: CounterStatus
  blocks: BlockStatus
  guards: GuardStatus
  fleet: FleetStatus | null
  reload: ReloadStatus
}

export function tripwireStatus(sensor: Sensor, unused: readonly PortRange[], host: string): TripwireStatus {
  const ports = sensor.ports
  return {
    ports: portsToString(ports),
    count: portCount(ports),
    listeners: sensor.stats().listeners,
    unused: unused.length === 0 ? null : portsToString(unused),
    interface: sensor.interface,
    host,
  }
}

export function policyStatus(engine: PolicyEngine): PolicyConfig {
  return { ...engine.config }
}

export function breakerStatus(s: PolicyStats): BreakerStatus {
  const out: BreakerStatus = {
    state: s.breaker,
    trips: s.breakerTrips,
    spoofableBlocksLastMinute: s.spoofableBlocksLastMinute,
    suppressedHits: s.suppressedHits,
  }
  if (s.breakerCause !== undefined) out.cause = s.breakerCause
  return out
}

export function counterStatus(sensor: Sensor, s: PolicyStats, firewall: FirewallBatcherStats, droppedEvents: number): CounterStatus {
  const totals: Record<string, number> = {}
  for (const [k, v] of Object.entries(sensor.stats())) if (typeof v === 'number') totals[k] = v
  return {
    hits: s.hits,
    trackedSources: s.trackedSources,
    evictions: s.evictions,
    decisions: { ...s.decisions },
    sensor: totals,
    firewall,
    droppedEvents,
  }
}

/** `kernel` is the joined list, null without a firewall, or what reading it threw. */
export function blockStatus(kernel: readonly BlockInfo[] | null | Error, s: PolicyStats): BlockStatus {
  const out: BlockStatus = { kernel: null, policy: { ...s.activeBlocks } }
  if (kernel instanceof Error) {
    const code = (kernel as { code?: unknown }).code
    out.error = { code: typeof code === 'string' ? code : 'PORTANOIA_RESPONDER_FAILED', message: kernel.message }
  } else if (kernel !== null) {
    out.kernel = countBlocks(kernel)
  }
  return out
}

/** The guards' counts and the facts in force (Daemon.guardFacts(): the host watch's view and the allowlist). */
export function guardStatus(guards: Guards, facts: GuardFactsInForce & { allowlist: readonly string[] }): GuardStatus {
  return {
    counts: guards.counts(),
    factsAt: new Date(facts.dumpedAt).toISOString(),
    generation: facts.generation,
    self: facts.addresses.map((a) => `${a.address}/${a.prefixLength}`),
    gateways: [...new Set(facts.gateways.map((g) => g.address))],
    resolvers: [...facts.resolvers],
    allowlist: [...facts.allowlist],
  }
}

export function fleetStatus(fleet: Fleet | null): FleetStatus | null {
  if (fleet === null) return null
  return { url: fleet.client.url, push: fleet.push?.stats() ?? null, pull: fleet.pull?.stats() ?? null }
}
