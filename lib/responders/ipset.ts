/**
 * The firewall responder for hosts without nftables: two ipsets with per-entry
 * kernel expiry (`portanoia4` hash:ip family inet, `portanoia6` family inet6, both
 * `timeout 0` so an entry without its own timeout is permanent) and one DROP rule
 * per family and chain referencing them, inserted first in the chain and only when
 * `-C` says it is missing. A batch is one `ipset restore -exist` (so re-adding an
 * entry updates its timeout, which is what an upgrade needs). uninstall() removes
 * the rules (every copy) and then the sets, nothing else. Which iptables binaries
 * run is an option: on Debian 12 `iptables` is the nf_tables variant, and a host
 * that still runs the legacy backend passes 'iptables-legacy'. Runs on the JS thread
 * through an injected RunFn; block(), unblock() and uninstall() never reject.
 */
import { PortanoiaError } from '../errors.js'
import { normalizeAddress, parseAddress } from '../policy/addr.js'
import type { Decision } from '../policy/decision.js'
import { checkAddresses, checkBlocks, firstLine, result, toolError, toolHint } from './common.js'
import { defaultRun } from './run.js'
import type { ActiveBlockEntry, BlockRequest, Responder, ResponderResult, RunFn } from './types.js'

export const IPSET4 = 'portanoia4'
export const IPSET6 = 'portanoia6'

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

function setOf(family: 4 | 6): string {
  return family === 4 ? IPSET4 : IPSET6
}

/** Parses `ipset list NAME -output save`: `add NAME ADDR [timeout N]` lines; N is seconds left. */
export function parseIpsetSave(text: string, family: 4 | 6): ActiveBlockEntry[] {
  const out: ActiveBlockEntry[] = []
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/)
    if (words[0] !== 'add' || words[1] !== setOf(family) || words[2] === undefined) continue
    const canonical = normalizeAddress(words[2])
    if (canonical === null || parseAddress(canonical)?.family !== family) continue
    const e: ActiveBlockEntry = { address: canonical, family }
    const t = words.indexOf('timeout')
    const left = t > 0 ? Number(words[t + 1]) : Number.NaN
    // In a set created with `timeout 0`, an entry listed with timeout 0 never expires.
    if (Number.isInteger(left) && left > 0) e.expiresInMs = left * 1000
    out.push(e)
  }
  return out
}

/** Longest timeout ipset accepts, in seconds (the kernel's (UINT_MAX >> 1) / 1000; ipset 7: "out of range 0-2147483"). */
export const IPSET_MAX_TIMEOUT_S = 2_147_483

export class IpsetResponder implements Responder {
  readonly name = 'ipset'
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
  #counts = { applied: 0, failed: 0, unblocked: 0, batches: 0 }

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

  #rule(family: 4 | 6, chain: string): string[] {
    return [chain, '-m', 'set', '--match-set', setOf(family), 'src', '-j', 'DROP']
  }

  #tables(family: 4 | 6): string {
    return family === 4 ? this.#iptables : this.#ip6tables
  }

  /** The `ipset restore` input that creates both sets (a no-op under -exist when they exist alike). */
  createInput(): string {
    return this.#families()
      .map((f) => `create ${setOf(f)} hash:ip family ${f === 4 ? 'inet' : 'inet6'} timeout 0 maxelem ${this.#maxelem}\n`)
      .join('')
  }

  /** One restore input for a batch: `add` under -exist sets the timeout whether the entry is new or not. */
  blockInput(blocks: ReadonlyArray<{ address: string; family: 4 | 6; ttlS: number }>): string {
    return blocks.map((b) => `add ${setOf(b.family)} ${b.address} timeout ${b.ttlS}\n`).join('')
  }

  unblockInput(addresses: ReadonlyArray<{ address: string; family: 4 | 6 }>): string {
    return addresses.map((a) => `del ${setOf(a.family)} ${a.address}\n`).join('')
  }

  async start(): Promise<ActiveBlockEntry[]> {
    const steps: string[] = [`${this.#ipset} restore -exist <<EOF\n${this.createInput()}EOF`]
    for (const f of this.#families()) {
      for (const c of this.#chains) steps.push(`${this.#tables(f)} -w -C ${this.#rule(f, c).join(' ')} || ${this.#tables(f)} -w -I ${this.#rule(f, c).join(' ')}`)
    }
    this.#lastSetupScript = `${steps.join('\n')}\n`
    if (this.#dryRun) return []
    const r = await this.#run(this.#ipset, ['restore', '-exist'], this.createInput())
    if (r.code !== 0) throw toolError('PORTANOIA_IPSET_FAILED', 'ipset', 'creating sets', r)
    for (const f of this.#families()) {
      const tool = this.#tables(f)
      for (const c of this.#chains) {
        const check = await this.#run(tool, ['-w', '-C', ...this.#rule(f, c)])
        if (check.code === 0) continue
        // -C exits 1 when the rule is missing; anything else is a real failure.
        if (check.code !== 1) throw toolError('PORTANOIA_IPTABLES_FAILED', tool, `checking the ${c} rule`, check)
        const ins = await this.#run(tool, ['-w', '-I', ...this.#rule(f, c)])
        if (ins.code !== 0) throw toolError('PORTANOIA_IPTABLES_FAILED', tool, `inserting the ${c} rule`, ins)
      }
    }
    return await this.list()
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
    const input = this.blockInput(usable)
    const script = `${this.#ipset} restore -exist <<EOF\n${input}EOF\n`
    const addresses = usable.map((b) => b.address)
    if (this.#dryRun) return result(this.name, { applied: addresses, failed, script, dryRun: true })
    this.#counts.batches++
    const r = await this.#run(this.#ipset, ['restore', '-exist'], input)
    if (r.code !== 0) {
      // ipset restore stops at the first bad line; lines before it are applied. Every
      // line here was validated, so a failure is environmental (set missing, full):
      // report the whole batch, the policy engine treats it as not blocked.
      const error = `ipset exited with ${r.code}: ${firstLine(r.stderr)} (${toolHint('ipset', r.code, r.stderr)})`
      this.#counts.failed += addresses.length
      return result(this.name, { failed: [...failed, ...addresses.map((address) => ({ address, error }))], script })
    }
    this.#counts.applied += addresses.length
    return result(this.name, { applied: addresses, failed, script })
  }

  async unblock(addresses: readonly string[]): Promise<ResponderResult> {
    const { valid, failed } = checkAddresses(addresses)
    if (valid.length === 0) return result(this.name, { failed })
    if (this.#dryRun) {
      const input = this.unblockInput(valid)
      return result(this.name, { applied: valid.map((a) => a.address), failed, script: `${this.#ipset} restore -exist <<EOF\n${input}EOF\n`, dryRun: true })
    }
    let members: Set<string>
    try {
      members = new Set((await this.list()).map((b) => b.address))
    } catch (e) {
      const error = (e as Error).message
      return result(this.name, { failed: [...failed, ...valid.map((a) => ({ address: a.address, error }))] })
    }
    const present = valid.filter((a) => members.has(a.address))
    const absent = valid.filter((a) => !members.has(a.address)).map((a) => a.address)
    if (present.length === 0) return result(this.name, { failed, absent })
    // -exist: an entry that expired since the listing is not an error.
    const input = this.unblockInput(present)
    const script = `${this.#ipset} restore -exist <<EOF\n${input}EOF\n`
    const r = await this.#run(this.#ipset, ['restore', '-exist'], input)
    if (r.code !== 0) {
      const error = `ipset exited with ${r.code}: ${firstLine(r.stderr)}`
      return result(this.name, { failed: [...failed, ...present.map((a) => ({ address: a.address, error }))], absent, script })
    }
    this.#counts.unblocked += present.length
    return result(this.name, { applied: present.map((a) => a.address), failed, absent, script })
  }

  async list(): Promise<ActiveBlockEntry[]> {
    if (this.#dryRun) return []
    const out: ActiveBlockEntry[] = []
    for (const f of this.#families()) {
      const r = await this.#run(this.#ipset, ['list', setOf(f), '-output', 'save'])
      if (r.code !== 0) {
        if (MISSING_SET.test(r.stderr)) continue
        throw toolError('PORTANOIA_IPSET_FAILED', 'ipset', `listing ${setOf(f)}`, r)
      }
      out.push(...parseIpsetSave(r.stdout, f))
    }
    return out
  }

  async notify(_decisions: readonly Decision[]): Promise<ResponderResult> {
    return result(this.name)
  }

  /** Removes every copy of portanoia's rules, then its sets. Absent pieces are fine. */
  async uninstall(): Promise<ResponderResult> {
    const steps: string[] = []
    const failed: Array<{ address: string; error: string }> = []
    for (const f of this.#families()) {
      for (const c of this.#chains) steps.push(`while ${this.#tables(f)} -w -C ${this.#rule(f, c).join(' ')}; do ${this.#tables(f)} -w -D ${this.#rule(f, c).join(' ')}; done`)
    }
    for (const f of this.#families()) steps.push(`${this.#ipset} destroy ${setOf(f)}`)
    const script = `${steps.join('\n')}\n`
    if (this.#dryRun) return result(this.name, { script, dryRun: true })
    for (const f of this.#families()) {
      const tool = this.#tables(f)
      for (const c of this.#chains) {
        // Bounded: a rule inserted twice (e.g. by two older runs) is removed twice.
        for (let i = 0; i < 64; i++) {
          const check = await this.#run(tool, ['-w', '-C', ...this.#rule(f, c)])
          if (check.code !== 0) break
          const del = await this.#run(tool, ['-w', '-D', ...this.#rule(f, c)])
          if (del.code !== 0) {
            failed.push({ address: `${tool} ${c}`, error: firstLine(del.stderr) })
            break
          }
        }
      }
    }
    for (const f of this.#families()) {
      const r = await this.#run(this.#ipset, ['destroy', setOf(f)])
      if (r.code !== 0 && !MISSING_SET.test(r.stderr)) failed.push({ address: setOf(f), error: firstLine(r.stderr) })
    }
    return result(this.name, { failed, script })
  }

  stats(): Record<string, number> {
    return { ...this.#counts }
  }

  async close(): Promise<void> {
    // Blocks live (and expire) in the kernel.
  }
}
