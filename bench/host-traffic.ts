/**
 * The host-traffic section (issue 4, "What it measures" 3): what running a receiver
 * costs the host's real traffic. In one `pnperf-` namespace pair it measures, for no
 * receiver and for each receiver of the throughput section: iperf3 bulk TCP from the
 * attacker namespace to the sensor namespace (veth's default offloads: TSO and GSO
 * on, GRO off), the same with TSO/GSO/GRO off on both veth ends (one skb per segment,
 * so a sniffer sees ~45× more packets for the same bytes; the offloads are put back
 * as they were), and an unpaced SYN flood to a port that is NOT a tripwire (a
 * receiver that filters in the kernel never sees it; one that filters in user space
 * pays for every packet). Each figure is a ratio to the no-receiver trial of the same
 * round; receivers are interleaved, the order rotated by one each round. One receiver
 * process per receiver and round runs all three tests. The target is met only when
 * every test it lists meets it. Runs on the bench's main thread; every child
 * (receiver, iperf3 server, sender) is a PinnedChild, ended by PID, and the
 * namespaces are deleted on every path out (bench/net.ts).
 */
import { execFile } from 'node:child_process'
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { removeScratch, scratchDir } from '../lib/lab/scratch.js'
import { prepareCap } from './cap.js'
import { prepareReceivers, receiverArgv, type E2eConfig, type ReceiverKit } from './e2e.js'
import { createBenchNet, cpuSeconds, PinnedChild, type BenchNet } from './net.js'
import type { ChartSpec, SectionOptions, SectionResult, SectionTarget } from './section.js'
import { fmt, pct, ratio, si, summarize, type Summary } from './stats.js'
import { BASELINE_LABEL, RECEIVERS, type ReceiverSpec } from './throughput.js'

const exec = promisify(execFile)
const SENDER_JS = fileURLToPath(new URL('./e2e-sender.js', import.meta.url))
const TRIPWIRE = 2222
/** The flood's destination: closed, not a tripwire. */
const OTHER_PORT = 9999
const TESTS = ['bulk', 'bulk, offloads off', 'SYN flood to a non-tripwire port'] as const
type Test = (typeof TESTS)[number]

interface Measurement {
  receiver: string
  round: number
  test: Test
  /** bits/s for iperf3, packets/s for the flood. */
  value: number
  /** Receiver CPU over the test, fraction of one core (NaN without a receiver). */
  receiverCpu: number
  error?: string
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function hasCommand(cmd: string): Promise<boolean> {
  for (const dir of ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/local/bin']) {
    if (await access(join(dir, cmd)).then(() => true, () => false)) return true
  }
  return false
}

async function ensureEthtool(log: (line: string) => void, install: boolean): Promise<string | undefined> {
  if (await hasCommand('ethtool')) return undefined
  if (!install) return 'ethtool is not installed (apt-get install ethtool, as .ci/run does): the offloads-off test is skipped'
  log('host-traffic: ethtool missing, installing it with apt-get…')
  try {
    await exec('apt-get', ['install', '-y', 'ethtool'], { timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    return undefined
  } catch (err) {
    return `ethtool missing and apt-get install ethtool failed: ${(err as Error).message.split('\n')[0]!}`
  }
}

const OFFLOADS = [['tso', 'tcp-segmentation-offload'], ['gso', 'generic-segmentation-offload'], ['gro', 'generic-receive-offload']] as const
type Offloads = Record<(typeof OFFLOADS)[number][0], 'on' | 'off'>

/** What `ethtool -k` says about TSO, GSO and GRO on one end. */
async function readOffloads(ns: string, ifname: string): Promise<Offloads> {
  const { stdout } = await exec('ip', ['netns', 'exec', ns, 'ethtool', '-k', ifname], { timeout: 10_000 })
  const out = {} as Offloads
  for (const [key, name] of OFFLOADS) out[key] = new RegExp(`^${name}: on`, 'm').test(stdout) ? 'on' : 'off'
  return out
}

/**
 * Turns TSO, GSO and GRO off on both veth ends, runs `fn`, then puts back exactly what
 * was there. (Setting them all back "on" once turned on veth GRO, which is off by
 * default and switches veth to its NAPI receive path: every later test of the run then
 * measured another configuration.)
 */
async function withoutOffloads<T>(net: BenchNet, fn: () => Promise<T>): Promise<T> {
  const ends = [[net.sensorNs, net.sensorIf], [net.attackerNs, net.attackerIf]] as const
  const before = await Promise.all(ends.map(([ns, ifname]) => readOffloads(ns, ifname)))
  try {
    for (const [ns, ifname] of ends) await exec('ip', ['netns', 'exec', ns, 'ethtool', '-K', ifname, 'tso', 'off', 'gso', 'off', 'gro', 'off'], { timeout: 10_000 })
    return await fn()
  } finally {
    for (const [i, [ns, ifname]] of ends.entries()) {
      const b = before[i]!
      await exec('ip', ['netns', 'exec', ns, 'ethtool', '-K', ifname, 'tso', b.tso, 'gso', b.gso, 'gro', b.gro], { timeout: 10_000 })
    }
  }
}

async function iperf(net: BenchNet, core: number, seconds: number): Promise<number> {
  let lastError: unknown
  // The server may still be binding right after it was started: retry briefly.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const { stdout } = await exec(
        'ip',
        ['netns', 'exec', net.attackerNs, 'taskset', '-c', String(core), 'iperf3', '-c', net.sensorIpv4, '-t', String(seconds), '-J'],
        { timeout: (seconds + 20) * 1000, maxBuffer: 16 << 20 },
      )
      const parsed = JSON.parse(stdout) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string }
      const bps = parsed.end?.sum_received?.bits_per_second
      if (typeof bps !== 'number') throw new Error(`iperf3 gave no result: ${parsed.error ?? 'no end.sum_received'}`)
      return bps
    } catch (err) {
      lastError = err
      await sleep(300)
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError))
}

async function flood(net: BenchNet, core: number, seconds: number): Promise<number> {
  const sender = new PinnedChild('flood sender', net.attackerNs, core, [
    process.execPath, SENDER_JS,
    '--interface', net.attackerIf,
    '--dst', net.sensorIpv4,
    '--dst-mac', net.sensorMac,
    '--src-mac', net.attackerMac,
    '--port', String(OTHER_PORT),
    '--seconds', String(seconds),
  ])
  try {
    await sender.next()
    sender.send('go')
    const r = await sender.next(seconds * 1000 + 30_000)
    const sent = typeof r.sent === 'number' ? r.sent : 0
    const ns = typeof r.elapsedNs === 'number' ? r.elapsedNs : Number.NaN
    return sent / (ns / 1e9)
  } finally {
    await sender.end()
  }
}

/** One receiver (or none) for one round: all three tests under one receiver process. */
async function round(net: BenchNet, kit: ReceiverKit, spec: ReceiverSpec | undefined, r: number, options: SectionOptions): Promise<Measurement[]> {
  const name = spec?.label ?? 'no receiver'
  const seconds = Math.max(1, Math.round(options.seconds))
  const out: Measurement[] = []
  let receiver: PinnedChild | undefined
  let pid = 0
  try {
    if (spec !== undefined) {
      const config: E2eConfig = { name, receiver: spec.receiver, ...(spec.sensor !== undefined && { sensor: spec.sensor }) }
      receiver = new PinnedChild(`${name} receiver`, net.sensorNs, options.cores.receiver, receiverArgv(kit, net.sensorIf, TRIPWIRE, config))
      const ready = await receiver.next()
      pid = typeof ready.pid === 'number' ? ready.pid : 0
    }
    for (const test of TESTS) {
      if (net.aborted) break
      const m: Measurement = { receiver: name, round: r, test, value: Number.NaN, receiverCpu: Number.NaN }
      try {
        const cpu0 = pid > 0 ? await cpuSeconds(pid) : 0
        const t0 = process.hrtime.bigint()
        if (test === 'bulk') m.value = await iperf(net, options.cores.sender, seconds)
        else if (test === 'bulk, offloads off') m.value = await withoutOffloads(net, () => iperf(net, options.cores.sender, seconds))
        else m.value = await flood(net, options.cores.sender, seconds)
        const wall = Number(process.hrtime.bigint() - t0) / 1e9
        if (pid > 0) m.receiverCpu = ((await cpuSeconds(pid)) - cpu0) / wall
      } catch (err) {
        m.error = (err as Error).message.split('\n')[0]!
      }
      out.push(m)
      options.log(`host-traffic: round ${r + 1} ${name} / ${test}: ${m.error ?? (test.startsWith('bulk') ? `${si(m.value)}bit/s` : `${si(m.value)} pps`)}`)
    }
  } catch (err) {
    for (const test of TESTS) if (!out.some((m) => m.test === test)) out.push({ receiver: name, round: r, test, value: Number.NaN, receiverCpu: Number.NaN, error: (err as Error).message.split('\n')[0]! })
  } finally {
    if (receiver !== undefined) {
      receiver.send('quit')
      await receiver.end()
    }
  }
  return out
}

export async function run(options: SectionOptions): Promise<SectionResult> {
  const { log } = options
  const base: SectionResult = { name: 'host-traffic', title: "Cost to the host's real traffic", ok: false, rows: [] }
  if (process.getuid?.() !== 0) return { ...base, reason: 'needs root (network namespaces): run `sudo npm run bench`' }
  if (!(await hasCommand('iperf3'))) return { ...base, reason: 'iperf3 is not installed (apt-get install iperf3)' }
  const warnings: string[] = []
  const ethtoolMissing = await ensureEthtool(log, options.install)
  const tests: readonly Test[] = ethtoolMissing === undefined ? TESTS : TESTS.filter((t) => t !== 'bulk, offloads off')
  if (ethtoolMissing !== undefined) warnings.push(ethtoolMissing)
  const cap = await prepareCap(log, options.install)
  if (!cap.ok) warnings.push(`cap (libpcap) receiver unavailable: ${cap.reason}`)
  // How the consumer reads hits does not change what the host's own traffic pays.
  const receivers = RECEIVERS.filter((r) => (r.receiver !== 'cap' || cap.ok) && r.sensor?.batches !== true)

  const dir = await scratchDir('pnperf-')
  let net: BenchNet | undefined
  let server: PinnedChild | undefined
  const all: Measurement[] = []
  try {
    net = await createBenchNet()
    const kit = await prepareReceivers(dir, TRIPWIRE, cap.ok ? cap.dir : undefined)
    // The iperf3 server shares the receiver's core: the sensor competes with the host's work.
    server = new PinnedChild('iperf3 server', net.sensorNs, options.cores.receiver, ['iperf3', '-s', '-p', '5201'])
    await sleep(300)
    log(`host-traffic: namespaces ${net.sensorNs} / ${net.attackerNs}; iperf3 client and flood sender on core ${options.cores.sender}, server and receiver on core ${options.cores.receiver}`)
    for (let r = 0; r < options.rounds && !net.aborted; r++) {
      // Rotate the order each round, so no receiver always runs first (warm caches,
      // a fresh iperf3 server) or last.
      const order = [undefined, ...receivers]
      const rotated = [...order.slice(r % order.length), ...order.slice(0, r % order.length)]
      for (const spec of rotated) {
        if (net.aborted) break
        const ms = await round(net, kit, spec, r, options)
        all.push(...ms.filter((m) => tests.includes(m.test)))
      }
    }
  } catch (err) {
    return { ...base, reason: `host-traffic run failed: ${(err as Error).message}`, warnings }
  } finally {
    await server?.end()
    await net?.destroy()
    await removeScratch(dir)
  }

  // Ratios to the no-receiver trial of the same round and test.
  const ratioOf = (label: string, test: Test): Summary => {
    const values: number[] = []
    for (const m of all) {
      if (m.receiver !== label || m.test !== test || m.error !== undefined) continue
      const none = all.find((b) => b.receiver === 'no receiver' && b.round === m.round && b.test === test && b.error === undefined)
      if (none !== undefined && none.value > 0) values.push(m.value / none.value)
    }
    return summarize(values)
  }
  // Ratios to the C TPACKET_V3 reader in the same round: the kernel side's physical limit.
  const vsC = (label: string, test: Test): Summary => {
    const values: number[] = []
    for (const m of all) {
      if (m.receiver !== label || m.test !== test || m.error !== undefined) continue
      const c = all.find((b) => b.receiver === BASELINE_LABEL && b.round === m.round && b.test === test && b.error === undefined)
      if (c !== undefined && c.value > 0) values.push(m.value / c.value)
    }
    return summarize(values)
  }
  const abs = (label: string, test: Test): Summary => summarize(all.filter((m) => m.receiver === label && m.test === test && m.error === undefined).map((m) => m.value))
  const cpu = (label: string, test: Test): Summary => summarize(all.filter((m) => m.receiver === label && m.test === test && m.error === undefined).map((m) => m.receiverCpu))
  for (const m of all) if (m.error !== undefined) warnings.push(`round ${m.round + 1} ${m.receiver} / ${m.test}: ${m.error}`)

  const unit = (t: Test): string => (t.startsWith('bulk') ? 'bit/s' : 'pps')
  const rows: SectionResult['rows'] = []
  for (const label of ['no receiver', ...receivers.map((r) => r.label)]) {
    const row: Record<string, string> = { receiver: label }
    for (const t of tests) {
      row[`${t} (${unit(t)})`] = fmt(abs(label, t))
      row[`${t}: ratio`] = label === 'no receiver' ? '1.00×' : fmt(ratioOf(label, t), ratio)
      row[`${t}: ÷ C`] = label === 'no receiver' || label === BASELINE_LABEL ? '' : fmt(vsC(label, t), ratio)
      row[`${t}: receiver CPU`] = label === 'no receiver' ? '' : fmt(cpu(label, t), pct)
    }
    rows.push(row)
  }
  const ratios = receivers.flatMap((r) => [
    ...tests.map((t) => ({ name: `${t}: ${r.label} / no receiver`, value: ratioOf(r.label, t) })),
    ...(r.label === BASELINE_LABEL ? [] : tests.map((t) => ({ name: `${t}: ${r.label} / ${BASELINE_LABEL}`, value: vsC(r.label, t) }))),
  ])
  const charts: ChartSpec[] = [
    {
      id: 'ratios',
      title: "Host traffic with the receiver running, ratio to no receiver (same round)",
      unit: '× of no receiver',
      format: 'ratio',
      reference: { value: 0.99, label: '0.99× target' },
      groups: tests.map((t) => ({ label: t, bars: receivers.map((r) => ({ label: r.label, value: ratioOf(r.label, t) })) })),
    },
    {
      id: 'cpu',
      title: 'Receiver CPU while the host traffic runs, fraction of one core',
      unit: 'CPU / core',
      format: 'percent',
      groups: tests.map((t) => ({ label: t, bars: receivers.map((r) => ({ label: r.label, value: cpu(r.label, t) })) })),
    },
  ]
  const targets: SectionTarget[] = []
  // The target names every measurement it lists: it is met only when each of them is.
  const judged = tests.map((t) => ({ test: t, value: ratioOf('portanoia', t) })).filter((m) => m.value.n > 0)
  if (judged.length > 0) {
    const short: Record<Test, string> = { bulk: 'iperf3 bulk', 'bulk, offloads off': 'offloads off', 'SYN flood to a non-tripwire port': 'SYN flood to a non-tripwire port' }
    const missed = judged.filter((m) => !(m.value.median >= 0.99))
    targets.push({
      statement: 'unrelated bulk traffic ≥ 0.99× of no sensor (portanoia)',
      met: missed.length === 0 && judged.length === tests.length,
      measured: judged.map((m) => `${short[m.test]} ${fmt(m.value, ratio)}`).join('; '),
      note: `met only when every measurement listed is (median of the per-round ratios ≥ 0.99)${missed.length > 0 ? `; missed by ${missed.map((m) => short[m.test]).join(', ')}` : ''}; the spread on this shared machine is shown beside each`,
    })
  }
  const flood = vsC('portanoia', 'SYN flood to a non-tripwire port')
  if (flood.n > 0) {
    targets.push({
      statement: `issue 9: an unrelated SYN flood runs at ≥ 0.95× of its rate beside the ${BASELINE_LABEL}`,
      met: flood.median >= 0.95,
      measured: `${fmt(flood, ratio)} (portanoia ${fmt(abs('portanoia', 'SYN flood to a non-tripwire port'))} pps, C reader ${fmt(abs(BASELINE_LABEL, 'SYN flood to a non-tripwire port'))} pps; ${fmt(ratioOf('portanoia', 'SYN flood to a non-tripwire port'), ratio)} of no receiver)`,
      note: 'judged on the median of the per-round ratios; the flood\'s receive work (filter runs included) is paid on the sender core',
    })
  }
  const measured = all.some((m) => m.error === undefined && m.receiver !== 'no receiver')
  return {
    ...base,
    ok: measured,
    ...(!measured && { reason: 'no receiver completed a host-traffic test' }),
    rows,
    ratios,
    charts,
    targets,
    warnings,
    notes: [
      `${options.rounds} interleaved round(s); iperf3 ${Math.max(1, Math.round(options.seconds))} s per test (one TCP stream); flood: unpaced SYNs to port ${OTHER_PORT}, not a tripwire (tripwire: ${TRIPWIRE}/tcp).`,
      'Offloads off: `ethtool -K <veth> tso off gso off gro off` on both ends for that test only, then put back as they were (veth default: TSO and GSO on, GRO off).',
      'A ratio below 1 is traffic the host lost to the receiver; the flood\'s rate is the sender\'s, which includes the receive work done in softirq on its core.',
    ],
    details: { measurements: all },
  }
}
