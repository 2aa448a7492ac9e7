/**
 * Issue 4 §5, blocking, as a bench section: how fast bans can be added, and what a
 * full block table costs the traffic that is not banned. It owns the procedure and the
 * arithmetic; bench/blocking-worker.ts adds the bans (inside the namespace), bench/
 * e2e-sender.ts generates the traffic, bench/net.ts owns namespaces and processes.
 *
 * Part 1, new bans per second: the same addresses banned (a) through the project's
 * NftablesResponder in batches of 256 and of 4096 and (b) with one `nft add element`
 * process per address, the peers' way; interleaved per round, each from an absent
 * table, each checked afterwards by reading the set back.
 *
 * Part 2, cost of the block table: in a fresh pair of namespaces per trial (so no
 * firewall state outlives it, and nothing is ever cleaned up with a broad command),
 * the sensor namespace gets no bans, 100,000 addresses in portanoia's nft set, or
 * the same addresses as 100,000 `iptables -A INPUT -s ADDR -j DROP` rules (one
 * iptables-restore, the original tool's way). The sender, pinned to its core, then
 * sends unpaced SYNs from 1024 sources that are none of the banned ones to a closed,
 * non-tripwire port, and the sensor namespace's Ip InDelivers counter (packets that
 * came through the input hook to TCP) over the sender's time is the delivered rate.
 * The veth's receive work, netfilter included, runs in softirq on the sending core, so
 * a costly table shows up as a lower delivered rate. Ratios are taken within a round.
 * Runs on the bench's main thread, one trial at a time; every nft / iptables command
 * runs inside a bench namespace (a worker started there, or netnsRun).
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { NftablesResponder } from '../lib/responders/nftables.js'
import { netnsRun } from '../lib/responders/run.js'
import type { BlockRequest } from '../lib/responders/types.js'
import { ipv4Bans, poolSources } from './addresses.js'
import { createBenchNet, linkCounters, PinnedChild, type BenchNet } from './net.js'
import type { ChartSpec, SectionOptions, SectionRatio, SectionResult, SectionSummary, SectionTarget } from './section.js'
import { runStandalone } from './standalone.js'
import { fmt, si, summarize } from './stats.js'
import { buildSynPool } from './traffic.js'

const execFileAsync = promisify(execFile)
const SENDER_JS = fileURLToPath(new URL('./e2e-sender.js', import.meta.url))
const WORKER_JS = fileURLToPath(new URL('./blocking-worker.js', import.meta.url))
/** Closed on the sensor and not a tripwire: the traffic is ordinary, unbanned packets. */
const TRAFFIC_PORT = 8080
const TRAFFIC_POOL = 1024
const TABLE_TARGET = 0.85

export interface BlockingOptions extends SectionOptions {
  /** Addresses per batched trial. Default 10,000 (quick 2,000). */
  batchedCount?: number
  /** Addresses per one-process-per-address trial. Default 1,000 (quick 200). */
  perProcessCount?: number
  /** Bans in the table-cost trials. Default 100,000 (quick 20,000). */
  tableBans?: number
}

interface RateTrial {
  method: string
  round: number
  count: number
  seconds: number
  bansPerSecond: number
  processes: number
  inSet: number
  failed: number
  error?: string
}

type TableConfig = 'none' | 'nft' | 'iptables'

interface TableTrial {
  config: TableConfig
  round: number
  bans: number
  loadSeconds: number
  /** Bans found in the kernel after loading (set elements or INPUT rules). */
  verified: number
  sent: number
  senderSeconds: number
  offeredPps: number
  vethRx: number
  delivered: number
  deliveredPps: number
  error?: string
}

function num(record: Record<string, unknown>, key: string): number {
  const v = record[key]
  return typeof v === 'number' ? v : 0
}

/** The `Ip: InDelivers` counter of namespace `ns` (/proc/net/snmp is per namespace). */
async function ipInDelivers(ns: string): Promise<number> {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'], { timeout: 10_000 })
  const ip = stdout.split('\n').filter((l) => l.startsWith('Ip:'))
  const names = (ip[0] ?? '').split(/\s+/)
  const values = (ip[1] ?? '').split(/\s+/)
  const i = names.indexOf('InDelivers')
  const v = i >= 0 ? Number(values[i]) : Number.NaN
  if (!Number.isFinite(v)) throw new Error('cannot read Ip InDelivers from /proc/net/snmp')
  return v
}

// ---------------------------------------------------------------------- part 1

async function rateTrials(o: SectionOptions, net: BenchNet, batchedCount: number, perProcessCount: number): Promise<RateTrial[]> {
  const methods = [
    { method: 'NftablesResponder, batches of 256', cmd: { cmd: 'batched', count: batchedCount, batch: 256 } },
    { method: 'NftablesResponder, batches of 4096', cmd: { cmd: 'batched', count: batchedCount, batch: 4096 } },
    { method: 'one nft process per address', cmd: { cmd: 'perproc', count: perProcessCount } },
  ]
  const out: RateTrial[] = []
  const worker = new PinnedChild('blocking worker', net.sensorNs, o.cores.receiver, [process.execPath, WORKER_JS])
  try {
    await worker.next()
    for (let r = 0; r < o.rounds && !net.aborted; r++) {
      for (const m of methods) {
        const t: RateTrial = { method: m.method, round: r, count: m.cmd.count, seconds: 0, bansPerSecond: Number.NaN, processes: 0, inSet: 0, failed: 0 }
        try {
          const res = await worker.ask(JSON.stringify(m.cmd), 600_000)
          if (typeof res.error === 'string') throw new Error(res.error)
          t.seconds = num(res, 'seconds')
          t.processes = num(res, 'processes')
          t.inSet = num(res, 'inSet')
          t.failed = num(res, 'failed')
          // A ban counts only if the set holds it afterwards.
          t.bansPerSecond = t.inSet / t.seconds
          if (t.inSet < t.count) t.error = `${t.count - t.inSet} of ${t.count} not in the set afterwards${typeof res.firstError === 'string' ? `: ${res.firstError}` : ''}`
        } catch (err) {
          t.error = (err as Error).message
        }
        out.push(t)
        o.log(`blocking: round ${r + 1}/${o.rounds} ${m.method}: ${t.error ?? `${si(t.bansPerSecond)} bans/s (${t.count} in ${t.seconds.toFixed(2)} s, ${t.processes} nft runs)`}`)
      }
    }
    worker.send('quit')
  } finally {
    await worker.end()
  }
  return out
}

// ---------------------------------------------------------------------- part 2

/** `iptables --version` as read inside a bench namespace: which backend the comparison used. */
let iptablesVersion: string | undefined

async function loadTable(net: BenchNet, config: TableConfig, bans: readonly string[]): Promise<number> {
  const inNs = netnsRun(net.sensorNs)
  if (config === 'nft') {
    const responder = new NftablesResponder({ run: inNs })
    await responder.start()
    const requests: BlockRequest[] = bans.map((address) => ({ address, family: 4, ttlMs: 3_600_000 }))
    const r = await responder.block(requests)
    if (r.failed.length > 0) throw new Error(`nft: ${r.failed.length} bans failed: ${r.failed[0]!.error}`)
    return (await responder.list()).length
  }
  if (config === 'iptables') {
    const lines = ['*filter', ':INPUT ACCEPT [0:0]', ...bans.map((a) => `-A INPUT -s ${a}/32 -j DROP`), 'COMMIT', '']
    const r = await inNs('iptables-restore', [], lines.join('\n'))
    if (r.code !== 0) throw new Error(`iptables-restore exited with ${r.code}: ${r.stderr.trim().split('\n')[0] ?? ''}`)
    const s = await inNs('iptables', ['-S', 'INPUT'])
    if (s.code !== 0) throw new Error(`iptables -S exited with ${s.code}: ${s.stderr.trim()}`)
    const v = await inNs('iptables', ['--version'])
    if (v.code === 0) iptablesVersion = v.stdout.trim()
    return s.stdout.split('\n').filter((l) => l.startsWith('-A INPUT')).length
  }
  return 0
}

async function tableTrial(o: SectionOptions, config: TableConfig, round: number, bans: readonly string[]): Promise<TableTrial> {
  const t: TableTrial = {
    config, round, bans: config === 'none' ? 0 : bans.length, loadSeconds: 0, verified: 0,
    sent: 0, senderSeconds: 0, offeredPps: 0, vethRx: 0, delivered: 0, deliveredPps: Number.NaN,
  }
  let net: BenchNet | undefined
  let sender: PinnedChild | undefined
  try {
    // Fresh namespaces: whatever a trial loads disappears with them.
    net = await createBenchNet()
    const t0 = performance.now()
    t.verified = await loadTable(net, config, bans)
    t.loadSeconds = (performance.now() - t0) / 1000
    if (t.verified !== t.bans) throw new Error(`${t.verified} of ${t.bans} bans in the kernel after loading`)
    sender = new PinnedChild('table sender', net.attackerNs, o.cores.sender, [
      process.execPath, SENDER_JS,
      '--interface', net.attackerIf,
      '--dst', net.sensorIpv4,
      '--dst-mac', net.sensorMac,
      '--src-mac', net.attackerMac,
      '--port', String(TRAFFIC_PORT),
      '--pool', String(TRAFFIC_POOL),
      '--seconds', String(o.seconds),
      '--pps', '0',
    ])
    await sender.next(60_000)
    const d0 = await ipInDelivers(net.sensorNs)
    const v0 = await linkCounters(net.sensorNs, net.sensorIf)
    sender.send('go')
    const sent = await sender.next(o.seconds * 1000 + 60_000)
    // Let the backlog the softirq still holds reach the counters.
    await new Promise((resolve) => setTimeout(resolve, 200))
    const d1 = await ipInDelivers(net.sensorNs)
    const v1 = await linkCounters(net.sensorNs, net.sensorIf)
    t.sent = num(sent, 'sent')
    t.senderSeconds = num(sent, 'elapsedNs') / 1e9
    t.offeredPps = t.sent / t.senderSeconds
    t.vethRx = v1.rxPackets - v0.rxPackets
    t.delivered = d1 - d0
    t.deliveredPps = t.delivered / t.senderSeconds
  } catch (err) {
    t.error = (err as Error).message
  } finally {
    await sender?.end()
    await net?.destroy()
  }
  return t
}

/** Ratio a/b of f, per round where both trials succeeded. */
function roundRatios<T extends { round: number; error?: string }>(trials: readonly T[], isA: (t: T) => boolean, isB: (t: T) => boolean, f: (t: T) => number): SectionSummary {
  const base = new Map<number, T>()
  for (const t of trials) if (isB(t) && t.error === undefined) base.set(t.round, t)
  const values: number[] = []
  for (const t of trials) {
    const b = base.get(t.round)
    if (isA(t) && t.error === undefined && b !== undefined) values.push(f(t) / f(b))
  }
  return summarize(values)
}

const ok = <T extends { error?: string }>(ts: readonly T[]): T[] => ts.filter((t) => t.error === undefined)
const ratioText = (s: SectionSummary): string => fmt(s, (x) => `${x.toFixed(x < 0.1 ? 4 : 2)}×`)

export async function run(options: BlockingOptions): Promise<SectionResult> {
  const base: SectionResult = { name: 'blocking', title: 'Blocking: ban rate and block-table cost', ok: false, rows: [] }
  if (process.getuid?.() !== 0) {
    return { ...base, reason: 'the blocking benchmark needs root (network namespaces, nft, iptables): run `sudo npm run bench`' }
  }
  const log = options.log
  const rounds = Math.max(1, options.rounds)
  const o: SectionOptions = { ...options, rounds }
  const batchedCount = options.batchedCount ?? (options.quick ? 2000 : 10_000)
  const perProcessCount = options.perProcessCount ?? (options.quick ? 200 : 1000)
  const tableBans = options.tableBans ?? (options.quick ? 20_000 : 100_000)
  const warnings: string[] = []

  // Part 1.
  let rates: RateTrial[] = []
  let net: BenchNet | undefined
  try {
    net = await createBenchNet()
    log(`blocking: ban rate in ${net.sensorNs}, worker on core ${o.cores.receiver}`)
    rates = await rateTrials(o, net, batchedCount, perProcessCount)
  } catch (err) {
    warnings.push(`ban rate not measured: ${(err as Error).message}`)
  } finally {
    await net?.destroy()
  }

  // Part 2. The sender's sources, so that no banned address is one of them.
  const pool = buildSynPool({ count: TRAFFIC_POOL, dst: '198.18.0.1', dstPort: TRAFFIC_PORT, dstMac: '02:00:00:00:00:01', srcMac: '02:00:00:00:00:02' })
  const bans = ipv4Bans(tableBans, poolSources(pool))
  const configs: TableConfig[] = ['none', 'nft', 'iptables']
  const tables: TableTrial[] = []
  let aborted = false
  const onSignal = (): void => {
    aborted = true
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    for (let r = 0; r < rounds && !aborted; r++) {
      for (const c of configs) {
        if (aborted) break
        const t = await tableTrial(o, c, r, bans)
        tables.push(t)
        log(`blocking: round ${r + 1}/${rounds} table ${c}: ${t.error ?? `loaded ${t.bans} in ${t.loadSeconds.toFixed(1)} s; offered ${si(t.offeredPps)} pps, delivered ${si(t.deliveredPps)} pps`}`)
      }
    }
  } finally {
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  }
  if (aborted) return { ...base, reason: 'interrupted', details: { rates, tables } }

  const rows: SectionResult['rows'] = []
  const ratios: SectionRatio[] = []
  const charts: ChartSpec[] = []
  const targets: SectionTarget[] = []
  const perProc = 'one nft process per address'
  const rateBars: ChartSpec['groups'][number]['bars'] = []
  for (const method of [...new Set(rates.map((t) => t.method))]) {
    const ts = rates.filter((t) => t.method === method)
    for (const t of ts) if (t.error !== undefined) warnings.push(`${method} round ${t.round + 1}: ${t.error}`)
    const rate = summarize(ok(ts).map((t) => t.bansPerSecond))
    const vs = method === perProc ? undefined : roundRatios(rates, (t) => t.method === method, (t) => t.method === perProc, (t) => t.bansPerSecond)
    rows.push({
      measure: 'new bans per second',
      configuration: method,
      addresses: ts[0]?.count ?? 0,
      value: `${fmt(rate)} bans/s`,
      'nft runs': ts[0] !== undefined && ts[0].error === undefined ? ts[0].processes : '',
      'vs baseline': vs !== undefined ? `${ratioText(vs)} of per-process` : 'baseline',
    })
    if (vs !== undefined) ratios.push({ name: `ban rate: ${method} / one nft process per address`, value: vs })
    rateBars.push({ label: method, value: rate })
  }
  if (rateBars.length > 0) charts.push({ id: 'ban-rate', title: 'New bans per second', unit: 'bans/s', format: 'si', groups: [{ label: 'nft', bars: rateBars }], log: true })

  const labels: Record<TableConfig, string> = {
    none: 'no bans',
    nft: `${si(tableBans)} bans in portanoia's nft set`,
    iptables: `${si(tableBans)} iptables DROP rules (iptables-restore)`,
  }
  const tableBars: ChartSpec['groups'][number]['bars'] = []
  let nftRatio: SectionSummary | undefined
  for (const c of configs) {
    const ts = tables.filter((t) => t.config === c)
    for (const t of ts) if (t.error !== undefined) warnings.push(`table ${c} round ${t.round + 1}: ${t.error}`)
    const vs = c === 'none' ? undefined : roundRatios(tables, (t) => t.config === c, (t) => t.config === 'none', (t) => t.deliveredPps)
    rows.push({
      measure: 'packets delivered through the input hook',
      configuration: labels[c],
      addresses: c === 'none' ? 0 : tableBans,
      value: `${fmt(summarize(ok(ts).map((t) => t.deliveredPps)))} pps (offered ${fmt(summarize(ok(ts).map((t) => t.offeredPps)))})`,
      'nft runs': '',
      'vs baseline': vs !== undefined ? `${ratioText(vs)} of no bans` : 'baseline',
    })
    if (vs !== undefined) {
      ratios.push({ name: `delivered pps: ${labels[c]} / no bans`, value: vs })
      tableBars.push({ label: labels[c], value: vs })
      if (c === 'nft') nftRatio = vs
    }
  }
  if (tableBars.length > 0) {
    charts.push({ id: 'table-cost', title: 'Unbanned traffic delivered with a full block table, relative to no bans', unit: '× of no bans', format: 'ratio', groups: [{ label: `${si(tableBans)} bans`, bars: tableBars }], reference: { value: TABLE_TARGET, label: `target ≥ ${TABLE_TARGET}×` }, log: true })
  }
  if (nftRatio !== undefined && nftRatio.n > 0) {
    targets.push({
      statement: `${si(tableBans)} bans ≥ ${TABLE_TARGET}× of no bans`,
      met: nftRatio.median >= TABLE_TARGET,
      measured: `${ratioText(nftRatio)} of the no-ban delivered rate`,
      ...(tableBans !== 100_000 && { note: `quick mode loads ${si(tableBans)} bans, not the 100k of the target` }),
    })
  }

  const anyRate = rates.some((t) => t.error === undefined)
  const anyTable = tables.some((t) => t.error === undefined)
  const result: SectionResult = {
    ...base,
    ok: anyRate || anyTable,
    rows,
    ratios,
    charts,
    targets,
    details: { batchedCount, perProcessCount, tableBans, iptablesVersion, rates, tables },
    notes: [
      `${rounds} interleaved rounds; median [min..max] over rounds; ratios are taken within a round.`,
      `Ban rate: a worker inside the namespace, pinned to core ${o.cores.receiver} (nft inherits it), starts nft directly; each trial starts from an absent table, times only the adding, and counts a ban only if \`nft -j list set\` shows it afterwards. Batched trials ban ${batchedCount} addresses, per-process trials ${perProcessCount} (the same first ones, fewer so a round stays short); a rate is per address either way.`,
      `Table cost: fresh namespaces per trial; ${si(tableBans)} addresses in 198.18.0.0/15, none of them one of the sender's ${TRAFFIC_POOL} sources; unpaced SYNs to closed port ${TRAFFIC_PORT} for ${o.seconds} s from core ${o.cores.sender}; delivered = Ip InDelivers of the sensor namespace over the sender's time. iptables is the installed one (${iptablesVersion ?? 'version not read'}); with the nf_tables backend its rules are still a chain evaluated one by one.`,
    ],
  }
  if (warnings.length > 0) result.warnings = warnings
  if (!result.ok) result.reason = `nothing measured: ${warnings.slice(0, 3).join('; ')}`
  return result
}

/** `node dist/bench/blocking.js [--quick] [--rounds N] [--seconds S] [--json]`: this section alone. */
if (process.argv[1] === fileURLToPath(import.meta.url)) await runStandalone(run)
