/**
 * The express lane against the real kernel (native/express_lane.h, Capture's wiring): a
 * lone probe to a quiet interface is reported once, through the lane, and its main-ring
 * copy is matched and dropped; a burst of hits turns the lane off and every probe of it is
 * still reported exactly once; a flood that is no hit at all (a port that is not a
 * tripwire) turns it off too, by the interface's packet rate alone; and once the interface
 * is quiet again the lane comes back. No check leans on a delay being long enough: waits
 * are for a counter or a flag the sensor reports, under a deadline, and "nothing more"
 * is asserted with a sentinel probe (frames cross one veth in order).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { open, type Sensor } from '../../lib/sensor.js'
import type { Hit } from '../../lib/types.js'
import { createTestNet, IS_ROOT, warnIfNotRoot, type Link, type TestNet } from '../helpers/netns.js'
import { collectHits, probeFrame, sendFrames } from '../helpers/probes.js'

warnIfNotRoot('test/privileged/express.test.ts')

const TRIPWIRE = 3300
const NOT_TRIPWIRE = 3399

let nextSrcPort = 20000
const freshPort = (): number => nextSrcPort++

/** Polls the sensor's stats until `ok` holds; fails the test after `ms`. */
async function until(sensor: Sensor, what: string, ok: (s: ReturnType<Sensor['stats']>) => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!ok(sensor.stats())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(sensor.stats())}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe.skipIf(!IS_ROOT)('express lane', () => {
  let net: TestNet
  let link: Link
  let sensor: Sensor

  beforeAll(async () => {
    net = await createTestNet()
    link = net.links[0]!
    sensor = await open({ ports: [`${TRIPWIRE}/tcp`], interface: link.sensor.ifname, netns: net.sensorPath, listen: false, express: true })
  })

  afterAll(async () => {
    await sensor?.close()
    await net?.destroy()
  })

  const syn = (srcPort: number, dstPort = TRIPWIRE): Uint8Array => probeFrame(link.peer, link.sensor, { family: 4, proto: 'tcp', srcPort, dstPort })

  /** Sends a sentinel SYN and returns every hit up to and including it. */
  async function toSentinel(): Promise<Hit[]> {
    const port = freshPort()
    sendFrames(link.peer, [syn(port)])
    const got = await collectHits(sensor, (hits) => hits.some((h) => h.srcPort === port), 10_000)
    expect(got.matched, 'the sentinel was not reported').toBe(true)
    return got.hits
  }

  it('reports a lone probe once, through the lane, and drops its main-ring copy', async () => {
    await until(sensor, 'the lane to be on', (s) => s.expressActive === 1)
    const before = sensor.stats()
    const port = freshPort()
    sendFrames(link.peer, [syn(port)])
    const got = await collectHits(sensor, (hits) => hits.some((h) => h.srcPort === port), 10_000)
    expect(got.matched).toBe(true)
    // Counters come before their hits on the lane too: the frame is counted when its hit is read.
    expect(sensor.stats().frames - before.frames).toBeGreaterThanOrEqual(1)
    // The main ring's copy arrives when its block retires; it must be matched, not reported.
    await until(sensor, 'the main-ring copy to be matched', (s) => s.expressCopies >= before.expressCopies + 1)
    const rest = await toSentinel()
    const all = [...got.hits, ...rest]
    expect(all.filter((h) => h.srcPort === port)).toHaveLength(1)
    const after = sensor.stats()
    expect(after.expressHits).toBeGreaterThanOrEqual(before.expressHits + 1)
    expect(after.duplicates).toBe(before.duplicates)
    // Each frame counted once: the probe and the sentinel, whichever ring reported them.
    expect(after.frames - before.frames).toBe(2)
  })

  it('goes off under a burst of hits, and every probe of the burst is reported exactly once', async () => {
    await until(sensor, 'the lane to be on', (s) => s.expressActive === 1)
    const before = sensor.stats()
    const ports = Array.from({ length: 3000 }, () => freshPort())
    sendFrames(link.peer, ports.map((p) => syn(p)))
    const want = new Set(ports)
    const got = await collectHits(sensor, (hits) => hits.filter((h) => want.has(h.srcPort)).length >= ports.length, 20_000)
    expect(got.matched, `${got.hits.length} of ${ports.length} probes reported`).toBe(true)
    // Every main-ring copy of the burst walked (matched or reported), then a sentinel.
    await until(sensor, 'the burst to be walked', (s) => s.frames >= before.frames + ports.length)
    const rest = await toSentinel()
    const counts = new Map<number, number>()
    for (const h of [...got.hits, ...rest]) counts.set(h.srcPort, (counts.get(h.srcPort) ?? 0) + 1)
    expect(ports.filter((p) => counts.get(p) !== 1), 'probes not reported exactly once').toEqual([])
    const after = sensor.stats()
    expect(after.expressSwitches, 'the lane never went off').toBeGreaterThan(before.expressSwitches)
    expect(after.kernelDrops).toBe(before.kernelDrops)
  })

  it('goes off under a flood that is no hit at all, and comes back when the interface is quiet', async () => {
    await until(sensor, 'the lane to be on', (s) => s.expressActive === 1)
    const before = sensor.stats()
    // SYNs to a port that is not a tripwire, 100,000 at a time paced at ~400k/s, until the
    // lane goes off: the kernel filter drops them all, so only the interface's packet rate can
    // tell it to. Repeated rather than one fixed burst, so a loaded host that sends slower
    // still gets a 50 ms interval over 100k packets/s; bounded by a deadline.
    const flood = Array.from({ length: 256 }, (_, i) => syn(30000 + i, NOT_TRIPWIRE))
    const deadline = Date.now() + 20_000
    while (sensor.stats().expressSwitches === before.expressSwitches && Date.now() < deadline) {
      sendFrames(link.peer, flood, { total: 100_000, pps: 400_000 })
      await new Promise((r) => setTimeout(r, 60))
    }
    await until(sensor, 'the lane to go off', (s) => s.expressSwitches > before.expressSwitches)
    expect(sensor.stats().hits).toBe(before.hits)
    // Quiet again: back on, and a lone probe is still reported once.
    await until(sensor, 'the lane to come back', (s) => s.expressActive === 1 && s.expressSwitches >= before.expressSwitches + 2)
    const hits = await toSentinel()
    expect(hits).toHaveLength(1)
  })
})
