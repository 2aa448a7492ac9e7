/**
 * The end-to-end benchmark's portanoia receiver, run as its own process inside the
 * sensor namespace and pinned to a core by bench/e2e.ts, so that its CPU time (JS
 * thread, capture thread and everything else in the process) is measured alone. It
 * opens a sensor on one interface with the Sensor options under test and consumes
 * hits with a plain `for await` loop that reads `kind`, `src` and `dstPort` of each one
 * (issue 9's consumer; one that only counted the iterator's steps would let dead hits go
 * unread). Commands on stdin:
 * `stats` prints one JSON line with the consumer's counts and sensor.stats();
 * `quit` closes the sensor and exits.
 */
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { open, type SensorOptions } from '../lib/index.js'

const { values } = parseArgs({
  options: {
    interface: { type: 'string' },
    port: { type: 'string', default: '2222' },
    'retire-ms': { type: 'string' },
    'block-size': { type: 'string' },
    'block-count': { type: 'string' },
    batch: { type: 'string' },
    listen: { type: 'boolean', default: false },
    // Accept-all kernel program: shows what the tripwire filter saves.
    'no-kernel-filter': { type: 'boolean', default: false },
    // Consume sensor.batches() (one await per drained batch) instead of per hit.
    batches: { type: 'boolean', default: false },
  },
})

const port = Number(values.port)
const options: SensorOptions = { ports: [`${port}/tcp`], interface: values.interface ?? 'any', listen: values.listen }
if (values['retire-ms'] !== undefined) options.retireMs = Number(values['retire-ms'])
if (values['block-size'] !== undefined) options.blockSize = Number(values['block-size'])
if (values['block-count'] !== undefined) options.blockCount = Number(values['block-count'])
if (values.batch !== undefined) options.batch = Number(values.batch)
if (values['no-kernel-filter']) options.kernelFilter = false

const sensor = await open(options)
let syn = 0
let other = 0

const consumer = (async () => {
  if (values.batches) {
    for await (const hits of sensor.batches()) {
      for (const hit of hits) {
        if (hit.kind === 'syn' && hit.dstPort === port && hit.src !== '') syn++
        else other++
      }
    }
    return
  }
  for await (const hit of sensor) {
    if (hit.kind === 'syn' && hit.dstPort === port && hit.src !== '') syn++
    else other++
  }
})()

const lines = createInterface({ input: process.stdin })
process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`)
for await (const line of lines) {
  const command = line.trim()
  if (command === 'stats') {
    process.stdout.write(`${JSON.stringify({ ...sensor.stats(), hits: syn, other })}\n`)
  } else if (command === 'quit') {
    break
  }
}
lines.close()
await sensor.close()
await consumer
