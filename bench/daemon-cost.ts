/**
 * The daemon's CPU per hit, end to end (issue 9), run on its own:
 *
 *   sudo node dist/bench/daemon-cost.js [--case both|flood|scanner] [--seconds 60] [--pps 500000] [--pool 100000]
 *                                      [--scanner-pps 10000] [--rounds 1] [--baseline ROOT] [--profile DIR]
 *
 * In a `pnperf-` namespace pair it starts `portanoia watch --tcp 2222 -i VETH --block all
 * --json --no-control --no-state --stats-interval 1s` in the sensor namespace, pinned to core 0 (its
 * JSON lines go to a pipe this process reads and discards, as `> /dev/null` would), and the
 * bench's sender, pinned to core 1, offers one of two cases to the tripwire for `--seconds`:
 *
 * - flood: SYNs from `--pool` distinct forged sources in 198.18.0.0/15 at `--pps`. Every
 *   hit goes through the library, the policy engine (guards, caps: the spoofable-block
 *   breaker opens within the first second, so most hits are counted, not blocked) and
 *   the responders (an nftables table in the sensor namespace, deleted with it).
 * - scanner: one verified scanner. The sender first completes three TCP handshakes with
 *   the tripwire from the attacker namespace's own address (the daemon's listener
 *   accepts them: verified evidence, so `--block all` blocks the address at once), then
 *   sends SYNs from that same address at `--scanner-pps`, each from its own source port:
 *   a scanner that keeps probing after its block (the block drops them after the
 *   capture has seen them). Each hit is attributed verified by the source's memory and
 *   decided already-blocked.
 *
 * Reported per case: the daemon's CPU (every thread, /proc/PID/stat) from the start of
 * the traffic to 2.5 s after its end, divided by the hits its policy engine had counted
 * then (its latest stats event; the backlog is drained by then), and of that the main
 * (JavaScript) thread's share (/proc/PID/task/PID/stat); the sensor's kernel and
 * ring drops from the same event; its RSS (VmRSS) every second (start, peak, end); and the
 * sender's offered rate. With `--baseline ROOT` (another build of this package, e.g. the
 * main branch's, with its dist/ built) every round runs that build's daemon too, right
 * before this one's, and the summary gives this build's ns/hit as a ratio to it. The
 * daemon and the sender are ended by PID; the namespaces are deleted on every path out.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { cpuSeconds, createBenchNet, PinnedChild, type BenchNet } from './net.js'

const execFileP = promisify(execFile)
const SENDER_JS = fileURLToPath(new URL('./e2e-sender.js', import.meta.url))
const CLI_JS = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url))
const TRIPWIRE = 2222
const SCANNER_FRAMES = 4096
const SCANNER_HANDSHAKES = 3

const { values } = parseArgs({
  options: {
    case: { type: 'string', default: 'both' },
    seconds: { type: 'string', default: '60' },
    pps: { type: 'string', default: '500000' },
    pool: { type: 'string', default: '100000' },
    'scanner-pps': { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '1' },
    // The root of another build of this package (its dist/lib/cli/main.js), measured in the same rounds.
    baseline: { type: 'string' },
    // A V8 CPU profile of each daemon into DIR/BUILD-CASE (node --cpu-prof), written when it exits.
    profile: { type: 'string' },
  },
})
const seconds = Number(values.seconds)
const rounds = Number(values.rounds)
if (!['both', 'flood', 'scanner'].includes(values.case)) {
  console.error(`daemon-cost: --case must be both, flood or scanner, got ${values.case}`)
  process.exit(2)
}
if (process.getuid?.() !== 0) {
  console.error('daemon-cost needs root (network namespaces, AF_PACKET, nftables)')
  process.exit(1)
}
const cores = { sender: 1, receiver: 0 }
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface Case {
  name: 'flood' | 'scanner'
  pps: number
}
const cases: Case[] = []
if (values.case !== 'scanner') cases.push({ name: 'flood', pps: Number(values.pps) })
if (values.case !== 'flood') cases.push({ name: 'scanner', pps: Number(values['scanner-pps']) })

interface Build {
  label: string
  cli: string
}
const builds: Build[] = []
if (values.baseline !== undefined) builds.push({ label: 'baseline', cli: join(resolve(values.baseline), 'dist/lib/cli/main.js') })
builds.push({ label: 'current', cli: CLI_JS })

async function rssMiB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return m === null ? Number.NaN : Number(m[1]) / 1024
}

interface Result {
  build: string
  case: Case['name']
  offeredPps: number
  sent: number
  handshakes?: number
  hits: number
  cpuSeconds: number
  nsPerHit: number
  /** Of nsPerHit: the main (JavaScript) thread's, and every other thread's (capture, GC helpers, libuv). */
  mainThreadNsPerHit: number
  otherThreadsNsPerHit: number
  coreFraction: number
  rss: { start: number; peak: number; end: number; everySecond: number[] }
  /**
   * Each stats event from the go to the end (one a second): what the policy engine counted and
   * the ring dropped since the one before, and the share of a core the process and its main
   * thread used over that second (sampled when the event was read), to set drops against CPU.
   */
  perSecond: Array<{ hits: number; ringDrops: number; core: number; mainCore: number }>
  decisions: Record<string, number>
  kernelDrops: number
  ringDrops: number
  /** Times the capture thread woke the JS thread (the sensor's `wakeups`; NaN from a build without it). */
  wakeups: number
}

interface StatsEvent {
  policy?: { hits?: number; decisions?: Record<string, number> }
  sensor?: Record<string, number>
}

/** The latest stats event among the lines the daemon printed so far (waiting up to `timeoutMs` for each). */
async function readStats(daemon: PinnedChild, timeoutMs: number): Promise<StatsEvent | undefined> {
  let stats: StatsEvent | undefined
  for (;;) {
    const line = await daemon.next(timeoutMs).catch(() => undefined)
    if (line === undefined) return stats
    if (line.type === 'stats') stats = line as StatsEvent
  }
}

async function measure(net: BenchNet, build: Build, c: Case): Promise<Result> {
  const prof = values.profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', join(values.profile, `${build.label}-${c.name}`)]
  const daemon = new PinnedChild(`portanoia watch (${build.label})`, net.sensorNs, cores.receiver, [
    process.execPath, ...prof, build.cli, 'watch', '--tcp', String(TRIPWIRE), '-i', net.sensorIf, '--block', 'all', '--json', '--no-control', '--no-state', '--stats-interval', '1s',
  ])
  let sender: PinnedChild | undefined
  try {
    // The first line is the daemon's start event: the sensor is open.
    await daemon.next(60_000)
    const pid = daemon.child.pid!
    const traffic =
      c.name === 'flood'
        ? ['--pool', String(values.pool)]
        : ['--pool', String(SCANNER_FRAMES), '--src', net.attackerIpv4, '--connect', String(SCANNER_HANDSHAKES)]
    const cpu0 = await cpuSeconds(pid)
    const main0 = await cpuSeconds(pid, pid)
    sender = new PinnedChild('sender', net.attackerNs, cores.sender, [
      process.execPath, SENDER_JS, '--interface', net.attackerIf, '--dst', net.sensorIpv4, '--dst-mac', net.sensorMac,
      '--src-mac', net.attackerMac, '--port', String(TRIPWIRE), '--seconds', String(seconds), '--pps', String(c.pps), ...traffic,
    ])
    const ready = await sender.next(120_000)
    const rss = [await rssMiB(pid)]
    let stats: StatsEvent | undefined
    // Lines printed before the go are not the traffic's: the series starts from the last of them.
    const perSecond: Result['perSecond'] = []
    let prev = { stats: await readStats(daemon, 0), cpu: await cpuSeconds(pid), main: await cpuSeconds(pid, pid), at: performance.now() }
    // Waits for the daemon's next stats event (one a second) and samples the CPU right after it.
    const sample = async (): Promise<boolean> => {
      let next: StatsEvent | undefined
      while (next === undefined) {
        const line = await daemon.next(1500).catch(() => undefined)
        if (line === undefined) return false
        if (line.type === 'stats') next = line as StatsEvent
      }
      const cpu = await cpuSeconds(pid)
      const main = await cpuSeconds(pid, pid)
      const at = performance.now()
      const s = (at - prev.at) / 1000
      perSecond.push({
        hits: (next.policy?.hits ?? 0) - (prev.stats?.policy?.hits ?? 0),
        ringDrops: (next.sensor?.ringDrops ?? 0) - (prev.stats?.sensor?.ringDrops ?? 0),
        core: Math.round(((cpu - prev.cpu) / s) * 100) / 100,
        mainCore: Math.round(((main - prev.main) / s) * 100) / 100,
      })
      prev = { stats: next, cpu, main, at }
      stats = next
      return true
    }
    sender.send('go')
    const done = sender.next(seconds * 1000 + 60_000)
    let finished = false
    void done.finally(() => (finished = true)).catch(() => undefined)
    while (!finished) {
      // No stats event within 1.5 s (a stalled or ended daemon): the RSS once a second still.
      if (!(await sample())) await Promise.race([sleep(1000), done.catch(() => undefined)])
      if (!finished) rss.push(await rssMiB(pid))
    }
    const sent = await done
    await sleep(2500)
    const cpu1 = await cpuSeconds(pid)
    const main1 = await cpuSeconds(pid, pid)
    rss.push(await rssMiB(pid))
    // Every line it printed so far; the last stats event is at most 1 s old.
    stats = (await readStats(daemon, 200)) ?? stats
    const hits = stats?.policy?.hits ?? 0
    const cpu = cpu1 - cpu0
    const elapsed = Number(sent.elapsedNs) / 1e9
    const r: Result = {
      build: build.label,
      case: c.name,
      offeredPps: Number(sent.sent) / elapsed,
      sent: Number(sent.sent),
      hits,
      cpuSeconds: cpu,
      nsPerHit: hits > 0 ? (cpu * 1e9) / hits : Number.NaN,
      mainThreadNsPerHit: hits > 0 ? ((main1 - main0) * 1e9) / hits : Number.NaN,
      otherThreadsNsPerHit: hits > 0 ? ((cpu - (main1 - main0)) * 1e9) / hits : Number.NaN,
      coreFraction: cpu / (elapsed + 2.5),
      rss: { start: rss[0]!, peak: Math.max(...rss), end: rss.at(-1)!, everySecond: rss.map((x) => Math.round(x)) },
      perSecond,
      decisions: Object.fromEntries(Object.entries(stats?.policy?.decisions ?? {}).filter(([, n]) => n > 0)),
      kernelDrops: stats?.sensor?.kernelDrops ?? Number.NaN,
      ringDrops: stats?.sensor?.ringDrops ?? Number.NaN,
      wakeups: stats?.sensor?.wakeups ?? Number.NaN,
    }
    if (c.name === 'scanner') r.handshakes = Number(ready.connected)
    return r
  } finally {
    await sender?.end()
    await daemon.end()
    // Its blocks outlive it in the kernel (by design; --no-state keeps them out of a state
    // file): the next daemon must start from none, or it adopts them and the scanner's
    // handshakes never complete.
    await execFileP('ip', ['netns', 'exec', net.sensorNs, 'nft', 'delete', 'table', 'inet', 'portanoia'], { timeout: 10_000 }).catch(() => undefined)
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

let net: BenchNet | undefined
const results: Result[] = []
try {
  net = await createBenchNet()
  for (let r = 0; r < rounds && !net.aborted; r++) {
    for (const c of cases) {
      for (const b of builds) {
        if (net.aborted) break
        const res = await measure(net, b, c)
        results.push(res)
        console.error(
          `[daemon-cost] round ${r + 1}/${rounds} ${c.name} ${b.label}: offered ${(res.offeredPps / 1e3).toFixed(1)}k pps, sent ${res.sent}, hits ${res.hits}, ` +
            `drops ${res.kernelDrops}+${res.ringDrops}, JS wake-ups ${res.wakeups}, CPU ${res.cpuSeconds.toFixed(2)} s = ${res.nsPerHit.toFixed(0)} ns/hit (main thread ${res.mainThreadNsPerHit.toFixed(0)}, others ${res.otherThreadsNsPerHit.toFixed(0)}; ${(res.coreFraction * 100).toFixed(0)} % of a core), ` +
            `RSS MiB start ${res.rss.start.toFixed(0)} peak ${res.rss.peak.toFixed(0)} end ${res.rss.end.toFixed(0)}`,
        )
        console.error(`[daemon-cost]   per second (hits / ring drops / core / main thread's core): ${res.perSecond.map((p) => `${p.hits}/${p.ringDrops}/${p.core}/${p.mainCore}`).join(' ')}`)
      }
    }
  }
} finally {
  await net?.destroy()
}
const summary = cases.map((c) => {
  const of = (b: string): Result[] => results.filter((x) => x.case === c.name && x.build === b)
  const out: Record<string, unknown> = { case: c.name, nsPerHit: median(of('current').map((x) => x.nsPerHit)) }
  if (values.baseline !== undefined) {
    const base = of('baseline')
    const cur = of('current')
    out.baselineNsPerHit = median(base.map((x) => x.nsPerHit))
    // Per round: this build over the baseline measured right before it.
    out.ratio = median(cur.map((x, i) => x.nsPerHit / (base[i]?.nsPerHit ?? Number.NaN)))
  }
  return out
})
console.log(JSON.stringify({ seconds, pps: Number(values.pps), pool: Number(values.pool), scannerPps: Number(values['scanner-pps']), cores, summary, results }, null, 2))
