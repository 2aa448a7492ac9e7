/**
 * The daemon's one configuration: the shape the config file holds (ConfigInput,
 * camelCase names of the CLI flags), its validation into a DaemonConfig with every
 * default applied (resolveConfig), and the config file reader (JSON with comments
 * and trailing commas; errors say file:line:column and suggest the nearest field for
 * a misspelt one). The CLI merges flags over the file and calls the same
 * resolveConfig an embedding service calls with a plain object, so both run the same
 * checks: durations ('90s', '5m', '1h'), port lists, CIDRs, the webhook URL, the
 * metrics endpoint, TTLs against the backend's limit, the fleet section. The result
 * holds secret *file names* only (resolveFleetConfig reads the secrets later, never
 * printing them). Pure apart from reading files in readConfig and readAllowFile.
 * Every error is a PortanoiaError (PORTANOIA_BAD_CONFIG) naming where the value came
 * from — a flag, a file position, or a field.
 */
import { readFile } from 'node:fs/promises'
import { findNodeAtLocation, type Node as JsonNode, type ParseError, parseTree, getNodeValue, printParseErrorCode } from 'jsonc-parser'
import { z } from 'zod'
import { parsePorts } from '../bpf/ports.js'
import { isPortanoiaError, PortanoiaError } from '../errors.js'
import { type CrowdsecConfig, fleetConfigSchema } from '../fleet/config.js'
import { type BlockMode, DEFAULT_POLICY, type PolicyConfig, resolvePolicyConfig } from '../policy/config.js'
import { normalizeAddress, parseCidr } from '../policy/addr.js'
import { IPSET_MAX_TIMEOUT_S } from '../responders/ipset.js'
import { NFT_MAX_TTL_MS } from '../responders/nftables.js'
import { deviceProblem, type Enforce, ENFORCE, usesIngress } from '../responders/nft-ingress.js'
import type { PortRange, Proto } from '../types.js'
import type { MetricsListen } from './metrics.js'
import { type AggregateConfig, DEFAULT_PREFIX4, DEFAULT_PREFIX6, PREFIX_LIMITS } from '../policy/prefixes.js'

/** Where the daemon looks for its config file when none is named. */
export const DEFAULT_CONFIG_FILE = '/etc/portanoia/portanoia.json'

function bad(message: string, hint?: string): PortanoiaError {
  return new PortanoiaError('PORTANOIA_BAD_CONFIG', message, hint === undefined ? {} : { hint })
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * '90s', '5m', '1h', '2d', '500ms', '1h30m' → milliseconds. A bare number is
 * refused: '60' could mean seconds or minutes, and a block TTL is not worth a guess.
 */
export function parseDuration(text: string): number {
  const s = text.trim()
  if (!/^(\d+(ms|s|m|h|d))+$/.test(s)) {
    throw bad(`${JSON.stringify(text)} is not a duration`, 'write a number and a unit: 500ms, 90s, 5m, 1h, 2d (or combined: 1h30m)')
  }
  let total = 0
  for (const m of s.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(m[1]) * (UNITS[m[2] as string] as number)
  if (!Number.isSafeInteger(total)) throw bad(`${JSON.stringify(text)} is too long a duration`)
  return total
}

/** Milliseconds back to the shortest exact text ('1h', '90s', '1h30m'). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s'
  let left = ms
  let out = ''
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    if (left >= size) {
      out += `${Math.floor(left / size)}${unit}`
      left %= size
    }
  }
  return out
}

export type Backend = 'nftables' | 'ipset' | 'none'

export type { MetricsListen }

// ---------------------------------------------------------------- the input shape

const portValues = z.union([z.string(), z.number().int(), z.array(z.union([z.number(), z.string()]))])
const duration = z.string().describe('a duration like 90s, 5m, 1h')
const positiveInt = z.number().int().min(1)

/** The config file, and what an embedding service passes: the flags' names in camelCase. */
export const configSchema = z.strictObject({
  tcp: portValues.optional(),
  udp: portValues.optional(),
  sctp: portValues.optional(),
  ipProto: portValues.describe('IP protocol numbers, e.g. [47, 50]').optional(),
  unused: z.union([z.string(), z.array(z.string())]).optional(),
  interface: z.string().min(1).optional(),
  netns: z.string().min(1).optional(),
  block: z.enum(['verified', 'all', 'off']).optional(),
  blockTtl: z.string().describe('a duration like 1h, or a ladder like 1h,1d,7d').optional(),
  forgetAfter: duration.optional(),
  aggregate: z.union([positiveInt, z.string()]).describe('verified blocks in one prefix that make a prefix ban').optional(),
  aggregatePrefix4: z.union([positiveInt, z.string()]).describe('IPv4 prefix length of a prefix ban (24)').optional(),
  aggregatePrefix6: z.union([positiveInt, z.string()]).describe('IPv6 prefix length of a prefix ban (64)').optional(),
  state: z.union([z.string().min(1), z.literal(false)]).describe('the state file path, or false for none').optional(),
  spoofableTtl: duration.optional(),
  maxBlocksPerMinute: z.union([positiveInt, z.string()]).optional(),
  maxActiveBlocks: z.union([positiveInt, z.string()]).optional(),
  maxReportsPerMinute: z.union([positiveInt, z.string()]).optional(),
  allow: z.union([z.string(), z.array(z.string())]).optional(),
  allowFile: z.string().min(1).describe('a file with one address or CIDR a line').optional(),
  threshold: z.union([positiveInt, z.string()]).optional(),
  window: duration.optional(),
  backend: z.enum(['nftables', 'ipset', 'none']).optional(),
  exec: z.string().min(1).optional(),
  webhook: z.string().min(1).optional(),
  json: z.boolean().optional(),
  dryRun: z.boolean().optional(),
  hits: z.boolean().optional(),
  forward: z.boolean().optional(),
  enforce: z.enum(ENFORCE).describe('where blocks drop: input (default), ingress (netdev, before routing and conntrack) or both').optional(),
  statsInterval: duration.optional(),
  metrics: z.string().min(1).describe('HOST:PORT, e.g. 127.0.0.1:9464').optional(),
  control: z.union([z.string().min(1), z.literal(false)]).describe('the control socket path, or false for none').optional(),
  attribution: z.boolean().describe('false: no attribution checks (hits say unchecked)').optional(),
  reversePath: z.enum(['strict', 'loose', 'off']).optional(),
  linkProbe: z.boolean().optional(),
  scans: z.boolean().describe('false: no scan tracking (no scan or decoy events)').optional(),
  ringRecords: z.union([positiveInt, z.string()]).describe('records the ring between the capture thread and the daemon holds (96 bytes each; default 262144)').optional(),
  ...fleetConfigSchema.shape,
})

/** Everything a flag or config field can set (undefined: not given). */
export interface ConfigInput {
  tcp?: string | number | ReadonlyArray<string | number>
  udp?: string | number | ReadonlyArray<string | number>
  sctp?: string | number | ReadonlyArray<string | number>
  /** IP protocol tripwires: numbers (47, 50, '97-99'). */
  ipProto?: string | number | ReadonlyArray<string | number>
  unused?: string | readonly string[]
  interface?: string
  netns?: string
  block?: string
  /** A duration ('1h'), or an escalation ladder ('1h,1d,7d'). */
  blockTtl?: string
  /** An address whose last block is older than this starts the ladder again. Default 30d. */
  forgetAfter?: string
  /** Prefix bans: this many verified blocks in one prefix block the prefix (nftables only). Off by default. */
  aggregate?: string | number
  /** Prefix lengths of prefix bans. Default 24 and 64. */
  aggregatePrefix4?: string | number
  aggregatePrefix6?: string | number
  /** The state file (ladder history, blocks to restore after a reboot); false: none. Default: under /var/lib/portanoia/, one per namespace. */
  state?: string | false
  spoofableTtl?: string
  maxBlocksPerMinute?: string | number
  maxActiveBlocks?: string | number
  maxReportsPerMinute?: string | number
  allow?: string | readonly string[]
  /** A file with one address or CIDR a line (`#` comments); read by readAllowFile. */
  allowFile?: string
  threshold?: string | number
  window?: string
  backend?: string
  exec?: string
  /** The original portanoia's `-c`: may use shell syntax (CLI only, not a config field). */
  command?: string
  webhook?: string
  json?: boolean
  dryRun?: boolean
  hits?: boolean
  forward?: boolean
  /** Where blocks are enforced: 'input' (default), 'ingress' (a netdev chain on the capture interface) or 'both'. */
  enforce?: string
  statsInterval?: string
  /** Fleet mode: file names of the secrets, never the secrets. */
  crowdsec?: Partial<CrowdsecConfig>
  /** Prometheus endpoint, HOST:PORT. */
  metrics?: string
  /** The control socket's path; false: none. Default: under /run/portanoia/, one per namespace. */
  control?: string | false
  /** False: no attribution checks; hits say `unchecked` and --block all acts on every spoofable source (default true). */
  attribution?: boolean
  /** Attribution's reverse-path check: strict (default), loose, or off. */
  reversePath?: string
  /** False: no scan tracking, so no `scan` or `decoy` events (default true; lib/daemon/scans.ts). */
  scans?: boolean
  /** Attribution may ask the link (ARP/NS) who holds an on-link source (default true). */
  linkProbe?: boolean
  /** Hit records the sensor's ring holds (DAEMON_RING_RECORDS by default). */
  ringRecords?: string | number
}

/** A validated configuration, every default applied: what the daemon is built from. */
export interface DaemonConfig {
  /** Explicit tripwires; with `useDefaults`, only IP protocol ones (or none). */
  ports: PortRange[]
  unused: PortRange[]
  /** No port was given: the default set minus ports in use (IP protocol tripwires are no ports: they add to it). */
  useDefaults: boolean
  interface?: string
  netns?: string
  policy: PolicyConfig
  /** `allow` entries, then those of `allowFile` (once read). */
  allow: string[]
  allowFile?: string
  backend: Backend
  forward: boolean
  /** Where the firewall drops blocked sources (nftables): the inet input hook, the netdev ingress hook of `interface`, or both. */
  enforce: Enforce
  exec?: { command: string; shell: boolean }
  webhook?: string
  /** undefined: decide by whether stdout is a terminal. */
  json?: boolean
  /** --dry-run, and `block: 'off'` (verified in dry-run): nothing is applied. */
  dryRun: boolean
  hits: boolean
  statsIntervalMs: number
  crowdsec?: CrowdsecConfig
  metrics?: MetricsListen
  /** The control socket: a path, false for none, undefined for the default (lib/daemon/control.ts). */
  control?: string | false
  /** The state file: a path, false for none, undefined for the default (lib/daemon/state-file.ts). */
  state?: string | false
  /** Prefix bans (--aggregate): off when absent. */
  aggregate?: AggregateConfig
  /** Attribution: on at all, the reverse-path mode, and whether the link may be asked (lib/attribution). */
  attribution: boolean
  reversePath: 'strict' | 'loose' | 'off'
  linkProbe: boolean
  /** Scan tracking (`scan` and `decoy` events). */
  scans: boolean
  /** Hit records the sensor's ring holds (rounded up to a power of two by the addon). */
  ringRecords: number
}

/**
 * The daemon's hit ring, in records (the library's default is 65,536). Its JavaScript costs
 * ~1.5 µs a hit where a library loop costs ~0.1, and it is slowest in the first second of a
 * forged flood, when every source is new and V8 is still compiling the loop: at 500k hits/s
 * from 100,000 sources it fell ~100-150k hits behind in that second, then kept up at ~0.8 of
 * a core. With 65,536 records the ring dropped 76-84k hits there (bench/daemon-cost.ts's per-
 * second series); with 131,072 13-34k; with 262,144 none. 24 MiB, touched at open.
 */
export const DAEMON_RING_RECORDS = 1 << 18
/** The addon's bounds for a ring (native/capture_wrap.cc). */
const RING_RECORDS_MIN = 64
const RING_RECORDS_MAX = 1 << 24

// ---------------------------------------------------------------- config file

/** Line and column (both from 1) of a character offset. */
function position(text: string, offset: number): { line: number; column: number } {
  let line = 1
  let lineStart = 0
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++
      lineStart = i + 1
    }
  }
  return { line, column: offset - lineStart + 1 }
}

/** Levenshtein distance, for "did you mean" on short words. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0] as number
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const up = row[j] as number
      row[j] = Math.min(up + 1, (row[j - 1] as number) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1))
      diag = up
    }
  }
  return row[b.length] as number
}

/** The closest of `candidates` to `word`, when it is close enough to be a likely typo. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase())
    if (d < bestD) {
      best = c
      bestD = d
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined
}

const CROWDSEC_KEYS = Object.keys(fleetConfigSchema.shape.crowdsec.unwrap().shape)

/** A parsed config file: its input, and where each top-level field stands (`file:line:col`). */
export interface ConfigFile {
  input: ConfigInput
  /** 'portanoia.json:3:5' for a field, for messages about its value. */
  where(field: string): string
}

/**
 * Parses and validates config text (JSON; comments and trailing commas allowed).
 * Syntax errors and schema errors say file:line:column; an unknown field gets the
 * nearest known one as a suggestion.
 */
export function parseConfig(text: string, file: string): ConfigFile {
  const errors: ParseError[] = []
  const tree = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false })
  const at = (offset: number): string => {
    const p = position(text, offset)
    return `${file}:${p.line}:${p.column}`
  }
  if (errors.length > 0) {
    const e = errors[0] as ParseError
    const what = printParseErrorCode(e.error).replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()
    throw bad(`${at(e.offset)}: ${what}`, 'the config file is one JSON object (comments and trailing commas allowed), e.g. {"tcp": [2222], "block": "verified"}')
  }
  if (tree === undefined || tree.type !== 'object') {
    throw bad(`${at(tree?.offset ?? 0)}: the config file must hold one JSON object`, 'e.g. {"tcp": [2222], "block": "verified"}')
  }
  const doc: unknown = getNodeValue(tree)
  const nodeAt = (path: ReadonlyArray<string | number>): JsonNode | undefined => findNodeAtLocation(tree, [...path])
  const keyAt = (path: ReadonlyArray<string | number>): number => {
    // The property's key, not its value: where an operator looks for a field name.
    const n = nodeAt(path)
    return n?.parent?.type === 'property' ? n.parent.offset : (n?.offset ?? tree.offset)
  }
  const r = configSchema.safeParse(doc)
  if (!r.success) {
    const lines = r.error.issues.map((i) => {
      const path = i.path.map((p) => (typeof p === 'symbol' ? String(p) : p))
      if (i.code === 'unrecognized_keys') {
        const inCrowdsec = path[0] === 'crowdsec'
        const known = inCrowdsec ? CROWDSEC_KEYS : Object.keys(configSchema.shape)
        return i.keys
          .map((k) => {
            const near = didYouMean(k, known)
            const name = inCrowdsec ? `crowdsec.${k}` : k
            return `${at(keyAt([...path, k]))}: unknown field ${JSON.stringify(name)}${near === undefined ? '' : ` (did you mean ${JSON.stringify(near)}?)`}`
          })
          .join('; ')
      }
      const n = nodeAt(path)
      return `${at(n?.offset ?? keyAt(path))}: field ${path.map(String).join('.')}: ${i.message}`
    })
    throw bad(lines.join('; '), `fields: ${Object.keys(configSchema.shape).join(', ')}`)
  }
  const input: ConfigInput = {}
  for (const [k, v] of Object.entries(r.data)) if (v !== undefined) (input as Record<string, unknown>)[k] = v
  return { input, where: (field) => `${at(keyAt(field.split('.')))} (field ${field})` }
}

/** Reads and parses a config file. */
export async function readConfig(file: string): Promise<ConfigFile> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e)
    throw bad(`config ${file}: cannot read it (${code})`, code === 'ENOENT' ? 'check the path, or leave --config out to use the defaults' : 'check its permissions')
  }
  return parseConfig(text, file)
}

/**
 * Reads an allowlist file: one address or CIDR a line, `#` starts a comment, blank
 * lines are skipped. Every entry is checked; an error names file:line.
 */
export async function readAllowFile(file: string): Promise<string[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    throw bad(`allow file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 'check the path and its permissions')
  }
  return parseAllowList(text, file)
}

export function parseAllowList(text: string, file: string): string[] {
  const out: string[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const entry = (lines[i] as string).replace(/#.*$/, '').trim()
    if (entry === '') continue
    try {
      parseCidr(entry)
    } catch (e) {
      throw bad(`${file}:${i + 1}: ${isPortanoiaError(e) ? e.message : String(e)}`, 'one address or CIDR a line, e.g. 192.0.2.0/24 or 2001:db8::7; # starts a comment')
    }
    out.push(entry)
  }
  return out
}

// ------------------------------------------------------------------ resolving

/**
 * Says where a field's value came from, for messages: '--block-ttl',
 * 'portanoia.json:3:5 (field blockTtl)'. Fields of the crowdsec section come as
 * 'crowdsec.url'.
 */
export type FieldNamer = (field: string) => string

/** The crowdsec section on its own (the config schema wraps it in `optional`). */
const crowdsecSchema = fleetConfigSchema.shape.crowdsec.unwrap()

/**
 * `127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464`, or `:9464` (loopback). A bare
 * port is refused: whether it means loopback or every interface is exactly the
 * question an operator should answer in writing. Port 0 picks a free port.
 */
export function parseMetricsListen(text: string, where = 'metrics'): MetricsListen {
  const fail = (why: string): PortanoiaError =>
    bad(`${where}: ${JSON.stringify(text)} ${why}`, 'write HOST:PORT: 127.0.0.1:9464, [::1]:9464, or :9464 for loopback')
  const s = text.trim()
  if (/^\d+$/.test(s)) throw fail('is a bare port: which address should it listen on?')
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(s)
  if (m === null) throw fail('is not HOST:PORT')
  const port = Number(m[3])
  if (port > 65535) throw fail('has a port above 65535')
  if (m[1] !== undefined) {
    if (normalizeAddress(m[1])?.includes(':') !== true) throw fail('does not hold an IPv6 address in brackets')
    return { host: m[1], port }
  }
  const host = m[2] === '' || m[2] === undefined ? '127.0.0.1' : m[2]
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(host)) throw fail('does not start with a host name or IPv4 address')
  return { host, port }
}

/** The longest block a backend holds, ms (Infinity: no limit of its own). */
export function maxTtlMs(backend: Backend): number {
  return backend === 'ipset' ? IPSET_MAX_TIMEOUT_S * 1000 : backend === 'nftables' ? NFT_MAX_TTL_MS : Number.POSITIVE_INFINITY
}

/** A duration of at least one second (nft timeouts have second granularity). */
function secondsOrMore(text: string, where: string): number {
  let ms: number
  try {
    ms = parseDuration(text)
  } catch (e) {
    rethrow(where, e)
  }
  if (ms < 1000) throw bad(`${where}: ${text} is shorter than the 1s minimum`, 'nft timeouts have second granularity')
  return ms
}

/**
 * A block TTL as an operator writes it ('90s', '1h'), checked as the config's TTLs
 * are: a duration, at least 1 s, no longer than `backend` holds. `where` names the
 * source for the message ('--ttl', 'request.ttl').
 */
export function parseTtl(text: string, where: string, backend: Backend): number {
  const ms = secondsOrMore(text, where)
  if (ms > maxTtlMs(backend)) throw tooLong(where, ms, backend)
  return ms
}

function tooLong(where: string, ms: number, backend: Backend): PortanoiaError {
  return bad(
    `${where}: ${formatDuration(ms)} is longer than ${backend} allows (${formatDuration(maxTtlMs(backend))})`,
    backend === 'ipset' ? 'use a shorter TTL or backend nftables' : 'use a shorter TTL',
  )
}

/**
 * The control socket's path as configured: absolute, and short enough for a Unix
 * socket address (sun_path holds 107 bytes and a NUL).
 */
function controlPath(value: string | false | undefined, where: string): string | false | undefined {
  if (value === undefined || value === false) return value
  if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0') || Buffer.byteLength(value) > 107) {
    throw bad(`${where}: ${JSON.stringify(value)} is not a usable socket path`, 'an absolute path of at most 107 bytes, e.g. /run/portanoia/portanoia.sock; false turns the socket off')
  }
  return value
}

/** The state file's path as configured: absolute, a file name (not a directory's). */
function statePath(value: string | false | undefined, where: string): string | false | undefined {
  if (value === undefined || value === false) return value
  if (typeof value !== 'string' || !value.startsWith('/') || value.endsWith('/') || value.includes('\0')) {
    throw bad(`${where}: ${JSON.stringify(value)} is not a usable file path`, 'an absolute file path, e.g. /var/lib/portanoia/state.json; false turns the state file off')
  }
  return value
}

/**
 * A block TTL or an escalation ladder ('1h' or '1h,1d,7d'): each step a duration of
 * at least 1 s, never shorter than the step before it.
 */
export function ttlLadder(text: string, where: string): number[] {
  const parts = text.split(',').map((p) => p.trim())
  if (parts.length > 32) throw bad(`${where}: ${parts.length} steps; at most 32`, 'e.g. 1h,1d,7d')
  const steps = parts.map((p) => secondsOrMore(p, where))
  for (let i = 1; i < steps.length; i++) {
    if ((steps[i] as number) < (steps[i - 1] as number)) {
      throw bad(`${where}: step ${i + 1} (${parts[i]}) is shorter than step ${i} (${parts[i - 1]})`, 'a repeat offender never gets a shorter block: list the steps from shortest to longest, e.g. 1h,1d,7d')
    }
  }
  return steps
}

function resolveCrowdsec(value: Partial<CrowdsecConfig> | undefined, name: (key: string) => string): CrowdsecConfig | undefined {
  if (value === undefined) return undefined
  if (value.url === undefined) {
    const given = Object.keys(value).map(name).join(', ')
    throw bad(`${given}: fleet mode needs the Local API's URL`, 'add --crowdsec-url (or crowdsec.url in the config), e.g. http://10.0.0.5:8080')
  }
  const r = crowdsecSchema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    const key = issue?.path[0] === undefined ? 'url' : String(issue.path[0])
    throw bad(`${name(key)}: ${issue?.message ?? 'invalid'}`, 'see docs/fleet.md for the crowdsec settings')
  }
  return r.data
}

function rethrow(where: string, e: unknown): never {
  if (isPortanoiaError(e)) throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `${where}: ${e.message}`, e.hint === undefined ? {} : { hint: e.hint })
  throw e
}

function listOf(v: string | number | ReadonlyArray<string | number> | undefined): string[] | undefined {
  if (v === undefined) return undefined
  return typeof v === 'string' || typeof v === 'number' ? [String(v)] : v.map(String)
}

function ports(values: readonly string[], proto: Proto, where: string): string[] {
  const specs: string[] = []
  for (const v of values) {
    for (const part of v.split(/[\s,]+/).filter((p) => p !== '')) {
      const m = /^(.*?)(?:\/(\w+))?$/.exec(part) as RegExpExecArray
      if (m[2] !== undefined && m[2].toLowerCase() !== proto) {
        throw bad(`${where}: ${JSON.stringify(part)} is not a ${proto} port`, `put ${m[2]} ports under ${m[2].toLowerCase()}`)
      }
      specs.push(`${m[1]}/${proto}`)
    }
  }
  return specs
}

function reversePathOf(v: string | undefined, where: string): DaemonConfig['reversePath'] {
  if (v === undefined) return 'strict'
  if (v === 'strict' || v === 'loose' || v === 'off') return v
  throw bad(`${where}: ${JSON.stringify(v)} is not a reverse-path mode`, 'use strict (the route back must use the arrival interface), loose (only "no route back" counts), or off')
}

function integer(v: string | number | undefined, where: string): number | undefined {
  if (v === undefined) return undefined
  const n = typeof v === 'number' ? v : /^\d+$/.test(v.trim()) ? Number(v.trim()) : NaN
  if (!Number.isSafeInteger(n) || n < 1) throw bad(`${where}: ${JSON.stringify(v)} is not a whole number ≥ 1`)
  return n
}

/**
 * Whether a legacy `-c` command uses shell syntax (pipes, lists, redirections,
 * expansions). Plain commands run as argv without a shell; the others need
 * /bin/sh, which is safe because tokens are only ever replaced by validated
 * address and port literals (no character a shell treats specially).
 */
export function needsShell(command: string): boolean {
  // Quoted text is literal to the shell: look only outside quotes.
  const bare = command.replace(/'[^']*'/g, "''").replace(/"(?:[^"\\]|\\.)*"/g, '""')
  return /[|&;<>`$(){}*?~\n]/.test(bare)
}

/**
 * Validates a configuration and applies every default. `name` says where each
 * field came from, for error messages (default: `field NAME`). Throws a
 * PortanoiaError (PORTANOIA_BAD_CONFIG) naming the field and what is wrong; nothing
 * is read or started here. The allow file, when given, is read by the caller
 * (readAllowFile) and its entries appended to `allow`.
 */
export function resolveConfig(input: ConfigInput, name: FieldNamer = (k) => `field ${k}`): DaemonConfig {
  const specs: string[] = []
  for (const proto of ['tcp', 'udp', 'sctp'] as const) {
    const v = listOf(input[proto])
    if (v !== undefined) specs.push(...ports(v, proto, name(proto)))
  }
  const ipValues = listOf(input.ipProto)
  if (ipValues !== undefined) specs.push(...ports(ipValues, 'ip', name('ipProto')))
  let explicit: PortRange[] = []
  try {
    if (specs.length > 0) explicit = parsePorts(specs)
  } catch (e) {
    rethrow((['tcp', 'udp', 'sctp', 'ipProto'] as const).filter((k) => input[k] !== undefined).map(name).join('/'), e)
  }
  let unused: PortRange[] = []
  const unusedValues = listOf(input.unused)
  if (unusedValues !== undefined) {
    try {
      // Bare ranges are TCP, as everywhere else; '1-1023/udp' names the protocol.
      unused = parsePorts(unusedValues.flatMap((v) => v.split(/[\s,]+/).filter((p) => p !== '')))
    } catch (e) {
      rethrow(name('unused'), e)
    }
    if (unused.some((r) => r.proto === 'ip')) {
      throw bad(`${name('unused')}: IP protocols have no sockets to be unused`, 'give IP protocol tripwires with ipProto (--ip-proto 47,50)')
    }
  }

  const policyInput: Partial<PolicyConfig> = {}
  const block = input.block
  if (block !== undefined) {
    if (!['verified', 'all', 'off'].includes(block)) throw bad(`${name('block')}: ${JSON.stringify(block)} is not a block mode`, 'use verified, all or off')
    policyInput.block = block as BlockMode
  }
  for (const [k, field] of [['spoofableTtl', 'spoofableTtlMs'], ['window', 'windowMs'], ['forgetAfter', 'forgetAfterMs']] as const) {
    const v = input[k]
    if (v !== undefined) policyInput[field] = secondsOrMore(v, name(k))
  }
  if (input.blockTtl !== undefined) {
    const ladder = ttlLadder(input.blockTtl, name('blockTtl'))
    if (ladder.length === 1) policyInput.blockTtlMs = ladder[0] as number
    else policyInput.blockTtlLadderMs = ladder
  }
  for (const [k, field] of [['maxBlocksPerMinute', 'maxBlocksPerMinute'], ['maxActiveBlocks', 'maxActiveBlocks'], ['maxReportsPerMinute', 'maxReportsPerMinute'], ['threshold', 'threshold']] as const) {
    const n = integer(input[k], name(k))
    if (n !== undefined) policyInput[field] = n
  }
  // `block off` is `verified` in dry-run, down to the firewall responder: it must
  // print its scripts, not run them.
  const dryRun = input.dryRun === true || policyInput.block === 'off'
  if (dryRun) policyInput.dryRun = true
  const verifiedTtl = policyInput.blockTtlLadderMs?.[0] ?? policyInput.blockTtlMs ?? DEFAULT_POLICY.blockTtlMs
  if (policyInput.spoofableTtlMs !== undefined && policyInput.spoofableTtlMs > verifiedTtl) {
    throw bad(
      `${name('spoofableTtl')}: ${formatDuration(policyInput.spoofableTtlMs)} is longer than the verified TTL (${input.blockTtl === undefined ? `${name('blockTtl')} default` : name('blockTtl')} ${formatDuration(verifiedTtl)}): a forged packet would buy a longer block than a completed handshake`,
      'make the spoofable TTL at most the verified one',
    )
  }
  let policy: PolicyConfig
  try {
    policy = resolvePolicyConfig(policyInput)
  } catch (e) {
    rethrow('policy', e)
  }

  const allow = listOf(input.allow) ?? []
  for (const a of allow) {
    try {
      parseCidr(a)
    } catch (e) {
      rethrow(`${name('allow')} ${JSON.stringify(a)}`, e)
    }
  }

  const backend = input.backend ?? 'nftables'
  if (!['nftables', 'ipset', 'none'].includes(backend)) {
    throw bad(`${name('backend')}: ${JSON.stringify(backend)} is not a backend`, 'use nftables, ipset or none')
  }
  // A backend's longest timeout is checked here, not after the sets and rules exist.
  for (const [k, field] of [['blockTtl', 'blockTtlMs'], ['spoofableTtl', 'spoofableTtlMs']] as const) {
    if (policy[field] > maxTtlMs(backend as Backend)) throw tooLong(input[k] === undefined ? `${name(k)} (default)` : name(k), policy[field], backend as Backend)
  }
  // Every step of the ladder is a block the backend must hold.
  for (const step of policy.blockTtlLadderMs) if (step > maxTtlMs(backend as Backend)) throw tooLong(name('blockTtl'), step, backend as Backend)
  const netns = input.netns
  if (netns !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/.test(netns)) {
    throw bad(`${name('netns')}: ${JSON.stringify(netns)} is not a namespace name`, '`ip netns list` shows them')
  }
  const iface = input.interface
  if (iface !== undefined && (iface.length > 15 || /[\s/:]/.test(iface) || iface === '')) {
    throw bad(`${name('interface')}: ${JSON.stringify(iface)} is not an interface name`, "`ip link` lists them; 'any' captures on all")
  }
  const enforce = input.enforce ?? 'input'
  if (!(ENFORCE as readonly string[]).includes(enforce)) throw bad(`${name('enforce')}: ${JSON.stringify(enforce)} is not a place to enforce blocks`, 'use input (the inet input hook), ingress (a netdev chain on the capture interface) or both')
  if (usesIngress(enforce as Enforce)) {
    if (backend !== 'nftables') throw bad(`${name('enforce')} ${enforce} needs the nftables backend (a netdev table), not ${backend}`, 'use --backend nftables, or --enforce input')
    if (iface === undefined || iface === 'any') throw bad(`${name('enforce')} ${enforce} needs ${name('interface')}: a netdev ingress chain binds to one interface`, 'name the capture interface, e.g. --interface eth0')
    const why = deviceProblem(iface)
    if (why !== null) throw bad(`${name('interface')}: ${why}`, '`ip link` lists the interfaces')
    if (enforce === 'ingress' && input.forward === true) throw bad(`${name('forward')} with ${name('enforce')} ingress: the ingress chain already drops routed packets, and there is no inet chain to add forward to`, 'leave --forward out, or use --enforce both')
  }
  const webhook = input.webhook
  if (webhook !== undefined) {
    let u: URL
    try {
      u = new URL(webhook)
    } catch {
      throw bad(`${name('webhook')}: ${JSON.stringify(webhook)} is not a URL`, 'e.g. https://hooks.example/portanoia')
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad(`${name('webhook')}: only http(s) URLs are supported`)
  }
  const command = input.command
  const execText = input.exec
  if (command !== undefined && execText !== undefined) throw bad(`${name('command')} and ${name('exec')} both give a command: use one`)
  let exec: DaemonConfig['exec']
  if (execText !== undefined) exec = { command: execText, shell: false }
  else if (command !== undefined) exec = { command, shell: needsShell(command) }
  let statsIntervalMs = 60_000
  const si = input.statsInterval
  if (si !== undefined) {
    try {
      statsIntervalMs = parseDuration(si)
    } catch (e) {
      rethrow(name('statsInterval'), e)
    }
  }

  const ringRecords = integer(input.ringRecords, name('ringRecords')) ?? DAEMON_RING_RECORDS
  if (ringRecords < RING_RECORDS_MIN || ringRecords > RING_RECORDS_MAX) {
    throw bad(
      `${name('ringRecords')}: ${ringRecords} is not ${RING_RECORDS_MIN} to ${RING_RECORDS_MAX.toLocaleString('en-US')} records`,
      `each record is 96 bytes: ${DAEMON_RING_RECORDS} (the default) is 24 MiB, 65536 is 6 MiB; a smaller ring drops hits sooner when the daemon falls behind`,
    )
  }

  const crowdsec = resolveCrowdsec(input.crowdsec, (key) => name(`crowdsec.${key}`))
  const metrics = input.metrics === undefined ? undefined : parseMetricsListen(input.metrics, name('metrics'))
  const control = controlPath(input.control, name('control'))
  const state = statePath(input.state, name('state'))
  let aggregate: AggregateConfig | undefined
  const threshold = integer(input.aggregate, name('aggregate'))
  if (threshold !== undefined) {
    if (threshold < 2) throw bad(`${name('aggregate')}: ${threshold}: a prefix ban needs at least 2 blocked addresses`, 'e.g. 8: eight verified scanners of one /24 block the /24')
    if (backend !== 'nftables') throw bad(`${name('aggregate')}: prefix bans need the nftables backend (interval sets), not ${backend}`, 'use --backend nftables, or leave --aggregate out')
    const length = (k: 'aggregatePrefix4' | 'aggregatePrefix6', family: 4 | 6, dflt: number): number => {
      const n = integer(input[k], name(k)) ?? dflt
      const [min, max] = PREFIX_LIMITS[family]
      if (n < min || n > max) throw bad(`${name(k)}: /${n} is not /${min} to /${max}`, `e.g. ${dflt}`)
      return n
    }
    aggregate = { threshold, prefix4: length('aggregatePrefix4', 4, DEFAULT_PREFIX4), prefix6: length('aggregatePrefix6', 6, DEFAULT_PREFIX6) }
  } else if (input.aggregatePrefix4 !== undefined || input.aggregatePrefix6 !== undefined) {
    throw bad(`${name(input.aggregatePrefix4 !== undefined ? 'aggregatePrefix4' : 'aggregatePrefix6')} without ${name('aggregate')}: prefix bans are off`, 'add --aggregate N')
  }

  const config: DaemonConfig = {
    ports: explicit,
    unused,
    useDefaults: explicit.every((r) => r.proto === 'ip') && unused.length === 0,
    policy,
    allow: [...allow],
    backend: backend as Backend,
    forward: input.forward === true,
    enforce: enforce as Enforce,
    dryRun,
    hits: input.hits === true,
    statsIntervalMs,
    attribution: input.attribution !== false,
    reversePath: reversePathOf(input.reversePath, name('reversePath')),
    linkProbe: input.linkProbe !== false,
    scans: input.scans !== false,
    ringRecords,
  }
  if (iface !== undefined) config.interface = iface
  if (netns !== undefined) config.netns = netns
  if (input.allowFile !== undefined) config.allowFile = input.allowFile
  if (exec !== undefined) config.exec = exec
  if (webhook !== undefined) config.webhook = webhook
  if (crowdsec !== undefined) config.crowdsec = crowdsec
  if (metrics !== undefined) config.metrics = metrics
  if (input.json !== undefined) config.json = input.json
  if (control !== undefined) config.control = control
  if (state !== undefined) config.state = state
  if (aggregate !== undefined) config.aggregate = aggregate
  return config
}
