/**
 * Real TCP from inside test namespaces: a one-shot connect attempt (a child `node`
 * started with `ip netns exec`, so the kernel of that namespace does the handshake)
 * and a tiny service. Used by the daemon, CLI and firewall tests to prove a block is
 * real — a blocked peer can no longer reach a service — and to hold an established
 * connection open (a guard:peer source), or thousands of them (a busy host). A probe that could not run (no node in the
 * namespace, the namespace gone) throws: it is never mistaken for a blocked peer.
 * Processes are ended by PID via stop().
 */
import type { ChildProcess } from 'node:child_process'
import type { Host } from './netns.js'

/** What a connect attempt ended in; 'error' is any other socket error (EHOSTUNREACH, ...). */
export type ConnectOutcome = 'connected' | 'refused' | 'reset' | 'timeout' | 'error'
const OUTCOMES: readonly string[] = ['connected', 'refused', 'reset', 'timeout', 'error']

/** The port startService listens on by default, for the firewall tests. */
export const PROBE_PORT = 8080

/**
 * One TCP connect from `from` to address:port; 'connected' when the handshake
 * completed. Throws when the probe itself did not run to an outcome.
 */
export async function tcpConnect(from: Host, address: string, port: number, timeoutMs = 1500): Promise<ConnectOutcome> {
  const script = `
    const s = require('node:net').connect({ host: ${JSON.stringify(address)}, port: ${port} })
    const done = (w) => { console.log(w); s.destroy(); process.exit(0) }
    s.on('connect', () => done('connected'))
    s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : 'error'))
    setTimeout(() => done('timeout'), ${timeoutMs})`
  const r = await from.exec(process.execPath, ['-e', script], { timeoutMs: timeoutMs + 5000 })
  const word = r.stdout.trim().split('\n').pop() ?? ''
  if (r.code !== 0 || !OUTCOMES.includes(word)) {
    throw new Error(`the connect probe from ${from.ns} to [${address}]:${port} did not run (exit ${r.code}): ${r.stderr.trim()}`)
  }
  return word as ConnectOutcome
}

/**
 * For firewall tests, where the service runs and the only question is whether a
 * drop rule applies: true when the handshake completes, false when it times out
 * (dropped). Anything else — refused, reset, another error — means the test's
 * premise broke, and throws.
 */
export async function canConnect(from: Host, address: string, port = PROBE_PORT): Promise<boolean> {
  const outcome = await tcpConnect(from, address, port, 1000)
  if (outcome === 'connected') return true
  if (outcome === 'timeout') return false
  throw new Error(`connect from ${from.ns} to [${address}]:${port} was ${outcome}, neither accepted nor dropped: is the service running?`)
}

/** Starts a TCP service on `port` in `host`'s namespace; resolves once it listens. */
export async function startService(host: Pick<Host, 'spawn'>, port: number): Promise<ChildProcess> {
  const script = `
    require('node:net').createServer((s) => { s.on('error', () => {}); s.write('hello\\n') })
      .listen(${port}, () => console.log('listening'))`
  const child = host.spawn(process.execPath, ['-e', script])
  await waitForLine(child, 'listening')
  return child
}

/** Opens a TCP connection from `from` and keeps it open until the process is stopped. */
export async function holdConnection(from: Host, address: string, port: number): Promise<ChildProcess> {
  return (await openConnection(from, address, port)).child
}

/** As holdConnection, also telling the connection's local port (the reply tuple's). */
export async function openConnection(from: Host, address: string, port: number): Promise<{ child: ChildProcess; localPort: number }> {
  const script = `
    const s = require('node:net').connect({ host: ${JSON.stringify(address)}, port: ${port} }, () => console.log('connected ' + s.localPort + ' .'))
    s.on('error', (e) => { console.log('error ' + e.code); process.exit(1) })
    setInterval(() => {}, 1000)`
  const child = from.spawn(process.execPath, ['-e', script])
  const out = await waitForLine(child, ' .')
  const m = /connected (\d+)/.exec(out)
  return { child, localPort: Number(m?.[1] ?? 0) }
}

/**
 * `count` established connections from `from` to a server `server` starts on `port`
 * (listening on every address of its namespace), held by two processes that are
 * pushed to `keep` as soon as they start, for the caller to end by PID. Node raises
 * its open-file limit to the hard limit at start; a failed connect fails the call.
 */
export async function manyConnections(server: Pick<Host, 'spawn'>, from: Host, to: string, port: number, count: number, keep: ChildProcess[]): Promise<void> {
  const listener = server.spawn(process.execPath, [
    '-e',
    `const keep = []; require('node:net').createServer((s) => { keep.push(s); s.on('error', () => {}) }).listen({ port: ${port}, backlog: 4096 }, () => console.log('listening'))`,
  ])
  keep.push(listener)
  await waitForLine(listener, 'listening')
  const client = from.spawn(process.execPath, [
    '-e',
    `const net = require('node:net'); const keep = []; let open = 0, failed = 0
     const one = () => { const s = net.connect({ host: ${JSON.stringify(to)}, port: ${port} }); keep.push(s)
       s.on('connect', () => { if (++open === ${count}) console.log('ready ' + open); else if (open + failed < ${count} && keep.length < ${count}) one() })
       s.on('error', () => { failed++; console.log('failed') }) }
     for (let i = 0; i < 200; i++) one()
     setInterval(() => {}, 1000)`,
  ])
  keep.push(client)
  const out = await waitForLine(client, 'ready', 120_000, 'failed')
  if (!out.includes(`ready ${count}`)) throw new Error(`manyConnections: ${out.slice(-300)}`)
}

function waitForLine(child: ChildProcess, word: string, timeoutMs = 10_000, failWord?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => reject(new Error(`child did not print ${word} in time: ${buf}`)), timeoutMs)
    child.stdout?.on('data', (c: Buffer) => {
      buf += c.toString()
      if (failWord !== undefined && buf.includes(failWord)) {
        clearTimeout(timer)
        reject(new Error(`child printed ${failWord}: ${buf.slice(-300)}`))
      } else if (buf.includes(word)) {
        clearTimeout(timer)
        resolve(buf)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`child exited (${String(code)}) before printing ${word}: ${buf.slice(-300)}`))
    })
  })
}
