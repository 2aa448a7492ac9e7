/**
 * Test networks: a sensor namespace joined by veth pairs to one or more peer
 * namespaces (attacker, bystander, ...), created per test with unique names and
 * always torn down (explicitly, and by an exit hook as a safety net). Addressing is
 * fixed by the project's rule: IPv4 in 198.18.0.0/15, IPv6 in fd52:43dd::/32; peer i
 * sits on 198.18.i.0/24 and fd52:43dd:i::/64 with the sensor at .1 / ::1 and the peer
 * at .2 / ::2. Namespaces are isolated, so every run may reuse the same addresses.
 * Commands run through execFile with argv arrays, never a shell.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'

const run = promisify(execFile)

export const IS_ROOT = process.getuid?.() === 0

/** Call at the top of a privileged test file: says loudly why its tests are skipped. */
export function warnIfNotRoot(file: string): void {
  if (!IS_ROOT) {
    console.warn(`\n*** SKIPPED: ${file} needs root (network namespaces, AF_PACKET). Run \`sudo npm test\` to run it. ***\n`)
  }
}

export interface ExecResult {
  stdout: string
  stderr: string
  code: number
}

export interface Host {
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
  /** Starts argv in this namespace; the caller ends it by PID (see stop()). */
  spawn(cmd: string, args: readonly string[]): ChildProcess
}

export interface Link {
  /** The sensor side of the link. */
  sensor: Host
  /** The peer side. */
  peer: Host
}

export interface TestNet {
  id: string
  /** The sensor's namespace (its addresses are on links[i].sensor). */
  sensorNs: string
  sensorPath: string
  links: Link[]
  /** Runs argv in the sensor namespace. */
  sensorExec: Host['exec']
  sensorSpawn: Host['spawn']
  destroy(): Promise<void>
}

const live = new Set<string>()
let hooked = false

function hookExit(): void {
  if (hooked) return
  hooked = true
  process.on('exit', () => {
    for (const ns of live) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
      } catch {
        // already gone
      }
    }
  })
}

async function ip(args: readonly string[]): Promise<void> {
  await run('ip', [...args], { timeout: 10_000 })
}

function makeHost(ns: string, ifname: string, ipv4: string, ipv6: string, mac: string): Host {
  const exec: Host['exec'] = async (cmd, args, options = {}) => {
    return await new Promise<ExecResult>((resolve) => {
      const child = execFile(
        'ip',
        ['netns', 'exec', ns, cmd, ...args],
        { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1
          resolve({ stdout: String(stdout), stderr: String(stderr), code })
        },
      )
      if (options.input !== undefined) child.stdin?.end(options.input)
    })
  }
  return {
    ns,
    path: `/run/netns/${ns}`,
    ifname,
    ipv4,
    ipv6,
    mac,
    exec,
    spawn: (cmd, args) => spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }),
  }
}

/**
 * Creates the sensor namespace and `peers` peer namespaces, each linked to the
 * sensor by its own veth pair. With `defaultRoute`, the sensor routes everything
 * via peer 0 (which then is its gateway, for guard tests).
 */
export async function createTestNet(options: { peers?: number; defaultRoute?: boolean } = {}): Promise<TestNet> {
  hookExit()
  const peers = options.peers ?? 1
  if (peers < 1 || peers > 200) throw new RangeError('peers must be 1..200')
  const id = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`
  const sensorNs = `pnt-${id}-s`
  const created: string[] = []
  const destroy = async (): Promise<void> => {
    for (const ns of created.reverse()) {
      try {
        await ip(['netns', 'del', ns])
      } catch {
        // already gone
      }
      live.delete(ns)
    }
    created.length = 0
  }
  try {
    await ip(['netns', 'add', sensorNs])
    created.push(sensorNs)
    live.add(sensorNs)
    await ip(['-n', sensorNs, 'link', 'set', 'lo', 'up'])
    const links: Link[] = []
    for (let i = 0; i < peers; i++) {
      const peerNs = `pnt-${id}-p${i}`
      await ip(['netns', 'add', peerNs])
      created.push(peerNs)
      live.add(peerNs)
      await ip(['-n', peerNs, 'link', 'set', 'lo', 'up'])
      const sIf = `pns${i}`
      const pIf = `pnp${i}`
      const sMac = `02:52:00:00:${i.toString(16).padStart(2, '0')}:01`
      const pMac = `02:52:00:00:${i.toString(16).padStart(2, '0')}:02`
      await ip(['link', 'add', `${sIf}${id}`, 'type', 'veth', 'peer', 'name', `${pIf}${id}`])
      await ip(['link', 'set', `${sIf}${id}`, 'netns', sensorNs])
      await ip(['link', 'set', `${pIf}${id}`, 'netns', peerNs])
      await ip(['-n', sensorNs, 'link', 'set', `${sIf}${id}`, 'name', sIf, 'address', sMac])
      await ip(['-n', peerNs, 'link', 'set', `${pIf}${id}`, 'name', pIf, 'address', pMac])
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
      id,
      sensorNs,
      sensorPath: `/run/netns/${sensorNs}`,
      links,
      sensorExec: first.exec,
      sensorSpawn: first.spawn,
      destroy,
    }
  } catch (err) {
    await destroy()
    throw err
  }
}

/** Ends a process this test started, by PID, and waits for it. */
export async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
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
