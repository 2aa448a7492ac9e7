/**
 * What the daemon knows about each block beyond the kernel's element: who made it
 * (origin) and why (reason). The kernel is the truth about *what* is blocked and
 * for how long — `list` starts from the firewall's own listing — and this module
 * joins each element with the daemon's knowledge: an operator's block
 * (`portanoia block`), a block found in the kernel at start (adopted: its origin
 * did not survive the restart), a fleet ban (FleetPull), or the policy's own block
 * (the engine, verified or spoofable evidence). An element nobody here made is
 * `unknown` (added by hand, or by another tool in the same table). Pure apart from
 * the clock; runs on the main thread. Invariant: a mark never outlives its block —
 * marks expire with it and are dropped when the block is lifted or the policy
 * makes a block of its own on the address.
 */
import type { ActiveBlockEntry } from '../responders/types.js'

/** Who made a block. */
export type BlockOrigin = 'local' | 'operator' | 'fleet' | 'adopted' | 'unknown'

export const BLOCK_ORIGINS: readonly BlockOrigin[] = ['local', 'operator', 'fleet', 'adopted', 'unknown']

/** A kernel element with what the daemon knows about it. */
export interface BlockInfo extends ActiveBlockEntry {
  origin: BlockOrigin
  /**
   * Why: `verified` or `spoofable` (the policy's evidence; for adopted blocks, the
   * guess from their timeout), `operator`, the fleet ban's scenario, or `unknown`.
   */
  reason: string
}

interface Mark {
  origin: 'operator' | 'adopted'
  reason: string
  expiresAt: number
}

/** Blocks the policy did not make: the operator's and the adopted ones. */
export class BlockOrigins {
  readonly #marks = new Map<string, Mark>()
  readonly #now: () => number

  constructor(now: () => number = Date.now) {
    this.#now = now
  }

  /** Records a block on a canonical address; Infinity for one without expiry. */
  mark(address: string, origin: Mark['origin'], reason: string, expiresAt: number): void {
    this.#marks.set(address, { origin, reason, expiresAt })
  }

  /** The mark on `address` while its block lasts. */
  get(address: string): Readonly<Mark> | undefined {
    const m = this.#marks.get(address)
    if (m !== undefined && m.expiresAt <= this.#now()) {
      this.#marks.delete(address)
      return undefined
    }
    return m
  }

  delete(address: string): void {
    this.#marks.delete(address)
  }
}

/** What the join reads: each part from the component that owns it. */
export interface BlockKnowledge {
  origins: BlockOrigins
  /** The policy's blocks (PolicyEngine.activeBlocks()), by address. */
  local: ReadonlyMap<string, { verified: boolean }>
  /** Fleet bans applied here (FleetPull.active()), by address. */
  fleet: ReadonlyMap<string, { scenario: string }>
}

/** Each kernel element with its origin and reason, in the kernel's order. */
export function joinBlocks(kernel: readonly ActiveBlockEntry[], k: BlockKnowledge): BlockInfo[] {
  return kernel.map((e) => {
    const mark = k.origins.get(e.address)
    if (mark !== undefined) return { ...e, origin: mark.origin, reason: mark.reason }
    const ban = k.fleet.get(e.address)
    if (ban !== undefined) return { ...e, origin: 'fleet', reason: ban.scenario }
    const own = k.local.get(e.address)
    if (own !== undefined) return { ...e, origin: 'local', reason: own.verified ? 'verified' : 'spoofable' }
    return { ...e, origin: 'unknown', reason: 'unknown' }
  })
}

export interface BlockCounts {
  total: number
  byOrigin: Record<BlockOrigin, number>
  byReason: Record<string, number>
}

export function countBlocks(blocks: readonly BlockInfo[]): BlockCounts {
  const byOrigin = Object.fromEntries(BLOCK_ORIGINS.map((o) => [o, 0])) as Record<BlockOrigin, number>
  const byReason: Record<string, number> = {}
  for (const b of blocks) {
    byOrigin[b.origin]++
    byReason[b.reason] = (byReason[b.reason] ?? 0) + 1
  }
  return { total: blocks.length, byOrigin, byReason }
}
