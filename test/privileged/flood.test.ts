/**
 * Floods must not hurt the daemon (issue 8), reproduced in test namespaces with
 * crafted frames: a `watch` whose stdout reader stalls during a flood stays within
 * bounded memory and says how many events it dropped once the reader is back; a
 * reader that closes the pipe (`| head -1`) stops `watch` with exit 0 instead of an
 * EPIPE crash; in the default (verified) mode, a flood of forged sources costs a
 * bounded number of decisions (the report breaker), not one per source.
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import { DEFAULT_POLICY } from '../../lib/policy/config.js'
import { CLI_MAIN, stopWatches } from '../helpers/cli.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { probeFrame, sendFrames } from '../helpers/probes.js'
import { tcpConnect } from '../helpers/tcp.js'
import { internals } from '../helpers/internals.js'

warnIfNotRoot('test/privileged/flood.test.ts')

const TRIPWIRE = 2222

let net: TestNet | undefined
const daemons: Daemon[] = []
const children: Array<ReturnType<typeof spawn>> = []

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close()
  for (const c of children.splice(0)) await stop(c)
  await stopWatches()
  await net?.destroy()
  net = undefined
})

async function waitFor(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) / 1024
}

/** Forged SYNs to the tripwire from `n` distinct sources of 198.19.0.0/16. */
function forgedSyns(n: TestNet['links'][0], count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) =>
    probeFrame(n.peer, n.sensor, { family: 4, proto: 'tcp', src: `198.19.${i >> 8}.${i & 255}`, srcPort: 1024 + (i % 60000), dstPort: TRIPWIRE }),
  )
}

/** `portanoia watch` with stdout on a pipe this test controls. */
function spawnWatch(args: readonly string[]): { child: ReturnType<typeof spawn>; err: () => string; started: Promise<void> } {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let err = ''
  const started = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString()
      if (err.includes('watching ')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`watch exited ${String(code)}: ${err}`)))
  })
  return { child, err: () => err, started }
}

describe.skipIf(!IS_ROOT)('floods', () => {
  it('a stalled stdout reader costs dropped events, counted and summarised, not memory', async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    const w = spawnWatch(['watch', '--netns', net.sensorNs, '--tcp', String(TRIPWIRE), '--backend', 'none', '--json', '--hits', '--stats-interval', '0s'])
    await w.started
    const pid = w.child.pid!
    // The reader stalls: the kernel pipe fills, and every later line is the daemon's to hold or drop.
    w.child.stdout!.pause()
    const baseline = rssMb(pid)
    const frame = probeFrame(a.peer, a.sensor, { family: 4, proto: 'tcp', srcPort: 40000, dstPort: TRIPWIRE })
    let peak = baseline
    for (let round = 0; round < 6; round++) {
      sendFrames(a.peer, [frame], { total: 50_000 })
      await new Promise((r) => setTimeout(r, 300))
      peak = Math.max(peak, rssMb(pid))
    }
    console.log(`stalled reader: RSS ${baseline.toFixed(0)} MB → peak ${peak.toFixed(0)} MB over 300,000 hit events`)
    // 300,000 hit events are ~150 MB of JSON: holding them is what used to happen.
    expect(peak - baseline).toBeLessThan(60)
    // The reader comes back: the output says what it lost.
    let out = ''
    w.child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
    w.child.stdout!.resume()
    await waitFor('the dropped-events summary', () => out.includes('PORTANOIA_OUTPUT_DROPPED'))
    const summary = out.split('\n').find((l) => l.includes('PORTANOIA_OUTPUT_DROPPED')) as string
    expect(JSON.parse(summary)).toMatchObject({ type: 'error', responder: 'output', code: 'PORTANOIA_OUTPUT_DROPPED', count: expect.any(Number) })
    expect((JSON.parse(summary) as { count: number }).count).toBeGreaterThan(1000)
  }, 120_000)

  it('a reader that closes the pipe stops watch with exit 0, no EPIPE crash', async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    const w = spawnWatch(['watch', '--netns', net.sensorNs, '--tcp', String(TRIPWIRE), '--json', '--hits'])
    await w.started
    // `| head -1`: one line is read, then the read end is gone.
    await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)
    const first = await new Promise<string>((resolve) => w.child.stdout!.once('data', (c: Buffer) => resolve(c.toString())))
    expect(first).toContain('"type":"hit"')
    w.child.stdout!.destroy()
    const exit = new Promise<number | null>((resolve) => w.child.once('exit', (code) => resolve(code)))
    // More events must be written to meet the closed pipe.
    for (let i = 0; i < 5; i++) await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 300)
    expect(await exit).toBe(0)
    expect(w.err()).toMatch(/stdout was closed by its reader/)
    expect(w.err()).not.toMatch(/EPIPE|Error/)
  }, 60_000)

  it('20,000 forged sources in the default mode: a bounded number of decisions, with the totals', async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    const events: PortanoiaEvent[] = []
    const daemon = await Daemon.compose({ ports: [`${TRIPWIRE}/tcp`], netns: net.sensorNs, firewall: null, statsIntervalMs: 0, onEvent: (e) => events.push(e) })
    daemons.push(daemon)
    const n = 20_000
    sendFrames(a.peer, forgedSyns(a, n))
    await waitFor('every hit', () => internals(daemon).engine.stats().hits >= n)
    const decisions = events.filter((e): e is DecisionEvent => e.type === 'decision')
    const cap = DEFAULT_POLICY.maxReportsPerMinute
    console.log(`${n} forged sources → ${decisions.length} decision events`)
    expect(decisions.filter((d) => d.reason === 'spoofable-report-only')).toHaveLength(cap)
    expect(decisions.filter((d) => d.reason === 'report-capped').map((d) => d.breaker)).toEqual(['open'])
    expect(decisions.length).toBe(cap + 1)
    expect(internals(daemon).engine.stats()).toMatchObject({ reportBreaker: 'open', suppressedSources: n - cap - 1 })
  }, 60_000)
})
