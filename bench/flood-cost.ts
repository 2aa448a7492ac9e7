/**
 * Where the host-traffic section's SYN-flood figure comes from (BENCHMARKS.md: a
 * kernel-filtered portanoia left the flood to a non-tripwire port at ~0.72× of no
 * receiver, while a measurement through the public API with another flood gave
 * ~0.97×). A targeted measurement, run on its own:
 *
 *   sudo node dist/bench/flood-cost.js [--rounds 5] [--seconds 2] [--receivers 1,3] [--senders 0]
 *
 * In one `pnperf-` namespace pair it floods a closed, non-tripwire port with two
 * senders — the bench's own (AF_PACKET sendmmsg with qdisc bypass: the cheapest path
 * a packet can take), also with GRO turned on on the veths (which the host-traffic
 * section's offloads test leaves on: veth's default is off), and hping3 --flood (a
 * raw socket through the kernel's IP stack and qdisc) — each against: no receiver; an AF_PACKET socket on the veth whose
 * filter drops everything (`ret #0`: the cost of being a tap at all); the same socket
 * with portanoia's tripwire program; the portanoia sensor on the veth; and the sensor
 * on 'any' (the public API's default). Rounds interleave every pair; each figure is
 * the median over rounds of the per-round ratio to no receiver, and of the time the
 * receiver adds per flood packet (1/rate − 1/rate without a receiver), in ns. veth
 * delivers in softirq on the sending core, so the receiver's kernel work is paid
 * there and shows as a lower send rate. Runs on the bench's main thread; children are
 * PinnedChild processes ended by PID; the namespaces are deleted on every path out.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { promisify } from 'node:util'
import { removeScratch, scratchDir } from '../lib/lab/scratch.js'
import { prepareReceivers, receiverArgv, type ReceiverKit } from './e2e.js'
import { createBenchNet, PinnedChild, type BenchNet } from './net.js'
import { summarize, table } from './stats.js'

const exec = promisify(execFile)
const SENDER_JS = fileURLToPath(new URL('./e2e-sender.js', import.meta.url))
const TRIPWIRE = 2222
const CLOSED = 9999
/** A source in the test range with no route back from the sensor: its RSTs die at the route lookup. */
const SPOOFED = '198.18.1.7'
const DROP_ALL = '0600000000000000' // one sock_filter: ret #0

type Receiver = { label: string; argv: (kit: ReceiverKit, net: BenchNet) => string[] }
const RECEIVERS: readonly Receiver[] = [
  { label: 'no receiver', argv: () => [] },
  { label: 'AF_PACKET tap, drop-all filter', argv: (kit, net) => [kit.afpacketBinary, net.sensorIf, String(TRIPWIRE), DROP_ALL] },
  { label: "AF_PACKET, portanoia's filter", argv: (kit, net) => receiverArgv(kit, net.sensorIf, TRIPWIRE, { name: 'afpacket', receiver: 'afpacket' }) },
  { label: 'portanoia (on the veth)', argv: (kit, net) => receiverArgv(kit, net.sensorIf, TRIPWIRE, { name: 'portanoia', receiver: 'portanoia' }) },
  { label: "portanoia (interface 'any')", argv: (kit) => receiverArgv(kit, 'any', TRIPWIRE, { name: 'portanoia', receiver: 'portanoia' }) },
]
const SENDERS = ['AF_PACKET sendmmsg', 'AF_PACKET sendmmsg, veth GRO on', 'hping3 --flood'] as const
type Sender = (typeof SENDERS)[number]

/** GRO on both veth ends (veth's default is off; `ethtool -K … gro on` also turns on its NAPI receive path). */
async function setGro(net: BenchNet, on: boolean): Promise<void> {
  for (const [ns, ifname] of [[net.sensorNs, net.sensorIf], [net.attackerNs, net.attackerIf]] as const) {
    await exec('ip', ['netns', 'exec', ns, 'ethtool', '-K', ifname, 'gro', on ? 'on' : 'off'], { timeout: 10_000 })
  }
}

async function floodRate(net: BenchNet, sender: Sender, core: number, seconds: number): Promise<number> {
  await setGro(net, sender.endsWith('GRO on'))
  if (sender === 'hping3 --flood') {
    // hping3 stops on SIGINT and prints "N packets transmitted" (exit 124 from timeout).
    const r = await exec('ip', ['netns', 'exec', net.attackerNs, 'taskset', '-c', String(core), 'timeout', '-s', 'INT', String(seconds),
      'hping3', '--flood', '-S', '-p', String(CLOSED), '-a', SPOOFED, net.sensorIpv4], { timeout: (seconds + 20) * 1000 }).catch((e: { stdout?: string; stderr?: string }) => e)
    const out = `${String(r.stdout ?? '')}${String(r.stderr ?? '')}`
    const m = /(\d+) packets transmitted/.exec(out)
    if (m === null) throw new Error(`hping3 printed no statistics: ${out.slice(-300)}`)
    return Number(m[1]) / seconds
  }
  const child = new PinnedChild('flood sender', net.attackerNs, core, [
    process.execPath, SENDER_JS, '--interface', net.attackerIf, '--dst', net.sensorIpv4, '--dst-mac', net.sensorMac,
    '--src-mac', net.attackerMac, '--port', String(CLOSED), '--seconds', String(seconds),
  ])
  try {
    await child.next()
    child.send('go')
    const r = await child.next(seconds * 1000 + 30_000)
    return Number(r.sent) / (Number(r.elapsedNs) / 1e9)
  } finally {
    await child.end()
  }
}

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '2' },
    // Subsets, by position in the lists above (e.g. --receivers 0,3 --senders 0).
    receivers: { type: 'string' },
    senders: { type: 'string' },
  },
})
const rounds = Number(values.rounds)
const seconds = Number(values.seconds)
const pick = <T>(all: readonly T[], list: string | undefined): T[] => (list === undefined ? [...all] : list.split(',').map((i) => all[Number(i)]!))
const receivers = pick(RECEIVERS, values.receivers)
const senders = pick(SENDERS, values.senders)
if (receivers[0]?.label !== 'no receiver') receivers.unshift(RECEIVERS[0]!)
if (process.getuid?.() !== 0) {
  console.error('flood-cost needs root (network namespaces, AF_PACKET)')
  process.exit(1)
}
const cores = { sender: 1, receiver: 0 }
const dir = await scratchDir('pnperf-flood-')
let net: BenchNet | undefined
const rate: Record<string, number[][]> = {}
try {
  net = await createBenchNet()
  const kit = await prepareReceivers(dir, TRIPWIRE)
  for (let r = 0; r < rounds && !net.aborted; r++) {
    // Rotate the receivers each round so none always runs first or last.
    const order = [...receivers.slice(r % receivers.length), ...receivers.slice(0, r % receivers.length)]
    for (const rec of order) {
      const argv = rec.argv(kit, net)
      const child = argv.length === 0 ? undefined : new PinnedChild(rec.label, net.sensorNs, cores.receiver, argv)
      try {
        if (child !== undefined) await child.next()
        for (const sender of senders) {
          const pps = await floodRate(net, sender, cores.sender, seconds)
          ;((rate[`${sender}|${rec.label}`] ??= [])[r] ??= []).push(pps)
          console.error(`[flood-cost] round ${r + 1}/${rounds} ${sender} / ${rec.label}: ${(pps / 1e3).toFixed(0)}k pps`)
        }
      } finally {
        if (child !== undefined) {
          child.send('quit')
          await child.end()
        }
      }
    }
  }
} finally {
  await net?.destroy()
  await removeScratch(dir)
}

const rows: string[][] = [['sender', 'receiver', 'pps median [min..max]', 'ratio to none', 'ns added per packet']]
for (const sender of senders) {
  const none = rate[`${sender}|no receiver`] ?? []
  for (const rec of receivers) {
    const mine = rate[`${sender}|${rec.label}`] ?? []
    const pps = summarize(mine.map((x) => x[0]!))
    const ratios = summarize(mine.flatMap((x, r) => (none[r] === undefined ? [] : [x[0]! / none[r]![0]!])))
    const added = summarize(mine.flatMap((x, r) => (none[r] === undefined ? [] : [1e9 / x[0]! - 1e9 / none[r]![0]!])))
    const f = (s: { median: number; min: number; max: number }, d: number): string => `${s.median.toFixed(d)} [${s.min.toFixed(d)}..${s.max.toFixed(d)}]`
    rows.push([sender, rec.label, `${(pps.median / 1e3).toFixed(0)}k [${(pps.min / 1e3).toFixed(0)}k..${(pps.max / 1e3).toFixed(0)}k]`,
      rec.label === 'no receiver' ? '1.00' : f(ratios, 2), rec.label === 'no receiver' ? '' : f(added, 0)])
  }
}
console.log(table(rows))
console.log(`${rounds} interleaved rounds, ${seconds} s per flood; senders on core ${cores.sender}, receivers on core ${cores.receiver}; flood to closed port ${CLOSED} (tripwire ${TRIPWIRE}).`)
