/**
 * Prometheus metrics (prom-client): one Metrics object owns a Registry with every
 * `portanoia_*` series, and serveMetrics() exposes it as text on `/metrics`. Runs
 * on the main thread. Two kinds of series: those counted as things happen — hits
 * (hit(), once per packet, through label children bound once and kept, so the hot
 * path is two property reads and an increment), decisions, responder errors and
 * fleet lifts (event(), from the event stream), and the packet-to-decision latency
 * (decided()) — and those read from the pipeline's own counters when scraped
 * (kernel packets and drops, ring drops, active blocks, fleet pushes and pulls),
 * so nothing is duplicated or polled between scrapes. Names follow the Prometheus
 * conventions: `portanoia_` prefix, `_total` on counters, seconds. Process and
 * Node.js metrics come from collectDefaultMetrics under their standard names
 * (`process_*`, `nodejs_*`), which generic dashboards and alerts already know.
 * Invariant: no method throws into the caller; a source that throws on a scrape
 * leaves its series at their last values.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { PortanoiaEvent } from './events.js'
import type { Hit } from '../types.js'

/** What the metrics read from a running pipeline when scraped. Each is optional. */
export interface MetricsSources {
  /** The sensor's cumulative counters (Sensor.stats()). */
  sensor?: () => { kernelPackets: number; kernelDrops: number; ringDrops: number }
  /** Blocks this host holds on its own evidence (PolicyEngine.activeBlocks()). */
  blocks?: () => Iterable<{ family: 4 | 6; verified: boolean }>
  /** Fleet bans applied here (FleetPull.active().values()). */
  fleetBlocks?: () => Iterable<{ family: 4 | 6 }>
  /** The fleet link's counters (Fleet.stats(): `fleet-push`, `fleet-pull`). */
  fleet?: () => Record<string, Record<string, number>>
}

export interface MetricsOptions {
  /** Registry to use; default a new one (not prom-client's global). */
  registry?: Registry
  /** Register process and Node.js metrics (collectDefaultMetrics). Default true. */
  defaultMetrics?: boolean
}

/** Probe kinds that can occur per protocol: bound up front so `rate()` sees them from zero. */
const EXPECTED_HITS: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['tcp', ['syn', 'connect', 'fin', 'null', 'xmas', 'ack', 'maimon', 'rst', 'odd-flags', 'fragment']],
  ['udp', ['udp', 'fragment']],
  ['sctp', ['sctp-init', 'sctp-cookie-echo', 'sctp-other', 'fragment']],
]

/** The hit children's slot: (false, plausible) 0, (false, forged) 1, (false, verified: its source's) 2, (true, verified) 3. */
function attributionIndex(verified: boolean, attribution: string): number {
  if (verified) return 3
  return attribution === 'forged' ? 1 : attribution === 'verified' ? 2 : 0
}

/**
 * Latency buckets, seconds: the capture ring retires blocks within milliseconds,
 * so most decisions land under 10 ms; the tail shows a starved event loop.
 */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

type CounterChild = ReturnType<Counter<string>['labels']>

/** A counter that follows a cumulative value kept elsewhere: it grows by what the source grew. */
class Mirror {
  // Per counter, per label set: the source's value at the last scrape.
  #last = new WeakMap<Counter<string>, Map<string, number>>()

  /** Adds to `counter` (under `labels`) what `value` grew since the last call. */
  follow(counter: Counter<string>, value: number, labels: Record<string, string> = {}): void {
    if (!Number.isFinite(value) || value < 0) return
    let seen = this.#last.get(counter)
    if (seen === undefined) this.#last.set(counter, (seen = new Map()))
    const key = JSON.stringify(labels)
    const last = seen.get(key) ?? 0
    // A source that went backwards was replaced (a new daemon on the same Metrics):
    // everything it counted so far is new.
    const delta = value >= last ? value - last : value
    seen.set(key, value)
    if (delta > 0) counter.inc(labels, delta)
  }

  /** Forget the positions (the source is gone; a new one starts from zero). */
  reset(): void {
    this.#last = new WeakMap()
  }
}

export class Metrics {
  readonly registry: Registry
  readonly #hits: Counter<'proto' | 'kind' | 'verified' | 'attribution'>
  // proto → kind → children by attribution index (attributionIndex), created once each.
  readonly #hitChildren: Record<string, Record<string, Array<CounterChild | undefined>>> = Object.create(null)
  readonly #forgeries: Counter<'guard'>
  readonly #decisions: Counter<'source' | 'action' | 'reason'>
  readonly #decisionChildren = new Map<string, CounterChild>()
  readonly #responderErrors: Counter<'responder'>
  readonly #latency: Histogram<string>
  readonly #fleetUnblocked: Counter<string>
  readonly #firewallChanges: Counter<string>
  readonly #prefixBans: Counter<string>
  readonly #bypassed: Counter<string>
  readonly #scans: Counter<'shape' | 'tool'>
  readonly #decoys: Counter<'sender'>
  #sources: MetricsSources = {}
  readonly #mirror = new Mirror()

  constructor(options: MetricsOptions = {}) {
    const registry = options.registry ?? new Registry()
    this.registry = registry
    const registers = [registry]
    const self = this

    this.#hits = new Counter({
      name: 'portanoia_hits_total',
      help: 'Probes to tripwire ports seen by the sensor, by protocol, scan kind, whether the packet is verified (completed a TCP handshake) and its attribution (verified, plausible, forged).',
      labelNames: ['proto', 'kind', 'verified', 'attribution'],
      registers,
    })
    for (const [proto, kinds] of EXPECTED_HITS) {
      for (const kind of kinds) {
        if (kind === 'connect') {
          this.#hitChild(proto, kind, true, 'verified')
          continue
        }
        this.#hitChild(proto, kind, false, 'plausible')
        this.#hitChild(proto, kind, false, 'forged')
      }
    }
    this.#scans = new Counter({
      name: 'portanoia_scans_total',
      help: 'Scans recognised (scan events with phase start), by shape (vertical, horizontal, decoy, distributed) and tool guess (nmap, masscan, zmap, none).',
      labelNames: ['shape', 'tool'],
      registers,
    })
    this.#decoys = new Counter({
      name: 'portanoia_decoy_groups_total',
      help: 'Decoy groups reported (the same probe from several sources within milliseconds), by whether one member was named the sender (named) or not (none).',
      labelNames: ['sender'],
      registers,
    })
    this.#forgeries = new Counter({
      name: 'portanoia_forgeries_total',
      help: 'Forgery alerts: forged packets claiming an address portanoia guards (one alert per address, guard and minute), by guard.',
      labelNames: ['guard'],
      registers,
    })

    new Counter({
      name: 'portanoia_kernel_packets_total',
      help: 'Packets the kernel passed to the capture socket (PACKET_STATISTICS tp_packets).',
      registers,
      collect() {
        const s = self.#read(self.#sources.sensor)
        if (s !== undefined) self.#mirror.follow(this, s.kernelPackets, {})
      },
    })
    new Counter({
      name: 'portanoia_kernel_drops_total',
      help: 'Packets the kernel dropped because the capture ring was full (PACKET_STATISTICS tp_drops).',
      registers,
      collect() {
        const s = self.#read(self.#sources.sensor)
        if (s !== undefined) self.#mirror.follow(this, s.kernelDrops, {})
      },
    })
    new Counter({
      name: 'portanoia_ring_drops_total',
      help: 'Hits dropped between the capture thread and JavaScript because the hit ring was full.',
      registers,
      collect() {
        const s = self.#read(self.#sources.sensor)
        if (s !== undefined) self.#mirror.follow(this, s.ringDrops, {})
      },
    })

    this.#decisions = new Counter({
      name: 'portanoia_decisions_total',
      help: 'Decisions, by source (local: this host\'s sensor; fleet: CrowdSec LAPI), action and reason code.',
      labelNames: ['source', 'action', 'reason'],
      registers,
    })

    new Gauge({
      name: 'portanoia_active_blocks',
      help: 'Blocks in force, by address family and evidence (verified, spoofable: this host\'s own; fleet: applied from LAPI).',
      labelNames: ['family', 'evidence'],
      registers,
      collect() {
        const blocks = self.#read(self.#sources.blocks)
        const fleet = self.#read(self.#sources.fleetBlocks)
        const n = { '4': { verified: 0, spoofable: 0, fleet: 0 }, '6': { verified: 0, spoofable: 0, fleet: 0 } }
        if (blocks !== undefined) for (const b of blocks) n[b.family === 6 ? '6' : '4'][b.verified ? 'verified' : 'spoofable']++
        if (fleet !== undefined) for (const b of fleet) n[b.family === 6 ? '6' : '4'].fleet++
        if (blocks === undefined && fleet === undefined) return
        for (const family of ['4', '6'] as const) {
          for (const evidence of ['verified', 'spoofable', 'fleet'] as const) this.set({ family, evidence }, n[family][evidence])
        }
      },
    })

    this.#responderErrors = new Counter({
      name: 'portanoia_responder_errors_total',
      help: 'Failed actions (error events), by responder: nftables, ipset, exec, webhook, sensor, guards, ...',
      labelNames: ['responder'],
      registers,
    })

    this.#firewallChanges = new Counter({
      name: 'portanoia_firewall_changes_total',
      help: 'Blocks the daemon found different in the kernel and followed it on (firewall events): restored (the table or a set was gone), forgotten (removed by someone else), adopted (added by hand), migrated (from an earlier layout).',
      labelNames: ['op'],
      registers,
    })

    this.#prefixBans = new Counter({
      name: 'portanoia_prefix_bans_total',
      help: 'Prefix bans (--aggregate, prefix events): blocked, refused (a guarded address inside, the live check failed, the firewall failed), restored (put back after the kernel lost them).',
      labelNames: ['op'],
      registers,
    })

    this.#bypassed = new Counter({
      name: 'portanoia_block_bypassed_total',
      help: 'Addresses whose block did not hold (block-bypassed events, once per address): forward (routed through the host while the drop rules cover input only), input (a handshake completed through a confirmed block).',
      labelNames: ['path'],
      registers,
    })

    this.#latency = new Histogram({
      name: 'portanoia_decision_latency_seconds',
      help: 'From the capture timestamp of the packet that triggered a decision to the decision.',
      buckets: LATENCY_BUCKETS,
      registers,
    })

    const fleetCounter = (name: string, help: string, key: string, labelNames: string[] = [], pick?: (s: Record<string, Record<string, number>>) => Array<[Record<string, string>, number]>): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          const s = self.#read(self.#sources.fleet)
          if (s === undefined) return
          if (pick !== undefined) {
            for (const [labels, v] of pick(s)) self.#mirror.follow(this, v, labels)
            return
          }
          const [part, field] = key.split('.') as [string, string]
          const v = s[part]?.[field]
          if (v !== undefined) self.#mirror.follow(this, v, {})
        },
      })
    }
    fleetCounter('portanoia_fleet_pushes_total', 'Alerts (one ban each) CrowdSec LAPI accepted from this host.', 'fleet-push.pushes')
    fleetCounter('portanoia_fleet_pulls_total', 'Decision-stream polls LAPI answered.', 'fleet-pull.pulls')
    fleetCounter('portanoia_fleet_failures_total', 'Fleet requests that failed (push, pull) and fleet bans the firewall failed to apply (apply).', '', ['op'], (s) => {
      const out: Array<[Record<string, string>, number]> = []
      if (s['fleet-push'] !== undefined) out.push([{ op: 'push' }, s['fleet-push'].pushFailures ?? 0])
      if (s['fleet-pull'] !== undefined) {
        out.push([{ op: 'pull' }, s['fleet-pull'].pullFailures ?? 0])
        out.push([{ op: 'apply' }, s['fleet-pull'].applyFailures ?? 0])
      }
      return out
    })
    fleetCounter('portanoia_fleet_push_dropped_total', 'Alerts not delivered: queue-full (oldest dropped), abandoned (refused too often), expired (ban over before LAPI was reached).', '', ['why'], (s) => {
      const p = s['fleet-push']
      if (p === undefined) return []
      return [[{ why: 'queue-full' }, p.drops ?? 0], [{ why: 'abandoned' }, p.abandoned ?? 0], [{ why: 'expired' }, p.expired ?? 0]]
    })
    new Gauge({
      name: 'portanoia_fleet_push_queue',
      help: 'Alerts waiting to be pushed to LAPI.',
      registers,
      collect() {
        const v = self.#read(self.#sources.fleet)?.['fleet-push']?.queued
        if (v !== undefined) this.set(v)
      },
    })
    this.#fleetUnblocked = new Counter({
      name: 'portanoia_fleet_unblocked_total',
      help: 'Fleet bans lifted here because they were deleted in LAPI (or a local guard now protects the address).',
      registers,
    })

    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry })
  }

  /** Reads from the pipeline at scrape time; returns a function that detaches (after a last read). */
  attach(sources: MetricsSources): () => void {
    this.#mirror.reset()
    this.#sources = sources
    return () => {
      if (this.#sources !== sources) return
      // Fold in the final values, then stop reading from a pipeline that is gone.
      void this.registry.metrics().catch(() => {}).finally(() => {
        if (this.#sources === sources) this.#sources = {}
      })
    }
  }

  /** One probe. Called per packet: no allocation once the label child exists. */
  hit(h: Hit): void {
    const attribution = h.attribution
    const byKind = this.#hitChildren[h.proto]
    const children = byKind === undefined ? undefined : byKind[h.kind]
    const child = children === undefined ? undefined : children[attributionIndex(h.verified, attribution)]
    ;(child ?? this.#hitChild(h.proto, h.kind, h.verified, attribution)).inc()
  }

  /** A decision was made `seconds` after the packet that triggered it was captured. */
  decided(seconds: number): void {
    this.#latency.observe(seconds > 0 ? seconds : 0)
  }

  /** Counts what the event stream says: decisions (local and fleet), errors, fleet lifts. */
  event(e: PortanoiaEvent): void {
    switch (e.type) {
      case 'decision': {
        const source = 'source' in e ? 'fleet' : 'local'
        const key = `${source}\u0000${e.action}\u0000${e.reason}`
        let c = this.#decisionChildren.get(key)
        if (c === undefined) {
          c = this.#decisions.labels(source, e.action, e.reason)
          this.#decisionChildren.set(key, c)
        }
        c.inc()
        return
      }
      case 'error':
        this.#responderErrors.labels(e.responder).inc()
        return
      case 'fleet':
        if (e.op === 'unblocked') this.#fleetUnblocked.inc()
        return
      case 'forgery':
        this.#forgeries.labels(e.guard).inc()
        return
      case 'firewall':
        this.#firewallChanges.labels(e.op).inc(e.count)
        return
      case 'prefix':
        this.#prefixBans.labels(e.op).inc()
        return
      case 'block-bypassed':
        this.#bypassed.labels(e.path).inc()
        return
      case 'scan':
        if (e.phase === 'start') this.#scans.labels(e.shape, e.tool ?? 'none').inc()
        return
      case 'decoy':
        this.#decoys.labels(e.sender === undefined ? 'none' : 'named').inc()
        return
      default:
        return
    }
  }

  /** The text exposition, after reading the sources. */
  async text(): Promise<string> {
    return await this.registry.metrics()
  }

  #hitChild(proto: string, kind: string, verified: boolean, attribution: string): CounterChild {
    const byKind = (this.#hitChildren[proto] ??= Object.create(null) as Record<string, Array<CounterChild | undefined>>)
    const children = (byKind[kind] ??= [undefined, undefined, undefined, undefined])
    const i = attributionIndex(verified, attribution)
    let child = children[i]
    if (child === undefined) {
      child = children[i] = this.#hits.labels(proto, kind, String(verified), attribution)
      // A bound child is exported only once it has a value: start it at 0.
      child.inc(0)
    }
    return child
  }

  #read<T>(source: (() => T) | undefined): T | undefined {
    if (source === undefined) return undefined
    try {
      return source()
    } catch {
      // A pipeline part that is closing: its series keep their last values.
      return undefined
    }
  }
}

// ---------------------------------------------------------------------------
// The HTTP endpoint

export interface MetricsListen {
  /** Address to bind: 127.0.0.1 unless the operator chose another. */
  host: string
  /** 0 picks a free port (the server reports the one it got). */
  port: number
}

export interface MetricsServer {
  /** The address the server is bound to. */
  host: string
  port: number
  /** `http://HOST:PORT/metrics`. */
  url: string
  /** Stops listening and drops open connections. Idempotent. */
  close(): Promise<void>
}

/**
 * Serves `GET /metrics` (and HEAD) from `metrics`; every other path is 404.
 * Resolves once listening; rejects (EADDRINUSE, EACCES, ...) when it cannot bind.
 */
export async function serveMetrics(metrics: Pick<Metrics, 'registry'>, listen: MetricsListen): Promise<MetricsServer> {
  const registry = metrics.registry
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: try /metrics\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    registry.metrics().then(
      (body) => {
        res.writeHead(200, { 'content-type': registry.contentType })
        res.end(req.method === 'HEAD' ? undefined : body)
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${err instanceof Error ? err.message : String(err)}\n`)
      },
    )
  }
  const server: Server = createServer(handle)
  // A scraper that keeps a connection open must not hold the process at exit.
  server.keepAliveTimeout = 5000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const a = server.address() as AddressInfo
  let closing: Promise<void> | undefined
  const host = a.address
  return {
    host,
    port: a.port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${a.port}/metrics`,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}
