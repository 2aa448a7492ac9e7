/**
 * HostWatch: what the daemon knows about the host it protects, from the kernel, kept
 * in force without polling. Facts (own addresses in any link state, every next hop of
 * every routing table) come from the native rtnetlink watcher (native/netlink.*),
 * which re-dumps on every change notification and tells this object on the JS
 * thread; resolvers come from resolv.conf files, watched with fs.watch and re-read
 * when they change. `subscribe()` callers hear about every change once the new facts
 * are readable. The live checks ask the kernel. Right before a block: `route`, on the
 * JS thread (an own or broadcast address, a route lookup of microseconds), and
 * `peers`, off it (live TCP/SCTP peers, a batch of addresses or networks in one walk
 * of the kernel's socket tables on libuv's pool; the daemon holds the blocks until it
 * answers). Per hit, on the JS thread: the destination (`isLocal`: the host's own
 * unicast or a broadcast; else the hit is transit) and, for hits that may be replies,
 * `isReply` (an exact socket lookup, at most REPLY_CHECKS_PER_S a second). A check
 * that fails is reported once per error code; the synchronous ones answer as if
 * nothing were found (the snapshot guards still apply), `peers` rejects. Owns one native HostWatch and its fs watchers;
 * close() ends both (a peer batch in flight still answers).
 */
import { type FSWatcher, realpathSync, watch } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { PortanoiaError } from '../errors.js'
import { loadBinding, type NativeBinding, type NativeHostFacts, type NativeHostWatch, RTN } from '../binding.js'
import type { ListeningPorts } from '../listening.js'
import { type Address, type Cidr, CidrSet, classifyAddress, directedBroadcast, formatAddress, formatCidr, normalizeAddress, parseAddress } from '../policy/addr.js'
import { type GuardReason, type GuardSnapshot, type InterfaceAddress, parseResolvConf } from '../policy/guards.js'
import type { Hit } from '../types.js'
import type { HostView } from './host-view.js'

/** Facts for `Guards.update()`: every category the host, not the operator, provides. */
export interface HostFacts {
  snapshot: Required<Pick<GuardSnapshot, 'interfaces' | 'gateways' | 'resolvers'>>
  /** What could not be read, with the reason. */
  warnings: string[]
}

/** Questions to the kernel (see the file comment). */
export interface LiveChecks {
  /**
   * The synchronous part of the check right before a block, a route lookup: 'self'
   * for an address that became the host's a moment ago, 'special' for a broadcast
   * one, or null.
   */
  route(src: Address): GuardReason | null
  /**
   * The asynchronous part: for each target (an address, or a network: any peer in it)
   * 'peer' when it is the far end of a live TCP connection (the tripwire listeners'
   * ports aside) or SCTP association, else null; in order. Off the JS thread, one
   * walk of the kernel's tables for the whole batch. Rejects when the kernel could not
   * answer (reported once per error code) or the watch is closed: the caller decides
   * what an unanswered check means (the daemon: no block of a spoofable source).
   */
  peers(targets: ReadonlyArray<Address | Cidr>): Promise<Array<GuardReason | null>>
  /**
   * Both parts at once, synchronously, for one address: `route`, then the peer walk on
   * the JS thread. Not for the check right before a block (that is `route` + `peers`):
   * attribution's forgery alerts ask it, rationed. A peer walk that fails answers null
   * (reported once).
   */
  guard(src: Address): GuardReason | null
  /** Whether a hit to `dst` is addressed to this host (own unicast or a broadcast); false means transit. */
  isLocal(dst: string): boolean
  /** Whether `hit` answers a connection of this host (a SYN-ACK, RST or UDP reply to a connected socket). */
  isReply(hit: Hit): boolean
}

/** The guard facts in force, for the stats event and the control socket. */
export interface GuardFactsInForce {
  generation: number
  /** Wall-clock ms of the dump in force. */
  dumpedAt: number
  addresses: Array<{ address: string; prefixLength: number; ifindex: number }>
  gateways: Array<{ address: string; table: number }>
  resolvers: string[]
}

export interface HostWatchStats {
  /** Snapshots taken (the first one included). */
  generation: number
  notifications: number
  /** Change notifications lost by the kernel (ENOBUFS); each was followed by a full dump. */
  overruns: number
  dumpErrors: number
  /** µs the last dump took. */
  lastDumpUs: number
  /** Route checks right before a block; refusals by them or by the peer check. */
  liveChecks: number
  liveRefusals: number
  /** Addresses and networks asked about peers, in how many batches, and the walks of the kernel's socket tables those took. */
  peerChecks: number
  peerBatches: number
  peerWalks: number
  replyChecks: number
  replies: number
  /** Hits that could have been replies but found the lookup budget spent (treated as probes). */
  replyChecksSkipped: number
  /** 1 while SCTP associations are checked, 0 when sctp_diag is missing. */
  sctp: number
}

export interface HostWatchOptions {
  /** Namespace name (`ip netns list`); default: this process's. */
  netns?: string
  /** How logs name the host. */
  label: string
  /** resolv.conf files; default /etc/resolv.conf and systemd-resolved's upstream list, or the namespace's file. */
  resolvConf?: readonly string[]
  /** The listening-socket table, for `--unused` (host-view.ts). */
  listening: () => Promise<ListeningPorts>
  /** A loaded addon (tests pass a fake). */
  binding?: NativeBinding
}

/** Reply lookups allowed per second (each is an exact kernel lookup of ~10 µs). */
export const REPLY_CHECKS_PER_S = 2000
const LOCAL_CACHE_MAX = 4096
const RESOLVER_DEBOUNCE_MS = 20
const TCP_RST = 0x04
const TCP_ACK = 0x10

// systemd-resolved puts its stub (127.0.0.53) in /etc/resolv.conf; the real
// upstreams, which the host talks to and must not block, are in this file.
const RESOLVED_UPSTREAMS = '/run/systemd/resolve/resolv.conf'

/** The resolv.conf files that apply in a namespace: what `ip netns exec` would bind-mount. */
export function resolverFiles(netns: string | undefined): string[] {
  if (netns === undefined) return ['/etc/resolv.conf', RESOLVED_UPSTREAMS]
  return [`/etc/netns/${netns}/resolv.conf`, '/etc/resolv.conf']
}

export class HostWatch implements HostView {
  readonly label: string
  readonly #native: NativeHostWatch
  readonly #listening: () => Promise<ListeningPorts>
  readonly #files: readonly string[]
  readonly #namespaced: boolean
  readonly #subscribers: Array<() => void> = []
  readonly #watchers: FSWatcher[] = []
  readonly #warned = new Set<string>()
  #facts: NativeHostFacts
  #resolvers: string[] = []
  #resolverWarnings: string[] = []
  #local = new CidrSet()
  #localCache = new Map<string, boolean>()
  #resolverTimer: NodeJS.Timeout | undefined
  #started = false
  #closed = false
  #warn: (message: string) => void = () => {}
  #ownPorts: () => readonly number[] = () => []
  #liveChecks = 0
  #liveRefusals = 0
  #peerChecks = 0
  #replyChecks = 0
  #replies = 0
  #replySkipped = 0
  #budget = REPLY_CHECKS_PER_S
  #budgetAt = 0

  constructor(options: HostWatchOptions) {
    this.label = options.label
    this.#listening = options.listening
    this.#namespaced = options.netns !== undefined
    this.#files = options.resolvConf ?? resolverFiles(options.netns)
    const binding = options.binding ?? loadBinding()
    this.#native = new binding.HostWatch(options.netns === undefined ? {} : { netns: `/run/netns/${options.netns}` })
    this.#facts = this.#native.facts()
    this.#rebuildLocal()
  }

  setWarn(fn: (message: string) => void): void {
    this.#warn = fn
  }

  ignorePeersOn(ports: () => readonly number[]): void {
    this.#ownPorts = ports
  }

  /**
   * Reads the resolvers and starts watching: the netlink thread and the resolv.conf
   * files. Idempotent. Resolves with the facts in force.
   */
  async start(): Promise<HostFacts> {
    if (!this.#started && !this.#closed) {
      this.#started = true
      await this.#readResolvers()
      this.#native.start(() => this.#onKernelChange())
      this.#watchResolvers()
    }
    return this.#snapshot()
  }

  /** Reads the resolvers without watching anything (readHostFacts). */
  async readOnce(): Promise<void> {
    await this.#readResolvers()
  }

  /** `fn` runs after every change of the facts (kernel or resolvers), once they are readable. */
  subscribe(fn: () => void): void {
    this.#subscribers.push(fn)
  }

  current(): HostFacts {
    return this.#snapshot()
  }

  listening(): Promise<ListeningPorts> {
    return this.#listening()
  }

  /** net.ipv4.ip_local_port_range of the watched namespace, or null when unreadable. */
  localPortRange(): [number, number] | null {
    return this.#closed ? null : this.#native.localPortRange()
  }

  inForce(): GuardFactsInForce {
    const f = this.#facts
    return {
      generation: f.generation,
      dumpedAt: f.dumpedAtMs,
      addresses: f.addresses.map((a) => ({ address: normalizeAddress(a.address) ?? a.address, prefixLength: a.prefixLength, ifindex: a.ifindex })),
      gateways: f.gateways.map((g) => ({ address: normalizeAddress(g.address) ?? g.address, table: g.table })),
      resolvers: [...this.#resolvers],
    }
  }

  /** Wall-clock ms of the notification the facts in force answer (0: the first dump). */
  get noticedAt(): number {
    return this.#facts.noticedAtMs
  }

  stats(): HostWatchStats {
    const n = this.#closed ? null : this.#native.stats()
    return {
      generation: this.#facts.generation,
      notifications: n?.notifications ?? 0,
      overruns: n?.overruns ?? 0,
      dumpErrors: n?.dumpErrors ?? 0,
      lastDumpUs: Math.round((n?.lastDumpNs ?? 0) / 1000),
      liveChecks: this.#liveChecks,
      liveRefusals: this.#liveRefusals,
      peerChecks: this.#peerChecks,
      peerBatches: n?.peerBatches ?? 0,
      peerWalks: n?.peerWalks ?? 0,
      replyChecks: this.#replyChecks,
      replies: this.#replies,
      replyChecksSkipped: this.#replySkipped,
      sctp: n?.sctp === false ? 0 : 1,
    }
  }

  readonly live: LiveChecks = {
    route: (src) => this.#routeGuard(src),
    guard: (src) => this.#routeGuard(src) ?? this.#peerNow(src),
    peers: (targets) => this.#peers(targets),
    isLocal: (dst) => this.#isLocal(dst),
    isReply: (hit) => this.#isReply(hit),
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#resolverTimer)
    for (const w of this.#watchers.splice(0)) w.close()
    this.#native.close()
  }

  // ------------------------------------------------------------------ facts

  #snapshot(): HostFacts {
    const interfaces: InterfaceAddress[] = []
    const gateways: string[] = []
    for (const a of this.#facts.addresses) {
      const address = normalizeAddress(a.address)
      if (address !== null) interfaces.push({ address, prefixLength: a.prefixLength })
      // The far end of a point-to-point link is the next hop for everything on it.
      const peer = a.peer === undefined ? null : normalizeAddress(a.peer)
      if (peer !== null) gateways.push(peer)
    }
    for (const g of this.#facts.gateways) {
      const address = normalizeAddress(g.address)
      if (address !== null) gateways.push(address)
    }
    return {
      snapshot: { interfaces, gateways: [...new Set(gateways)], resolvers: [...this.#resolvers] },
      warnings: [...this.#resolverWarnings],
    }
  }

  #onKernelChange(): void {
    if (this.#closed) return
    const f = this.#native.facts()
    if (f.generation === this.#facts.generation) return
    this.#facts = f
    this.#rebuildLocal()
    const dump = this.#native.lastError().dump
    if (dump !== undefined) this.#warnOnce(`netlink dump: ${dump.message}`, dump.code)
    this.#notify()
  }

  #notify(): void {
    for (const fn of this.#subscribers) fn()
  }

  /** Own addresses and their broadcasts, for the per-hit destination check. */
  #rebuildLocal(): void {
    const local = new CidrSet()
    for (const a of this.#facts.addresses) {
      const addr = parseAddress(a.address)
      if (addr === null) continue
      local.add({ family: addr.family, network: addr.value, prefix: addr.family === 4 ? 32 : 128 })
      const b = directedBroadcast(addr, a.prefixLength)
      if (b !== null) local.add({ family: 4, network: b.value, prefix: 32 })
      const declared = a.broadcast === undefined ? null : parseAddress(a.broadcast)
      if (declared !== null) local.add({ family: declared.family, network: declared.value, prefix: declared.family === 4 ? 32 : 128 })
    }
    this.#local = local
    this.#localCache = new Map()
  }

  async #readResolvers(): Promise<boolean> {
    const found: string[] = []
    const warnings: string[] = []
    let any = false
    for (const file of this.#files) {
      let text: string
      try {
        text = await readFile(file, 'utf8')
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'error'
        // Optional files: systemd-resolved's list, and a namespace's own resolv.conf.
        const optional = code === 'ENOENT' && (file === RESOLVED_UPSTREAMS || (this.#namespaced && file !== '/etc/resolv.conf'))
        if (!optional) warnings.push(`${file}: ${code}`)
        continue
      }
      found.push(...parseResolvConf(text))
      any = true
      // `ip netns exec` uses the namespace's own file instead of /etc/resolv.conf.
      if (this.#namespaced) break
    }
    const next = [...new Set(found)]
    this.#resolverWarnings = any || warnings.length > 0 ? warnings : [`no resolv.conf readable (${this.#files.join(', ')})`]
    const changed = next.length !== this.#resolvers.length || next.some((r, i) => r !== this.#resolvers[i])
    this.#resolvers = next
    return changed
  }

  /**
   * Watches the directories of the resolver files and, for a symlinked file, of its
   * target: editors and resolvconf replace the file by rename, which a watch on the
   * file itself would miss.
   */
  #watchResolvers(): void {
    const dirs = new Map<string, Set<string>>()
    const add = (path: string): void => {
      const d = dirname(path)
      let names = dirs.get(d)
      if (names === undefined) dirs.set(d, (names = new Set()))
      names.add(basename(path))
    }
    for (const f of this.#files) {
      add(f)
      try {
        const real = realpathSync(f)
        if (real !== f) add(real)
      } catch {
        // absent for now
      }
    }
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || names.has(String(name))) this.#scheduleResolverRead()
        })
        w.on('error', () => {})
        this.#watchers.push(w)
      } catch {
        // A directory that does not exist (no systemd-resolved): nothing to watch.
      }
    }
  }

  #scheduleResolverRead(): void {
    if (this.#closed || this.#resolverTimer !== undefined) return
    this.#resolverTimer = setTimeout(() => {
      this.#resolverTimer = undefined
      void this.#readResolvers().then(
        (changed) => {
          if (changed && !this.#closed) this.#notify()
        },
        () => {},
      )
    }, RESOLVER_DEBOUNCE_MS)
    this.#resolverTimer.unref()
  }

  // ------------------------------------------------------------- live checks

  #warnOnce(message: string, code: string): void {
    if (this.#warned.has(code)) return
    this.#warned.add(code)
    this.#warn(message)
  }

  #routeGuard(src: Address): GuardReason | null {
    if (this.#closed) return null
    this.#liveChecks++
    let reason: GuardReason | null = null
    try {
      // An address added a moment ago, before its notification was handled.
      const type = this.#native.routeType(formatAddress(src))
      if (type === RTN.local) reason = 'self'
      else if (type === RTN.broadcast) reason = 'special'
    } catch (e) {
      this.#warnOnce(`live route check failed (${(e as Error).message}); own addresses come from the last dump only`, 'route')
    }
    if (reason !== null) this.#liveRefusals++
    return reason
  }

  #peerNow(src: Address): GuardReason | null {
    if (this.#closed) return null
    try {
      if (this.#native.peer(formatAddress(src), this.#ownPorts()) === 0) return null
    } catch (e) {
      this.#warnOnce(`live peer check failed (${(e as Error).message}); established peers are not guarded here`, 'peer-sync')
      return null
    }
    this.#liveRefusals++
    return 'peer'
  }

  async #peers(targets: ReadonlyArray<Address | Cidr>): Promise<Array<GuardReason | null>> {
    if (targets.length === 0) return []
    // Closed: nobody can say who is a peer now, and that is not "nobody is".
    if (this.#closed) throw new PortanoiaError('PORTANOIA_CLOSED', 'the host watch is closed: no live peer check')
    this.#peerChecks += targets.length
    let bits: number[]
    try {
      bits = await this.#native.peers(
        targets.map((t) => ('prefix' in t ? formatCidr(t) : formatAddress(t))),
        this.#ownPorts(),
      )
    } catch (e) {
      // After close() the batches still queued are refused: nothing to report then.
      if (!this.#closed) this.#warnOnce(`live peer check failed (${(e as Error).message}); spoofable sources are not blocked while it fails`, 'peer')
      throw e
    }
    if (!this.#closed && this.#native.stats().sctp === false) {
      const why = this.#native.lastError().sctp?.code ?? 'unavailable'
      this.#warnOnce(`SCTP associations are not checked: sctp_diag is not available (${why}); TCP peers still are`, 'sctp')
    }
    return targets.map((_, i) => {
      if ((bits[i] ?? 0) === 0) return null
      this.#liveRefusals++
      return 'peer'
    })
  }

  #isLocal(dst: string): boolean {
    const cached = this.#localCache.get(dst)
    if (cached !== undefined) return cached
    const a = parseAddress(dst)
    let local: boolean
    if (a === null) {
      // Not an address: not ours to judge here; the engine counts it as invalid.
      local = true
    } else {
      const kind = classifyAddress(a)
      if (kind === 'multicast') local = false
      else if (kind === 'broadcast' || this.#local.has(a)) local = true
      else {
        local = true
        if (!this.#closed) {
          try {
            const type = this.#native.routeType(formatAddress(a))
            local = type === RTN.local || type === RTN.broadcast
          } catch (e) {
            this.#warnOnce(`destination check failed (${(e as Error).message}); hits are treated as addressed to this host`, 'dst')
          }
        }
      }
    }
    if (this.#localCache.size >= LOCAL_CACHE_MAX) this.#localCache.clear()
    this.#localCache.set(dst, local)
    return local
  }

  #isReply(hit: Hit): boolean {
    if (hit.verified || this.#closed) return false
    const tcp = hit.proto === 'tcp'
    if (tcp ? (hit.tcpFlags & (TCP_ACK | TCP_RST)) === 0 : hit.proto !== 'udp') return false
    const now = Date.now()
    if (now - this.#budgetAt >= 1000) {
      this.#budgetAt = now
      this.#budget = REPLY_CHECKS_PER_S
    }
    if (this.#budget <= 0) {
      this.#replySkipped++
      return false
    }
    this.#budget--
    this.#replyChecks++
    try {
      const r = this.#native.connected(tcp ? 6 : 17, hit.dst, hit.dstPort, hit.src, hit.srcPort)
      if (r) this.#replies++
      return r
    } catch (e) {
      this.#warnOnce(`reply check failed (${(e as Error).message}); replies to this host's connections may be reported as probes`, 'reply')
      return false
    }
  }
}

/**
 * The guard facts of a namespace (default: this process's) read once: the kernel's
 * addresses and next hops, and the resolvers.
 */
export async function readHostFacts(options: { netns?: string; resolvConf?: readonly string[]; binding?: NativeBinding } = {}): Promise<HostFacts> {
  const watch = new HostWatch({
    label: options.netns === undefined ? 'this host' : `namespace ${options.netns}`,
    listening: async () => ({ tcp: new Set(), udp: new Set(), sctp: new Set() }),
    ...(options.netns !== undefined && { netns: options.netns }),
    ...(options.resolvConf !== undefined && { resolvConf: options.resolvConf }),
    ...(options.binding !== undefined && { binding: options.binding }),
  })
  try {
    await watch.readOnce()
    return watch.current()
  } finally {
    watch.close()
  }
}
