/**
 * The hit-throughput section (issue 4, "What it measures" 2): SYN floods at the
 * sender-alone ceiling and at 25/50/75 % of it, and what each receiver delivers to its
 * consumer, what it loses and the CPU it uses — portanoia, portanoia with an
 * accept-all kernel program, the AF_INET SOCK_RAW baseline, AF_PACKET + cBPF with
 * recvmmsg (no ring), and libpcap through the npm `cap` package. The procedure and the
 * per-trial arithmetic are bench/e2e.ts's; this module picks the configurations,
 * gets `cap` (bench/cap.ts), turns the result into a SectionResult (bench/section.ts)
 * with charts, and judges the targets. Runs on the bench's main thread.
 */
import { prepareCap } from './cap.js'
import { runE2e, type ConfigSummary, type E2eConfig, type E2eResult, type ReceiverKind, type SensorVariant } from './e2e.js'
import type { ChartSpec, SectionOptions, SectionResult, SectionTarget } from './section.js'
import { fmt, pct, ratio, si, summarize, type Summary } from './stats.js'

/** A receiver under test: its label in every table and chart, and how it is started. */
export interface ReceiverSpec {
  label: string
  receiver: Exclude<ReceiverKind, 'none'>
  sensor?: SensorVariant
}

/** The physical-limit baseline every other receiver's figures are divided by, round by round. */
export const BASELINE_LABEL = 'C TPACKET_V3 reader'

export const RECEIVERS: readonly ReceiverSpec[] = [
  { label: BASELINE_LABEL, receiver: 'tpacket' },
  { label: 'portanoia', receiver: 'portanoia' },
  { label: 'portanoia (batches)', receiver: 'portanoia', sensor: { batches: true } },
  { label: 'portanoia (no kernel filter)', receiver: 'portanoia', sensor: { kernelFilter: false } },
  { label: 'raw socket', receiver: 'raw' },
  { label: 'AF_PACKET recvmmsg', receiver: 'afpacket' },
  { label: 'cap (libpcap)', receiver: 'cap' },
]

const RATES_FULL = [1, 0.75, 0.5, 0.25] as const
const RATES_QUICK = [1, 0.5] as const

const rateLabel = (fraction: number): string => (fraction === 1 ? 'ceiling' : `${Math.round(fraction * 100)} %`)
const configName = (r: ReceiverSpec, fraction: number): string => (fraction === 1 ? r.label : `${r.label} @${Math.round(fraction * 100)}%`)

/** Median of a per-round quantity over the trials of one config. */
function perTrial(e: E2eResult, config: string, f: (t: E2eResult['trials'][number]) => number): Summary {
  return summarize(e.trials.filter((t) => t.config === config && t.error === undefined).map(f))
}

export async function run(options: SectionOptions): Promise<SectionResult> {
  const { log } = options
  const base: SectionResult = { name: 'throughput', title: 'Hit throughput', ok: false, rows: [] }
  if (process.getuid?.() !== 0) {
    return { ...base, reason: 'needs root (network namespaces, AF_PACKET sockets): run `sudo npm run bench`' }
  }
  const warnings: string[] = []
  const cap = await prepareCap(log, options.install)
  if (!cap.ok) warnings.push(`cap (libpcap) receiver unavailable: ${cap.reason}`)
  else log(cap.note)
  const receivers = RECEIVERS.filter((r) => r.receiver !== 'cap' || cap.ok)
  const rates = options.quick ? RATES_QUICK : RATES_FULL
  // Order inside a round: the sender alone first (it sets the round's paced rates),
  // then rate by rate, every receiver at that rate.
  const configs: E2eConfig[] = [{ name: 'sender alone', receiver: 'none' }]
  for (const fraction of rates) {
    for (const r of receivers) {
      configs.push({
        name: configName(r, fraction),
        receiver: r.receiver,
        ...(fraction < 1 && { paced: fraction }),
        ...(r.sensor !== undefined && { sensor: r.sensor }),
      })
    }
  }
  let e: E2eResult
  try {
    e = await runE2e({
      rounds: options.rounds,
      seconds: options.seconds,
      ceilingRounds: options.quick ? 1 : 2,
      configs,
      ...(cap.ok && { capDir: cap.dir }),
      cores: options.cores,
      log,
    })
  } catch (err) {
    return { ...base, reason: `end-to-end run failed: ${(err as Error).message}`, warnings }
  }

  const byName = new Map(e.configs.map((c) => [c.name, c]))
  for (const c of e.configs) {
    if (c.trials === 0) warnings.push(`${c.name}: no trial completed: ${c.errors.join('; ')}`)
    else if (c.errors.length > 0) warnings.push(`${c.name}: ${c.errors.length} failed trial(s): ${c.errors.join('; ')}`)
  }
  const alone = byName.get('sender alone')
  const ceiling = alone?.offeredPps ?? e.ceilingPps

  const rows: SectionResult['rows'] = []
  const blank = { 'delivered hits/s': '', delivered: '', 'counted drops': '', missing: '', CPU: '', 'CPU ns/hit': '', 'of it JS / capture / other': '', 'offered ÷ C': '', 'CPU ns/hit ÷ C': '' }
  rows.push({ receiver: 'sender alone', rate: 'ceiling', 'offered pps': fmt(ceiling), ...blank })
  for (const fraction of rates) {
    for (const r of receivers) {
      const c = byName.get(configName(r, fraction))
      if (c === undefined || c.trials === 0) {
        rows.push({ receiver: r.label, rate: rateLabel(fraction), 'offered pps': 'unavailable', ...blank })
        continue
      }
      rows.push({
        receiver: r.label,
        rate: fraction === 1 ? 'ceiling (unpaced)' : `${rateLabel(fraction)} (${si(c.targetPps)} pps)`,
        'offered pps': fmt(c.offeredPps),
        'delivered hits/s': fmt(c.deliveredPps),
        delivered: fmt(c.deliveredFraction, pct),
        'counted drops': r.receiver === 'cap' ? 'n/a' : fmt(c.loss),
        missing: fmt(c.missing),
        CPU: fmt(c.receiverCpu, pct),
        'CPU ns/hit': fmt(c.cpuNsPerHit, (x) => x.toFixed(0)),
        // The receiver's threads: portanoia's JS thread, its capture thread, V8's helpers and the rest.
        'of it JS / capture / other':
          r.receiver === 'portanoia'
            ? [c.threadNsPerHit.main, c.threadNsPerHit.capture, c.threadNsPerHit.other].map((v) => v.median.toFixed(0)).join(' / ')
            : '',
        'offered ÷ C': c.vsBaseline === undefined ? '' : fmt(c.vsBaseline.offeredPps, ratio),
        'CPU ns/hit ÷ C': c.vsBaseline === undefined ? '' : fmt(c.vsBaseline.cpuNsPerHit, ratio),
      })
    }
  }

  const chart = (id: string, title: string, unit: string, format: ChartSpec['format'], pick: (c: ConfigSummary) => Summary, reference?: ChartSpec['reference']): ChartSpec => ({
    id,
    title,
    unit,
    format,
    ...(reference !== undefined && { reference }),
    groups: rates.map((fraction) => ({
      label: rateLabel(fraction),
      bars: receivers.map((r) => {
        const c = byName.get(configName(r, fraction))
        return { label: r.label, value: c !== undefined ? pick(c) : summarize([]) }
      }),
    })),
  })
  const charts: ChartSpec[] = [
    chart('delivered', 'Hits delivered to the consumer, fraction of packets sent', 'delivered / sent', 'percent', (c) => c.deliveredFraction, { value: 0.999, label: '99.9 %' }),
    chart('cpu', 'Receiver CPU (all threads), fraction of one core', 'CPU / core', 'percent', (c) => c.receiverCpu, { value: 0.25, label: '25 % of a core' }),
    chart('offered', 'Offered rate with the receiver attached (kernel receive work runs on the sender core)', 'packets/s', 'si', (c) => c.offeredPps),
    chart('ns-per-hit', 'Receiver CPU per delivered hit (all threads)', 'ns/hit', undefined, (c) => c.cpuNsPerHit, { value: FOR_AWAIT_NS_TARGET, label: `${FOR_AWAIT_NS_TARGET} ns (for await target)` }),
  ]

  // Ratios within a round: each unpaced receiver against the C reader and the sender alone.
  const ratios: NonNullable<SectionResult['ratios']> = []
  for (const r of receivers) {
    const c = byName.get(configName(r, 1))
    if (c?.vsBaseline !== undefined) {
      const b = c.vsBaseline
      ratios.push({ name: `CPU ns/hit at the ceiling: ${r.label} / ${BASELINE_LABEL}`, value: b.cpuNsPerHit })
      ratios.push({ name: `offered rate at the ceiling: ${r.label} / ${BASELINE_LABEL}`, value: b.offeredPps })
      ratios.push({ name: `delivered hits/s at the ceiling: ${r.label} / ${BASELINE_LABEL}`, value: b.deliveredPps })
    }
    if (c?.offeredVsCeiling !== undefined) ratios.push({ name: `offered rate at the ceiling: ${r.label} / sender alone`, value: c.offeredVsCeiling })
  }

  const targets = judge(e, ceiling.median, receivers)
  return {
    ...base,
    ok: e.configs.some((c) => c.receiver !== 'none' && c.trials > 0),
    ...(e.configs.every((c) => c.receiver === 'none' || c.trials === 0) && { reason: 'no receiver completed a trial' }),
    rows,
    ratios,
    charts,
    targets,
    warnings,
    notes: [
      `${e.rounds} interleaved round(s) × ${e.seconds} s per trial; sender pinned to core ${e.cores.sender}, receivers to core ${e.cores.receiver}; pool of ${e.pool} SYN frames from distinct sources.`,
      'Paced rates are fractions of the sender-alone trial of the same round. veth delivers in softirq on the sending core, so a receiver\'s kernel work lowers the offered rate instead of showing in its CPU: compare offered pps.',
      '"counted drops" is what the receiver itself reports (portanoia: kernel ring + SPSC ring; raw/AF_PACKET: socket drops); cap exposes no pcap_stats(), so its loss shows only in "missing" (sent − delivered).',
    ],
    details: e,
  }
}

/** Issue 9's targets: CPU per hit for the two ways of reading, and the kernel side. */
export const FOR_AWAIT_NS_TARGET = 120
export const BATCHES_NS_TARGET = 70
export const OFFERED_VS_C_TARGET = 0.95

/** Issue 9's hit-throughput targets, then issue 4's that still apply. */
function judge(e: E2eResult, ceilingPps: number, receivers: readonly ReceiverSpec[]): SectionTarget[] {
  const out: SectionTarget[] = []
  const atCeiling = (name: string): E2eResult['trials'] => e.trials.filter((t) => t.config === name && t.error === undefined)
  for (const [label, limit] of [['portanoia', FOR_AWAIT_NS_TARGET], ['portanoia (batches)', BATCHES_NS_TARGET]] as const) {
    const c = e.configs.find((x) => x.name === label)
    if (c === undefined || c.trials === 0) continue
    const trials = atCeiling(label)
    const clean = trials.filter((t) => t.loss === 0 && t.missing <= 0)
    const vs = c.vsBaseline
    out.push({
      statement: `${label === 'portanoia' ? 'a `for await` consumer' : 'a `batches()` consumer'} costs ≤ ${limit} ns of sensor-process CPU per hit at the generator's ceiling, with 0 drops`,
      met: c.cpuNsPerHit.median <= limit && clean.length === trials.length,
      measured: `${fmt(c.cpuNsPerHit, (x) => x.toFixed(0))} ns/hit${vs !== undefined ? ` (${fmt(vs.cpuNsPerHit, ratio)} of the ${BASELINE_LABEL}'s in the same round)` : ''}, of it the JS thread ${c.threadNsPerHit.main.median.toFixed(0)} and the capture thread ${c.threadNsPerHit.capture.median.toFixed(0)}, at ${fmt(c.offeredPps)} pps; ${clean.length} of ${trials.length} rounds without a drop or a missing hit`,
      note: 'judged on the median over rounds',
    })
  }
  const pn = e.configs.find((c) => c.name === 'portanoia')
  if (pn?.vsBaseline !== undefined) {
    out.push({
      statement: `the offered rate with the sensor attached is ≥ ${OFFERED_VS_C_TARGET}× the ${BASELINE_LABEL}'s at the ceiling`,
      met: pn.vsBaseline.offeredPps.median >= OFFERED_VS_C_TARGET,
      measured: `${fmt(pn.vsBaseline.offeredPps, ratio)} (portanoia ${fmt(pn.offeredPps)} pps)`,
      note: 'per-round ratio; veth receive work, the AF_PACKET copy included, runs on the sender core, so the kernel side shows here',
    })
  }
  if (pn !== undefined && pn.trials > 0) {
    const nsPerHit = pn.cpuNsPerHit.median
    const projected = (nsPerHit * ceilingPps) / 1e9
    out.push({
      statement: 'issue 4: portanoia at the sender-alone ceiling uses < 25 % of a core (CPU ns/hit × ceiling rate)',
      met: projected < 0.25,
      measured: `${nsPerHit.toFixed(0)} ns/hit × ${si(ceilingPps)} pps = ${pct(projected)} of a core`,
      note: 'a projection: with the sensor attached the sender cannot reach its own ceiling on this machine, so the ceiling is never offered to it',
    })
  }
  for (const label of ['raw socket', 'cap (libpcap)']) {
    if (!receivers.some((r) => r.label === label)) {
      out.push({ statement: `issue 4: ${label} loses packets at the ceiling`, met: false, measured: 'not measured (receiver unavailable)' })
      continue
    }
    const c = e.configs.find((x) => x.name === label)
    if (c === undefined || c.trials === 0) continue
    const lost = perTrial(e, label, (t) => (t.sent > 0 ? t.missing / t.sent : Number.NaN))
    out.push({
      statement: `issue 4: ${label} loses packets at the ceiling`,
      met: lost.median > 0,
      measured: `missing ${fmt(lost, pct)} of sent (${fmt(c.missing)} packets), delivered ${fmt(c.deliveredFraction, pct)}`,
    })
  }
  return out
}
