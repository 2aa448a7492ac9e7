/**
 * An operator's block carried out against a firewall responder — shared by the
 * running daemon (Daemon.block, which then teaches its engine) and by `portanoia
 * block` when no daemon answers. Addresses come canonical; each is checked against
 * the guards first (a guarded one is refused with its guard and never reaches the
 * firewall); then the kernel's listing decides, because timeouts only grow: an
 * address held for at least as long is kept as it is, a shorter block is extended
 * (the responder's upgrade: delete and add in one transaction), the rest are added
 * in one batch. The guards are the synchronous ones (`guard`: snapshot and route)
 * and, when given, the kernel's peer check (`peers`: one batch for all the addresses,
 * off the JS thread, as the daemon asks it before the policy's blocks; when it cannot
 * answer, the operator's addresses are blocked all the same). Runs on the main
 * thread; the responder never rejects on block(), a listing that cannot be read
 * rejects.
 */
import { type Address, parseAddress } from '../policy/addr.js'
import type { GuardReason } from '../policy/guards.js'
import type { BlockRequest, Responder, ResponderResult } from '../responders/types.js'
import type { BlockOutcome } from './control.js'

/** Runs `fn`, turning a synchronous throw into a rejection. */
async function safely<T>(fn: () => Promise<T>): Promise<T> {
  return await fn()
}

export async function operatorBlock(
  fw: Pick<Responder, 'list' | 'block'>,
  guard: (address: string) => GuardReason | null,
  addresses: readonly string[],
  ttlMs: number,
  peers?: (addresses: readonly Address[]) => Promise<ReadonlyArray<GuardReason | null>>,
): Promise<BlockOutcome & { result: ResponderResult | null }> {
  const out: BlockOutcome & { result: ResponderResult | null } = { applied: [], kept: [], refused: [], failed: [], ttlMs, result: null }
  let candidates: string[] = []
  for (const a of addresses) {
    const g = guard(a)
    if (g === null) candidates.push(a)
    else out.refused.push({ address: a, reason: `guard:${g}` })
  }
  if (peers !== undefined && candidates.length > 0) {
    // The kernel's peer check, as for the policy's own blocks: one batch, off the JS thread.
    const parsed = candidates.map((a) => parseAddress(a))
    // A check that cannot answer does not stop the operator, who named the address
    // (the host view has reported the failure): fail safe is for forged sources.
    const answers = await safely(() => peers(parsed.filter((a): a is Address => a !== null))).catch((): ReadonlyArray<GuardReason | null> => [])
    let i = 0
    candidates = candidates.filter((a, k) => {
      if (parsed[k] === null) return true
      const g = answers[i++] ?? null
      if (g !== null) out.refused.push({ address: a, reason: `guard:${g}` })
      return g === null
    })
  }
  if (candidates.length === 0) return out
  const held = new Map((await fw.list()).map((e) => [e.address, e]))
  const requests: BlockRequest[] = []
  for (const a of candidates) {
    const e = held.get(a)
    if (e !== undefined && (e.expiresInMs === undefined || e.expiresInMs >= ttlMs)) {
      out.kept.push({ address: a, ...(e.expiresInMs !== undefined && { expiresInMs: e.expiresInMs }) })
    } else {
      requests.push({ address: a, family: parseAddress(a)?.family ?? 4, ttlMs, ...(e !== undefined && { upgrade: true }) })
    }
  }
  if (requests.length === 0) return out
  const r = await safely(() => fw.block(requests))
  out.result = r
  out.applied.push(...r.applied)
  out.failed.push(...r.failed)
  if (r.dryRun === true) out.dryRun = true
  return out
}
