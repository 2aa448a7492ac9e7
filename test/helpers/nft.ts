/**
 * What the kernel holds in portanoia's nftables table inside a test namespace, for
 * assertions about blocks. Every reader throws when `nft` itself fails (not
 * installed, the namespace gone, a table missing where one must be), so "no table"
 * or "not blocked" is only ever concluded from an answer nft gave, never from a tool
 * that did not run; the readers that may meet an absent table say so with null.
 * Runs argv through the namespace's exec; no shell.
 */
import type { NetnsHost } from '../../lib/lab/netns.js'

type Exec = NetnsHost['exec']

/** portanoia's sets: one per origin and family. */
export const NFT_TEST_SETS = ['verified4', 'verified6', 'spoofable4', 'spoofable6', 'fleet4', 'fleet6'] as const

async function nft(exec: Exec, args: readonly string[], input?: string): Promise<string> {
  const r = await exec('nft', args, input === undefined ? undefined : { input })
  if (r.code !== 0) throw new Error(`nft ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

/** Like nft(), but an absent table is an answer: null. */
async function nftOrMissing(exec: Exec, args: readonly string[]): Promise<string | null> {
  const r = await exec('nft', args)
  if (r.code === 0) return r.stdout
  if (/No such file or directory/.test(r.stderr)) return null
  throw new Error(`nft ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`)
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Whether `inet portanoia` exists in the namespace. */
export async function nftHasTable(exec: Exec): Promise<boolean> {
  return /^table inet portanoia$/m.test(await nft(exec, ['list', 'tables']))
}

/** One element as nft lists it. */
export interface NftElement {
  set: string
  address: string
  /** Seconds, as nft lists them. */
  timeout?: number
  expires?: number
  comment?: string
}

/** Every element of every set of `inet portanoia`; null when the table does not exist. */
export async function nftEntries(exec: Exec): Promise<NftElement[] | null> {
  const text = await nftOrMissing(exec, ['-j', 'list', 'table', 'inet', 'portanoia'])
  if (text === null) return null
  const doc = JSON.parse(text) as { nftables?: unknown[] }
  if (!Array.isArray(doc.nftables)) throw new Error(`nft printed no nftables array: ${text.slice(0, 200)}`)
  const out: NftElement[] = []
  for (const item of doc.nftables) {
    if (!isRecord(item) || !isRecord(item.set)) continue
    const set = String(item.set.name)
    for (const e of Array.isArray(item.set.elem) ? item.set.elem : []) {
      if (typeof e === 'string') out.push({ set, address: e })
      else if (isRecord(e) && isRecord(e.elem) && typeof e.elem.val === 'string') {
        const el: NftElement = { set, address: e.elem.val }
        if (typeof e.elem.timeout === 'number') el.timeout = e.elem.timeout
        if (typeof e.elem.expires === 'number') el.expires = e.elem.expires
        if (typeof e.elem.comment === 'string') el.comment = e.elem.comment
        out.push(el)
      }
    }
  }
  return out
}

/**
 * The addresses in portanoia's sets (every origin's by default, or the named ones),
 * sorted, each once. The table must exist.
 */
export async function nftElements(exec: Exec, sets: readonly string[] = NFT_TEST_SETS): Promise<string[]> {
  const all = await nftEntries(exec)
  if (all === null) throw new Error('nft -j list table inet portanoia: the table does not exist')
  return [...new Set(all.filter((e) => sets.includes(e.set)).map((e) => e.address))].sort()
}

/** The names of the sets and chains of `inet portanoia`, and its rule count (terse); null when the table does not exist. */
export async function nftShape(exec: Exec): Promise<{ sets: string[]; chains: string[]; rules: number } | null> {
  const text = await nftOrMissing(exec, ['-j', '-t', 'list', 'table', 'inet', 'portanoia'])
  if (text === null) return null
  const doc = JSON.parse(text) as { nftables: unknown[] }
  const shape = { sets: [] as string[], chains: [] as string[], rules: 0 }
  for (const item of doc.nftables) {
    if (!isRecord(item)) continue
    if (isRecord(item.set)) shape.sets.push(String(item.set.name))
    if (isRecord(item.chain)) shape.chains.push(String(item.chain.name))
    if (isRecord(item.rule)) shape.rules++
  }
  return shape
}

/** Runs an nft script in the namespace; a failure fails the test. */
export async function nftScript(exec: Exec, script: string): Promise<void> {
  await nft(exec, ['-f', '-'], script)
}
