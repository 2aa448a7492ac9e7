/**
 * The benchmark's libpcap receiver: the npm `cap` package (a libpcap binding with one
 * JS 'packet' event per packet), which the harness installs into a scratch folder
 * (bench/cap.ts) and never makes a dependency. Run as its own process inside the
 * sensor namespace and pinned to a core by bench/e2e.ts, like bench/e2e-receiver.ts:
 * it opens `--interface` with the filter `tcp dst port PORT` (libpcap compiles it to
 * the same kind of cBPF program portanoia attaches) and a capture buffer the size of
 * portanoia's default ring, and counts each packet whose TCP destination port is the
 * tripwire. Commands on stdin: `stats` prints one JSON line, `quit` exits. `cap`
 * exposes no pcap_stats(), so its kernel drops are not counted: its loss shows only
 * as `missing` (sent − delivered).
 */
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    'cap-dir': { type: 'string' },
    interface: { type: 'string' },
    port: { type: 'string', default: '2222' },
    'buffer-size': { type: 'string', default: String(8 << 20) },
  },
})

/** The part of cap's API used here (it ships no types). */
interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string
  on(event: 'packet', listener: (nbytes: number, truncated: boolean) => void): void
  setMinBytes?: (n: number) => void
  close(): void
}
interface CapModule {
  Cap: new () => CapHandle
}

const capDir = values['cap-dir']
const device = values.interface
if (capDir === undefined || device === undefined) throw new Error('cap-receiver: --cap-dir and --interface are required')
const port = Number(values.port)
const require = createRequire(join(capDir, 'package.json'))
const { Cap } = require('cap') as CapModule

const buffer = Buffer.alloc(65535)
const cap = new Cap()
const linkType = cap.open(device, `tcp dst port ${port}`, Number(values['buffer-size']), buffer)
if (linkType !== 'ETHERNET') throw new Error(`cap-receiver: expected an Ethernet link, got ${linkType}`)
cap.setMinBytes?.(0)

let hits = 0
let other = 0
cap.on('packet', (nbytes) => {
  // Ethernet + IPv4 + TCP destination port, read in place (no decoder objects).
  if (nbytes >= 38 && buffer[12] === 0x08 && buffer[13] === 0x00 && buffer[23] === 6) {
    const ihl = (buffer[14]! & 0x0f) * 4
    if (buffer.readUInt16BE(14 + ihl + 2) === port) {
      hits++
      return
    }
  }
  other++
})

const lines = createInterface({ input: process.stdin })
process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`)
for await (const line of lines) {
  const command = line.trim()
  if (command === 'stats') process.stdout.write(`${JSON.stringify({ hits, other, socketDrops: 0 })}\n`)
  else if (command === 'quit') break
}
lines.close()
cap.close()
