/**
 * `npm run coverage` (as root): runs real scanners — nmap (every scan type, both
 * families, and its evasion options), masscan, zmap, hping3 — against a sensor in
 * network namespaces, and writes docs/coverage.md from what the sensor returned in
 * that run: per technique the exact command, whether it was detected (hits, kinds)
 * and how the real and the forged senders were attributed. Nothing in the table is
 * written by hand; a tool that refuses to run is a row that says so, with its words.
 *
 * The lab (lib/lab/netns.ts createBridgeNet): one switched segment, 198.19.0.0/24 and
 * fd52:43dd:ff::/64, with the sensor (host 0), the attacker (host 1, every command runs
 * in its namespace) and a bystander (host 2, whose address -S and -D claim). The
 * sensor has no default route, so random decoys (-D RND) have no route back; one row
 * adds a default route via the segment's hub to show what a sensor whose uplink is the
 * attacker's link sees. Ground truth per hit comes from the lab, not from portanoia: a
 * hit is from its real sender when the lab host that holds its source address sent
 * the frame (its MAC), or when the kernel completed the handshake (verified).
 *
 * Each technique has its own tripwire, and a fresh Attributor (no memory of earlier
 * rows' handshakes); hits are attributed as they arrive, as the daemon does. A
 * technique ends with a sentinel: a crafted UDP datagram from the attacker to a
 * sentinel port; hits arrive in wire order, so once it is seen every probe sent
 * before it has been seen too. Runs on the main thread; needs root. Namespaces are
 * removed on every path out (and by netns.ts's exit hook).
 *
 * Usage: `node dist/scripts/coverage.js [--out FILE] [--only ID]... [--list]`;
 * `--list` prints the technique ids, `--only` runs some of them (the privileged test
 * does), `--out` writes elsewhere than docs/coverage.md.
 */
import { type ChildProcess, execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { release } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { attachAttributor } from '../lib/attribution/attach.js'
import type { Attributor } from '../lib/attribution/attributor.js'
import type { Attributed } from '../lib/attribution/types.js'
import { loadBinding, type NativeSender, PACKAGE_ROOT } from '../lib/binding.js'
import { buildFrame, bytesToIp, ipToBytes } from '../lib/lab/frames.js'
import { type BridgeNet, createBridgeNet, type NetnsHost, stopChild } from '../lib/lab/netns.js'
import { removeScratch, scratchDir } from '../lib/lab/scratch.js'
import { open, type Sensor } from '../lib/sensor.js'
import type { Hit, Proto } from '../lib/types.js'
import { renderCoverage } from './coverage-render.js'

/** The lab as the techniques see it. */
export interface Lab {
  net: BridgeNet
  sensor: NetnsHost
  attacker: NetnsHost
  bystander: NetnsHost
  /** On the segment, held by nobody. */
  unheld: { 4: string; 6: string }
}

export interface Technique {
  /** Stable id for --only, e.g. `nmap-sS/4`. */
  id: string
  /** What the row is called, e.g. `nmap -sS`. */
  label: string
  family: 4 | 6
  tool: 'nmap' | 'masscan' | 'zmap' | 'hping3'
  /** The tripwire this technique's probes go to (its own, so hits tell rows apart). */
  tripwire: { proto: Proto; port: number }
  /** The tool's argv (without the tool's name). */
  args(lab: Lab, port: number): string[]
  /** What of the hits the row reports besides kinds: the fragment bit, IP options, source ports. */
  shows?: 'fragment' | 'ipOptions' | 'srcPort'
  /** Set-up in the lab before the tool runs (undone by `undo`), said in the row's notes. */
  setup?: { note: string; apply(lab: Lab): Promise<void>; undo(lab: Lab): Promise<void> }
}

export interface Group {
  /** Who sent it, by the lab's truth: `attacker`, `bystander`, `on-link unheld`, `off-link`. */
  who: string
  kind: string
  attribution: string
  evidence: string[]
  count: number
  sources: number
}

export interface Row {
  technique: Technique
  command: string
  /** The tool's exit status and, when it failed, its last words. */
  exit: number
  refused?: string
  hits: number
  kinds: string[]
  /** Hits whose source address is their real sender's. */
  real: Group[]
  /** Hits whose source address its sender does not hold. */
  forged: Group[]
  /** A real sender called forged (a false accusation). */
  falseAccusations: number
  /** A forged source not called forged. */
  missedForgeries: number
  /** Facts of the packets: fragments, IP options, source ports. */
  facts: string[]
  /** The sentinel was not seen in time: the hits may be incomplete. */
  incomplete: boolean
  /** Frames to the technique's tripwire that tcpdump saw arrive at the sensor before its sentinel: the independent count. */
  wire: number
  /** Frames and hits to the technique's tripwire after its sentinel (late replies; not in `hits`, not attributed). */
  late: { frames: number; hits: number }
}

export interface CoverageResult {
  rows: Row[]
  versions: Record<string, string>
  date: string
  elapsedMs: number
  lab: { sensor: string[]; attacker: string[]; bystander: string[]; unheld: string[] }
}

const run = promisify(execFile)

// One real probe per port, quickly: no retries, short RTT guesses (the namespaces
// answer in microseconds), no host discovery, no DNS.
const NMAP = ['-n', '-Pn', '--max-retries', '0', '-T5', '--initial-rtt-timeout', '50ms', '--max-rtt-timeout', '100ms']
const SENTINEL_PORT = 3999
const SENTINEL_TIMEOUT_MS = 15_000
const SETTLE_TIMEOUT_MS = 5_000
const TOOL_TIMEOUT_MS = 60_000

type Scan = { flag: string; proto: Proto }
const SCANS: Scan[] = [
  { flag: '-sT', proto: 'tcp' },
  { flag: '-sS', proto: 'tcp' },
  { flag: '-sF', proto: 'tcp' },
  { flag: '-sN', proto: 'tcp' },
  { flag: '-sX', proto: 'tcp' },
  { flag: '-sA', proto: 'tcp' },
  { flag: '-sW', proto: 'tcp' },
  { flag: '-sM', proto: 'tcp' },
  { flag: '-sU', proto: 'udp' },
  { flag: '-sY', proto: 'sctp' },
  { flag: '-sZ', proto: 'sctp' },
  { flag: '-sO', proto: 'ip' },
]

const target = (lab: Lab, family: 4 | 6): string => (family === 4 ? lab.sensor.ipv4 : lab.sensor.ipv6)
const v6 = (family: 4 | 6): string[] => (family === 6 ? ['-6'] : [])

/**
 * nmap 7.93 routes an IPv4 -S address only when the host holds it ("setup_target:
 * failed to determine route" otherwise): the attacker puts it on lo and answers no
 * ARP for it on the link (arp_ignore=1), as a forger would.
 */
function holdQuietly(address: (lab: Lab) => string): NonNullable<Technique['setup']> {
  return {
    note: 'nmap 7.93 routes an IPv4 -S address only when the host holds it: the attacker holds it on lo and answers no ARP for it (arp_ignore=1)',
    // Quiet first, then the address; on the way back the address goes first: an ARP
    // question in between (the sensor still resolving a decoy of an earlier row) would
    // otherwise get the attacker's answer, and a confirmed entry says link:match.
    apply: async (lab) => {
      await mustRun(lab.attacker, 'sysctl', ['-qw', 'net.ipv4.conf.all.arp_ignore=1'])
      await mustRun(lab.attacker, 'ip', ['addr', 'add', `${address(lab)}/32`, 'dev', 'lo'])
    },
    undo: async (lab) => {
      await mustRun(lab.attacker, 'ip', ['addr', 'del', `${address(lab)}/32`, 'dev', 'lo'])
      await mustRun(lab.attacker, 'sysctl', ['-qw', 'net.ipv4.conf.all.arp_ignore=0'])
    },
  }
}

const DEFAULT_ROUTE: NonNullable<Technique['setup']> = {
  note: 'the sensor routes everything via the hub, on the attacker’s link: the random decoys have a route back through the interface they came in on',
  apply: async (lab) => {
    await mustRun(lab.sensor, 'ip', ['route', 'add', 'default', 'via', lab.net.hub.ipv4])
  },
  undo: async (lab) => {
    await mustRun(lab.sensor, 'ip', ['route', 'del', 'default', 'via', lab.net.hub.ipv4])
  },
}

/** Every technique, in the order they run; each gets tripwire port 3001, 3002, … (IP protocol 47 for -sO). */
export function techniques(): Technique[] {
  const out: Technique[] = []
  let port = 3000
  const add = (t: Omit<Technique, 'tripwire' | 'id'> & { key: string; proto?: Proto }): void => {
    const proto = t.proto ?? 'tcp'
    const { key, proto: _p, ...rest } = t
    out.push({ ...rest, id: `${key}/${t.family}`, tripwire: { proto, port: proto === 'ip' ? 47 : ++port } })
  }
  for (const family of [4, 6] as const) {
    for (const s of SCANS) {
      add({
        key: `nmap${s.flag}`,
        label: `nmap ${s.flag}`,
        family,
        tool: 'nmap',
        proto: s.proto,
        args: (lab, p) => [...v6(family), ...NMAP, s.flag, '-p', String(p), target(lab, family)],
      })
    }
  }
  const nmapSyn = (key: string, label: string, family: 4 | 6, extra: (lab: Lab) => string[], more: Pick<Technique, 'setup' | 'shows'> = {}): void =>
    add({ key, label, family, tool: 'nmap', ...more, args: (lab, p) => [...v6(family), ...NMAP, '-sS', ...extra(lab), '-p', String(p), target(lab, family)] })
  for (const family of [4, 6] as const) {
    const by = (lab: Lab): string => (family === 4 ? lab.bystander.ipv4 : lab.bystander.ipv6)
    const unheld = (lab: Lab): string => lab.unheld[family]
    nmapSyn('nmap-f', 'nmap -sS -f', family, () => ['-f'], { shows: 'fragment' })
    nmapSyn('nmap-D-onlink', 'nmap -sS -D (on-link decoys)', family, (lab) => ['-D', `${by(lab)},${unheld(lab)},ME`])
    nmapSyn('nmap-D-rnd', 'nmap -sS -D RND (no route back)', family, () => ['-D', 'RND:4'])
    if (family === 4) nmapSyn('nmap-D-rnd-routed', 'nmap -sS -D RND (routed back via the link)', family, () => ['-D', 'RND:4'], { setup: DEFAULT_ROUTE })
    nmapSyn('nmap-S-bystander', 'nmap -sS -S (a bystander’s address)', family, (lab) => ['-S', by(lab), '-e', lab.attacker.ifname], family === 4 ? { setup: holdQuietly(by) } : {})
    nmapSyn('nmap-S-unheld', 'nmap -sS -S (an unheld on-link address)', family, (lab) => ['-S', unheld(lab), '-e', lab.attacker.ifname], family === 4 ? { setup: holdQuietly(unheld) } : {})
    nmapSyn('nmap-g', 'nmap -sS -g 53', family, () => ['-g', '53'], { shows: 'srcPort' })
    nmapSyn('nmap-badsum', 'nmap -sS --badsum', family, () => ['--badsum'])
    nmapSyn('nmap-ip-options', 'nmap -sS --ip-options R', family, () => ['--ip-options', 'R'], { shows: 'ipOptions' })
  }
  add({
    key: 'masscan',
    label: 'masscan (SYN)',
    family: 4,
    tool: 'masscan',
    // No gateway on the segment: the sensor's own MAC is the "router" masscan sends to.
    args: (lab, p) => [`-p${p}`, lab.sensor.ipv4, '-e', lab.attacker.ifname, '--router-mac', lab.sensor.mac, '--rate', '1000', '--wait', '0'],
  })
  add({
    key: 'zmap',
    label: 'zmap (SYN)',
    family: 4,
    tool: 'zmap',
    // zmap refuses without a gateway MAC (-G: the sensor's, it is on-link) and, by its
    // default blacklist, every private range (-b /dev/null: an empty one).
    args: (lab, p) => ['-p', String(p), '-i', lab.attacker.ifname, '-G', lab.sensor.mac, '-b', '/dev/null', '-c', '1', '-q', `${lab.sensor.ipv4}/32`],
  })
  const hping = (key: string, label: string, flags: string[], proto: Proto = 'tcp', shows?: Technique['shows']): void =>
    add({ key, label, family: 4, tool: 'hping3', proto, ...(shows && { shows }), args: (lab, p) => ['-q', ...flags, '-c', '1', '-p', String(p), lab.sensor.ipv4] })
  hping('hping3-S', 'hping3 -S', ['-S'])
  hping('hping3-F', 'hping3 -F', ['-F'])
  hping('hping3-udp', 'hping3 --udp', ['--udp'], 'udp')
  hping('hping3-f', 'hping3 -S -f (fragments)', ['-S', '-f'], 'tcp', 'fragment')
  return out
}

async function mustRun(host: NetnsHost, cmd: string, args: readonly string[]): Promise<void> {
  const r = await host.exec(cmd, args, { timeoutMs: 10_000 })
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${host.ns} failed (${r.code}): ${r.stderr.trim()}`)
}

/**
 * Waits until no host has a tentative IPv6 address. The link-local addresses run
 * duplicate address detection for about 1.5 s after the links come up; until they
 * are done nmap 7.93's IPv6 -S and -D scans exit 0 without sending a probe (seen in a
 * capture on the attacker's link), which would read as a miss of the sensor.
 */
async function addressesSettled(hosts: readonly NetnsHost[]): Promise<void> {
  const deadline = Date.now() + 10_000
  for (const h of hosts) {
    for (;;) {
      const r = await h.exec('ip', ['-6', 'addr', 'show', 'tentative'])
      if (r.code === 0 && r.stdout.trim() === '') break
      if (Date.now() > deadline) throw new Error(`IPv6 addresses in ${h.ns} still tentative after 10 s: ${r.stdout.trim()}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

/**
 * tcpdump on the sensor's link, inbound frames only, into a scratch pcap: the count of
 * each technique's frames that did arrive, independent of portanoia, so a row tells a
 * tool that sent nothing from a probe the sensor missed.
 */
class WireCapture {
  private constructor(
    readonly dir: string,
    readonly file: string,
    readonly child: ChildProcess,
  ) {}

  static async start(host: NetnsHost): Promise<WireCapture> {
    const dir = await scratchDir('coverage-')
    const file = join(dir, 'wire.pcap')
    // -Z root: tcpdump would drop to its own user, who may not write in the scratch folder.
    const child = host.spawn('tcpdump', ['-Q', 'in', '-nn', '-U', '--immediate-mode', '-Z', 'root', '-i', host.ifname, '-w', file])
    const capture = new WireCapture(dir, file, child)
    // tcpdump says "listening on" once its socket is bound: frames from then on are in the file.
    const ready = await new Promise<boolean>((resolve) => {
      let text = ''
      const timer = setTimeout(() => resolve(false), 10_000)
      child.stderr?.on('data', (d: Buffer) => {
        text += d.toString()
        if (text.includes('listening on')) {
          clearTimeout(timer)
          resolve(true)
        }
      })
      child.once('exit', () => {
        clearTimeout(timer)
        resolve(false)
      })
    })
    if (!ready) {
      await capture.stop()
      await capture.remove()
      throw new Error('tcpdump did not start in the sensor namespace (is it installed?)')
    }
    return capture
  }

  /** Ends the capture (SIGINT: tcpdump flushes the file) and waits for it. */
  async stop(): Promise<void> {
    await stopChild(this.child, 'SIGINT')
  }

  async remove(): Promise<void> {
    await removeScratch(this.dir)
  }

  /** Arrival times (s since the epoch) of the frames in the capture that match a pcap filter expression. */
  async times(filter: string): Promise<number[]> {
    const r = await run('tcpdump', ['-nn', '-tt', '-r', this.file, filter], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 })
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => Number(l.split(' ', 1)[0]))
  }
}

/** The pcap filter for a technique's frames to the sensor (numbers and addresses the lab made, never packet data). */
function wireFilter(t: Technique, lab: Lab): string {
  const dst = t.family === 4 ? `ip dst host ${lab.sensor.ipv4}` : `ip6 dst host ${lab.sensor.ipv6}`
  const { proto, port } = t.tripwire
  if (proto === 'ip') return `${dst} and ${t.family === 4 ? 'ip' : 'ip6'} proto ${port}`
  return `${dst} and ${proto} dst port ${port}`
}

const canonical = (address: string): string => bytesToIp(ipToBytes(address))

/** Reads every hit of the sensor into one list; waiters hear each arrival. */
class HitLog {
  readonly hits: Hit[] = []
  #wake: (() => void) | undefined
  #onHit: ((hit: Hit) => void) | undefined
  readonly done: Promise<void>

  constructor(sensor: Sensor) {
    this.done = (async () => {
      for await (const hit of sensor) {
        this.#onHit?.(hit)
        this.hits.push(hit)
        this.#wake?.()
      }
    })()
  }

  /** Called for each hit as it arrives (the row's attributor reads it then, as the daemon does). */
  onHit(fn: ((hit: Hit) => void) | undefined): void {
    this.#onHit = fn
  }

  /** Resolves true once `pred` holds for some hit at index ≥ from, false after timeoutMs. */
  async waitFor(from: number, pred: (hit: Hit) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    let seen = from
    for (;;) {
      for (; seen < this.hits.length; seen++) if (pred(this.hits[seen]!)) return true
      const left = deadline - Date.now()
      if (left <= 0) return false
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.#wake = undefined
    }
  }
}

/** The settled answers about `hits` (a link question may be open for up to a second or so). */
async function settle(attributor: Attributor, hits: readonly Hit[]): Promise<Map<Hit, Attributed>> {
  const out = new Map<Hit, Attributed>()
  const deadline = Date.now() + SETTLE_TIMEOUT_MS
  let wake: (() => void) | undefined
  const off = attributor.onSettled(() => wake?.())
  try {
    for (const hit of hits) {
      for (;;) {
        const a = attributor.answerFor(hit)
        const left = deadline - Date.now()
        if (!a.pending || left <= 0) {
          out.set(hit, a)
          break
        }
        // Settled events wake us; the short poll bounds the wait if one is for another source.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 50))
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    }
  } finally {
    off()
  }
  return out
}

function groupsOf(entries: ReadonlyArray<[Hit, Attributed, string]>): Group[] {
  const groups = new Map<string, Group & { srcs: Set<string> }>()
  for (const [hit, a, who] of entries) {
    const evidence = [...a.evidence].sort()
    const key = `${who}|${hit.kind}|${a.attribution}|${evidence.join(',')}`
    let g = groups.get(key)
    if (g === undefined) {
      g = { who, kind: hit.kind, attribution: a.attribution, evidence, count: 0, sources: 0, srcs: new Set() }
      groups.set(key, g)
    }
    g.count++
    g.srcs.add(hit.src)
    g.sources = g.srcs.size
  }
  return [...groups.values()].map(({ srcs: _s, ...g }) => g)
}

function factsOf(hits: readonly Hit[], technique: Technique): string[] {
  if (hits.length === 0) return []
  switch (technique.shows) {
    case 'fragment':
      return [`fragment bit on ${hits.filter((h) => h.fragment).length} of ${hits.length} hits`]
    case 'ipOptions':
      return [`IP options on ${hits.filter((h) => h.ipOptions).length} of ${hits.length} hits, IPv6 extension headers on ${hits.filter((h) => h.extHeaders).length}`]
    case 'srcPort': {
      const ports = [...new Set(hits.filter((h) => h.kind === 'syn').map((h) => h.srcPort))].sort((a, b) => a - b)
      return [`SYN source ports: ${ports.length > 0 ? ports.join(', ') : 'none seen'}`]
    }
    default:
      return []
  }
}

async function version(cmd: string, args: string[], pick: RegExp): Promise<string> {
  try {
    const r = await run(cmd, args, { timeout: 10_000 })
    const text = `${r.stdout}\n${r.stderr}`
    return text.match(pick)?.[0]?.trim() ?? text.split('\n')[0]!.trim()
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string }
    const text = `${e.stdout ?? ''}\n${e.stderr ?? ''}`
    return text.match(pick)?.[0]?.trim() ?? `unknown (${e.message.split('\n')[0]})`
  }
}

export interface CoverageOptions {
  /** Technique ids to run (default all). */
  only?: readonly string[]
  /** Progress lines (default none). */
  log?: (line: string) => void
}

/** Builds the lab, runs the techniques, tears everything down; resolves with the rows. */
export async function runCoverage(options: CoverageOptions = {}): Promise<CoverageResult> {
  const started = Date.now()
  const log = options.log ?? ((): void => {})
  const all = techniques()
  const unknown = (options.only ?? []).filter((id) => !all.some((t) => t.id === id))
  if (unknown.length > 0) throw new RangeError(`unknown technique id(s): ${unknown.join(', ')} (known: ${all.map((t) => t.id).join(' ')})`)
  const chosen = options.only === undefined ? all : all.filter((t) => options.only!.includes(t.id))
  const versions = {
    kernel: release(),
    node: process.version,
    nmap: await version('nmap', ['--version'], /Nmap version \S+/),
    masscan: await version('masscan', ['--version'], /Masscan version \S+/),
    zmap: await version('zmap', ['--version'], /zmap \S+/),
    hping3: await version('hping3', ['--version'], /hping3 version \S+/),
    tcpdump: await version('tcpdump', ['--version'], /tcpdump version \S+/),
  }
  const net = await createBridgeNet({ prefix: 'pncov-', hosts: 3 })
  let sensor: Sensor | undefined
  let sender: NativeSender | undefined
  let log_: HitLog | undefined
  let wire: WireCapture | undefined
  try {
    const [s, a, b] = net.hosts as [NetnsHost, NetnsHost, NetnsHost]
    const lab: Lab = { net, sensor: s, attacker: a, bystander: b, unheld: { 4: '198.19.0.77', 6: 'fd52:43dd:ff::77' } }
    await addressesSettled([s, a, b])
    wire = await WireCapture.start(s)
    const ports = [...new Set(chosen.map((t) => `${t.tripwire.port}/${t.tripwire.proto}`)), `${SENTINEL_PORT}/udp`]
    sensor = await open({ ports, netns: s.path, listen: true })
    sender = new (loadBinding().Sender)({ interface: a.ifname, netns: a.path })
    const hitLog = (log_ = new HitLog(sensor))
    // The lab's truth: who holds which address, by MAC.
    const owners = new Map<string, { who: string; mac: string }>()
    for (const [who, h] of [['sensor', s], ['attacker', a], ['bystander', b]] as const) {
      owners.set(canonical(h.ipv4), { who, mac: h.mac })
      owners.set(canonical(h.ipv6), { who, mac: h.mac })
    }
    const onLink = (src: string): boolean => src.startsWith('198.19.0.') || src.startsWith('fd52:43dd:ff:')
    const rows: Row[] = []
    const lateHits: Array<() => number> = []
    for (const [i, t] of chosen.entries()) {
      const argv = t.args(lab, t.tripwire.port)
      const command = [t.tool, ...argv].join(' ')
      log(`[${i + 1}/${chosen.length}] ${command}`)
      const attributor = attachAttributor(sensor, { netns: s.path })
      const from = hitLog.hits.length
      hitLog.onHit((h) => void h.attribution)
      let result: { code: number; stderr: string; stdout: string }
      if (t.setup !== undefined) await t.setup.apply(lab)
      try {
        result = await a.exec(t.tool, argv, { timeoutMs: TOOL_TIMEOUT_MS })
      } finally {
        if (t.setup !== undefined) await t.setup.undo(lab)
      }
      const marker = 40_000 + i
      const sentinel = Buffer.from(buildFrame({ src: a.ipv4, dst: s.ipv4, proto: 'udp', srcPort: marker, dstPort: SENTINEL_PORT, srcMac: a.mac, dstMac: s.mac }))
      sender.send(sentinel, Uint32Array.of(sentinel.length), 1, 0)
      const seen = await hitLog.waitFor(from, (h) => h.dstPort === SENTINEL_PORT && h.proto === 'udp' && h.srcPort === marker, SENTINEL_TIMEOUT_MS)
      hitLog.onHit(undefined)
      const end = hitLog.hits.length
      const isMine = (h: Hit): boolean => h.proto === t.tripwire.proto && h.dstPort === t.tripwire.port && h.family === t.family
      const mine = hitLog.hits.slice(from, end).filter(isMine)
      lateHits.push(() => hitLog.hits.slice(end).filter(isMine).length)
      const answers = await settle(attributor, mine)
      attributor.close()
      // hping3 exits 1 for "sent, no reply"; a forged or unanswered probe gets none by design.
      const ok = t.tool === 'hping3' ? result.code === 0 || result.code === 1 : result.code === 0
      const lines = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^QUITTING!?$/.test(l))
      const refusal = [...lines(result.stdout), ...lines(result.stderr)]
      const real: Array<[Hit, Attributed, string]> = []
      const forged: Array<[Hit, Attributed, string]> = []
      for (const h of mine) {
        const ans = answers.get(h)!
        const owner = owners.get(h.src)
        if (h.verified || (owner !== undefined && h.srcMac === owner.mac)) real.push([h, ans, owner?.who ?? h.src])
        else forged.push([h, ans, owner !== undefined ? owner.who : onLink(h.src) ? 'on-link unheld' : 'off-link'])
      }
      rows.push({
        technique: t,
        command,
        exit: result.code,
        ...(!ok && { refused: refusal.at(-1) ?? `exit status ${result.code}` }),
        hits: mine.length,
        kinds: [...new Set(mine.map((h) => h.kind))],
        real: groupsOf(real),
        forged: groupsOf(forged),
        falseAccusations: real.filter(([, ans]) => ans.attribution === 'forged').length,
        missedForgeries: forged.filter(([, ans]) => ans.attribution !== 'forged').length,
        facts: factsOf(mine, t),
        incomplete: !seen,
        wire: 0,
        late: { frames: 0, hits: 0 },
      })
    }
    await wire.stop()
    for (const [i, row] of rows.entries()) {
      const sentinel = (await wire.times(`udp dst port ${SENTINEL_PORT} and udp src port ${40_000 + i}`))[0] ?? Infinity
      const times = await wire.times(wireFilter(row.technique, lab))
      row.wire = times.filter((t) => t <= sentinel).length
      row.late = { frames: times.length - row.wire, hits: lateHits[i]!() }
    }
    return {
      rows,
      versions,
      date: new Date().toISOString(),
      elapsedMs: Date.now() - started,
      lab: {
        sensor: [s.ipv4, s.ipv6],
        attacker: [a.ipv4, a.ipv6],
        bystander: [b.ipv4, b.ipv6],
        unheld: [lab.unheld[4], lab.unheld[6]],
      },
    }
  } finally {
    sender?.close()
    await sensor?.close()
    await log_?.done
    await wire?.stop()
    await wire?.remove()
    await net.destroy()
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string' }, only: { type: 'string', multiple: true }, list: { type: 'boolean' } } })
  if (values.list === true) {
    for (const t of techniques()) console.log(`${t.id}\t${t.label}`)
    return
  }
  if (process.getuid?.() !== 0) {
    console.error('coverage: needs root (network namespaces, AF_PACKET, raw sockets for the scanners): run `sudo npm run coverage`')
    process.exitCode = 1
    return
  }
  const out = values.out ?? join(PACKAGE_ROOT, 'docs', 'coverage.md')
  const result = await runCoverage({ ...(values.only !== undefined && { only: values.only }), log: (l) => console.log(l) })
  await writeFile(out, renderCoverage(result))
  const detected = result.rows.filter((r) => r.hits > 0).length
  console.log(`coverage: ${detected}/${result.rows.length} techniques detected in ${(result.elapsedMs / 1000).toFixed(1)} s; wrote ${out}`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(`coverage: ${err instanceof Error ? err.message : String(err)}`)
    process.exitCode = 1
  })
}
