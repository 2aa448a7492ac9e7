/**
 * A fake addon for tests that run the whole pipeline (Daemon, CLI wiring) without
 * root: open() gets a Capture whose listeners are recorded and whose hits the test
 * publishes (`hit()` writes a HitRecord as the capture thread would), plus a fake
 * HostView with a fixed socket table and no guard facts or live checks beyond what
 * the test gives, and a firewall that records what it was asked to block. It follows the native contract in lib/binding.ts — arm() refuses when
 * records or the end are already there, the doorbell fires asynchronously once per
 * arm — as the sensor's own unit tests (test/unit/sensor-options.test.ts) do.
 */
import type { NativeBinding, NativeCapture, NativeCaptureOptions, NativeCaptureStats, NativeSystemError } from '../../lib/binding.js'
import { HIT_FLAGS, HIT_RECORD_LAYOUT, HIT_RECORD_SIZE } from '../../lib/decode.js'
import type { HostView } from '../../lib/daemon/host-view.js'
import type { HostFacts, LiveChecks } from '../../lib/daemon/host-watch.js'
import type { ListeningPorts } from '../../lib/listening.js'
import type { BlockRequest, Responder, ResponderResult } from '../../lib/responders/types.js'
import { PROTO_NUMBERS, type Proto, SCAN_KINDS, type ScanKind } from '../../lib/types.js'

export interface FakeHit {
  src: string
  dst?: string
  dstPort: number
  srcPort?: number
  proto?: Proto
  kind: ScanKind
  /** Completed handshake with a listener (default: kind === 'connect'). */
  verified?: boolean
  /** Capture time, ms since the epoch (default now). */
  time?: number
  ttl?: number
  ipId?: number
  /** TCP window (default 0). */
  window?: number
  /** TCP options: one MSS option of 1460, a list of option kinds (MSS 1460 when 2 is among them), or none (default). */
  options?: 'mss1460' | 'none' | readonly number[]
}

/** A HitRecord for an IPv4 probe, laid out as native/hit_record.h says. */
export function hitRecord(h: FakeHit): Buffer {
  const b = Buffer.alloc(HIT_RECORD_SIZE)
  b.writeBigUInt64LE(BigInt(Math.round((h.time ?? Date.now()) * 1000)) * 1000n, HIT_RECORD_LAYOUT.tsNs)
  const v4 = (a: string): number[] => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...a.split('.').map(Number)]
  b.set(v4(h.src), HIT_RECORD_LAYOUT.src)
  b.set(v4(h.dst ?? '198.18.0.1'), HIT_RECORD_LAYOUT.dst)
  b.writeUInt16LE(h.srcPort ?? 40_000, HIT_RECORD_LAYOUT.srcPort)
  b.writeUInt16LE(h.dstPort, HIT_RECORD_LAYOUT.dstPort)
  b.writeUInt32LE(3, HIT_RECORD_LAYOUT.ifindex)
  b[HIT_RECORD_LAYOUT.family] = 4
  b[HIT_RECORD_LAYOUT.proto] = h.proto === 'ip' ? (h.dstPort ?? 47) : PROTO_NUMBERS[h.proto ?? 'tcp']
  b[HIT_RECORD_LAYOUT.kind] = SCAN_KINDS.indexOf(h.kind)
  b[HIT_RECORD_LAYOUT.tcpFlags] = h.kind === 'syn' ? 0x02 : h.kind === 'fin' ? 0x01 : 0x10
  const verified = h.verified ?? h.kind === 'connect'
  b.writeUInt16LE(HIT_FLAGS.ipv4 | (verified ? HIT_FLAGS.verified : 0), HIT_RECORD_LAYOUT.flags)
  if (h.ttl !== undefined) b[HIT_RECORD_LAYOUT.ttl] = h.ttl
  if (h.ipId !== undefined) b.writeUInt32LE(h.ipId, HIT_RECORD_LAYOUT.ipId)
  if (h.window !== undefined) b.writeUInt16LE(h.window, HIT_RECORD_LAYOUT.tcpWindow)
  const options = h.options ?? 'none'
  const kinds = options === 'mss1460' ? [2] : options === 'none' ? [] : options
  if (kinds.includes(2)) b.writeUInt16LE(1460, HIT_RECORD_LAYOUT.tcpMss)
  b[HIT_RECORD_LAYOUT.tcpOptCount] = kinds.length
  kinds.forEach((k, i) => (b[HIT_RECORD_LAYOUT.tcpOpts + i] = k))
  return b
}

const ZERO_STATS: NativeCaptureStats = {
  kernelPackets: 0, kernelDrops: 0, kernelFreezes: 0, frames: 0, hits: 0, ringDrops: 0,
  notTripwire: 0, malformed: 0, duplicates: 0, connects: 0, blocks: 0,
  expressHits: 0, expressCopies: 0, expressSwitches: 0, expressActive: 0, wakeups: 0,
}

export class FakeCapture implements NativeCapture {
  readonly options: NativeCaptureOptions
  readonly listeners = new Set<number>()
  /** Every addListener call, in order (removals are not subtracted). */
  readonly listenerLog: number[] = []
  #queue: Buffer[] = []
  #ended = false
  #armed = false
  #onReady: (() => void) | undefined

  constructor(options: NativeCaptureOptions) {
    this.options = options
  }

  start(onReady: () => void): void {
    this.#onReady = onReady
  }

  drain(buffer: Buffer): number {
    const n = Math.min(Math.floor(buffer.length / HIT_RECORD_SIZE), this.#queue.length)
    for (let i = 0; i < n; i++) this.#queue.shift()!.copy(buffer, i * HIT_RECORD_SIZE)
    return n
  }

  arm(): boolean {
    this.#armed = this.#queue.length === 0 && !this.#ended
    return this.#armed
  }

  disarm(): void {
    this.#armed = false
  }

  ended(): boolean {
    return this.#ended
  }

  error(): NativeSystemError | null {
    return null
  }

  setFilter(): void {}

  addListener(port: number): void {
    this.listeners.add(port)
    this.listenerLog.push(port)
  }

  removeListener(port: number): void {
    this.listeners.delete(port)
  }

  listenerPorts(): number[] {
    return [...this.listeners].sort((a, b) => a - b)
  }

  stats(): NativeCaptureStats {
    return { ...ZERO_STATS }
  }

  interfaceName(ifindex: number): string {
    return `fake${ifindex}`
  }

  ref(): void {}

  unref(): void {}

  close(): void {
    this.#ended = true
    this.#ring()
  }

  /** The capture thread's side: publish, ring only if the consumer armed. */
  hit(...hits: FakeHit[]): void {
    for (const h of hits) this.#queue.push(hitRecord(h))
    this.#ring()
  }

  #ring(): void {
    if (!this.#armed) return
    this.#armed = false
    const cb = this.#onReady
    setImmediate(() => cb?.())
  }
}

export interface FakeBinding extends NativeBinding {
  captures: FakeCapture[]
}

export function fakeBinding(): FakeBinding {
  const binding: FakeBinding = {
    captures: [],
    Capture: class {
      constructor(options: NativeCaptureOptions) {
        const c = new FakeCapture(options)
        binding.captures.push(c)
        return c
      }
    } as unknown as NativeBinding['Capture'],
    Sender: class {} as unknown as NativeBinding['Sender'],
    HostWatch: class {} as unknown as NativeBinding['HostWatch'],
    // Knows nothing: every question fails, so attribution stays silent (no verdicts).
    LinkFacts: class {
      route(): never {
        throw Object.assign(new Error('no kernel in the fake'), { code: 'ENOSYS' })
      }
      neighbour(): never {
        throw Object.assign(new Error('no kernel in the fake'), { code: 'ENOSYS' })
      }
      links(): [] {
        return []
      }
      probe(): void {}
      answers(): [] {
        return []
      }
      close(): void {}
    } as unknown as NativeBinding['LinkFacts'],
    // No libnftables in the fake: nft runs through whatever RunFn the test passes.
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
    errnoCode: (errno: number) => `E${errno}`,
    hitRecordSize: HIT_RECORD_SIZE,
    hitRecordLayout: { ...HIT_RECORD_LAYOUT },
  }
  return binding
}

/**
 * A host with no guard facts and `listening` as its socket table (mutable by the
 * test); `live` gives it the kernel's live checks (default none).
 */
export function fakeHost(listening: Partial<Record<Proto, number[]>> = {}, live: LiveChecks | null = null): HostView & { listeningNow: ListeningPorts } {
  const facts: HostFacts = { snapshot: { interfaces: [], gateways: [], resolvers: [] }, warnings: [] }
  const view = {
    label: 'fake host',
    listeningNow: {
      tcp: new Set(listening.tcp ?? []),
      udp: new Set(listening.udp ?? []),
      sctp: new Set(listening.sctp ?? []),
    } as ListeningPorts,
    start: async () => facts,
    current: () => facts,
    subscribe: () => {},
    live,
    listening: async () => view.listeningNow,
    localPortRange: () => null,
    inForce: () => ({ generation: 1, dumpedAt: 0, addresses: [], gateways: [], resolvers: [] }),
    stats: () => null,
    setWarn: () => {},
    ignorePeersOn: () => {},
    close: () => {},
  }
  return view
}

/** A firewall that records what it was asked to block. */
export function recordingFirewall(): Responder & { blocked: BlockRequest[] } {
  const ok = (applied: string[]): ResponderResult => ({ responder: 'fake-fw', ok: true, applied, failed: [] })
  const fw = {
    name: 'fake-fw',
    blocked: [] as BlockRequest[],
    start: async () => [],
    block: async (reqs: readonly BlockRequest[]) => {
      fw.blocked.push(...reqs)
      return ok(reqs.map((r) => r.address))
    },
    unblock: async (a: readonly string[]) => ok([...a]),
    list: async () => [],
    notify: async () => ok([]),
    close: async () => {},
  }
  return fw
}
