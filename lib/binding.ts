/**
 * The one place that loads the native addon (through node-gyp-build: a prebuild
 * from prebuilds/ when one matches, else build/Release). It types the addon with a
 * hand-written interface, never `any`, and checks at load that the HitRecord layout
 * the binary was built with is the one lib/decode.ts reads: a stale or foreign
 * prebuild fails here, loudly, instead of decoding garbage.
 */
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PortanoiaError } from './errors.js'
import { HIT_RECORD_LAYOUT, HIT_RECORD_SIZE } from './decode.js'

/** Node-style system error as thrown by the addon. */
export interface NativeSystemError extends Error {
  code: string
  errno: number
  syscall: string
  detail?: string
}

export interface NativePortBitmaps {
  tcp: Buffer
  udp: Buffer
  sctp: Buffer
  /** One bit per IP protocol number (32 bytes): the 'ip' tripwires. */
  ip: Buffer
}

export interface NativeCaptureOptions {
  interface?: string
  netns?: string
  filter: Buffer
  ports: NativePortBitmaps
  ringRecords?: number
  blockSize?: number
  blockCount?: number
  retireMs?: number
  /** While hits keep coming, at most one hand-over to JS per this many ms; 0 = per retired block (default 2). */
  coalesceMs?: number
  dedup?: boolean
  /** The express lane while the interface is quiet (default false). */
  express?: boolean
}

export interface NativeCaptureStats {
  kernelPackets: number
  kernelDrops: number
  kernelFreezes: number
  frames: number
  hits: number
  ringDrops: number
  notTripwire: number
  malformed: number
  duplicates: number
  connects: number
  blocks: number
  /** Hits reported first through the express lane. */
  expressHits: number
  /** Second copies of a frame (the express lane and the main ring both had it), not reported. */
  expressCopies: number
  /** Times the express lane went on or off. */
  expressSwitches: number
  /** 1 while the express lane carries the tripwire program, else 0 (a number, like every total, for the stats event). */
  expressActive: number
  /** Times the capture thread woke the JS thread to hand over hits. */
  wakeups: number
}

export interface NativeCapture {
  start(onReady: () => void): void
  /** Copies up to buffer.length / 96 records into `buffer`; returns the count. */
  drain(buffer: Buffer): number
  /** Arms the doorbell; false means "do not sleep: records or the end are there". */
  arm(): boolean
  disarm(): void
  ended(): boolean
  error(): NativeSystemError | null
  setFilter(filter: Buffer, ports: NativePortBitmaps): void
  addListener(port: number): void
  removeListener(port: number): void
  listenerPorts(): number[]
  stats(): NativeCaptureStats
  /** Name of an interface in the capture's namespace, '' when unknown. */
  interfaceName(ifindex: number): string
  ref(): void
  unref(): void
  close(): void
}

export interface NativeSendResult {
  sent: number
  failed: number
  elapsedNs: number
  lastError: string | null
}

export interface NativeSender {
  send(frames: Buffer, lengths: Uint32Array, total: number, pps?: number): NativeSendResult
  close(): void
}

/** One address of an interface, as rtnetlink reports it (any state, both families). */
export interface NativeAddrFact {
  address: string
  prefixLength: number
  ifindex: number
  /** IFA_F_* bits (tentative 0x40, deprecated 0x20, permanent 0x80, ...). */
  flags: number
  scope: number
  /** IFA_BROADCAST, when set. */
  broadcast?: string
  /** The far end of a point-to-point address. */
  peer?: string
}

/** One next hop of a route (RTA_GATEWAY, RTA_VIA, a multipath hop, a nexthop object). */
export interface NativeGatewayFact {
  address: string
  /** Routing table id (254 main, 255 local, ...). */
  table: number
  /** Output interface, 0 when the route does not say (nexthop objects). */
  ifindex: number
}

/** One immutable snapshot of the kernel's addresses and next hops. */
export interface NativeHostFacts {
  /** Increases with every snapshot of one HostWatch. */
  generation: number
  /** Wall-clock ms when the dump finished. */
  dumpedAtMs: number
  /** Wall-clock ms of the first change notification this dump answers; 0 for the first dump. */
  noticedAtMs: number
  /** False on kernels without nexthop objects (before 5.3). */
  nexthops: boolean
  addresses: NativeAddrFact[]
  gateways: NativeGatewayFact[]
}

export interface NativeHostWatchStats {
  dumps: number
  notifications: number
  /** ENOBUFS on the notification socket: changes were lost and a full dump followed. */
  overruns: number
  dumpErrors: number
  lastDumpNs: number
  /** False once an SCTP query found no sctp_diag. */
  sctp: boolean
  /** Batches peers() ran, the walks of the established hash they took, and the sockets those returned. */
  peerBatches: number
  peerWalks: number
  peerSockets: number
}

/** Bits of NativeHostWatch.peer()'s answer. */
export const PEER_TCP = 1
export const PEER_SCTP = 2

/** rtnetlink route types (RTN_*) that routeType() returns. */
export const RTN = { unspec: 0, unicast: 1, local: 2, broadcast: 3, anycast: 4, multicast: 5, blackhole: 6, unreachable: 7, prohibit: 8, throw: 9, nat: 10 } as const

/** rtnetlink and sock_diag in one namespace: facts, change notifications, live checks. */
export interface NativeHostWatch {
  /** Starts the watcher thread; onChange runs on the JS thread after each new snapshot (it does not keep the process alive). */
  start(onChange: () => void): void
  facts(): NativeHostFacts
  /**
   * PEER_TCP | PEER_SCTP bits: live TCP connections / SCTP associations with `address` as the far end.
   * TCP sockets on a local port of `ignoreLocalPorts` (the tripwire listeners) do not count.
   */
  peer(address: string, ignoreLocalPorts?: readonly number[]): number
  /**
   * The same for a batch, off the JS thread, in one walk of the kernel's tables: one
   * answer per target, in order. A target is an address or `address/prefix` (any peer
   * inside that network). Batches run one at a time, at most 64 waiting (past that it
   * throws); a rejection is a system error.
   */
  peers(targets: readonly string[], ignoreLocalPorts?: readonly number[]): Promise<number[]>
  /** Whether a TCP (6) or connected UDP (17) socket has exactly this tuple. */
  connected(proto: 6 | 17, local: string, localPort: number, remote: string, remotePort: number): boolean
  /** The RTN_* type the kernel routes `address` with from this host. */
  routeType(address: string): number
  /** net.ipv4.ip_local_port_range of the namespace; null when unreadable. */
  localPortRange(): [number, number] | null
  stats(): NativeHostWatchStats
  /** The last failed re-dump (`dump`) and why SCTP checks are off (`sctp`). */
  lastError(): { dump?: NativeSystemError; sctp?: NativeSystemError }
  close(): void
}

/** How this host would send to one address (RTM_GETROUTE). */
export interface NativeRoute {
  /** RTN_* (see RTN); unreachable also when the kernel answered ENETUNREACH / EHOSTUNREACH. */
  type: number
  /** Output interface; 0 when the answer names none. */
  oif: number
  table: number
  /** The next hop; absent when the address is on-link. */
  gateway?: string
  /** The source address the host would use. */
  prefsrc?: string
}

/** One neighbour entry (RTM_NEWNEIGH). */
export interface NativeNeighbour {
  address: string
  ifindex: number
  /** NUD_* bits (see NUD). */
  state: number
  /** NTF_* bits (NTF_ROUTER 0x80). */
  flags: number
  /** Link-layer address, aa:bb:cc:dd:ee:ff; absent while unresolved. */
  mac?: string
}

/** One link (RTM_NEWLINK): what relates interfaces to each other. */
export interface NativeLink {
  ifindex: number
  name: string
  /** ARPHRD_* (1: Ethernet). */
  type: number
  /** IFF_* bits. */
  flags: number
  /** IFLA_MASTER: the bridge or bond this link is a port of; 0 when none. */
  master: number
  /** IFLA_LINK: the lower device (VLAN, macvlan), or a veth's peer index; 0 when none. */
  link: number
  /** IFLA_INFO_KIND ('bridge', 'vlan', 'bond', 'macvlan', 'veth', ...); '' when none. */
  kind: string
  /** The VLAN id of a kind 'vlan' link. */
  vlan?: number
  mac?: string
}

/** An answer to a link probe: `address` is at `mac`, heard on `ifindex`. */
export interface NativeProbeAnswer {
  address: string
  mac: string
  ifindex: number
}

/** NUD_* neighbour states. */
export const NUD = { incomplete: 0x01, reachable: 0x02, stale: 0x04, delay: 0x08, probe: 0x10, failed: 0x20, noarp: 0x40, permanent: 0x80 } as const

/** Attribution's kernel questions in one namespace (native/link_wrap.*): all synchronous, none waits for the network. */
export interface NativeLinkFacts {
  /** The route to `address`, from `from` (an address of this host: source rules apply); throws EINVAL for a `from` that is not local. */
  route(address: string, from?: string): NativeRoute
  /** The entry for `address` on `ifindex`, or null when there is none. */
  neighbour(address: string, ifindex: number): NativeNeighbour | null
  links(): NativeLink[]
  /** Sends an ARP probe (IPv4) or a neighbour solicitation (IPv6) for `address` on `ifindex`, as `mac`. */
  probe(address: string, ifindex: number, mac: string): void
  /** The answers (ARP replies, neighbour advertisements) that arrived since the last call. */
  answers(): NativeProbeAnswer[]
  close(): void
}

export interface NativeParseMeta {
  ifindex?: number
  wireLen?: number
  vlanTci?: number
  tsSec?: number
  /** Parse from the network header with this link-layer protocol instead of from Ethernet. */
  ethertype?: number
}

/** One nftables context in a namespace: run() commits a script as `nft -f -` would, off the JS thread. */
export interface NativeNft {
  /**
   * Resolves with nft's exit code (0 committed, 1 refused) and its output, written as `nft -j`
   * (`json`) and `nft -t` (`terse`) would; rejects when it could not run at all.
   */
  run(script: string, options?: { json?: boolean; terse?: boolean }): Promise<{ code: number; stdout: string; stderr: string }>
  close(): void
}

export interface NativeNftClass {
  new (options: { netns?: string }): NativeNft
  /** null when libnftables loads; otherwise why not. */
  available(): string | null
}

export interface NativeBinding {
  Capture: new (options: NativeCaptureOptions) => NativeCapture
  Sender: new (options: { interface: string; netns?: string }) => NativeSender
  HostWatch: new (options: { netns?: string }) => NativeHostWatch
  LinkFacts: new (options: { netns?: string }) => NativeLinkFacts
  /** libnftables in-process (native/nft_wrap.h); `netns` is a namespace path (/run/netns/NAME). */
  Nft: NativeNftClass
  parseFrame(frame: Buffer, meta?: NativeParseMeta): { result: number; record: Buffer }
  /** Test entry: whole rtnetlink messages to the facts they describe. */
  parseRtnl(messages: Buffer): NativeHostFacts
  /** Test entry: whole rtnetlink messages to the routes, neighbour entries and links they describe. */
  parseRtnlObjects(messages: Buffer): { routes: NativeRoute[]; neighbours: NativeNeighbour[]; links: NativeLink[] }
  /** Test entry: the link probes as built and read by native/link_probe.cc. */
  probePackets: {
    arpProbe(mac: string, address: string): Buffer
    neighSolicit(mac: string, address: string): Buffer
    parseArp(packet: Buffer): NativeProbeAnswer | null
    parseNa(packet: Buffer): NativeProbeAnswer | null
  }
  /** Test entry: the inet_diag bytecode programs a peers() batch sends first. */
  peerPrograms(targets: readonly string[], ignoreLocalPorts?: readonly number[]): Buffer[]
  /** The `code` the addon's errors carry for this errno ('EPERM'; 'E<n>' when unnamed). */
  errnoCode(errno: number): string
  hitRecordSize: number
  hitRecordLayout: Record<string, number>
}

/**
 * The package root, where binding.gyp, build/ and prebuilds/ live. Found by walking
 * up to portanoia's package.json rather than by a fixed depth: this module runs as
 * dist/lib/binding.js when installed but as lib/binding.ts under the test runner.
 */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)))

function findPackageRoot(start: string): string {
  for (let dir = start; ; ) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }
      if (pkg.name === 'portanoia') return dir
    } catch {
      // no package.json here (or not JSON): keep walking up
    }
    const parent = dirname(dir)
    if (parent === dir) return join(start, '..', '..')
    dir = parent
  }
}

/** Checks a binding's record layout against the decoder's; throws on any difference. */
export function checkLayout(binding: Pick<NativeBinding, 'hitRecordSize' | 'hitRecordLayout'>): void {
  const problems: string[] = []
  if (binding.hitRecordSize !== HIT_RECORD_SIZE) {
    problems.push(`record size ${binding.hitRecordSize}, expected ${HIT_RECORD_SIZE}`)
  }
  for (const [field, offset] of Object.entries(HIT_RECORD_LAYOUT)) {
    const actual = binding.hitRecordLayout[field]
    if (actual !== offset) problems.push(`${field} at ${String(actual)}, expected ${offset}`)
  }
  for (const field of Object.keys(binding.hitRecordLayout)) {
    if (!(field in HIT_RECORD_LAYOUT)) problems.push(`unknown field ${field}`)
  }
  if (problems.length > 0) {
    throw new PortanoiaError('PORTANOIA_LAYOUT_MISMATCH', `native HitRecord layout does not match the decoder: ${problems.join('; ')}`, {
      hint: 'the native binary is stale or from another version: rebuild it with `npm run build:native` or reinstall portanoia',
    })
  }
}

let cached: NativeBinding | undefined

/** Loads (once) and layout-checks the addon. */
export function loadBinding(): NativeBinding {
  if (cached !== undefined) return cached
  if (process.platform !== 'linux') {
    throw new PortanoiaError('PORTANOIA_UNSUPPORTED', `portanoia needs Linux (AF_PACKET); this is ${process.platform}`, {
      hint: 'run it on a Linux host',
    })
  }
  const require = createRequire(import.meta.url)
  const load = require('node-gyp-build') as (dir: string) => unknown
  let binding: NativeBinding
  try {
    binding = load(PACKAGE_ROOT) as NativeBinding
  } catch (cause) {
    throw noBinaryError(cause)
  }
  checkLayout(binding)
  cached = binding
  return binding
}

/**
 * Why the addon did not load, and the command that fixes it for whoever is reading:
 * in a project that installed portanoia, `npm rebuild portanoia` reruns the install
 * script, which compiles when no prebuild fits (the install script did not run when
 * scripts were skipped, e.g. --ignore-scripts); in a checkout, the build script.
 */
function noBinaryError(cause: unknown): PortanoiaError {
  // The libc node-gyp-build matched prebuilds against (its own rule).
  const libc = process.env.LIBC ?? (existsSync('/etc/alpine-release') ? 'musl' : 'glibc')
  const noMatch = cause instanceof Error && cause.message.startsWith('No native build was found')
  const message = noMatch
    ? `no prebuilt portanoia addon fits linux-${process.arch} (${libc}), and none was compiled at install`
    : 'the portanoia native addon could not be loaded'
  const installed = PACKAGE_ROOT.split(sep).includes('node_modules')
  const hint = installed
    ? 'run `npm rebuild portanoia` in your project: it compiles the addon for this system (needs python3, make, g++; ' +
      'on Alpine also linux-headers) and is skipped under --ignore-scripts'
    : 'build it with `npm run build:native` (needs python3, make, g++)'
  return new PortanoiaError('PORTANOIA_NO_BINARY', message, { cause, hint })
}
