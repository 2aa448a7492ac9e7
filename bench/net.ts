/**
 * The benchmarks' network and process plumbing, on top of the library's namespace
 * networks (lib/lab/netns.ts, shared with the tests and selftest): a `pnperf-` pair that
 * is torn down on every path out (normal end, thrown error, SIGINT/SIGTERM), child
 * processes started inside a namespace and pinned to one core with taskset, a
 * line-oriented control channel to them (JSON lines on stdout, commands on stdin), and
 * the counters the end-to-end benchmark samples from outside a process: utime+stime
 * of all its threads from /proc/PID/stat (and per thread from /proc/PID/task), and a
 * veth's kernel packet counters.
 * Runs on the bench's main thread. Invariant: every child it starts is ended by its
 * PID, and every namespace it creates is deleted, before the bench process exits.
 */
import type { ChildProcess } from 'node:child_process'
import { execFile, spawn } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { createNetnsNet, stopChild, type NetnsNet } from '../lib/lab/netns.js'

const run = promisify(execFile)

/** Clock ticks per second for /proc/PID/stat (USER_HZ; 100 on every Linux ABI Node runs on). */
let clkTck: number | undefined

async function ticksPerSecond(): Promise<number> {
  if (clkTck === undefined) {
    try {
      const { stdout } = await run('getconf', ['CLK_TCK'])
      const n = Number(stdout.trim())
      clkTck = Number.isInteger(n) && n > 0 ? n : 100
    } catch {
      clkTck = 100
    }
  }
  return clkTck
}

/**
 * CPU seconds (user + system, every thread of the process) consumed so far by `pid`.
 * /proc/PID/stat sums the whole thread group, so the capture thread is included. With
 * `tid`, that one thread's (its main thread: `tid` = `pid`).
 */
export async function cpuSeconds(pid: number, tid?: number): Promise<number> {
  const path = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`
  return (await statTicks(path)).ticks / (await ticksPerSecond())
}

/** utime + stime in ticks, and the command name, from a /proc stat file. */
async function statTicks(path: string): Promise<{ comm: string; ticks: number }> {
  const text = await readFile(path, 'utf8')
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const close = text.lastIndexOf(')')
  const fields = text.slice(close + 2).split(' ')
  // Fields 14 and 15 (utime, stime) are at 11 and 12 once pid and comm are cut off.
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot parse ${path}`)
  return { comm: text.slice(text.indexOf('(') + 1, close), ticks: utime + stime }
}

/** A process's CPU seconds so far: in all, its main thread's, and those of its threads named `name`. */
export interface ThreadCpu {
  total: number
  main: number
  named: number
}

/**
 * CPU seconds of `pid` split by thread: the main thread (for a Node receiver, the JS
 * thread), the threads whose name is `name` (the capture thread names itself
 * `portanoia-cap`), and in `total` everything, threads that have ended included (the rest
 * is V8's helpers and libuv's pool).
 */
export async function threadCpuSeconds(pid: number, name: string): Promise<ThreadCpu> {
  const hz = await ticksPerSecond()
  const total = (await statTicks(`/proc/${pid}/stat`)).ticks / hz
  let main = 0
  let named = 0
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    let t: { comm: string; ticks: number }
    try {
      t = await statTicks(`/proc/${pid}/task/${tid}/stat`)
    } catch {
      continue // ended since the listing: its time is in `total`
    }
    if (Number(tid) === pid) main = t.ticks / hz
    else if (t.comm === name) named += t.ticks / hz
  }
  return { total, main, named }
}

export interface LinkCounters {
  rxPackets: number
  rxDropped: number
  txPackets: number
  txDropped: number
}

/** A link's kernel counters as `ip -s -j link show` reports them inside namespace `ns`. */
export async function linkCounters(ns: string, ifname: string): Promise<LinkCounters> {
  const { stdout } = await run('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', ifname], { timeout: 10_000 })
  const parsed = JSON.parse(stdout) as Array<{ stats64?: { rx?: Record<string, number>; tx?: Record<string, number> } }>
  const s = parsed[0]?.stats64
  return {
    rxPackets: s?.rx?.packets ?? 0,
    rxDropped: s?.rx?.dropped ?? 0,
    txPackets: s?.tx?.packets ?? 0,
    txDropped: s?.tx?.dropped ?? 0,
  }
}

export interface BenchNet {
  net: NetnsNet
  /** The sensor namespace, its veth, address and MAC. */
  sensorNs: string
  sensorIf: string
  sensorIpv4: string
  sensorMac: string
  /** The attacker namespace, its veth, address and MAC. */
  attackerNs: string
  attackerIf: string
  attackerIpv4: string
  attackerMac: string
  /** Set once SIGINT/SIGTERM arrived: start nothing new. */
  readonly aborted: boolean
  destroy(): Promise<void>
}

/**
 * One sensor namespace and one attacker namespace joined by a veth pair, named
 * `pnperf-…`. The sensor side accepts any source address (rp_filter off) but has no
 * route back to the spoofed 198.18.0.0/15 sources, so the kernel's RST to each SYN
 * dies at the route lookup instead of doubling the traffic on the veth: both
 * receivers and the ceiling run see the same kernel work.
 */
export async function createBenchNet(): Promise<BenchNet> {
  const net = await createNetnsNet({ prefix: 'pnperf-' })
  const link = net.links[0]!
  let destroyed: Promise<void> | undefined
  const destroy = (): Promise<void> => (destroyed ??= net.destroy())
  let aborted = false
  const onSignal = (signal: NodeJS.Signals): void => {
    aborted = true
    // Ctrl-C during a run: end our children by PID, delete the namespaces, then die
    // of the same signal.
    void Promise.all([...liveChildren].map((c) => c.end()))
      .then(destroy)
      .finally(() => {
        process.exitCode = 130
        process.kill(process.pid, signal)
      })
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    for (const key of ['all', 'default', link.sensor.ifname]) {
      await run('ip', ['netns', 'exec', net.sensorNs, 'sysctl', '-q', '-w', `net.ipv4.conf.${key}.rp_filter=0`], { timeout: 10_000 })
    }
  } catch (err) {
    await destroy()
    throw err
  }
  return {
    net,
    sensorNs: net.sensorNs,
    sensorIf: link.sensor.ifname,
    sensorIpv4: link.sensor.ipv4,
    sensorMac: link.sensor.mac,
    attackerNs: link.peer.ns,
    attackerIf: link.peer.ifname,
    attackerIpv4: link.peer.ipv4,
    attackerMac: link.peer.mac,
    get aborted() {
      return aborted
    },
    destroy: async () => {
      process.removeListener('SIGINT', onSignal)
      process.removeListener('SIGTERM', onSignal)
      await destroy()
    },
  }
}

/** Children not yet ended, so a signal handler can end them by PID. */
const liveChildren = new Set<PinnedChild>()

/**
 * A child process in a namespace, pinned to one core, spoken to in lines: it prints
 * JSON objects on stdout (one per line) and reads commands on stdin.
 */
export class PinnedChild {
  readonly child: ChildProcess
  readonly name: string
  #lines: string[] = []
  #waiters: Array<(line: string | undefined) => void> = []
  #ended = false
  #stderr = ''

  constructor(name: string, ns: string, core: number, argv: readonly string[]) {
    this.name = name
    // `ip netns exec` and taskset both exec (no fork), so child.pid is the program's PID;
    // the programs still report their own PID, and that is the one we sample.
    this.child = spawnInNs(ns, 'taskset', ['-c', String(core), ...argv])
    const lines = createInterface({ input: this.child.stdout! })
    lines.on('line', (line) => {
      const waiter = this.#waiters.shift()
      if (waiter !== undefined) waiter(line)
      else this.#lines.push(line)
    })
    this.child.stderr!.on('data', (chunk: Buffer) => {
      if (this.#stderr.length < 8192) this.#stderr += chunk.toString()
    })
    liveChildren.add(this)
    this.child.once('exit', () => {
      liveChildren.delete(this)
      this.#ended = true
      for (const waiter of this.#waiters.splice(0)) waiter(undefined)
    })
  }

  /** The next JSON line; rejects on exit or after `timeoutMs`. */
  async next(timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const line = this.#lines.shift() ?? (this.#ended ? undefined : await this.#wait(timeoutMs))
    if (line === undefined) throw new Error(`${this.name} exited (code ${String(this.child.exitCode)}): ${this.#stderr.trim() || 'no stderr'}`)
    try {
      return JSON.parse(line) as Record<string, unknown>
    } catch {
      throw new Error(`${this.name} printed a non-JSON line: ${line}`)
    }
  }

  #wait(timeoutMs: number): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter)
        if (i >= 0) this.#waiters.splice(i, 1)
        reject(new Error(`${this.name} did not answer within ${timeoutMs} ms: ${this.#stderr.trim()}`))
      }, timeoutMs)
      const waiter = (line: string | undefined): void => {
        clearTimeout(timer)
        resolve(line)
      }
      this.#waiters.push(waiter)
    })
  }

  send(command: string): void {
    this.child.stdin?.write(`${command}\n`)
  }

  /** Sends `command` and returns the JSON line it answers with. */
  async ask(command: string, timeoutMs?: number): Promise<Record<string, unknown>> {
    this.send(command)
    return await this.next(timeoutMs)
  }

  /** Ends the child by its PID (SIGTERM, then SIGKILL after 3 s) and waits for it. */
  async end(): Promise<void> {
    this.child.stdin?.end()
    await stopChild(this.child)
  }
}

function spawnInNs(ns: string, cmd: string, args: readonly string[]): ChildProcess {
  // Host.spawn would do, but it closes stdin, and the control channel needs it.
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
}
