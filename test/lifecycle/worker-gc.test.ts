/**
 * The addon's per-environment lifetime: worker threads that open a sensor, iterate hits
 * and are terminated with worker.terminate() (one, then two at once) must not crash
 * and must leave no capture thread behind (the env cleanup hook joins it); and a sensor
 * that is never closed but becomes unreachable is collected, its finalizer stopping the
 * capture thread (the doorbell holds the sensor only weakly); workers terminated while a
 * peer batch runs on libuv's pool must not crash either. Each scenario runs in a
 * child process that counts its own threads in /proc/self/task. Needs root
 * (AF_PACKET); traffic is UDP to 127.0.0.1 only.
 */
import { afterEach, describe, expect, test } from 'vitest'
import { CRASH_MARKERS, floodLoopback, randomHighPort, runChild, type Child, type ChildExit } from '../helpers/child.js'
import { IS_ROOT, warnIfNotRoot } from '../helpers/netns.js'

warnIfNotRoot('test/lifecycle/worker-gc.test.ts')

const children: Child[] = []
const floods: Array<{ stop: () => Promise<number> }> = []

afterEach(async () => {
  for (const f of floods.splice(0)) await f.stop()
  for (const c of children.splice(0)) await c.stop('SIGKILL')
})

function lastJson<T>(e: ChildExit): T {
  const line = e.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (line === undefined) throw new Error(`no report; exit ${String(e.code)} ${String(e.signal)}\nstdout:\n${e.stdout}\nstderr:\n${e.stderr}`)
  return JSON.parse(line) as T
}

function expectClean(e: ChildExit): void {
  for (const m of CRASH_MARKERS) expect(e.stderr).not.toContain(m)
  expect(e.signal, e.stderr).toBeNull()
  expect(e.code, e.stderr).toBe(0)
}

// Worker body (CommonJS eval): open on `port`, report, iterate forever.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
import(workerData.entry).then(async ({ open }) => {
  const sensor = await open({ ports: [workerData.port + '/udp'], interface: 'lo', listen: false })
  parentPort.postMessage({ type: 'open' })
  let n = 0
  for await (const hit of sensor) {
    if (++n === 50) parentPort.postMessage({ type: 'hits', port: hit.dstPort })
  }
})
`

const MAIN = (ports: number[], warmPort: number): string => `
import { Worker } from 'node:worker_threads'
import { readdirSync } from 'node:fs'
const tasks = () => readdirSync('/proc/self/task').length
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const WORKER = ${JSON.stringify(WORKER)}
function start(port) {
  const w = new Worker(WORKER, { eval: true, workerData: { entry: '__ENTRY__', port } })
  const seen = new Set()
  const waitFor = (type) => new Promise((resolve, reject) => {
    if (seen.has(type)) return resolve()
    w.on('message', (m) => { seen.add(m.type); if (m.type === type) resolve() })
    w.once('error', reject)
    w.once('exit', (code) => reject(new Error('worker exited early with ' + code)))
  })
  w.on('message', (m) => seen.add(m.type))
  return { w, waitFor }
}
async function settleTo(target) {
  for (let i = 0; i < 40 && tasks() !== target; i++) await sleep(50)
  return tasks()
}
// Warm-up: a worker that opens a sensor and is terminated, so what Node keeps is counted.
{
  const { w, waitFor } = start(${warmPort})
  await waitFor('open')
  await w.terminate()
}
await sleep(200)
const base = tasks()
const workers = [${ports.join(', ')}].map(start)
await Promise.all(workers.map((x) => x.waitFor('open')))
const during = tasks()
console.log('opened')
await Promise.all(workers.map((x) => x.waitFor('hits')))
const codes = await Promise.all(workers.map((x) => x.w.terminate()))
const after = await settleTo(base)
console.log(JSON.stringify({ base, during, after, codes }))
`

describe.skipIf(!IS_ROOT)('worker threads', () => {
  for (const count of [1, 2]) {
    test(`${count} worker(s) with a sensor receiving hits, terminated: no crash, threads back to baseline`, async () => {
      const ports = Array.from({ length: count }, (_, i) => randomHighPort() + i * 3)
      const child = runChild(MAIN(ports, randomHighPort()))
      children.push(child)
      await child.line(/^opened$/, 30_000)
      for (const p of ports) floods.push(floodLoopback(p))
      const e = await child.exited
      expectClean(e)
      const r = lastJson<{ base: number; during: number; after: number; codes: number[] }>(e)
      // Each worker adds its own thread and one capture thread (libuv may add more).
      expect(r.during).toBeGreaterThanOrEqual(r.base + 2 * count)
      expect(r.after).toBe(r.base)
      expect(r.codes).toEqual(Array<number>(count).fill(1)) // terminate() resolves with exit code 1
    })
  }
})

// Worker body: peer batches back to back on a HostWatch of its own, never closed.
const PEER_WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
import(new URL('./binding.js', workerData.entry).href).then(async ({ loadBinding }) => {
  const watch = new (loadBinding().HostWatch)({})
  const targets = Array.from({ length: 256 }, (_, i) => '198.18.3.' + i)
  for (let n = 1; ; n++) {
    await watch.peers(targets)
    if (n === 3) parentPort.postMessage({ type: 'batches' })
  }
})
`

describe.skipIf(!IS_ROOT)('worker threads with peer batches in flight', () => {
  test('terminated while a batch runs on the pool: no crash, every worker ends', async () => {
    // The batch's AsyncWorker holds the SockDiag it runs on (shared with the queue), so
    // an env torn down under it frees nothing the pool thread still uses.
    const child = runChild(`
import { Worker } from 'node:worker_threads'
const WORKER = ${JSON.stringify(PEER_WORKER)}
const codes = []
for (let i = 0; i < 8; i++) {
  const w = new Worker(WORKER, { eval: true, workerData: { entry: '__ENTRY__' } })
  await new Promise((resolve, reject) => {
    w.on('message', (m) => { if (m.type === 'batches') resolve() })
    w.once('error', reject)
    w.once('exit', (code) => reject(new Error('worker exited early with ' + code)))
  })
  // Some terminations land between batches, most while one runs.
  await new Promise((r) => setTimeout(r, i))
  codes.push(await w.terminate())
}
console.log(JSON.stringify({ codes }))
`)
    children.push(child)
    const e = await child.exited
    expectClean(e)
    expect(lastJson<{ codes: number[] }>(e).codes).toEqual(Array<number>(8).fill(1))
  })
})

describe.skipIf(!IS_ROOT)('garbage collection of an unclosed sensor', () => {
  test('dropping the last reference and collecting stops the capture thread', async () => {
    const port = randomHighPort()
    const child = runChild(
      `
import { open } from '__ENTRY__'
import { readdirSync } from 'node:fs'
const tasks = () => readdirSync('/proc/self/task').length
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
// Warm-up with an explicit close, so only the capture thread differs below.
await (await open({ ports: ['${port}/udp'], interface: 'lo', listen: false })).close()
await sleep(100)
const base = tasks()
let sensor = await open({ ports: ['${port}/udp'], interface: 'lo', listen: false })
const during = tasks()
// Read once so the doorbell path (arm, ref, wake, unref) has been through a cycle.
const first = sensor.next()
await sleep(300)
const gotHit = await Promise.race([first.then(() => true), sleep(2000).then(() => false)])
sensor = undefined
let after = tasks()
for (let i = 0; i < 50 && after !== base; i++) {
  globalThis.gc()
  await sleep(50)
  after = tasks()
}
console.log(JSON.stringify({ base, during, after, gotHit }))
`,
      { nodeArgs: ['--expose-gc'] },
    )
    children.push(child)
    floods.push(floodLoopback(port))
    const e = await child.exited
    expectClean(e)
    const r = lastJson<{ base: number; during: number; after: number; gotHit: boolean }>(e)
    expect(r.gotHit).toBe(true)
    expect(r.during).toBe(r.base + 1)
    expect(r.after, 'the capture thread of an unreachable sensor was not stopped').toBe(r.base)
  })

  test('an unreachable sensor with a next() still pending is not collected while the loop waits', async () => {
    // The pending next() holds the event loop open (by design); the process must stay
    // alive and the thread must keep running until the test ends it.
    const port = randomHighPort()
    const child = runChild(
      `
import { open } from '__ENTRY__'
import { readdirSync } from 'node:fs'
const tasks = () => readdirSync('/proc/self/task').length
let sensor = await open({ ports: ['${port}/udp'], interface: 'lo', listen: false })
const withThread = tasks()
void sensor.next()
sensor = undefined
for (let i = 0; i < 10; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 30)) }
console.log(JSON.stringify({ withThread, now: tasks() }))
process.on('SIGWINCH', () => console.log('alive'))
process.on('beforeExit', () => console.log('would exit'))
setTimeout(() => console.log('tick'), 10)
`,
      { nodeArgs: ['--expose-gc'] },
    )
    children.push(child)
    const line = await child.line(/^\{/)
    const r = JSON.parse(line) as { withThread: number; now: number }
    expect(r.now).toBe(r.withThread)
    // The sentinel: after the last timer ran, a process whose loop had emptied prints
    // 'would exit' (beforeExit) before it could answer the signal.
    await child.line(/^tick$/)
    process.kill(child.pid, 'SIGWINCH')
    expect(await child.line(/^(alive|would exit)$/)).toBe('alive')
    const e = await child.stop('SIGTERM')
    expect(e.signal).toBe('SIGTERM')
  })
})
