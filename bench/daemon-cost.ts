/**
 * The daemon's CPU per hit, end to end (issue 9), run on its own:
 *
 *   sudo node dist/bench/daemon-cost.js [--seconds 60] [--pps 500000] [--pool 100000] [--rounds 1] [--profile DIR]
 *
 * In a `pnperf-` namespace pair it starts `portanoia watch --tcp 2222 -i VETH --block all
 * --json --no-control --stats-interval 1s` in the sensor namespace, pinned to core 0 (its
 * JSON lines go to a pipe this process reads and discards, as `> /dev/null` would), and the
 * bench's sender pinned to core 1 floods the tripwire with SYNs from `--pool` distinct
 * forged sources in 198.18.0.0/15 at `--pps` for `--seconds`. Every hit goes through the
 * library, the policy engine (guards, caps: the spoofable-block breaker opens within the
 * first second, so most hits are decided, not blocked) and the responders (an nftables
 * table in the sensor namespace, deleted with it). Reported: the daemon's CPU (every
 * thread, /proc/PID/stat) from the start of the flood to 2.5 s after its end, divided by
 * the hits its policy engine had counted then (its latest stats event; the flood's backlog
 * is drained by then); the sensor's kernel and ring drops from the same event; its RSS
 * (VmRSS) every 5 s; and the sender's offered rate. The daemon and the sender are ended by PID; the
 * namespaces are deleted on every path out.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { cpuSeconds, createBenchNet, PinnedChild, type BenchNet } from './net.js'

const SENDER_JS = fileURLToPath(new URL('./e2e-sender.js', import.meta.url))
const CLI_JS = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url))
const TRIPWIRE = 2222

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    pps: { type: 'string', default: '500000' },
    pool: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '1' },
    // A V8 CPU profile of the daemon into this folder (node --cpu-prof), written when it exits.
    profile: { type: 'string' },
  },
})
const seconds = Number(values.seconds)
const pps = Number(values.pps)
const pool = Number(values.pool)
const rounds = Number(values.rounds)
if (process.getuid?.() !== 0) {
  console.error('daemon-cost needs root (network namespaces, AF_PACKET, nftables)')
  process.exit(1)
}
const cores = { sender: 1, receiver: 0 }
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function rssMiB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return m === null ? Number.NaN : Number(m[1]) / 1024
}

interface Round {
  offeredPps: number
  sent: number
  hits: number
  cpuSeconds: number
  nsPerHit: number
  coreFraction: number
  rssMiB: number[]
  decisions: Record<string, number>
  kernelDrops: number
  ringDrops: number
}

async function round(net: BenchNet): Promise<Round> {
  const daemon = new PinnedChild('portanoia watch', net.sensorNs, cores.receiver, [
    process.execPath, ...(values.profile !== undefined ? ['--cpu-prof', '--cpu-prof-dir', values.profile] : []), CLI_JS, 'watch', '--tcp', String(TRIPWIRE), '-i', net.sensorIf, '--block', 'all', '--json', '--no-control', '--stats-interval', '1s',
  ])
  let sender: PinnedChild | undefined
  try {
    // The first line is the daemon's start event: the sensor is open.
    await daemon.next(60_000)
    const pid = daemon.child.pid!
    sender = new PinnedChild('flood sender', net.attackerNs, cores.sender, [
      process.execPath, SENDER_JS, '--interface', net.attackerIf, '--dst', net.sensorIpv4, '--dst-mac', net.sensorMac,
      '--src-mac', net.attackerMac, '--port', String(TRIPWIRE), '--pool', String(pool), '--seconds', String(seconds), '--pps', String(pps),
    ])
    await sender.next(120_000)
    const cpu0 = await cpuSeconds(pid)
    const rss = [await rssMiB(pid)]
    sender.send('go')
    const done = sender.next(seconds * 1000 + 60_000)
    let finished = false
    void done.finally(() => (finished = true)).catch(() => undefined)
    while (!finished) {
      await Promise.race([sleep(5000), done.catch(() => undefined)])
      if (!finished) rss.push(await rssMiB(pid))
    }
    const sent = await done
    await sleep(2500)
    const cpu1 = await cpuSeconds(pid)
    rss.push(await rssMiB(pid))
    // Every line it printed so far; the last stats event is at most 1 s old.
    let stats: { policy?: { hits?: number; decisions?: Record<string, number> }; sensor?: Record<string, number> } | undefined
    for (;;) {
      const line = await daemon.next(200).catch(() => undefined)
      if (line === undefined) break
      if (line.type === 'stats') stats = line as typeof stats
    }
    const hits = stats?.policy?.hits ?? 0
    const cpu = cpu1 - cpu0
    const elapsed = Number(sent.elapsedNs) / 1e9
    return {
      offeredPps: Number(sent.sent) / elapsed,
      sent: Number(sent.sent),
      hits,
      cpuSeconds: cpu,
      nsPerHit: hits > 0 ? (cpu * 1e9) / hits : Number.NaN,
      coreFraction: cpu / (elapsed + 1),
      rssMiB: rss,
      decisions: stats?.policy?.decisions ?? {},
      kernelDrops: stats?.sensor?.kernelDrops ?? Number.NaN,
      ringDrops: stats?.sensor?.ringDrops ?? Number.NaN,
    }
  } finally {
    await sender?.end()
    await daemon.end()
  }
}

let net: BenchNet | undefined
const results: Round[] = []
try {
  net = await createBenchNet()
  for (let r = 0; r < rounds && !net.aborted; r++) {
    const res = await round(net)
    results.push(res)
    console.error(`[daemon-cost] round ${r + 1}/${rounds}: offered ${(res.offeredPps / 1e3).toFixed(0)}k pps, sent ${res.sent}, hits ${res.hits}, ` +
      `drops ${res.kernelDrops}+${res.ringDrops}, CPU ${res.cpuSeconds.toFixed(2)} s = ${res.nsPerHit.toFixed(0)} ns/hit (${(res.coreFraction * 100).toFixed(0)} % of a core), ` +
      `RSS MiB ${res.rssMiB.map((x) => x.toFixed(0)).join(' ')}`)
  }
} finally {
  await net?.destroy()
}
console.log(JSON.stringify({ seconds, pps, pool, cores, results }, null, 2))
