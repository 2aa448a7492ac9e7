/**
 * The Sensor: validates options, compiles the kernel filter, opens the native
 * capture, and hands hits to JS through an async iterator. Runs on the JS thread.
 * It owns the drain buffer the addon copies records into (a batch per call, never a
 * callback per packet) and the doorbell protocol: when the ring is empty it arms the
 * doorbell and sleeps until the capture thread rings; the addon's event loop handle
 * is referenced only while a `next()` is waiting, so an idle, unread sensor never
 * keeps a process alive. `close()` is idempotent, returns the same promise, joins
 * the capture thread and ends a pending iteration.
 */
import { compileFilter, DEFAULT_SNAP_LEN } from './bpf/filter.js'
import { parsePorts, portsToString } from './bpf/ports.js'
import type { NativeBinding, NativeCapture, NativeCaptureStats, NativePortBitmaps, NativeSystemError } from './binding.js'
import { loadBinding } from './binding.js'
import { ATTRIBUTE_HITS, type AttributionSource, HIT_RECORD_SIZE, HitDecoder } from './decode.js'
import { PortanoiaError } from './errors.js'
import type { Hit, PortRange, PortSpec } from './types.js'

export interface SensorOptions {
  /** Tripwires: '2222/tcp', '9000-9010/tcp', '5353/udp', '2905/sctp', 2222, { port, proto }. */
  ports: readonly PortSpec[]
  /** Interface name, or 'any' (default) for every interface. */
  interface?: string
  /**
   * TCP tripwires that accept and reset, so connects to them are verified: true
   * (default) for every TCP tripwire, false for none, or a list of TCP ports — e.g.
   * ports the operator named get listeners while ports a service may bind later
   * stay unbound. Listed ports that are not tripwires get none; setPorts() honours
   * the list for every set it installs.
   */
  listen?: boolean | readonly PortSpec[]
  /** Path of a network namespace (e.g. /run/netns/NAME) to capture in; default: the current one. */
  netns?: string
  /** Capacity of the record ring between the capture thread and JS (default 65536). */
  ringRecords?: number
  /** TPACKET_V3 block retire timeout in ms: the longest a lone probe waits in the kernel (default 1). */
  retireMs?: number
  /**
   * While hits keep coming, hand them to JS at most once per this many ms (default 2; 0
   * hands over every retired block). Each hand-over is a wake-up of both threads, which at
   * a sustained rate costs more than the hits it carries. A hold starts only at a hand-over
   * that came within `coalesceMs` + 2 × `retireMs` of the one before, so a probe after a
   * quiet spell is never held, and only sustained traffic waits up to `coalesceMs` more.
   */
  coalesceMs?: number
  blockSize?: number
  blockCount?: number
  /** Records copied per drain call (default 1024). */
  batch?: number
  /** Report a frame seen on several interfaces once (bridges, 'any'); default true. */
  dedup?: boolean
  /**
   * The express lane (default false): while the interface is quiet (under ~100k packets/s
   * and ~2k hits/s) a second, small AF_PACKET ring that wakes the capture thread per frame
   * carries the tripwire filter, so a lone probe reaches JS in microseconds instead of a
   * retire timeout; each probe is still reported once, but not always in wire order (a
   * hit through the lane can overtake one still in an unretired main-ring block when the
   * lane overflowed or has just come on). Off by default until it keeps wire order.
   */
  express?: boolean
  /**
   * For benchmarking only: false attaches an accept-all kernel program instead of the
   * compiled tripwire filter, so every frame on the interface is copied into the ring
   * and parsed by the capture thread (which still reports only tripwire ports). It
   * shows what the kernel filter saves; never turn it off in production. Default true.
   * @internal
   */
  kernelFilter?: boolean
  /**
   * For tests: a fake addon.
   * @internal
   */
  binding?: NativeBinding
}

export interface SensorStats extends NativeCaptureStats {
  /** Hits yielded to JS. */
  delivered: number
  /** TCP tripwires with a listening socket. */
  listeners: number
}

// Not `setcap` on the node binary: that would hand raw sockets to every script node runs.
const NEEDS_CAPS =
  'capturing needs CAP_NET_RAW (and CAP_NET_BIND_SERVICE for tripwires below 1024, CAP_NET_ADMIN for the firewall): ' +
  'from a shell, run as root; as a service, grant them to its user with AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN CAP_NET_BIND_SERVICE (contrib/portanoia.service)'
/**
 * Under systemd (INVOCATION_ID is set for every unit it starts) the fix is in the
 * unit file, not in how the command is run.
 */
const SERVICE_HINTS: Record<string, string> = {
  EPERM:
    'capturing needs CAP_NET_RAW (and CAP_NET_BIND_SERVICE for tripwires below 1024, CAP_NET_ADMIN for the firewall): ' +
    'add them to the unit, AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN CAP_NET_BIND_SERVICE and the same in CapabilityBoundingSet (contrib/portanoia.service), then systemctl daemon-reload',
}
SERVICE_HINTS.EACCES = SERVICE_HINTS.EPERM as string

const ERRNO_HINTS: Record<string, string> = {
  EPERM: NEEDS_CAPS,
  EACCES: NEEDS_CAPS,
  ENODEV: "the interface does not exist: `ip link` lists them; use 'any' for every interface",
  ENXIO: "the interface does not exist: `ip link` lists them; use 'any' for every interface",
  ENETDOWN: 'the interface went down or was removed while capturing: open the sensor again once it is back',
  EADDRINUSE: 'another program already listens on this port: pick another tripwire, stop that service, or open with listen: false (connects are then not verified)',
  ENOMEM: 'the kernel refused the ring memory: lower blockSize/blockCount or raise RLIMIT_MEMLOCK',
  ENOENT: 'the network namespace does not exist: `ip netns list` shows them',
}

/** Adds an actionable hint (and keeps code/errno/syscall) to an addon error. */
export function withHint(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err))
  const sys = err as Partial<NativeSystemError> & { hint?: string }
  if (typeof sys.code === 'string' && sys.hint === undefined && ERRNO_HINTS[sys.code] !== undefined) {
    // ENOMEM from the filter swap is socket option memory, not the ring.
    sys.hint =
      sys.code === 'ENOMEM' && sys.detail === 'SO_ATTACH_FILTER'
        ? 'the kernel refused the filter program memory: use fewer, more contiguous tripwire ports, or raise net.core.optmem_max'
        : ((process.env.INVOCATION_ID !== undefined ? SERVICE_HINTS[sys.code] : undefined) ?? ERRNO_HINTS[sys.code])
    if (sys.code === 'EADDRINUSE' && sys.detail !== undefined) {
      err.message = `tripwire port ${sys.detail} is already in use (${err.message})`
    }
    err.message += ` — ${sys.hint}`
  }
  return err
}

/**
 * The kernel program for a tripwire set: the compiled filter, or (kernelFilter false,
 * benchmarks only) one `ret #snaplen` instruction that accepts every frame.
 */
function kernelProgram(ranges: readonly PortRange[], kernelFilter: boolean): Buffer {
  if (kernelFilter) return compileFilter(ranges).program
  const acceptAll = Buffer.alloc(8)
  acceptAll.writeUInt16LE(0x06, 0) // BPF_RET | BPF_K
  acceptAll.writeUInt32LE(DEFAULT_SNAP_LEN, 4)
  return acceptAll
}

/** Bitmaps of the exact tripwire set, one bit per port (per IP protocol number for 'ip'), as the addon takes them. */
export function portBitmaps(ranges: readonly PortRange[]): NativePortBitmaps {
  const maps: NativePortBitmaps = { tcp: Buffer.alloc(8192), udp: Buffer.alloc(8192), sctp: Buffer.alloc(8192), ip: Buffer.alloc(32) }
  for (const r of ranges) {
    const map = maps[r.proto]
    for (let p = r.from; p <= r.to; p++) map[p >> 3] = map[p >> 3]! | (1 << (p & 7))
  }
  return maps
}

function tcpPorts(ranges: readonly PortRange[]): Set<number> {
  const out = new Set<number>()
  for (const r of ranges) {
    if (r.proto !== 'tcp') continue
    for (let p = r.from; p <= r.to; p++) out.add(p)
  }
  return out
}

/** The TCP tripwires of `ranges` that get a listener under `listen`. */
function listenerPorts(ranges: readonly PortRange[], listen: boolean | readonly PortRange[]): Set<number> {
  if (listen === false) return new Set()
  const all = tcpPorts(ranges)
  if (listen === true) return all
  const wanted = tcpPorts(listen)
  return new Set([...all].filter((p) => wanted.has(p)))
}

/** The `listen` option, checked: a boolean, or a list of TCP ports (normalised). */
function checkListen(value: unknown): boolean | PortRange[] {
  if (value === undefined) return true
  if (typeof value === 'boolean') return value
  const hint = "leave listen out (true) to verify connects, pass false when the ports must stay unbound, or a list of TCP ports such as ['2222/tcp']"
  if (!Array.isArray(value)) {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', `listen must be true, false or a list of TCP ports, got ${show(value)}`, { hint })
  }
  if (value.length === 0) return []
  const ranges = parsePorts(value as PortSpec[])
  const other = ranges.find((r) => r.proto !== 'tcp')
  if (other !== undefined) {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', `listen lists ${portsToString([other])}: only TCP tripwires can have listeners`, { hint })
  }
  return ranges
}

/** Text for a rejected option value; JSON.stringify throws on a bigint. */
function show(value: unknown): string {
  return typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value))
}

function checkInterface(value: unknown): string {
  if (value === undefined) return 'any'
  // IFNAMSIZ is 16 with the terminating NUL; '/' and whitespace are never valid.
  if (typeof value !== 'string' || value.length === 0 || value.length > 15 || /[\s/:]/.test(value)) {
    throw new PortanoiaError('PORTANOIA_BAD_INTERFACE', `interface must be an interface name (1-15 characters) or 'any', got ${show(value)}`, {
      hint: '`ip link` lists the interfaces of this host',
    })
  }
  return value
}

function checkInt(name: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', `${name} must be an integer in ${min}..${max}, got ${show(value)}`, {
      hint: `pass a whole number between ${min} and ${max}, or leave ${name} out for the default`,
    })
  }
  return value
}

/**
 * Sensors with a next() waiting for the doorbell. The doorbell holds a sensor only
 * weakly and a `for await` loop is reachable only through the promise the sensor
 * holds, so without this root a loop like `async function watch() { for await (...) }`
 * forms an unreachable cycle: the first full GC would collect the sensor, its
 * finalizer would stop the capture, and the process would exit mid-watch. A waiting
 * read pins the sensor exactly as long as it refs the event loop.
 */
const waiting = new Set<Sensor>()

/**
 * The longest, in ms, a reader drains the ring without giving the event loop a turn. While
 * records keep waiting, every hand-over is a settled promise (microtasks only), so a
 * consumer slower than the traffic never lets timers, I/O or signals run: the daemon under
 * a forged flood above what one core can read (650k hits/s here) printed no stats event,
 * sent no block and could not be stopped for as long as the flood lasted. Past this, the
 * next drain waits for one `setImmediate` first. A reader that keeps up is never held:
 * each wait for the doorbell is a turn of the loop and starts the count again.
 */
const YIELD_MS = 5

/**
 * The key to the Sensor constructor: only open() (and tests that wrap a capture of
 * their own) hold it, so every public Sensor went through open()'s validation.
 * Not exported from the package index.
 */
export const SENSOR_INTERNAL: unique symbol = Symbol('portanoia.sensor')

export class Sensor implements AsyncIterable<Hit> {
  readonly interface: string
  #listen: boolean | readonly PortRange[]
  #capture: NativeCapture
  #ports: PortRange[]
  #kernelFilter: boolean
  /** The buffer the next drain writes into; null once a drained batch was handed to its hits. */
  #buffer: Buffer | null = null
  #batchBytes: number
  #delivered = 0
  #ifnames = new Map<number, string>()
  #decoder: HitDecoder
  #wake: (() => void) | undefined
  #closing: Promise<void> | undefined
  #failure: Error | undefined
  #failed = false
  #reading: Promise<unknown> = Promise.resolve()
  #busy = false
  /** When this sensor's reader last gave the event loop a turn (performance.now()). */
  #turnAt = performance.now()

  /** Use `open()`: it validates the options and opens the capture this wraps. */
  constructor(
    token: typeof SENSOR_INTERNAL,
    capture: NativeCapture,
    ports: PortRange[],
    options: { interface: string; listen: boolean | PortRange[]; batch: number; kernelFilter?: boolean },
  ) {
    if (token !== SENSOR_INTERNAL) throw new TypeError('a Sensor comes from open(); it has no public constructor')
    this.#capture = capture
    this.#ports = ports
    this.#kernelFilter = options.kernelFilter ?? true
    this.interface = options.interface
    this.#listen = options.listen
    this.#batchBytes = options.batch * HIT_RECORD_SIZE
    this.#decoder = new HitDecoder(this.#ifname)
    // The doorbell holds the sensor only weakly, so an unclosed, unreachable sensor
    // can still be collected (its finalizer stops the thread; close() is the contract).
    const self = new WeakRef(this)
    capture.start(() => {
      const sensor = self.deref()
      if (sensor !== undefined) sensor.#ring()
    })
  }

  /**
   * Where this sensor's hits get `attribution` and `evidence` from; null detaches.
   * @internal lib/attribution's attachAttributor is the way in.
   */
  [ATTRIBUTE_HITS](source: AttributionSource | null): void {
    this.#decoder.attribute(source)
  }

  /** Which TCP tripwires get listeners: all (true), none (false), or these TCP ports. */
  get listen(): boolean | readonly PortRange[] {
    return this.#listen
  }

  /** The tripwire set, normalised (sorted, merged ranges per protocol). */
  get ports(): PortRange[] {
    return this.#ports.map((r) => ({ ...r }))
  }

  get closed(): boolean {
    return this.#closing !== undefined
  }

  #ring(): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  #ifname = (index: number): string => {
    let name = this.#ifnames.get(index)
    if (name === undefined) {
      name = this.#capture.interfaceName(index)
      this.#ifnames.set(index, name)
    }
    return name
  }

  /**
   * Drains the next batch and loads it into the decoder, which hands its hits out one at a
   * time, so this runs only once every loaded hit was taken. A batch that fills at least a
   * quarter of the buffer becomes its hits' own (no copy: under a flood the records are
   * written once, by the addon) and the next drain gets a fresh, uninitialised buffer; a
   * smaller one is copied out by the decoder and the buffer is drained into again, so a hit
   * kept from a trickle does not keep a whole batch's memory. False when there is nothing
   * to read now, or the sensor is closing.
   */
  #drainNow(): boolean {
    if (this.#closing !== undefined || this.#failed) return false
    const buffer = (this.#buffer ??= Buffer.allocUnsafeSlow(this.#batchBytes))
    const n = this.#capture.drain(buffer)
    if (n === 0) return false
    const words = new Int32Array(buffer.buffer, buffer.byteOffset, (n * HIT_RECORD_SIZE) / 4)
    const own = n * HIT_RECORD_SIZE * 4 >= this.#batchBytes
    if (own) this.#buffer = null
    this.#decoder.load(words, 0, n, own)
    return true
  }

  /**
   * Waits until a batch is decoded into the queue (true) or the iteration is over
   * (false: closed, or the thread ended cleanly); throws the capture error. One await
   * per batch: the doorbell is armed only when the ring is empty.
   */
  async #fill(): Promise<boolean> {
    for (;;) {
      if (this.#decoder.left > 0) return true
      if (this.#closing !== undefined || this.#failed) return false
      if (this.#turnDue()) {
        await new Promise<void>((resolve) => setImmediate(resolve))
        this.#turnAt = performance.now()
        continue
      }
      if (this.#drainNow()) return true
      if (this.#capture.ended()) {
        // Hits queued before the failure were delivered above; now the error, once.
        const err = this.#capture.error()
        this.#failed = true
        if (err !== null) {
          this.#failure = withHint(err)
          throw this.#failure
        }
        return false
      }
      if (!this.#capture.arm()) continue
      this.#capture.ref()
      waiting.add(this)
      try {
        await new Promise<void>((resolve) => {
          this.#wake = resolve
        })
      } finally {
        waiting.delete(this)
        this.#capture.unref()
        // Woken by the doorbell (a callback of the loop's): timers and I/O had their turn.
        this.#turnAt = performance.now()
      }
    }
  }

  /** Whether the reader has drained for YIELD_MS without a turn of the event loop. */
  #turnDue(): boolean {
    return performance.now() - this.#turnAt >= YIELD_MS
  }

  async #read(): Promise<IteratorResult<Hit, undefined>> {
    if (!(await this.#fill())) return { done: true, value: undefined }
    this.#delivered++
    return { done: false, value: this.#decoder.take() }
  }

  /** The next hit; concurrent calls are served in order. */
  next(): Promise<IteratorResult<Hit, undefined>> {
    // Fast path: nobody else is reading and a hit is decoded, or a batch waits in the
    // ring: no await at all, one settled promise per hit (the iterator protocol's own).
    if (!this.#busy && (this.#decoder.left > 0 || (!this.#turnDue() && this.#drainNow()))) {
      this.#delivered++
      return Promise.resolve({ done: false, value: this.#decoder.take() })
    }
    this.#busy = true
    const result = this.#reading.then(() => this.#read())
    this.#reading = result.then(
      () => {
        this.#busy = false
      },
      () => {
        this.#busy = false
      },
    )
    return result
  }

  /**
   * Iterates hits until the sensor is closed. Leaving the loop early (break) does
   * not close the sensor: hits keep queueing (up to ringRecords) for the next loop.
   */
  [Symbol.asyncIterator](): AsyncIterator<Hit, undefined> {
    return {
      next: () => this.next(),
      return: async () => ({ done: true, value: undefined }),
    }
  }

  /**
   * Hits in the batches the capture thread hands over (up to `batch` per array):
   * one await per batch instead of one per hit, for consumers of floods. Each array is
   * the consumer's to keep. Same semantics as the per-hit iterator (ends on close,
   * throws the capture error after the hits queued before it); do not mix the two on
   * one sensor concurrently.
   */
  async *batches(): AsyncGenerator<Hit[], void, undefined> {
    for (;;) {
      // A per-hit reader may still be waiting: let it finish first.
      if (this.#busy) await this.#reading
      if (!(await this.#fill())) return
      // A fresh array per batch: it is the consumer's to keep.
      const out = this.#decoder.takeBatch()
      this.#delivered += out.length
      yield out
    }
  }

  /** The TCP ports the tripwire listeners are bound to now (none once closed). */
  listenerPorts(): number[] {
    return this.#capture.listenerPorts()
  }

  /** Running totals since open. */
  stats(): SensorStats {
    return { ...this.#capture.stats(), delivered: this.#delivered, listeners: this.#capture.listenerPorts().length }
  }

  /**
   * Replaces the tripwire set. Ports in both sets are captured throughout (the
   * addon widens its exact set, swaps the kernel filter atomically, then narrows).
   * Listeners for new TCP ports (those the `listen` option selects) are opened
   * first, so a port in use fails the call with nothing changed. `options.listen`
   * replaces the `listen` selection in the same step (a config reload).
   */
  async setPorts(specs: readonly PortSpec[], options: { listen?: boolean | readonly PortSpec[] } = {}): Promise<void> {
    if (this.#closing !== undefined) throw closedError()
    const ranges = parsePorts(specs)
    const listen = options.listen === undefined ? this.#listen : checkListen(options.listen)
    const program = kernelProgram(ranges, this.#kernelFilter)
    const before = listenerPorts(this.#ports, this.#listen)
    const after = listenerPorts(ranges, listen)
    const added: number[] = []
    try {
      for (const port of after) {
        if (before.has(port)) continue
        this.#capture.addListener(port)
        added.push(port)
      }
      this.#capture.setFilter(program, portBitmaps(ranges))
    } catch (err) {
      for (const port of added) this.#capture.removeListener(port)
      throw withHint(err)
    }
    for (const port of before) if (!after.has(port)) this.#capture.removeListener(port)
    this.#ports = ranges
    this.#listen = listen
  }

  /** Stops capturing, joins the capture thread, ends pending iterations. Idempotent. */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closing = Promise.resolve().then(() => {
        this.#capture.close()
        this.#ring()
      })
      // Ends a next() that is already waiting without waiting for a microtask.
      this.#ring()
    }
    return this.#closing
  }
}

function closedError(): PortanoiaError {
  return new PortanoiaError('PORTANOIA_CLOSED', 'the sensor is closed', { hint: 'open a new sensor with open()' })
}

/** Opens a sensor: validates everything before any socket exists, then starts capturing. */
export async function open(options: SensorOptions): Promise<Sensor> {
  if (typeof options !== 'object' || options === null) {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', 'open(options): options must be an object with a ports list', {
      hint: "e.g. open({ ports: ['2222/tcp'] })",
    })
  }
  if (!Array.isArray(options.ports)) {
    throw new PortanoiaError('PORTANOIA_NO_PORTS', 'open(options): options.ports must be a list of tripwire ports', {
      hint: "e.g. ports: ['2222/tcp', '3389/tcp', '5353/udp']",
    })
  }
  const ranges = parsePorts(options.ports)
  const iface = checkInterface(options.interface)
  const listen = checkListen(options.listen)
  const batch = checkInt('batch', options.batch, 1, 65536) ?? 1024
  const ringRecords = checkInt('ringRecords', options.ringRecords, 64, 1 << 24)
  const retireMs = checkInt('retireMs', options.retireMs, 1, 1000)
  const coalesceMs = checkInt('coalesceMs', options.coalesceMs, 0, 100)
  const blockSize = checkInt('blockSize', options.blockSize, 4096, 1 << 28)
  const blockCount = checkInt('blockCount', options.blockCount, 2, 4096)
  if (blockSize !== undefined && blockSize % 4096 !== 0) {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', `blockSize must be a multiple of 4096 (the page size), got ${blockSize}`, {
      hint: 'use a power of two such as 1048576, or leave blockSize out for the default',
    })
  }
  if (options.netns !== undefined && (typeof options.netns !== 'string' || options.netns.length === 0)) {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', `netns must be the path of a network namespace, got ${show(options.netns)}`, {
      hint: 'pass e.g. /run/netns/NAME (`ip netns list` shows them), or leave netns out for the current namespace',
    })
  }
  const kernelFilter = options.kernelFilter ?? true
  if (typeof kernelFilter !== 'boolean') {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', `kernelFilter must be true or false, got ${show(kernelFilter)}`, {
      hint: 'leave kernelFilter out: false exists only to benchmark the kernel filter',
    })
  }
  const express = options.express ?? false
  if (typeof express !== 'boolean') {
    throw new PortanoiaError('PORTANOIA_BAD_OPTION', `express must be true or false, got ${show(express)}`, {
      hint: 'pass true for the low-latency lane, or leave express out (false) to keep only the main ring',
    })
  }
  const program = kernelProgram(ranges, kernelFilter)
  const binding = options.binding ?? loadBinding()
  let capture: NativeCapture
  try {
    capture = new binding.Capture({
      interface: iface,
      netns: options.netns ?? '',
      filter: program,
      ports: portBitmaps(ranges),
      ...(ringRecords !== undefined && { ringRecords }),
      ...(retireMs !== undefined && { retireMs }),
      ...(coalesceMs !== undefined && { coalesceMs }),
      ...(blockSize !== undefined && { blockSize }),
      ...(blockCount !== undefined && { blockCount }),
      dedup: options.dedup ?? true,
      express,
    })
  } catch (err) {
    throw withHint(err)
  }
  try {
    for (const port of listenerPorts(ranges, listen)) capture.addListener(port)
  } catch (err) {
    capture.close()
    throw withHint(err)
  }
  try {
    return new Sensor(SENSOR_INTERNAL, capture, ranges, { interface: iface, listen, batch, kernelFilter })
  } catch (err) {
    // start() failed (pthread_create): release the socket and the bound listeners now,
    // not whenever the capture object happens to be collected.
    capture.close()
    throw withHint(err)
  }
}

export { portsToString }
