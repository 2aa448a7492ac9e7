// Metrics: counters fed from hits and events, series read from the pipeline's own
// counters at scrape time, the HTTP endpoint on 127.0.0.1 (ephemeral port) scraped
// and its text parsed, Prometheus naming conventions, and the Grafana dashboard in
// contrib/ checked against the metric names the registry really exposes.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { decisionEvent, errorEvent } from '../../lib/daemon/events.js'
import { fleetDecisionEvent, fleetEvent } from '../../lib/fleet/events.js'
import { Metrics, type MetricsServer, serveMetrics } from '../../lib/daemon/metrics.js'
import type { Decision } from '../../lib/policy/decision.js'
import type { Hit } from '../../lib/types.js'

function hit(over: Partial<Hit> = {}): Hit {
  return {
    time: Date.now(),
    timeNs: 0n,
    src: '198.18.5.5',
    srcPort: 40000,
    dst: '198.18.0.1',
    dstPort: 2222,
    family: 4,
    proto: 'tcp',
    kind: 'syn',
    tcpFlags: 0x02,
    ttl: 64,
    verified: false,
    interface: 'eth0',
    ifindex: 2,
    fragment: false,
    ipOptions: false,
    extHeaders: false,
    truncated: false,
    ipId: 1,
    wireLen: 60,
    attribution: over.verified === true ? 'verified' : 'plausible',
    evidence: [],
    ...over,
  }
}

function decision(over: Partial<Decision> = {}): Decision {
  const now = Date.now()
  return {
    action: 'block',
    reason: 'blocked',
    src: '198.18.5.5',
    family: 4,
    verified: true,
    attribution: 'verified',
    evidence: [],
    ttlMs: 3_600_000,
    expiresAt: now + 3_600_000,
    ports: ['2222/tcp'],
    portsTruncated: false,
    kinds: ['connect'],
    count: 1,
    verifiedCount: 1,
    firstSeen: now,
    lastSeen: now,
    windowStart: now,
    windowMs: 60_000,
    time: now,
    final: false,
    trigger: { dst: '198.18.0.1', dstPort: 2222, srcPort: 40000, proto: 'tcp', kind: 'connect', interface: 'eth0' },
    ...over,
  }
}

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Parses the Prometheus text format (what a scraper does), strictly enough to catch a malformed line. */
function parse(text: string): { samples: Sample[]; types: Map<string, string>; help: Map<string, string> } {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)
    if (m !== null) {
      ;(m[1] === 'TYPE' ? types : help).set(m[2]!, m[3]!)
      continue
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`not a sample line: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!
    samples.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return { samples, types, help }
}

function get(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
  return s?.value
}

const servers: MetricsServer[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

describe('Metrics', () => {
  it('serves Prometheus text on 127.0.0.1 that moves with hits, decisions, errors and the pipeline counters', async () => {
    const metrics = new Metrics()
    const sensor = { kernelPackets: 10, kernelDrops: 0, ringDrops: 0 }
    const fleet = {
      'fleet-push': { pushes: 2, pushFailures: 1, drops: 0, abandoned: 0, expired: 0, queued: 3 },
      'fleet-pull': { pulls: 5, pullFailures: 0, applied: 1, unblocked: 0, refused: 1, skipped: 0, applyFailures: 0, active: 1 },
    }
    metrics.attach({
      sensor: () => sensor,
      blocks: () => [{ family: 4, verified: true }, { family: 6, verified: false }],
      fleetBlocks: () => [{ family: 4 }],
      fleet: () => fleet,
    })
    const server = await serveMetrics(metrics, { host: '127.0.0.1', port: 0 })
    servers.push(server)
    expect(server.host).toBe('127.0.0.1')
    expect(server.port).toBeGreaterThan(0)
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`)

    const scrape = async (): Promise<Sample[]> => {
      const r = await fetch(server.url)
      expect(r.status).toBe(200)
      expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
      return parse(await r.text()).samples
    }

    let s = await scrape()
    // Expected hit series exist from zero, so rate() works from the first probe.
    expect(get(s, 'portanoia_hits_total', { proto: 'tcp', kind: 'syn', verified: 'false' })).toBe(0)
    expect(get(s, 'portanoia_hits_total', { proto: 'tcp', kind: 'connect', verified: 'true' })).toBe(0)
    expect(get(s, 'portanoia_kernel_packets_total')).toBe(10)
    expect(get(s, 'portanoia_active_blocks', { family: '4', evidence: 'verified' })).toBe(1)
    expect(get(s, 'portanoia_active_blocks', { family: '6', evidence: 'spoofable' })).toBe(1)
    expect(get(s, 'portanoia_active_blocks', { family: '4', evidence: 'fleet' })).toBe(1)
    expect(get(s, 'portanoia_fleet_pushes_total')).toBe(2)
    expect(get(s, 'portanoia_fleet_failures_total', { op: 'push' })).toBe(1)
    expect(get(s, 'portanoia_fleet_push_queue')).toBe(3)
    expect(get(s, 'process_cpu_seconds_total')).toBeGreaterThan(0)

    for (let i = 0; i < 3; i++) metrics.hit(hit())
    metrics.hit(hit({ kind: 'connect', verified: true }))
    metrics.hit(hit({ proto: 'udp', kind: 'udp' }))
    metrics.hit(hit({ proto: 'tcp', kind: 'odd-flags' }))
    metrics.decided(0.003)
    metrics.decided(-1)
    metrics.event(decisionEvent(decision()))
    metrics.event(decisionEvent(decision({ action: 'none', reason: 'guard:gateway' })))
    metrics.event(fleetDecisionEvent({ action: 'none', reason: 'guard:allowlist', src: '198.18.9.9', family: 4, origin: 'cscli', scenario: 'manual' }))
    metrics.event(errorEvent({ responder: 'nftables', error: new Error('nft: boom') }))
    metrics.event(fleetEvent({ op: 'unblocked', src: '198.18.9.8' }))
    sensor.kernelPackets = 16
    sensor.kernelDrops = 2
    fleet['fleet-push'].pushes = 7

    s = await scrape()
    expect(get(s, 'portanoia_hits_total', { proto: 'tcp', kind: 'syn', verified: 'false' })).toBe(3)
    expect(get(s, 'portanoia_hits_total', { proto: 'tcp', kind: 'connect', verified: 'true' })).toBe(1)
    expect(get(s, 'portanoia_hits_total', { proto: 'udp', kind: 'udp', verified: 'false' })).toBe(1)
    expect(get(s, 'portanoia_hits_total', { proto: 'tcp', kind: 'odd-flags', verified: 'false' })).toBe(1)
    expect(get(s, 'portanoia_decisions_total', { source: 'local', action: 'block', reason: 'blocked' })).toBe(1)
    expect(get(s, 'portanoia_decisions_total', { source: 'local', action: 'none', reason: 'guard:gateway' })).toBe(1)
    expect(get(s, 'portanoia_decisions_total', { source: 'fleet', action: 'none', reason: 'guard:allowlist' })).toBe(1)
    expect(get(s, 'portanoia_responder_errors_total', { responder: 'nftables' })).toBe(1)
    expect(get(s, 'portanoia_fleet_unblocked_total')).toBe(1)
    expect(get(s, 'portanoia_kernel_packets_total')).toBe(16)
    expect(get(s, 'portanoia_kernel_drops_total')).toBe(2)
    expect(get(s, 'portanoia_fleet_pushes_total')).toBe(7)
    expect(get(s, 'portanoia_decision_latency_seconds_count')).toBe(2)
    expect(get(s, 'portanoia_decision_latency_seconds_bucket', { le: '0.005' })).toBe(2)
    expect(get(s, 'portanoia_decision_latency_seconds_bucket', { le: '0.001' })).toBe(1)

    // Only /metrics; GET and HEAD only.
    expect((await fetch(server.url.replace('/metrics', '/'))).status).toBe(404)
    expect((await fetch(server.url, { method: 'POST' })).status).toBe(405)
    const head = await fetch(server.url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(await head.text()).toBe('')
  })

  it('a source that throws keeps its last values; a new source after detach counts on', async () => {
    const metrics = new Metrics({ defaultMetrics: false })
    let packets = 5
    let broken = false
    const detach = metrics.attach({
      sensor: () => {
        if (broken) throw new Error('closed')
        return { kernelPackets: packets, kernelDrops: 0, ringDrops: 0 }
      },
    })
    const value = async (): Promise<number | undefined> => get(parse(await metrics.text()).samples, 'portanoia_kernel_packets_total')
    expect(await value()).toBe(5)
    broken = true
    expect(await value()).toBe(5)
    broken = false
    packets = 9
    detach()
    await new Promise((r) => setTimeout(r, 10))
    expect(await value()).toBe(9)
    // A second daemon on the same Metrics starts its counters from zero: the series grows by all of them.
    metrics.attach({ sensor: () => ({ kernelPackets: 4, kernelDrops: 0, ringDrops: 0 }) })
    expect(await value()).toBe(13)
  })

  it('follows the naming conventions: portanoia_ prefix, _total counters, base units, help on every series', async () => {
    const metrics = new Metrics()
    const { types, help } = parse(await metrics.text())
    const ours = [...types.keys()].filter((n) => !n.startsWith('process_') && !n.startsWith('nodejs_'))
    expect(ours.length).toBeGreaterThanOrEqual(14)
    for (const name of ours) {
      expect(name).toMatch(/^portanoia_[a-z0-9_]+$/)
      expect(help.get(name)?.length ?? 0).toBeGreaterThan(10)
      if (types.get(name) === 'counter') expect(name).toMatch(/_total$/)
      else expect(name).not.toMatch(/_total$/)
      if (types.get(name) === 'histogram') expect(name).toMatch(/_seconds$/)
      expect(name).not.toMatch(/_(ms|milliseconds|count)$/)
    }
    for (const name of [
      'portanoia_hits_total',
      'portanoia_kernel_packets_total',
      'portanoia_kernel_drops_total',
      'portanoia_ring_drops_total',
      'portanoia_decisions_total',
      'portanoia_active_blocks',
      'portanoia_responder_errors_total',
      'portanoia_decision_latency_seconds',
      'portanoia_fleet_pushes_total',
      'portanoia_fleet_pulls_total',
      'portanoia_fleet_failures_total',
    ]) {
      expect(types.has(name), name).toBe(true)
    }
    expect(types.get('process_cpu_seconds_total')).toBe('counter')
  })

  it('refuses to start when the port is taken, and close() is idempotent', async () => {
    const a = await serveMetrics(new Metrics({ defaultMetrics: false }), { host: '127.0.0.1', port: 0 })
    servers.push(a)
    await expect(serveMetrics(new Metrics({ defaultMetrics: false }), { host: '127.0.0.1', port: a.port })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    })
    await a.close()
    await a.close()
  })
})

describe('contrib/grafana-portanoia.json', () => {
  interface Panel {
    id: number
    type: string
    title: string
    targets?: Array<{ expr: string }>
  }

  /** Every series name a scrape can return: metric names, plus a histogram's _bucket/_sum/_count. */
  function exposedNames(metrics: Metrics): Set<string> {
    const names = new Set<string>()
    for (const m of metrics.registry.getMetricsAsArray()) {
      names.add(m.name)
      const type = (m as unknown as { type?: string }).type
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`)
      if (type === 'summary') for (const s of ['_sum', '_count']) names.add(`${m.name}${s}`)
    }
    return names
  }

  /** Identifiers in a PromQL expression that are metric names: not label names, functions, keywords or variables. */
  function metricNames(expr: string): string[] {
    const stripped = expr
      .replace(/\{[^}]*\}/g, ' ') // label matchers
      .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // grouping label lists
      .replace(/\[[^\]]*\]/g, ' ') // ranges
      .replace(/"[^"]*"/g, ' ')
      .replace(/\$\w+/g, ' ')
    const out: string[] = []
    for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?/g)) {
      if (m[1] !== undefined) continue // a function call
      const word = m[0]
      if (['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan'].includes(word.toLowerCase())) continue
      out.push(word)
    }
    return out
  }

  it('queries only metrics the registry exposes, in every panel and variable', async () => {
    const doc = JSON.parse(await readFile(join(import.meta.dirname, '../../contrib/grafana-portanoia.json'), 'utf8')) as {
      panels: Panel[]
      templating: { list: Array<{ type: string; query?: string }> }
      uid: string
    }
    const exposed = exposedNames(new Metrics())
    const used = new Set<string>()
    const ids = new Set<number>()
    const dataPanels = doc.panels.filter((p) => p.type !== 'row')
    expect(dataPanels.length).toBeGreaterThanOrEqual(12)
    for (const p of doc.panels) {
      expect(ids.has(p.id), `duplicate panel id ${p.id}`).toBe(false)
      ids.add(p.id)
    }
    for (const p of dataPanels) {
      expect(p.targets?.length ?? 0, `panel ${p.title} has no query`).toBeGreaterThan(0)
      for (const t of p.targets ?? []) {
        const names = metricNames(t.expr)
        expect(names.length, `${p.title}: ${t.expr} names no metric`).toBeGreaterThan(0)
        for (const n of names) {
          expect(exposed.has(n), `${p.title}: ${n} is not exposed by the registry`).toBe(true)
          used.add(n)
        }
      }
    }
    for (const v of doc.templating.list) {
      if (v.type !== 'query' || v.query === undefined) continue
      const inner = /label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(v.query)
      if (inner !== null) expect(exposed.has(inner[1]!), `variable query ${v.query}`).toBe(true)
    }
    // Every portanoia metric has a place on the dashboard.
    const ours = [...exposed].filter((n) => n.startsWith('portanoia_') && !/_(bucket|sum|count)$/.test(n))
    for (const n of ours) {
      const shown = [...used].some((u) => u === n || u.startsWith(`${n}_`))
      expect(shown, `${n} is on no panel`).toBe(true)
    }
  })

  it('the checker itself catches a misspelt metric', () => {
    const exposed = exposedNames(new Metrics({ defaultMetrics: false }))
    const names = metricNames('sum by (kind) (rate(portanoia_hit_total{instance=~"$instance"}[5m]))')
    expect(names).toEqual(['portanoia_hit_total'])
    expect(exposed.has(names[0]!)).toBe(false)
  })
})
