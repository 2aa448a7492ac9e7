/**
 * close() against the real addon on loopback: it ends a pending next() (and a pending
 * for-await) with done, promptly; and opening and closing a sensor 100 times, with and
 * without TCP listeners, with and without a read pending at close, returns the
 * process's descriptors (/proc/self/fd) and threads (/proc/self/task) to their
 * baseline. The leak check runs in a child process so the test runner's own threads
 * and descriptors cannot blur the counts. Needs root (AF_PACKET); traffic is to
 * 127.0.0.1 only.
 */
import { afterEach, describe, expect, test } from 'vitest'
import { open } from '../../lib/sensor.js'
import type { Sensor } from '../../lib/sensor.js'
import { CRASH_MARKERS, floodLoopback, randomHighPort, runChild, type Child } from '../helpers/child.js'
import { IS_ROOT, warnIfNotRoot } from '../helpers/netns.js'

warnIfNotRoot('test/lifecycle/close.test.ts')

const sensors: Sensor[] = []
const children: Child[] = []

afterEach(async () => {
  for (const s of sensors.splice(0)) await s.close()
  for (const c of children.splice(0)) await c.stop('SIGKILL')
})

async function openLo(port: number): Promise<Sensor> {
  const s = await open({ ports: [`${port}/udp`], interface: 'lo', listen: false })
  sensors.push(s)
  return s
}

describe.skipIf(!IS_ROOT)('close() with the real addon', () => {
  test('close() while next() is pending resolves it done', async () => {
    const sensor = await openLo(randomHighPort())
    const pending = sensor.next()
    await new Promise((r) => setTimeout(r, 200))
    await sensor.close()
    expect(await pending).toEqual({ done: true, value: undefined })
    expect(await sensor.next()).toEqual({ done: true, value: undefined })
  })

  test('close() ends a for-await that is receiving hits; hits before it were real', async () => {
    const port = randomHighPort()
    const sensor = await openLo(port)
    const flood = floodLoopback(port)
    const hits: number[] = []
    try {
      for await (const hit of sensor) {
        hits.push(hit.dstPort)
        if (hits.length === 50) void sensor.close()
      }
    } finally {
      await flood.stop()
    }
    expect(hits.length).toBeGreaterThanOrEqual(50)
    expect(new Set(hits)).toEqual(new Set([port]))
    expect(sensor.closed).toBe(true)
  })

  test('open/close 100 times returns descriptors and threads to the baseline', async () => {
    const udp = randomHighPort()
    const tcp = udp + 1
    const child = runChild(`
import { open } from '__ENTRY__'
import { readdirSync } from 'node:fs'
const fds = () => readdirSync('/proc/self/fd').length
const tasks = () => readdirSync('/proc/self/task').length
const settle = () => new Promise((r) => setTimeout(r, 50))
async function cycle(i) {
  // Vary what is open at close: listeners or not, a read pending or not.
  const listen = i % 2 === 0
  const s = await open({ ports: ['${udp}/udp', '${tcp}/tcp'], interface: 'lo', listen })
  const during = { fds: fds(), tasks: tasks() }
  let pending
  if (i % 3 === 0) pending = s.next()
  await s.close()
  if (pending !== undefined) {
    const r = await pending
    if (!r.done) throw new Error('pending next() was not ended by close()')
  }
  return during
}
await cycle(0) // warm-up: the addon, libuv and V8 create what they keep
await settle()
const base = { fds: fds(), tasks: tasks() }
let peak = { fds: 0, tasks: 0 }
for (let i = 0; i < 100; i++) {
  const d = await cycle(i)
  peak = { fds: Math.max(peak.fds, d.fds), tasks: Math.max(peak.tasks, d.tasks) }
}
await settle()
console.log(JSON.stringify({ base, peak, after: { fds: fds(), tasks: tasks() } }))
`)
    children.push(child)
    const e = await child.exited
    for (const m of CRASH_MARKERS) expect(e.stderr).not.toContain(m)
    expect(e.code, e.stderr).toBe(0)
    const { base, peak, after } = JSON.parse(e.stdout.trim().split('\n').pop()!) as Record<'base' | 'peak' | 'after', { fds: number; tasks: number }>
    // While open: the packet socket, the eventfd and (with listen) the TCP listener; one thread.
    expect(peak.fds).toBeGreaterThanOrEqual(base.fds + 2)
    expect(peak.tasks).toBe(base.tasks + 1)
    expect(after).toEqual(base)
  })
})
