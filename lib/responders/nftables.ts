/**
 * The default firewall responder. It owns exactly one nftables table,
 * `inet portanoia`, and never touches anything outside it: six sets with
 * kernel-side expiry, one per origin and family — `verified4/6` (local blocks from
 * completed handshakes), `spoofable4/6` (local blocks from forgeable evidence) and
 * `fleet4/6` (CrowdSec fleet bans, each element's comment carrying its LAPI decision
 * id, origin and scenario) — a base chain on the input hook (policy accept, at
 * priority filter - 10 so it runs before the usual filter chains) that drops members
 * of any of them, and, opt-in, the same on the forward hook. Origins never share an
 * element, so none can shorten another's block, and a fleet ban keeps its origin
 * across a restart. With `prefixes` (prefix bans, `--aggregate`) two interval sets
 * more, `prefix4/6` (flags interval, timeout), hold whole networks, dropped by two
 * more rules of the same chains.
 *
 * The kernel is the truth. Writes never shorten a block: a batch is first tried as
 * `create element` (the kernel refuses an element that exists), and only when that
 * meets an existing element are the sets read and each element either left alone
 * (the kernel already holds it at least as long), created, or grown (add, delete and
 * add again in one transaction, which also replaces its comment). Every change is
 * one `nft -f -` transaction, and the responder runs one call at a time, so a
 * read-then-write is never interleaved with another of its own writes. start()
 * adopts an existing table (migrating the sets of earlier versions, `block4`/
 * `block6`, element by element with their time left, in one transaction) and
 * repairs only what differs from the expected shape; it never flushes a set.
 * repair() (used by the daemon's reconcile loop) puts back whatever is missing;
 * watch() follows `nft monitor` for deletions. Addresses, TTLs and comments are
 * validated before they reach a script. Runs on the JS thread through an injected
 * RunFn; block(), unblock() and uninstall() report failures as results and never
 * reject.
 */
import { PortanoiaError } from '../errors.js'
import { formatCidr, normalizeAddress, parseAddress, parseCidr } from '../policy/addr.js'
import { PREFIX_LIMITS } from '../policy/prefixes.js'
import type { Decision } from '../policy/decision.js'
import { CallQueue, checkAddresses, checkBlocks, firstLine, fleetComment, MAX_TTL_SECONDS, parseFleetComment, RepairLog, result, toolError, toolHint, type ValidBlock } from './common.js'
import { defaultRun, type StreamFn } from './run.js'
import { deviceProblem, type Enforce, ENFORCE, ingressProblems, ingressSetup, type IngressShape, mirrorDiff, type MirrorDiff, NFT_INGRESS_TABLE, usesIngress } from './nft-ingress.js'
import {
  EVIDENCE,
  type ActiveBlockEntry,
  type BlockRequest,
  type Evidence,
  type FirewallChange,
  type FleetTag,
  type BlockPath,
  type PrefixRequest,
  type Responder,
  type ResponderResult,
  type RunFn,
  type UnblockOptions,
} from './types.js'

export const NFT_TABLE = 'inet portanoia'

/** The set of each origin and family. */
export const NFT_SETS: Readonly<Record<Evidence, Readonly<Record<4 | 6, string>>>> = Object.freeze({
  verified: Object.freeze({ 4: 'verified4', 6: 'verified6' }),
  spoofable: Object.freeze({ 4: 'spoofable4', 6: 'spoofable6' }),
  fleet: Object.freeze({ 4: 'fleet4', 6: 'fleet6' }),
})

/** The interval sets of prefix bans (option `prefixes`), per family. */
export const NFT_PREFIX_SETS: Readonly<Record<4 | 6, string>> = Object.freeze({ 4: 'prefix4', 6: 'prefix6' })

/** The sets of portanoia before per-origin sets; start() migrates their elements. */
export const NFT_LEGACY_SETS: Readonly<Record<string, 4 | 6>> = Object.freeze({ block4: 4, block6: 6 })

/** Longest block the nftables responder holds, ms (MAX_TTL_SECONDS). */
export const NFT_MAX_TTL_MS = MAX_TTL_SECONDS * 1000

export interface NftablesOptions {
  run?: RunFn
  /** The nft binary. Default 'nft'. */
  nft?: string
  /** Also drop members on the forward hook (published container ports, routed hosts). Default false. */
  forward?: boolean
  /**
   * Where blocks are enforced: 'input' (the inet input hook, and forward with
   * `forward`); 'ingress' (one netdev ingress chain per device of `devices`, before
   * routing and conntrack; the inet table keeps its sets as the record, without
   * chains); 'both'. Undefined: 'input', and a netdev table found at start() (made by
   * a daemon that enforces at ingress) is written beside the inet table, never
   * reshaped or removed; 'input' given explicitly removes it.
   */
  enforce?: Enforce
  /** With enforce 'ingress' or 'both': the capture interfaces, one ingress chain each. */
  devices?: readonly string[]
  /**
   * Told when a device's ingress chain cannot be made (a kernel before 6.16 refuses
   * a chain for a device that does not exist, and deletes it with its device), and
   * again when it is back. Default: nothing.
   */
  warn?: (message: string) => void
  /** Keep the interval sets of prefix bans (prefix4/6) and their rules: blockPrefixes(). Default false. */
  prefixes?: boolean
  /** Base chain priority; default -10 (filter - 10): before the distribution's filter chains. */
  priority?: number
  /** Run nothing; results carry the script that would have run. */
  dryRun?: boolean
  /** Elements per statement (all statements still go in one transaction). Default 4096. */
  chunk?: number
  /**
   * Migration of the old `block4`/`block6` sets: an element whose timeout is at most
   * this is moved into the spoofable set, any other into the verified set. Default
   * 5 min (the spoofable default). Their fleet bans cannot be told apart and become local.
   */
  legacySpoofableTtlMs?: number
  /**
   * Runs `nft -j monitor destroy` for watch() (wrap it with netnsStream to follow a
   * namespace's ruleset). Without it, watch() is unavailable and the daemon relies on
   * its timer.
   */
  monitor?: StreamFn
}

/** One set as nft lists it. */
export interface NftSetState {
  type: string
  flags: string[]
  elements: ActiveBlockEntry[]
  /**
   * Every element as text nft takes back (a canonical address, or a network's CIDR),
   * with its time left and, for a fleet ban, its comment as fleetComment() writes it:
   * what the netdev mirror copies.
   */
  items: Array<{ key: string; expiresInMs?: number; comment?: string }>
  /** False when read with `-t` (terse): the elements were not asked for. */
  withElements: boolean
}

/** What the kernel holds under `inet portanoia`, as far as this responder cares. */
export interface NftTableState {
  sets: Map<string, NftSetState>
  chains: Map<string, { type?: string; hook?: string; prio?: number; policy?: string }>
  /** Per chain, one signature per rule (see ruleSignature). */
  rules: Map<string, string[]>
}

interface SetSpec {
  name: string
  family: 4 | 6
  evidence: Evidence
  type: string
}

const SET_SPECS: readonly SetSpec[] = EVIDENCE.flatMap((evidence) =>
  ([4, 6] as const).map((family) => ({ name: NFT_SETS[evidence][family], family, evidence, type: family === 4 ? 'ipv4_addr' : 'ipv6_addr' })),
)
const SPEC_BY_NAME: ReadonlyMap<string, SetSpec> = new Map(SET_SPECS.map((s) => [s.name, s]))
const EXPECTED_RULES = SET_SPECS.map((s) => `${s.family === 4 ? 'ip' : 'ip6'}.saddr==@${s.name} drop`)
const PREFIX_SPECS = ([4, 6] as const).map((family) => ({ name: NFT_PREFIX_SETS[family], family, type: family === 4 ? 'ipv4_addr' : 'ipv6_addr' }))
const PREFIX_RULES = PREFIX_SPECS.map((s) => `${s.family === 4 ? 'ip' : 'ip6'}.saddr==@${s.name} drop`)
/** The drop rule of a set, as written. */
function dropRule(s: { family: 4 | 6; name: string }): string {
  return `${s.family === 4 ? 'ip' : 'ip6'} saddr @${s.name} counter drop`
}
/** A prefix set of the expected type, able to hold intervals with timeouts. */
function prefixSetOk(have: NftSetState, spec: { type: string }): boolean {
  return have.type === spec.type && have.flags.includes('interval') && have.flags.includes('timeout')
}
// nft's "No such file or directory": the table, set or element is not there.
const MISSING = /No such file or directory/
// nft's "File exists": `create element` met an element that is there.
const EXISTS = /File exists/
// A kernel element counts as "as long" when it outlives the request by this much less.
const SLACK_MS = 1000

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined
}

/** One element of `nft -j` output: a bare value, or { elem: { val, timeout, expires, comment } } (seconds). */
function parseElement(raw: unknown, family: 4 | 6, evidence: Evidence | undefined): ActiveBlockEntry | null {
  let val: unknown = raw
  let timeout: number | undefined
  let expires: number | undefined
  let comment: string | undefined
  if (isRecord(raw) && isRecord(raw.elem)) {
    val = raw.elem.val
    timeout = num(raw.elem.timeout)
    expires = num(raw.elem.expires)
    if (typeof raw.elem.comment === 'string') comment = raw.elem.comment
  }
  // Prefixes and ranges come as objects: not something this table ever holds.
  if (typeof val !== 'string') return null
  const canonical = normalizeAddress(val)
  if (canonical === null || parseAddress(canonical)?.family !== family) return null
  const e: ActiveBlockEntry = { address: canonical, family }
  // nft writes seconds; a timeout of 0 means none.
  if (timeout !== undefined && timeout > 0) e.timeoutMs = timeout * 1000
  if (expires !== undefined && e.timeoutMs !== undefined) e.expiresInMs = expires * 1000
  if (evidence !== undefined) e.evidence = evidence
  if (evidence === 'fleet' && comment !== undefined) {
    const tag = parseFleetComment(comment)
    if (tag !== null) e.fleet = tag
  }
  return e
}

/** One element as mirror text (address or canonical network), or null for anything else (a range, garbage). */
function parseItem(raw: unknown): NftSetState['items'][number] | null {
  let val: unknown = raw
  let expires: number | undefined
  let comment: string | undefined
  if (isRecord(raw) && isRecord(raw.elem)) {
    val = raw.elem.val
    expires = num(raw.elem.expires)
    if (typeof raw.elem.comment === 'string') comment = raw.elem.comment
  }
  let key: string | null = null
  if (typeof val === 'string') key = normalizeAddress(val)
  else if (isRecord(val) && isRecord(val.prefix) && typeof val.prefix.addr === 'string' && typeof val.prefix.len === 'number') {
    try {
      key = formatCidr(parseCidr(`${val.prefix.addr}/${val.prefix.len}`))
    } catch {
      key = null
    }
  }
  if (key === null) return null
  const item: NftSetState['items'][number] = { key }
  if (expires !== undefined) item.expiresInMs = expires * 1000
  const tag = comment === undefined ? null : parseFleetComment(comment)
  if (tag !== null) item.comment = fleetComment(tag)
  return item
}

/** 'ip.saddr==@verified4 drop' for `ip saddr @verified4 counter drop`; counters are ignored. */
export function ruleSignature(expr: unknown): string {
  if (!Array.isArray(expr)) return '?'
  const parts: string[] = []
  for (const stmt of expr) {
    if (!isRecord(stmt)) return '?'
    const [key] = Object.keys(stmt)
    if (key === 'counter') continue
    if (key === 'match' && isRecord(stmt.match)) {
      const m = stmt.match
      const payload = isRecord(m.left) && isRecord(m.left.payload) ? m.left.payload : null
      const op = m.op === 'in' ? '==' : m.op
      if (payload === null || typeof m.right !== 'string') return '?'
      parts.push(`${String(payload.protocol)}.${String(payload.field)}${String(op)}${m.right}`)
      continue
    }
    if (key === 'drop' || key === 'accept') {
      parts.push(key)
      continue
    }
    return '?'
  }
  return parts.join(' ')
}

/**
 * Parses `nft -j [-t] list table inet portanoia` (or `list set`; with `family`
 * 'netdev', the early-drop table). Throws on output that is not nft JSON.
 */
export function parseNftTable(json: string, withElements = true, family: 'inet' | 'netdev' = 'inet'): NftTableState {
  const doc: unknown = JSON.parse(json)
  if (!isRecord(doc) || !Array.isArray(doc.nftables)) throw new Error('not nft JSON output (no "nftables" array)')
  const state: NftTableState = { sets: new Map(), chains: new Map(), rules: new Map() }
  for (const item of doc.nftables) {
    if (!isRecord(item)) continue
    const mine = (o: Record<string, unknown>): boolean => o.family === family && o.table === 'portanoia'
    if (isRecord(item.set) && mine(item.set)) {
      const s = item.set
      const name = String(s.name)
      const flags = Array.isArray(s.flags) ? s.flags.filter((f): f is string => typeof f === 'string') : []
      const type = typeof s.type === 'string' ? s.type : JSON.stringify(s.type)
      const spec = SPEC_BY_NAME.get(name)
      const setFamily = spec?.family ?? NFT_LEGACY_SETS[name]
      const elements: ActiveBlockEntry[] = []
      const items: NftSetState['items'] = []
      for (const raw of Array.isArray(s.elem) ? s.elem : []) {
        const e = setFamily === undefined ? null : parseElement(raw, setFamily, spec?.evidence)
        if (e !== null) elements.push(e)
        const i = parseItem(raw)
        if (i !== null) items.push(i)
      }
      state.sets.set(name, { type, flags, elements, items, withElements })
    } else if (isRecord(item.chain) && mine(item.chain)) {
      const c = item.chain
      const chain: { type?: string; hook?: string; prio?: number; policy?: string } = {}
      if (typeof c.type === 'string') chain.type = c.type
      if (typeof c.hook === 'string') chain.hook = c.hook
      if (typeof c.prio === 'number') chain.prio = c.prio
      if (typeof c.policy === 'string') chain.policy = c.policy
      state.chains.set(String(c.name), chain)
    } else if (isRecord(item.rule) && mine(item.rule)) {
      const chain = String(item.rule.chain)
      const list = state.rules.get(chain) ?? []
      list.push(ruleSignature(item.rule.expr))
      state.rules.set(chain, list)
    }
  }
  return state
}

/** Every element of portanoia's sets (legacy ones included, without an evidence). */
export function stateBlocks(state: NftTableState): ActiveBlockEntry[] {
  const out: ActiveBlockEntry[] = []
  for (const spec of SET_SPECS) out.push(...(state.sets.get(spec.name)?.elements ?? []))
  for (const name of Object.keys(NFT_LEGACY_SETS)) out.push(...(state.sets.get(name)?.elements ?? []))
  return out
}

/**
 * Whole seconds as an nft time string ('1d2h3m4s'). nft refuses a seconds field of
 * more than eight digits ('100000000s': "value too large") yet takes the same span
 * in days, so only TTLs past that are written in units.
 */
export function nftTimeout(seconds: number): string {
  if (seconds <= 99_999_999) return `${seconds}s`
  let left = seconds
  let out = ''
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60]] as const) {
    if (left >= size) {
      out += `${Math.floor(left / size)}${unit}`
      left %= size
    }
  }
  return left > 0 ? `${out}${left}s` : out
}

function chunked<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

function setOf(b: { family: 4 | 6; evidence: Evidence }): string {
  return NFT_SETS[b.evidence][b.family]
}

/** The element text of a block: address, timeout, comment. */
function elementText(b: ValidBlock): string {
  const comment = b.fleet === undefined ? '' : ` comment "${fleetComment(b.fleet)}"`
  return `${b.address} timeout ${nftTimeout(b.ttlS)}${comment}`
}

/** Parses one line of `nft -j monitor destroy` into what it means for portanoia's table. */
export function parseMonitorLine(line: string): FirewallChange | null {
  let doc: unknown
  try {
    doc = JSON.parse(line)
  } catch {
    // A warning ("W: Received event for an unknown set", after `flush set`): the
    // monitor lost track of something; only a full look can tell what.
    return line.trim() === '' ? null : { kind: 'unknown', detail: line.slice(0, 200) }
  }
  if (!isRecord(doc) || !isRecord(doc.delete)) return null
  const del = doc.delete
  const [what] = Object.keys(del)
  const obj = what === undefined ? undefined : del[what]
  if (!isRecord(obj)) return null
  if (obj.family === 'netdev') {
    // The early-drop mirror: any deletion there is compared against the record.
    if ((what === 'table' ? obj.name : obj.table) !== 'portanoia') return null
    if (what === 'element') return { kind: 'unknown', detail: `netdev elements of ${String(obj.name)} deleted` }
    return { kind: 'structure', detail: `netdev ${what ?? 'object'} ${String(obj.name ?? obj.chain ?? '')} deleted`.trim() }
  }
  if (obj.family !== 'inet') return null
  if (what === 'table') return obj.name === 'portanoia' ? { kind: 'structure', detail: 'table deleted' } : null
  if (obj.table !== 'portanoia') return null
  if (what === 'element') {
    const spec = SPEC_BY_NAME.get(String(obj.name))
    if (spec === undefined) return null
    const addresses: string[] = []
    const list = isRecord(obj.elem) && Array.isArray(obj.elem.set) ? obj.elem.set : []
    for (const raw of list) {
      const e = parseElement(raw, spec.family, spec.evidence)
      if (e !== null) addresses.push(e.address)
    }
    return { kind: 'elements', evidence: spec.evidence, addresses }
  }
  return { kind: 'structure', detail: `${what ?? 'object'} ${String(obj.name ?? obj.chain ?? '')} deleted`.trim() }
}

/** Why a prefix ban request cannot reach nft, or null. */
function checkPrefix(r: PrefixRequest): string | null {
  let cidr
  try {
    cidr = parseCidr(r.prefix)
  } catch (e) {
    return (e as Error).message
  }
  if (formatCidr(cidr) !== r.prefix) return `${JSON.stringify(r.prefix)} is not in canonical form (${formatCidr(cidr)})`
  if (cidr.family !== r.family) return `${r.prefix} is not an IPv${r.family} network`
  const [min, max] = PREFIX_LIMITS[cidr.family]
  if (cidr.prefix < min || cidr.prefix > max) return `${r.prefix}: a prefix ban is /${min} to /${max}`
  if (!Number.isFinite(r.ttlMs) || r.ttlMs < 1000 || r.ttlMs > MAX_TTL_SECONDS * 1000) return `ttl ${String(r.ttlMs)} ms is not 1 s to ${MAX_TTL_SECONDS} s`
  return null
}

export class NftablesResponder implements Responder {
  readonly name = 'nftables'
  readonly maxTtlMs = NFT_MAX_TTL_MS
  readonly #run: RunFn
  readonly #nft: string
  readonly #forward: boolean
  readonly #enforce: Enforce | undefined
  readonly #devices: readonly string[]
  readonly #warn: (message: string) => void
  /** Writes go to the netdev table too: enforce says so, or start() found one (enforce undefined). */
  #mirrorOn: boolean
  /** Devices whose ingress chain the kernel refused (absent), told once through warn. */
  readonly #absent = new Set<string>()
  readonly #prefixes: boolean
  readonly #priority: number
  readonly #dryRun: boolean
  readonly #chunk: number
  readonly #legacySpoofableMs: number
  readonly #monitor: StreamFn | undefined
  #lastSetupScript = ''
  #startReport: { problems: string[]; migrated: string[] } | null = null
  #fresh = false
  readonly #calls = new CallQueue()
  readonly #repairs = new RepairLog()
  #counts = { applied: 0, failed: 0, unblocked: 0, batches: 0, repairs: 0, kept: 0, extended: 0, mirrored: 0 }

  constructor(options: NftablesOptions = {}) {
    this.#run = options.run ?? defaultRun
    this.#nft = options.nft ?? 'nft'
    this.#forward = options.forward === true
    this.#enforce = options.enforce
    this.#devices = [...(options.devices ?? [])]
    this.#warn = options.warn ?? (() => {})
    this.#mirrorOn = usesIngress(this.#enforce)
    if (this.#enforce !== undefined && !(ENFORCE as readonly string[]).includes(this.#enforce)) {
      throw new PortanoiaError('PORTANOIA_BAD_OPTION', `nftables enforce ${JSON.stringify(this.#enforce)} is not one of ${ENFORCE.join(', ')}`, { hint: 'input (default), ingress or both' })
    }
    if (usesIngress(this.#enforce)) {
      if (this.#devices.length === 0) throw new PortanoiaError('PORTANOIA_BAD_OPTION', `nftables enforce ${this.#enforce ?? ''} needs the interfaces to bind the ingress chains to`, { hint: 'name the capture interface (--interface eth0)' })
      for (const d of this.#devices) {
        const bad = deviceProblem(d)
        if (bad !== null) throw new PortanoiaError('PORTANOIA_BAD_OPTION', `ingress device: ${bad}`, { hint: '`ip link` lists the interfaces' })
      }
      if (new Set(this.#devices).size !== this.#devices.length) throw new PortanoiaError('PORTANOIA_BAD_OPTION', 'ingress devices: an interface is named twice', { hint: 'name each once' })
    }
    this.#prefixes = options.prefixes === true
    this.#priority = options.priority ?? -10
    this.#dryRun = options.dryRun === true
    this.#chunk = options.chunk ?? 4096
    this.#legacySpoofableMs = options.legacySpoofableTtlMs ?? 5 * 60_000
    this.#monitor = options.monitor
    if (!Number.isInteger(this.#priority) || Math.abs(this.#priority) > 2 ** 31 - 1) {
      throw new PortanoiaError('PORTANOIA_BAD_OPTION', 'nftables priority must be an integer', {
        hint: 'use e.g. -10 (before filter) or 0',
      })
    }
    if (!Number.isInteger(this.#chunk) || this.#chunk < 1) throw new PortanoiaError('PORTANOIA_BAD_OPTION', `nftables chunk must be a positive integer, got ${String(this.#chunk)}`, { hint: 'e.g. chunk: 4096' })
  }

  /** The script start() ran (or, in dry-run, would run on a host without the table). */
  get lastSetupScript(): string {
    return this.#lastSetupScript
  }

  /** What start() found wrong in an existing table, and the addresses it migrated; null before start() or without a table. */
  get startReport(): { problems: string[]; migrated: string[] } | null {
    return this.#startReport
  }

  /** The paths the drop rules cover: an ingress chain drops before routing decides either. */
  get paths(): readonly BlockPath[] {
    return this.#forward || usesIngress(this.#enforce) ? ['input', 'forward'] : ['input']
  }

  /** The tables whose sets every write goes to: the inet record, and the netdev mirror when in use. */
  #tables(): string[] {
    return this.#mirrorOn ? [NFT_TABLE, NFT_INGRESS_TABLE] : [NFT_TABLE]
  }

  /** What the netdev table must hold (with prefix sets when the inet table keeps them). */
  #ingressShape(prefixes: boolean): IngressShape {
    const sets = [...SET_SPECS, ...(prefixes ? PREFIX_SPECS : [])]
    return {
      sets: sets.map((s) => ({ name: s.name, type: s.type, interval: PREFIX_SPECS.some((p) => p.name === s.name), rule: dropRule(s), sig: `${s.family === 4 ? 'ip' : 'ip6'}.saddr==@${s.name} drop` })),
      devices: this.#devices,
      priority: this.#priority,
    }
  }

  /** The netdev table's setup as one script (dry-run, tests); start() and repair() apply it in parts. */
  ingressSetupScript(ingress: NftTableState | null = null, prefixes = this.#prefixes): string {
    if (!usesIngress(this.#enforce)) return ''
    const { main, chains } = ingressSetup(ingress, this.#ingressShape(prefixes))
    return `${[...main, ...chains.flatMap((c) => c.lines)].join('\n')}\n`
  }

  /** start() found no table: the kernel holds none of portanoia's blocks (a reboot). */
  get fresh(): boolean {
    return this.#fresh
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#calls.run(fn)
  }

  /** Where an element of the old block4/block6 sets belongs: spoofable when its timeout was a spoofable one. */
  #legacyEvidence(e: ActiveBlockEntry): 'verified' | 'spoofable' {
    return e.timeoutMs !== undefined && e.timeoutMs <= this.#legacySpoofableMs ? 'spoofable' : 'verified'
  }

  /**
   * What is missing or wrong in `state` (null: no table): 'table', 'set NAME',
   * 'set NAME (type)', 'legacy set NAME', 'chain NAME', 'rules NAME'. Empty when the
   * table has the expected shape.
   */
  problems(state: NftTableState | null): string[] {
    if (state === null) return ['table']
    const out: string[] = []
    for (const spec of SET_SPECS) {
      const have = state.sets.get(spec.name)
      if (have === undefined) out.push(`set ${spec.name}`)
      else if (have.type !== spec.type || !have.flags.includes('timeout')) out.push(`set ${spec.name} (type)`)
    }
    const prefixes = this.#wantsPrefixes(state)
    if (prefixes) {
      for (const spec of PREFIX_SPECS) {
        const have = state.sets.get(spec.name)
        if (have === undefined) out.push(`set ${spec.name}`)
        else if (!prefixSetOk(have, spec)) out.push(`set ${spec.name} (type)`)
      }
    }
    for (const name of Object.keys(NFT_LEGACY_SETS)) if (state.sets.has(name)) out.push(`legacy set ${name}`)
    const expected = this.#expectedRules(prefixes)
    for (const c of this.#chains()) {
      const have = state.chains.get(c.name)
      if (have === undefined) {
        out.push(`chain ${c.name}`)
        continue
      }
      const defOk = have.type === 'filter' && have.hook === c.hook && have.prio === this.#priority && have.policy === 'accept'
      if (!defOk) out.push(`chain ${c.name}`)
      const rules = state.rules.get(c.name) ?? []
      if (defOk && !(rules.length === expected.length && rules.every((r, i) => r === expected[i]))) out.push(`rules ${c.name}`)
    }
    for (const name of ['input', 'forward']) if (state.chains.has(name) && !this.#chains().some((c) => c.name === name)) out.push(`chain ${name} (not wanted)`)
    return out
  }

  /**
   * Whether the table keeps prefix sets: with the option, and also without it while
   * a table made with it holds them (their bans stay enforced until they run out,
   * as single blocks do; a command of the CLI never strips their rules).
   */
  #wantsPrefixes(state: NftTableState | null): boolean {
    return this.#prefixes || (state !== null && PREFIX_SPECS.some((spec) => state.sets.has(spec.name)))
  }

  #expectedRules(prefixes: boolean): readonly string[] {
    return prefixes ? [...EXPECTED_RULES, ...PREFIX_RULES] : EXPECTED_RULES
  }

  #chains(): Array<{ name: string; hook: string }> {
    // Enforced at ingress only, the inet table is the record: sets, no chains.
    if (this.#enforce === 'ingress') return []
    const chains = [{ name: 'input', hook: 'input' }]
    if (this.#forward) chains.push({ name: 'forward', hook: 'forward' })
    return chains
  }

  /**
   * The transaction that brings the table to the expected shape. With `state` null
   * the table is created; otherwise only what differs is repaired: a chain with the
   * wrong hook or priority is recreated, a chain whose rules differ is flushed and
   * refilled (a chain is ours to rewrite, a set is not), a set of the wrong type is
   * recreated with the elements that fit it, and the legacy sets' elements move into
   * the per-origin sets with their time left (their rules go first, in the same
   * transaction, so nothing is unprotected in between). `state` must hold elements
   * for any set that is recreated or migrated.
   */
  setupScript(state: NftTableState | null = null): string {
    const lines = [`add table ${NFT_TABLE}`]
    const chains = this.#chains()
    const badSets = SET_SPECS.filter((spec) => {
      const have = state?.sets.get(spec.name)
      return have !== undefined && (have.type !== spec.type || !have.flags.includes('timeout'))
    })
    // A prefix set of the wrong shape is recreated empty: the daemon puts its bans back.
    const prefixes = this.#wantsPrefixes(state)
    const badPrefixSets = prefixes
      ? PREFIX_SPECS.filter((spec) => {
          const have = state?.sets.get(spec.name)
          return have !== undefined && !prefixSetOk(have, spec)
        })
      : []
    const expected = this.#expectedRules(prefixes)
    const legacy = Object.keys(NFT_LEGACY_SETS).filter((name) => state?.sets.has(name) === true)
    const refill = new Set<string>()
    // Rules referencing a set must go before the set can be deleted (same transaction).
    const emptyChain = (name: string, recreate: boolean): void => {
      lines.push(`flush chain ${NFT_TABLE} ${name}`)
      if (recreate) lines.push(`delete chain ${NFT_TABLE} ${name}`)
    }
    if (state !== null) {
      for (const [name, have] of state.chains) {
        if (name !== 'input' && name !== 'forward') continue
        const want = chains.find((c) => c.name === name)
        if (want === undefined) {
          // forward (or input, before enforce ingress) was enabled by an earlier run and is not wanted now.
          emptyChain(name, true)
          continue
        }
        const defOk = have.type === 'filter' && have.hook === want.hook && have.prio === this.#priority && have.policy === 'accept'
        const rules = state.rules.get(name) ?? []
        const rulesOk = rules.length === expected.length && rules.every((r, i) => r === expected[i])
        if (!defOk || !rulesOk || badSets.length > 0 || badPrefixSets.length > 0 || legacy.length > 0) {
          emptyChain(name, !defOk)
          refill.add(name)
        }
      }
    }
    for (const spec of badSets) lines.push(`delete set ${NFT_TABLE} ${spec.name}`)
    for (const spec of badPrefixSets) lines.push(`delete set ${NFT_TABLE} ${spec.name}`)
    for (const name of legacy) lines.push(`delete set ${NFT_TABLE} ${name}`)
    for (const spec of SET_SPECS) lines.push(`add set ${NFT_TABLE} ${spec.name} { type ${spec.type}; flags timeout; }`)
    if (prefixes) for (const spec of PREFIX_SPECS) lines.push(`add set ${NFT_TABLE} ${spec.name} { type ${spec.type}; flags interval,timeout; }`)
    // Elements kept through a recreation or a migration, with the time they have left.
    const keep = new Map<string, string[]>()
    const put = (set: string, e: ActiveBlockEntry): void => {
      const left = e.expiresInMs !== undefined ? ` timeout ${nftTimeout(Math.max(1, Math.ceil(e.expiresInMs / 1000)))}` : ''
      const comment = e.fleet !== undefined ? ` comment "${fleetComment(e.fleet)}"` : ''
      let list = keep.get(set)
      if (list === undefined) keep.set(set, (list = []))
      list.push(`${e.address}${left}${comment}`)
    }
    for (const spec of badSets) {
      for (const e of state?.sets.get(spec.name)?.elements ?? []) if (e.family === spec.family) put(spec.name, e)
    }
    for (const name of legacy) {
      for (const e of state?.sets.get(name)?.elements ?? []) put(NFT_SETS[this.#legacyEvidence(e)][e.family], e)
    }
    for (const [set, parts] of keep) for (const c of chunked(parts, this.#chunk)) lines.push(`add element ${NFT_TABLE} ${set} { ${c.join(', ')} }`)
    for (const c of chains) {
      lines.push(`add chain ${NFT_TABLE} ${c.name} { type filter hook ${c.hook} priority ${this.#priority}; policy accept; }`)
      if (state === null || !state.chains.has(c.name) || refill.has(c.name)) {
        for (const spec of SET_SPECS) lines.push(`add rule ${NFT_TABLE} ${c.name} ${spec.family === 4 ? 'ip' : 'ip6'} saddr @${spec.name} counter drop`)
        if (prefixes) for (const spec of PREFIX_SPECS) lines.push(`add rule ${NFT_TABLE} ${c.name} ${spec.family === 4 ? 'ip' : 'ip6'} saddr @${spec.name} counter drop`)
      }
    }
    return `${lines.join('\n')}\n`
  }

  /** `create element` statements for a batch: the first attempt, which cannot touch an existing element. */
  createScript(blocks: readonly ValidBlock[]): string {
    const lines: string[] = []
    for (const table of this.#tables()) {
      for (const spec of SET_SPECS) {
        const parts = blocks.filter((b) => setOf(b) === spec.name).map((b) => elementText(b))
        for (const c of chunked(parts, this.#chunk)) lines.push(`create element ${table} ${spec.name} { ${c.join(', ')} }`)
      }
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`
  }

  /** Deletes each address from its set, in the inet table or (`table`) the netdev one. */
  unblockScript(addresses: ReadonlyArray<{ address: string; set: string; table?: string }>): string {
    const lines: string[] = []
    const sets = [...SET_SPECS.map((s) => s.name), ...Object.keys(NFT_LEGACY_SETS)]
    for (const table of [NFT_TABLE, NFT_INGRESS_TABLE]) {
      for (const set of sets) {
        const parts = addresses.filter((a) => a.set === set && (a.table ?? NFT_TABLE) === table).map((a) => a.address)
        for (const c of chunked(parts, this.#chunk)) lines.push(`delete element ${table} ${set} { ${c.join(', ')} }`)
      }
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`
  }

  /**
   * Reads the table; null when it does not exist. `terse` leaves the elements out
   * (`nft -t`): the shape of a table holding 100,000 elements costs no more than
   * an empty one's. Throws a PortanoiaError otherwise.
   */
  async readState(terse = false): Promise<NftTableState | null> {
    const r = await this.#run(this.#nft, ['-j', ...(terse ? ['-t'] : []), 'list', 'table', ...NFT_TABLE.split(' ')])
    if (r.code !== 0) {
      if (MISSING.test(r.stderr)) return null
      throw toolError('PORTANOIA_NFT_FAILED', 'nft', `reading table ${NFT_TABLE}`, r)
    }
    return this.#parse(r.stdout, !terse)
  }

  /** Reads the netdev table (the early-drop mirror) like readState(); null when it does not exist. */
  async readIngress(terse = false): Promise<NftTableState | null> {
    const r = await this.#run(this.#nft, ['-j', ...(terse ? ['-t'] : []), 'list', 'table', ...NFT_INGRESS_TABLE.split(' ')])
    if (r.code !== 0) {
      if (MISSING.test(r.stderr)) return null
      throw toolError('PORTANOIA_NFT_FAILED', 'nft', `reading table ${NFT_INGRESS_TABLE}`, r)
    }
    return this.#parse(r.stdout, !terse, 'netdev')
  }

  #parse(json: string, withElements: boolean, family: 'inet' | 'netdev' = 'inet'): NftTableState {
    try {
      return parseNftTable(json, withElements, family)
    } catch (e) {
      throw new PortanoiaError('PORTANOIA_NFT_FAILED', `unreadable output of nft -j list: ${(e as Error).message}`, {
        hint: 'nftables 0.9.3 or later is needed for JSON output',
        cause: e,
      })
    }
  }

  /** Elements of one set, by address; null when the set (or the table) is gone. */
  async #readSet(name: string): Promise<Map<string, ActiveBlockEntry> | null> {
    const r = await this.#run(this.#nft, ['-j', 'list', 'set', ...NFT_TABLE.split(' '), name])
    if (r.code !== 0) {
      if (MISSING.test(r.stderr)) return null
      throw toolError('PORTANOIA_NFT_FAILED', 'nft', `reading set ${name}`, r)
    }
    const set = this.#parse(r.stdout, true).sets.get(name)
    return new Map((set?.elements ?? []).map((e) => [e.address, e]))
  }

  /**
   * A write that finds the table (or a set) gone rebuilds the shape and is tried once
   * more; `repaired` names what was rebuilt. A failed rebuild leaves the first failure
   * for the caller to report.
   */
  async #applyRepairing(script: string): Promise<{ r: { ok: boolean; stderr: string; code: number }; repaired: string[] | undefined }> {
    let repaired: string[] | undefined
    let r = await this.#apply(script)
    if (!r.ok && MISSING.test(r.stderr)) {
      try {
        repaired = await this.#repairShape()
        this.#repairs.note(repaired)
        r = await this.#apply(script)
      } catch {
        // the caller reports the original failure
      }
    }
    return { r, repaired }
  }

  async #apply(script: string): Promise<{ ok: boolean; stderr: string; code: number }> {
    this.#counts.batches++
    const r = await this.#run(this.#nft, ['-f', '-'], script)
    return { ok: r.code === 0, stderr: r.stderr, code: r.code }
  }

  async start(): Promise<ActiveBlockEntry[]> {
    if (this.#dryRun) {
      this.#lastSetupScript = this.setupScript(null) + this.ingressSetupScript(null)
      return []
    }
    return await this.#exclusive(async () => {
      const state = await this.readState()
      this.#fresh = state === null
      const script = this.setupScript(state)
      this.#lastSetupScript = script
      const r = await this.#apply(script)
      if (!r.ok) throw toolError('PORTANOIA_NFT_FAILED', 'nft', `setting up table ${NFT_TABLE}`, r)
      const ingress = await this.readIngress(true)
      if (usesIngress(this.#enforce)) {
        this.#lastSetupScript += this.ingressSetupScript(ingress, this.#wantsPrefixes(state))
        await this.#setupIngress(ingress, this.#wantsPrefixes(state))
        // The record may hold blocks already (a restart, enforce switched on): copy them.
        await this.#mirror()
      } else if (ingress !== null && this.#enforce === 'input') {
        // Enforced at ingress before, not now: the inet chains drop every block the netdev table held.
        const d = await this.#apply(`delete table ${NFT_INGRESS_TABLE}\n`)
        if (!d.ok && !MISSING.test(d.stderr)) throw toolError('PORTANOIA_NFT_FAILED', 'nft', `removing table ${NFT_INGRESS_TABLE} (enforce input)`, d)
      } else if (ingress !== null) {
        this.#mirrorOn = true
      }
      if (state !== null) {
        const migrated = Object.keys(NFT_LEGACY_SETS).flatMap((name) => (state.sets.get(name)?.elements ?? []).map((e) => e.address))
        this.#startReport = { problems: this.problems(state), migrated }
      }
      // Migrated elements now live in the per-origin sets setupScript() chose for them.
      return state === null ? [] : stateBlocks(state).map((e) => (e.evidence === undefined ? { ...e, evidence: this.#legacyEvidence(e) } : e))
    })
  }

  /**
   * Puts back whatever of the table's shape is missing (the table, a set, a chain,
   * a rule) and migrates legacy sets; returns what was wrong ([] when nothing was).
   * Recreated sets are empty: putting their blocks back is the caller's (it knows
   * what should be there). Rejects with a PortanoiaError when nft fails.
   */
  async repair(): Promise<string[]> {
    if (this.#dryRun) return []
    return await this.#exclusive(async () => this.#repairs.take(await this.#repairShape()))
  }

  /**
   * repair() without the lock: a terse read, and the elements only when a set must
   * keep them. The netdev table (enforce ingress or both) is checked after the inet
   * one and refilled from it; a device chain the kernel refuses (absent device) is
   * not reported as repaired (it is told once through `warn`, and tried again on the
   * next check).
   */
  async #repairShape(): Promise<string[]> {
    let state = await this.readState(true)
    const problems = this.problems(state)
    if (problems.length > 0) {
      // Recreating a set of the wrong type or migrating keeps elements: read them.
      if (problems.some((p) => p.endsWith('(type)') || p.startsWith('legacy'))) state = await this.readState()
      const r = await this.#apply(this.setupScript(state))
      if (!r.ok) throw toolError('PORTANOIA_NFT_FAILED', 'nft', `repairing table ${NFT_TABLE}`, r)
      this.#counts.repairs++
    }
    if (!usesIngress(this.#enforce)) return problems
    const ingress = await this.readIngress(true)
    const wrong = ingressProblems(ingress, this.#ingressShape(this.#wantsPrefixes(state)))
    // A chain the kernel already refused for an absent device is tried again, quietly.
    const news = wrong.filter((p) => !this.#absent.has(p.replace(/^netdev chain ingress_/, '')))
    if (wrong.length === 0) return problems
    await this.#setupIngress(ingress, this.#wantsPrefixes(state))
    if (news.length === 0) return problems
    this.#counts.repairs++
    await this.#mirror()
    return [...problems, ...news.filter((p) => !this.#absent.has(p.replace(/^netdev chain ingress_/, '')))]
  }

  /**
   * Brings the netdev table to its shape: table, sets and rewrites in one
   * transaction, then the missing device chains in one more; when that meets an
   * absent device (ENOENT, kernels before 6.16), each chain alone, so one absent
   * device keeps no other from its chain.
   */
  async #setupIngress(ingress: NftTableState | null, prefixes: boolean): Promise<void> {
    const { main, chains } = ingressSetup(ingress, this.#ingressShape(prefixes))
    const r = await this.#apply(`${main.join('\n')}\n`)
    if (!r.ok) throw toolError('PORTANOIA_NFT_FAILED', 'nft', `setting up table ${NFT_INGRESS_TABLE}`, r)
    if (chains.length === 0) return
    const all = await this.#apply(`${chains.flatMap((c) => c.lines).join('\n')}\n`)
    const present = (device: string): void => {
      if (this.#absent.delete(device)) this.#warn(`ingress: chain ${NFT_INGRESS_TABLE} ingress_${device} is back: blocks drop early on ${device} again`)
    }
    if (all.ok) {
      for (const c of chains) present(c.device)
      return
    }
    if (!MISSING.test(all.stderr)) throw toolError('PORTANOIA_NFT_FAILED', 'nft', `adding the ingress chains of ${NFT_INGRESS_TABLE}`, all)
    for (const c of chains) {
      const one = await this.#apply(`${c.lines.join('\n')}\n`)
      if (one.ok) present(c.device)
      else if (MISSING.test(one.stderr)) {
        if (!this.#absent.has(c.device)) {
          this.#absent.add(c.device)
          this.#warn(`ingress: no chain on ${c.device}: the kernel refused it (the interface does not exist?); packets arriving on it pass to the input hook${this.#enforce === 'both' ? ', where the inet chain drops them' : ' undropped'}. Tried again every check`)
        }
      } else throw toolError('PORTANOIA_NFT_FAILED', 'nft', `adding chain ingress_${c.device}`, one)
    }
  }

  /** Devices whose ingress chain the kernel refused (they did not exist); empty when all chains are in place. */
  get absentDevices(): string[] {
    return [...this.#absent]
  }

  /**
   * Brings the netdev sets in step with the inet table (mirrorDiff): what they lack
   * is added with its time left, what they hold shorter is grown, what the inet
   * table does not hold is removed. The firewall sync calls it on each full
   * comparison; returns the elements changed ([] when none, or without the mirror).
   */
  async mirror(): Promise<string[]> {
    if (this.#dryRun || !this.#mirrorOn) return []
    return await this.#exclusive(async () => await this.#mirror())
  }

  async #mirror(): Promise<string[]> {
    if (!this.#mirrorOn) return []
    for (let attempt = 0; ; attempt++) {
      const record = await this.readState()
      const mirror = await this.readIngress()
      if (record === null || mirror === null) return []
      const sets = [...SET_SPECS.map((x) => x.name), ...(this.#wantsPrefixes(record) ? PREFIX_SPECS.map((x) => x.name) : [])]
      const diff = mirrorDiff(record, mirror, sets)
      const script = this.mirrorScript(diff)
      if (script === '') return []
      const r = await this.#apply(script)
      if (r.ok) {
        const changed = [...diff.add, ...diff.grow, ...diff.remove].map((e) => e.key)
        this.#counts.mirrored += changed.length
        return changed
      }
      // An element that ran out between the read and the delete: read again, once.
      if (!MISSING.test(r.stderr) || attempt === 1) throw toolError('PORTANOIA_NFT_FAILED', 'nft', `mirroring blocks into ${NFT_INGRESS_TABLE}`, r)
    }
  }

  /** The transaction that applies a mirrorDiff to the netdev table. */
  mirrorScript(diff: MirrorDiff): string {
    const t = NFT_INGRESS_TABLE
    const text = (e: MirrorDiff['add'][number]): string =>
      `${e.key}${e.expiresInMs === undefined ? '' : ` timeout ${nftTimeout(Math.max(1, Math.ceil(e.expiresInMs / 1000)))}`}${e.comment === undefined ? '' : ` comment "${e.comment}"`}`
    const lines: string[] = []
    const emit = (verb: string, items: ReadonlyArray<{ set: string; key: string }>, fmt: (e: never) => string): void => {
      const bySet = new Map<string, string[]>()
      for (const e of items) {
        let list = bySet.get(e.set)
        if (list === undefined) bySet.set(e.set, (list = []))
        list.push(fmt(e as never))
      }
      for (const [set, parts] of bySet) for (const c of chunked(parts, this.#chunk)) lines.push(`${verb} element ${t} ${set} { ${c.join(', ')} }`)
    }
    const key = (e: { key: string }): string => e.key
    emit('delete', diff.remove, key)
    emit('add', diff.add, text)
    // Growing: add (a no-op on an existing element), delete, add with the time left.
    emit('add', diff.grow, key)
    emit('delete', diff.grow, key)
    emit('add', diff.grow, text)
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`
  }

  /**
   * Adds a batch without ever shortening a block the kernel holds. Each request goes
   * to its origin's set (`evidence`, default verified; fleet bans carry their tag as
   * the element comment). When the table or a set is gone, the shape is repaired
   * first and the result says so (`repaired`), so the caller can put the rest back.
   */
  async block(requests: readonly BlockRequest[]): Promise<ResponderResult> {
    const { valid, failed } = checkBlocks(requests)
    this.#counts.failed += failed.length
    if (valid.length === 0) return result(this.name, { failed })
    const script = this.createScript(valid)
    const addresses = valid.map((b) => b.address)
    if (this.#dryRun) return result(this.name, { applied: addresses, failed, script, dryRun: true })
    return await this.#exclusive(async () => {
      const fail = (error: string, s: string): ResponderResult => {
        this.#counts.failed += addresses.length
        return result(this.name, { failed: [...failed, ...addresses.map((address) => ({ address, error }))], script: s })
      }
      const { r, repaired } = await this.#applyRepairing(script)
      if (!r.ok && EXISTS.test(r.stderr)) {
        try {
          return { ...(await this.#growOnly(valid, failed)), ...(repaired !== undefined && repaired.length > 0 && { repaired }) }
        } catch (e) {
          return fail((e as Error).message, script)
        }
      }
      if (!r.ok) return fail(`nft exited with ${r.code}: ${firstLine(r.stderr)} (${toolHint('nft', r.code, r.stderr)})`, script)
      this.#counts.applied += addresses.length
      const out = result(this.name, { applied: addresses, failed, script })
      if (repaired !== undefined && repaired.length > 0) out.repaired = repaired
      return out
    })
  }

  /**
   * The batch met existing elements: ask the kernel what each set holds and write
   * only what makes a block longer or new. Growing an element is add (a no-op on an
   * existing one), delete, add with the new timeout and comment, in one transaction:
   * an `add` alone keeps the old timeout on kernels before 6.10 and the old comment
   * on all.
   */
  async #growOnly(valid: readonly ValidBlock[], failed: ResponderResult['failed']): Promise<ResponderResult> {
    const bySet = new Map<string, ValidBlock[]>()
    for (const b of valid) {
      let list = bySet.get(setOf(b))
      if (list === undefined) bySet.set(setOf(b), (list = []))
      list.push(b)
    }
    const create: ValidBlock[] = []
    const grow: ValidBlock[] = []
    const kept: string[] = []
    for (const [set, blocks] of bySet) {
      const have = (await this.#readSet(set)) ?? new Map<string, ActiveBlockEntry>()
      for (const b of blocks) {
        const e = have.get(b.address)
        if (e === undefined) create.push(b)
        else if (e.expiresInMs === undefined || e.expiresInMs >= b.ttlS * 1000 - SLACK_MS) kept.push(b.address)
        else grow.push(b)
      }
    }
    const lines: string[] = []
    const emit = (verb: string, items: readonly ValidBlock[], text: (b: ValidBlock) => string): void => {
      for (const table of this.#tables()) {
        for (const spec of SET_SPECS) {
          const parts = items.filter((b) => setOf(b) === spec.name).map(text)
          for (const c of chunked(parts, this.#chunk)) lines.push(`${verb} element ${table} ${spec.name} { ${c.join(', ')} }`)
        }
      }
    }
    emit('add', create, (b) => elementText(b))
    emit('add', grow, (b) => b.address)
    emit('delete', grow, (b) => b.address)
    emit('add', grow, (b) => elementText(b))
    const script = lines.length === 0 ? '' : `${lines.join('\n')}\n`
    this.#counts.kept += kept.length
    if (script !== '') {
      const r = await this.#apply(script)
      if (!r.ok) {
        const error = `nft exited with ${r.code}: ${firstLine(r.stderr)} (${toolHint('nft', r.code, r.stderr)})`
        const writes = [...create, ...grow].map((b) => b.address)
        this.#counts.failed += writes.length
        return result(this.name, { applied: kept, failed: [...failed, ...writes.map((address) => ({ address, error }))], script, kept })
      }
    }
    const applied = valid.map((b) => b.address)
    this.#counts.applied += applied.length - kept.length
    this.#counts.extended += grow.length
    return result(this.name, { applied, failed, script, kept, ...(grow.length > 0 && { extended: grow.map((b) => b.address) }) })
  }

  /**
   * Blocks whole networks (prefix bans) in the interval sets, each for its TTL. Only
   * with the `prefixes` option. Every prefix is checked before it reaches a script:
   * canonical network text, of its family, within PREFIX_LIMITS. `add element` leaves
   * an element that is there as it is; a prefix overlapping another element of the
   * set fails the transaction (the daemon proposes one prefix length per family, so
   * only a hand-made element can). When the table or a set is gone, the shape is
   * repaired first.
   */
  async blockPrefixes(requests: readonly PrefixRequest[]): Promise<ResponderResult> {
    const failed: ResponderResult['failed'] = []
    const valid: Array<{ prefix: string; family: 4 | 6; ttlS: number }> = []
    for (const r of requests) {
      const error = checkPrefix(r)
      if (error !== null) failed.push({ address: String(r.prefix), error })
      else valid.push({ prefix: r.prefix, family: r.family, ttlS: Math.ceil(r.ttlMs / 1000) })
    }
    if (!this.#prefixes) return result(this.name, { failed: [...failed, ...valid.map((v) => ({ address: v.prefix, error: 'prefix sets are off (option prefixes)' }))] })
    if (valid.length === 0) return result(this.name, { failed })
    const lines: string[] = []
    for (const table of this.#tables()) {
      for (const spec of PREFIX_SPECS) {
        const parts = valid.filter((v) => v.family === spec.family).map((v) => `${v.prefix} timeout ${nftTimeout(v.ttlS)}`)
        for (const c of chunked(parts, this.#chunk)) lines.push(`add element ${table} ${spec.name} { ${c.join(', ')} }`)
      }
    }
    const script = `${lines.join('\n')}\n`
    const prefixes = valid.map((v) => v.prefix)
    if (this.#dryRun) return result(this.name, { applied: prefixes, failed, script, dryRun: true })
    return await this.#exclusive(async () => {
      const { r, repaired } = await this.#applyRepairing(script)
      if (!r.ok) {
        const error = `nft exited with ${r.code}: ${firstLine(r.stderr)} (${toolHint('nft', r.code, r.stderr)})`
        return result(this.name, { failed: [...failed, ...prefixes.map((address) => ({ address, error }))], script })
      }
      const out = result(this.name, { applied: prefixes, failed, script })
      if (repaired !== undefined && repaired.length > 0) out.repaired = repaired
      return out
    })
  }

  /**
   * Deletes blocks: from every set of portanoia (an operator's unblock), or only
   * from `evidence`'s (a fleet deletion lifts the fleet ban, not a local block), in
   * the inet table and in the netdev table when there is one (whatever this
   * responder enforces: an unblock from the command line lifts the daemon's early
   * drop too). Membership is read first because deleting a missing element fails
   * the whole transaction; an element that expires between the read and the delete
   * makes it fail anyway, so that case is read and tried once more.
   */
  async unblock(addresses: readonly string[], options: UnblockOptions = {}): Promise<ResponderResult> {
    const { valid, failed } = checkAddresses(addresses)
    if (valid.length === 0) return result(this.name, { failed })
    const sets = options.evidence === undefined ? [...SET_SPECS.map((s) => s.name), ...Object.keys(NFT_LEGACY_SETS)] : Object.values(NFT_SETS[options.evidence])
    if (this.#dryRun) {
      const all = valid.flatMap((a) =>
        this.#tables().flatMap((table) => sets.filter((s) => (SPEC_BY_NAME.get(s)?.family ?? NFT_LEGACY_SETS[s]) === a.family).map((set) => ({ address: a.address, set, table }))),
      )
      return result(this.name, { applied: valid.map((a) => a.address), failed, script: this.unblockScript(all), dryRun: true })
    }
    return await this.#exclusive(async () => {
      let script = ''
      for (let attempt = 0; attempt < 2; attempt++) {
        let state: NftTableState | null
        let ingress: NftTableState | null
        try {
          state = await this.readState()
          ingress = await this.readIngress()
        } catch (e) {
          const error = (e as Error).message
          return result(this.name, { failed: [...failed, ...valid.map((a) => ({ address: a.address, error }))] })
        }
        const members: Array<{ address: string; set: string; table: string }> = []
        const wanted = new Set(valid.map((a) => a.address))
        for (const [table, st] of [[NFT_TABLE, state], [NFT_INGRESS_TABLE, ingress]] as const) {
          for (const set of sets) {
            for (const e of st?.sets.get(set)?.elements ?? []) if (wanted.has(e.address)) members.push({ address: e.address, set, table })
          }
        }
        const present = new Set(members.map((m) => m.address))
        const absent = valid.filter((a) => !present.has(a.address)).map((a) => a.address)
        if (members.length === 0) return result(this.name, { failed, absent })
        script = this.unblockScript(members)
        const r = await this.#apply(script)
        const applied = valid.map((a) => a.address).filter((a) => present.has(a))
        if (r.ok) {
          this.#counts.unblocked += applied.length
          return result(this.name, { applied, failed, absent, script })
        }
        if (!MISSING.test(r.stderr) || attempt === 1) {
          const error = `nft exited with ${r.code}: ${firstLine(r.stderr)}`
          return result(this.name, { failed: [...failed, ...applied.map((address) => ({ address, error }))], absent, script })
        }
      }
      return result(this.name, { failed, script })
    })
  }

  async list(): Promise<ActiveBlockEntry[]> {
    if (this.#dryRun) return []
    return await this.#exclusive(async () => {
      const state = await this.readState()
      return state === null ? [] : stateBlocks(state)
    })
  }

  /**
   * Follows deletions in the kernel (`nft -j monitor destroy`): a table, set, chain
   * or rule of ours deleted, or elements deleted (an operator's unblock, or our own).
   * Element expiry is not reported by the kernel, so the monitor stays quiet while
   * blocks time out. Returns null when no monitor was configured.
   */
  watch(onChange: (change: FirewallChange) => void): { stop(): Promise<void>; exited: Promise<number> } | null {
    if (this.#monitor === undefined || this.#dryRun) return null
    return this.#monitor(this.#nft, ['-j', 'monitor', 'destroy'], (line) => {
      const c = parseMonitorLine(line)
      if (c !== null) onChange(c)
    })
  }

  async notify(_decisions: readonly Decision[]): Promise<ResponderResult> {
    return result(this.name)
  }

  /**
   * Deletes tables `inet portanoia` and `netdev portanoia` (whatever this responder
   * enforces) and nothing else; an absent table is success. `applied` names the
   * tables removed, `absent` those that were not there.
   */
  async uninstall(): Promise<ResponderResult> {
    const tables = [NFT_TABLE, NFT_INGRESS_TABLE]
    const script = tables.map((t) => `delete table ${t}\n`).join('')
    if (this.#dryRun) return result(this.name, { script, dryRun: true })
    return await this.#exclusive(async () => {
      const applied: string[] = []
      const absent: string[] = []
      const failed: ResponderResult['failed'] = []
      // One transaction each: deleting an absent table would fail the other's.
      for (const t of tables) {
        const r = await this.#apply(`delete table ${t}\n`)
        if (r.ok) applied.push(t)
        else if (MISSING.test(r.stderr)) absent.push(t)
        else failed.push({ address: t, error: `nft exited with ${r.code}: ${firstLine(r.stderr)} (${toolHint('nft', r.code, r.stderr)})` })
      }
      return result(this.name, { applied, absent, failed, script })
    })
  }

  stats(): Record<string, number> {
    return { ...this.#counts }
  }

  async close(): Promise<void> {
    // Nothing to release: blocks live (and expire) in the kernel.
    await this.#calls.idle()
  }
}
