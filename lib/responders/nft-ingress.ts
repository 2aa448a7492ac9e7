/**
 * The early-drop half of the nftables responder (option `enforce: 'ingress' |
 * 'both'`): the shape of table `netdev portanoia` — the same sets as `inet
 * portanoia` (per origin and family, and the prefix sets when those are kept) and
 * one base chain per capture interface on the netdev `ingress` hook, named
 * `ingress_<device>`, that drops members before routing and conntrack — and the
 * comparison that keeps its sets a mirror of the inet table's. The inet table stays
 * the record (what `list`, the firewall sync and the grow-only writes read); the
 * netdev sets hold what it holds, with the time it has left. Netdev sets belong to
 * their table, so every write goes to both tables in one transaction; this module
 * only says what differs and what to write for it. Pure: no I/O, runs wherever the
 * responder runs. Invariant: a device name that reaches a script passed
 * deviceProblem(), and a mirrored element is an address or network nft printed
 * that was parsed back to canonical text, with a comment only when it is a fleet
 * tag written again by fleetComment().
 */
import type { NftSetState, NftTableState } from './nftables.js'

export const NFT_INGRESS_TABLE = 'netdev portanoia'

/** Where blocks are enforced: the inet input (and forward) hooks, the netdev ingress hook of the capture interfaces, or both. */
export const ENFORCE = ['input', 'ingress', 'both'] as const
export type Enforce = (typeof ENFORCE)[number]

/** Whether `enforce` drops in the netdev ingress chains. */
export function usesIngress(enforce: Enforce | undefined): boolean {
  return enforce === 'ingress' || enforce === 'both'
}

/**
 * Why `name` cannot name an ingress device, or null. Stricter than the kernel (which
 * takes any 1 to 15 bytes but '/', ':' and whitespace): letters, digits, '_', '.'
 * and '-', so the name is safe both in the chain's name and quoted as its device.
 */
export function deviceProblem(name: unknown): string | null {
  if (typeof name !== 'string') return 'an interface name is a string'
  if (name === 'any') return "'any' is no device: a netdev chain binds to one interface (name it with --interface)"
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(name)) return `${JSON.stringify(name)} is not an interface name portanoia can bind a chain to (1 to 15 letters, digits, '_', '.', '-'; not starting with '.' or '-')`
  return null
}

/** The ingress chain of a device. */
export function ingressChain(device: string): string {
  return `ingress_${device}`
}

/** What the netdev table must hold: its sets (with their types) and the devices whose chains drop members. */
export interface IngressShape {
  /** Each set, with its drop rule as written (`rule`) and as listed back (`sig`, see ruleSignature). */
  sets: ReadonlyArray<{ name: string; type: string; interval: boolean; rule: string; sig: string }>
  devices: readonly string[]
  priority: number
}

function setOk(have: NftSetState, want: IngressShape['sets'][number]): boolean {
  return have.type === want.type && have.flags.includes('timeout') && (!want.interval || have.flags.includes('interval'))
}

/**
 * What is missing or wrong in the netdev table (null: no table), each prefixed
 * 'netdev ' so no caller mistakes it for a set of the inet table: 'netdev table',
 * 'netdev set NAME', 'netdev set NAME (type)', 'netdev chain CHAIN', 'netdev rules
 * CHAIN', 'netdev chain CHAIN (not wanted)'. Device presence is not checked here (nft
 * JSON does not name a chain's device); a chain the kernel refused for an absent
 * device stays listed as missing.
 */
export function ingressProblems(state: NftTableState | null, shape: IngressShape): string[] {
  if (state === null) return ['netdev table']
  const out: string[] = []
  for (const s of shape.sets) {
    const have = state.sets.get(s.name)
    if (have === undefined) out.push(`netdev set ${s.name}`)
    else if (!setOk(have, s)) out.push(`netdev set ${s.name} (type)`)
  }
  const rules = shape.sets.map((s) => s.sig)
  const wanted = new Set(shape.devices.map(ingressChain))
  for (const chain of wanted) {
    const have = state.chains.get(chain)
    if (have === undefined || !chainOk(have, shape.priority)) {
      out.push(`netdev chain ${chain}`)
      continue
    }
    const list = state.rules.get(chain) ?? []
    if (!(list.length === rules.length && list.every((r, i) => r === rules[i]))) out.push(`netdev rules ${chain}`)
  }
  for (const name of state.chains.keys()) if (!wanted.has(name)) out.push(`netdev chain ${name} (not wanted)`)
  return out
}

function chainOk(have: { type?: string; hook?: string; prio?: number; policy?: string }, priority: number): boolean {
  return have.type === 'filter' && have.hook === 'ingress' && have.prio === priority && have.policy === 'accept'
}

/**
 * The transaction that brings the netdev table to `shape`: `main` (table, sets,
 * chains to rewrite or remove) and, per device whose chain must be added, its own
 * lines — kept apart because a kernel before 6.16 refuses a chain for a device that
 * does not exist (ENOENT), and one absent device must not keep the others from
 * their chains. A set of the wrong type makes the whole table be recreated in the
 * same transaction (it is a mirror: the caller fills it from the inet table right
 * after).
 */
export function ingressSetup(state: NftTableState | null, shape: IngressShape): { main: string[]; chains: Array<{ device: string; lines: string[] }> } {
  const t = NFT_INGRESS_TABLE
  const main: string[] = []
  let have = state
  if (have !== null && shape.sets.some((s) => { const h = have?.sets.get(s.name); return h !== undefined && !setOk(h, s) })) {
    main.push(`delete table ${t}`)
    have = null
  }
  main.push(`add table ${t}`)
  for (const s of shape.sets) main.push(`add set ${t} ${s.name} { type ${s.type}; flags ${s.interval ? 'interval,' : ''}timeout; }`)
  const wanted = new Set(shape.devices.map(ingressChain))
  const rules = shape.sets.map((s) => s.rule)
  const chains: Array<{ device: string; lines: string[] }> = []
  if (have !== null) {
    for (const name of have.chains.keys()) {
      if (!wanted.has(name)) main.push(`flush chain ${t} ${name}`, `delete chain ${t} ${name}`)
    }
  }
  for (const device of shape.devices) {
    const chain = ingressChain(device)
    const c = have?.chains.get(chain)
    const add = [`add chain ${t} ${chain} { type filter hook ingress device "${device}" priority ${shape.priority}; policy accept; }`, ...rules.map((r) => `add rule ${t} ${chain} ${r}`)]
    if (c === undefined) {
      chains.push({ device, lines: add })
    } else if (!chainOk(c, shape.priority)) {
      main.push(`flush chain ${t} ${chain}`, `delete chain ${t} ${chain}`)
      chains.push({ device, lines: add })
    } else {
      const list = have?.rules.get(chain) ?? []
      const sigs = shape.sets.map((s) => s.sig)
      if (!(list.length === sigs.length && list.every((r, i) => r === sigs[i]))) main.push(`flush chain ${t} ${chain}`, ...rules.map((r) => `add rule ${t} ${chain} ${r}`))
    }
  }
  return { main, chains }
}

/** One element to write into a netdev set: its text (address or network), time left and fleet comment. */
export interface MirrorElement {
  set: string
  key: string
  expiresInMs?: number
  comment?: string
}

/** What the netdev sets lack, hold shorter, or hold beyond the inet table, per set. */
export interface MirrorDiff {
  add: MirrorElement[]
  grow: MirrorElement[]
  remove: Array<{ set: string; key: string }>
}

// An element counts as "as long" when it outlives the record by this much less.
const SLACK_MS = 1000

/**
 * Compares the record (inet) with the mirror (netdev), set by set: an element the
 * mirror lacks is added with the record's time left, one it holds shorter is grown
 * (timeouts only grow), one the record does not hold is removed (an unblock that
 * reached only the inet table, an element added by hand to the netdev table: the
 * record decides, and a guarded address never stays in the early-drop path). A set
 * missing on either side is left alone (the shape repair comes first).
 */
export function mirrorDiff(record: NftTableState, mirror: NftTableState, sets: readonly string[]): MirrorDiff {
  const out: MirrorDiff = { add: [], grow: [], remove: [] }
  for (const set of sets) {
    const from = record.sets.get(set)
    const to = mirror.sets.get(set)
    if (from === undefined || to === undefined) continue
    const have = new Map(to.items.map((i) => [i.key, i]))
    const want = new Set<string>()
    for (const i of from.items) {
      want.add(i.key)
      const e: MirrorElement = { set, key: i.key }
      if (i.expiresInMs !== undefined) e.expiresInMs = i.expiresInMs
      if (i.comment !== undefined) e.comment = i.comment
      const h = have.get(i.key)
      if (h === undefined) out.add.push(e)
      else if (i.expiresInMs === undefined ? h.expiresInMs !== undefined : h.expiresInMs !== undefined && h.expiresInMs < i.expiresInMs - SLACK_MS) out.grow.push(e)
    }
    for (const i of to.items) if (!want.has(i.key)) out.remove.push({ set, key: i.key })
  }
  return out
}
