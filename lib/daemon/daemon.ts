/**
 * Daemon: the whole pipeline a Node service (or the `portanoia` CLI) runs —
 * sensor → PolicyEngine → responders (one firewall, any number of notifiers) →
 * events. Runs on the main thread. It owns the timers around the pure engine:
 * engine.tick() every second, the `--unused` port sync (the sensor's live port swap,
 * driven by the socket table, never over the ephemeral range) every few seconds, and
 * stats events. Guard facts are not polled: the host view (HostWatch) watches the
 * kernel and the resolver files, and on every change the daemon installs the new
 * facts, then lifts every block in force (the engine's, and what the firewall lists)
 * that now covers a guarded address, with an `unblock` decision. The host view also
 * answers the engine's live checks (the route check of the one address about to be
 * blocked; whether a hit was addressed to this host at all) and, per hit that may be
 * a reply, whether it answers one of the host's own connections: such hits never
 * reach the engine. The engine's block decisions wait in a BlockVetter
 * (block-vetter.ts) for the kernel's peer check, batched and off the JS thread; the
 * engine's vet() then says what is emitted: the block, or the `guard:peer` decision
 * that replaces it, or — when the check fails or times out — a `peer-check-failed`
 * report for a spoofable source (fail safe: a verified one is still blocked). Block requests go through a FirewallBatcher
 * (firewall-batcher.ts), so a flood becomes a few large `nft -f -` transactions,
 * never one process per address; notifiers get one call per event-loop turn; the
 * async iterator is an EventQueue (event-queue.ts). Invariants: nothing thrown by a
 * responder, an event consumer or a refresh reaches the capture loop — each becomes
 * an `error` event; no `blocked` decision is emitted, pushed or sent to the firewall
 * before the peer check passed it; everything is validated, and the sensor opened,
 * before the firewall is touched, so a bad option changes nothing; close() is
 * idempotent, vets what is held, flushes the pending batch, and closes the sensor,
 * then the responders.
 *
 * Two optional attachments. The fleet link (lib/fleet, CrowdSec's Local API)
 * starts once the firewall has adopted its table: each local decision is offered
 * to it (a synchronous enqueue: a slow or dead LAPI never slows the pipeline),
 * fleet bans are applied through the same firewall responder (their own `nft -f -`
 * transactions, which the kernel serialises with ours) unless a guard protects the
 * address, and its events join the stream. It is closed after the last local batch
 * reached the firewall, so that batch's blocks are still pushed, and before the
 * responders. Metrics (lib/daemon/metrics.ts) count every hit in the capture loop and
 * every event as it is emitted, and read the sensor, engine and fleet counters
 * when scraped.
 *
 * Operations (the control socket's calls, also public for an embedding service):
 * status() reads each component once (status.ts); list() is the kernel's listing
 * joined with who made each block (blocks.ts); block() and unblock() go through the
 * same guards, engine and firewall as the policy, so the engine, the fleet's view
 * and the kernel agree; reload() applies a new config live (reload.ts plans and
 * prepares it; the apply step here is one call per component), one at a time.
 */
import { parsePorts, portsToString } from '../bpf/ports.js'
import { PortanoiaError } from '../errors.js'
import {
  decisionEvent,
  decoyEvent,
  errorEvent,
  hitEvent,
  type PortanoiaEvent,
  scanEvent,
  statsEvent,
} from './events.js'
import { type Fleet, type ResolvedFleet, startFleet } from '../fleet/index.js'
import { type StartOptions, startDaemon } from './assemble.js'
import { BlockVetter } from './block-vetter.js'
import { type BlockInfo, BlockOrigins, joinBlocks } from './blocks.js'
import { type ConfigInput, DAEMON_RING_RECORDS, type DaemonConfig, maxTtlMs as backendMaxTtlMs, parseTtl, resolveConfig } from './config.js'
import type { BlockOutcome } from './control.js'
import { operatorBlock } from './operator-block.js'
import { EventQueue } from './event-queue.js'
import { operatorEvent } from './events.js'
import { FirewallBatcher, type FirewallBatcherStats } from './firewall-batcher.js'
import { FirewallSync, type SyncFirewall, startReport } from './firewall-sync.js'
import { type AttributionConfig, AttributionPipeline } from './attribution.js'
import { type HostView, localHostView, netnsHostView } from './host-view.js'
import type { GuardFactsInForce } from './host-watch.js'
import { samePorts, unusedTripwires } from '../listening.js'
import type { Metrics } from './metrics.js'
import { planReload, prepareReload, type PreparedReload } from './reload.js'
import { ScanTracker, type ScanTrackerOptions } from './scans.js'
import {
  blockStatus,
  breakerStatus,
  counterStatus,
  type DaemonStatus,
  fleetStatus,
  guardStatus,
  policyStatus,
  type ReloadRecord,
  type ReloadStatus,
  tripwireStatus,
} from './status.js'
import type { Decision } from '../policy/decision.js'
import { type Cidr, normalizeAddresses, parseAddress, parseCidr } from '../policy/addr.js'
import { type PolicyConfig, resolvePolicyConfig } from '../policy/config.js'
import { PolicyEngine } from '../policy/engine.js'
import { Guards } from '../policy/guards.js'
import { Offences } from '../policy/offences.js'
import { type BlockBypassedEvent, firewallEvent, prefixEvent } from './events.js'
import { EVENT_SCHEMA_VERSION } from './event-version.js'
import { prefixPeer } from './prefix-peers.js'
import { type AggregateConfig, PrefixBans } from '../policy/prefixes.js'
import { defaultRun, netnsRun } from '../responders/run.js'
import type { JournalBlock, JournalPrefix, StateContent, StateFile } from './state-file.js'
import type { ActiveBlockEntry, BlockPath, BlockRequest, Responder, ResponderResult, RunFn } from '../responders/types.js'
import { open, type Sensor, type SensorOptions } from '../sensor.js'
import type { PortRange, PortSpec } from '../types.js'
import { VERSION } from '../version.js'

/**
 * The parts the daemon is composed of (startDaemon builds them from a config).
 * @internal
 */
export interface DaemonOptions {
  /** Tripwires, as open() takes them. At least one of `ports` / `unused` is needed. */
  ports?: readonly PortSpec[]
  /** Ranges whose ports become tripwires while no local socket uses them, kept in sync. */
  unused?: readonly PortSpec[]
  /** Capture interface; default 'any'. */
  interface?: string
  /**
   * Network namespace name (`ip netns list`) to watch instead of this process's:
   * capture, guard facts and the socket table all come from it. Firewall commands
   * run wherever the responders run them (give them a netnsRun).
   */
  netns?: string
  /**
   * Accept-and-reset listeners on TCP tripwires (verified connects), as open()
   * takes them. Default: every TCP tripwire without `unused`; with `unused`, only
   * the explicit TCP `ports` — a listener on an unused-range port would hold a port
   * a service may want to bind later, and would itself show up in the socket
   * table, while the ports the operator named keep their verification.
   */
  listen?: boolean | readonly PortSpec[]
  policy?: Partial<PolicyConfig>
  /** Networks never blocked (CIDR or address). */
  allowlist?: readonly string[]
  /** The one responder that changes the firewall; null for none. */
  firewall?: Responder | null
  /** Told about every decision (exec, webhook, jsonl, ...). */
  notifiers?: readonly Responder[]
  /** Emit one `hit` event per packet (default false: decisions aggregate them). */
  hits?: boolean
  /** Stats event period; 0 emits one only at close. Default 60 s. */
  statsIntervalMs?: number
  /** `unused` socket-table sync period. Default 3 s. */
  unusedSyncMs?: number
  /**
   * How often the firewall's shape is checked against the kernel (a terse read), ms.
   * Default 5000. Deletions reported by the firewall's monitor are looked at at once.
   */
  firewallSyncMs?: number
  /** How often every element is compared with what the daemon believes, ms. Default 60,000. */
  firewallFullSyncMs?: number
  /**
   * Longest a block request waits for its batch while the firewall is idle. Default
   * 0: the batch goes out on the next event-loop turn, after every decision of the
   * current sensor drain; while a transaction runs, requests accumulate and follow it
   * as one batch, so a flood still costs one nft process per transaction time.
   */
  batchMs?: number
  /** A batch is flushed at once when it holds this many requests. Default 256. */
  batchMax?: number
  /**
   * Where host facts, live checks and the socket table come from (tests, or a view
   * made earlier). Default: local, or the netns. The daemon owns it from start() on
   * and closes it.
   */
  host?: HostView
  /** Every event, synchronously, in order. Exceptions are caught and reported on onLog. */
  onEvent?: (event: PortanoiaEvent) => void
  /** Operational messages that are not events (skipped ports, adopted blocks, ...). */
  onLog?: (level: 'info' | 'warn', message: string) => void
  /** Dry-run: the script a firewall responder would have run. */
  onScript?: (script: string, responder: string) => void
  /** Extra sensor options (retireMs, ringRecords, a fake binding, ...). */
  sensor?: Partial<Omit<SensorOptions, 'ports' | 'interface' | 'netns' | 'listen'>>
  /** Clock for the policy engine (ms). */
  now?: () => number
  /**
   * Share blocks through CrowdSec's Local API (resolveFleetConfig's result):
   * local blocks are pushed, fleet bans are applied through `firewall`. Without a
   * firewall nothing can be applied: only pushing runs.
   */
  fleet?: ResolvedFleet
  /** Prometheus metrics to feed (lib/daemon/metrics.ts); serving them is the caller's. */
  metrics?: Metrics
  /** Called once at the very end of close() (the assembly closes the metrics endpoint here). */
  onClosed?: () => Promise<void>
  /**
   * Attribution (lib/attribution): the reverse-path mode, whether the link may be asked,
   * and validators of the embedding service's own. Default: strict reverse path, link
   * questions on, the built-ins only. False: no attribution (hits say `unchecked`).
   */
  attribution?: AttributionConfig | false
  /**
   * Scan tracking (lib/daemon/scans.ts): `scan` events with a shape and a tool guess,
   * decoy groups and their `decoy` events. Default on with its defaults; false: off.
   */
  scans?: ScanTrackerOptions | false
  /** The config this daemon was built from (startDaemon): what a reload compares against. */
  config?: DaemonConfig
  /** Where reload() without an argument gets the new config (the CLI re-reads its file). */
  reloadSource?: () => Promise<DaemonConfig>
  /** The control socket's path, for status (the assembly serves it). */
  controlPath?: string
  /** Those of `notifiers` made from `config` (exec, webhook): a reload replaces them. */
  configNotifiers?: readonly Responder[]
  /**
   * The state file (state-file.ts): the ladder's history is loaded from it before the
   * first hit, blocks are restored from it when the firewall's table was gone at
   * start, and it is kept up to date from then on (not in dry-run). The daemon
   * writes it a last time at close.
   */
  state?: StateFile
  /**
   * Prefix bans (`--aggregate`, lib/policy/prefixes.ts): when `threshold` verified
   * blocks the firewall confirmed lie in one prefix, the prefix is blocked (the
   * firewall needs blockPrefixes: nftables with `prefixes`) and its single blocks
   * retired — unless a guard holds an address inside it, by the facts or by the
   * kernel's live answer over the whole prefix.
   */
  aggregate?: AggregateConfig
  /** Runs `ss` for the live check over a prefix. Default: in `netns`, or here. */
  prefixRun?: RunFn
}

export interface DaemonStats {
  uptimeMs: number
  /** Requests sent to the firewall, batches, failures. */
  firewall: { requested: number; batches: number; applied: number; failed: number }
  /** Events the async iterator had to drop because nobody read them. */
  droppedEvents: number
}

const MAX_QUEUED_EVENTS = 65_536
/** How often scans are recognised and ended (scans.ts): the most a `scan` event lags its hit. */
const SCAN_SWEEP_MS = 250

function checkMs(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', `${name} must be a number of milliseconds ≥ ${min}, got ${JSON.stringify(value)}`)
  }
  return value
}

/** Runs `fn`, turning a synchronous throw into a rejection. */
async function safely<T>(fn: () => Promise<T>): Promise<T> {
  return await fn()
}

const IDLE_FIREWALL_STATS: FirewallBatcherStats = Object.freeze({ requested: 0, batches: 0, applied: 0, failed: 0 })

export class Daemon implements AsyncIterable<PortanoiaEvent> {
  // TypeScript-private (not #private) so the pipeline's parts stay off the public
  // types while the daemon's own methods keep their short names.
  private readonly engine: PolicyEngine
  private readonly sensor: Sensor
  private readonly host: HostView
  readonly #opts: DaemonOptions
  readonly #firewall: Responder | null
  #notifiers: readonly Responder[]
  /** The notifiers the config made (a reload may replace them); the others are the caller's. */
  #configNotifiers: readonly Responder[]
  /** Per notifier, its notify() calls not yet settled (a reload waits for them before closing it). */
  readonly #deliveries = new Map<Responder, Set<Promise<unknown>>>()
  #explicit: PortRange[]
  #unused: PortRange[]
  #allowlist: readonly string[]
  #hits: boolean
  #config: DaemonConfig | undefined
  readonly #origins = new BlockOrigins()
  #reloading: Promise<unknown> = Promise.resolve()
  readonly #reloads: ReloadStatus = { applied: 0, refused: 0, last: null }
  #statsTimer: NodeJS.Timeout | undefined
  /** Notifiers a reload replaced, finishing their deliveries before they close. */
  #retiring: Promise<void> = Promise.resolve()
  readonly #dryRun: boolean
  readonly #batcher: FirewallBatcher | null
  /** Block decisions waiting for the kernel's peer check; null when the host view has no live checks. */
  readonly #vetter: BlockVetter | null
  readonly #started = Date.now()
  #pendingNotify: Decision[] = []
  #notifyScheduled = false
  #timers: NodeJS.Timeout[] = []
  #loop: Promise<void> = Promise.resolve()
  #closing: Promise<void> | undefined
  /** The latest sync, queued behind the one before it; #syncQueued counts those not finished. */
  #syncChain: Promise<void> = Promise.resolve()
  #syncQueued = 0
  /** The lift pass in progress, and whether facts changed again while it ran. */
  #lifting: Promise<void> | null = null
  #liftAgain = false
  /** The facts last installed, as text: a notification that changed nothing guarded (a connected route, a flag) costs no lift pass. */
  #factsSeen = ''
  #ephemeral: [number, number] | null = null
  readonly #events = new EventQueue<PortanoiaEvent>(MAX_QUEUED_EVENTS)
  #failure: Error | undefined
  #fleet: Fleet | null = null
  #attribution: AttributionPipeline | null = null
  #scans: ScanTracker | null = null
  #sync: FirewallSync | null = null
  /** Addresses a block-bypassed event was raised for (once each; the oldest forgotten past 65,536). */
  readonly #bypassed = new Set<string>()
  /** Prefix bans in force, and the one aggregation pass at a time. */
  readonly #prefixBans: PrefixBans | null
  #aggregating: Promise<void> = Promise.resolve()
  #aggregatePending = false
  #detachMetrics: (() => void) | undefined
  #done: Promise<Error | undefined>
  #resolveDone!: (err: Error | undefined) => void

  private constructor(
    opts: DaemonOptions,
    parts: {
      engine: PolicyEngine
      sensor: Sensor
      host: HostView
      explicit: PortRange[]
      unused: PortRange[]
      allowlist: readonly string[]
      batchMs: number
      batchMax: number
    },
  ) {
    this.#opts = opts
    this.engine = parts.engine
    this.sensor = parts.sensor
    this.host = parts.host
    this.#explicit = parts.explicit
    this.#unused = parts.unused
    this.#allowlist = parts.allowlist
    this.#firewall = opts.firewall ?? null
    this.#notifiers = [...(opts.notifiers ?? [])]
    this.#configNotifiers = this.#notifiers.filter((n) => opts.configNotifiers?.includes(n) === true)
    this.#hits = opts.hits === true
    this.#config = opts.config
    this.#dryRun = parts.engine.config.dryRun || parts.engine.config.block === 'off'
    this.#prefixBans = opts.aggregate === undefined ? null : new PrefixBans(opts.aggregate)
    const fw = this.#firewall
    this.#batcher =
      fw === null
        ? null
        : new FirewallBatcher(fw, {
            batchMs: parts.batchMs,
            batchMax: parts.batchMax,
            onSettled: (batch, outcome) => {
              if ('error' in outcome) {
                for (const b of batch) this.engine.release(b.address)
                this.#emit(errorEvent({ responder: fw.name, error: outcome.error, action: 'block', addresses: batch.map((b) => b.address) }))
                return
              }
              // A block that did not reach the kernel must not be remembered as made:
              // the next hit from that source tries again. One that did is confirmed:
              // from now on a handshake from that source proves it missing.
              if (outcome.result.dryRun !== true) {
                for (const f of outcome.result.failed) this.engine.release(f.address)
                for (const a of outcome.result.applied) this.engine.confirm(a)
                this.#opts.state?.schedule()
                if (this.#prefixBans !== null && outcome.result.applied.length > 0) this.#aggregateSoon()
              }
              // The table was gone and came back with this batch only: restore the rest.
              if (outcome.result.repaired !== undefined && outcome.result.repaired.length > 0) this.#sync?.trigger(true)
              this.#report(fw, outcome.result, 'block')
            },
            // A throw in the result handling (a caller's onScript): never an unhandled rejection.
            onError: (err) => this.#emit(errorEvent({ responder: fw.name, error: err, action: 'block' })),
          })
    const live = parts.host.live
    this.#vetter =
      live === null
        ? null
        : new BlockVetter({
            check: (addresses) => live.peers(addresses),
            onVetted: (d, refusal) => this.#carryOut(this.engine.vet(d, refusal)),
            onError: (err) => this.#emit(errorEvent({ responder: 'guards', error: err })),
          })
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve
    })
  }

  /**
   * Builds and starts the whole daemon from one configuration object, the shape
   * the config file holds (`{ tcp: [2222], block: 'verified', blockTtl: '1h' }`):
   * validated in full (PORTANOIA_BAD_CONFIG names the field) before anything is
   * touched, every default applied, the same pipeline `portanoia watch` runs.
   */
  static async start(config: ConfigInput, options: StartOptions = {}): Promise<Daemon> {
    return await startDaemon(resolveConfig(config), { reloadSource: async () => resolveConfig(config), ...options })
  }

  /**
   * Composes the pipeline from parts already built (responders, host view, sensor
   * overrides): validates every option, reads the host, opens the sensor, then sets
   * up the firewall (adopting existing blocks; those that are now guarded are
   * removed) and starts. A failure at any step undoes the earlier ones and throws.
   * @internal
   */
  static async compose(options: DaemonOptions): Promise<Daemon> {
    // 1. Validation: nothing below runs unless every option is good.
    const policy = resolvePolicyConfig(options.policy)
    const maxTtlMs = options.firewall?.maxTtlMs
    if (maxTtlMs !== undefined && policy.blockTtlMs > maxTtlMs) {
      throw new PortanoiaError('PORTANOIA_BAD_POLICY', `policy.blockTtlMs: ${policy.blockTtlMs} ms is longer than ${options.firewall?.name ?? 'the firewall'} can hold (${maxTtlMs} ms)`, {
        hint: 'use a shorter block TTL',
      })
    }
    const explicit = options.ports !== undefined && options.ports.length > 0 ? parsePorts(options.ports) : []
    const unused = options.unused !== undefined && options.unused.length > 0 ? parsePorts(options.unused) : []
    if (explicit.length === 0 && unused.length === 0) {
      throw new PortanoiaError('PORTANOIA_NO_PORTS', 'no tripwire ports given', { hint: 'give ports, unused ranges, or both' })
    }
    const allowlist = [...(options.allowlist ?? [])]
    const guards = new Guards({ allowlist })
    const batchMs = checkMs('batchMs', options.batchMs, 0, 0)
    const batchMax = checkMs('batchMax', options.batchMax, 256, 1)
    const statsMs = checkMs('statsIntervalMs', options.statsIntervalMs, 60_000, 0)
    const fwSyncMs = checkMs('firewallSyncMs', options.firewallSyncMs, 5000, 100)
    const fwFullMs = checkMs('firewallFullSyncMs', options.firewallFullSyncMs, 60_000, 1000)
    const syncMs = checkMs('unusedSyncMs', options.unusedSyncMs, 3000, 100)
    const log = options.onLog ?? ((): void => {})

    // 2. The host: guards from the kernel, watched from here on, and for `unused`
    //    the socket table and the ephemeral range.
    const host = options.host ?? (options.netns !== undefined ? netnsHostView(options.netns) : localHostView())
    let ports = explicit
    let ephemeral: [number, number] | null = null
    let startGeneration = 0
    let startFacts = ''
    try {
      host.setWarn((m) => log('warn', `guards: ${m}`))
      const facts = await host.start()
      startFacts = JSON.stringify(facts.snapshot)
      startGeneration = host.inForce().generation
      for (const w of facts.warnings) log('warn', `host facts: ${w}`)
      guards.update(facts.snapshot)
      if (unused.length > 0) {
        ephemeral = host.localPortRange()
        if (ephemeral !== null) {
          log('info', `--unused leaves out ${ephemeral[0]}-${ephemeral[1]}, the ephemeral port range (net.ipv4.ip_local_port_range): this host's own connections take their ports there`)
        }
        ports = unusedTripwires(explicit, unused, await host.listening(), ephemeral)
      }
      if (ports.length === 0) {
        throw new PortanoiaError('PORTANOIA_NO_PORTS', 'every port of the unused ranges is in use or ephemeral: no tripwire left', {
          hint: 'widen the --unused range or add explicit tripwires',
        })
      }
    } catch (err) {
      host.close()
      throw err
    }

    // The ladder's history and the blocks the kernel may have lost: read before the
    // first hit. A missing or corrupt file is an empty history, never a failure.
    const saved = (await options.state?.load()) ?? null
    const clock = options.now ?? Date.now
    const offences = new Offences()
    if (saved !== null) {
      const n = offences.load(saved.offences, clock(), policy.forgetAfterMs)
      if (n > 0) log('info', `state file: ${n} address(es) with earlier blocks (escalation ladder)`)
    }

    const live = host.live
    const engine = new PolicyEngine({
      config: policy,
      guards,
      offences,
      ...(options.now !== undefined && { now: options.now }),
      // The route check stays synchronous (µs); the peer check is the daemon's, batched off the JS thread.
      ...(live !== null && { liveGuard: live.route, isLocal: live.isLocal, vetBlocks: true }),
    })

    // 3. The sensor, before the firewall: a port in use or a missing capability must
    //    not leave a half-made table behind.
    let sensor: Sensor
    try {
      sensor = await open({
        ringRecords: DAEMON_RING_RECORDS,
        ...options.sensor,
        ports,
        ...(options.interface !== undefined && { interface: options.interface }),
        ...(options.netns !== undefined && { netns: `/run/netns/${options.netns}` }),
        listen: options.listen ?? (unused.length === 0 || explicit.filter((r) => r.proto === 'tcp')),
      })
    } catch (err) {
      host.close()
      throw err
    }
    host.ignorePeersOn(() => sensor.listenerPorts())
    const daemon = new Daemon(options, { engine, sensor, host, explicit, unused, allowlist, batchMs, batchMax })
    daemon.#ephemeral = ephemeral
    daemon.#factsSeen = startFacts
    if (options.attribution !== false) {
      try {
        daemon.#attribution = new AttributionPipeline({
          ...options.attribution,
          sensor,
          engine,
          live,
          ...(options.netns !== undefined && { netns: `/run/netns/${options.netns}` }),
          ...(options.sensor?.binding !== undefined && { binding: options.sensor.binding }),
          ...(options.now !== undefined && { now: options.now }),
          emit: (e) => daemon.#emit(e),
          handle: (ds) => daemon.#handle(ds),
          log,
        })
      } catch (err) {
        log('warn', `attribution is off: ${(err as Error).message ?? String(err)} (hits say 'unchecked')`)
      }
    }
    if (options.scans !== false) {
      const attributor = daemon.#attribution?.attributor
      const scans = new ScanTracker({
        // Its clock is the capture's (hits carry the kernel's wall-clock time), not the engine's.
        ...options.scans,
        // Decoy members' evidence names go through the attributor (never a verdict).
        decoy: { ...options.scans?.decoy, ...(attributor !== undefined && { mark: (src, names, ms) => attributor.mark(src, names, ms) }) },
      })
      attributor?.onSettled((src, answer) => scans.settled(src, answer.attribution))
      daemon.#scans = scans
    }

    // 4. Responders. The firewall adopts what the kernel holds: local blocks go to the
    //    engine, fleet bans (their own set, tagged) to the fleet link once it runs.
    const started: Responder[] = []
    let fleetBlocks: ActiveBlockEntry[] = []
    try {
      const fw = daemon.#firewall
      if (fw !== null) {
        const all = await fw.start()
        started.push(fw)
        const setup = (fw as { lastSetupScript?: unknown }).lastSetupScript
        if (daemon.#dryRun && typeof setup === 'string' && setup !== '') options.onScript?.(setup, fw.name)
        startReport(fw, (e) => daemon.#emit(e))
        fleetBlocks = all.filter((b) => b.evidence === 'fleet')
        const blocks = all.filter((b) => b.evidence !== 'fleet')
        if (blocks.length > 0) {
          const r = engine.adopt(
            blocks.map((b) => ({
              src: b.address,
              ...(b.evidence !== undefined && { verified: b.evidence === 'verified' }),
              ...(b.expiresInMs !== undefined && { expiresInMs: b.expiresInMs }),
              ...(b.timeoutMs !== undefined && { timeoutMs: b.timeoutMs }),
            })),
          )
          log('info', `adopted ${r.adopted} block(s) from ${fw.name}`)
          daemon.#markAdopted(blocks, saved?.blocks ?? [])
          if (r.guarded.length > 0) {
            const srcs = r.guarded.map((g) => g.src)
            const u = await fw.unblock(srcs)
            for (const g of r.guarded) engine.release(g.src)
            log('warn', `removed ${u.applied.length} adopted block(s) on guarded addresses: ${r.guarded.map((g) => `${g.src} (${g.reason})`).join(', ')}`)
            daemon.#report(fw, u)
          }
        }
      }
      // The kernel lost every block (a reboot): the journal puts back those whose time
      // has not run out. With a table in place the kernel is the truth, and nothing is.
      if (fw !== null && fw.fresh === true && saved !== null && !daemon.#dryRun) {
        await daemon.#restore(fw, saved.blocks, log)
        if (saved.prefixes !== undefined) await daemon.#restoreJournalPrefixes(fw, saved.prefixes, log)
      }
      if (options.state !== undefined && !daemon.#dryRun) {
        options.state.attach(() => daemon.#journal())
        options.state.schedule()
      }
      for (const n of daemon.#notifiers) {
        await n.start()
        started.push(n)
      }
      if (options.fleet !== undefined) daemon.#startFleet(options.fleet, guards, log)
      const pull = daemon.#fleet?.pull ?? null
      if (pull !== null && fleetBlocks.length > 0) log('info', `adopted ${await pull.adopt(fleetBlocks)} fleet ban(s) from ${fw?.name ?? 'the firewall'}`)
      if (fw !== null && fw.repair !== undefined && !daemon.#dryRun) {
        daemon.#sync = new FirewallSync(fw as SyncFirewall, {
          engine,
          fleet: () => daemon.#fleet?.pull ?? null,
          emit: (e) => daemon.#emit(e),
          onError: (err) => daemon.#emit(errorEvent({ responder: fw.name, error: err })),
          intervalMs: fwSyncMs,
          fullMs: fwFullMs,
        }).start()
      }
    } catch (err) {
      await daemon.#sync?.close().catch(() => {})
      await daemon.#fleet?.close().catch(() => {})
      await options.state?.close()
      daemon.#attribution?.close()
      await sensor.close()
      host.close()
      for (const r of started.reverse()) await r.close().catch(() => {})
      throw err
    }
    if (options.metrics !== undefined) {
      const fleet = daemon.#fleet
      const pull = fleet?.pull ?? null
      daemon.#detachMetrics = options.metrics.attach({
        sensor: () => sensor.stats(),
        blocks: () => engine.activeBlocks(),
        ...(pull !== null && { fleetBlocks: () => pull.active().values() }),
        ...(fleet !== null && { fleet: () => fleet.stats() }),
      })
    }

    log('info', `watching ${portsToString(sensor.ports)} on ${sensor.interface} (${host.label})`)
    daemon.#loop = daemon.#capture()
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(fn, ms)
      daemon.#timers.push(t)
    }
    const scans = daemon.#scans
    if (scans !== null) {
      every(SCAN_SWEEP_MS, () => {
        try {
          const { scans: started, decoys } = scans.sweep()
          for (const g of decoys) daemon.#emit(decoyEvent(g))
          for (const r of started) daemon.#emit(scanEvent(r))
        } catch (err) {
          daemon.#emit(errorEvent({ responder: 'scans', error: err }))
        }
      })
    }
    every(1000, () => {
      // A timer callback that throws would end the process: report it as an event instead.
      try {
        daemon.#handle(engine.tick())
      } catch (err) {
        daemon.#emit(errorEvent({ responder: 'policy', error: err }))
      }
    })
    // From here on a change of the facts is in force at once, and lifts what it guards.
    host.subscribe(() => daemon.#onFactsChanged())
    // A kernel change between start() and subscribe() would otherwise wait for the next one.
    if (host.inForce().generation !== startGeneration) daemon.#onFactsChanged()
    // Always armed: a reload may add `unused` ranges (syncPorts returns at once without).
    every(syncMs, () => {
      if (daemon.#syncQueued === 0) void daemon.syncPorts()
    })
    daemon.#armStats(statsMs)
    return daemon
  }

  /**
   * Blocks found in the kernel at start: their origin did not survive the restart,
   * unless the state file says an operator made them.
   */
  #markAdopted(blocks: ReadonlyArray<{ address: string; expiresInMs?: number }>, journal: readonly JournalBlock[]): void {
    const now = Date.now()
    const policy = new Map(this.engine.activeBlocks().map((b) => [b.src, b]))
    const operator = new Set(journal.filter((j) => j.origin === 'operator').map((j) => j.address))
    for (const b of blocks) {
      const own = policy.get(b.address)
      if (own === undefined) continue
      const until = b.expiresInMs === undefined ? Infinity : now + b.expiresInMs
      if (operator.has(b.address)) this.#origins.mark(b.address, 'operator', 'operator', until)
      else this.#origins.mark(b.address, 'adopted', own.verified ? 'verified' : 'spoofable', until)
    }
  }

  /**
   * Puts back the journal's blocks after the kernel lost them, each with the time it
   * has left, unless a guard (the facts in force, then the kernel's live answer, as
   * before any block) now protects its address. One `firewall` event (`restored`,
   * missing `table`) says what came back.
   */
  async #restore(fw: Responder, journal: readonly JournalBlock[], log: NonNullable<DaemonOptions['onLog']>): Promise<void> {
    const now = (this.#opts.now ?? Date.now)()
    const requests: BlockRequest[] = []
    const guarded: string[] = []
    for (const b of journal) {
      const left = b.expiresAt - now
      if (!(left >= 1000)) continue
      const reason = this.engine.guardOf(b.address)
      if (reason !== null) {
        guarded.push(`${b.address} (${reason})`)
        continue
      }
      requests.push({ address: b.address, family: b.family, ttlMs: left, evidence: b.evidence })
    }
    if (guarded.length > 0) log('info', `state file: not restored, now guarded: ${guarded.slice(0, 32).join(', ')}${guarded.length > 32 ? ` and ${guarded.length - 32} more` : ''}`)
    if (requests.length === 0) return
    const r = await safely(() => fw.block(requests)).catch((err: unknown) => {
      this.#emit(errorEvent({ responder: fw.name, error: err, action: 'block' }))
      return null
    })
    if (r === null) return
    this.#report(fw, r, 'block')
    const applied = new Set(r.applied)
    const back = requests.filter((q) => applied.has(q.address))
    this.engine.adopt(back.map((q) => ({ src: q.address, verified: q.evidence === 'verified', expiresInMs: q.ttlMs })))
    const operator = new Set(journal.filter((j) => j.origin === 'operator').map((j) => j.address))
    for (const q of back) if (operator.has(q.address)) this.#origins.mark(q.address, 'operator', 'operator', Date.now() + q.ttlMs)
    log('info', `state file: restored ${back.length} block(s) the kernel had lost`)
    this.#emit(firewallEvent({ op: 'restored', responder: fw.name, addresses: back.map((q) => q.address), missing: ['table'] }))
  }

  /**
   * A hit from an address the firewall confirmed blocked (alone, or in a prefix ban)
   * that the kernel should have dropped: routed through the host (`transit`) while
   * the drop rules do not cover the forward path, or a handshake that completed
   * through the block (`reapplied`). One `block-bypassed` event per address.
   */
  #checkBypass(d: Decision): void {
    const fw = this.#firewall
    if (fw === null || this.#dryRun || d.trigger === undefined || this.#bypassed.has(d.src)) return
    const path: BlockPath = d.reason === 'transit' ? 'forward' : 'input'
    if (path === 'forward' && (fw.paths ?? ['input']).includes('forward')) return
    const now = (this.#opts.now ?? Date.now)()
    let blockedUntil: number | undefined
    let prefix: string | undefined
    if (path === 'input') {
      // reapplied: the engine already knows the confirmed block was missing.
      blockedUntil = d.expiresAt
    } else if (this.engine.confirmedAt(d.src) !== undefined) {
      blockedUntil = this.engine.activeBlocks().find((b) => b.src === d.src)?.expiresAt
    } else {
      const ban = this.#prefixBans?.covering(d.src, now)
      if (ban === undefined) return
      prefix = ban.prefix
      blockedUntil = ban.expiresAt
    }
    this.#bypassed.add(d.src)
    if (this.#bypassed.size > 65_536) this.#bypassed.delete(this.#bypassed.values().next().value as string)
    const t = d.trigger
    const e: BlockBypassedEvent = { type: 'block-bypassed', time: new Date(now).toISOString(), v: EVENT_SCHEMA_VERSION, src: d.src, family: d.family, path, dst: t.dst, dstPort: t.dstPort, proto: t.proto, interface: t.interface }
    if (blockedUntil !== undefined && Number.isFinite(blockedUntil)) e.blockedUntil = new Date(blockedUntil).toISOString()
    if (prefix !== undefined) e.prefix = prefix
    this.#emit(e)
  }

  /**
   * Queues an aggregation pass behind the one running (passes never overlap); while
   * one is already waiting, a burst of confirmed batches adds nothing (each pass reads
   * every confirmed block, so one pass covers them all).
   */
  #aggregateSoon(): void {
    if (this.#aggregatePending) return
    this.#aggregatePending = true
    this.#aggregating = this.#aggregating
      .then(() => {
        this.#aggregatePending = false
        return this.#aggregate()
      })
      .catch((err: unknown) => this.#emit(errorEvent({ responder: this.#firewall?.name ?? 'firewall', error: err, action: 'block' })))
  }

  /** Whether a local port is a tripwire's (its listener's sockets are not admins). */
  #isTripwirePort(port: number): boolean {
    return this.sensor.ports.some((r) => r.proto !== 'udp' && port >= r.from && port <= r.to)
  }

  /**
   * Each prefix that reached the threshold: the guard facts, then the kernel's live
   * answer over the whole prefix, then the prefix ban for the longest time its
   * blocks had left, and the single blocks it covers retired (released here first,
   * so the firewall sync does not take their removal for someone's unblock). A
   * refused prefix is not asked about again for a minute.
   */
  async #aggregate(): Promise<void> {
    const bans = this.#prefixBans
    const fw = this.#firewall
    if (bans === null || fw === null || fw.blockPrefixes === undefined || this.#closing !== undefined || this.#dryRun) return
    const clock = this.#opts.now ?? Date.now
    const run = this.#opts.prefixRun ?? (this.#opts.netns === undefined ? defaultRun : netnsRun(this.#opts.netns))
    for (const c of bans.candidates(this.engine.confirmedBlocks(), clock())) {
      const refuse = (reason: string): void => {
        bans.refuse(c.prefix, clock())
        this.#emit(prefixEvent({ op: 'refused', prefix: c.prefix, family: c.cidr.family, members: c.members, reason }))
      }
      const guard = this.engine.guards.checkNetwork(c.cidr)
      if (guard !== null) {
        refuse(`guard:${guard}`)
        continue
      }
      const live = await prefixPeer(run, c.cidr, (port) => this.#isTripwirePort(port))
      if (live.peer === null) {
        this.#opts.onLog?.('warn', `prefix ${c.prefix}: the live peer check failed (${live.error}); not blocked`)
        refuse('check-failed')
        continue
      }
      if (live.peer) {
        this.#opts.onLog?.('info', `prefix ${c.prefix}: not blocked, a live peer is inside it (${live.line})`)
        refuse('guard:peer')
        continue
      }
      const now = clock()
      const ttlMs = c.expiresAt - now
      if (ttlMs < 1000) continue
      const r = await fw.blockPrefixes([{ prefix: c.prefix, family: c.cidr.family, ttlMs }])
      if (!r.applied.includes(c.prefix)) {
        this.#report(fw, r, 'block')
        refuse('failed')
        continue
      }
      const expiresAt = now + ttlMs
      bans.add({ cidr: c.cidr, prefix: c.prefix, family: c.cidr.family, expiresAt, members: c.members })
      // What the prefix now covers: the confirmed blocks inside it that end no later.
      const covered = this.engine.confirmedBlocks().filter((b) => b.expiresAt <= expiresAt && bans.covering(b.src, now)?.prefix === c.prefix)
      for (const b of covered) this.engine.release(b.src)
      let retired = 0
      for (const evidence of ['verified', 'spoofable'] as const) {
        const list = covered.filter((b) => b.verified === (evidence === 'verified')).map((b) => b.src)
        if (list.length === 0) continue
        const u = await fw.unblock(list, { evidence })
        retired += u.applied.length
        this.#report(fw, u)
      }
      this.#emit(prefixEvent({ op: 'blocked', prefix: c.prefix, family: c.cidr.family, members: c.members, ttlMs, expiresAt, retired }))
      this.#opts.state?.schedule()
    }
  }

  /** After the kernel lost prefix sets (a flushed table): every ban in force goes back with its time left. */
  async #restorePrefixes(): Promise<void> {
    const bans = this.#prefixBans
    const fw = this.#firewall
    if (bans === null || fw === null || fw.blockPrefixes === undefined || this.#closing !== undefined) return
    const now = (this.#opts.now ?? Date.now)()
    const back = bans.active(now).filter((b) => b.expiresAt - now >= 1000)
    if (back.length === 0) return
    const r = await fw.blockPrefixes(back.map((b) => ({ prefix: b.prefix, family: b.family, ttlMs: b.expiresAt - now })))
    this.#report(fw, r, 'block')
    for (const b of back) {
      if (r.applied.includes(b.prefix)) this.#emit(prefixEvent({ op: 'restored', prefix: b.prefix, family: b.family, members: b.members, ttlMs: b.expiresAt - now, expiresAt: b.expiresAt }))
    }
  }

  /**
   * After a reboot: the journal's prefix bans whose time has not run out go back with
   * the time they have left, each after the same checks as a new one (the guard
   * facts, then the kernel's live answer over the prefix). Only with --aggregate.
   */
  async #restoreJournalPrefixes(fw: Responder, journal: readonly JournalPrefix[], log: NonNullable<DaemonOptions['onLog']>): Promise<void> {
    const bans = this.#prefixBans
    if (bans === null || fw.blockPrefixes === undefined) return
    const clock = this.#opts.now ?? Date.now
    const run = this.#opts.prefixRun ?? (this.#opts.netns === undefined ? defaultRun : netnsRun(this.#opts.netns))
    for (const j of journal) {
      let cidr: Cidr
      try {
        cidr = parseCidr(j.prefix)
      } catch {
        continue
      }
      const ttlMs = j.expiresAt - clock()
      if (!(ttlMs >= 1000)) continue
      const guard = this.engine.guards.checkNetwork(cidr)
      const live = guard === null ? await prefixPeer(run, cidr, (port) => this.#isTripwirePort(port)) : null
      const why = guard !== null ? `guard:${guard}` : live?.peer === true ? 'guard:peer' : live?.peer === null ? 'check-failed' : null
      if (why !== null) {
        log('info', `state file: prefix ${j.prefix} not restored (${why})`)
        this.#emit(prefixEvent({ op: 'refused', prefix: j.prefix, family: j.family, members: [], reason: why }))
        continue
      }
      const r = await fw.blockPrefixes([{ prefix: j.prefix, family: j.family, ttlMs }])
      this.#report(fw, r, 'block')
      if (!r.applied.includes(j.prefix)) continue
      bans.add({ cidr, prefix: j.prefix, family: j.family, expiresAt: clock() + ttlMs, members: [] })
      this.#emit(prefixEvent({ op: 'restored', prefix: j.prefix, family: j.family, members: [], ttlMs, expiresAt: clock() + ttlMs }))
    }
  }

  /** What the state file keeps: the ladder's history and the blocks the kernel confirmed. */
  #journal(): StateContent {
    const now = (this.#opts.now ?? Date.now)()
    const blocks: JournalBlock[] = []
    for (const b of this.engine.confirmedBlocks()) {
      if (!Number.isFinite(b.expiresAt)) continue
      const origin = this.#origins.get(b.src)?.origin === 'operator' ? 'operator' : 'local'
      blocks.push({ address: b.src, family: b.family, evidence: b.verified ? 'verified' : 'spoofable', origin, expiresAt: b.expiresAt })
    }
    const prefixes: JournalPrefix[] = (this.#prefixBans?.active(now) ?? []).map((b) => ({ prefix: b.prefix, family: b.family, expiresAt: b.expiresAt }))
    return { offences: this.engine.offences.entries(now, this.engine.config.forgetAfterMs), blocks, ...(prefixes.length > 0 && { prefixes }) }
  }

  /** (Re)starts the periodic stats event; 0 turns it off. */
  #armStats(ms: number): void {
    if (this.#statsTimer !== undefined) clearInterval(this.#statsTimer)
    this.#statsTimer = ms > 0 ? setInterval(() => this.#emit(this.#statsEvent()), ms) : undefined
  }

  /**
   * Starts the fleet link. Without a firewall there is nothing to apply fleet bans
   * through, and in dry-run nothing may be applied: pulling is turned off (and said
   * so) rather than emitting fleet `block` events for bans that never reached the
   * kernel; pushing goes on (in dry-run no decision is `blocked`, so none is pushed).
   */
  #startFleet(config: ResolvedFleet, guards: Guards, log: NonNullable<DaemonOptions['onLog']>): void {
    const fw = this.#firewall
    let cfg = config
    if (fw === null && cfg.pull) {
      log('warn', 'crowdsec: no firewall backend to apply fleet bans through; pulling is off, pushing only')
      cfg = { ...cfg, pull: false }
    } else if (this.engine.config.dryRun && cfg.pull) {
      log('warn', 'crowdsec: dry-run applies nothing, so fleet bans are not pulled; pulling is off')
      cfg = { ...cfg, pull: false }
    }
    if (!cfg.push && !cfg.pull) {
      log('warn', 'crowdsec: neither pushing nor pulling can run; the fleet link is off')
      return
    }
    // Pull is off without a firewall, so this stand-in is never called.
    const responder: Pick<Responder, 'name' | 'block' | 'unblock'> = fw ?? {
      name: 'none',
      block: async () => ({ responder: 'none', ok: true, applied: [], failed: [] }),
      unblock: async () => ({ responder: 'none', ok: true, applied: [], failed: [] }),
    }
    const engine = this.engine
    this.#fleet = startFleet(cfg, {
      responder,
      guards,
      isLocalBlock: (a) => engine.isBlocked(a),
      onEvent: (e) => this.#emit(e),
    })
    this.#opts.onLog?.(
      'info',
      `crowdsec: ${[cfg.push && `pushing blocks as ${cfg.machine ?? '?'}`, cfg.pull && 'applying fleet bans'].filter(Boolean).join(', ')} (${cfg.url})`,
    )
  }

  /** Resolves when the daemon has stopped: undefined after close(), the error when capture failed. */
  get done(): Promise<Error | undefined> {
    return this.#done
  }

  /** The tripwires in force (with `unused`, they follow the socket table). */
  get ports(): readonly PortRange[] {
    return this.sensor.ports
  }

  stats(): DaemonStats {
    return { uptimeMs: Date.now() - this.#started, firewall: this.#firewallStats(), droppedEvents: this.#events.dropped }
  }

  #firewallStats(): FirewallBatcherStats {
    return this.#batcher?.stats() ?? { ...IDLE_FIREWALL_STATS }
  }

  // ------------------------------------------------------------------ pipeline

  async #capture(): Promise<void> {
    const metrics = this.#opts.metrics
    try {
      // Batches: a flood costs one await per drained batch, not one per hit.
      const live = this.host.live
      const scans = this.#scans
      for await (const hits of this.sensor.batches()) {
        for (const hit of hits) {
          // A reply to one of this host's own connections is not a probe at all.
          if (live !== null && live.isReply(hit)) continue
          // Reading the attribution here (metrics, the hit event, the engine) runs the
          // attributor once for this hit; its answer is cached per source.
          metrics?.hit(hit)
          if (this.#hits) this.#emit(hitEvent(hit))
          const ds = this.engine.observe(hit)
          this.#attribution?.observe(hit)
          scans?.observe(hit)
          if (ds.length > 0) {
            if (metrics !== undefined) {
              // Capture timestamp to decision, on the wall clock both use.
              const seconds = (Date.now() - hit.time) / 1000
              for (let i = 0; i < ds.length; i++) metrics.decided(seconds)
            }
            this.#handle(ds)
          }
        }
      }
    } catch (err) {
      this.#failure = err instanceof Error ? err : new Error(String(err))
      this.#emit(errorEvent({ responder: 'sensor', error: err }))
      void this.close()
    }
  }

  #handle(ds: readonly Decision[]): void {
    if (ds.length === 0) return
    const vetter = this.#vetter
    if (vetter === null) return this.#carryOut(ds)
    const now: Decision[] = []
    for (const d of ds) {
      // Blocks (and dry-run's would-be blocks) wait for the kernel's peer check.
      if (d.action === 'block' || (d.reason === 'dry-run' && !d.final)) vetter.add(d)
      else now.push(d)
    }
    this.#carryOut(now)
  }

  /** Emits decisions and hands them on: fleet, firewall, notifiers. */
  #carryOut(ds: readonly Decision[]): void {
    if (ds.length === 0) return
    const fleet = this.#fleet
    for (const d of ds) {
      // The policy's own block (or a lift) replaces an operator's or an adopted one on the address.
      if (d.action === 'block' || d.action === 'unblock') this.#origins.delete(d.src)
      this.#emit(decisionEvent(d))
      if (d.reason === 'transit' || d.reason === 'reapplied') this.#checkBypass(d)
      // Only `blocked` decisions are pushed (FleetPush filters); an enqueue, never a wait.
      fleet?.offer(d)
      // In dry-run the engine reports would-be blocks as `dry-run`; the firewall
      // responder is in dry-run too and turns them into the script it would run.
      if (this.#batcher !== null && (d.action === 'block' || (this.#dryRun && d.reason === 'dry-run' && !d.final))) {
        const req: BlockRequest = {
          address: d.src,
          family: d.family,
          ttlMs: d.ttlMs ?? this.engine.config.blockTtlMs,
          evidence: d.verified ? 'verified' : 'spoofable',
        }
        // A handshake got through a block: besides the element, the chain may be gone.
        if (d.reason === 'reapplied') this.#sync?.trigger(true)
        if (d.upgrade === true) req.upgrade = true
        this.#batcher.add(req)
      }
    }
    if (this.#notifiers.length > 0) {
      this.#pendingNotify.push(...ds)
      if (!this.#notifyScheduled) {
        // After every decision of the current sensor drain: one notify() call per turn.
        this.#notifyScheduled = true
        setImmediate(() => this.#notify())
      }
    }
  }

  /** Hands the decisions gathered this turn to every notifier (their queues are bounded). */
  #notify(): void {
    this.#notifyScheduled = false
    const notes = this.#pendingNotify
    if (notes.length === 0) return
    this.#pendingNotify = []
    for (const n of this.#notifiers) {
      let pending = this.#deliveries.get(n)
      if (pending === undefined) this.#deliveries.set(n, (pending = new Set()))
      const p = safely(() => n.notify(notes))
        .then((r) => this.#report(n, r))
        // Also catches a throw from #report (a caller's onScript): never an unhandled rejection.
        .catch((err: unknown) => this.#emit(errorEvent({ responder: n.name, error: err })))
        .finally(() => pending.delete(p))
      pending.add(p)
    }
  }

  /** Turns a responder's result into error events (one per distinct message) and dry-run scripts. */
  #report(r: Responder, res: ResponderResult, action?: 'block'): void {
    if (res.dryRun === true && res.script !== undefined && res.script !== '') this.#opts.onScript?.(res.script, r.name)
    if (res.failed.length === 0) return
    const byMessage = new Map<string, string[]>()
    for (const f of res.failed) {
      let list = byMessage.get(f.error)
      if (list === undefined) byMessage.set(f.error, (list = []))
      list.push(f.address)
    }
    for (const [message, addresses] of byMessage) {
      const valid = addresses.filter((a) => /^[0-9a-f.:]+$/i.test(a))
      this.#emit(
        errorEvent({
          responder: r.name,
          error: new PortanoiaError('PORTANOIA_RESPONDER_FAILED', message),
          ...(action !== undefined && { action }),
          ...(valid.length === 1 ? { src: valid[0] } : { addresses: valid }),
        }),
      )
    }
  }

  /**
   * The host's facts changed: install them (synchronously, so the next hit is judged
   * by them), then lift the blocks they now guard.
   */
  #onFactsChanged(): void {
    if (this.#closing !== undefined) return
    try {
      const snapshot = this.host.current().snapshot
      const seen = JSON.stringify(snapshot)
      if (seen === this.#factsSeen) return
      this.#factsSeen = seen
      this.engine.guards.update(snapshot)
    } catch (err) {
      this.#emit(errorEvent({ responder: 'guards', error: err }))
      return
    }
    void this.#lift()
  }

  /**
   * Runs #liftGuarded one at a time: a call while one runs queues one more run (the
   * guards it must see are installed already). Resolves when the current run ends.
   */
  #lift(): Promise<void> {
    if (this.#lifting !== null) {
      this.#liftAgain = true
      return this.#lifting
    }
    this.#lifting = this.#liftGuarded().finally(() => {
      this.#lifting = null
      if (this.#liftAgain) {
        this.#liftAgain = false
        void this.#lift()
      }
    })
    return this.#lifting
  }

  /**
   * Removes every block in force on an address the guards now protect: the engine's
   * own (made here or adopted), then whatever else the firewall lists (fleet bans, an
   * operator's). Each becomes an `unblock` decision with the guard's reason.
   */
  async #liftGuarded(): Promise<void> {
    const fw = this.#firewall
    const lifted: Decision[] = [...this.engine.liftGuarded()]
    try {
      if (fw !== null && !this.#dryRun) {
        // A pending block batch must not land after the lift and undo it.
        await this.#batcher?.idle()
        const known = new Set(lifted.map((d) => d.src))
        for (const entry of await fw.list()) {
          if (known.has(entry.address)) continue
          const reason = this.engine.guards.check(entry.address)
          if (reason === null) continue
          const d = this.engine.unblockDecision(entry.address, reason)
          if (d !== null) lifted.push(d)
        }
      }
      if (lifted.length === 0) return
      if (fw !== null) {
        const r = await safely(() => fw.unblock(lifted.map((d) => d.src)))
        this.#report(fw, r)
      }
    } catch (err) {
      this.#emit(errorEvent({ responder: fw?.name ?? 'guards', error: err }))
    }
    // Said after the firewall call, so an `unblock` event means the kernel was asked.
    if (lifted.length > 0) this.#handle(lifted)
  }

  /** The guard facts in force (kernel, resolvers) and the allowlist: what the guards protect now. */
  guardFacts(): GuardFactsInForce & { allowlist: readonly string[] } {
    return { ...this.host.inForce(), allowlist: [...this.#allowlist] }
  }

  /**
   * `unused` mode: re-reads the socket table and swaps the tripwire set when it
   * changed. Public so a caller (or a test) can force a sync now: a call made while
   * a sync runs waits for it and then reads the table again, so it resolves only
   * after a read that began after the call (the periodic timer skips its turn
   * instead while one is pending).
   */
  syncPorts(): Promise<void> {
    if (this.#unused.length === 0 || this.#closing !== undefined) return Promise.resolve()
    this.#syncQueued++
    const run = this.#syncChain.then(() => this.#syncOnce())
    this.#syncChain = run
    return run
  }

  async #syncOnce(): Promise<void> {
    try {
      if (this.#closing !== undefined) return
      const ephemeral = this.host.localPortRange()
      if (ephemeral !== null && (ephemeral[0] !== this.#ephemeral?.[0] || ephemeral[1] !== this.#ephemeral?.[1])) {
        this.#opts.onLog?.('info', `--unused now leaves out ${ephemeral[0]}-${ephemeral[1]} (net.ipv4.ip_local_port_range changed)`)
      }
      this.#ephemeral = ephemeral
      const listening = await this.host.listening()
      // The sets are read after the await: a reload may have replaced them meanwhile.
      const next = unusedTripwires(this.#explicit, this.#unused, listening, ephemeral)
      const current = this.sensor.ports
      if (next.length > 0 && !samePorts(next, current) && this.#closing === undefined) {
        await this.sensor.setPorts(next)
        this.#opts.onLog?.('info', `tripwires now ${portsToString(next)}`)
      }
    } catch (err) {
      this.#emit(errorEvent({ responder: 'sensor', error: err }))
    } finally {
      this.#syncQueued--
    }
  }

  // ---------------------------------------------------------------- operations

  /** The running daemon's state, one part per component (status.ts). */
  async status(): Promise<DaemonStatus> {
    const policy = this.engine.stats()
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: new Date(this.#started).toISOString(),
      uptimeMs: Date.now() - this.#started,
      control: this.#opts.controlPath ?? null,
      tripwires: tripwireStatus(this.sensor, this.#unused, this.host.label),
      policy: policyStatus(this.engine),
      breaker: breakerStatus(policy),
      counters: counterStatus(this.sensor, policy, this.#firewallStats(), this.#events.dropped),
      blocks: blockStatus(await this.#kernelBlocks(), policy),
      guards: guardStatus(this.engine.guards, this.guardFacts()),
      fleet: fleetStatus(this.#fleet),
      reload: { ...this.#reloads },
    }
  }

  async #kernelBlocks(): Promise<BlockInfo[] | null | Error> {
    if (this.#firewall === null) return null
    try {
      return await this.list()
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e))
    }
  }

  /**
   * The blocks the kernel holds, each joined with who made it and why (blocks.ts):
   * `local` (verified/spoofable evidence), `operator`, `fleet` (its scenario),
   * `adopted` (found at start), `unknown`. [] without a firewall backend. Rejects
   * when the kernel cannot be read.
   */
  async list(): Promise<BlockInfo[]> {
    this.#open()
    const fw = this.#firewall
    if (fw === null) return []
    const kernel = await fw.list()
    return joinBlocks(kernel, {
      origins: this.#origins,
      local: new Map(this.engine.activeBlocks().map((b) => [b.src, b])),
      fleet: this.#fleet?.pull?.active() ?? new Map(),
    })
  }

  /**
   * An operator's block. Every address is checked first (PORTANOIA_BAD_ADDRESS), the
   * TTL as the config's are ('1h'; default the verified block TTL, never longer than
   * the backend holds), then each address against the guards: a guarded one is
   * refused with its guard, never blocked. Timeouts only grow: an address the kernel
   * already holds for at least as long is left alone (`kept`), a shorter block is
   * extended. The engine adopts the new blocks (hits from them are
   * `already-blocked`); list() shows them as `operator`.
   */
  async block(addresses: readonly string[], options: { ttl?: string } = {}): Promise<BlockOutcome> {
    this.#open()
    const list = normalizeAddresses(addresses)
    const fw = this.#firewall
    if (fw === null) {
      throw new PortanoiaError('PORTANOIA_NO_FIREWALL', 'this daemon has no firewall backend: it cannot block', { hint: 'run it with backend nftables or ipset' })
    }
    const backend = fw.name === 'nftables' || fw.name === 'ipset' ? fw.name : 'none'
    const ttlMs = options.ttl === undefined ? Math.min(this.engine.config.blockTtlMs, backendMaxTtlMs(backend)) : parseTtl(options.ttl, 'ttl', backend)
    await this.#batcher?.idle()
    const live = this.host.live
    const { result, ...out } = await operatorBlock(fw, (a) => this.engine.guardOf(a), list, ttlMs, live === null ? undefined : (a) => live.peers(a))
    if (result !== null) {
      this.#report(fw, result, 'block')
      if (result.dryRun !== true) {
        const until = Date.now() + ttlMs
        this.engine.adopt(out.applied.map((src) => ({ src, expiresInMs: ttlMs, verified: true })))
        for (const a of out.applied) this.#origins.mark(a, 'operator', 'operator', until)
      }
    }
    const done = out.applied.length + out.kept.length
    this.#emit(
      operatorEvent({
        op: 'block',
        outcome: done === 0 ? 'refused' : out.refused.length + out.failed.length > 0 ? 'partial' : 'applied',
        addresses: out.applied,
        kept: out.kept.map((k) => k.address),
        ttlMs,
        refused: out.refused,
        failed: out.failed.map((f) => f.address).filter((a) => parseAddress(a) !== null),
      }),
    )
    return out
  }

  /**
   * Removes blocks (an operator's unblock) so that the engine, the fleet's view and
   * the kernel agree: a pending block batch goes out first (it must not bring an
   * address back after its removal), the firewall removes them, and the addresses
   * the kernel no longer holds are forgotten everywhere — until then a hit from one
   * is still `already-blocked`, so no new block races the removal. Addresses are
   * checked first (PORTANOIA_BAD_ADDRESS). Null without a firewall backend.
   */
  async unblock(addresses: readonly string[]): Promise<ResponderResult | null> {
    this.#open()
    const list = normalizeAddresses(addresses)
    const r = await this.#remove(list)
    this.#emit(
      operatorEvent({
        op: 'unblock',
        outcome: r === null || r.ok ? 'applied' : r.applied.length > 0 ? 'partial' : 'refused',
        addresses: r === null ? list : r.applied,
        failed: (r?.failed ?? []).map((f) => f.address).filter((a) => parseAddress(a) !== null),
      }),
    )
    return r
  }

  async #remove(addresses: readonly string[]): Promise<ResponderResult | null> {
    const forget = (list: readonly string[]): void => {
      for (const a of list) {
        this.engine.release(a)
        // An operator's unblock says the block was a mistake: the next one starts the ladder again.
        this.engine.offences.forget(a)
        this.#origins.delete(a)
      }
      this.#fleet?.pull?.forget(list)
    }
    const fw = this.#firewall
    if (fw === null) {
      forget(addresses)
      return null
    }
    // A block being vetted must not be carried out after the removal (one still held is dropped by vet()).
    await this.#vetter?.idle()
    await this.#batcher?.idle()
    const r = await safely(() => fw.unblock(addresses))
    this.#report(fw, r)
    forget([...r.applied, ...(r.absent ?? [])])
    return r
  }

  /**
   * Applies a new configuration to the running pipeline: `config`, or without it
   * the config source's (the CLI re-reads its file; after Daemon.start, the config
   * it was given, resolved again, so the allow file is re-read). reload.ts says
   * which fields can change live and why the others need a restart. One reload at
   * a time; nothing is changed unless everything that can fail has succeeded. A
   * refusal rejects with the reason — PORTANOIA_BAD_CONFIG (file:line:column),
   * PORTANOIA_RELOAD_REFUSED (the fields that need a restart), or what a part
   * refused (EADDRINUSE for a new tripwire) — and the running config stays. Either
   * way an `operator` event says what happened.
   */
  reload(config?: ConfigInput): Promise<ReloadRecord> {
    const run = this.#reloading.then(() => this.#reloadOnce(config))
    this.#reloading = run.catch(() => {})
    return run
  }

  async #reloadOnce(input: ConfigInput | undefined): Promise<ReloadRecord> {
    let changed: string[] = []
    let restart: string[] = []
    try {
      this.#open()
      const current = this.#config
      if (current === undefined) {
        throw new PortanoiaError('PORTANOIA_RELOAD_REFUSED', 'this daemon was composed from parts, not from a config: there is nothing to reload', {
          hint: 'start it with Daemon.start(config)',
        })
      }
      const next = input !== undefined ? resolveConfig(input) : await this.#reloadSource()
      const plan = planReload(current, next)
      ;({ changed, restart } = plan)
      if (restart.length > 0) {
        throw new PortanoiaError('PORTANOIA_RELOAD_REFUSED', `changed fields that need a restart: ${restart.join(', ')}`, {
          hint: 'nothing was changed: restart the daemon to apply them (systemctl restart portanoia), or undo them',
        })
      }
      const parts = await prepareReload(next, plan, { allowlist: this.#allowlist, host: this.host, log: this.#opts.onLog ?? (() => {}) })
      changed = parts.changed
      await this.#applyReload(next, parts)
      const record: ReloadRecord = { at: new Date().toISOString(), outcome: 'applied', changed }
      this.#reloads.applied++
      this.#reloads.last = record
      this.#emit(operatorEvent({ op: 'reload', outcome: 'applied', changed }))
      return record
    } catch (e) {
      const code = (e as { code?: unknown }).code
      const hint = (e as { hint?: unknown }).hint
      const error = { code: typeof code === 'string' ? code : 'PORTANOIA_RELOAD_REFUSED', message: e instanceof Error ? e.message : String(e) }
      this.#reloads.refused++
      this.#reloads.last = { at: new Date().toISOString(), outcome: 'refused', changed, ...(restart.length > 0 && { restart }), error }
      this.#emit(operatorEvent({ op: 'reload', outcome: 'refused', changed, restart, ...error, ...(typeof hint === 'string' && { hint }) }))
      throw e
    }
  }

  async #reloadSource(): Promise<DaemonConfig> {
    const source = this.#opts.reloadSource
    if (source === undefined) {
      throw new PortanoiaError('PORTANOIA_RELOAD_REFUSED', 'this daemon has no config source to read again', { hint: 'pass the new config: daemon.reload(config)' })
    }
    return await source()
  }

  /** Installs a prepared reload, one component at a time; only the port swap can still fail, and it goes first. */
  async #applyReload(next: DaemonConfig, parts: PreparedReload): Promise<void> {
    if (!samePorts(parts.ports, this.sensor.ports) || JSON.stringify(parts.listen) !== JSON.stringify(this.sensor.listen)) {
      // Serialised with the `unused` sync, which swaps ports too.
      const swap = this.#syncChain.then(() => this.sensor.setPorts(parts.ports, { listen: parts.listen }))
      this.#syncChain = swap.catch(() => {})
      try {
        await swap
      } catch (e) {
        for (const n of parts.notifiers ?? []) await n.close().catch(() => {})
        throw e
      }
      this.#opts.onLog?.('info', `tripwires now ${portsToString(parts.ports)}`)
    }
    this.#explicit = parts.explicit
    this.#unused = parts.unused
    this.engine.reconfigure(next.policy)
    if (parts.changed.some((c) => c.startsWith('allow'))) {
      this.engine.guards.update({ allowlist: parts.allowlist })
      this.#allowlist = parts.allowlist
      // Blocks on addresses the allowlist now protects are lifted, as for any new guard fact.
      void this.#lift()
      while (this.#lifting !== null) await this.#lifting
    }
    if (parts.notifiers !== null) this.#swapNotifiers(parts.notifiers)
    this.#hits = next.hits
    if (next.statsIntervalMs !== this.#config?.statsIntervalMs) this.#armStats(next.statsIntervalMs)
    this.#config = next
  }

  /**
   * Puts the new config notifiers in place of the old ones (the caller's stay). The
   * old ones get this turn's decisions, finish what they were given (up to 10 s),
   * and then close — in the background, awaited by close().
   */
  #swapNotifiers(next: readonly Responder[]): void {
    const old = this.#configNotifiers
    this.#notify()
    this.#notifiers = [...next, ...this.#notifiers.filter((n) => !old.includes(n))]
    this.#configNotifiers = next
    const pending = old.flatMap((n) => [...(this.#deliveries.get(n) ?? [])])
    const retire = (async (): Promise<void> => {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([Promise.allSettled(pending), new Promise((r) => (timer = setTimeout(r, 10_000)))])
      clearTimeout(timer)
      for (const n of old) {
        this.#deliveries.delete(n)
        try {
          await n.close()
        } catch (err) {
          this.#emit(errorEvent({ responder: n.name, error: err }))
        }
      }
    })()
    this.#retiring = Promise.all([this.#retiring, retire]).then(() => {})
  }

  #open(): void {
    if (this.#closing !== undefined) throw new PortanoiaError('PORTANOIA_CLOSED', 'the daemon is closed', { hint: 'start a new one' })
  }

  #statsEvent(): PortanoiaEvent {
    const responders: Record<string, Record<string, number>> = {}
    for (const r of [...(this.#firewall === null ? [] : [this.#firewall]), ...this.#notifiers]) {
      try {
        const s = r.stats?.()
        if (s !== undefined) responders[r.name] = s
      } catch {
        // a responder's counters are informational
      }
    }
    if (this.#fleet !== null) {
      try {
        Object.assign(responders, this.#fleet.stats())
      } catch {
        // informational, as above
      }
    }
    if (this.#sync !== null) responders['firewall-sync'] = this.#sync.stats()
    const vet = this.#vetter?.stats()
    responders.daemon = {
      ...this.#firewallStats(),
      droppedEvents: this.#events.dropped,
      ...(vet !== undefined && { vetHeld: vet.held, vetBatches: vet.batches, vetRefused: vet.refused, vetUnchecked: vet.unchecked, vetFailedBatches: vet.failedBatches }),
    }
    const sensor: Record<string, number> = {}
    for (const [k, v] of Object.entries(this.sensor.stats())) if (typeof v === 'number') sensor[k] = v
    const guards: Record<string, number> = { ...this.engine.guards.counts() }
    const watch = this.host.stats()
    if (watch !== null) Object.assign(guards, watch)
    const attribution = this.#attribution?.stats()
    const scans = this.#scans?.stats()
    return statsEvent({
      policy: this.engine.stats(),
      sensor,
      responders,
      guards,
      ...(attribution !== undefined && { attribution }),
      ...(scans !== undefined && { scans: { ...scans } }),
      uptimeMs: Date.now() - this.#started,
    })
  }

  // -------------------------------------------------------------------- events

  #emit(event: PortanoiaEvent): void {
    this.#opts.metrics?.event(event)
    // What the journal keeps changed: blocks lifted, forgotten, adopted, restored.
    if (event.type === 'firewall' || event.type === 'operator' || (event.type === 'decision' && event.action === 'unblock')) this.#opts.state?.schedule()
    // The prefix sets came back empty with the table: their bans go back too.
    if (event.type === 'firewall' && event.op === 'restored' && event.missing?.some((m) => m === 'table' || m.startsWith('set prefix')) === true) {
      this.#aggregating = this.#aggregating.then(() => this.#restorePrefixes()).catch((err: unknown) => this.#emit(errorEvent({ responder: this.#firewall?.name ?? 'firewall', error: err, action: 'block' })))
    }
    if (this.#opts.onEvent !== undefined) {
      try {
        this.#opts.onEvent(event)
      } catch (err) {
        this.#opts.onLog?.('warn', `onEvent threw: ${(err as Error).message ?? String(err)}`)
      }
    }
    this.#events.push(event)
  }

  /**
   * Events as an async iterator (in addition to onEvent). Events are queued from
   * the first call on, up to 65,536 unread (then dropped and counted in stats()).
   */
  [Symbol.asyncIterator](): AsyncIterator<PortanoiaEvent, undefined> {
    return this.#events[Symbol.asyncIterator]()
  }

  // ------------------------------------------------------------------ shutdown

  /** Stops the pipeline: timers, sensor, the pending batch, the fleet link, then the responders. Idempotent. */
  close(): Promise<void> {
    if (this.#closing === undefined) this.#closing = this.#shutdown()
    return this.#closing
  }

  async #shutdown(): Promise<void> {
    for (const t of this.#timers) clearInterval(t)
    this.#timers = []
    this.#armStats(0)
    // A reload in progress finishes (or is refused) before the parts it touches close.
    await this.#reloading
    await this.sensor.close()
    await this.#sync?.close()
    await this.#loop
    // Blocks still waiting for the peer check get their answer (the host view asks it) before the last firewall batch.
    await this.#vetter?.drain()
    // The link handles close.
    this.#attribution?.close()
    this.host.close()
    await this.#lifting
    // Hits already decided are carried out: the last batch goes to the firewall,
    // and the last decisions to the notifiers.
    this.#notify()
    await this.#batcher?.drain()
    await this.#aggregating
    // After the last batch (its blocks were offered, so they get their push
    // attempt) and before the responders (a poll in progress still has its firewall).
    if (this.#fleet !== null) {
      try {
        await this.#fleet.close()
      } catch (err) {
        this.#emit(errorEvent({ responder: 'fleet', error: err }))
      }
    }
    // The last word of the journal: every block and offence as they are now.
    await this.#opts.state?.close()
    this.#emit(this.#statsEvent())
    this.#detachMetrics?.()
    await this.#retiring
    const responders = [...this.#notifiers, ...(this.#firewall === null ? [] : [this.#firewall])]
    for (const r of responders) {
      try {
        await r.close()
      } catch (err) {
        this.#emit(errorEvent({ responder: r.name, error: err }))
      }
    }
    this.#events.end()
    try {
      await this.#opts.onClosed?.()
    } catch (err) {
      this.#opts.onLog?.('warn', `closing: ${(err as Error).message ?? String(err)}`)
    }
    this.#resolveDone(this.#failure)
  }
}
