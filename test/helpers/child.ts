/**
 * Child Node processes for lifecycle tests: writes an ES module into a temp dir and
 * runs it with the current node binary, so a test can watch a whole process (its exit
 * code, signal, output, threads and descriptors) do something that would otherwise take
 * the test runner down with it. Scripts import the built package (dist/), so
 * `npm run build` must have run (npm test's pretest does). Also a loopback UDP flooder:
 * packets go only to 127.0.0.1. Processes are ended only by their own PID.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/** The package root, found from this file (test/helpers/ or dist/test/helpers/). */
const here = dirname(fileURLToPath(import.meta.url))
export const PACKAGE_ROOT = here.includes(`${join('dist', 'test')}`) ? resolve(here, '../../..') : resolve(here, '../..')

/** file: URL of the built package entry, for `import` in child scripts. */
export const DIST_ENTRY = pathToFileURL(join(PACKAGE_ROOT, 'dist/lib/index.js')).href

export interface ChildExit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** Milliseconds from spawn to exit. */
  ms: number
}

export interface Child {
  process: ChildProcess
  pid: number
  /** Resolves when the process has exited. */
  exited: Promise<ChildExit>
  /** Resolves with the first stdout line matching `re` (rejects on exit or timeout). */
  line(re: RegExp, timeoutMs?: number): Promise<string>
  alive(): boolean
  /** Ends the process by its PID (SIGKILL after 3 s) and waits for it. */
  stop(signal?: NodeJS.Signals): Promise<ChildExit>
}

const dirs: string[] = []
process.on('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** Runs `source` (an ES module; `__ENTRY__` is replaced by the package entry URL). */
export function runChild(source: string, options: { nodeArgs?: string[]; env?: Record<string, string> } = {}): Child {
  const dir = mkdtempSync(join(tmpdir(), 'portanoia-child-'))
  dirs.push(dir)
  const file = join(dir, 'main.mjs')
  writeFileSync(file, source.replaceAll('__ENTRY__', DIST_ENTRY))
  const started = Date.now()
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  })
  let stdout = ''
  let stderr = ''
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = []
  child.stdout!.setEncoding('utf8')
  child.stderr!.setEncoding('utf8')
  let pending = ''
  child.stdout!.on('data', (chunk: string) => {
    stdout += chunk
    pending += chunk
    let nl: number
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl)
      pending = pending.slice(nl + 1)
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.re.test(line)) {
          waiters[i]!.resolve(line)
          waiters.splice(i, 1)
        }
      }
    }
  })
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<ChildExit>((resolvePromise) => {
    child.once('exit', (code, signal) => {
      // 'close' follows 'exit' once the pipes are drained; wait for the last output.
      child.once('close', () => resolvePromise({ code, signal, stdout, stderr, ms: Date.now() - started }))
    })
  })
  const alive = (): boolean => child.exitCode === null && child.signalCode === null
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<ChildExit> => {
    if (alive() && child.pid !== undefined) {
      try {
        process.kill(child.pid, signal)
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        if (alive() && child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
      }, 3000)
      const result = await exited
      clearTimeout(timer)
      return result
    }
    return await exited
  }
  return {
    process: child,
    pid: child.pid ?? -1,
    exited,
    alive,
    stop,
    line: (re, timeoutMs = 15_000) =>
      new Promise<string>((resolveLine, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${String(re)} within ${timeoutMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`)), timeoutMs)
        void exited.then((e) => {
          clearTimeout(timer)
          reject(new Error(`exited (code ${String(e.code)}, signal ${String(e.signal)}) before a line matching ${String(re)}; stdout:\n${e.stdout}\nstderr:\n${e.stderr}`))
        })
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(timer)
            resolveLine(l)
          },
        })
      }),
  }
}

/** Signs of a native crash in a child's stderr. */
export const CRASH_MARKERS = ['Segmentation fault', 'Aborted', 'FATAL ERROR', 'terminate called', 'core dumped', 'napi_fatal', 'Assertion', 'double free', 'SIGSEGV']

/** Sends UDP datagrams to 127.0.0.1:port as fast as the event loop allows until stopped. */
export function floodLoopback(port: number): { stop: () => Promise<number> } {
  const sock = createSocket('udp4')
  const payload = Buffer.alloc(16, 0x5a)
  let sent = 0
  let running = true
  const burst = (): void => {
    if (!running) return
    for (let i = 0; i < 64; i++) {
      sock.send(payload, port, '127.0.0.1')
      sent++
    }
    setTimeout(burst, 1)
  }
  burst()
  return {
    stop: async () => {
      running = false
      await new Promise<void>((r) => sock.close(() => r()))
      return sent
    },
  }
}

/** A random high port for a tripwire (the sensor tests own it only for a moment). */
export function randomHighPort(): number {
  return 40_000 + Math.floor(Math.random() * 20_000)
}
