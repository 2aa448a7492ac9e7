/**
 * What the firewall responders share: the gate every address and TTL passes before
 * it can reach a script (canonical literal of the declared family, whole seconds in
 * range, a known origin), batch de-duplication per origin, the fleet tag's element
 * comment, one-call-at-a-time queueing, the log of repairs a write made on its own,
 * and result/error helpers. No I/O. Invariant: nothing returned in `valid` can
 * contain a character other than [0-9a-f.:], and a fleet comment only
 * [A-Za-z0-9._:/@+=-] and spaces, so splicing either into an nft script or an ipset
 * restore line raises no quoting question.
 */
import { PortanoiaError, type PortanoiaErrorCode } from '../errors.js'
import { isValidAddress, parseAddress } from '../policy/addr.js'
import { EVIDENCE, type ActiveBlockEntry, type BlockRequest, type Evidence, type FleetTag, type Responder, type ResponderResult, type UnblockOptions } from './types.js'

/**
 * Longest TTL accepted: 68 years, the largest second count every tool stores without
 * overflow. It is nftables' limit here: the kernel (6.18) takes element timeouts up to
 * U64_MAX ns (213,503 days; 213,504 is ERANGE), far above this.
 */
export const MAX_TTL_SECONDS = 2 ** 31 - 1

export interface ValidBlock {
  address: string
  family: 4 | 6
  /** Whole seconds, ≥ 1. */
  ttlS: number
  upgrade: boolean
  evidence: Evidence
  /** Fleet bans only. */
  fleet?: FleetTag
}

export interface Failure {
  address: string
  error: string
}

/** Why `address` cannot be used as family `family`, or null when it can. */
export function addressProblem(address: unknown, family?: unknown): string | null {
  if (!isValidAddress(address)) return 'not a canonical IPv4/IPv6 address'
  const parsed = parseAddress(address)
  if (parsed === null) return 'not an address'
  if (family !== undefined && parsed.family !== family) return `family is ${parsed.family}, request says ${String(family)}`
  return null
}

/**
 * TTL in ms to whole seconds, rounded up so a block never ends early; a string
 * saying why when it is not a finite duration of at least one second after rounding.
 */
export function ttlSeconds(ttlMs: unknown): number | string {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) return 'ttlMs must be a positive finite number'
  const s = Math.ceil(ttlMs / 1000)
  if (s > MAX_TTL_SECONDS) return `ttlMs exceeds ${MAX_TTL_SECONDS} s`
  return Math.max(1, s)
}

/**
 * Splits a batch into blocks safe to script and refusals; an address repeated for
 * one origin is merged (longest TTL, any upgrade, the latest fleet tag).
 */
export function checkBlocks(requests: readonly BlockRequest[]): { valid: ValidBlock[]; failed: Failure[] } {
  const byAddress = new Map<string, ValidBlock>()
  const failed: Failure[] = []
  for (const r of requests) {
    const address = typeof r?.address === 'string' ? r.address : String(r?.address)
    const bad = addressProblem(r?.address, r?.family)
    if (bad !== null) {
      failed.push({ address, error: bad })
      continue
    }
    const ttl = ttlSeconds(r.ttlMs)
    if (typeof ttl === 'string') {
      failed.push({ address, error: ttl })
      continue
    }
    const evidence = r.evidence ?? 'verified'
    if (!(EVIDENCE as readonly string[]).includes(evidence)) {
      failed.push({ address, error: `evidence ${JSON.stringify(evidence)} is not one of ${EVIDENCE.join(', ')}` })
      continue
    }
    const key = `${evidence}|${address}`
    const prev = byAddress.get(key)
    if (prev === undefined) {
      const b: ValidBlock = { address, family: r.family, ttlS: ttl, upgrade: r.upgrade === true, evidence }
      if (evidence === 'fleet' && r.fleet !== undefined) b.fleet = r.fleet
      byAddress.set(key, b)
    } else {
      prev.ttlS = Math.max(prev.ttlS, ttl)
      prev.upgrade ||= r.upgrade === true
      if (evidence === 'fleet' && r.fleet !== undefined) prev.fleet = r.fleet
    }
  }
  return { valid: [...byAddress.values()], failed }
}

// nft keeps at most 128 bytes of comment per element (NFTNL_UDATA_COMMENT_MAXLEN), ipset 255.
const COMMENT_MAX = 120
const COMMENT_WORD = /[^A-Za-z0-9._:/@+-]/g

/**
 * A fleet ban's tag as an element comment: `fleet id=123 origin=crowdsec
 * scenario=crowdsecurity/ssh-bf`. Values keep only characters that need no quoting
 * (others become `_`), and the scenario is cut so the whole fits nft's limit.
 */
export function fleetComment(tag: FleetTag): string {
  const clean = (s: string): string => s.replace(COMMENT_WORD, '_').slice(0, 64)
  const head = `fleet${tag.id === undefined ? '' : ` id=${tag.id}`} origin=${clean(tag.origin)}`
  const scenario = ` scenario=${clean(tag.scenario)}`
  return `${head}${scenario}`.slice(0, COMMENT_MAX)
}

/** The tag a fleetComment() wrote; null for any other comment. */
export function parseFleetComment(text: string): FleetTag | null {
  const words = text.split(' ')
  if (words[0] !== 'fleet') return null
  const tag: FleetTag = { origin: '', scenario: '' }
  for (const w of words.slice(1)) {
    const eq = w.indexOf('=')
    if (eq < 0) continue
    const k = w.slice(0, eq)
    const v = w.slice(eq + 1)
    if (k === 'id' && /^\d{1,15}$/.test(v)) tag.id = Number(v)
    else if (k === 'origin') tag.origin = v
    else if (k === 'scenario') tag.scenario = v
  }
  return tag
}

/** Splits a list of addresses into valid, de-duplicated ones (with family) and refusals. */
export function checkAddresses(addresses: readonly string[]): {
  valid: Array<{ address: string; family: 4 | 6 }>
  failed: Failure[]
} {
  const seen = new Set<string>()
  const valid: Array<{ address: string; family: 4 | 6 }> = []
  const failed: Failure[] = []
  for (const a of addresses) {
    const bad = addressProblem(a)
    if (bad !== null) {
      failed.push({ address: String(a), error: bad })
      continue
    }
    if (seen.has(a)) continue
    seen.add(a)
    valid.push({ address: a, family: (parseAddress(a) as { family: 4 | 6 }).family })
  }
  return { valid, failed }
}

export function result(responder: string, fields: Partial<ResponderResult> = {}): ResponderResult {
  const r: ResponderResult = { responder, ok: true, applied: [], failed: [], ...fields }
  r.ok = r.failed.length === 0
  return r
}

/** First meaningful line of a tool's stderr, for messages. */
export function firstLine(text: string): string {
  const line = text.split('\n').find((l) => l.trim() !== '')
  return (line ?? '').trim()
}

/** A hint for the common ways a firewall tool fails. */
export function toolHint(tool: string, code: number, stderr: string): string {
  if (code === 127) return `${tool} is not installed or not on PATH`
  if (/Operation not permitted|Permission denied|must be root|EPERM/i.test(stderr)) {
    return 'run as root or with CAP_NET_ADMIN'
  }
  if (code === 124) return `${tool} did not finish in time; is another process holding the firewall lock?`
  return `see ${tool}'s message above`
}

export function toolError(code: PortanoiaErrorCode, tool: string, what: string, r: { code: number; stderr: string }): PortanoiaError {
  const msg = firstLine(r.stderr)
  return new PortanoiaError(code, `${what}: ${tool} exited with ${r.code}${msg === '' ? '' : `: ${msg}`}`, {
    hint: toolHint(tool, r.code, r.stderr),
  })
}

/**
 * A firewall responder's calls, one at a time: a read-then-write never interleaves
 * with another write of the same responder (the kernel serialises transactions, not
 * our decisions between them).
 */
export class CallQueue {
  #tail: Promise<unknown> = Promise.resolve()

  run<T>(fn: () => Promise<T>): Promise<T> {
    const call = this.#tail.then(fn, fn)
    this.#tail = call.catch(() => {})
    return call
  }

  /** Resolves when every call queued so far has settled. */
  async idle(): Promise<void> {
    await this.#tail
  }
}

/**
 * The shape repairs a write made on its own (block() met a vanished table or set),
 * until repair() reports them with its own: the caller then restores those sets
 * instead of reading their emptiness as an unblock.
 */
export class RepairLog {
  #pending: string[] = []

  note(problems: readonly string[]): void {
    for (const p of problems) if (!this.#pending.includes(p)) this.#pending.push(p)
  }

  /** What was noted since the last call, then `now` (without repeats). */
  take(now: readonly string[]): string[] {
    const before = this.#pending.splice(0)
    return [...before, ...now.filter((p) => !before.includes(p))]
  }
}

/**
 * Base of the responders that are told about decisions and hold no firewall state
 * (exec, webhook, jsonl): the firewall half of the interface succeeds with nothing
 * applied, so a ResponderSet can fan every call out to every responder.
 */
export abstract class Notifier implements Responder {
  abstract readonly name: string

  async start(): Promise<ActiveBlockEntry[]> {
    return []
  }

  async block(_requests: readonly BlockRequest[]): Promise<ResponderResult> {
    return result(this.name)
  }

  async unblock(_addresses: readonly string[], _options?: UnblockOptions): Promise<ResponderResult> {
    return result(this.name)
  }

  async list(): Promise<ActiveBlockEntry[]> {
    return []
  }

  abstract notify(decisions: Parameters<Responder['notify']>[0]): Promise<ResponderResult>
  abstract close(): Promise<void>
}
