/**
 * The firewall responder for hosts without nftables: ipsets with per-entry kernel
 * expiry, one per origin and family (all hash:ip, `timeout 0` so an entry without
 * its own timeout is permanent): `portanoia4`/`portanoia6` for local blocks from
 * verified evidence (the names of earlier versions, whose entries are adopted as
 * such), `portanoia-s4`/`-s6` for spoofable ones, `portanoia-f4`/`-f6` for fleet bans
 * (with the `comment` extension: each entry carries its LAPI tag). One DROP rule per
 * set and chain, inserted first in the chain and only when missing. As with nftables,
 * origins never share an entry and a write never shortens one: `ipset add -exist`
 * rewrites an entry's timeout (and comment), so the sets of a batch are read first
 * and only entries that are new or longer are written, in one `ipset restore -exist`.
 * repair() puts back missing sets and rules. uninstall() removes the rules (every
 * copy) and then the sets, nothing else. Which iptables binaries run is an option:
 * on Debian 12 `iptables` is the nf_tables variant, and a host that still runs the
 * legacy backend passes 'iptables-legacy'. One call at a time. Runs on the JS thread
 * through an injected RunFn; block(), unblock() and uninstall() never reject.
 */
import { PortanoiaError } from '../errors.js'
import { normalizeAddress, parseAddress } from '../policy/addr.js'
import type { Decision } from '../policy/decision.js'
import { CallQueue, checkAddresses, checkBlocks, firstLine, fleetComment, parseFleetComment, RepairLog, result, toolError, toolHint, type ValidBlock } from './common.js'
import { defaultRun } from './run.js'
import { EVIDENCE, type ActiveBlockEntry, type BlockPath, type BlockRequest, type Evidence, type Responder, type ResponderResult, type RunFn, type UnblockOptions } from './types.js'

export const IPSET4 = 'portanoia4'
export const IPSET6 = 'portanoia6'

/** The set of each origin and family. */
export const IPSETS: Readonly<Record<Evidence, Readonly<Record<4 | 6, string>>>> = Object.freeze({
  verified: Object.freeze({ 4: IPSET4, 6: IPSET6 }),
  spoofable: Object.freeze({ 4: 'portanoia-s4', 6: 'portanoia-s6' }),
  fleet: Object.freeze({ 4: 'portanoia-f4', 6: 'portanoia-f6' }),
})

export interface IpsetOptions {
  run?: RunFn
  ipset?: string
  /** Default 'iptables'; 'iptables-legacy' on hosts whose rules live in the legacy backend. */
  iptables?: string
  /** Default 'ip6tables'. */
  ip6tables?: string
  /** Also manage IPv6 (set + ip6tables rule). Default true. */
  ipv6?: boolean
  /** Chains in the filter table that get the DROP rule. Default ['INPUT']; add 'FORWARD' or 'DOCKER-USER' for container ports. */
  chains?: readonly string[]
  /** Set capacity. Default 262144 (ipset's own default, 65536, is below the benchmark's 100,000). */
  maxelem?: number
  dryRun?: boolean
}

const CHAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,28}$/
const MISSING_SET = /does not exist|doesn't exist/i
// iptables -D of a rule that is not there.
const NO_RULE = /does a matching rule exist|Bad rule|No chain\/target\/match|doesn't exist/i

interface SetSpec {
  name: string
  family: 4 | 6
  evidence: Evidence
}

const SET_SPECS: readonly SetSpec[] = EVIDENCE.flatMap((evidence) => ([4, 6] as const).map((family) => ({ name: IPSETS[evidence][family], family, evidence })))

function setOf(b: { family: 4 | 6; evidence: Evidence }): string {
  return IPSETS[b.evidence][b.family]
}

/**
 * Parses `ipset list NAME -output save`: `add NAME ADDR [timeout N] [comment "…"]`
 * lines; N is seconds left. `evidence` is the set's origin (fleet comments are read).
 */
export function parseIpsetSave(text: string, family: 4 | 6, evidence: Evidence = 'verified'): ActiveBlockEntry[] {
  const name = IPSETS[evidence][family]
  const out: ActiveBlockEntry[] = []
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/)
    if (words[0] !== 'add' || words[1] !== name || words[2] === undefined) continue
    const canonical = normalizeAddress(words[2])
    if (canonical === null || parseAddress(canonical)?.family !== family) continue
    const e: ActiveBlockEntry = { address: canonical, family, evidence }
    const t = words.indexOf('timeout')
    const left = t > 0 ? Number(words[t + 1]) : Number.NaN
    // In a set created with `timeout 0`, an entry listed with timeout 0 never expires.
    if (Number.isInteger(left) && left > 0) e.expiresInMs = left * 1000
    const comment = /\scomment "([^"]*)"/.exec(line)
    if (evidence === 'fleet' && comment !== null) {
      const tag = parseFleetComment(comment[1] as string)
      if (tag !== null) e.fleet = tag
    }
    out.push(e)
  }
  return out
}

/** Longest timeout ipset accepts, in seconds (the kernel's (UINT_MAX >> 1) / 1000; ipset 7: "out of range 0-2147483"). */
export const IPSET_MAX_TIMEOUT_S = 2_147_483

export class IpsetResponder implements Responder {
  readonly name = 'ipset'

  /** INPUT covers traffic to this host; FORWARD or DOCKER-USER traffic it routes. */
  get paths(): readonly BlockPath[] {
    return this.#chains.some((c) => c !== 'INPUT') ? ['input', 'forward'] : ['input']
  }
  readonly maxTtlMs = IPSET_MAX_TIMEOUT_S * 1000
  readonly #run: RunFn
  readonly #ipset: string
  readonly #iptables: string
  readonly #ip6tables: string
  readonly #ipv6: boolean
  readonly #chains: readonly string[]
  readonly #maxelem: number
  readonly #dryRun: boolean
  #lastSetupScript = ''
  #fresh = false
  readonly #calls = new CallQueue()
  readonly #repairs = new RepairLog()
  #counts = { applied: 0, failed: 0, unblocked: 0, batches: 0, kept: 0, extended: 0, repairs: 0 }

  constructor(options: IpsetOptions = {}) {
    this.#run = options.run ?? defaultRun
    this.#ipset = options.ipset ?? 'ipset'
    this.#iptables = options.iptables ?? 'iptables'
    this.#ip6tables = options.ip6tables ?? 'ip6tables'
    this.#ipv6 = options.ipv6 !== false
    this.#chains = [...(options.chains ?? ['INPUT'])]
    this.#maxelem = options.maxelem ?? 262_144
    this.#dryRun = options.dryRun === true
    for (const c of this.#chains) {
      if (!CHAIN_NAME.test(c)) {
        throw new PortanoiaError('PORTANOIA_BAD_OPTION', `${JSON.stringify(c)} is not an iptables chain name`, {
          hint: 'use INPUT, FORWARD or DOCKER-USER',
        })
      }
    }
    if (this.#chains.length === 0) throw new PortanoiaError('PORTANOIA_BAD_OPTION', 'no chains given', { hint: 'use INPUT' })
    if (!Number.isInteger(this.#maxelem) || this.#maxelem < 1) {
      throw new PortanoiaError('PORTANOIA_BAD_OPTION', 'maxelem must be a positive integer', { hint: 'e.g. 262144' })
    }
  }

  get lastSetupScript(): string {
    return this.#lastSetupScript
  }

  #families(): Array<4 | 6> {
    return this.#ipv6 ? [4, 6] : [4]
  }

  #specs(): SetSpec[] {
    return SET_SPECS.filter((s) => this.#ipv6 || s.family === 4)
  }

  #rule(set: string, chain: string): string[] {
    return [chain, '-m', 'set', '--match-set', set, 'src', '-j', 'DROP']
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#calls.run(fn)
  }

  #tables(family: 4 | 6): string {
    return family === 4 ? this.#iptables : this.#ip6tables
  }

  /** The `ipset restore` input that creates every set (a no-op under -exist when they exist alike). */
  createInput(specs: readonly SetSpec[] = this.#specs()): string {
    return specs
      .map(
        (s) =>
          `create ${s.name} hash:ip family ${s.family === 4 ? 'inet' : 'inet6'} timeout 0${s.evidence === 'fleet' ? ' comment' : ''} maxelem ${this.#maxelem}\n`,
      )
      .join('')
  }

  /** One restore input for a batch. Under -exist `add` sets the timeout whether the entry is new or not: only write what grows. */
  blockInput(blocks: readonly ValidBlock[]): string {
    return blocks.map((b) => `add ${setOf(b)} ${b.address} timeout ${b.ttlS}${b.fleet === undefined ? '' : ` comment "${fleetComment(b.fleet)}"`}\n`).join('')
  }

  unblockInput(addresses: ReadonlyArray<{ address: string; set: string }>): string {
    return addresses.map((a) => `del ${a.set} ${a.address}\n`).join('')
  }

  async start(): Promise<ActiveBlockEntry[]> {
    const steps: string[] = [`${this.#ipset} restore -exist <<EOF\n${this.createInput()}EOF`]
    for (const s of this.#specs()) {
      const tool = this.#tables(s.family)
      for (const c of this.#chains) steps.push(`${tool} -w -C ${this.#rule(s.name, c).join(' ')} || ${tool} -w -I ${this.#rule(s.name, c).join(' ')}`)
    }
    this.#lastSetupScript = `${steps.join('\n')}\n`
    if (this.#dryRun) return []
    return await this.#exclusive(async () => {
      const problems = await this.#repairShape()
      this.#fresh = this.#specs().every((s) => problems.includes(`set ${s.name}`))
      return await this.#listAll()
    })
  }

  /** start() found none of the sets: the kernel holds none of portanoia's blocks (a reboot). */
  get fresh(): boolean {
    return this.#fresh
  }

  /** repair(): sets and rules put back when missing; returns what was missing ([] when nothing). */
  async repair(): Promise<string[]> {
    if (this.#dryRun) return []
    return await this.#exclusive(async () => this.#repairs.take(await this.#repairShape()))
  }

  async #repairShape(): Promise<string[]> {
    const problems: string[] = []
    const names = await this.#run(this.#ipset, ['list', '-n'])
    if (names.code !== 0) throw toolError('PORTANOIA_IPSET_FAILED', 'ipset', 'listing sets', names)
    const have = new Set(names.stdout.split('\n').map((l) => l.trim()))
    const missing = this.#specs().filter((s) => !have.has(s.name))
    for (const s of missing) problems.push(`set ${s.name}`)
    if (missing.length > 0) {
      const r = await this.#run(this.#ipset, ['restore', '-exist'], this.createInput(missing))
      if (r.code !== 0) throw toolError('PORTANOIA_IPSET_FAILED', 'ipset', 'creating sets', r)
    }
    for (const f of this.#families()) {
      const tool = this.#tables(f)
      for (const c of this.#chains) {
        // One listing per chain and family (`-C` per rule would be a process per set).
        const list = await this.#run(tool, ['-w', '-S', c])
        if (list.code !== 0) throw toolError('PORTANOIA_IPTABLES_FAILED', tool, `listing chain ${c}`, list)
        for (const s of this.#specs().filter((x) => x.family === f)) {
          if (list.stdout.includes(`--match-set ${s.name} src -j DROP`)) continue
          problems.push(`rule ${c} ${s.name}`)
          const ins = await this.#run(tool, ['-w', '-I', ...this.#rule(s.name, c)])
          if (ins.code !== 0) throw toolError('PORTANOIA_IPTABLES_FAILED', tool, `inserting the ${c} rule`, ins)
        }
      }
    }
    if (problems.length > 0) this.#counts.repairs++
    return problems
  }

  async block(requests: readonly BlockRequest[]): Promise<ResponderResult> {
    const { valid, failed } = checkBlocks(requests)
    // One out-of-range line would stop `ipset restore` half-way through the batch.
    const usable: typeof valid = []
    for (const b of valid) {
      if (b.family === 6 && !this.#ipv6) failed.push({ address: b.address, error: 'IPv6 is disabled for this responder' })
      else if (b.ttlS > IPSET_MAX_TIMEOUT_S) failed.push({ address: b.address, error: `ttl ${b.ttlS} s exceeds ipset's ${IPSET_MAX_TIMEOUT_S} s` })
      else usable.push(b)
    }
    this.#counts.failed += failed.length
    if (usable.length === 0) return result(this.name, { failed })
    const addresses = usable.map((b) => b.address)
    if (this.#dryRun) {
      return result(this.name, { applied: addresses, failed, script: `${this.#ipset} restore -exist <<EOF\n${this.blockInput(usable)}EOF\n`, dryRun: true })
    }
    return await this.#exclusive(async () => {
      const fail = (error: string, script?: string): ResponderResult => {
        this.#counts.failed += addresses.length
        return result(this.name, { failed: [...failed, ...addresses.map((address) => ({ address, error }))], ...(script !== undefined && { script }) })
      }
      let repaired: string[] = []
      let held: Map<string, ActiveBlockEntry>
      try {
        const sets = new Set(usable.map(setOf))
        let read = await this.#held(sets)
        if (read.missing) {
          // A set is gone (destroyed behind our back): put the shape back first.
          repaired = await this.#repairShape()
          this.#repairs.note(repaired)
          read = await this.#held(sets)
        }
        held = read.entries
      } catch (e) {
        return fail((e as Error).message)
      }
      // Never shorter: write what is new or longer than the kernel holds.
      const write: ValidBlock[] = []
      const kept: string[] = []
      const extended: string[] = []
      for (const b of usable) {
        const e = held.get(`${setOf(b)}|${b.address}`)
        if (e === undefined) write.push(b)
        else if (e.expiresInMs === undefined || e.expiresInMs >= b.ttlS * 1000 - 1000) kept.push(b.address)
        else {
          write.push(b)
          extended.push(b.address)
        }
      }
      const input = this.blockInput(write)
      const script = `${this.#ipset} restore -exist <<EOF\n${input}EOF\n`
      this.#counts.kept += kept.length
      if (write.length > 0) {
        this.#counts.batches++
        const r = await this.#run(this.#ipset, ['restore', '-exist'], input)
        if (r.code !== 0) {
          // ipset restore stops at the first bad line; lines before it are applied. Every
          // line here was validated, so a failure is environmental (set missing, full):
          // report the whole batch, the policy engine treats it as not blocked.
          return fail(`ipset exited with ${r.code}: ${firstLine(r.stderr)} (${toolHint('ipset', r.code, r.stderr)})`, script)
        }
      }
      this.#counts.applied += write.length
      this.#counts.extended += extended.length
      const out = result(this.name, { applied: addresses, failed, script, kept })
      if (extended.length > 0) out.extended = extended
      if (repaired.length > 0) out.repaired = repaired
      return out
    })
  }

  /** Entries of `sets`, keyed 'set|address'; `missing` when one of the sets does not exist. */
  async #held(sets: ReadonlySet<string>): Promise<{ entries: Map<string, ActiveBlockEntry>; missing: boolean }> {
    const entries = new Map<string, ActiveBlockEntry>()
    let missing = false
    for (const spec of this.#specs().filter((s) => sets.has(s.name))) {
      const list = await this.#listSet(spec)
      if (list === null) missing = true
      for (const e of list ?? []) entries.set(`${spec.name}|${e.address}`, e)
    }
    return { entries, missing }
  }

  /** A set's entries; null when the set does not exist. */
  async #listSet(spec: SetSpec): Promise<ActiveBlockEntry[] | null> {
    const r = await this.#run(this.#ipset, ['list', spec.name, '-output', 'save'])
    if (r.code !== 0) {
      if (MISSING_SET.test(r.stderr)) return null
      throw toolError('PORTANOIA_IPSET_FAILED', 'ipset', `listing ${spec.name}`, r)
    }
    return parseIpsetSave(r.stdout, spec.family, spec.evidence)
  }

  async #listAll(): Promise<ActiveBlockEntry[]> {
    const out: ActiveBlockEntry[] = []
    for (const spec of this.#specs()) out.push(...((await this.#listSet(spec)) ?? []))
    return out
  }

  /** Deletes blocks: from every origin's set (an operator's unblock), or only `evidence`'s (a fleet deletion). */
  async unblock(addresses: readonly string[], options: UnblockOptions = {}): Promise<ResponderResult> {
    const { valid, failed } = checkAddresses(addresses)
    if (valid.length === 0) return result(this.name, { failed })
    const specs = this.#specs().filter((s) => options.evidence === undefined || s.evidence === options.evidence)
    if (this.#dryRun) {
      const all = valid.flatMap((a) => specs.filter((s) => s.family === a.family).map((s) => ({ address: a.address, set: s.name })))
      return result(this.name, { applied: valid.map((a) => a.address), failed, script: `${this.#ipset} restore -exist <<EOF\n${this.unblockInput(all)}EOF\n`, dryRun: true })
    }
    return await this.#exclusive(async () => {
      const members: Array<{ address: string; set: string }> = []
      try {
        const wanted = new Set(valid.map((a) => a.address))
        for (const spec of specs) for (const e of (await this.#listSet(spec)) ?? []) if (wanted.has(e.address)) members.push({ address: e.address, set: spec.name })
      } catch (e) {
        const error = (e as Error).message
        return result(this.name, { failed: [...failed, ...valid.map((a) => ({ address: a.address, error }))] })
      }
      const present = new Set(members.map((m) => m.address))
      const applied = valid.map((a) => a.address).filter((a) => present.has(a))
      const absent = valid.map((a) => a.address).filter((a) => !present.has(a))
      if (members.length === 0) return result(this.name, { failed, absent })
      // -exist: an entry that expired since the listing is not an error.
      const input = this.unblockInput(members)
      const script = `${this.#ipset} restore -exist <<EOF\n${input}EOF\n`
      const r = await this.#run(this.#ipset, ['restore', '-exist'], input)
      if (r.code !== 0) {
        const error = `ipset exited with ${r.code}: ${firstLine(r.stderr)}`
        return result(this.name, { failed: [...failed, ...applied.map((address) => ({ address, error }))], absent, script })
      }
      this.#counts.unblocked += applied.length
      return result(this.name, { applied, failed, absent, script })
    })
  }

  async list(): Promise<ActiveBlockEntry[]> {
    if (this.#dryRun) return []
    return await this.#exclusive(() => this.#listAll())
  }

  async notify(_decisions: readonly Decision[]): Promise<ResponderResult> {
    return result(this.name)
  }

  /** Removes every copy of portanoia's rules, then its sets. Absent pieces are fine. */
  async uninstall(): Promise<ResponderResult> {
    const steps: string[] = []
    const failed: Array<{ address: string; error: string }> = []
    for (const s of this.#specs()) {
      const tool = this.#tables(s.family)
      for (const c of this.#chains) steps.push(`while ${tool} -w -D ${this.#rule(s.name, c).join(' ')}; do :; done`)
    }
    for (const s of this.#specs()) steps.push(`${this.#ipset} destroy ${s.name}`)
    const script = `${steps.join('\n')}\n`
    if (this.#dryRun) return result(this.name, { script, dryRun: true })
    return await this.#exclusive(async () => {
      for (const s of this.#specs()) {
        const tool = this.#tables(s.family)
        for (const c of this.#chains) {
          // Bounded: a rule inserted twice (e.g. by two older runs) is removed twice.
          // -D until it finds none: ip6tables-legacy's -C matches a set rule of another
          // set name once its own is gone, so -C cannot say when to stop.
          for (let i = 0; i < 64; i++) {
            const del = await this.#run(tool, ['-w', '-D', ...this.#rule(s.name, c)])
            if (del.code === 0) continue
            if (!NO_RULE.test(del.stderr)) failed.push({ address: `${tool} ${c}`, error: firstLine(del.stderr) })
            break
          }
        }
      }
      for (const s of this.#specs()) {
        const r = await this.#run(this.#ipset, ['destroy', s.name])
        if (r.code !== 0 && !MISSING_SET.test(r.stderr)) failed.push({ address: s.name, error: firstLine(r.stderr) })
      }
      return result(this.name, { failed, script })
    })
  }

  stats(): Record<string, number> {
    return { ...this.#counts }
  }

  async close(): Promise<void> {
    // Blocks live (and expire) in the kernel.
    await this.#calls.idle()
  }
}
