/**
 * The end-to-end benchmark's traffic generator, run as its own process inside the
 * attacker namespace and pinned to a core by bench/e2e.ts. It builds the SYN pool
 * first (so building costs nothing in the measured window), prints `{"ready":…}`,
 * waits for `go` on stdin, then transmits with the addon's Sender (sendmmsg, qdisc
 * bypass) for `--seconds`, unpaced or at `--pps`, and prints what it actually sent
 * and how long that took. One process, one measurement; the parent ends it by PID
 * if it hangs.
 */
import { connect } from 'node:net'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { loadBinding } from '../lib/binding.js'
import { buildSynPool } from './traffic.js'

const { values } = parseArgs({
  options: {
    interface: { type: 'string' },
    dst: { type: 'string' },
    'dst-mac': { type: 'string' },
    'src-mac': { type: 'string' },
    port: { type: 'string', default: '2222' },
    pool: { type: 'string', default: '4096' },
    seconds: { type: 'string', default: '3' },
    pps: { type: 'string', default: '0' },
    // Every frame from this source (a single scanner), e.g. this namespace's own address.
    src: { type: 'string' },
    // Complete this many TCP handshakes with --dst:--port first (from this namespace's own
    // address, through the kernel), so the receiver has verified evidence about it.
    connect: { type: 'string', default: '0' },
  },
})

function need(name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new Error(`e2e-sender: --${name} is required`)
  return value
}

const seconds = Number(values.seconds)
const pps = Number(values.pps)
const pool = buildSynPool({
  count: Number(values.pool),
  dst: need('dst', values.dst),
  dstPort: Number(values.port),
  dstMac: need('dst-mac', values['dst-mac']),
  srcMac: need('src-mac', values['src-mac']),
  ...(values.src !== undefined && { src: values.src }),
})

/** Opens `n` connections at once; resolves with how many completed (a tripwire accepts, then resets). */
async function handshakes(n: number, host: string, port: number): Promise<number> {
  const one = (): Promise<boolean> =>
    new Promise((resolve) => {
      const sock = connect({ host, port, timeout: 2000 })
      sock.once('connect', () => {
        sock.destroy()
        resolve(true)
      })
      sock.once('timeout', () => {
        sock.destroy()
        resolve(false)
      })
      // The tripwire accepts and resets at once: a reset can beat the connect event, and
      // is itself proof the handshake completed.
      sock.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET'))
    })
  const done = await Promise.all(Array.from({ length: n }, one))
  return done.filter(Boolean).length
}
const connected = Number(values.connect) > 0 ? await handshakes(Number(values.connect), need('dst', values.dst), Number(values.port)) : 0
const sender = new (loadBinding().Sender)({ interface: need('interface', values.interface) })

const lines = createInterface({ input: process.stdin })
process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, frames: pool.lengths.length, connected })}\n`)
for await (const line of lines) {
  if (line.trim() !== 'go') continue
  let sent = 0
  let failed = 0
  let lastError: string | null = null
  const start = process.hrtime.bigint()
  if (pps > 0) {
    // Paced: one call, so the Sender's schedule (against CLOCK_MONOTONIC) never restarts.
    const r = sender.send(pool.frames, pool.lengths, Math.round(pps * seconds), pps)
    sent = r.sent
    failed = r.failed
    lastError = r.lastError
  } else {
    // Unpaced: chunks that are a whole number of pools (the Sender restarts at frame 0
    // on each call), small enough to stop within ~0.1 s of the deadline.
    const chunk = pool.lengths.length * 4
    const deadline = start + BigInt(Math.round(seconds * 1e9))
    while (process.hrtime.bigint() < deadline) {
      const r = sender.send(pool.frames, pool.lengths, chunk)
      sent += r.sent
      failed += r.failed
      if (r.lastError !== null) lastError = r.lastError
    }
  }
  const elapsedNs = Number(process.hrtime.bigint() - start)
  sender.close()
  process.stdout.write(`${JSON.stringify({ sent, failed, elapsedNs, lastError })}\n`)
  break
}
lines.close()
