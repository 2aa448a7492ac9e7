/**
 * Namespace networks for the privileged tests, the benchmarks and `portanoia
 * selftest`: a sensor namespace joined by veth pairs to one or more peer namespaces,
 * created with unique names under a caller-chosen prefix and always torn down
 * (explicitly by destroy(), and by a synchronous exit hook as a safety net for
 * crashes and signals that end the process). Addressing is fixed by the project's
 * rule: IPv4 in 198.18.0.0/15, IPv6 in fd52:43dd::/32; peer i sits on 198.18.i.0/24
 * and fd52:43dd:i::/64 with the sensor at .1 / ::1 and the peer at .2 / ::2.
 * Namespaces are isolated, so concurrent runs may reuse the same addresses. A second
 * shape, createBridgeNet, puts N host namespaces on one switched segment (a bridge
 * in a hub namespace, 198.19.0.0/24 and fd52:43dd:ff::/64, hub at .1 / ::1, host i
 * at .(i+2) / ::(i+2)), for tests where several sensors must reach one service and
 * be reached by one attacker. Every
 * command runs through execFile with an argv array, never a shell. Runs on the main
 * thread; needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface ExecResult {
  stdout: string
  stderr: string
  code: number
}

export interface NetnsHost {
  /** Namespace name, as `ip netns` knows it. */
  ns: string
  /** Path to pass as the sensor's `netns` option. */
  path: string
  /** The interface of this host on the link (in this host's namespace). */
  ifname: string
  ipv4: string
  ipv6: string
  mac: string
  /** Runs argv in this namespace; never throws on a non-zero exit. */
  exec(cmd: string, args: readonly string[], options?: { timeoutMs?: number; input?: string }): Promise<ExecResult>
  /** Starts argv in this namespace; the caller ends it by PID. */
  spawn(cmd: string, args: readonly string[]): ChildProcess
}

export interface NetnsLink {
  /** The sensor side of the link. */
  sensor: NetnsHost
  /** The peer side. */
  peer: NetnsHost
}

export interface NetnsNet {
  id: string
  /** The sensor's namespace (its addresses are on links[i].sensor). */
  sensorNs: string
  sensorPath: string
  /** Every namespace this network created, sensor first. */
  namespaces: readonly string[]
  links: NetnsLink[]
  /** Runs argv in the sensor namespace. */
  sensorExec: NetnsHost['exec']
  sensorSpawn: NetnsHost['spawn']
  /** Deletes every namespace (and with them the veths); idempotent. */
  destroy(): Promise<void>
}

export interface NetnsNetOptions {
  /** Namespace name prefix, e.g. 'pnt-' for tests, 'pnself-' for selftest. */
  prefix: string
  /** Peer namespaces, 1..200 (default 1). */
  peers?: number
  /** The sensor routes everything via peer 0, which then is its gateway. */
  defaultRoute?: boolean
}

const live = new Set<string>()
let hooked = false

function hookExit(): void {
  if (hooked) return
  hooked = true
  // 'exit' handlers must be synchronous: execFileSync is the only way to clean up here.
  process.on('exit', () => destroyAllSync())
  // A signal's default action ends the process without 'exit'. Where nobody else
  // handles the signal, clean up and then die of it as before (same exit status);
  // where someone does (the CLI's selftest, a test runner), that handler decides.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(sig) > 1) return
      destroyAllSync()
      process.off(sig, onSignal)
      process.kill(process.pid, sig)
    }
    process.on(sig, onSignal)
  }
}

/** Deletes, synchronously, every namespace created by this process and not yet destroyed. */
export function destroyAllSync(): void {
  for (const ns of live) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
    } catch {
      // already gone
    }
    live.delete(ns)
  }
}

async function ip(args: readonly string[]): Promise<void> {
  await run('ip', [...args], { timeout: 10_000 })
}

/** Runs argv inside namespace `ns` (via `ip netns exec`); resolves with the exit code, never rejects on failure. */
export function execInNetns(
  ns: string,
  cmd: string,
  args: readonly string[],
  options: { timeoutMs?: number; input?: string } = {},
): Promise<ExecResult> {
  return new Promise<ExecResult>((resolve) => {
    const child = execFile(
      'ip',
      ['netns', 'exec', ns, cmd, ...args],
      { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
        resolve({ stdout: String(stdout), stderr: String(stderr), code })
      },
    )
    // A program that exits without reading stdin makes the write fail with EPIPE;
    // its exit status already says what happened.
    child.stdin?.on('error', () => {})
    child.stdin?.end(options.input ?? '')
  })
}

function makeHost(ns: string, ifname: string, ipv4: string, ipv6: string, mac: string): NetnsHost {
  return {
    ns,
    path: `/run/netns/${ns}`,
    ifname,
    ipv4,
    ipv6,
    mac,
    exec: (cmd, args, options) => execInNetns(ns, cmd, args, options),
    spawn: (cmd, args) => spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }),
  }
}

/**
 * The namespaces of one network, removed together (and by the exit hook if the
 * process dies first). The id (pid + random) keeps concurrent runs apart and is
 * short enough for 15-byte interface names.
 */
class NamespaceGroup {
  readonly id = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`
  readonly created: string[] = []

  constructor(readonly prefix: string) {
    hookExit()
    if (!/^[a-z][a-z0-9-]{0,15}$/.test(prefix)) throw new RangeError('prefix must be short lowercase letters, digits and dashes')
  }

  /** Creates `<prefix><id>-<suffix>` with loopback up. */
  async add(suffix: string): Promise<string> {
    const ns = `${this.prefix}${this.id}-${suffix}`
    await ip(['netns', 'add', ns])
    this.created.push(ns)
    live.add(ns)
    await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    return ns
  }

  destroy = async (): Promise<void> => {
    for (const ns of [...this.created].reverse()) {
      try {
        await ip(['netns', 'del', ns])
      } catch {
        // already gone
      }
      live.delete(ns)
    }
    this.created.length = 0
  }

  /**
   * A veth pair from `a` to `b`. Created in the caller's namespace under unique
   * names, then moved and renamed, so concurrent runs never collide on a host-side
   * interface name. `extra` is appended to each side's final `link set`.
   */
  async veth(a: { ns: string; ifname: string; mac: string; extra?: string[] }, b: { ns: string; ifname: string; mac: string; extra?: string[] }): Promise<void> {
    const tmpA = `${a.ifname}${this.id}`
    const tmpB = `${b.ifname}${this.id}`
    await ip(['link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB])
    await ip(['link', 'set', tmpA, 'netns', a.ns])
    await ip(['link', 'set', tmpB, 'netns', b.ns])
    await ip(['-n', a.ns, 'link', 'set', tmpA, 'name', a.ifname, 'address', a.mac, ...(a.extra ?? [])])
    await ip(['-n', b.ns, 'link', 'set', tmpB, 'name', b.ifname, 'address', b.mac, ...(b.extra ?? [])])
  }
}

/**
 * Creates the sensor namespace and `peers` peer namespaces, each linked to the
 * sensor by its own veth pair. On any failure everything created so far is removed
 * before the error is rethrown.
 */
export async function createNetnsNet(options: NetnsNetOptions): Promise<NetnsNet> {
  const peers = options.peers ?? 1
  if (!Number.isInteger(peers) || peers < 1 || peers > 200) throw new RangeError('peers must be 1..200')
  const group = new NamespaceGroup(options.prefix)
  try {
    const sensorNs = await group.add('s')
    const links: NetnsLink[] = []
    for (let i = 0; i < peers; i++) {
      const peerNs = await group.add(`p${i}`)
      const sIf = `pns${i}`
      const pIf = `pnp${i}`
      const sMac = `02:52:00:00:${i.toString(16).padStart(2, '0')}:01`
      const pMac = `02:52:00:00:${i.toString(16).padStart(2, '0')}:02`
      await group.veth({ ns: sensorNs, ifname: sIf, mac: sMac }, { ns: peerNs, ifname: pIf, mac: pMac })
      const v4s = `198.18.${i}.1`
      const v4p = `198.18.${i}.2`
      const v6s = `fd52:43dd:${i.toString(16)}::1`
      const v6p = `fd52:43dd:${i.toString(16)}::2`
      await ip(['-n', sensorNs, 'addr', 'add', `${v4s}/24`, 'dev', sIf])
      await ip(['-n', peerNs, 'addr', 'add', `${v4p}/24`, 'dev', pIf])
      await ip(['-n', sensorNs, '-6', 'addr', 'add', `${v6s}/64`, 'dev', sIf, 'nodad'])
      await ip(['-n', peerNs, '-6', 'addr', 'add', `${v6p}/64`, 'dev', pIf, 'nodad'])
      await ip(['-n', sensorNs, 'link', 'set', sIf, 'up'])
      await ip(['-n', peerNs, 'link', 'set', pIf, 'up'])
      links.push({
        sensor: makeHost(sensorNs, sIf, v4s, v6s, sMac),
        peer: makeHost(peerNs, pIf, v4p, v6p, pMac),
      })
    }
    if (options.defaultRoute === true) {
      await ip(['-n', sensorNs, 'route', 'add', 'default', 'via', '198.18.0.2'])
      await ip(['-n', sensorNs, '-6', 'route', 'add', 'default', 'via', 'fd52:43dd:0::2'])
    }
    const first = links[0]!.sensor
    return {
      id: group.id,
      sensorNs,
      sensorPath: `/run/netns/${sensorNs}`,
      namespaces: [...group.created],
      links,
      sensorExec: first.exec,
      sensorSpawn: first.spawn,
      destroy: group.destroy,
    }
  } catch (err) {
    await group.destroy()
    throw err
  }
}

export interface BridgeNet {
  id: string
  /** The hub namespace: holds the bridge and its address (a router, if a host routes via it). */
  hub: { ns: string; ipv4: string; ipv6: string; exec: NetnsHost['exec'] }
  /** One per host namespace, in creation order; `ifname` is the host's port to the bridge. */
  hosts: NetnsHost[]
  /** Every namespace this network created, hub first. */
  namespaces: readonly string[]
  /** Deletes every namespace (and with them the veths and the bridge); idempotent. */
  destroy(): Promise<void>
}

/**
 * Creates a hub namespace with a bridge and `hosts` host namespaces, each joined
 * to the bridge by a veth pair: one L2 segment, every host reaches every other
 * directly. No host has a default route; add one (via hub.ipv4) where a test
 * needs a gateway. On any failure everything created so far is removed before
 * the error is rethrown.
 */
export async function createBridgeNet(options: { prefix: string; hosts: number }): Promise<BridgeNet> {
  const n = options.hosts
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new RangeError('hosts must be 1..200')
  const group = new NamespaceGroup(options.prefix)
  try {
    const hubNs = await group.add('hub')
    await ip(['-n', hubNs, 'link', 'add', 'pnbr0', 'type', 'bridge'])
    await ip(['-n', hubNs, 'addr', 'add', '198.19.0.1/24', 'dev', 'pnbr0'])
    await ip(['-n', hubNs, '-6', 'addr', 'add', 'fd52:43dd:ff::1/64', 'dev', 'pnbr0', 'nodad'])
    await ip(['-n', hubNs, 'link', 'set', 'pnbr0', 'up'])
    const hosts: NetnsHost[] = []
    for (let i = 0; i < n; i++) {
      const ns = await group.add(`h${i}`)
      const hubIf = `pnb${i}`
      const hostIf = `pnh${i}`
      const mac = `02:52:00:ff:${i.toString(16).padStart(2, '0')}:02`
      const hubMac = `02:52:00:ff:${i.toString(16).padStart(2, '0')}:01`
      await group.veth({ ns: hubNs, ifname: hubIf, mac: hubMac, extra: ['master', 'pnbr0', 'up'] }, { ns, ifname: hostIf, mac })
      const v4 = `198.19.0.${i + 2}`
      const v6 = `fd52:43dd:ff::${(i + 2).toString(16)}`
      await ip(['-n', ns, 'addr', 'add', `${v4}/24`, 'dev', hostIf])
      await ip(['-n', ns, '-6', 'addr', 'add', `${v6}/64`, 'dev', hostIf, 'nodad'])
      await ip(['-n', ns, 'link', 'set', hostIf, 'up'])
      hosts.push(makeHost(ns, hostIf, v4, v6, mac))
    }
    return {
      id: group.id,
      hub: { ns: hubNs, ipv4: '198.19.0.1', ipv6: 'fd52:43dd:ff::1', exec: (cmd, args, o) => execInNetns(hubNs, cmd, args, o) },
      hosts,
      namespaces: [...group.created],
      destroy: group.destroy,
    }
  } catch (err) {
    await group.destroy()
    throw err
  }
}

/** Ends a process the caller started, by PID, and waits for it (SIGKILL after 3 s). */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
    }, 3000)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    if (child.pid !== undefined) {
      try {
        process.kill(child.pid, signal)
      } catch {
        clearTimeout(timer)
        resolve()
      }
    }
  })
}
