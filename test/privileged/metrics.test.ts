/**
 * The metrics endpoint of a real `portanoia watch --netns NS --metrics
 * 127.0.0.1:0` (the built CLI): with --netns the capture happens in the test
 * namespace while the process — and so its HTTP server — stays in this one, on
 * loopback. Probes from the peer namespace (a TCP connect, UDP datagrams) must
 * move the hit counters by protocol, kind and evidence, the decision counters by
 * reason, the active-block gauge, the kernel packet counter and the latency
 * histogram. The CLI is ended by PID (SIGTERM, exit 0); the namespaces always go.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { tcpConnect } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/metrics.test.ts')

const MAIN = join(import.meta.dirname, '../../dist/lib/cli/main.js')

let net: TestNet | undefined
const children: ChildProcess[] = []
afterEach(async () => {
  for (const c of children.splice(0)) await stop(c)
  await net?.destroy()
  net = undefined
})

function series(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0
  for (const line of text.split('\n')) {
    const m = /^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)$/i.exec(line)
    if (m === null || m[1] !== name) continue
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[3])
  }
  return total
}

describe.skipIf(!IS_ROOT)('portanoia watch --metrics', () => {
  it('counters move as probes hit and decisions happen', async () => {
    net = await createTestNet()
    const link = net.links[0]!
    const child = spawn(
      process.execPath,
      [MAIN, 'watch', '--netns', net.sensorNs, '--tcp', '2222', '--udp', '5353', '--json', '--metrics', '127.0.0.1:0'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    children.push(child)
    let out = ''
    let err = ''
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()))
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()))
    const waitFor = async (what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> => {
      const end = Date.now() + timeoutMs
      while (!check()) {
        if (child.exitCode !== null) throw new Error(`watch exited ${child.exitCode}: ${err}`)
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}; stderr:\n${err}\nstdout:\n${out}`)
        await new Promise((r) => setTimeout(r, 25))
      }
    }
    await waitFor('watching', () => err.includes('watching '))
    const url = /metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(err)?.[1]
    expect(url, err).toBeDefined()
    const scrape = async (): Promise<string> => {
      const r = await fetch(url!)
      expect(r.status).toBe(200)
      return await r.text()
    }

    const before = await scrape()
    expect(series(before, 'portanoia_hits_total')).toBe(0)
    expect(series(before, 'portanoia_decisions_total')).toBe(0)
    expect(series(before, 'portanoia_active_blocks', { family: '4', evidence: 'verified' })).toBe(0)

    // Three UDP datagrams (spoofable: reported, not blocked), then one TCP connect (verified: blocked).
    const udp = `const s = require('node:dgram').createSocket('udp4'); let n = 0
      const send = () => s.send('x', 5353, ${JSON.stringify(link.sensor.ipv4)}, () => { if (++n < 3) send(); else s.close() }); send()`
    expect((await link.peer.exec(process.execPath, ['-e', udp])).code).toBe(0)
    expect(await tcpConnect(link.peer, link.sensor.ipv4, 2222)).not.toBe('timeout')
    await waitFor('the block decision', () => /"reason":"blocked"/.test(out))

    let after = ''
    const deadline = Date.now() + 30_000
    for (;;) {
      after = await scrape()
      if (series(after, 'portanoia_active_blocks', { family: '4', evidence: 'verified' }) === 1 || Date.now() > deadline) break
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(series(after, 'portanoia_hits_total', { proto: 'udp', kind: 'udp', verified: 'false' })).toBe(3)
    expect(series(after, 'portanoia_hits_total', { proto: 'tcp', kind: 'connect', verified: 'true' })).toBeGreaterThanOrEqual(1)
    expect(series(after, 'portanoia_decisions_total', { source: 'local', action: 'block', reason: 'blocked' })).toBe(1)
    expect(series(after, 'portanoia_decisions_total', { source: 'local', reason: 'spoofable-report-only' })).toBeGreaterThanOrEqual(1)
    expect(series(after, 'portanoia_active_blocks', { family: '4', evidence: 'verified' })).toBe(1)
    expect(series(after, 'portanoia_kernel_packets_total')).toBeGreaterThanOrEqual(3)
    expect(series(after, 'portanoia_kernel_drops_total')).toBe(0)
    expect(series(after, 'portanoia_ring_drops_total')).toBe(0)
    const decided = series(after, 'portanoia_decision_latency_seconds_count')
    expect(decided).toBeGreaterThanOrEqual(2)
    // Every decision was observed by the histogram (how fast is the benchmarks' business).
    expect(series(after, 'portanoia_decision_latency_seconds_bucket', { le: '+Inf' })).toBe(decided)
    expect(series(after, 'portanoia_decision_latency_seconds_sum')).toBeGreaterThan(0)
    expect(series(after, 'portanoia_responder_errors_total')).toBe(0)
    expect(series(after, 'process_resident_memory_bytes')).toBeGreaterThan(0)

    process.kill(child.pid!, 'SIGTERM')
    const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (c) => r(c))))
    expect(code).toBe(0)
    // The endpoint is gone with the process.
    await expect(fetch(url!)).rejects.toThrow()
  })
})
