/**
 * Process exit at each stage of a capture, each in its own child process on loopback:
 * process.exit() while hits stream in, an uncaught exception while hits stream in, main
 * returning with an open sensor nobody reads (must exit: an idle sensor holds no event
 * loop reference), and a pending `for await` (must stay alive until the sensor is
 * closed); a started host watch left unclosed (must exit, its thread joined); and a peer
 * batch in flight (must keep the process alive until answered, and nothing after). A
 * clean exit is code 0 with no native crash signature; the capture thread
 * and its thread-safe function must not stall or abort teardown. Needs root (AF_PACKET);
 * traffic is UDP to 127.0.0.1 only.
 */
import { afterEach, describe, expect, test } from 'vitest'
import { CRASH_MARKERS, floodLoopback, randomHighPort, runChild, type Child } from '../helpers/child.js'
import { IS_ROOT, warnIfNotRoot } from '../helpers/netns.js'

warnIfNotRoot('test/lifecycle/exit.test.ts')

const children: Child[] = []
const floods: Array<{ stop: () => Promise<number> }> = []

afterEach(async () => {
  for (const f of floods.splice(0)) await f.stop()
  for (const c of children.splice(0)) await c.stop('SIGKILL')
})

function spawnChild(source: string): Child {
  const c = runChild(source)
  children.push(c)
  return c
}

function expectNoCrash(stderr: string): void {
  for (const m of CRASH_MARKERS) expect(stderr).not.toContain(m)
}

const prelude = (port: number): string => `
import { open } from '__ENTRY__'
const sensor = await open({ ports: ['${port}/udp'], interface: 'lo', listen: false })
console.log('open')
`

describe.skipIf(!IS_ROOT)('process exit mid-capture', () => {
  test('process.exit() while hits stream in exits cleanly', async () => {
    const port = randomHighPort()
    const child = spawnChild(`${prelude(port)}
let n = 0
for await (const hit of sensor) {
  if (++n === 200) {
    console.log('exiting ' + hit.dstPort)
    process.exit(0)
  }
}
`)
    await child.line(/^open$/)
    floods.push(floodLoopback(port))
    const line = await child.line(/^exiting/)
    expect(line).toBe(`exiting ${port}`)
    // A teardown that stalled would never resolve this (the test's timeout says so).
    const e = await child.exited
    expect(e.signal).toBeNull()
    expect(e.code).toBe(0)
    expectNoCrash(e.stderr)
  })

  test('an uncaught exception while hits stream in exits with code 1, no native crash', async () => {
    const port = randomHighPort()
    const child = spawnChild(`${prelude(port)}
let n = 0
for await (const hit of sensor) {
  if (++n === 200) setTimeout(() => { throw new Error('boom-' + hit.dstPort) }, 0)
}
`)
    await child.line(/^open$/)
    floods.push(floodLoopback(port))
    const e = await Promise.race([child.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))])
    expect(e, 'the child did not exit').not.toBeNull()
    expect(e!.signal).toBeNull()
    expect(e!.code).toBe(1)
    expect(e!.stderr).toContain(`boom-${port}`)
    expectNoCrash(e!.stderr)
  })

  test('main returning with an open, unread sensor exits (even while traffic arrives)', async () => {
    const port = randomHighPort()
    floods.push(floodLoopback(port))
    // Nothing after open(): the module finishes with the sensor open and never read.
    const child = spawnChild(prelude(port))
    await child.line(/^open$/)
    const e = await Promise.race([child.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))])
    expect(e, 'an idle unread sensor kept the process alive').not.toBeNull()
    expect(e!.code).toBe(0)
    expect(e!.signal).toBeNull()
    expectNoCrash(e!.stderr)
  })

  test('a pending for-await keeps the process alive until the sensor is closed', async () => {
    const port = randomHighPort()
    const child = spawnChild(`${prelude(port)}
// Signal handlers do not hold the event loop open; only the pending next() does.
process.on('SIGUSR2', () => { console.log('closing'); void sensor.close() })
process.on('SIGWINCH', () => console.log('alive'))
// Emitted when nothing holds the event loop any more: the moment the process would exit.
process.on('beforeExit', () => console.log('would exit'))
// One timer turn after the loop started waiting: once it ran, only the pending next() is left.
setTimeout(() => console.log('tick'), 10)
let n = 0
for await (const hit of sensor) n++
console.log('loop-ended ' + n)
`)
    await child.line(/^open$/)
    await child.line(/^tick$/)
    // The sentinel: a process still running answers; one whose loop had emptied after
    // 'tick' has printed 'would exit' first (beforeExit runs in that same turn).
    process.kill(child.pid, 'SIGWINCH')
    expect(await child.line(/^(alive|would exit)$/), 'the process would have exited while a for-await was pending').toBe('alive')
    process.kill(child.pid, 'SIGUSR2')
    await child.line(/^loop-ended 0$/)
    const e = await Promise.race([child.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))])
    expect(e, 'the process did not exit after close()').not.toBeNull()
    expect(e!.code).toBe(0)
    expectNoCrash(e!.stderr)
  })
  test('a started, unclosed host watch keeps nothing alive and tears down cleanly', async () => {
    // The watcher thread's thread-safe function is unref'd; the env cleanup hook joins
    // the thread before Node finalizes the function.
    const child = spawnChild(`
const { loadBinding } = await import(new URL('./binding.js', '__ENTRY__').href)
const watch = new (loadBinding().HostWatch)({})
watch.start(() => console.log('change'))
console.log('started ' + watch.facts().addresses.length)
`)
    expect(await child.line(/^started \d+$/)).toMatch(/^started [1-9]/)
    const t0 = Date.now()
    const e = await child.exited
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(e.signal).toBeNull()
    expect(e.code).toBe(0)
    expectNoCrash(e.stderr)
  })

  test('a peer batch in flight keeps the process alive until it is answered, and nothing after', async () => {
    // The batch runs on libuv's pool (an N-API AsyncWorker): its work request holds
    // the loop while it runs; the HostWatch itself holds nothing.
    const child = spawnChild(`
const { loadBinding } = await import(new URL('./binding.js', '__ENTRY__').href)
const watch = new (loadBinding().HostWatch)({})
process.on('beforeExit', () => console.log('would exit'))
watch.peers(['198.18.0.99', '198.18.0.0/15', 'fd52:43dd::99']).then((r) => console.log('answered ' + r.join(',')))
console.log('asked')
`)
    const e = await Promise.race([child.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))])
    expect(e, 'the process did not exit after the batch was answered').not.toBeNull()
    expect(e!.stdout.trim().split('\n')).toEqual(['asked', 'answered 0,0,0', 'would exit'])
    expect(e!.code).toBe(0)
    expectNoCrash(e!.stderr)
  })
})
