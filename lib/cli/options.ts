/**
 * What `portanoia watch` is asked to do, validated in full before anything runs:
 * flags and the JSON config file (zod schema; flags override the file field by
 * field) become one WatchPlan, or a UsageError that names the flag or config field
 * and says what is wrong. Durations ('90s', '5m', '1h'), port lists, CIDRs, the
 * webhook URL and the exec template are all checked here, so the firewall is never
 * touched by a half-valid configuration. The `crowdsec` section (fleet mode) and the
 * `--crowdsec-*` flags merge field by field the same way and are checked with the
 * fleet's own schema; the plan holds secret *file names* only — the secrets are read
 * later, by resolveFleetConfig, and never printed. Pure apart from reading the
 * config file.
 */
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { parsePorts } from '../bpf/ports.js'
import { isPortanoiaError, PortanoiaError } from '../errors.js'
import { type CrowdsecConfig, FLEET_FLAGS, fleetConfigSchema } from '../fleet/config.js'
import type { MetricsListen } from '../daemon/metrics.js'
import { type BlockMode, type PolicyConfig, resolvePolicyConfig } from '../policy/config.js'
import { normalizeAddress, parseCidr } from '../policy/addr.js'
import { IPSET_MAX_TIMEOUT_S } from '../responders/ipset.js'
import type { PortRange, Proto } from '../types.js'

/** A mistake in the command line or the config file: exit code 2, nothing done. */
export class UsageError extends Error {
  readonly hint: string | undefined
  constructor(message: string, hint?: string) {
    super(message)
    this.name = 'UsageError'
    this.hint = hint
  }
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * '90s', '5m', '1h', '2d', '500ms', '1h30m' → milliseconds. A bare number is
 * refused: '60' could mean seconds or minutes, and a block TTL is not worth a guess.
 */
export function parseDuration(text: string): number {
  const s = text.trim()
  if (!/^(\d+(ms|s|m|h|d))+$/.test(s)) {
    throw new UsageError(`${JSON.stringify(text)} is not a duration`, "write a number and a unit: 500ms, 90s, 5m, 1h, 2d (or combined: 1h30m)")
  }
  let total = 0
  for (const m of s.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(m[1]) * (UNITS[m[2] as string] as number)
  if (!Number.isSafeInteger(total)) throw new UsageError(`${JSON.stringify(text)} is too long a duration`)
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

/** Everything a flag or config field can set, in one shape (undefined: not given). */
export interface WatchInput {
  tcp?: readonly string[]
  udp?: readonly string[]
  sctp?: readonly string[]
  unused?: readonly string[]
  interface?: string
  netns?: string
  block?: string
  blockTtl?: string
  spoofableTtl?: string
  maxBlocksPerMinute?: string | number
  maxActiveBlocks?: string | number
  allow?: readonly string[]
  threshold?: string | number
  window?: string
  backend?: string
  exec?: string
  /** Legacy `-c`: may use shell syntax. */
  command?: string
  webhook?: string
  json?: boolean
  dryRun?: boolean
  hits?: boolean
  forward?: boolean
  statsInterval?: string
  /** Fleet mode: the config file's `crowdsec` section, or the `--crowdsec-*` flags (file names, never secrets). */
  crowdsec?: Partial<CrowdsecConfig>
  /** Prometheus endpoint, HOST:PORT. */
  metrics?: string
}

export interface WatchPlan {
  /** Explicit tripwires; empty with `useDefaults`. */
  ports: PortRange[]
  unused: PortRange[]
  /** No port was given: the default set minus ports in use. */
  useDefaults: boolean
  interface?: string
  netns?: string
  policy: PolicyConfig
  allow: string[]
  backend: Backend
  forward: boolean
  exec?: { command: string; shell: boolean }
  webhook?: string
  /** undefined: decide by whether stdout is a terminal. */
  json?: boolean
  dryRun: boolean
  hits: boolean
  statsIntervalMs: number
  /** Fleet mode, validated; secrets still in their files (resolveFleetConfig reads them). */
  crowdsec?: CrowdsecConfig
  /** Where to serve /metrics. */
  metrics?: MetricsListen
}

// ---------------------------------------------------------------- config file

const portValues = z.union([z.string(), z.array(z.union([z.number(), z.string()]))])
const duration = z.string().describe('a duration like 90s, 5m, 1h')
const positiveInt = z.number().int().min(1)

/** The config file: a JSON object with the flags' names (camelCase); unknown fields are errors. */
export const configSchema = z.strictObject({
  tcp: portValues.optional(),
  udp: portValues.optional(),
  sctp: portValues.optional(),
  unused: z.union([z.string(), z.array(z.string())]).optional(),
  interface: z.string().min(1).optional(),
  netns: z.string().min(1).optional(),
  block: z.enum(['verified', 'all', 'off']).optional(),
  blockTtl: duration.optional(),
  spoofableTtl: duration.optional(),
  maxBlocksPerMinute: positiveInt.optional(),
  maxActiveBlocks: positiveInt.optional(),
  allow: z.array(z.string()).optional(),
  threshold: positiveInt.optional(),
  window: duration.optional(),
  backend: z.enum(['nftables', 'ipset', 'none']).optional(),
  exec: z.string().min(1).optional(),
  webhook: z.string().min(1).optional(),
  json: z.boolean().optional(),
  dryRun: z.boolean().optional(),
  hits: z.boolean().optional(),
  forward: z.boolean().optional(),
  statsInterval: duration.optional(),
  metrics: z.string().min(1).describe('HOST:PORT, e.g. 127.0.0.1:9464').optional(),
  ...fleetConfigSchema.shape,
})

export type ConfigFile = z.infer<typeof configSchema>

function listOf(v: string | ReadonlyArray<string | number> | undefined): string[] | undefined {
  if (v === undefined) return undefined
  return typeof v === 'string' ? [v] : v.map(String)
}

/** Parses and validates config text; errors name the file and the field. */
export function parseConfig(text: string, file: string): WatchInput {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (e) {
    throw new UsageError(`config ${file}: not valid JSON (${(e as Error).message})`, 'the config file is one JSON object, e.g. {"tcp": [2222], "block": "verified"}')
  }
  const r = configSchema.safeParse(doc)
  if (!r.success) {
    const lines = r.error.issues.map((i) => {
      const where = i.path.length === 0 ? '' : `field ${i.path.map(String).join('.')}: `
      if (i.code === 'unrecognized_keys') return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k)).join(', ')}`
      return `${where}${i.message}`
    })
    throw new UsageError(`config ${file}: ${lines.join('; ')}`, `fields: ${Object.keys(configSchema.shape).join(', ')}`)
  }
  const c = r.data
  const out: WatchInput = {}
  for (const [k, v] of Object.entries(c)) {
    if (v === undefined) continue
    if (k === 'tcp' || k === 'udp' || k === 'sctp' || k === 'unused') out[k] = listOf(v as string | string[])
    else (out as Record<string, unknown>)[k] = v
  }
  return out
}

export async function readConfig(file: string): Promise<WatchInput> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    throw new UsageError(`config ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`)
  }
  return parseConfig(text, file)
}

// ------------------------------------------------------------------ resolving

/** Where a value came from, for messages: '--block-ttl' or 'config field blockTtl'. */
type Source = (field: keyof WatchInput) => string

const FLAG_NAMES: Record<keyof WatchInput, string> = {
  tcp: '--tcp',
  udp: '--udp',
  sctp: '--sctp',
  unused: '--unused',
  interface: '--interface',
  netns: '--netns',
  block: '--block',
  blockTtl: '--block-ttl',
  spoofableTtl: '--spoofable-ttl',
  maxBlocksPerMinute: '--max-blocks-per-minute',
  maxActiveBlocks: '--max-active-blocks',
  allow: '--allow',
  threshold: '--threshold',
  window: '--window',
  backend: '--backend',
  exec: '--exec',
  command: '-c',
  webhook: '--webhook',
  json: '--json',
  dryRun: '--dry-run',
  hits: '--hits',
  forward: '--forward',
  statsInterval: '--stats-interval',
  crowdsec: '--crowdsec-*',
  metrics: '--metrics',
}

/** The crowdsec section on its own (the config schema wraps it in `optional`). */
const crowdsecSchema = fleetConfigSchema.shape.crowdsec.unwrap()

/** Config key → its flag ('url' → '--crowdsec-url'), from the fleet's own table. */
const CROWDSEC_FLAG_NAMES: Partial<Record<keyof CrowdsecConfig, string>> = Object.fromEntries(
  Object.entries(FLEET_FLAGS).map(([flag, key]) => [key, flag.split(' ')[0] as string]),
)

/**
 * `127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464`, or `:9464` (loopback). A bare
 * port is refused: whether it means loopback or every interface is exactly the
 * question an operator should answer in writing. Port 0 picks a free port.
 */
export function parseMetricsListen(text: string, where = '--metrics'): MetricsListen {
  const bad = (why: string): UsageError =>
    new UsageError(`${where}: ${JSON.stringify(text)} ${why}`, 'write HOST:PORT: 127.0.0.1:9464, [::1]:9464, or :9464 for loopback')
  const s = text.trim()
  if (/^\d+$/.test(s)) throw bad('is a bare port: which address should it listen on?')
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(s)
  if (m === null) throw bad('is not HOST:PORT')
  const port = Number(m[3])
  if (port > 65535) throw bad('has a port above 65535')
  if (m[1] !== undefined) {
    if (normalizeAddress(m[1])?.includes(':') !== true) throw bad('does not hold an IPv6 address in brackets')
    return { host: m[1], port }
  }
  const host = m[2] === '' || m[2] === undefined ? '127.0.0.1' : m[2]
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(host)) throw bad('does not start with a host name or IPv4 address')
  return { host, port }
}

/**
 * The crowdsec section: config fields overridden by the flags that are set, then
 * checked (and defaulted) with the fleet's schema. Errors name the flag or field.
 */
function resolveCrowdsec(
  flags: Partial<CrowdsecConfig> | undefined,
  config: Partial<CrowdsecConfig> | undefined,
  configName: string,
): CrowdsecConfig | undefined {
  if (flags === undefined && config === undefined) return undefined
  const merged: Record<string, unknown> = { ...config }
  for (const [k, v] of Object.entries(flags ?? {})) if (v !== undefined) merged[k] = v
  const where = (key: string): string => {
    const flag = CROWDSEC_FLAG_NAMES[key as keyof CrowdsecConfig]
    return flags?.[key as keyof CrowdsecConfig] !== undefined && flag !== undefined ? flag : `${configName} field crowdsec.${key}`
  }
  if (merged.url === undefined) {
    const given = Object.keys(merged).map(where).join(', ')
    throw new UsageError(`${given}: fleet mode needs the Local API's URL`, "add --crowdsec-url (or crowdsec.url in the config), e.g. http://10.0.0.5:8080")
  }
  const r = crowdsecSchema.safeParse(merged)
  if (!r.success) {
    const issue = r.error.issues[0]
    const key = issue?.path[0] === undefined ? 'url' : String(issue.path[0])
    throw new UsageError(`${where(key)}: ${issue?.message ?? 'invalid'}`, 'see docs/fleet.md for the crowdsec settings')
  }
  return r.data
}

function rethrow(where: string, e: unknown): never {
  if (e instanceof UsageError) throw new UsageError(`${where}: ${e.message}`, e.hint)
  if (isPortanoiaError(e)) throw new UsageError(`${where}: ${e.message}`, e.hint)
  throw e
}

function ports(values: readonly string[], proto: Proto, where: string): string[] {
  const specs: string[] = []
  for (const v of values) {
    for (const part of v.split(/[\s,]+/).filter((p) => p !== '')) {
      const m = /^(.*?)(?:\/(\w+))?$/.exec(part) as RegExpExecArray
      if (m[2] !== undefined && m[2].toLowerCase() !== proto) {
        throw new UsageError(`${where}: ${JSON.stringify(part)} is not a ${proto} port`, `put ${m[2]} ports under --${m[2].toLowerCase()}`)
      }
      specs.push(`${m[1]}/${proto}`)
    }
  }
  return specs
}

function integer(v: string | number | undefined, where: string): number | undefined {
  if (v === undefined) return undefined
  const n = typeof v === 'number' ? v : /^\d+$/.test(v.trim()) ? Number(v.trim()) : NaN
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${where}: ${JSON.stringify(v)} is not a whole number ≥ 1`)
  return n
}

/**
 * Flags over config, validated. `flags` and `config` use the same shape; a flag
 * that is set replaces the config field (lists included: `--allow` replaces
 * `allow`, so the effective list is always visible in one place).
 */
export function resolveWatch(flags: WatchInput, config: WatchInput = {}, configName = 'config'): WatchPlan {
  const pick = <K extends keyof WatchInput>(k: K): WatchInput[K] => (flags[k] !== undefined ? flags[k] : config[k])
  const src: Source = (k) => (flags[k] !== undefined ? FLAG_NAMES[k] : `${configName} field ${k}`)

  const specs: string[] = []
  for (const proto of ['tcp', 'udp', 'sctp'] as const) {
    const v = pick(proto)
    if (v !== undefined) specs.push(...ports(v, proto, src(proto)))
  }
  let explicit: PortRange[] = []
  try {
    if (specs.length > 0) explicit = parsePorts(specs)
  } catch (e) {
    rethrow(['tcp', 'udp', 'sctp'].filter((k) => pick(k as 'tcp') !== undefined).map((k) => src(k as 'tcp')).join('/'), e)
  }
  let unused: PortRange[] = []
  const unusedValues = pick('unused')
  if (unusedValues !== undefined) {
    try {
      // Bare ranges are TCP, as everywhere else; '1-1023/udp' names the protocol.
      unused = parsePorts(unusedValues.flatMap((v) => v.split(/[\s,]+/).filter((p) => p !== '')))
    } catch (e) {
      rethrow(src('unused'), e)
    }
  }

  const policyInput: Partial<PolicyConfig> = {}
  const block = pick('block')
  if (block !== undefined) {
    if (!['verified', 'all', 'off'].includes(block)) throw new UsageError(`${src('block')}: ${JSON.stringify(block)} is not a block mode`, 'use verified, all or off')
    policyInput.block = block as BlockMode
  }
  for (const [k, field] of [['blockTtl', 'blockTtlMs'], ['spoofableTtl', 'spoofableTtlMs'], ['window', 'windowMs']] as const) {
    const v = pick(k)
    if (v === undefined) continue
    try {
      policyInput[field] = parseDuration(v)
    } catch (e) {
      rethrow(src(k), e)
    }
    if ((policyInput[field] as number) < 1000) throw new UsageError(`${src(k)}: ${v} is shorter than the 1s minimum`, 'nft timeouts have second granularity')
  }
  for (const [k, field] of [['maxBlocksPerMinute', 'maxBlocksPerMinute'], ['maxActiveBlocks', 'maxActiveBlocks'], ['threshold', 'threshold']] as const) {
    const n = integer(pick(k), src(k))
    if (n !== undefined) policyInput[field] = n
  }
  const dryRun = pick('dryRun') === true
  if (dryRun) policyInput.dryRun = true
  let policy: PolicyConfig
  try {
    policy = resolvePolicyConfig(policyInput)
  } catch (e) {
    rethrow('policy', e)
  }

  const allow = [...(pick('allow') ?? [])]
  for (const a of allow) {
    try {
      parseCidr(a)
    } catch (e) {
      rethrow(`${src('allow')} ${JSON.stringify(a)}`, e)
    }
  }

  const backend = pick('backend') ?? 'nftables'
  if (!['nftables', 'ipset', 'none'].includes(backend)) {
    throw new UsageError(`${src('backend')}: ${JSON.stringify(backend)} is not a backend`, 'use nftables, ipset or none')
  }
  if (backend === 'ipset') {
    // ipset refuses longer timeouts: caught here, not after the sets and rules exist.
    for (const [k, field] of [['blockTtl', 'blockTtlMs'], ['spoofableTtl', 'spoofableTtlMs']] as const) {
      if (policy[field] > IPSET_MAX_TIMEOUT_S * 1000) {
        throw new UsageError(
          `${pick(k) === undefined ? `${FLAG_NAMES[k]} (default)` : src(k)}: ${formatDuration(policy[field])} is longer than ipset allows (${formatDuration(IPSET_MAX_TIMEOUT_S * 1000)})`,
          'use a shorter TTL or --backend nftables',
        )
      }
    }
  }
  const netns = pick('netns')
  if (netns !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/.test(netns)) {
    throw new UsageError(`${src('netns')}: ${JSON.stringify(netns)} is not a namespace name`, '`ip netns list` shows them')
  }
  const iface = pick('interface')
  if (iface !== undefined && (iface.length > 15 || /[\s/:]/.test(iface) || iface === '')) {
    throw new UsageError(`${src('interface')}: ${JSON.stringify(iface)} is not an interface name`, "`ip link` lists them; 'any' captures on all")
  }
  const webhook = pick('webhook')
  if (webhook !== undefined) {
    let u: URL
    try {
      u = new URL(webhook)
    } catch {
      throw new UsageError(`${src('webhook')}: ${JSON.stringify(webhook)} is not a URL`, 'e.g. https://hooks.example/portanoia')
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${src('webhook')}: only http(s) URLs are supported`)
  }
  const command = flags.command
  const execText = pick('exec')
  if (command !== undefined && execText !== undefined) throw new UsageError('-c and --exec both give a command: use one')
  let exec: WatchPlan['exec']
  if (execText !== undefined) exec = { command: execText, shell: false }
  else if (command !== undefined) exec = { command, shell: needsShell(command) }
  let statsIntervalMs = 60_000
  const si = pick('statsInterval')
  if (si !== undefined) {
    try {
      statsIntervalMs = parseDuration(si)
    } catch (e) {
      rethrow(src('statsInterval'), e)
    }
  }

  const crowdsec = resolveCrowdsec(flags.crowdsec, config.crowdsec, configName)
  const metricsText = pick('metrics')
  const metrics = metricsText === undefined ? undefined : parseMetricsListen(metricsText, src('metrics'))

  const plan: WatchPlan = {
    ports: explicit,
    unused,
    useDefaults: explicit.length === 0 && unused.length === 0,
    policy,
    allow,
    backend: backend as Backend,
    forward: pick('forward') === true,
    dryRun,
    hits: pick('hits') === true,
    statsIntervalMs,
  }
  if (iface !== undefined) plan.interface = iface
  if (netns !== undefined) plan.netns = netns
  if (exec !== undefined) plan.exec = exec
  if (webhook !== undefined) plan.webhook = webhook
  if (crowdsec !== undefined) plan.crowdsec = crowdsec
  if (metrics !== undefined) plan.metrics = metrics
  const json = pick('json')
  if (json !== undefined) plan.json = json
  return plan
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

/** Wraps library errors that are the user's fault as usage errors. */
export function asUsageError(e: unknown): UsageError | null {
  if (e instanceof UsageError) return e
  if (e instanceof PortanoiaError && /^PORTANOIA_BAD_|^PORTANOIA_NO_PORTS|^PORTANOIA_DUPLICATE_PORT/.test(e.code)) return new UsageError(e.message, e.hint)
  return null
}
