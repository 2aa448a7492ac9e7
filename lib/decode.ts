/**
 * Decoding of HitRecords (native/hit_record.h) into Hit objects. Runs on the JS thread
 * for every hit, so the per-hit work is the least that keeps a hit valid: a hit is a view
 * of three references (its batch's record words, its index, the decoder's caches) whose
 * fields are computed when read. The words are the drain buffer itself when the Sensor
 * hands a well-filled batch over (lib/sensor.ts), or else a typed-array slice of it per
 * chunk of up to 512 records. Address text comes from a small cache keyed by the
 * address words, so a source is formatted once however often it probes; interface
 * names are resolved once per index as batches are decoded. A kept hit keeps its batch's
 * or chunk's words alive (up to `batch` records, or 512) unless it is detached (`hit[RETAIN_HIT]()`, copy on
 * retain: the 22 words it reads, through the TCP option kinds), for code that keeps hits for long; a hit never keeps its
 * Sensor, and never refers to a buffer a later drain writes into. The
 * per-hit tables downstream key by `hit[HIT_KEY]`, written from the same words
 * (lib/hit-key.ts). `JSON.stringify(hit)` and `util.inspect` see the
 * fields through `toJSON()`; `structuredClone` and `postMessage` copy own data
 * properties only, so send `JSON.parse(JSON.stringify(hit))` to a worker. The layout
 * table here is what lib/binding.ts checks the addon's exported offsets against.
 * Assumes a little-endian host, as the native side does.
 */
import { formatAddressBytes as formatAddress } from './ip-text.js'
import type { Attribution, Hit, Proto, ScanKind } from './types.js'
import { MAPPED_WORD } from './hit-key.js'
import { HIT_KEY, PROBE_SHAPE, RETAIN_HIT, SCAN_KINDS, SOURCE_HASH, TCP_OPTIONS, TCP_SHAPE } from './types.js'

export { formatAddress }

export const HIT_RECORD_SIZE = 96
const WORDS = HIT_RECORD_SIZE / 4

export const HIT_RECORD_LAYOUT = {
  tsNs: 0,
  src: 8,
  dst: 24,
  srcPort: 40,
  dstPort: 42,
  ifindex: 44,
  family: 48,
  proto: 49,
  kind: 50,
  tcpFlags: 51,
  ttl: 52,
  sctpChunk: 53,
  vlan: 54,
  flags: 56,
  wireLen: 58,
  ipId: 60,
  srcMac: 64,
  tcpWindow: 70,
  tcpMss: 72,
  tcpWscale: 74,
  tcpOptCount: 75,
  tcpOpts: 76,
  tcpTsVal: 88,
  reserved: 92,
} as const satisfies Record<string, number>

export const HIT_FLAGS = {
  fragment: 1 << 0,
  ipOptions: 1 << 1,
  vlan: 1 << 2,
  truncated: 1 << 3,
  verified: 1 << 4,
  extHeaders: 1 << 5,
  ipv4: 1 << 6,
  srcMac: 1 << 7,
  tcpOptsMore: 1 << 8,
  tcpOptsBad: 1 << 9,
} as const

const PROTO_NAMES: Array<Proto | undefined> = []
PROTO_NAMES[6] = 'tcp'
PROTO_NAMES[17] = 'udp'
PROTO_NAMES[132] = 'sctp'

/** A hit's attribution as an attributor answers it: shared, frozen objects. */
export interface AttributionAnswer {
  readonly attribution: Attribution
  readonly evidence: readonly string[]
}

/** Where a decoder's hits get their attribution from (lib/attribution attaches an Attributor). */
export type AttributionSource = (hit: Hit) => AttributionAnswer

/**
 * `sensor[ATTRIBUTE_HITS](source)` attaches where the sensor's hits get `attribution`
 * and `evidence` (lib/attribution's attachAttributor does). Not exported from the
 * package index.
 */
export const ATTRIBUTE_HITS: unique symbol = Symbol('portanoia.attributeHits')

/** The answer when no attributor is attached, or no check could run. */
export const UNCHECKED: AttributionAnswer = Object.freeze({ attribution: 'plausible', evidence: Object.freeze(['unchecked']) })
/** A hit that is itself a completed handshake. */
export const VERIFIED: AttributionAnswer = Object.freeze({ attribution: 'verified', evidence: Object.freeze([]) })

/**
 * Per decoder: the attached source, and the last hit it answered (a hit's two getters,
 * and the several readers of one hit in the daemon's loop, ask the attributor once).
 */
class AttributionHook {
  source: AttributionSource | null = null
  #hit: Hit | null = null
  #answer: AttributionAnswer = UNCHECKED

  answer(hit: Hit): AttributionAnswer {
    if (this.source === null) return hit.verified ? VERIFIED : UNCHECKED
    if (this.#hit !== hit) {
      this.#answer = this.source(hit)
      this.#hit = hit
    }
    return this.#answer
  }
}

/** Kind names by native value; values the decoder does not know read as 'odd-flags'. */
const KIND_NAMES: ScanKind[] = Array.from({ length: 256 }, (_, i) =>
  (i > 0 && i < SCAN_KINDS.length ? SCAN_KINDS[i] : 'odd-flags') as ScanKind,
)

const DEC = Array.from({ length: 256 }, (_, i) => String(i))

/**
 * Set-associative caches: IPv4 (one word) four ways, IPv6 (four words) two ways. With two
 * ways, a scan cycling through 4,096 sources left ~9 % of them in sets of three or more
 * and missing on every visit (formatting their text again each time); four ways over the
 * same 16,384 entries leave almost none.
 */
const V4_SET_BITS = 12
const V6_SET_BITS = 10
const ADDRESS_SCRATCH = new Uint8Array(16)
const ADDRESS_SCRATCH_WORDS = new Int32Array(ADDRESS_SCRATCH.buffer)

/**
 * Address text by address words, for one decoder. A hit costs a hash and a compare per
 * way looked at; a miss formats (the one formatter, lib/ip-text.ts) and takes a way of its
 * set (IPv4: an empty one, else the one a turning counter names; IPv6: the older of two).
 * The same address keeps the same string while it is cached, which also makes it a cheap
 * Map key downstream (its hash is computed once).
 */
class AddressText {
  readonly #v4Keys = new Int32Array(4 << V4_SET_BITS)
  readonly #v4Text: Array<string | undefined> = new Array<string | undefined>(4 << V4_SET_BITS).fill(undefined)
  #v4Victim = 0
  readonly #v6Keys = new Int32Array(8 << V6_SET_BITS)
  readonly #v6Text: Array<string | undefined> = new Array<string | undefined>(2 << V6_SET_BITS).fill(undefined)

  /** w: the address's last word as the record holds it (first octet in the low byte). */
  v4(w: number): string {
    const k = (Math.imul(w ^ (w >>> 16), 0x45d9f3b) >>> (32 - V4_SET_BITS)) << 2
    const keys = this.#v4Keys
    const text = this.#v4Text
    for (let i = k; i < k + 4; i++) {
      if (keys[i] === w) {
        const s = text[i]
        if (s !== undefined) return s
      }
    }
    const s = `${DEC[w & 0xff]}.${DEC[(w >>> 8) & 0xff]}.${DEC[(w >>> 16) & 0xff]}.${DEC[w >>> 24]}`
    // An empty way if the set has one, else the way a counter turning on every miss points
    // at: no entries move (shifting the ways cost ~15-35 ns a hit under a flood of new
    // sources, where every hit misses), and a scan cycling through more sources than a set
    // holds still hits in the ways it did not take (the sender's 4,096-source pool: 0.55 %
    // misses, against 1.4 % with the oldest way replaced and 8.8 % with two ways).
    let way = k
    while (way < k + 4 && text[way] !== undefined) way++
    if (way === k + 4) way = k + (this.#v4Victim = (this.#v4Victim + 1) & 3)
    keys[way] = w
    text[way] = s
    return s
  }

  v6(a: number, b: number, c: number, d: number): string {
    let h = Math.imul(a ^ (b >>> 7), 0x45d9f3b) ^ Math.imul(c ^ (d >>> 11), 0x2c1b3c6d) ^ d
    h = Math.imul(h ^ (h >>> 15), 0x45d9f3b)
    const set = h >>> (32 - V6_SET_BITS)
    const keys = this.#v6Keys
    const text = this.#v6Text
    for (let way = 0; way < 2; way++) {
      const k = (set * 2 + way) * 4
      if (keys[k] === a && keys[k + 1] === b && keys[k + 2] === c && keys[k + 3] === d) {
        const s = text[set * 2 + way]
        if (s !== undefined) return s
      }
    }
    const bytes = ADDRESS_SCRATCH
    const view = ADDRESS_SCRATCH_WORDS
    view[0] = a
    view[1] = b
    view[2] = c
    view[3] = d
    const s = formatAddress(bytes, 0, false)
    const k0 = set * 8
    keys.copyWithin(k0 + 4, k0, k0 + 4)
    text[set * 2 + 1] = text[set * 2]
    keys[k0] = a
    keys[k0 + 1] = b
    keys[k0 + 2] = c
    keys[k0 + 3] = d
    text[set * 2] = s
    return s
  }
}

/**
 * What every hit of one decoder shares: address text and interface names. Plain data on
 * purpose: a kept hit must not keep its Sensor (or the native capture) reachable, or an
 * unclosed, unreachable sensor could never be collected and its thread never stopped.
 * The decoder fills `names` as batches arrive, so a hit only reads it.
 */
class DecodeContext {
  readonly addresses = new AddressText()
  readonly names = new Map<number, string>()
  /** The attributor's answers (its closure must not hold the Sensor either: lib/attribution/attach.ts). */
  readonly attribution = new AttributionHook()
}

const NO_WORDS = new Int32Array(0)
/** 2^32 ns in ms: time = hi * this + lo / 1e6 keeps sub-microsecond resolution. */
const MS_PER_HI = 4294.967296
/**
 * Words of a record a hit reads (the first 88 bytes: through the TCP option kinds, which
 * scan shapes and tool guesses read): what a retained hit keeps.
 */
const HIT_WORDS = 22
/**
 * Records per copy, when records are copied (a batch the Sensor does not hand over whole):
 * a hit kept from such a batch keeps at most 512 records (48 KiB) alive. The copy is one
 * typed-array slice (a memcpy): copying word by word into a JS array cost ~200 ns a hit,
 * because record words are int32s that are not Smis (a source address usually is not)
 * and turned the array into boxed or double elements as it filled.
 */
const CHUNK = 512
// Word indexes within a record.
const TS_LO = 0
const TS_HI = 1
const SRC = 2
const DST = 6
/** srcPort | dstPort << 16 */
const PORTS = 10
const IFINDEX = 11
/** family | proto << 8 | kind << 16 | tcpFlags << 24 */
const KINDS = 12
/** ttl | sctpChunk << 8 | vlan << 16 */
const TTL = 13
/** flags | wireLen << 16 */
const FLAGS = 14
const IP_ID = 15
/** The source MAC's six bytes, from the first byte of this word. */
const SRC_MAC = 16
/** srcMac[4] | srcMac[5] << 8 | tcpWindow << 16 */
const TCP_WINDOW = 17
/** tcpMss | tcpWscale << 16 | tcpOptCount << 24 */
const TCP_MSS = 18
/** The first 12 TCP option kinds, four a word. */
const TCP_OPTS = 19
const TCP_PROTO = 6
const OPT_MSS = 2
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/**
 * A decoded hit: a view of one record in its batch's words. One hidden class for every
 * hit and three fields, so a hit is one small allocation.
 */
class DecodedHit implements Hit {
  readonly #ctx: DecodeContext
  #w: Int32Array
  #q: number

  constructor(ctx: DecodeContext, w: Int32Array, q: number) {
    this.#ctx = ctx
    this.#w = w
    this.#q = q
  }

  /** Capture time, ms since the epoch (fractional). */
  get time(): number {
    const w = this.#w
    const q = this.#q
    return (w[q + TS_HI]! >>> 0) * MS_PER_HI + (w[q + TS_LO]! >>> 0) / 1e6
  }

  /** Capture time in nanoseconds since the epoch, exactly as the kernel stamped it. */
  get timeNs(): bigint {
    const w = this.#w
    const q = this.#q
    return (BigInt(w[q + TS_HI]! >>> 0) << 32n) | BigInt(w[q + TS_LO]! >>> 0)
  }

  get src(): string {
    return this.#address(SRC)
  }

  get dst(): string {
    return this.#address(DST)
  }

  #address(at: number): string {
    const w = this.#w
    const q = this.#q + at
    return (w[this.#q + FLAGS]! & HIT_FLAGS.ipv4) !== 0
      ? this.#ctx.addresses.v4(w[q + 3]!)
      : this.#ctx.addresses.v6(w[q]!, w[q + 1]!, w[q + 2]!, w[q + 3]!)
  }

  #word(i: number): number {
    return this.#w[this.#q + i]!
  }

  get srcPort(): number {
    return this.#word(PORTS) & 0xffff
  }

  get dstPort(): number {
    return this.#word(PORTS) >>> 16
  }

  get family(): 4 | 6 {
    return (this.#word(FLAGS) & HIT_FLAGS.ipv4) !== 0 ? 4 : 6
  }

  get proto(): Proto {
    // Any other protocol number is an IP protocol tripwire's (kind ip-proto).
    return PROTO_NAMES[(this.#word(KINDS) >>> 8) & 0xff] ?? 'ip'
  }

  get kind(): ScanKind {
    return KIND_NAMES[(this.#word(KINDS) >>> 16) & 0xff]!
  }

  get tcpFlags(): number {
    return this.#word(KINDS) >>> 24
  }

  get ttl(): number {
    return this.#word(TTL) & 0xff
  }

  get verified(): boolean {
    return (this.#word(FLAGS) & HIT_FLAGS.verified) !== 0
  }

  get interface(): string {
    const index = this.#word(IFINDEX) >>> 0
    return index === 0 ? '' : (this.#ctx.names.get(index) ?? '')
  }

  get ifindex(): number {
    return this.#word(IFINDEX) >>> 0
  }

  get vlan(): number | undefined {
    return (this.#word(FLAGS) & HIT_FLAGS.vlan) !== 0 ? this.#word(TTL) >>> 16 : undefined
  }

  get fragment(): boolean {
    return (this.#word(FLAGS) & HIT_FLAGS.fragment) !== 0
  }

  get ipOptions(): boolean {
    return (this.#word(FLAGS) & HIT_FLAGS.ipOptions) !== 0
  }

  get extHeaders(): boolean {
    return (this.#word(FLAGS) & HIT_FLAGS.extHeaders) !== 0
  }

  get truncated(): boolean {
    return (this.#word(FLAGS) & HIT_FLAGS.truncated) !== 0
  }

  get sctpChunk(): number | undefined {
    return ((this.#word(KINDS) >>> 8) & 0xff) === 132 ? (this.#word(TTL) >>> 8) & 0xff : undefined
  }

  get ipId(): number {
    return this.#word(IP_ID) >>> 0
  }

  get wireLen(): number {
    return this.#word(FLAGS) >>> 16
  }

  /** Computed on access from the attached attributor's per-source cache (lib/attribution). */
  get attribution(): Attribution {
    return this.#ctx.attribution.answer(this).attribution
  }

  get evidence(): readonly string[] {
    return this.#ctx.attribution.answer(this).evidence
  }

  /** The frame's link-layer source (attribution's link-layer check), when the link has one. */
  get srcMac(): string | undefined {
    if ((this.#word(FLAGS) & HIT_FLAGS.srcMac) === 0) return undefined
    const a = this.#word(SRC_MAC)
    const b = this.#word(SRC_MAC + 1)
    return `${HEX[a & 0xff]}:${HEX[(a >>> 8) & 0xff]}:${HEX[(a >>> 16) & 0xff]}:${HEX[a >>> 24]}:${HEX[b & 0xff]}:${HEX[(b >>> 8) & 0xff]}`
  }

  /** The hit's table key from the record's words (types.ts HIT_KEY, lib/hit-key.ts). */
  [HIT_KEY](out: Int32Array, at: number): void {
    const w = this.#w
    const q = this.#q
    const s = q + SRC
    const flags = w[q + FLAGS]!
    if ((flags & HIT_FLAGS.ipv4) !== 0 || (w[s] === 0 && w[s + 1] === 0 && w[s + 2] === MAPPED_WORD)) {
      out[at] = 4
      out[at + 1] = 0
      out[at + 2] = 0
      out[at + 3] = 0
    } else {
      out[at] = 6
      out[at + 1] = w[s]!
      out[at + 2] = w[s + 1]!
      out[at + 3] = w[s + 2]!
    }
    out[at + 4] = w[s + 3]!
    out[at + 5] = w[q + IFINDEX]!
    const ttl = (w[q + TTL]! & 0xff) << 16
    if ((flags & HIT_FLAGS.srcMac) !== 0) {
      out[at + 6] = w[q + SRC_MAC]!
      out[at + 7] = (w[q + SRC_MAC + 1]! & 0xffff) | ttl | (1 << 24)
    } else {
      out[at + 6] = 0
      out[at + 7] = ttl
    }
  }

  /**
   * What a scanner keeps the same in every copy of one probe (types.ts PROBE_SHAPE):
   * destination, ports, protocol, kind, flags, IP ID, TCP window and options. Not the
   * source, the TTL (nmap draws one per packet) or the link-layer address.
   */
  [PROBE_SHAPE](): number {
    const w = this.#w
    const q = this.#q
    let h = Math.imul(w[q + DST + 3]! ^ w[q + DST]!, 0x9e3779b1) ^ w[q + DST + 1]! ^ Math.imul(w[q + DST + 2]!, 0x85ebca6b)
    h = Math.imul(h ^ w[q + PORTS]!, 0xc2b2ae35) ^ w[q + KINDS]!
    h = Math.imul(h ^ w[q + IP_ID]!, 0x27d4eb2f) ^ (w[q + TCP_WINDOW]! >>> 16)
    h = Math.imul(h ^ w[q + TCP_MSS]!, 0x165667b1) ^ w[q + TCP_OPTS]!
    h = Math.imul(h ^ w[q + TCP_OPTS + 1]!, 0x9e3779b1) ^ w[q + TCP_OPTS + 2]!
    return (h ^ (h >>> 15)) | 0
  }

  /** TCP window + 65,536 × options class (types.ts TCP_SHAPE); 0 when not TCP. */
  [TCP_SHAPE](): number {
    const w = this.#w
    const q = this.#q
    if (((w[q + KINDS]! >>> 8) & 0xff) !== TCP_PROTO) return 0
    const m = w[q + TCP_MSS]!
    const count = m >>> 24
    let cls: number = TCP_OPTIONS.other
    if (count === 0) cls = TCP_OPTIONS.none
    else if (count === 1 && (w[q + TCP_OPTS]! & 0xff) === OPT_MSS) cls = (m & 0xffff) === 1460 ? TCP_OPTIONS.mss1460 : TCP_OPTIONS.mssOther
    return (w[q + TCP_WINDOW]! >>> 16) + cls * 65536
  }

  /** A 32-bit hash of the source address words (types.ts SOURCE_HASH). */
  [SOURCE_HASH](): number {
    const w = this.#w
    const q = this.#q + SRC
    const h = Math.imul(w[q + 3]! ^ Math.imul(w[q + 2]!, 0x85ebca6b), 0x9e3779b1) ^ Math.imul(w[q]! ^ w[q + 1]!, 0xc2b2ae35)
    return (h ^ (h >>> 16)) | 0
  }

  /**
   * Copy on retain: gives this hit its own copy of the words it reads (88 bytes), so
   * keeping it no longer keeps its batch. Idempotent; returns the hit.
   */
  [RETAIN_HIT](): this {
    if (this.#w.length !== HIT_WORDS) {
      this.#w = this.#w.slice(this.#q, this.#q + HIT_WORDS)
      this.#q = 0
    }
    return this
  }

  /** Every field as plain data, in the order the Hit type lists them (timeNs, a BigInt, left out). */
  toJSON(): Omit<Hit, 'timeNs'> {
    const o: Omit<Hit, 'timeNs'> = {
      time: this.time,
      src: this.src,
      srcPort: this.srcPort,
      dst: this.dst,
      dstPort: this.dstPort,
      family: this.family,
      proto: this.proto,
      kind: this.kind,
      tcpFlags: this.tcpFlags,
      ttl: this.ttl,
      verified: this.verified,
      interface: this.interface,
      ifindex: this.ifindex,
      fragment: this.fragment,
      ipOptions: this.ipOptions,
      extHeaders: this.extHeaders,
      truncated: this.truncated,
      ipId: this.ipId,
      wireLen: this.wireLen,
      attribution: this.attribution,
      evidence: [...this.evidence],
    }
    const mac = this.srcMac
    if (mac !== undefined) o.srcMac = mac
    const vlan = this.vlan
    if (vlan !== undefined) o.vlan = vlan
    const chunk = this.sctpChunk
    if (chunk !== undefined) o.sctpChunk = chunk
    return o
  }

  /** console.log(hit) shows the fields, as it did when they were own properties. */
  [Symbol.for('nodejs.util.inspect.custom')](): Omit<Hit, 'timeNs'> {
    return this.toJSON()
  }
}

/**
 * Decodes HitRecords: `load(words, first, n)` then `take()` one hit at a time (the
 * Sensor's per-hit iterator: no array of hits per batch), or `decode(words, first, n,
 * out)` to append them all at once (batches(), benchmarks). Records are copied out of
 * `words` (an Int32Array over whole records, e.g. the Sensor's drain buffer) one chunk of
 * up to CHUNK records at a time, as the chunk's first hit is taken. One decoder per
 * Sensor; its caches live as long as the sensor.
 */
export class HitDecoder {
  readonly #ctx = new DecodeContext()
  readonly #ifname: (index: number) => string
  /** The loaded batch: records #next .. #end - 1 of #source are still to be handed out. */
  #source: Int32Array = NO_WORDS
  #next = 0
  #end = 0
  /** The current chunk's copy and the word offset of its next record. */
  #chunk: Int32Array = NO_WORDS
  #q = 0
  #left = 0
  #lastIndex = 0

  constructor(ifname: (index: number) => string) {
    this.#ifname = ifname
  }

  decode(words: Int32Array, first: number, count: number, out: Hit[]): void {
    this.load(words, first, count)
    this.takeAll(out)
  }

  /**
   * Loads records first .. first + count - 1 of `words` (e.g. the Sensor's drain buffer)
   * to be handed out by take()/takeAll(). With `own`, the hits refer to `words` itself,
   * which nobody may write again; otherwise `words` must stay unchanged until every hit
   * was taken (records are copied chunk by chunk as the first hit of each chunk is taken).
   * Records still loaded from before are dropped.
   */
  load(words: Int32Array, first: number, count: number, own = false): void {
    this.#source = words
    this.#left = count
    if (own) {
      this.#chunk = first === 0 && words.length === count * WORDS ? words : words.subarray(first * WORDS, (first + count) * WORDS)
      this.#q = 0
      this.#next = this.#end = 0
    } else {
      this.#chunk = NO_WORDS
      this.#q = 0
      this.#next = first
      this.#end = first + count
    }
  }

  /** Hits still loaded. */
  get left(): number {
    return this.#left
  }

  /** The next loaded hit; the caller checks `left` first. */
  take(): Hit {
    let w = this.#chunk
    let q = this.#q
    if (q === w.length) {
      // Hits of one chunk share one copy: a kept hit keeps at most CHUNK records alive.
      const m = Math.min(CHUNK, this.#end - this.#next)
      const from = this.#next * WORDS
      w = this.#source.slice(from, from + m * WORDS)
      this.#next += m
      this.#chunk = w
      q = 0
    }
    this.#q = q + WORDS
    this.#left--
    // Hits come in runs from one interface: a name is asked for once per new index.
    const index = w[q + IFINDEX]!
    if (index !== this.#lastIndex) this.#nameOf(index)
    return new DecodedHit(this.#ctx, w, q)
  }

  /** Appends every loaded hit to `out`. */
  takeAll(out: Hit[]): void {
    while (this.#left > 0) out.push(this.take())
  }

  /**
   * Every loaded hit, in a new array of exactly their number (batches(): growing an
   * empty array by push cost ~4 ns a hit in copies).
   */
  takeBatch(): Hit[] {
    const n = this.#left
    const out = new Array<Hit>(n)
    for (let i = 0; i < n; i++) out[i] = this.take()
    return out
  }

  #nameOf(index: number): void {
    this.#lastIndex = index
    const names = this.#ctx.names
    if (!names.has(index >>> 0)) names.set(index >>> 0, this.#ifname(index >>> 0))
  }

  /** Attaches (or, with null, detaches) where this decoder's hits get their attribution. */
  attribute(source: AttributionSource | null): void {
    this.#ctx.attribution.source = source
  }
}

/**
 * Decodes the record at `offset` of any buffer (tests, tools). `ifname` maps an
 * interface index to its name; records come only from our addon, so fields are trusted
 * to be in range, but an unknown kind still decodes as 'odd-flags' rather than throw.
 */
export function decodeHit(buf: Uint8Array, offset: number, ifname: (index: number) => string): Hit {
  const bytes = new Uint8Array(HIT_RECORD_SIZE)
  bytes.set(buf.subarray(offset, offset + HIT_RECORD_SIZE))
  const words = new Int32Array(bytes.buffer, 0, HIT_WORDS)
  const ctx = new DecodeContext()
  const index = words[IFINDEX]! >>> 0
  if (index !== 0) ctx.names.set(index, ifname(index))
  return new DecodedHit(ctx, words, 0)
}
