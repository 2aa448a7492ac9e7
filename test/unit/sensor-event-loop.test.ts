/**
 * A reader that cannot keep up still lets the event loop turn: while records keep waiting
 * in the ring, each hand-over is a settled promise, so without a yield a slow consumer
 * (the daemon under a flood above one core's worth) would never run a timer, an I/O
 * callback or a signal handler until the flood ended. The capture here never runs dry
 * (every drain fills the buffer, arm() always finds records), like the ring under such a
 * flood; a timer set before the loop must fire while the loop is still reading, through
 * `for await`, through `batches()`, and under the daemon (its stats event).
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { NativeBinding, NativeCaptureOptions } from '../../lib/binding.js'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { PortanoiaEvent } from '../../lib/daemon/events.js'
import { HIT_RECORD_SIZE } from '../../lib/decode.js'
import { open, type Sensor } from '../../lib/sensor.js'
import { FakeCapture, fakeBinding, fakeHost, hitRecord } from '../helpers/fake-binding.js'

/** How long a loop may read before the test calls the event loop starved. */
const STARVED_MS = 3000

/**
 * A ring that never runs dry while `flooding`: every drain fills the buffer. The flood ends by
 * itself after STARVED_MS (checked in drain, not by a timer, which a starved loop would never
 * run), so a regression fails the test instead of hanging the run.
 */
class FloodCapture extends FakeCapture {
  readonly #until = performance.now() + STARVED_MS
  #stopped = false
  #sources = Array.from({ length: 256 }, (_, i) => hitRecord({ src: `198.18.1.${i}`, dstPort: 2222, kind: 'syn' }))
  #next = 0

  get flooding(): boolean {
    return !this.#stopped && performance.now() < this.#until
  }

  stop(): void {
    this.#stopped = true
  }

  override drain(buffer: Buffer): number {
    if (!this.flooding) return super.drain(buffer)
    const n = Math.floor(buffer.length / HIT_RECORD_SIZE)
    for (let i = 0; i < n; i++) this.#sources[this.#next++ & 255]!.copy(buffer, i * HIT_RECORD_SIZE)
    return n
  }

  override arm(): boolean {
    return this.flooding ? false : super.arm()
  }
}

function floodBinding(): NativeBinding & { captures: FloodCapture[] } {
  const binding = fakeBinding() as unknown as NativeBinding & { captures: FloodCapture[] }
  binding.Capture = class {
    constructor(options: NativeCaptureOptions) {
      const c = new FloodCapture(options)
      binding.captures.push(c)
      return c
    }
  } as unknown as NativeBinding['Capture']
  return binding
}

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c()
})

async function floodSensor(): Promise<Sensor> {
  const sensor = await open({ ports: ['2222/tcp'], listen: false, binding: floodBinding() })
  closers.push(() => sensor.close())
  return sensor
}

describe('a reader that cannot keep up', () => {
  it('for await: a timer fires while hits keep coming', async () => {
    const sensor = await floodSensor()
    let fired = false
    setTimeout(() => (fired = true), 0)
    const t0 = performance.now()
    let n = 0
    for await (const hit of sensor) {
      if (hit.dstPort === 2222) n++
      if (fired || performance.now() - t0 > STARVED_MS / 2) break
    }
    expect(fired, `no timer ran while ${n} hits were read`).toBe(true)
    expect(n).toBeGreaterThan(0)
  })

  it('batches(): a timer fires while batches keep coming', async () => {
    const sensor = await floodSensor()
    let fired = false
    setTimeout(() => (fired = true), 0)
    const t0 = performance.now()
    let n = 0
    for await (const hits of sensor.batches()) {
      n += hits.length
      if (fired || performance.now() - t0 > STARVED_MS / 2) break
    }
    expect(fired, `no timer ran while ${n} hits were read`).toBe(true)
  })

  it('the daemon goes on emitting stats events while the ring never runs dry', async () => {
    const binding = floodBinding()
    // Stats events emitted while the ring was still full.
    const during: PortanoiaEvent[] = []
    const daemon = await Daemon.compose({
      statsIntervalMs: 20,
      ports: ['2222/tcp'],
      firewall: null,
      host: fakeHost({}),
      sensor: { binding },
      onEvent: (e) => {
        if (e.type === 'stats' && binding.captures[0]!.flooding) during.push(e)
      },
    })
    closers.push(() => daemon.close())
    // A starved loop runs no timer until the flood ends by itself: then this wait ends too.
    while (during.length < 2 && binding.captures[0]!.flooding) await new Promise((r) => setTimeout(r, 10))
    binding.captures[0]!.stop()
    expect(during.length, 'stats events while the ring never ran dry').toBeGreaterThanOrEqual(2)
    const last = during.at(-1) as { policy?: { hits?: number } }
    expect(last.policy?.hits ?? 0).toBeGreaterThan(0)
  })
})
