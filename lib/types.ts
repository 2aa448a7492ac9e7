/**
 * Public value types shared by the sensor, the policy and the responders. Pure
 * declarations, the name tables that mirror native/hit_record.h and one rule about
 * what a kind means (isAnswer); nothing here does I/O. The kind and proto tables are part of the JS contract: their order
 * matches the numeric values the capture thread writes.
 */

/** The transports whose ports can be tripwires. */
export type TransportProto = 'tcp' | 'udp' | 'sctp'

/**
 * A tripwire's protocol: a transport (its `from`..`to` are ports), or 'ip' (they are IP
 * protocol numbers: '47/ip' makes any GRE packet to this host a hit of kind `ip-proto`,
 * whose `dstPort` is the protocol number).
 */
export type Proto = TransportProto | 'ip'

/**
 * Is the source address written in a packet its sender? `verified`: a completed
 * handshake (the hit's, or its source's within the verified memory); `forged`: positive
 * evidence that it is not; `plausible`: nothing says it was forged (lib/attribution).
 */
export type Attribution = 'verified' | 'plausible' | 'forged'

/** IANA protocol numbers, as the record carries them. */
export const PROTO_NUMBERS: Readonly<Record<TransportProto, number>> = { tcp: 6, udp: 17, sctp: 132 }

/** Scan kinds in native order (index = ScanKind value). */
export const SCAN_KINDS = [
  'none',
  'syn',
  'connect',
  'fin',
  'null',
  'xmas',
  'ack',
  'maimon',
  'rst',
  'odd-flags',
  'udp',
  'sctp-init',
  'sctp-cookie-echo',
  'sctp-other',
  'fragment',
  'ip-proto',
] as const

export type ScanKind = Exclude<(typeof SCAN_KINDS)[number], 'none'>

/**
 * Whether a hit is an answer, not a probe: a RST (with or without ACK) from a source that
 * did not complete a handshake. A RST is never sent unprompted (RFC 9293), and a forged
 * SYN claiming a neighbour makes a tripwire listener send it a SYN-ACK that its kernel
 * resets: a genuine packet from an innocent address. The policy never counts it toward
 * a block, and scan tracking never counts it as a probe.
 */
export function isAnswer(hit: { readonly kind: ScanKind; readonly verified: boolean }): boolean {
  return hit.kind === 'rst' && !hit.verified
}

/** Words of a hit's table key (see HIT_KEY). */
export const HIT_KEY_WORDS = 8

/**
 * Hits decoded from a record answer `hit[HIT_KEY](out, at)` by writing their table key
 * into `out[at .. at + 7]`, straight from the record: the source's family and its 16
 * bytes as four little-endian words as the record holds them (an IPv4 source, and an
 * IPv4-mapped IPv6 one, folded to IPv4 as addr.ts folds it: family 4, then 0, 0, 0 and
 * its one word), the interface index, and the
 * link-layer source's six bytes with the TTL and a has-MAC bit (lib/hit-key.ts names
 * the words). The policy engine and the attributor key their per-hit tables by it
 * (lib/word-map.ts), so no address text is built or parsed back on the hot path. Hits
 * built any other way (tests, tools) need not have it: lib/hit-key.ts computes the same
 * key from their fields. Not exported from the package index.
 */
export const HIT_KEY: unique symbol = Symbol('portanoia.hitKey')

/**
 * Hits decoded from a record share their batch's bytes until `hit[RETAIN_HIT]()` gives
 * them a copy of their own (it returns the hit). Code that keeps hits for long calls it
 * so that one kept hit never keeps a whole batch (the policy engine keeps the fields it
 * needs instead). Not exported from the package index.
 */
export const RETAIN_HIT: unique symbol = Symbol('portanoia.retainHit')

/**
 * Hits decoded from a record answer `hit[PROBE_SHAPE]()` with a 32-bit hash of what a
 * scanner keeps identical in every copy of one probe it sends from several source
 * addresses (nmap -D): destination, both ports, protocol, kind and flags, IP ID, TCP
 * window and options — not the source, TTL or link-layer address. Numbers read from the
 * record, no allocation; decoy grouping (lib/attribution/decoy.ts) keys probes by it. Hits
 * built any other way need not have it. Not exported from the package index.
 */
export const PROBE_SHAPE: unique symbol = Symbol('portanoia.probeShape')

/**
 * Hits decoded from a record answer `hit[TCP_SHAPE]()` with the TCP header facts a
 * scanning tool's fingerprint is made of: the window (bits 0..15) plus 65,536 × the
 * options class (TCP_OPTIONS), 0 for a hit that is not TCP. No allocation. Not exported
 * from the package index.
 */
export const TCP_SHAPE: unique symbol = Symbol('portanoia.tcpShape')

/** The options classes of TCP_SHAPE. */
export const TCP_OPTIONS = { none: 0, mss1460: 1, mssOther: 2, other: 3 } as const

/**
 * Hits decoded from a record answer `hit[SOURCE_HASH]()` with a 32-bit hash of the source
 * address words (no text, no allocation): scan tracking keys its table by it. Not
 * exported from the package index.
 */
export const SOURCE_HASH: unique symbol = Symbol('portanoia.sourceHash')

/**
 * One probe to a tripwire, as yielded by `for await (const hit of sensor)`. A sensor's hits
 * compute their fields when read, stay valid for as long as they are kept, and cannot be
 * assigned to. `JSON.stringify(hit)` gives every field but `timeNs`; structuredClone and
 * postMessage copy own data properties only, so to send a hit to a worker send
 * `JSON.parse(JSON.stringify(hit))` or the fields it needs.
 */
export interface Hit {
  /** Capture time, milliseconds since the epoch (fractional: microsecond precision). */
  time: number
  /** Capture time, nanoseconds since the epoch, as the kernel stamped it (computed on access; not enumerable). */
  readonly timeNs: bigint
  src: string
  srcPort: number
  dst: string
  dstPort: number
  family: 4 | 6
  proto: Proto
  kind: ScanKind
  /** Raw TCP flag byte (0 for UDP/SCTP). */
  tcpFlags: number
  /** IPv4 TTL or IPv6 hop limit; 0 when unknown (verified connects). */
  ttl: number
  /** True only for a completed TCP handshake (kind `connect`): the source cannot be forged. */
  verified: boolean
  /** Interface name the frame arrived on; '' when unknown. */
  interface: string
  ifindex: number
  /** Outer VLAN id, when the frame was tagged. */
  vlan?: number
  fragment: boolean
  ipOptions: boolean
  extHeaders: boolean
  truncated: boolean
  /** First SCTP chunk type (SCTP only). */
  sctpChunk?: number
  /** IPv4 identification or IPv6 fragment identification. */
  ipId: number
  wireLen: number
  /** The frame's link-layer source address (aa:bb:cc:dd:ee:ff), when it had one. */
  srcMac?: string
  /**
   * Whether the source address is plausibly the sender or provably forged, from the
   * evidence the attribution validators gathered (computed on access from a per-source
   * cache; `plausible` with evidence `unchecked` when no attributor is attached).
   */
  attribution: Attribution
  /** Stable names of that evidence (lib/attribution/types.ts EVIDENCE; `pending` while a check runs). */
  evidence: readonly string[]
  /** The table key from the record's words, when the hit was decoded from one (see HIT_KEY). @internal */
  [HIT_KEY]?(out: Int32Array, at: number): void
  /** Copy on retain (see RETAIN_HIT). @internal */
  [RETAIN_HIT]?(): Hit
  /** What stays the same in copies of one probe (see PROBE_SHAPE). @internal */
  [PROBE_SHAPE]?(): number
  /** TCP window and options class (see TCP_SHAPE). @internal */
  [TCP_SHAPE]?(): number
  /** Hash of the source address (see SOURCE_HASH). @internal */
  [SOURCE_HASH]?(): number
}

/** A tripwire: one port or an inclusive range, on one protocol. */
export interface PortRange {
  proto: Proto
  from: number
  to: number
}

/** What `open()` and `setPorts()` accept: '2222/tcp', '9000-9010/udp', 2222 (tcp), or objects. */
export type PortSpec =
  | string
  | number
  | { port: number; proto?: Proto }
  | { from: number; to: number; proto?: Proto }
