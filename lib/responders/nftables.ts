/**
 * The default firewall responder. It owns exactly one nftables table,
 * `inet portanoia`, and never touches anything outside it: two sets with kernel-side
 * expiry (`block4` ipv4_addr, `block6` ipv6_addr, `flags timeout`), a base chain on
 * the input hook (policy accept, at priority filter - 10 so it runs before the usual
 * filter chains) that drops members, and, opt-in, the same on the forward hook for
 * published container ports. Every change is one `nft -f -` transaction: either all
 * of a batch is applied or none. start() adopts an existing table (its elements are
 * the blocks that survived a restart) and repairs only what differs from the
 * expected shape; it never flushes a set. Addresses and TTLs are validated before
 * they reach a script. Runs on the JS thread through an injected RunFn; block(),
 * unblock() and uninstall() report failures as results and never reject.
 */
import { PortanoiaError } from '../errors.js'
import { normalizeAddress, parseAddress } from '../policy/addr.js'
import type { Decision } from '../policy/decision.js'
import { checkAddresses, checkBlocks, firstLine, MAX_TTL_SECONDS, result, toolError, toolHint, type ValidBlock } from './common.js'
import { defaultRun } from './run.js'
import type { ActiveBlockEntry, BlockRequest, Responder, ResponderResult, RunFn } from './types.js'

export const NFT_TABLE = 'inet portanoia'
export const NFT_SET4 = 'block4'
export const NFT_SET6 = 'block6'

export interface NftablesOptions {
  run?: RunFn
  /** The nft binary. Default 'nft'. */
  nft?: string
  /** Also drop members on the forward hook (published container ports, routed hosts). Default false. */
  forward?: boolean
  /** Base chain priority; default -10 (filter - 10): before the distribution's filter chains. */
  priority?: number
  /** Run nothing; results carry the script that would have run. */
  dryRun?: boolean
  /** Elements per `add element` statement (all statements still go in one transaction). Default 4096. */
  chunk?: number
}

/** What the kernel holds under `inet portanoia`, as far as this responder cares. */
export interface NftTableState {
  sets: Map<string, { type: string; flags: string[]; elements: ActiveBlockEntry[] }>
  chains: Map<string, { type?: string; hook?: string; prio?: number; policy?: string }>
  /** Per chain, one signature per rule (see ruleSignature). */
  rules: Map<string, string[]>
}

const SET_TYPES: Record<string, { type: string; family: 4 | 6 }> = {
  [NFT_SET4]: { type: 'ipv4_addr', family: 4 },
  [NFT_SET6]: { type: 'ipv6_addr', family: 6 },
}
const EXPECTED_RULES = [`ip.saddr==@${NFT_SET4} drop`, `ip6.saddr==@${NFT_SET6} drop`]
// nft's "No such file or directory": the table, set or element is not there.
const MISSING = /No such file or directory/

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined
}

/** One element of `nft -j` output: a bare value, or { elem: { val, timeout, expires } } (seconds). */
function parseElement(raw: unknown, family: 4 | 6): ActiveBlockEntry | null {
  let val: unknown = raw
  let timeout: number | undefined
  let expires: number | undefined
  if (isRecord(raw) && isRecord(raw.elem)) {
    val = raw.elem.val
    timeout = num(raw.elem.timeout)
    expires = num(raw.elem.expires)
  }
  // Prefixes and ranges come as objects: not something this table ever holds.
  if (typeof val !== 'string') return null
  const canonical = normalizeAddress(val)
  if (canonical === null || parseAddress(canonical)?.family !== family) return null
  const e: ActiveBlockEntry = { address: canonical, family }
  // nft writes seconds; a timeout of 0 means none.
  if (timeout !== undefined && timeout > 0) e.timeoutMs = timeout * 1000
  if (expires !== undefined && e.timeoutMs !== undefined) e.expiresInMs = expires * 1000
  return e
}

/** 'ip.saddr==@block4 drop' for `ip saddr @block4 counter drop`; counters are ignored. */
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

/** Parses `nft -j list table inet portanoia`. Throws on output that is not nft JSON. */
export function parseNftTable(json: string): NftTableState {
  const doc: unknown = JSON.parse(json)
  if (!isRecord(doc) || !Array.isArray(doc.nftables)) throw new Error('not nft JSON output (no "nftables" array)')
  const state: NftTableState = { sets: new Map(), chains: new Map(), rules: new Map() }
  for (const item of doc.nftables) {
    if (!isRecord(item)) continue
    const mine = (o: Record<string, unknown>): boolean => o.family === 'inet' && o.table === 'portanoia'
    if (isRecord(item.set) && mine(item.set)) {
      const s = item.set
      const name = String(s.name)
      const flags = Array.isArray(s.flags) ? s.flags.filter((f): f is string => typeof f === 'string') : []
      const type = typeof s.type === 'string' ? s.type : JSON.stringify(s.type)
      const family = SET_TYPES[name]?.family
      const elements: ActiveBlockEntry[] = []
      if (family !== undefined && Array.isArray(s.elem)) {
        for (const raw of s.elem) {
          const e = parseElement(raw, family)
          if (e !== null) elements.push(e)
        }
      }
      state.sets.set(name, { type, flags, elements })
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

/** Every element of both sets. */
export function stateBlocks(state: NftTableState): ActiveBlockEntry[] {
  return [...(state.sets.get(NFT_SET4)?.elements ?? []), ...(state.sets.get(NFT_SET6)?.elements ?? [])]
}

function setName(family: 4 | 6): string {
  return family === 4 ? NFT_SET4 : NFT_SET6
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

/** Longest block the nftables responder holds, ms (MAX_TTL_SECONDS). */
export const NFT_MAX_TTL_MS = MAX_TTL_SECONDS * 1000

export class NftablesResponder implements Responder {
  readonly name = 'nftables'
  readonly maxTtlMs = NFT_MAX_TTL_MS
  readonly #run: RunFn
  readonly #nft: string
  readonly #forward: boolean
  readonly #priority: number
  readonly #dryRun: boolean
  readonly #chunk: number
  #lastSetupScript = ''
  #counts = { applied: 0, failed: 0, unblocked: 0, batches: 0, repairs: 0 }

  constructor(options: NftablesOptions = {}) {
    this.#run = options.run ?? defaultRun
    this.#nft = options.nft ?? 'nft'
    this.#forward = options.forward === true
    this.#priority = options.priority ?? -10
    this.#dryRun = options.dryRun === true
    this.#chunk = options.chunk ?? 4096
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

  /**
   * The transaction that brings the table to the expected shape. With `state`
   * null the table is created; otherwise only what differs is repaired: a chain
   * with the wrong hook or priority is recreated, a chain whose rules differ is
   * flushed and refilled (a chain is ours to rewrite, a set is not), and a set of
   * the wrong type is recreated with the elements that fit it, keeping their time left.
   */
  setupScript(state: NftTableState | null = null): string {
    const lines = [`add table ${NFT_TABLE}`]
    const chains: Array<{ name: string; hook: string }> = [{ name: 'input', hook: 'input' }]
    if (this.#forward) chains.push({ name: 'forward', hook: 'forward' })
    const badSets = Object.entries(SET_TYPES).filter(([name, want]) => {
      const have = state?.sets.get(name)
      return have !== undefined && (have.type !== want.type || !have.flags.includes('timeout'))
    })
    const refill = new Set<string>()
    // Rules referencing a set must go before the set can be deleted (same transaction).
    const emptyChain = (name: string, recreate: boolean): void => {
      lines.push(`flush chain ${NFT_TABLE} ${name}`)
      if (recreate) lines.push(`delete chain ${NFT_TABLE} ${name}`)
    }
    if (state !== null) {
      for (const [name, have] of state.chains) {
        const want = chains.find((c) => c.name === name)
        const known = name === 'input' || name === 'forward'
        if (!known) continue
        if (want === undefined) {
          // forward was enabled by an earlier run and is not wanted now.
          emptyChain(name, true)
          continue
        }
        const defOk = have.type === 'filter' && have.hook === want.hook && have.prio === this.#priority && have.policy === 'accept'
        const rules = state.rules.get(name) ?? []
        const rulesOk = rules.length === EXPECTED_RULES.length && rules.every((r, i) => r === EXPECTED_RULES[i])
        if (!defOk || !rulesOk || badSets.length > 0) {
          emptyChain(name, !defOk)
          refill.add(name)
        }
      }
    }
    for (const [name] of badSets) lines.push(`delete set ${NFT_TABLE} ${name}`)
    for (const [name, want] of Object.entries(SET_TYPES)) {
      lines.push(`add set ${NFT_TABLE} ${name} { type ${want.type}; flags timeout; }`)
    }
    for (const [name, want] of badSets) {
      const keep = (state?.sets.get(name)?.elements ?? []).filter((e) => e.family === want.family)
      const parts = keep.map((e) =>
        e.expiresInMs !== undefined ? `${e.address} timeout ${nftTimeout(Math.max(1, Math.ceil(e.expiresInMs / 1000)))}` : e.address,
      )
      for (const c of chunked(parts, this.#chunk)) lines.push(`add element ${NFT_TABLE} ${name} { ${c.join(', ')} }`)
    }
    for (const c of chains) {
      lines.push(`add chain ${NFT_TABLE} ${c.name} { type filter hook ${c.hook} priority ${this.#priority}; policy accept; }`)
      if (state === null || !state.chains.has(c.name) || refill.has(c.name)) {
        lines.push(`add rule ${NFT_TABLE} ${c.name} ip saddr @${NFT_SET4} counter drop`)
        lines.push(`add rule ${NFT_TABLE} ${c.name} ip6 saddr @${NFT_SET6} counter drop`)
      }
    }
    return `${lines.join('\n')}\n`
  }

  /**
   * One transaction for a batch. Plain blocks are `add element` (on kernels before
   * 6.10 an existing element keeps its timeout; later kernels update it). Upgrades
   * must reset the timeout everywhere, so they are added (making them exist, since a
   * `delete` of a missing element fails the whole transaction; nft 1.0.6 has no
   * `destroy`), deleted, and added again with the new timeout.
   */
  blockScript(blocks: readonly ValidBlock[]): string {
    const lines: string[] = []
    const emit = (verb: 'add' | 'delete', items: readonly ValidBlock[], withTimeout: boolean): void => {
      for (const family of [4, 6] as const) {
        const parts = items
          .filter((b) => b.family === family)
          .map((b) => (withTimeout ? `${b.address} timeout ${nftTimeout(b.ttlS)}` : b.address))
        for (const c of chunked(parts, this.#chunk)) {
          lines.push(`${verb} element ${NFT_TABLE} ${setName(family)} { ${c.join(', ')} }`)
        }
      }
    }
    const upgrades = blocks.filter((b) => b.upgrade)
    emit('add', blocks, true)
    emit('delete', upgrades, false)
    emit('add', upgrades, true)
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`
  }

  unblockScript(addresses: ReadonlyArray<{ address: string; family: 4 | 6 }>): string {
    const lines: string[] = []
    for (const family of [4, 6] as const) {
      const parts = addresses.filter((a) => a.family === family).map((a) => a.address)
      for (const c of chunked(parts, this.#chunk)) lines.push(`delete element ${NFT_TABLE} ${setName(family)} { ${c.join(', ')} }`)
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`
  }

  /** Reads the table; null when it does not exist. Throws a PortanoiaError otherwise. */
  async readState(): Promise<NftTableState | null> {
    const r = await this.#run(this.#nft, ['-j', 'list', 'table', ...NFT_TABLE.split(' ')])
    if (r.code !== 0) {
      if (MISSING.test(r.stderr)) return null
      throw toolError('PORTANOIA_NFT_FAILED', 'nft', `reading table ${NFT_TABLE}`, r)
    }
    try {
      return parseNftTable(r.stdout)
    } catch (e) {
      throw new PortanoiaError('PORTANOIA_NFT_FAILED', `unreadable output of nft -j list table: ${(e as Error).message}`, {
        hint: 'nftables 0.9.3 or later is needed for JSON output',
        cause: e,
      })
    }
  }

  async #apply(script: string): Promise<{ ok: boolean; stderr: string; code: number }> {
    this.#counts.batches++
    const r = await this.#run(this.#nft, ['-f', '-'], script)
    return { ok: r.code === 0, stderr: r.stderr, code: r.code }
  }

  async start(): Promise<ActiveBlockEntry[]> {
    if (this.#dryRun) {
      this.#lastSetupScript = this.setupScript(null)
      return []
    }
    const state = await this.readState()
    const script = this.setupScript(state)
    this.#lastSetupScript = script
    const r = await this.#apply(script)
    if (!r.ok) throw toolError('PORTANOIA_NFT_FAILED', 'nft', `setting up table ${NFT_TABLE}`, r)
    return state === null ? [] : stateBlocks(state)
  }

  async block(requests: readonly BlockRequest[]): Promise<ResponderResult> {
    const { valid, failed } = checkBlocks(requests)
    const script = this.blockScript(valid)
    const addresses = valid.map((b) => b.address)
    this.#counts.failed += failed.length
    if (valid.length === 0) return result(this.name, { failed })
    if (this.#dryRun) return result(this.name, { applied: addresses, failed, script, dryRun: true })
    let r = await this.#apply(script)
    if (!r.ok && MISSING.test(r.stderr)) {
      // Someone deleted the table (or a set) under us: rebuild it and try once more.
      try {
        this.#counts.repairs++
        const s = await this.#apply(this.setupScript(await this.readState()))
        if (s.ok) r = await this.#apply(script)
      } catch {
        // report the original failure below
      }
    }
    if (!r.ok) {
      const error = `nft exited with ${r.code}: ${firstLine(r.stderr)} (${toolHint('nft', r.code, r.stderr)})`
      this.#counts.failed += addresses.length
      return result(this.name, { failed: [...failed, ...addresses.map((address) => ({ address, error }))], script })
    }
    this.#counts.applied += addresses.length
    return result(this.name, { applied: addresses, failed, script })
  }

  /**
   * Deletes blocks. Membership is read first because deleting a missing element
   * fails the whole transaction; an element that expires between the read and the
   * delete makes it fail anyway, so that case is read and tried once more.
   */
  async unblock(addresses: readonly string[]): Promise<ResponderResult> {
    const { valid, failed } = checkAddresses(addresses)
    if (valid.length === 0) return result(this.name, { failed })
    if (this.#dryRun) {
      return result(this.name, { applied: valid.map((a) => a.address), failed, script: this.unblockScript(valid), dryRun: true })
    }
    let script = ''
    for (let attempt = 0; attempt < 2; attempt++) {
      let state: NftTableState | null
      try {
        state = await this.readState()
      } catch (e) {
        const error = (e as Error).message
        return result(this.name, { failed: [...failed, ...valid.map((a) => ({ address: a.address, error }))] })
      }
      const members = new Set(state === null ? [] : stateBlocks(state).map((b) => b.address))
      const present = valid.filter((a) => members.has(a.address))
      const absent = valid.filter((a) => !members.has(a.address)).map((a) => a.address)
      if (present.length === 0) return result(this.name, { failed, absent })
      script = this.unblockScript(present)
      const r = await this.#apply(script)
      if (r.ok) {
        this.#counts.unblocked += present.length
        return result(this.name, { applied: present.map((a) => a.address), failed, absent, script })
      }
      if (!MISSING.test(r.stderr) || attempt === 1) {
        const error = `nft exited with ${r.code}: ${firstLine(r.stderr)}`
        return result(this.name, { failed: [...failed, ...present.map((a) => ({ address: a.address, error }))], absent, script })
      }
    }
    return result(this.name, { failed, script })
  }

  async list(): Promise<ActiveBlockEntry[]> {
    if (this.#dryRun) return []
    const state = await this.readState()
    return state === null ? [] : stateBlocks(state)
  }

  async notify(_decisions: readonly Decision[]): Promise<ResponderResult> {
    return result(this.name)
  }

  /** Deletes table `inet portanoia` and nothing else; an absent table is success. */
  async uninstall(): Promise<ResponderResult> {
    const script = `delete table ${NFT_TABLE}\n`
    if (this.#dryRun) return result(this.name, { script, dryRun: true })
    const r = await this.#apply(script)
    if (r.ok || MISSING.test(r.stderr)) return result(this.name, { script, absent: r.ok ? [] : [NFT_TABLE] })
    return result(this.name, {
      failed: [{ address: NFT_TABLE, error: `nft exited with ${r.code}: ${firstLine(r.stderr)} (${toolHint('nft', r.code, r.stderr)})` }],
      script,
    })
  }

  stats(): Record<string, number> {
    return { ...this.#counts }
  }

  async close(): Promise<void> {
    // Nothing to release: blocks live (and expire) in the kernel.
  }
}
