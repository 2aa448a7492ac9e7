/**
 * `portanoia selftest`: proves detection and response on this machine without
 * touching its network. It creates its own namespace pair (prefix `pnself-`,
 * addresses in 198.18.0.0/15 and fd52:43dd::/32 only), runs the Daemon inside the
 * sensor namespace with nft run there (`ip netns exec`) and `--block all`, sends
 * every probe kind from the peers with the addon's raw Sender — TCP flag scans,
 * a real connect, UDP, SCTP, IPv6, and forged sources carrying the sensor's own
 * address and its gateway's — then checks the events and the kernel's nft set:
 * the verified source and the unguarded forged ones are blocked, the guarded ones
 * are not. The guard cases are the ones a snapshot used to miss: a session opened
 * after the daemon started, an address added while it runs, a gateway only a
 * policy-routing table knows, the second hop of an ECMP route, an address on an
 * interface without carrier; and a flow the sensor namespace only forwards, which
 * must be transit, never a block. Then "a flushed ruleset": it runs `nft flush
 * ruleset` in the sensor namespace (what reloading an nftables service does) and
 * checks that the table comes back by itself with every block, and the verified
 * attacker stays cut off. Everything it made is removed (also on SIGINT/SIGTERM; an exit hook is
 * the last resort). Returns 0 only when every check passed.
 */
import type { ChildProcess } from 'node:child_process'
import { loadBinding } from '../binding.js'
import { ACK, buildFrame, FIN, PSH, type ProbeSpec, SCTP_COOKIE_ECHO, SCTP_INIT, SYN, URG } from '../lab/frames.js'
import { Daemon } from '../daemon/daemon.js'
import type { DecisionEvent, HitEvent, PortanoiaEvent } from '../daemon/events.js'
import { createNetnsNet, type NetnsHost, type NetnsNet, stopChild } from '../lab/netns.js'
import { NftablesResponder } from '../responders/nftables.js'
import { netnsRun, netnsStream } from '../responders/run.js'
import type { ScanKind } from '../types.js'
import { colors, table } from './render.js'

export interface SelftestOptions {
  json: boolean
  /** Leave the namespaces in place (debugging). */
  keep: boolean
  io: { out(s: string): void; err(s: string): void; isTTY: boolean }
}

interface Probe {
  name: string
  kind: ScanKind
  src: string
  dstPort: number
  /** Expected decision reason. */
  expect: string
  /** Expected in the nft set afterwards. */
  blocked: boolean
  /** How it is sent: a crafted frame from a peer, or a real connect. */
  frame?: {
    from: NetnsHost
    /** The next hop on the link: its MAC, and its address unless `dst` says otherwise. */
    to: NetnsHost
    /** A destination beyond `to` (a flow `to` forwards). */
    dst?: string
    spec: Omit<ProbeSpec, 'src' | 'dst' | 'srcMac' | 'dstMac'>
    family: 4 | 6
  }
}

interface Row {
  probe: Probe
  detected: boolean
  decision: string
  inKernel: boolean
  ok: boolean
}

const TCP_PORT = 2222
const UDP_PORT = 5353
const SCTP_PORT = 2905

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) return false
    await new Promise((r) => setTimeout(r, 50))
  }
  return true
}

/** Addresses of the guard cases (198.18.0.0/15 only). */
const ADDED_AT_RUNTIME = '198.18.90.1'
const NO_CARRIER = '198.18.91.1'
const TABLE_100_GATEWAY = '198.18.2.3'
const SESSION_PORT = 8022

function probes(net: NetnsNet): Probe[] {
  const [a, g, x] = net.links as [NetnsNet['links'][0], NetnsNet['links'][0], NetnsNet['links'][0]]
  const syn = (name: string, src: string, expect: string, n: number, over: Partial<NonNullable<Probe['frame']>> = {}): Probe => ({
    name,
    kind: 'syn',
    src,
    dstPort: TCP_PORT,
    expect,
    blocked: false,
    frame: { from: a.peer, to: a.sensor, family: 4, spec: { proto: 'tcp', srcPort: 40000 + n, dstPort: TCP_PORT, tcpFlags: SYN }, ...over },
  })
  const tcp = (name: string, kind: ScanKind, n: number, flags: number): Probe => ({
    name,
    kind,
    src: `198.18.0.${n}`,
    dstPort: TCP_PORT,
    expect: 'blocked',
    blocked: true,
    frame: { from: a.peer, to: a.sensor, family: 4, spec: { proto: 'tcp', srcPort: 40000 + n, dstPort: TCP_PORT, tcpFlags: flags } },
  })
  return [
    { name: 'TCP connect (real handshake)', kind: 'connect', src: a.peer.ipv4, dstPort: TCP_PORT, expect: 'blocked', blocked: true },
    tcp('TCP SYN scan', 'syn', 10, SYN),
    tcp('TCP FIN scan', 'fin', 11, FIN),
    tcp('TCP NULL scan', 'null', 12, 0),
    tcp('TCP Xmas scan', 'xmas', 13, FIN | PSH | URG),
    tcp('TCP ACK scan', 'ack', 14, ACK),
    tcp('TCP Maimon scan', 'maimon', 15, FIN | ACK),
    {
      name: 'UDP probe',
      kind: 'udp',
      src: '198.18.0.16',
      dstPort: UDP_PORT,
      expect: 'blocked',
      blocked: true,
      frame: { from: a.peer, to: a.sensor, family: 4, spec: { proto: 'udp', srcPort: 40016, dstPort: UDP_PORT } },
    },
    {
      name: 'SCTP INIT scan',
      kind: 'sctp-init',
      src: '198.18.0.17',
      dstPort: SCTP_PORT,
      expect: 'blocked',
      blocked: true,
      frame: { from: a.peer, to: a.sensor, family: 4, spec: { proto: 'sctp', srcPort: 40017, dstPort: SCTP_PORT, sctpChunk: SCTP_INIT } },
    },
    {
      name: 'SCTP COOKIE-ECHO scan',
      kind: 'sctp-cookie-echo',
      src: '198.18.0.18',
      dstPort: SCTP_PORT,
      expect: 'blocked',
      blocked: true,
      frame: { from: a.peer, to: a.sensor, family: 4, spec: { proto: 'sctp', srcPort: 40018, dstPort: SCTP_PORT, sctpChunk: SCTP_COOKIE_ECHO } },
    },
    {
      name: 'IPv6 TCP SYN scan',
      kind: 'syn',
      src: 'fd52:43dd::19',
      dstPort: TCP_PORT,
      expect: 'blocked',
      blocked: true,
      frame: { from: a.peer, to: a.sensor, family: 6, spec: { proto: 'tcp', srcPort: 40019, dstPort: TCP_PORT, tcpFlags: SYN } },
    },
    {
      name: 'IPv6 UDP probe',
      kind: 'udp',
      src: 'fd52:43dd::20',
      dstPort: UDP_PORT,
      expect: 'blocked',
      blocked: true,
      frame: { from: a.peer, to: a.sensor, family: 6, spec: { proto: 'udp', srcPort: 40020, dstPort: UDP_PORT } },
    },
    {
      name: "forged: sensor's own address",
      kind: 'syn',
      src: a.sensor.ipv4,
      dstPort: TCP_PORT,
      expect: 'guard:self',
      blocked: false,
      frame: { from: a.peer, to: a.sensor, family: 4, spec: { proto: 'tcp', srcPort: 40021, dstPort: TCP_PORT, tcpFlags: SYN } },
    },
    {
      name: "forged: the gateway's address",
      kind: 'syn',
      src: g.peer.ipv4,
      dstPort: TCP_PORT,
      expect: 'guard:gateway',
      blocked: false,
      frame: { from: g.peer, to: g.sensor, family: 4, spec: { proto: 'tcp', srcPort: 40022, dstPort: TCP_PORT, tcpFlags: SYN } },
    },
    {
      name: "forged: the gateway's IPv6 address",
      kind: 'syn',
      src: g.peer.ipv6,
      dstPort: TCP_PORT,
      expect: 'guard:gateway',
      blocked: false,
      frame: { from: g.peer, to: g.sensor, family: 6, spec: { proto: 'tcp', srcPort: 40023, dstPort: TCP_PORT, tcpFlags: SYN } },
    },
    syn('guard: session opened after start', x.peer.ipv6, 'guard:peer', 24, { from: x.peer, to: x.sensor, family: 6 }),
    syn('guard: address added at runtime', ADDED_AT_RUNTIME, 'guard:self', 25),
    syn('guard: policy-routing gateway', TABLE_100_GATEWAY, 'guard:gateway', 26),
    syn('guard: second ECMP hop', x.peer.ipv4, 'guard:gateway', 27),
    syn('guard: carrier-less interface', NO_CARRIER, 'guard:self', 28),
    // A flow the sensor namespace routes on to peer 2: transit, never a block.
    syn('forwarded flow (not to this host)', '198.18.0.31', 'transit', 29, { dst: x.peer.ipv4 }),
  ]
}

/**
 * The facts a snapshot used to miss, made before the daemon starts: an address on a
 * bridge whose one port has no carrier, the second hop of an ECMP route, a gateway in
 * a policy-routing table; forwarding on; and a service to open a session to later.
 */
async function prepareGuardCases(net: NetnsNet, children: ChildProcess[]): Promise<void> {
  const [, g, x] = net.links as [NetnsNet['links'][0], NetnsNet['links'][0], NetnsNet['links'][0]]
  const steps: string[][] = [
    ['ip', 'link', 'add', 'pnbr0', 'type', 'bridge'],
    ['ip', 'addr', 'add', `${NO_CARRIER}/24`, 'dev', 'pnbr0'],
    ['ip', 'link', 'add', 'pnv0', 'type', 'veth', 'peer', 'name', 'pnv1'],
    ['ip', 'link', 'set', 'pnv0', 'master', 'pnbr0'],
    ['ip', 'link', 'set', 'pnv0', 'up'],
    ['ip', 'link', 'set', 'pnbr0', 'up'],
    ['ip', 'route', 'add', '198.18.64.0/24', 'nexthop', 'via', g.peer.ipv4, 'nexthop', 'via', x.peer.ipv4],
    ['ip', 'route', 'add', 'default', 'via', TABLE_100_GATEWAY, 'table', '100'],
    ['ip', 'rule', 'add', 'from', x.sensor.ipv4, 'table', '100'],
    ['sysctl', '-qw', 'net.ipv4.ip_forward=1'],
  ]
  for (const [cmd, ...args] of steps) {
    const r = await net.sensorExec(cmd as string, args)
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`)
  }
  const service = net.sensorSpawn(process.execPath, ['-e', `require('node:net').createServer((s) => s.on('error', () => {})).listen(${SESSION_PORT}, () => console.log('listening'))`])
  children.push(service)
  await lineFrom(service, 'listening')
}

/** After the daemon started: the session and the new address, each in force before it is probed. */
async function changeWhileRunning(net: NetnsNet, daemon: Daemon, children: ChildProcess[]): Promise<void> {
  const x = net.links[2] as NetnsNet['links'][0]
  const session = x.peer.spawn(process.execPath, [
    '-e',
    `const s = require('node:net').connect({ host: ${JSON.stringify(x.sensor.ipv6)}, port: ${SESSION_PORT} }, () => console.log('connected')); s.on('error', () => process.exit(1)); setInterval(() => {}, 1000)`,
  ])
  children.push(session)
  await lineFrom(session, 'connected')
  const r = await net.sensorExec('ip', ['addr', 'add', `${ADDED_AT_RUNTIME}/32`, 'dev', 'lo'])
  if (r.code !== 0) throw new Error(`ip addr add: ${r.stderr.trim()}`)
  await waitUntil(() => daemon.guardFacts().addresses.some((e) => e.address === ADDED_AT_RUNTIME), 2000)
}

function lineFrom(child: ChildProcess, word: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => reject(new Error(`no '${word}' from a helper process: ${buf}`)), 10_000)
    child.stdout?.on('data', (c: Buffer) => {
      buf += c.toString()
      if (buf.includes(word)) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`a helper process exited (${String(code)}) before '${word}'`))
    })
  })
}

function send(p: Probe): void {
  const f = p.frame
  if (f === undefined) return
  const frame = buildFrame({
    ...f.spec,
    src: p.src,
    dst: f.dst ?? (f.family === 4 ? f.to.ipv4 : f.to.ipv6),
    srcMac: f.from.mac,
    dstMac: f.to.mac,
  })
  const sender = new (loadBinding().Sender)({ interface: f.from.ifname, netns: f.from.path })
  try {
    const r = sender.send(Buffer.from(frame), Uint32Array.of(frame.length), 1, 0)
    if (r.sent !== 1) throw new Error(`raw send failed: ${String(r.lastError)}`)
  } finally {
    sender.close()
  }
}

async function realConnect(from: NetnsHost, address: string, port: number): Promise<string> {
  const script = `const s=require('node:net').connect({host:${JSON.stringify(address)},port:${port}});
    const done=(w)=>{console.log(w);s.destroy();process.exit(0)};
    s.on('connect',()=>done('connected'));s.on('error',(e)=>done(e.code));setTimeout(()=>done('timeout'),2000)`
  const r = await from.exec(process.execPath, ['-e', script], { timeoutMs: 10_000 })
  return r.stdout.trim()
}

async function nftSet(net: NetnsNet): Promise<Set<string>> {
  const r = await net.sensorExec('nft', ['-j', 'list', 'table', 'inet', 'portanoia'])
  const out = new Set<string>()
  if (r.code !== 0) return out
  const doc = JSON.parse(r.stdout) as { nftables?: Array<{ set?: { elem?: unknown[] } }> }
  for (const item of doc.nftables ?? []) {
    for (const e of item.set?.elem ?? []) {
      if (typeof e === 'string') out.add(e)
      else if (typeof e === 'object' && e !== null) {
        const val = (e as { elem?: { val?: unknown } }).elem?.val
        if (typeof val === 'string') out.add(val)
      }
    }
  }
  return out
}

export async function runSelftest(options: SelftestOptions): Promise<number> {
  const { io } = options
  const c = colors(!options.json && options.io.isTTY && process.env.NO_COLOR === undefined)
  if (process.getuid?.() !== 0) {
    io.err('portanoia: selftest needs root (it creates network namespaces and captures with AF_PACKET)\n')
    return 1
  }
  const say = (s: string): void => {
    if (!options.json) io.err(`${s}\n`)
  }
  let net: NetnsNet | undefined
  let daemon: Daemon | undefined
  let interrupted = false
  const children: ChildProcess[] = []
  const cleanup = async (): Promise<void> => {
    await daemon?.close()
    for (const child of children.splice(0)) await stopChild(child)
    if (!options.keep) await net?.destroy()
  }
  const onSignal = (): void => {
    interrupted = true
    void cleanup().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    say('selftest: creating namespaces (pnself-*, 198.18.0.0/15, fd52:43dd::/32)')
    net = await createNetnsNet({ prefix: 'pnself-', peers: 3 })
    const [a, g] = net.links as [NetnsNet['links'][0], NetnsNet['links'][0]]
    // Peer 1 is the sensor's gateway, so forged packets can carry a gateway address.
    await g.sensor.exec('ip', ['route', 'add', 'default', 'via', g.peer.ipv4])
    await g.sensor.exec('ip', ['-6', 'route', 'add', 'default', 'via', g.peer.ipv6])
    await prepareGuardCases(net, children)
    const events: PortanoiaEvent[] = []
    daemon = await Daemon.compose({
      ports: [`${TCP_PORT}/tcp`, `${UDP_PORT}/udp`, `${SCTP_PORT}/sctp`],
      netns: net.sensorNs,
      firewall: new NftablesResponder({ run: netnsRun(net.sensorNs), monitor: netnsStream(net.sensorNs) }),
      policy: { block: 'all', spoofableTtlMs: 60_000 },
      // The probes carry crafted on-link sources to prove detection, blocking and the
      // guards; attribution would (rightly) find them forged and block none of them.
      // What attribution finds is proven by test/privileged/attribution.test.ts.
      attribution: false,
      hits: true,
      statsIntervalMs: 0,
      onEvent: (e) => events.push(e),
    })
    say(`selftest: daemon watching ${TCP_PORT}/tcp ${UDP_PORT}/udp ${SCTP_PORT}/sctp in ${net.sensorNs}, block all`)
    await changeWhileRunning(net, daemon, children)
    const list = probes(net)
    for (const p of list) {
      if (interrupted) return 130
      if (p.frame !== undefined) send(p)
      else {
        const r = await realConnect(a.peer, a.sensor.ipv4, p.dstPort)
        if (r !== 'connected' && r !== 'ECONNRESET') say(`selftest: connect from ${a.peer.ns} ended with ${r}`)
      }
    }
    const hits = (): HitEvent[] => events.filter((e): e is HitEvent => e.type === 'hit')
    const decisions = (): DecisionEvent[] => events.filter((e): e is DecisionEvent => e.type === 'decision')
    const seen = (p: Probe): boolean => hits().some((h) => h.src === p.src && h.kind === p.kind && h.dstPort === p.dstPort)
    const decided = (p: Probe): DecisionEvent | undefined => decisions().find((d) => d.src === p.src && !d.final)
    await waitUntil(() => list.every((p) => seen(p) && decided(p) !== undefined), 10_000)
    // Let the last batch reach the kernel.
    await waitUntil(() => daemon!.stats().firewall.batches > 0 && daemon!.stats().firewall.requested === daemon!.stats().firewall.applied + daemon!.stats().firewall.failed, 3000)
    await new Promise((r) => setTimeout(r, 200))
    const kernel = await nftSet(net)
    const rows: Row[] = list.map((p) => {
      const d = decided(p)
      const decision = d?.reason ?? '—'
      const inKernel = kernel.has(p.src)
      return { probe: p, detected: seen(p), decision, inKernel, ok: seen(p) && decision === p.expect && inKernel === p.blocked }
    })
    // The verified block must be real: the attacker can no longer complete a handshake.
    const after = await realConnect(a.peer, a.sensor.ipv4, TCP_PORT)
    const cutOff = after === 'timeout'
    // A flushed ruleset (a reload of the nftables service): the table must come back by
    // itself with every block it held, and the attacker must stay cut off.
    const held = [...kernel].sort()
    const flush = await net.sensorExec('nft', ['flush', 'ruleset'])
    const restoredEvent = await waitUntil(() => events.some((e) => e.type === 'firewall' && e.op === 'restored'), 10_000)
    const back = [...(await nftSet(net))].sort()
    const afterFlush = await realConnect(a.peer, a.sensor.ipv4, TCP_PORT)
    const flushOk = flush.code === 0 && restoredEvent && JSON.stringify(back) === JSON.stringify(held) && afterFlush === 'timeout'
    const errors = events.filter((e) => e.type === 'error')
    const passed = rows.every((r) => r.ok) && cutOff && flushOk && errors.length === 0
    if (options.json) {
      io.out(
        `${JSON.stringify({
          ok: passed,
          probes: rows.map((r) => ({ name: r.probe.name, src: r.probe.src, kind: r.probe.kind, detected: r.detected, decision: r.decision, expected: r.probe.expect, inKernel: r.inKernel, ok: r.ok })),
          attackerCutOff: cutOff,
          flushedRuleset: { restored: restoredEvent, blocks: back.length, blocksBefore: held.length, attackerCutOff: afterFlush === 'timeout', ok: flushOk },
          errors,
        })}\n`,
      )
    } else {
      const mark = (ok: boolean): string => (ok ? c.green('ok') : c.red('FAIL'))
      io.out(
        `${table(
          ['PROBE', 'SOURCE', 'KIND', 'DETECTED', 'DECISION', 'EXPECTED', 'IN NFT SET', ''],
          rows.map((r) => [r.probe.name, r.probe.src, r.probe.kind, r.detected ? 'yes' : 'NO', r.decision, r.probe.expect, r.inKernel ? 'yes' : 'no', mark(r.ok)]),
        )}\n`,
      )
      io.out(`verified attacker ${a.peer.ipv4} cut off from the sensor: ${cutOff ? 'yes' : `NO (${after})`} ${mark(cutOff)}\n`)
      io.out(
        `a flushed ruleset: table restored ${restoredEvent ? 'yes' : 'NO'}, ${back.length} of ${held.length} blocks back, attacker still cut off ${afterFlush === 'timeout' ? 'yes' : `NO (${afterFlush})`} ${mark(flushOk)}\n`,
      )
      for (const e of errors) io.out(`${c.red('error event')}: ${JSON.stringify(e)}\n`)
      io.out(passed ? `${c.green('selftest passed')}: every probe detected and decided as expected\n` : `${c.red('selftest FAILED')}\n`)
    }
    return passed ? 0 : 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await cleanup()
    if (options.keep && net !== undefined) say(`selftest: kept ${net.namespaces.join(' ')} (remove with ip netns del)`)
    else say('selftest: namespaces removed')
  }
}
