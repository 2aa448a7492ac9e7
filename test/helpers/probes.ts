/**
 * Probe helpers for the privileged tests: craft frames from one test-network host to
 * another and push them through the project's own raw sender (the addon's Sender,
 * opened inside the sender's namespace), and collect a sensor's hits until a
 * predicate holds or a deadline passes. Runs on the test's JS thread; the Sender's
 * send() is synchronous, so a call returns once every frame is on the wire, and
 * sendInChild() runs it in a child process (the built dist/) when the test must keep
 * its event loop free while frames flow at a steady rate.
 * Invariants: frames only ever go to test-network addresses (the target Host's own
 * address and MAC, so the veth delivers them as PACKET_HOST); a collect that times
 * out leaves its pending next() parked for the next collect on the same sensor, so
 * no hit is ever swallowed between two calls.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { NativeSendResult, NativeSender } from '../../lib/binding.js'
import { loadBinding, PACKAGE_ROOT } from '../../lib/binding.js'
import type { ProbeSpec } from '../../lib/lab/frames.js'
import { buildFrame, bytesToIp, fragmentFrame, ipToBytes } from '../../lib/lab/frames.js'
import type { Sensor } from '../../lib/sensor.js'
import type { Hit } from '../../lib/types.js'
import type { Host } from './netns.js'

/** A probe as the tests describe it: addresses and MACs come from the hosts. */
export type ProbeOptions = Omit<ProbeSpec, 'src' | 'dst' | 'srcMac' | 'dstMac'> & {
  family: 4 | 6
  /** Override the source address (still inside the test network). */
  src?: string
}

/** One crafted Ethernet frame from `from` to `to` (a host on the same link). */
export function probeFrame(from: Host, to: Host, probe: ProbeOptions): Uint8Array {
  const { family, src, ...rest } = probe
  return buildFrame({
    ...rest,
    src: src ?? (family === 4 ? from.ipv4 : from.ipv6),
    dst: family === 4 ? to.ipv4 : to.ipv6,
    srcMac: from.mac,
    dstMac: to.mac,
  })
}

/** The probe split into fragments of `payloadBytes` each (a multiple of 8). */
export function fragmentedProbe(from: Host, to: Host, probe: ProbeOptions, payloadBytes: number, id?: number): Uint8Array[] {
  return fragmentFrame(probeFrame(from, to, probe), payloadBytes, id)
}

/** A raw sender on a host's link interface, inside its namespace. */
export class ProbeSender {
  #sender: NativeSender
  #closed = false

  constructor(host: Host) {
    this.#sender = new (loadBinding().Sender)({ interface: host.ifname, netns: host.path })
  }

  /**
   * Sends `total` frames cycling through `frames` (default: each once), at `pps`
   * frames per second (0: as fast as the link takes them). Throws if any frame failed.
   */
  send(frames: readonly Uint8Array[], options: { total?: number; pps?: number } = {}): NativeSendResult {
    if (this.#closed) throw new Error('ProbeSender is closed')
    if (frames.length === 0) throw new RangeError('send() needs at least one frame')
    const lengths = Uint32Array.from(frames, (f) => f.length)
    const buffer = Buffer.concat(frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength)))
    const total = options.total ?? frames.length
    const result = this.#sender.send(buffer, lengths, total, options.pps ?? 0)
    if (result.failed !== 0 || result.sent !== total) {
      throw new Error(`raw sender: ${result.sent}/${total} frames sent, ${result.failed} failed (${String(result.lastError)})`)
    }
    return result
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#sender.close()
  }
}

/** Sends frames once from `host` with a short-lived sender. */
export function sendFrames(host: Host, frames: readonly Uint8Array[], options?: { total?: number; pps?: number }): NativeSendResult {
  const sender = new ProbeSender(host)
  try {
    return sender.send(frames, options)
  } finally {
    sender.close()
  }
}

// The child loads the built binding and sends; argv carries everything, so no shell
// and no file is involved. It prints the send result as JSON.
const CHILD_SENDER = `
const [bindingUrl, iface, netns, frames, lengths, total, pps] = process.argv.slice(1)
const { loadBinding } = await import(bindingUrl)
const sender = new (loadBinding().Sender)({ interface: iface, netns })
const result = sender.send(Buffer.from(frames, 'base64'), Uint32Array.from(lengths.split(','), Number), Number(total), Number(pps))
sender.close()
process.stdout.write(JSON.stringify(result))
`

/**
 * As ProbeSender.send, in a child process running the built package (dist/): the
 * caller's event loop stays free for the whole send. Resolves with the send result.
 */
export async function sendInChild(host: Host, frames: readonly Uint8Array[], options: { total: number; pps: number }): Promise<NativeSendResult> {
  const bindingJs = join(PACKAGE_ROOT, 'dist', 'lib', 'binding.js')
  if (!existsSync(bindingJs)) throw new Error(`${bindingJs} is missing: run \`npm run build\` first`)
  const lengths = Array.from(frames, (f) => f.length).join(',')
  const payload = Buffer.concat(frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength))).toString('base64')
  const args = ['--input-type=module', '-e', CHILD_SENDER, pathToFileURL(bindingJs).href, host.ifname, host.path, payload, lengths, String(options.total), String(options.pps)]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (c) => resolve(c))
  })
  if (code !== 0) throw new Error(`child sender exited with ${String(code)}: ${stderr}`)
  return JSON.parse(stdout) as NativeSendResult
}

export interface Collected {
  hits: Hit[]
  /** The predicate held. */
  matched: boolean
  /** The deadline passed first. */
  timedOut: boolean
  /** The iteration ended (closed, or after `error`). */
  ended: boolean
  /** What the iteration threw, if it did. */
  error?: unknown
}

// A next() still pending when a collect timed out; the next collect on the same sensor
// awaits it first, so the hit it eventually yields is not lost.
const parked = new WeakMap<Sensor, Promise<IteratorResult<Hit, undefined>>>()

/**
 * Reads hits until `until(hits)` is true, the iteration ends (close or error), or
 * `timeoutMs` passes. Never throws for the sensor's sake: an iteration error is
 * returned in `error`, after the hits that came before it.
 */
export async function collectHits(sensor: Sensor, until: (hits: readonly Hit[]) => boolean, timeoutMs: number): Promise<Collected> {
  const out: Collected = { hits: [], matched: false, timedOut: false, ended: false }
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs)
  })
  try {
    while (!(out.matched = until(out.hits))) {
      const next = parked.get(sensor) ?? sensor.next()
      parked.set(sensor, next)
      let result: IteratorResult<Hit, undefined> | 'timeout'
      try {
        result = await Promise.race([next, deadline])
      } catch (err) {
        parked.delete(sensor)
        out.error = err
        out.ended = true
        break
      }
      if (result === 'timeout') {
        out.timedOut = true
        break
      }
      parked.delete(sensor)
      if (result.done === true) {
        out.ended = true
        break
      }
      out.hits.push(result.value)
    }
  } finally {
    clearTimeout(timer)
  }
  return out
}

/** Reads whatever arrives within `ms` (for "nothing else came" checks). */
export async function collectFor(sensor: Sensor, ms: number): Promise<Hit[]> {
  return (await collectHits(sensor, () => false, ms)).hits
}

/** An address in the form hits carry it (RFC 5952 for IPv6: fd52:43dd:0::1 → fd52:43dd::1). */
export function canonicalIp(address: string): string {
  return bytesToIp(ipToBytes(address))
}
