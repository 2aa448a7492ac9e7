/**
 * The end-to-end benchmark: SYNs with random sources blasted from an attacker
 * namespace at a tripwire in a sensor namespace, and what each receiver in the sensor
 * namespace makes of them. It owns the procedure and the arithmetic; bench/net.ts owns
 * namespaces and processes, bench/e2e-sender.ts and bench/e2e-receiver.ts are the
 * child programs, bench/baseline/raw_receiver.c and bench/baseline/afpacket_receiver.c
 * the C baselines (compiled here, at bench time, into a scratch folder), and
 * bench/cap-receiver.ts the libpcap one (the npm `cap` package, see bench/cap.ts).
 *
 * Procedure. Phase 1 measures the sender's ceiling with no receiver. Phase 2 runs
 * rounds; each round runs every configuration once, in the same order (A B C A B C …),
 * so slow drift on this shared machine hits all of them alike, and ratios are taken
 * within a round. One trial: start the receiver pinned to core 0 and wait until it
 * is ready; start the sender pinned to core 1 and wait until its frames are built;
 * sample the receiver's counters, its CPU time (/proc/PID/stat, all threads) and the
 * veth's rx counter; say `go`; when the sender reports, wait until the receiver's
 * hit count stops moving (blocks still in the kernel retire within retireMs); sample
 * again; end both by PID. Runs on the bench's main thread, one trial at a time.
 *
 * Kernel receive work for the veth (including AF_PACKET's copy into the ring and the
 * raw socket's clone) runs in softirq on the sending core, so it lowers the offered
 * rate rather than showing up in the receiver's CPU: that is why offered pps is
 * measured per trial and not assumed from the ceiling.
 */
import { execFile } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { PACKAGE_ROOT } from '../lib/binding.js'
import { compileFilter } from '../lib/bpf/filter.js'
import { removeScratch, scratchDir } from '../lib/lab/scratch.js'
import { createBenchNet, linkCounters, PinnedChild, threadCpuSeconds, type BenchNet, type ThreadCpu } from './net.js'
import { summarize, type Summary } from './stats.js'

const run = promisify(execFile)

/** Sensor options a portanoia receiver is started with (undefined: the library default). */
export interface SensorVariant {
  retireMs?: number
  blockSize?: number
  blockCount?: number
  batch?: number
  /** false: accept-all kernel program (SensorOptions.kernelFilter). */
  kernelFilter?: boolean
  /** true: the consumer reads sensor.batches() (one await per batch) instead of per hit. */
  batches?: boolean
}

/**
 * none: sender alone; portanoia: the library (bench/e2e-receiver.ts); tpacket: the
 * physical limit, a plain C TPACKET_V3 reader with portanoia's filter and ring geometry
 * and nothing else; raw: AF_INET SOCK_RAW, one recvmsg per packet; afpacket: AF_PACKET +
 * the same cBPF filter, recvmmsg, no ring; cap: libpcap through the npm `cap` package.
 */
export type ReceiverKind = 'none' | 'portanoia' | 'tpacket' | 'raw' | 'afpacket' | 'cap'

export interface E2eConfig {
  /** Short, unique: the key in results. */
  name: string
  receiver: ReceiverKind
  /** Fraction of the phase-1 ceiling to pace at; 0 or absent: unpaced. */
  paced?: number
  sensor?: SensorVariant
}

export interface E2eOptions {
  rounds: number
  /** Seconds each sender transmits. */
  seconds: number
  ceilingRounds: number
  configs: readonly E2eConfig[]
  pool?: number
  port?: number
  /** Where bench/cap.ts installed `cap`; configs with receiver 'cap' need it. */
  capDir?: string
  /** Pinning; default sender on core 1, receiver on core 0 (both 0 on one core). */
  cores?: { sender: number; receiver: number }
  log?: (line: string) => void
}

export interface Trial {
  config: string
  round: number
  /** Requested pps (0: unpaced). */
  targetPps: number
  sent: number
  sendFailed: number
  senderSeconds: number
  offeredPps: number
  /** Packets the sensor-side veth received (kernel counter) in the window. */
  vethRx: number
  /** Hits that reached the consumer (JS `for await`, or the raw receiver's loop). */
  delivered: number
  deliveredPps: number
  deliveredFraction: number
  kernelDrops: number
  ringDrops: number
  socketDrops: number
  /** kernelDrops + ringDrops (portanoia) or socketDrops (raw). */
  loss: number
  /** sent - delivered: everything that went missing, counted or not. */
  missing: number
  receiverCpuSeconds: number
  /** Receiver CPU time over the sender's transmit time: fraction of one core. */
  receiverCpu: number
  cpuNsPerHit: number
  /**
   * cpuNsPerHit split by thread: the receiver's main thread (portanoia's JS thread), its
   * capture thread (`portanoia-cap`; 0 for the other receivers), and the rest (V8's
   * helpers, libuv's pool).
   */
  threadNsPerHit: { main: number; capture: number; other: number }
  error?: string
}

export interface ConfigSummary {
  name: string
  receiver: E2eConfig['receiver']
  targetPps: number
  sensor?: SensorVariant
  trials: number
  errors: string[]
  offeredPps: Summary
  deliveredPps: Summary
  deliveredFraction: Summary
  loss: Summary
  missing: Summary
  receiverCpu: Summary
  cpuNsPerHit: Summary
  threadNsPerHit: { main: Summary; capture: Summary; other: Summary }
  /** Per-round ratios to the baseline config with the same pacing (the C TPACKET_V3 reader, else raw). */
  vsBaseline?: { offeredPps: Summary; deliveredPps: Summary; receiverCpu: Summary; cpuNsPerHit: Summary; baseline: string }
  /** Per-round ratio of this config's offered rate to the sender alone. */
  offeredVsCeiling?: Summary
}

export interface E2eResult {
  cores: { sender: number; receiver: number }
  seconds: number
  rounds: number
  pool: number
  ceilingPps: Summary
  pacedPps: Record<string, number>
  configs: ConfigSummary[]
  trials: Trial[]
}

const SENDER_JS = fileURLToPath(new URL('./e2e-sender.js', import.meta.url))
const RECEIVER_JS = fileURLToPath(new URL('./e2e-receiver.js', import.meta.url))
const CAP_RECEIVER_JS = fileURLToPath(new URL('./cap-receiver.js', import.meta.url))
const RAW_SOURCE = join(PACKAGE_ROOT, 'bench', 'baseline', 'raw_receiver.c')
const AFPACKET_SOURCE = join(PACKAGE_ROOT, 'bench', 'baseline', 'afpacket_receiver.c')
const TPACKET_SOURCE = join(PACKAGE_ROOT, 'bench', 'baseline', 'tpacket_receiver.c')

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** The C reader's retire timeout: portanoia's default, so both wait as long in the kernel. */
export const TPACKET_RETIRE_MS = 1
/** The name native/capture.cc gives its thread (prctl PR_SET_NAME): the per-thread split finds it by it. */
const CAPTURE_THREAD = 'portanoia-cap'

async function compileReceiver(dir: string, source: string, name: string): Promise<string> {
  const out = join(dir, name)
  try {
    await run('cc', ['-O2', '-Wall', '-Wextra', '-o', out, source], { timeout: 60_000 })
  } catch (err) {
    throw new Error(`cannot compile the baseline receiver (${source}) with cc: ${(err as Error).message}`)
  }
  return out
}

/** Everything needed to start any receiver: the compiled baselines, the filter, cap's folder. */
export interface ReceiverKit {
  rawBinary: string
  afpacketBinary: string
  tpacketBinary: string
  /** The tripwire's cBPF program (lib/bpf/filter.ts), hex, for the AF_PACKET baseline. */
  filterHex: string
  capDir?: string
}

/** Compiles the C baselines into `dir` (a scratch folder the caller removes: lib/lab/scratch.ts). */
export async function prepareReceivers(dir: string, port: number, capDir?: string): Promise<ReceiverKit> {
  return {
    rawBinary: await compileReceiver(dir, RAW_SOURCE, 'raw_receiver'),
    afpacketBinary: await compileReceiver(dir, AFPACKET_SOURCE, 'afpacket_receiver'),
    tpacketBinary: await compileReceiver(dir, TPACKET_SOURCE, 'tpacket_receiver'),
    filterHex: compileFilter([{ proto: 'tcp', from: port, to: port }]).program.toString('hex'),
    ...(capDir !== undefined && { capDir }),
  }
}

/** The argv that starts `config`'s receiver on `ifname` (none for receiver 'none'). */
export function receiverArgv(kit: ReceiverKit, ifname: string, port: number, config: E2eConfig): string[] {
  switch (config.receiver) {
    case 'none':
      return []
    case 'raw':
      return [kit.rawBinary, String(port)]
    case 'afpacket':
      return [kit.afpacketBinary, ifname, String(port), kit.filterHex]
    case 'tpacket':
      // portanoia's defaults (lib/sensor.ts, native/capture_wrap.cc): 64 blocks of 128 KiB.
      return [kit.tpacketBinary, ifname, String(port), kit.filterHex, String(128 << 10), '64', String(TPACKET_RETIRE_MS)]
    case 'cap':
      if (kit.capDir === undefined) throw new Error('the cap receiver needs the npm cap package (bench/cap.ts)')
      return [process.execPath, CAP_RECEIVER_JS, '--cap-dir', kit.capDir, '--interface', ifname, '--port', String(port)]
    case 'portanoia': {
      const argv = [process.execPath, RECEIVER_JS, '--interface', ifname, '--port', String(port)]
      const s = config.sensor ?? {}
      if (s.retireMs !== undefined) argv.push('--retire-ms', String(s.retireMs))
      if (s.blockSize !== undefined) argv.push('--block-size', String(s.blockSize))
      if (s.blockCount !== undefined) argv.push('--block-count', String(s.blockCount))
      if (s.batch !== undefined) argv.push('--batch', String(s.batch))
      if (s.kernelFilter === false) argv.push('--no-kernel-filter')
      if (s.batches === true) argv.push('--batches')
      return argv
    }
  }
}

function num(record: Record<string, unknown>, key: string): number {
  const v = record[key]
  return typeof v === 'number' ? v : 0
}

interface Env {
  net: BenchNet
  kit: ReceiverKit
  pool: number
  port: number
  seconds: number
  senderCore: number
  receiverCore: number
}

/** One trial; never throws (a failure is recorded in `error`). */
async function trial(env: Env, config: E2eConfig, round: number, targetPps: number): Promise<Trial> {
  const t: Trial = {
    config: config.name,
    round,
    targetPps,
    sent: 0,
    sendFailed: 0,
    senderSeconds: 0,
    offeredPps: 0,
    vethRx: 0,
    delivered: 0,
    deliveredPps: 0,
    deliveredFraction: Number.NaN,
    kernelDrops: 0,
    ringDrops: 0,
    socketDrops: 0,
    loss: 0,
    missing: 0,
    receiverCpuSeconds: 0,
    receiverCpu: Number.NaN,
    cpuNsPerHit: Number.NaN,
    threadNsPerHit: { main: Number.NaN, capture: Number.NaN, other: Number.NaN },
  }
  const { net } = env
  let receiver: PinnedChild | undefined
  let sender: PinnedChild | undefined
  try {
    if (net.aborted) throw new Error('interrupted')
    let pid = 0
    if (config.receiver !== 'none') {
      receiver = new PinnedChild(`${config.name} receiver`, net.sensorNs, env.receiverCore, receiverArgv(env.kit, net.sensorIf, env.port, config))
      pid = num(await receiver.next(), 'pid')
    }
    const senderArgv = [
      process.execPath, SENDER_JS,
      '--interface', net.attackerIf,
      '--dst', net.sensorIpv4,
      '--dst-mac', net.sensorMac,
      '--src-mac', net.attackerMac,
      '--port', String(env.port),
      '--pool', String(env.pool),
      '--seconds', String(env.seconds),
      '--pps', String(Math.round(targetPps)),
    ]
    sender = new PinnedChild(`${config.name} sender`, net.attackerNs, env.senderCore, senderArgv)
    await sender.next()

    const before = receiver === undefined ? {} : await receiver.ask('stats')
    const none: ThreadCpu = { total: 0, main: 0, named: 0 }
    const cpu0 = pid > 0 ? await threadCpuSeconds(pid, CAPTURE_THREAD) : none
    const veth0 = await linkCounters(net.sensorNs, net.sensorIf)
    sender.send('go')
    const sent = await sender.next(env.seconds * 1000 + 30_000)
    t.sent = num(sent, 'sent')
    t.sendFailed = num(sent, 'failed')
    t.senderSeconds = num(sent, 'elapsedNs') / 1e9
    let after = before
    if (receiver !== undefined) {
      // Wait until the count stops moving: partly filled blocks retire after retireMs,
      // and the consumer may still be working through a backlog.
      let last = -1
      for (let i = 0; i < 50; i++) {
        after = await receiver.ask('stats')
        const hits = num(after, 'hits')
        if (hits === last) break
        last = hits
        await sleep(100)
      }
    }
    const cpu1 = pid > 0 ? await threadCpuSeconds(pid, CAPTURE_THREAD) : none
    const veth1 = await linkCounters(net.sensorNs, net.sensorIf)

    t.offeredPps = t.sent / t.senderSeconds
    t.vethRx = veth1.rxPackets - veth0.rxPackets
    if (receiver !== undefined) {
      const d = (key: string): number => num(after, key) - num(before, key)
      t.delivered = d('hits')
      t.kernelDrops = d('kernelDrops')
      t.ringDrops = d('ringDrops')
      t.socketDrops = d('socketDrops')
      t.loss = t.kernelDrops + t.ringDrops + t.socketDrops
      t.missing = t.sent - t.delivered
      t.deliveredPps = t.delivered / t.senderSeconds
      t.deliveredFraction = t.sent > 0 ? t.delivered / t.sent : Number.NaN
      t.receiverCpuSeconds = cpu1.total - cpu0.total
      t.receiverCpu = t.receiverCpuSeconds / t.senderSeconds
      const perHit = (seconds: number): number => (t.delivered > 0 ? (seconds * 1e9) / t.delivered : Number.NaN)
      t.cpuNsPerHit = perHit(t.receiverCpuSeconds)
      const main = cpu1.main - cpu0.main
      const capture = cpu1.named - cpu0.named
      t.threadNsPerHit = { main: perHit(main), capture: perHit(capture), other: perHit(t.receiverCpuSeconds - main - capture) }
      receiver.send('quit')
    }
  } catch (err) {
    t.error = (err as Error).message
  } finally {
    await sender?.end()
    await receiver?.end()
  }
  return t
}

function summarizeConfig(config: E2eConfig, targetPps: number, trials: readonly Trial[]): ConfigSummary {
  const ok = trials.filter((t) => t.error === undefined)
  const pick = (f: (t: Trial) => number): Summary => summarize(ok.map(f))
  return {
    name: config.name,
    receiver: config.receiver,
    targetPps,
    ...(config.sensor !== undefined && { sensor: config.sensor }),
    trials: ok.length,
    errors: trials.filter((t) => t.error !== undefined).map((t) => `round ${t.round}: ${t.error!}`),
    offeredPps: pick((t) => t.offeredPps),
    deliveredPps: pick((t) => t.deliveredPps),
    deliveredFraction: pick((t) => t.deliveredFraction),
    loss: pick((t) => t.loss),
    missing: pick((t) => t.missing),
    receiverCpu: pick((t) => t.receiverCpu),
    cpuNsPerHit: pick((t) => t.cpuNsPerHit),
    threadNsPerHit: {
      main: pick((t) => t.threadNsPerHit.main),
      capture: pick((t) => t.threadNsPerHit.capture),
      other: pick((t) => t.threadNsPerHit.other),
    },
  }
}

/** Ratio a/b for each round where both trials succeeded. */
function roundRatios(trials: readonly Trial[], a: string, b: string, f: (t: Trial) => number): Summary {
  const values: number[] = []
  const byRound = new Map<number, Trial>()
  for (const t of trials) if (t.config === b && t.error === undefined) byRound.set(t.round, t)
  for (const t of trials) {
    if (t.config !== a || t.error !== undefined) continue
    const base = byRound.get(t.round)
    if (base !== undefined) values.push(f(t) / f(base))
  }
  return summarize(values)
}

/** The default configurations: the ceiling, both receivers unpaced and at 50 %. */
export const DEFAULT_CONFIGS: readonly E2eConfig[] = [
  { name: 'sender-only', receiver: 'none' },
  { name: 'portanoia', receiver: 'portanoia' },
  { name: 'raw', receiver: 'raw' },
  { name: 'portanoia@50%', receiver: 'portanoia', paced: 0.5 },
  { name: 'raw@50%', receiver: 'raw', paced: 0.5 },
]

export async function runE2e(options: E2eOptions): Promise<E2eResult> {
  const log = options.log ?? (() => {})
  if (process.getuid?.() !== 0) {
    throw new Error('the end-to-end benchmark needs root (it creates network namespaces and opens AF_PACKET sockets): run `sudo npm run bench`')
  }
  const cores = options.cores ?? (availableParallelism() >= 2 ? { sender: 1, receiver: 0 } : { sender: 0, receiver: 0 })
  const dir = await scratchDir('pnperf-')
  const net = await createBenchNet()
  try {
    const port = options.port ?? 2222
    const env: Env = {
      net,
      kit: await prepareReceivers(dir, port, options.capDir),
      pool: options.pool ?? 4096,
      port,
      seconds: options.seconds,
      senderCore: cores.sender,
      receiverCore: cores.receiver,
    }
    log(`e2e: namespaces ${net.sensorNs} / ${net.attackerNs}; sender on core ${cores.sender}, receiver on core ${cores.receiver}`)

    // Phase 1: the sender alone, to find the rate the paced runs aim at.
    const ceiling: Trial[] = []
    for (let r = 0; r < options.ceilingRounds; r++) {
      const t = await trial(env, { name: 'ceiling', receiver: 'none' }, r, 0)
      log(`e2e: ceiling round ${r + 1}/${options.ceilingRounds}: ${t.error ?? `${(t.offeredPps / 1e6).toFixed(3)} Mpps`}`)
      ceiling.push(t)
    }
    const failed = ceiling.find((t) => t.error !== undefined)
    if (failed !== undefined && ceiling.every((t) => t.error !== undefined)) {
      throw new Error(`the sender failed on its own: ${failed.error!}`)
    }
    const ceilingPps = summarize(ceiling.filter((t) => t.error === undefined).map((t) => t.offeredPps))
    const pacedPps: Record<string, number> = {}
    // Paced rates follow the sender-alone trial of the same round (the first config of
    // each round when there is one), so they track the machine's drift; phase 1's
    // median stands in until a round has its own.
    let roundCeiling = ceilingPps.median
    const target = (c: E2eConfig): number => (c.paced !== undefined && c.paced > 0 ? Math.round(c.paced * roundCeiling) : 0)
    const targets = new Map<string, number[]>()

    // Phase 2: interleaved rounds.
    const trials: Trial[] = [...ceiling]
    for (let r = 0; r < options.rounds && !net.aborted; r++) {
      for (const c of options.configs) {
        if (net.aborted) break
        const t = await trial(env, c, r, target(c))
        trials.push(t)
        if (c.receiver === 'none' && t.error === undefined && t.offeredPps > 0) roundCeiling = t.offeredPps
        if (t.targetPps > 0) targets.set(c.name, [...(targets.get(c.name) ?? []), t.targetPps])
        const what = t.error !== undefined
          ? `ERROR ${t.error}`
          : c.receiver === 'none'
            ? `offered ${(t.offeredPps / 1e6).toFixed(3)} Mpps`
            : `offered ${(t.offeredPps / 1e6).toFixed(3)} Mpps, delivered ${(t.deliveredFraction * 100).toFixed(3)} %, loss ${t.loss}, cpu ${(t.receiverCpu * 100).toFixed(1)} %`
        log(`e2e: round ${r + 1}/${options.rounds} ${c.name}: ${what}`)
      }
    }

    for (const [name, values] of targets) pacedPps[name] = Math.round(summarize(values).median)
    const phase2 = trials.filter((t) => t.config !== 'ceiling')
    const configs = options.configs.map((c) => {
      const s = summarizeConfig(c, pacedPps[c.name] ?? 0, phase2.filter((t) => t.config === c.name))
      // The baseline is the physical limit (the C TPACKET_V3 reader) at the same pacing,
      // or, in a run without it, the raw receiver.
      const base =
        options.configs.find((b) => b.receiver === 'tpacket' && (b.paced ?? 0) === (c.paced ?? 0)) ??
        options.configs.find((b) => b.receiver === 'raw' && (b.paced ?? 0) === (c.paced ?? 0))
      if (c.receiver !== 'none' && base !== undefined && base.name !== c.name) {
        s.vsBaseline = {
          baseline: base.name,
          offeredPps: roundRatios(phase2, c.name, base.name, (t) => t.offeredPps),
          deliveredPps: roundRatios(phase2, c.name, base.name, (t) => t.deliveredPps),
          receiverCpu: roundRatios(phase2, c.name, base.name, (t) => t.receiverCpu),
          cpuNsPerHit: roundRatios(phase2, c.name, base.name, (t) => t.cpuNsPerHit),
        }
      }
      const alone = options.configs.find((b) => b.receiver === 'none')
      if (c.receiver !== 'none' && (c.paced ?? 0) === 0 && alone !== undefined) {
        s.offeredVsCeiling = roundRatios(phase2, c.name, alone.name, (t) => t.offeredPps)
      }
      return s
    })
    return {
      cores,
      seconds: options.seconds,
      rounds: options.rounds,
      pool: env.pool,
      ceilingPps,
      pacedPps,
      configs,
      trials,
    }
  } finally {
    await net.destroy()
    await removeScratch(dir)
  }
}
