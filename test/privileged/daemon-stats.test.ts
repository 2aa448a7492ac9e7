/**
 * The last word of a run: after close(), the sensor's counters are the totals of the
 * run, not zeros, so the final `stats` event a daemon emits at shutdown (taken after
 * the sensor closed) says what was seen. Real capture in a test namespace; the
 * probes are crafted SYNs to a tripwire, counted by the test itself.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { PortanoiaEvent, StatsEvent } from '../../lib/daemon/events.js'
import { open } from '../../lib/sensor.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { probeFrame, sendFrames } from '../helpers/probes.js'
import { internals } from '../helpers/internals.js'

warnIfNotRoot('test/privileged/daemon-stats.test.ts')

const TRIPWIRE = 2222
const PROBES = 25

let net: TestNet | undefined

afterEach(async () => {
  await net?.destroy()
  net = undefined
})

async function waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe.skipIf(!IS_ROOT)('counters after close', () => {
  it('sensor.stats() after close() returns the totals of the run', async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    const sensor = await open({ ports: [`${TRIPWIRE}/tcp`], netns: net.sensorPath, listen: false })
    const frames = Array.from({ length: PROBES }, (_, i) =>
      probeFrame(a.peer, a.sensor, { family: 4, proto: 'tcp', srcPort: 30000 + i, dstPort: TRIPWIRE }),
    )
    sendFrames(a.peer, frames)
    await waitFor('every hit counted', () => sensor.stats().hits >= PROBES)
    await sensor.close()
    const after = sensor.stats()
    expect(after.hits).toBe(PROBES)
    expect(after.frames).toBeGreaterThanOrEqual(PROBES)
  })

  it("the daemon's final stats event carries the sensor's counters", async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    const events: PortanoiaEvent[] = []
    const daemon = await Daemon.compose({
      ports: [`${TRIPWIRE}/tcp`],
      netns: net.sensorNs,
      firewall: null,
      statsIntervalMs: 0,
      onEvent: (e) => events.push(e),
    })
    const frames = Array.from({ length: PROBES }, (_, i) =>
      probeFrame(a.peer, a.sensor, { family: 4, proto: 'tcp', src: `198.18.0.${100 + i}`, srcPort: 30000 + i, dstPort: TRIPWIRE }),
    )
    sendFrames(a.peer, frames)
    await waitFor('every hit decided', () => internals(daemon).engine.stats().hits >= PROBES)
    await daemon.close()
    const stats = events.filter((e): e is StatsEvent => e.type === 'stats')
    expect(stats).toHaveLength(1)
    expect(stats[0]!.sensor?.hits).toBe(PROBES)
    expect(stats[0]!.policy.hits).toBe(PROBES)
  })
})
