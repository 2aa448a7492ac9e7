/**
 * The default RunFn: starts a program with an argv array (never a shell), feeds
 * `input` to its stdin, collects stdout/stderr up to a byte bound, and kills the
 * child by its own PID when it outlives its timeout. It never rejects: a program
 * that cannot be started resolves with code 127, one killed on timeout with 124 and
 * `timedOut`, so responders report failures as values. `netnsRun(ns)` wraps a RunFn
 * so every command runs inside a named network namespace (`ip netns exec NS ...`),
 * which is how the privileged tests keep real firewall commands off the host.
 * Children never inherit the fleet secrets (`PORTANOIA_CROWDSEC_*`). A StreamFn runs
 * a long-lived command (`nft monitor`) and hands over its stdout line by line, lines
 * bounded in length; `netnsStream(ns)` runs it in a namespace the same way.
 * Runs on the JS thread; the children are the only processes it ever signals.
 */
import { spawn } from 'node:child_process'
import { PortanoiaError } from '../errors.js'
import type { RunFn, RunResult } from './types.js'

// Secrets the daemon reads from its environment (fleet mode): no child needs them, and
// an operator's --exec command must never be handed them.
const SECRET_ENV = /^PORTANOIA_CROWDSEC_/

/** `env` (default process.env) without the variables that hold portanoia's secrets. */
export function childEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(env)) if (!SECRET_ENV.test(k)) out[k] = v
  return out
}

export interface RunOptions {
  /** Kill the child (SIGKILL, by PID) after this many ms. Default 30 s. */
  timeoutMs?: number
  /** Bytes kept per stream; the rest is discarded (the run still completes). Default 64 MiB. */
  maxBuffer?: number
  /** Environment for the child; default the parent's without `PORTANOIA_CROWDSEC_*` (childEnv). */
  env?: NodeJS.ProcessEnv
  /**
   * Start the child in its own process group and kill the whole group on timeout,
   * so `sh -c 'a; b'` cannot leave `a` running. The group is the child's own (its
   * PGID is its PID), so only processes this call started are signalled.
   */
  killGroup?: boolean
}

const DEFAULT_TIMEOUT_MS = 30_000
// `nft -j list` of a set holding 100,000 IPv6 addresses is several MiB.
const DEFAULT_MAX_BUFFER = 64 * 1024 * 1024

/** Collects a stream's output up to `max` bytes. */
class Sink {
  #chunks: Buffer[] = []
  #bytes = 0
  truncated = false
  constructor(readonly max: number) {}
  push(chunk: Buffer): void {
    const room = this.max - this.#bytes
    if (room <= 0) {
      this.truncated = true
      return
    }
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk
    if (part.length < chunk.length) this.truncated = true
    this.#chunks.push(part)
    this.#bytes += part.length
  }
  text(): string {
    return Buffer.concat(this.#chunks).toString('utf8')
  }
}

/** A RunFn with the given bounds. */
export function createRun(options: RunOptions = {}): RunFn {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const maxBuffer = options.maxBuffer ?? DEFAULT_MAX_BUFFER
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new PortanoiaError('PORTANOIA_BAD_OPTION', `timeoutMs must be a positive number, got ${String(timeoutMs)}`, { hint: 'e.g. timeoutMs: 10000' })
  if (!Number.isInteger(maxBuffer) || maxBuffer <= 0) throw new PortanoiaError('PORTANOIA_BAD_OPTION', `maxBuffer must be a positive integer, got ${String(maxBuffer)}`, { hint: 'e.g. maxBuffer: 1048576' })
  return (cmd, args, input) =>
    new Promise<RunResult>((resolve) => {
      const out = new Sink(maxBuffer)
      const err = new Sink(maxBuffer)
      let timedOut = false
      let settled = false
      const finish = (result: RunResult): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(result)
      }
      let child: ReturnType<typeof spawn>
      try {
        child = spawn(cmd, [...args], {
          stdio: ['pipe', 'pipe', 'pipe'],
          env: options.env ?? childEnv(),
          shell: false,
          detached: options.killGroup === true,
        })
      } catch (e) {
        // spawn throws synchronously on bad arguments (e.g. a NUL byte in argv).
        resolve({ code: 127, stdout: '', stderr: e instanceof Error ? e.message : String(e) })
        return
      }
      const timer = setTimeout(() => {
        timedOut = true
        // Signal only the child we started, by its PID.
        if (child.pid !== undefined) {
          try {
            process.kill(options.killGroup === true ? -child.pid : child.pid, 'SIGKILL')
          } catch {
            // already gone
          }
        }
      }, timeoutMs)
      child.stdout?.on('data', (c: Buffer) => out.push(c))
      child.stderr?.on('data', (c: Buffer) => err.push(c))
      child.on('error', (e: NodeJS.ErrnoException) => {
        // ENOENT / EACCES: the program could not be started. 'close' may not follow.
        finish({ code: 127, stdout: out.text(), stderr: `${cmd}: ${e.code ?? ''} ${e.message}`.trim() })
      })
      child.on('close', (code, signal) => {
        let stderr = err.text()
        if (out.truncated || err.truncated) stderr += `\n[output truncated at ${maxBuffer} bytes]`
        if (timedOut) {
          finish({ code: 124, stdout: out.text(), stderr: `${stderr}\n${cmd}: killed after ${timeoutMs} ms`.trim(), timedOut: true })
        } else {
          finish({ code: code ?? (signal !== null ? 128 : 1), stdout: out.text(), stderr })
        }
      })
      // A child that exits without reading its stdin makes the write fail with EPIPE;
      // the exit status says what happened, so the stream error is not news.
      child.stdin?.on('error', () => {})
      child.stdin?.end(input ?? '')
    })
}

/** The RunFn responders use unless given another. */
export const defaultRun: RunFn = createRun()

/** What `ip netns` accepts as a name, minus anything that could read as an option (or a path). */
export const NETNS_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/

/** Wraps `run` so every command executes in network namespace `ns`. */
export function netnsRun(ns: string, run: RunFn = defaultRun): RunFn {
  if (!NETNS_NAME.test(ns)) {
    throw new PortanoiaError('PORTANOIA_BAD_NETNS', `${JSON.stringify(ns)} is not a network namespace name`, {
      hint: 'use the name `ip netns list` shows',
    })
  }
  return (cmd, args, input) => run('ip', ['netns', 'exec', ns, cmd, ...args], input)
}

/** A long-running command whose stdout is read line by line (e.g. `nft -j monitor`). */
export interface StreamHandle {
  /** Ends the child (SIGTERM by its PID, SIGKILL after 2 s) and waits for it. */
  stop(): Promise<void>
  /** Resolves with the exit code when the child ends (127: could not be started). */
  exited: Promise<number>
}

/** Starts `cmd args` and calls `onLine` for each stdout line (lines past `maxLine` bytes are cut). */
export type StreamFn = (cmd: string, args: readonly string[], onLine: (line: string) => void) => StreamHandle

const MAX_LINE = 64 * 1024

/** The StreamFn firewall responders use unless given another: argv, no shell, secrets stripped. */
export const defaultStream: StreamFn = (cmd, args, onLine) => {
  let child: ReturnType<typeof spawn>
  try {
    child = spawn(cmd, [...args], { stdio: ['ignore', 'pipe', 'ignore'], env: childEnv(), shell: false })
  } catch {
    return { stop: async () => {}, exited: Promise.resolve(127) }
  }
  let pending = ''
  let overlong = false
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    pending += chunk
    let nl: number
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl)
      pending = pending.slice(nl + 1)
      if (overlong) overlong = false
      else onLine(line)
    }
    // A line longer than the bound is handed over cut (its head says what it was
    // about); the rest of it, up to its newline, is skipped.
    if (pending.length > MAX_LINE) {
      if (!overlong) onLine(pending.slice(0, MAX_LINE))
      overlong = true
      pending = ''
    }
  })
  const exited = new Promise<number>((resolve) => {
    child.once('error', () => resolve(127))
    child.once('close', (code, signal) => resolve(code ?? (signal !== null ? 128 : 1)))
  })
  return {
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGTERM')
        } catch {
          // already gone
        }
        const timer = setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
            try {
              process.kill(child.pid, 'SIGKILL')
            } catch {
              // already gone
            }
          }
        }, 2000)
        await exited
        clearTimeout(timer)
      }
    },
  }
}

/** Wraps `stream` so the command runs in network namespace `ns`. */
export function netnsStream(ns: string, stream: StreamFn = defaultStream): StreamFn {
  if (!NETNS_NAME.test(ns)) {
    throw new PortanoiaError('PORTANOIA_BAD_NETNS', `${JSON.stringify(ns)} is not a network namespace name`, {
      hint: 'use the name `ip netns list` shows',
    })
  }
  return (cmd, args, onLine) => stream('ip', ['netns', 'exec', ns, cmd, ...args], onLine)
}
