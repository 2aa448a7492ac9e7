/**
 * Real TCP from inside test namespaces: a one-shot connect attempt (a child `node`
 * started with `ip netns exec`, so the kernel of that namespace does the handshake)
 * and a tiny echo service. Used by the daemon and CLI tests to prove a block is
 * real — a blocked peer can no longer reach a service — and to hold an established
 * connection open (a guard:peer source). Processes are ended by PID via stop().
 */
import type { ChildProcess } from 'node:child_process'
import type { Host } from './netns.js'

export type ConnectOutcome = 'connected' | 'refused' | 'reset' | 'timeout' | 'error'

/** One TCP connect from `from` to address:port; 'connected' when the handshake completed. */
export async function tcpConnect(from: Host, address: string, port: number, timeoutMs = 1500): Promise<ConnectOutcome> {
  const script = `
    const s = require('node:net').connect({ host: ${JSON.stringify(address)}, port: ${port} })
    const done = (w) => { console.log(w); s.destroy(); process.exit(0) }
    s.on('connect', () => done('connected'))
    s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : 'error'))
    setTimeout(() => done('timeout'), ${timeoutMs})`
  const r = await from.exec(process.execPath, ['-e', script], { timeoutMs: timeoutMs + 5000 })
  const word = r.stdout.trim().split('\n').pop() ?? ''
  return (['connected', 'refused', 'reset', 'timeout'].includes(word) ? word : 'error') as ConnectOutcome
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

function waitForLine(child: ChildProcess, word: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => reject(new Error(`child did not print ${word} in time: ${buf}`)), timeoutMs)
    child.stdout?.on('data', (c: Buffer) => {
      buf += c.toString()
      if (buf.includes(word)) {
        clearTimeout(timer)
        resolve(buf)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`child exited (${String(code)}) before printing ${word}: ${buf}`))
    })
  })
}
