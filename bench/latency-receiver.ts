/**
 * The packet → JS latency benchmark's receiver, run as its own process inside the
 * sensor namespace and pinned to a core by bench/latency.ts. It opens a sensor with
 * the library's default options (only ports, interface and listen are given; `--express`
 * adds `express: true`) and, for
 * every SYN to the tripwire that the `for await` loop yields, records how long ago the
 * kernel stamped it: RealtimeClock.now() − hit.time, both CLOCK_REALTIME on this host,
 * so no clock crosses a machine. Reading the clock per hit costs ~50 ns, small next to
 * the per-hit cost being measured. Commands on stdin: `go` re-anchors the clock, says
 * how far the anchor can be off, and starts a fresh sample; `stats` prints the counts
 * (so the parent can wait until they stop moving); `report` prints median / p99 / max
 * of the sample in ms; `quit` closes the sensor and exits.
 */
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { open } from '../lib/index.js'
import { percentiles, RealtimeClock } from './realtime.js'

const { values } = parseArgs({
  options: {
    interface: { type: 'string' },
    port: { type: 'string', default: '2222' },
    express: { type: 'boolean', default: false },
  },
})

const port = Number(values.port)
// Default Sensor options on purpose: the figure is what a user gets without tuning.
const sensor = await open({ ports: [`${port}/tcp`], interface: values.interface ?? 'any', listen: false, ...(values.express && { express: true }) })
const clock = new RealtimeClock()
let samples = new Float64Array(1 << 16)
let count = 0
let other = 0
let recording = false

const consumer = (async () => {
  for await (const hit of sensor) {
    const now = clock.now()
    if (!recording || hit.kind !== 'syn' || hit.dstPort !== port) {
      other++
      continue
    }
    if (count === samples.length) {
      const bigger = new Float64Array(samples.length * 2)
      bigger.set(samples)
      samples = bigger
    }
    samples[count++] = now - hit.time
  }
})()

const lines = createInterface({ input: process.stdin })
const reply = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`)
reply({ ready: true, pid: process.pid })
for await (const line of lines) {
  const command = line.trim()
  if (command === 'go') {
    clock.anchor()
    count = 0
    other = 0
    recording = true
    reply({ go: true, anchorUncertaintyMs: clock.uncertaintyMs })
  } else if (command === 'stats') {
    reply({ ...sensor.stats(), hits: count, other })
  } else if (command === 'report') {
    reply({ ...percentiles(samples.subarray(0, count)), ...sensor.stats() })
  } else if (command === 'quit') {
    break
  }
}
lines.close()
await sensor.close()
await consumer
