/**
 * The Sensor's TypeScript half without the addon: option validation in open() (every
 * refusal is a PortanoiaError with a stable code and a hint, raised before any native
 * Capture is constructed), the load-time layout check in lib/binding.ts, the errno
 * hints added to addon errors, and the iterator's doorbell protocol driven by a fake
 * capture (batch drains, arm → ref → sleep → ring → unref, queued hits before the
 * error, close() idempotent and ending a pending next()). The fake mirrors the native
 * contract documented in lib/binding.ts: arm() refuses to arm when records or the end
 * are already there, and the doorbell fires asynchronously, once per arm.
 */
import { inspect } from 'node:util'
import { describe, expect, test } from 'vitest'
import type { NativeBinding, NativeCapture, NativeCaptureOptions, NativeCaptureStats, NativePortBitmaps, NativeSystemError } from '../../lib/binding.js'
import { checkLayout } from '../../lib/binding.js'
import { HIT_FLAGS, HIT_RECORD_LAYOUT, HIT_RECORD_SIZE } from '../../lib/decode.js'
import { PortanoiaError } from '../../lib/errors.js'
import { open, withHint } from '../../lib/sensor.js'
import type { Sensor, SensorOptions } from '../../lib/sensor.js'
import type { Hit } from '../../lib/types.js'

// ---------------------------------------------------------------- fakes

function sysError(code: string, errno: number, syscall: string, detail?: string): NativeSystemError {
  const e = new Error(`${syscall} ${code}${detail === undefined ? '' : ` ${detail}`}`) as NativeSystemError
  e.code = code
  e.errno = -errno
  e.syscall = syscall
  if (detail !== undefined) e.detail = detail
  return e
}

/** A record as the capture thread would write it; srcPort carries a sequence number. */
function record(seq: number): Buffer {
  const b = Buffer.alloc(HIT_RECORD_SIZE)
  b.writeBigUInt64LE(1_700_000_000_000_000_000n + BigInt(seq), HIT_RECORD_LAYOUT.tsNs)
  // The source follows the sequence number too (198.18.<seq / 256>.<seq % 256>), so a
  // hit that read another record's bytes would show it in src as well as in srcPort.
  b.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, (seq >> 8) & 0xff, seq & 0xff], HIT_RECORD_LAYOUT.src)
  b.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1], HIT_RECORD_LAYOUT.dst)
  b.writeUInt16LE(seq & 0xffff, HIT_RECORD_LAYOUT.srcPort)
  b.writeUInt16LE(2222, HIT_RECORD_LAYOUT.dstPort)
  b.writeUInt32LE(3, HIT_RECORD_LAYOUT.ifindex)
  b[HIT_RECORD_LAYOUT.family] = 4
  b[HIT_RECORD_LAYOUT.proto] = 6
  b[HIT_RECORD_LAYOUT.kind] = 1 // syn
  b[HIT_RECORD_LAYOUT.tcpFlags] = 0x02
  b.writeUInt16LE(HIT_FLAGS.ipv4, HIT_RECORD_LAYOUT.flags)
  return b
}

const ZERO_STATS: NativeCaptureStats = {
  kernelPackets: 0, kernelDrops: 0, kernelFreezes: 0, frames: 0, hits: 0, ringDrops: 0,
  notTripwire: 0, malformed: 0, duplicates: 0, connects: 0, blocks: 0,
  expressHits: 0, expressCopies: 0, expressSwitches: 0, expressActive: 0, wakeups: 0,
}

class FakeCapture implements NativeCapture {
  readonly options: NativeCaptureOptions
  queue: Buffer[] = []
  isEnded = false
  failure: NativeSystemError | null = null
  armed = false
  onReady: (() => void) | undefined
  readonly calls = { drain: [] as number[], arm: 0, ref: 0, unref: 0, close: 0, interfaceName: 0 }
  readonly listeners: number[] = []
  refs = 0
  failListener: NativeSystemError | undefined
  failStart: NativeSystemError | undefined

  constructor(options: NativeCaptureOptions) {
    this.options = options
  }

  start(onReady: () => void): void {
    if (this.failStart !== undefined) throw this.failStart
    this.onReady = onReady
  }

  drain(buffer: Buffer): number {
    const max = Math.floor(buffer.length / HIT_RECORD_SIZE)
    const n = Math.min(max, this.queue.length)
    for (let i = 0; i < n; i++) this.queue.shift()!.copy(buffer, i * HIT_RECORD_SIZE)
    this.calls.drain.push(n)
    return n
  }

  arm(): boolean {
    this.calls.arm++
    this.armed = true
    if (this.queue.length > 0 || this.isEnded) {
      this.armed = false
      return false
    }
    return true
  }

  disarm(): void {
    this.armed = false
  }

  ended(): boolean {
    return this.isEnded
  }

  error(): NativeSystemError | null {
    return this.failure
  }

  setFilter(): void {}

  addListener(port: number): void {
    if (this.failListener !== undefined) throw this.failListener
    this.listeners.push(port)
  }

  removeListener(port: number): void {
    const i = this.listeners.indexOf(port)
    if (i >= 0) this.listeners.splice(i, 1)
  }

  listenerPorts(): number[] {
    return [...this.listeners]
  }

  stats(): NativeCaptureStats {
    return { ...ZERO_STATS }
  }

  interfaceName(ifindex: number): string {
    this.calls.interfaceName++
    return `fake${ifindex}`
  }

  ref(): void {
    this.calls.ref++
    this.refs++
  }

  unref(): void {
    this.calls.unref++
    this.refs--
  }

  close(): void {
    this.calls.close++
    this.isEnded = true
    this.ring()
  }

  // ---- the producer side, driven by the test ----

  /** As the capture thread: publish, then ring only if the consumer armed (claiming the flag). */
  push(...seqs: number[]): void {
    for (const s of seqs) this.queue.push(record(s))
    this.ring()
  }

  end(failure: NativeSystemError | null = null): void {
    this.failure = failure
    this.isEnded = true
    this.ring()
  }

  ring(): void {
    if (!this.armed) return
    this.armed = false
    // The thread-safe function runs the callback later, on the JS thread.
    const cb = this.onReady
    setImmediate(() => cb?.())
  }
}

interface FakeBinding extends NativeBinding {
  constructed: FakeCapture[]
  failWith: NativeSystemError | undefined
  failListener: NativeSystemError | undefined
  failStart: NativeSystemError | undefined
}

function fakeBinding(): FakeBinding {
  const binding: FakeBinding = {
    constructed: [],
    failWith: undefined,
    failListener: undefined,
    failStart: undefined,
    errnoCode: (errno: number) => `E${errno}`,
    Capture: class {
      constructor(options: NativeCaptureOptions) {
        if (binding.failWith !== undefined) throw binding.failWith
        const c = new FakeCapture(options)
        c.failListener = binding.failListener
        c.failStart = binding.failStart
        binding.constructed.push(c)
        return c
      }
    } as unknown as NativeBinding['Capture'],
    Sender: class {} as unknown as NativeBinding['Sender'],
    HostWatch: class {} as unknown as NativeBinding['HostWatch'],
    LinkFacts: class {} as unknown as NativeBinding['LinkFacts'],
    Nft: Object.assign(class {}, { available: () => 'no libnftables in the fake' }) as unknown as NativeBinding['Nft'],
    parseFrame: () => ({ result: 1, record: Buffer.alloc(HIT_RECORD_SIZE) }),
    parseRtnl: () => ({ generation: 0, dumpedAtMs: 0, noticedAtMs: 0, nexthops: true, addresses: [], gateways: [] }),
    parseRtnlObjects: () => ({ routes: [], neighbours: [], links: [] }),
    probePackets: {
      arpProbe: () => Buffer.alloc(0),
      neighSolicit: () => Buffer.alloc(0),
      parseArp: () => null,
      parseNa: () => null,
    },
    peerPrograms: () => [],
    hitRecordSize: HIT_RECORD_SIZE,
    hitRecordLayout: { ...HIT_RECORD_LAYOUT },
  }
  return binding
}

async function openFake(extra: Partial<SensorOptions> = {}): Promise<{ sensor: Sensor; capture: FakeCapture; binding: FakeBinding }> {
  const binding = fakeBinding()
  const sensor = await open({ ports: ['2222/tcp', '5353/udp'], listen: false, ...extra, binding })
  const capture = binding.constructed[0]!
  return { sensor, capture, binding }
}

/** Lets setImmediate callbacks and the promise chains behind them run. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

async function rejection(p: Promise<unknown>): Promise<PortanoiaError> {
  try {
    await p
  } catch (e) {
    return e as PortanoiaError
  }
  throw new Error('expected a rejection')
}

// ---------------------------------------------------------------- validation

describe('open() validation happens before any native Capture exists', () => {
  const cases: Array<[string, unknown, string]> = [
    ['empty port list', { ports: [] }, 'PORTANOIA_NO_PORTS'],
    ['ports not a list', { ports: '2222/tcp' }, 'PORTANOIA_NO_PORTS'],
    ['no ports at all', {}, 'PORTANOIA_NO_PORTS'],
    ['bad protocol', { ports: ['2222/icmp'] }, 'PORTANOIA_BAD_PORT'],
    ['port 0', { ports: [0] }, 'PORTANOIA_BAD_PORT'],
    ['port above 65535', { ports: ['70000/tcp'] }, 'PORTANOIA_BAD_PORT'],
    ['reversed range', { ports: ['9010-9000/tcp'] }, 'PORTANOIA_BAD_PORT'],
    ['garbage spec', { ports: ['ssh'] }, 'PORTANOIA_BAD_PORT'],
    ['fractional port', { ports: [22.5] }, 'PORTANOIA_BAD_PORT'],
    ['duplicate port', { ports: ['2222/tcp', 2222] }, 'PORTANOIA_DUPLICATE_PORT'],
    ['overlapping ranges', { ports: ['9000-9010/tcp', { from: 9005, to: 9020, proto: 'tcp' }] }, 'PORTANOIA_DUPLICATE_PORT'],
    ['empty interface', { ports: [2222], interface: '' }, 'PORTANOIA_BAD_INTERFACE'],
    ['interface too long', { ports: [2222], interface: 'a'.repeat(16) }, 'PORTANOIA_BAD_INTERFACE'],
    ['interface with a space', { ports: [2222], interface: 'eth 0' }, 'PORTANOIA_BAD_INTERFACE'],
    ['interface with a slash', { ports: [2222], interface: '../eth0' }, 'PORTANOIA_BAD_INTERFACE'],
    ['interface not a string', { ports: [2222], interface: 3 }, 'PORTANOIA_BAD_INTERFACE'],
    ['interface null', { ports: [2222], interface: null }, 'PORTANOIA_BAD_INTERFACE'],
    ['listen not boolean', { ports: [2222], listen: 'yes' }, 'PORTANOIA_BAD_OPTION'],
    ['batch 0', { ports: [2222], batch: 0 }, 'PORTANOIA_BAD_OPTION'],
    ['batch fractional', { ports: [2222], batch: 1.5 }, 'PORTANOIA_BAD_OPTION'],
    ['batch NaN', { ports: [2222], batch: Number.NaN }, 'PORTANOIA_BAD_OPTION'],
    ['batch as string', { ports: [2222], batch: '64' }, 'PORTANOIA_BAD_OPTION'],
    ['batch as bigint', { ports: [2222], batch: 64n }, 'PORTANOIA_BAD_OPTION'],
    ['ringRecords too small', { ports: [2222], ringRecords: 8 }, 'PORTANOIA_BAD_OPTION'],
    ['ringRecords infinite', { ports: [2222], ringRecords: Number.POSITIVE_INFINITY }, 'PORTANOIA_BAD_OPTION'],
    ['retireMs 0', { ports: [2222], retireMs: 0 }, 'PORTANOIA_BAD_OPTION'],
    ['retireMs negative', { ports: [2222], retireMs: -1 }, 'PORTANOIA_BAD_OPTION'],
    ['coalesceMs negative', { ports: [2222], coalesceMs: -1 }, 'PORTANOIA_BAD_OPTION'],
    ['coalesceMs above 100', { ports: [2222], coalesceMs: 101 }, 'PORTANOIA_BAD_OPTION'],
    ['coalesceMs fractional', { ports: [2222], coalesceMs: 0.5 }, 'PORTANOIA_BAD_OPTION'],
    ['blockSize below a page', { ports: [2222], blockSize: 2048 }, 'PORTANOIA_BAD_OPTION'],
    ['blockSize not page-aligned', { ports: [2222], blockSize: 4096 * 3 + 1 }, 'PORTANOIA_BAD_OPTION'],
    ['blockCount 1', { ports: [2222], blockCount: 1 }, 'PORTANOIA_BAD_OPTION'],
    ['blockCount too big', { ports: [2222], blockCount: 5000 }, 'PORTANOIA_BAD_OPTION'],
    ['netns empty', { ports: [2222], netns: '' }, 'PORTANOIA_BAD_OPTION'],
    ['netns not a string', { ports: [2222], netns: 7 }, 'PORTANOIA_BAD_OPTION'],
  ]
  for (const [name, options, code] of cases) {
    test(`${name} → ${code}`, async () => {
      const binding = fakeBinding()
      const err = await rejection(open({ ...(options as SensorOptions), binding }))
      expect(err).toBeInstanceOf(PortanoiaError)
      expect(err.code).toBe(code)
      expect(typeof err.hint, `hint for ${name}`).toBe('string')
      expect(err.hint!.length).toBeGreaterThan(10)
      expect(binding.constructed).toHaveLength(0)
    })
  }

  test('options that are not an object → PORTANOIA_BAD_OPTION', async () => {
    for (const bad of [null, undefined, 42, 'ports']) {
      const err = await rejection(open(bad as unknown as SensorOptions))
      expect(err.code).toBe('PORTANOIA_BAD_OPTION')
      expect(err.hint).toBeDefined()
    }
  })

  test('valid options reach the native constructor, normalised', async () => {
    const { sensor, capture } = await openFake({
      ports: ['9000-9010/tcp', { port: 5353, proto: 'udp' }, '2905/sctp'],
      interface: 'eth0',
      ringRecords: 1024,
      retireMs: 5,
      coalesceMs: 0,
      blockSize: 1 << 16,
      blockCount: 4,
      netns: '/run/netns/x',
      dedup: false,
    })
    const o = capture.options
    expect(o).toMatchObject({ interface: 'eth0', netns: '/run/netns/x', ringRecords: 1024, retireMs: 5, coalesceMs: 0, blockSize: 1 << 16, blockCount: 4, dedup: false })
    expect(o.filter.length % 8).toBe(0)
    const has = (map: NativePortBitmaps[keyof NativePortBitmaps], p: number): boolean => ((map[p >> 3]! >> (p & 7)) & 1) === 1
    for (let p = 9000; p <= 9010; p++) expect(has(o.ports.tcp, p)).toBe(true)
    expect(has(o.ports.tcp, 8999) || has(o.ports.tcp, 9011)).toBe(false)
    expect(has(o.ports.udp, 5353)).toBe(true)
    expect(has(o.ports.sctp, 2905)).toBe(true)
    expect(sensor.interface).toBe('eth0')
    await sensor.close()
  })

  test("interface defaults to 'any' and listeners open for each TCP tripwire", async () => {
    const { sensor, capture } = await openFake({ ports: ['2222/tcp', '3389/tcp', '5353/udp'], listen: true })
    expect(capture.options.interface).toBe('any')
    expect(capture.listeners.sort()).toEqual([2222, 3389])
    expect(sensor.stats().listeners).toBe(2)
    await sensor.close()
  })
})

// ---------------------------------------------------------------- layout check

describe('checkLayout', () => {
  // The record as native/hit_record.h pins it with static_asserts: 96 bytes, and
  // these offsets. Written out here, so neither side of the check is its own oracle.
  const SPEC: Record<string, number> = {
    tsNs: 0, src: 8, dst: 24, srcPort: 40, dstPort: 42, ifindex: 44, family: 48, proto: 49,
    kind: 50, tcpFlags: 51, ttl: 52, sctpChunk: 53, vlan: 54, flags: 56, wireLen: 58, ipId: 60,
    srcMac: 64, tcpWindow: 70, tcpMss: 72, tcpWscale: 74, tcpOptCount: 75, tcpOpts: 76, tcpTsVal: 88,
    reserved: 92,
  }
  const good = { hitRecordSize: 96, hitRecordLayout: { ...SPEC } }

  test('the decoder reads the layout the native header pins', () => {
    expect(HIT_RECORD_SIZE).toBe(96)
    expect({ ...HIT_RECORD_LAYOUT }).toEqual(SPEC)
  })

  test('accepts a binary that exports the pinned layout', () => {
    expect(() => checkLayout(good)).not.toThrow()
  })

  const expectMismatch = (b: typeof good, mention: string): void => {
    let err: PortanoiaError | undefined
    try {
      checkLayout(b)
    } catch (e) {
      err = e as PortanoiaError
    }
    expect(err).toBeInstanceOf(PortanoiaError)
    expect(err!.code).toBe('PORTANOIA_LAYOUT_MISMATCH')
    expect(err!.message).toContain(mention)
    expect(err!.hint).toMatch(/rebuild|reinstall/)
  }

  test('a different size', () => {
    expectMismatch({ ...good, hitRecordSize: 72 }, 'record size 72')
  })

  test('every single moved field', () => {
    for (const field of Object.keys(SPEC)) {
      const layout = { ...good.hitRecordLayout, [field]: good.hitRecordLayout[field]! + 1 }
      expectMismatch({ ...good, hitRecordLayout: layout }, field)
    }
  })

  test('a missing field', () => {
    const layout = { ...good.hitRecordLayout }
    delete layout.ipId
    expectMismatch({ ...good, hitRecordLayout: layout }, 'ipId')
  })

  test('an extra field', () => {
    expectMismatch({ ...good, hitRecordLayout: { ...good.hitRecordLayout, cookie: 64 } }, 'unknown field cookie')
  })

  test('open() with a fake binding does not bypass the caller’s binding (no addon load)', async () => {
    const { sensor, binding } = await openFake()
    expect(binding.constructed).toHaveLength(1)
    await sensor.close()
  })
})

// ---------------------------------------------------------------- hints

describe('withHint on addon errors', () => {
  test('ENOMEM from the filter swap points at the port set, ENOMEM from the ring at the ring', () => {
    const filter = withHint(sysError('ENOMEM', 12, 'setsockopt', 'SO_ATTACH_FILTER')) as NativeSystemError & { hint: string }
    expect(filter.hint).toMatch(/filter program.*optmem_max/)
    const ring = withHint(sysError('ENOMEM', 12, 'setsockopt', 'PACKET_RX_RING')) as NativeSystemError & { hint: string }
    expect(ring.hint).toMatch(/blockSize\/blockCount/)
  })

  test('EPERM says root or CAP_NET_RAW and keeps code/errno/syscall', () => {
    const e = withHint(sysError('EPERM', 1, 'socket')) as NativeSystemError & { hint: string }
    expect(e.code).toBe('EPERM')
    expect(e.errno).toBe(-1)
    expect(e.syscall).toBe('socket')
    expect(e.hint).toMatch(/CAP_NET_RAW/)
    expect(e.hint).toMatch(/root/)
    expect(e.message).toContain(e.hint)
  })

  test('EPERM under systemd points at the unit: AmbientCapabilities with the two capabilities, never setcap on node', () => {
    const saved = process.env.INVOCATION_ID
    try {
      delete process.env.INVOCATION_ID
      const shell = withHint(sysError('EPERM', 1, 'socket')) as NativeSystemError & { hint: string }
      process.env.INVOCATION_ID = '0123456789abcdef0123456789abcdef'
      const service = withHint(sysError('EPERM', 1, 'socket')) as NativeSystemError & { hint: string }
      for (const h of [shell.hint, service.hint]) {
        expect(h).toMatch(/AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN/)
        expect(h).not.toMatch(/setcap/)
      }
      expect(shell.hint).toMatch(/from a shell, run as root/)
      expect(service.hint).toMatch(/add them to the unit/)
      expect(service.hint).toMatch(/CapabilityBoundingSet/)
    } finally {
      if (saved === undefined) delete process.env.INVOCATION_ID
      else process.env.INVOCATION_ID = saved
    }
  })

  test('ENODEV says the interface does not exist', () => {
    const e = withHint(sysError('ENODEV', 19, 'if_nametoindex', 'nosuch0')) as NativeSystemError & { hint: string }
    expect(e.hint).toMatch(/interface does not exist/)
    expect(e.message).toContain('nosuch0')
  })

  test('EADDRINUSE names the port', () => {
    const e = withHint(sysError('EADDRINUSE', 98, 'bind', '2222/tcp')) as NativeSystemError & { hint: string }
    expect(e.message).toMatch(/^tripwire port 2222\/tcp is already in use/)
    expect(e.hint).toMatch(/listen: false/)
  })

  test('is applied once, and leaves unknown errors alone', () => {
    const e = withHint(withHint(sysError('EPERM', 1, 'socket'))) as NativeSystemError & { hint: string }
    expect(e.message.split(e.hint).length).toBe(2) // the hint appears exactly once
    const plain = new Error('x')
    expect(withHint(plain)).toBe(plain)
    expect(plain.message).toBe('x')
    expect(withHint('text').message).toBe('text')
  })

  test('open() attaches the hint to a constructor failure (ENODEV, EPERM)', async () => {
    for (const [code, errno, re] of [['ENODEV', 19, /interface does not exist/], ['EPERM', 1, /CAP_NET_RAW/]] as const) {
      const binding = fakeBinding()
      binding.failWith = sysError(code, errno, code === 'ENODEV' ? 'if_nametoindex' : 'socket')
      const err = (await rejection(open({ ports: [2222], interface: 'nosuch0', binding }))) as unknown as NativeSystemError & { hint: string }
      expect(err.code).toBe(code)
      expect(err.hint).toMatch(re)
    }
  })

  test('open() closes the capture when a listener port is taken, and names the port', async () => {
    const binding = fakeBinding()
    binding.failListener = sysError('EADDRINUSE', 98, 'bind', '2222/tcp')
    const err = (await rejection(open({ ports: ['2222/tcp'], binding }))) as unknown as NativeSystemError
    expect(err.code).toBe('EADDRINUSE')
    expect(err.message).toContain('2222/tcp')
    expect(binding.constructed[0]!.calls.close).toBe(1)
  })

  test('open() closes the capture (and its listeners) when the capture thread fails to start', async () => {
    const binding = fakeBinding()
    binding.failStart = sysError('EAGAIN', 11, 'pthread_create')
    const err = (await rejection(open({ ports: ['2222/tcp'], binding }))) as unknown as NativeSystemError
    expect(err.code).toBe('EAGAIN')
    expect(err.syscall).toBe('pthread_create')
    expect(binding.constructed[0]!.calls.close).toBe(1)
  })
})

// ---------------------------------------------------------------- iterator

describe('Sensor iterator with a fake capture', () => {
  test('drains in batches of the configured size, in order', async () => {
    const { sensor, capture } = await openFake({ batch: 4 })
    capture.push(...Array.from({ length: 10 }, (_, i) => i))
    const got: number[] = []
    for (let i = 0; i < 10; i++) {
      const r = await sensor.next()
      expect(r.done).toBe(false)
      got.push((r.value as Hit).srcPort)
    }
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(capture.calls.drain).toEqual([4, 4, 2])
    expect(capture.calls.arm).toBe(0) // never slept: there was always something to drain
    expect(sensor.stats().delivered).toBe(10)
    const hit = (await Promise.race([sensor.next(), tick().then(() => null)]))
    expect(hit).toBeNull() // empty now: the next read sleeps
    await sensor.close()
  })

  test('batches() yields each drained batch as one array, in order, and counts them delivered', async () => {
    const { sensor, capture } = await openFake({ batch: 4 })
    capture.push(...Array.from({ length: 10 }, (_, i) => i))
    const sizes: number[] = []
    const got: number[] = []
    for await (const hits of sensor.batches()) {
      sizes.push(hits.length)
      for (const h of hits) got.push(h.srcPort)
      if (got.length === 10) break
    }
    expect(sizes).toEqual([4, 4, 2])
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(sensor.stats().delivered).toBe(10)
    await sensor.close()
  })

  test('batches() delivers the hits queued before a capture error, then throws it', async () => {
    const { sensor, capture } = await openFake({ batch: 2 })
    capture.push(1, 2, 3)
    capture.end(sysError('ENETDOWN', 100, 'poll', 'pns0'))
    const got: number[] = []
    await expect(
      (async () => {
        for await (const hits of sensor.batches()) for (const h of hits) got.push(h.srcPort)
      })(),
    ).rejects.toMatchObject({ code: 'ENETDOWN' })
    expect(got).toEqual([1, 2, 3])
    await sensor.close()
  })

  test('hits kept from earlier batches keep their values after the drain buffer is reused', async () => {
    const { sensor, capture } = await openFake({ batch: 2 })
    capture.push(...Array.from({ length: 9 }, (_, i) => 300 + i))
    const kept: Hit[] = []
    for (let i = 0; i < 9; i++) kept.push((await sensor.next()).value as Hit)
    // Five drains went through one two-record buffer; each hit must still read its own record.
    expect(capture.calls.drain).toEqual([2, 2, 2, 2, 1])
    kept.forEach((h, i) => {
      const seq = 300 + i
      expect(h.srcPort).toBe(seq)
      expect(h.src).toBe(`198.18.${seq >> 8}.${seq & 0xff}`)
      expect(h.timeNs).toBe(1_700_000_000_000_000_000n + BigInt(seq))
    })
    await sensor.close()
  })

  test('batches() arrays and their hits stay valid after later batches', async () => {
    const { sensor, capture } = await openFake({ batch: 3 })
    capture.push(...Array.from({ length: 7 }, (_, i) => 20 + i))
    const batches: Hit[][] = []
    for await (const hits of sensor.batches()) {
      batches.push(hits)
      if (batches.flat().length === 7) break
    }
    expect(batches.map((b) => b.map((h) => h.srcPort))).toEqual([[20, 21, 22], [23, 24, 25], [26]])
    expect(batches.flat().map((h) => h.src)).toEqual(Array.from({ length: 7 }, (_, i) => `198.18.0.${20 + i}`))
    await sensor.close()
  })

  test('JSON.stringify(hit) and util.inspect show every field as plain data', async () => {
    const { sensor, capture } = await openFake()
    capture.push(7)
    const hit = (await sensor.next()).value as Hit
    // The Hit fields as README lists them, from the record written by record(7); no timeNs
    // (a BigInt), no vlan / sctpChunk (absent on an untagged TCP hit).
    const expected = {
      time: 1_700_000_000_000.000007,
      src: '198.18.0.7',
      srcPort: 7,
      dst: '198.18.0.1',
      dstPort: 2222,
      family: 4,
      proto: 'tcp',
      kind: 'syn',
      tcpFlags: 0x02,
      ttl: 0,
      verified: false,
      interface: 'fake3',
      ifindex: 3,
      fragment: false,
      ipOptions: false,
      extHeaders: false,
      truncated: false,
      ipId: 0,
      wireLen: 0,
      // No attributor attached: nothing was checked.
      attribution: 'plausible',
      evidence: ['unchecked'],
    }
    const plain = JSON.parse(JSON.stringify(hit)) as Record<string, unknown>
    expect(Object.keys(plain)).toEqual(Object.keys(expected))
    expect(plain).toEqual({ ...expected, time: plain.time })
    expect(Math.abs((plain.time as number) - expected.time)).toBeLessThan(1e-3)
    expect(inspect(hit)).toContain("src: '198.18.0.7'")
    await sensor.close()
  })

  test('drain buffers are sized batch × record; a well-filled batch keeps its buffer, a trickle reuses one', async () => {
    const { sensor, capture } = await openFake({ batch: 8 })
    const drained: Array<{ buffer: Buffer; n: number }> = []
    const orig = capture.drain.bind(capture)
    capture.drain = (b: Buffer): number => {
      const n = orig(b)
      if (n > 0) drained.push({ buffer: b, n })
      return n
    }
    // Two full batches: each becomes its hits' own, the next drain gets a fresh buffer.
    capture.push(...Array.from({ length: 16 }, (_, i) => i + 1))
    const full: Hit[] = []
    for (let i = 0; i < 16; i++) full.push((await sensor.next()).value as Hit)
    // Then a trickle: one record a drain, copied out of one reused buffer.
    for (let i = 0; i < 3; i++) {
      capture.push(100 + i)
      full.push((await sensor.next()).value as Hit)
    }
    expect(drained.map((d) => d.n)).toEqual([8, 8, 1, 1, 1])
    expect(new Set(drained.map((d) => d.buffer.length))).toEqual(new Set([8 * HIT_RECORD_SIZE]))
    expect(drained[0]!.buffer).not.toBe(drained[1]!.buffer)
    expect(drained[2]!.buffer).toBe(drained[3]!.buffer)
    expect(drained[3]!.buffer).toBe(drained[4]!.buffer)
    // Every hit still reads its own record after the buffers were drained into again.
    expect(full.map((h) => h.srcPort)).toEqual([...Array.from({ length: 16 }, (_, i) => i + 1), 100, 101, 102])
    await sensor.close()
  })

  test('an empty ring arms the doorbell, refs the loop while waiting, wakes on ring and unrefs', async () => {
    const { sensor, capture } = await openFake()
    const pending = sensor.next()
    await tick()
    expect(capture.calls.arm).toBe(1)
    expect(capture.armed).toBe(true)
    expect(capture.refs).toBe(1) // a waiting next() keeps the process alive
    capture.push(42)
    const r = await pending
    expect(r).toMatchObject({ done: false, value: { srcPort: 42, kind: 'syn', src: '198.18.0.42', interface: 'fake3' } })
    expect(capture.refs).toBe(0)
    expect(capture.calls.ref).toBe(capture.calls.unref)
    await sensor.close()
  })

  test('an idle sensor nobody reads holds no reference', async () => {
    const { sensor, capture } = await openFake()
    capture.push(1)
    await tick()
    expect(capture.calls.ref).toBe(0)
    await sensor.close()
  })

  test('arm() refusing (records arrived after the empty drain) means no sleep', async () => {
    const { sensor, capture } = await openFake()
    const origArm = capture.arm.bind(capture)
    let first = true
    capture.arm = (): boolean => {
      if (first) {
        first = false
        capture.queue.push(record(7)) // published after the last empty drain, before the flag is read
      }
      return origArm()
    }
    const r = await sensor.next()
    expect(r.value?.srcPort).toBe(7)
    expect(capture.calls.arm).toBe(1)
    expect(capture.calls.ref).toBe(0)
    await sensor.close()
  })

  test('many sleeps and wakes deliver everything in order', async () => {
    const { sensor, capture } = await openFake({ batch: 2 })
    const got: number[] = []
    const reader = (async () => {
      for await (const hit of sensor) got.push(hit.srcPort)
    })()
    let seq = 0
    for (let round = 0; round < 50; round++) {
      const n = 1 + (round % 5)
      capture.push(...Array.from({ length: n }, () => seq++))
      await tick()
      await tick()
    }
    await tick()
    await sensor.close()
    await reader
    expect(got).toEqual(Array.from({ length: seq }, (_, i) => i))
    expect(capture.refs).toBe(0)
  })

  test('concurrent next() calls are served in order', async () => {
    const { sensor, capture } = await openFake({ batch: 2 })
    const p = [sensor.next(), sensor.next(), sensor.next()]
    await tick()
    capture.push(10, 11, 12)
    const r = await Promise.all(p)
    expect(r.map((x) => x.value?.srcPort)).toEqual([10, 11, 12])
    await sensor.close()
  })

  test('hits queued before a capture-thread error are delivered first, then the error once, then done', async () => {
    const { sensor, capture } = await openFake({ batch: 2 })
    capture.push(1, 2, 3)
    capture.end(sysError('ENETDOWN', 100, 'poll', 'pns0'))
    const got: number[] = []
    let failure: (NativeSystemError & { hint?: string }) | undefined
    try {
      for await (const hit of sensor) got.push(hit.srcPort)
    } catch (e) {
      failure = e as NativeSystemError & { hint?: string }
    }
    expect(got).toEqual([1, 2, 3])
    expect(failure?.code).toBe('ENETDOWN')
    expect(failure?.hint).toMatch(/interface went down/)
    expect(await sensor.next()).toEqual({ done: true, value: undefined })
    await sensor.close()
  })

  test('an error while a next() sleeps wakes it with the error', async () => {
    const { sensor, capture } = await openFake()
    const pending = sensor.next()
    await tick()
    capture.end(sysError('ENETDOWN', 100, 'poll'))
    await expect(pending).rejects.toMatchObject({ code: 'ENETDOWN' })
    expect(capture.refs).toBe(0)
    await sensor.close()
  })

  test('a clean end (no error) finishes the iteration', async () => {
    const { sensor, capture } = await openFake()
    capture.push(5)
    capture.end()
    const got: number[] = []
    for await (const hit of sensor) got.push(hit.srcPort)
    expect(got).toEqual([5])
    await sensor.close()
  })

  test('close() is idempotent, returns the same promise and closes the capture once', async () => {
    const { sensor, capture } = await openFake()
    const a = sensor.close()
    const b = sensor.close()
    expect(a).toBe(b)
    await a
    expect(sensor.close()).toBe(a)
    expect(capture.calls.close).toBe(1)
    expect(sensor.closed).toBe(true)
    expect(await sensor.next()).toEqual({ done: true, value: undefined })
    await expect(sensor.setPorts([2222])).rejects.toMatchObject({ code: 'PORTANOIA_CLOSED' })
  })

  test('close() ends a pending next() with done and drops its loop reference', async () => {
    const { sensor, capture } = await openFake()
    const pending = sensor.next()
    const loop = (async () => {
      const out: Hit[] = []
      for await (const h of sensor) out.push(h)
      return out
    })()
    await tick()
    expect(capture.refs).toBe(1)
    await sensor.close()
    expect(await pending).toEqual({ done: true, value: undefined })
    expect(await loop).toEqual([])
    expect(capture.refs).toBe(0)
  })

  test('close() does not wait for a hit that never comes', async () => {
    // The fake never delivers: close() and the pending next() settle only if close does not wait for one.
    const { sensor } = await openFake()
    const pending = sensor.next()
    await tick()
    await sensor.close()
    expect(await pending).toEqual({ done: true, value: undefined })
  })

  test('interface names are looked up once per index', async () => {
    const { sensor, capture } = await openFake()
    capture.push(1, 2, 3)
    for (let i = 0; i < 3; i++) expect((await sensor.next()).value?.interface).toBe('fake3')
    expect(capture.calls.interfaceName).toBe(1)
    await sensor.close()
  })

  test('breaking out of for-await does not close the sensor', async () => {
    const { sensor, capture } = await openFake()
    capture.push(1, 2)
    for await (const hit of sensor) {
      expect(hit.srcPort).toBe(1)
      break
    }
    expect(sensor.closed).toBe(false)
    expect((await sensor.next()).value?.srcPort).toBe(2)
    await sensor.close()
  })
})
