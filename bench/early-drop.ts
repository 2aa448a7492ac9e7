/**
 * What enforcing blocks at ingress (`--enforce ingress|both`, issue 12) buys and
 * costs, measured on its own:
 *
 *   sudo node dist/bench/early-drop.js [--rounds 5] [--seconds 2] [--pps 500000] [--entries 100000] [--part flood|table]
 *
 * Part 1, a flood from banned sources: in one `pnperf-` namespace pair the bench's
 * sender (the addon's Sender, sendmmsg with qdisc bypass) sends SYNs from its 4096
 * pool sources to a closed port, paced at `--pps`, against three set-ups that differ
 * only in where the sources are banned: not at all (the table exists, empty), in the
 * inet input chain (`enforce: input`), in the netdev ingress chain of the sensor's
 * veth (`enforce: ingress`). Every source is banned through the NftablesResponder.
 * Rounds interleave the set-ups (rotated). Per trial: what the sender got out, what
 * the veth received, what each chain's counters dropped, what reached TCP (Tcp
 * InSegs of the sensor namespace), and the CPU of the receiving core from
 * /proc/stat (veth delivers in softirq on the sending core, so that core pays the
 * receive path; user time there is the sender's own, the same in every set-up).
 *
 * Part 2, a mixed table of `--entries` bans — half IPv4 addresses, a quarter IPv4
 * /31 networks, a quarter IPv6 /64 networks (the prefix sets) — loaded through the
 * responder with `enforce: input` and with `enforce: both` (every write to two
 * tables): load time (bans per second, ratio both/input in the same round), then the
 * unbanned traffic (unpaced SYNs from 1024 sources none of which is banned) the
 * sensor delivers through the stack with no table, with the table enforced at input,
 * and at ingress; ratios to no table within a round. Fresh namespaces per trial.
 * Runs on the bench's main thread; children are PinnedChild processes ended by PID;
 * namespaces are deleted on every path out; every nft command runs inside them.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { formatCidr, parseCidr } from '../lib/policy/addr.js'
import type { Enforce } from '../lib/responders/nft-ingress.js'
import { NftablesResponder } from '../lib/responders/nftables.js'
import { netnsRun } from '../lib/responders/run.js'
import type { BlockRequest, PrefixRequest } from '../lib/responders/types.js'
import { ipv4Bans, poolSources } from './addresses.js'
import { createBenchNet, linkCounters, PinnedChild, type BenchNet } from './net.js'
import { summarize, table } from './stats.js'
import { buildSynPool } from './traffic.js'

const exec = promisify(execFile)
const SENDER_JS = fileURLToPath(new URL('./e2e-sender.js', import.meta.url))
const CLOSED = 9999
const FLOOD_POOL = 4096
const TRAFFIC_POOL = 1024
const TTL_MS = 3_600_000
const cores = { sender: 1, other: 0 }

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '2' },
    pps: { type: 'string', default: '500000' },
    entries: { type: 'string', default: '100000' },
    part: { type: 'string' },
  },
})
const rounds = Number(values.rounds)
const seconds = Number(values.seconds)
const pps = Number(values.pps)
const entries = Number(values.entries)

type Cpu = { busy: number; kernel: number; softirq: number; total: number }
/** Jiffies of one core from /proc/stat (host-wide: the namespaces share the cores). */
async function cpu(core: number): Promise<Cpu> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n').find((l) => l.startsWith(`cpu${core} `))
  const f = (line ?? '').trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f
  const total = user + nice + system + idle + iowait + irq + softirq + steal
  return { busy: total - idle - iowait, kernel: system + irq + softirq, softirq, total }
}

/** A /proc/net/snmp counter of the namespace (`Tcp` `InSegs`, `Ip` `InDelivers`). */
async function snmp(ns: string, group: string, name: string): Promise<number> {
  const { stdout } = await exec('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'], { timeout: 10_000 })
  const lines = stdout.split('\n').filter((l) => l.startsWith(`${group}:`))
  const i = (lines[0] ?? '').split(/\s+/).indexOf(name)
  const v = Number((lines[1] ?? '').split(/\s+/)[i])
  if (i < 0 || !Number.isFinite(v)) throw new Error(`cannot read ${group} ${name}`)
  return v
}

/** Packets counted by the rules of one of portanoia's chains (0 when it does not exist). */
async function chainDrops(ns: string, family: string, chain: string): Promise<number> {
  const r = await netnsRun(ns)('nft', ['-j', 'list', 'chain', family, 'portanoia', chain])
  if (r.code !== 0) return 0
  let n = 0
  for (const item of (JSON.parse(r.stdout) as { nftables: Array<{ rule?: { expr: Array<{ counter?: { packets: number } }> } }> }).nftables) {
    for (const e of item.rule?.expr ?? []) n += e.counter?.packets ?? 0
  }
  return n
}

async function send(net: BenchNet, pool: number, port: number, rate: number): Promise<{ sent: number; seconds: number }> {
  const child = new PinnedChild('sender', net.attackerNs, cores.sender, [
    process.execPath, SENDER_JS, '--interface', net.attackerIf, '--dst', net.sensorIpv4, '--dst-mac', net.sensorMac,
    '--src-mac', net.attackerMac, '--port', String(port), '--pool', String(pool), '--seconds', String(seconds), '--pps', String(rate),
  ])
  try {
    await child.next(60_000)
    child.send('go')
    const r = await child.next(seconds * 1000 + 60_000)
    return { sent: Number(r.sent), seconds: Number(r.elapsedNs) / 1e9 }
  } finally {
    await child.end()
  }
}

async function responder(net: BenchNet, enforce: Enforce, prefixes = false): Promise<NftablesResponder> {
  const nft = new NftablesResponder({ run: netnsRun(net.sensorNs), enforce, prefixes, ...(enforce !== 'input' && { devices: [net.sensorIf] }) })
  await nft.uninstall()
  await nft.start()
  return nft
}

const f0 = (s: { median: number; min: number; max: number }, d = 0, k = 1): string => `${(s.median / k).toFixed(d)} [${(s.min / k).toFixed(d)}..${(s.max / k).toFixed(d)}]`

// ------------------------------------------------------------------ part 1

type FloodMode = 'no ban' | 'banned at input' | 'banned at ingress'
interface FloodTrial {
  mode: FloodMode
  round: number
  offered: number
  rx: number
  ingressDrops: number
  inputDrops: number
  tcpIn: number
  /**
   * Receiving core, share of its time: busy, in the kernel (system + irq + softirq:
   * the receive path, and the sender's own sendmmsg, the same in every set-up), softirq.
   * The paced sender spins in user space between its batches, so busy says little.
   */
  busy: number
  kernel: number
  softirq: number
  /** The other core's busy share (noise from the rest of the machine shows here too). */
  otherBusy: number
}

async function floodPart(): Promise<void> {
  const pool = buildSynPool({ count: FLOOD_POOL, dst: '198.18.0.1', dstPort: CLOSED, dstMac: '02:00:00:00:00:01', srcMac: '02:00:00:00:00:02' })
  const sources = [...poolSources(pool)]
  const modes: FloodMode[] = ['no ban', 'banned at input', 'banned at ingress']
  const trials: FloodTrial[] = []
  const net = await createBenchNet()
  try {
    for (let r = 0; r < rounds && !net.aborted; r++) {
      const order = [...modes.slice(r % modes.length), ...modes.slice(0, r % modes.length)]
      for (const mode of order) {
        const nft = await responder(net, mode === 'banned at ingress' ? 'ingress' : 'input')
        if (mode !== 'no ban') {
          const res = await nft.block(sources.map((address): BlockRequest => ({ address, family: 4, ttlMs: TTL_MS })))
          if (res.failed.length > 0) throw new Error(`banning the flood's sources: ${res.failed[0]?.error ?? ''}`)
        }
        const ing0 = await chainDrops(net.sensorNs, 'netdev', `ingress_${net.sensorIf}`)
        const in0 = await chainDrops(net.sensorNs, 'inet', 'input')
        const tcp0 = await snmp(net.sensorNs, 'Tcp', 'InSegs')
        const v0 = await linkCounters(net.sensorNs, net.sensorIf)
        const c0 = await cpu(cores.sender)
        const o0 = await cpu(cores.other)
        const s = await send(net, FLOOD_POOL, CLOSED, pps)
        const c1 = await cpu(cores.sender)
        const o1 = await cpu(cores.other)
        await new Promise((resolve) => setTimeout(resolve, 200))
        const v1 = await linkCounters(net.sensorNs, net.sensorIf)
        const t: FloodTrial = {
          mode,
          round: r,
          offered: s.sent / s.seconds,
          rx: (v1.rxPackets - v0.rxPackets) / s.seconds,
          ingressDrops: ((await chainDrops(net.sensorNs, 'netdev', `ingress_${net.sensorIf}`)) - ing0) / s.seconds,
          inputDrops: ((await chainDrops(net.sensorNs, 'inet', 'input')) - in0) / s.seconds,
          tcpIn: ((await snmp(net.sensorNs, 'Tcp', 'InSegs')) - tcp0) / s.seconds,
          busy: (c1.busy - c0.busy) / (c1.total - c0.total),
          kernel: (c1.kernel - c0.kernel) / (c1.total - c0.total),
          softirq: (c1.softirq - c0.softirq) / (c1.total - c0.total),
          otherBusy: (o1.busy - o0.busy) / (o1.total - o0.total),
        }
        trials.push(t)
        console.error(`[early-drop] flood round ${r + 1}/${rounds} ${mode}: offered ${(t.offered / 1e3).toFixed(0)}k pps, ingress drops ${(t.ingressDrops / 1e3).toFixed(0)}k, input drops ${(t.inputDrops / 1e3).toFixed(0)}k, to TCP ${(t.tcpIn / 1e3).toFixed(0)}k; core ${cores.sender} busy ${(t.busy * 100).toFixed(0)}%, kernel ${(t.kernel * 100).toFixed(0)}% (softirq ${(t.softirq * 100).toFixed(0)}%)`)
        await nft.uninstall()
      }
    }
  } finally {
    await net.destroy()
  }
  const rows: string[][] = [['set-up', 'offered pps', 'offered vs no ban', 'core ns per packet', 'received (veth) pps', 'dropped at ingress pps', 'dropped at input pps', 'reached TCP pps', `core ${cores.sender} busy %`, 'kernel %', 'softirq %', 'kernel vs no ban', `core ${cores.other} busy %`]]
  for (const mode of modes) {
    const ts = trials.filter((t) => t.mode === mode)
    const s = (k: keyof FloodTrial): ReturnType<typeof summarize> => summarize(ts.map((t) => t[k] as number))
    const vsNone = (f: (t: FloodTrial) => number): ReturnType<typeof summarize> =>
      summarize(ts.flatMap((t) => {
        const base = trials.find((b) => b.mode === 'no ban' && b.round === t.round)
        return base === undefined ? [] : [f(t) / f(base)]
      }))
    const ratio = vsNone((t) => t.kernel)
    // Unpaced, the sending core is saturated: its time per packet (send + receive path) is 1/rate.
    const perPacket = pps > 0 ? '' : f0(summarize(ts.map((t) => 1e9 / t.offered)))
    rows.push([mode, f0(s('offered'), 0, 1e3) + 'k', mode === 'no ban' ? '1.00' : f0(vsNone((t) => t.offered), 2), perPacket, f0(s('rx'), 0, 1e3) + 'k', f0(s('ingressDrops'), 0, 1e3) + 'k', f0(s('inputDrops'), 0, 1e3) + 'k', f0(s('tcpIn'), 0, 1e3) + 'k',
      f0(summarize(ts.map((t) => t.busy * 100))), f0(summarize(ts.map((t) => t.kernel * 100))), f0(summarize(ts.map((t) => t.softirq * 100))), mode === 'no ban' ? '1.00' : f0(ratio, 2), f0(summarize(ts.map((t) => t.otherBusy * 100)))])
  }
  console.log(`Flood from ${FLOOD_POOL} banned sources, ${pps > 0 ? `paced at ${pps / 1e3}k pps` : 'unpaced'} for ${seconds} s, ${rounds} interleaved rounds (median [min..max]); sender and the veth's receive path on core ${cores.sender}:`)
  console.log(table(rows))
}

// ------------------------------------------------------------------ part 2

/** The mixed bans: half IPv4 addresses, a quarter IPv4 /31s, a quarter IPv6 /64s; none covers one of the traffic's sources. */
function mixedBans(count: number, avoid: ReadonlySet<string>): { addresses: BlockRequest[]; prefixes: PrefixRequest[] } {
  const nAddr = Math.floor(count / 2)
  const n4 = Math.floor(count / 4)
  const n6 = count - nAddr - n4
  const addresses = ipv4Bans(nAddr, avoid).map((address): BlockRequest => ({ address, family: 4, ttlMs: TTL_MS }))
  // /31s from the top of 198.18.0.0/15 down, skipping any pair holding a traffic source.
  const prefixes: PrefixRequest[] = []
  for (let c = 511; c >= 1 && prefixes.length < n4; c--) {
    for (let d = 0; d < 256 && prefixes.length < n4; d += 2) {
      const net = `198.${18 + (c >> 8)}.${c & 0xff}`
      if (avoid.has(`${net}.${d}`) || avoid.has(`${net}.${d + 1}`)) continue
      prefixes.push({ prefix: `${net}.${d}/31`, family: 4, ttlMs: TTL_MS })
    }
  }
  for (let i = 0; i < n6; i++) prefixes.push({ prefix: formatCidr(parseCidr(`fd52:43dd:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::/64`)), family: 6, ttlMs: TTL_MS })
  return { addresses, prefixes }
}

type TableMode = 'no table' | 'enforce input' | 'enforce ingress' | 'enforce both'
interface TableTrial {
  mode: TableMode
  round: number
  loadSeconds: number
  offered: number
  delivered: number
}

async function tableTrial(mode: TableMode, round: number, bans: ReturnType<typeof mixedBans>): Promise<TableTrial> {
  const net = await createBenchNet()
  try {
    let loadSeconds = 0
    if (mode !== 'no table') {
      const nft = await responder(net, mode === 'enforce input' ? 'input' : mode === 'enforce ingress' ? 'ingress' : 'both', true)
      const t0 = performance.now()
      // As the daemon writes them: batches of 4096 addresses, prefixes in their own calls.
      for (let i = 0; i < bans.addresses.length; i += 4096) {
        const r = await nft.block(bans.addresses.slice(i, i + 4096))
        if (r.failed.length > 0) throw new Error(`addresses: ${r.failed[0]?.error ?? ''}`)
      }
      for (let i = 0; i < bans.prefixes.length; i += 4096) {
        const r = await nft.blockPrefixes(bans.prefixes.slice(i, i + 4096))
        if (r.failed.length > 0) throw new Error(`prefixes: ${r.failed[0]?.error ?? ''}`)
      }
      loadSeconds = (performance.now() - t0) / 1000
      const held = (await nft.list()).length
      if (held !== bans.addresses.length) throw new Error(`${held} of ${bans.addresses.length} addresses in the kernel after loading`)
    }
    const d0 = await snmp(net.sensorNs, 'Ip', 'InDelivers')
    const s = await send(net, TRAFFIC_POOL, 8080, 0)
    await new Promise((resolve) => setTimeout(resolve, 200))
    const delivered = ((await snmp(net.sensorNs, 'Ip', 'InDelivers')) - d0) / s.seconds
    return { mode, round, loadSeconds, offered: s.sent / s.seconds, delivered }
  } finally {
    await net.destroy()
  }
}

async function tablePart(): Promise<void> {
  const pool = buildSynPool({ count: TRAFFIC_POOL, dst: '198.18.0.1', dstPort: 8080, dstMac: '02:00:00:00:00:01', srcMac: '02:00:00:00:00:02' })
  const bans = mixedBans(entries, poolSources(pool))
  const modes: TableMode[] = ['no table', 'enforce input', 'enforce ingress', 'enforce both']
  const trials: TableTrial[] = []
  for (let r = 0; r < rounds; r++) {
    const order = [...modes.slice(r % modes.length), ...modes.slice(0, r % modes.length)]
    for (const mode of order) {
      const t = await tableTrial(mode, r, bans)
      trials.push(t)
      console.error(`[early-drop] table round ${r + 1}/${rounds} ${mode}: loaded in ${t.loadSeconds.toFixed(1)} s; offered ${(t.offered / 1e3).toFixed(0)}k pps, delivered ${(t.delivered / 1e3).toFixed(0)}k pps`)
    }
  }
  const within = (t: TableTrial, base: TableMode, f: (x: TableTrial) => number): number[] => {
    const b = trials.find((x) => x.mode === base && x.round === t.round)
    return b === undefined ? [] : [f(t) / f(b)]
  }
  const rows: string[][] = [['set-up', 'bans loaded per second', 'load vs enforce input', 'offered pps', 'delivered pps (unbanned)', 'delivered vs no table']]
  for (const mode of modes) {
    const ts = trials.filter((t) => t.mode === mode)
    const rate = summarize(ts.map((t) => (t.loadSeconds > 0 ? entries / t.loadSeconds : Number.NaN)))
    rows.push([
      mode,
      mode === 'no table' ? '' : f0(rate),
      mode === 'no table' ? '' : mode === 'enforce input' ? '1.00' : f0(summarize(ts.flatMap((t) => within(t, 'enforce input', (x) => 1 / x.loadSeconds))), 2),
      f0(summarize(ts.map((t) => t.offered)), 0, 1e3) + 'k',
      f0(summarize(ts.map((t) => t.delivered)), 0, 1e3) + 'k',
      mode === 'no table' ? '1.00' : f0(summarize(ts.flatMap((t) => within(t, 'no table', (x) => x.delivered))), 2),
    ])
  }
  console.log(`A table of ${entries} bans (${bans.addresses.length} IPv4 addresses, ${bans.prefixes.filter((p) => p.family === 4).length} IPv4 /31s, ${bans.prefixes.filter((p) => p.family === 6).length} IPv6 /64s), ${rounds} interleaved rounds, fresh namespaces per trial; unbanned SYNs from ${TRAFFIC_POOL} sources, unpaced, ${seconds} s:`)
  console.log(table(rows))
}

if (process.getuid?.() !== 0) {
  console.error('early-drop needs root (network namespaces, nft)')
  process.exit(1)
}
if (values.part !== 'table') await floodPart()
if (values.part !== 'flood') await tablePart()
