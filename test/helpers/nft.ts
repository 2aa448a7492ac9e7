/**
 * What the kernel holds in portanoia's nftables table inside a test namespace, for
 * assertions about blocks. Every reader throws when `nft` itself fails (not
 * installed, the namespace gone, a table missing where one must be), so "no table"
 * or "not blocked" is only ever concluded from an answer nft gave, never from a tool
 * that did not run. Runs argv through the namespace's exec; no shell.
 */
import type { NetnsHost } from '../../lib/lab/netns.js'

type Exec = NetnsHost['exec']

async function nft(exec: Exec, args: readonly string[]): Promise<string> {
  const r = await exec('nft', args)
  if (r.code !== 0) throw new Error(`nft ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

/** Whether `inet portanoia` exists in the namespace. */
export async function nftHasTable(exec: Exec): Promise<boolean> {
  return /^table inet portanoia$/m.test(await nft(exec, ['list', 'tables']))
}

/** The addresses in portanoia's sets (block4 and block6 by default), sorted. The table must exist. */
export async function nftElements(exec: Exec, sets: ReadonlyArray<'block4' | 'block6'> = ['block4', 'block6']): Promise<string[]> {
  const out: string[] = []
  for (const set of sets) {
    const doc = JSON.parse(await nft(exec, ['-j', 'list', 'set', 'inet', 'portanoia', set])) as {
      nftables: Array<{ set?: { elem?: Array<string | { elem: { val: string } }> } }>
    }
    const found = doc.nftables.find((x) => x.set !== undefined)?.set
    if (found === undefined) throw new Error(`nft -j list set inet portanoia ${set}: no set in the output`)
    for (const e of found.elem ?? []) out.push(typeof e === 'string' ? e : e.elem.val)
  }
  return out.sort()
}
