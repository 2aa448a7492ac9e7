/**
 * The built CLI (dist/lib/cli/main.js) as a child process, for the privileged CLI
 * tests: a one-shot run with its exit code and output, and `portanoia watch`
 * started in the background, resolved once it logged that it is watching. Every
 * started watch is recorded so the test's afterEach ends it by its PID
 * (stopWatches). Nothing here touches the network itself.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { join } from 'node:path'
import { stop } from './netns.js'

export const CLI_MAIN = join(import.meta.dirname, '../../dist/lib/cli/main.js')

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export function cli(args: readonly string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI_MAIN, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

export interface Watch {
  child: ChildProcess
  out: () => string
  err: () => string
}

const watches: ChildProcess[] = []

/**
 * Starts `portanoia watch ...` (with extra environment variables); resolves once it
 * logged that it is watching. With `netns` the process itself runs in that namespace
 * (`ip netns exec` execs, so the PID is the watcher's), seeing it as its own host.
 */
export async function startWatch(args: readonly string[], options: { env?: Record<string, string>; netns?: string } = {}): Promise<Watch> {
  const argv = [process.execPath, CLI_MAIN, ...args]
  const spawnOptions = { stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } }
  const child =
    options.netns === undefined
      ? spawn(argv[0] as string, argv.slice(1), spawnOptions)
      : spawn('ip', ['netns', 'exec', options.netns, ...argv], spawnOptions)
  watches.push(child)
  let out = ''
  let err = ''
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`watch did not start: ${err}`)), 60_000)
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString()
      if (err.includes('watching ')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`watch exited ${String(code)}: ${err}`))
    })
  })
  return { child, out: () => out, err: () => err }
}

/** Ends every watch started so far, by PID, and waits for each. */
export async function stopWatches(): Promise<void> {
  for (const c of watches.splice(0)) await stop(c)
}

export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The parsed JSON lines of a watch's stdout that match `pick`. */
export function jsonLines<T = Record<string, unknown>>(text: string, pick: (e: Record<string, unknown>) => boolean = () => true): T[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter(pick) as T[]
}
