/**
 * The responders' public face: re-exports, and ResponderSet, which fans each call
 * out to several responders concurrently and isolates them from each other: a
 * responder that rejects, throws synchronously or returns garbage yields an ok:false
 * result for itself and never keeps the others from acting. `handle(decisions)` is
 * the daemon's one call per batch of decisions: block requests (from `action:
 * 'block'` decisions) go to every responder's block(), and the decisions to every
 * responder's notify(); firewall responders ignore notify and notifiers ignore block,
 * so both can be sent to all. Runs on the JS thread.
 */
import { PortanoiaError } from '../errors.js'
import type { Decision } from '../policy/decision.js'
import type { ActiveBlockEntry, BlockRequest, Responder, ResponderResult, UnblockOptions } from './types.js'

export type {
  ActiveBlockEntry,
  BlockRequest,
  Evidence,
  FirewallChange,
  FirewallWatch,
  FleetTag,
  Responder,
  ResponderResult,
  RunFn,
  RunResult,
  UnblockOptions,
} from './types.js'
export { EVIDENCE } from './types.js'
export { childEnv, createRun, defaultRun, defaultStream, netnsRun, netnsStream, type RunOptions, type StreamFn } from './run.js'
export { NftablesResponder, NFT_TABLE, NFT_SETS, parseNftTable, type NftablesOptions, type NftTableState } from './nftables.js'
export { ENFORCE, NFT_INGRESS_TABLE, type Enforce } from './nft-ingress.js'
export { IpsetResponder, IPSET4, IPSET6, parseIpsetSave, type IpsetOptions } from './ipset.js'
export { ExecResponder, splitCommand, expandArgv, type ExecOptions } from './exec.js'
export { WebhookResponder, type WebhookOptions } from './webhook.js'
export { JsonlResponder, type JsonlOptions } from './jsonl.js'

/** Block requests for the decisions that ask for one (`action: 'block'` with a TTL). */
export function blockRequests(decisions: readonly Decision[]): BlockRequest[] {
  const out: BlockRequest[] = []
  for (const d of decisions) {
    if (d.action !== 'block' || d.ttlMs === undefined) continue
    const r: BlockRequest = { address: d.src, family: d.family, ttlMs: d.ttlMs, evidence: d.verified ? 'verified' : 'spoofable' }
    if (d.upgrade === true) r.upgrade = true
    out.push(r)
  }
  return out
}

/** What start() found per responder. */
export interface StartOutcome {
  responder: string
  ok: boolean
  blocks: ActiveBlockEntry[]
  /** The error start() rejected with (a PortanoiaError with a hint, usually). */
  error?: unknown
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/** Runs `fn` so that a throw, a rejection or a non-result all become an ok:false result. */
async function isolated(
  r: Responder,
  fn: () => Promise<ResponderResult>,
  addresses: readonly string[],
): Promise<ResponderResult> {
  try {
    const out = await fn()
    if (out === null || typeof out !== 'object' || !Array.isArray(out.applied) || !Array.isArray(out.failed)) {
      throw new Error('responder returned no result')
    }
    return out
  } catch (e) {
    const error = `${r.name}: ${errorText(e)}`
    return { responder: r.name, ok: false, applied: [], failed: addresses.map((address) => ({ address, error })) }
  }
}

export class ResponderSet {
  readonly responders: readonly Responder[]

  constructor(responders: readonly Responder[]) {
    const names = new Set<string>()
    for (const r of responders) {
      if (names.has(r.name)) throw new PortanoiaError('PORTANOIA_BAD_OPTION', `two responders are named ${JSON.stringify(r.name)}: give one a distinct name`, { hint: "set the name option of one of them" })
      names.add(r.name)
    }
    this.responders = [...responders]
  }

  /** Starts all; one that fails is reported (ok: false) and the caller decides whether to go on without it. */
  async start(): Promise<StartOutcome[]> {
    return await Promise.all(
      this.responders.map(async (r): Promise<StartOutcome> => {
        try {
          return { responder: r.name, ok: true, blocks: await r.start() }
        } catch (error) {
          return { responder: r.name, ok: false, blocks: [], error }
        }
      }),
    )
  }

  async block(requests: readonly BlockRequest[]): Promise<ResponderResult[]> {
    const addrs = requests.map((q) => q.address)
    return await Promise.all(this.responders.map((r) => isolated(r, () => r.block(requests), addrs)))
  }

  async unblock(addresses: readonly string[], options?: UnblockOptions): Promise<ResponderResult[]> {
    return await Promise.all(this.responders.map((r) => isolated(r, () => r.unblock(addresses, options), addresses)))
  }

  async notify(decisions: readonly Decision[]): Promise<ResponderResult[]> {
    const srcs = decisions.map((d) => d.src)
    return await Promise.all(this.responders.map((r) => isolated(r, () => r.notify(decisions), srcs)))
  }

  /** block() for the decisions' block requests and notify() with the decisions, all responders at once. */
  async handle(decisions: readonly Decision[]): Promise<ResponderResult[]> {
    const requests = blockRequests(decisions)
    const srcs = decisions.map((d) => d.src)
    const calls: Array<Promise<ResponderResult>> = []
    for (const r of this.responders) {
      if (requests.length > 0) calls.push(isolated(r, () => r.block(requests), requests.map((q) => q.address)))
      if (decisions.length > 0) calls.push(isolated(r, () => r.notify(decisions), srcs))
    }
    // Firewall responders answer notify() and notifiers answer block() with an empty ok result: drop those.
    return (await Promise.all(calls)).filter((x) => x.applied.length > 0 || x.failed.length > 0 || x.script !== undefined)
  }

  /** Per responder, its blocks; a responder that cannot list is reported with its error. */
  async list(): Promise<Array<{ responder: string; ok: boolean; blocks: ActiveBlockEntry[]; error?: unknown }>> {
    return await Promise.all(
      this.responders.map(async (r) => {
        try {
          return { responder: r.name, ok: true, blocks: await r.list() }
        } catch (error) {
          return { responder: r.name, ok: false, blocks: [], error }
        }
      }),
    )
  }

  stats(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {}
    for (const r of this.responders) {
      try {
        if (r.stats !== undefined) out[r.name] = r.stats()
      } catch {
        // a broken counter must not break the stats event
      }
    }
    return out
  }

  /** Closes all; waits for every one, whatever the others do. */
  async close(): Promise<void> {
    await Promise.allSettled(this.responders.map(async (r) => await r.close()))
  }
}
