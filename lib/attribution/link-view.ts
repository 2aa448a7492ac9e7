/**
 * LinkView: the kernel facts the built-in validators ask about, for one network
 * namespace, over the native LinkFacts (native/link_wrap.*): the route to one address,
 * one neighbour entry, the links (what a bridge port, a VLAN tag or a macvlan belongs
 * to at layer 3), and "who answers for this address on this link?" — an ARP probe or a
 * neighbour solicitation whose answers are collected for `windowMs`. Runs on the JS
 * thread; every native call is synchronous and never waits for the network (the
 * answers are read by a timer). Bounded: the link table is re-read at most every
 * `linkTtlMs` (sooner when an index is unknown, at most once a second), at most
 * `maxAsks` questions are open, `asksPerSecond` new ones a second, and an answered
 * question is reused for `answerTtlMs`. A failed native call is reported once per
 * kind to `onError` and answered as "nothing known". "Nobody answers" is said only
 * after the question was asked twice and the second time had its own window
 * (`windowMs - retryMs`), however late the timer runs: a starved event loop must not
 * turn one lost request into silence, and silence into a forgery verdict.
 */

import { type NativeLink, type NativeLinkFacts, type NativeNeighbour, type NativeRoute, RTN } from '../binding.js'
import { FifoMap } from './fifo-map.js'

export interface LinkViewOptions {
  native: NativeLinkFacts
  now?: () => number
  /** How long answers to one question are gathered, ms. Default 600. */
  windowMs?: number
  /** Without an answer after this long the question is asked once more, ms. Default 200. */
  retryMs?: number
  /** Questions open at once. Default 256. */
  maxAsks?: number
  /** New questions a second. Default 100. */
  asksPerSecond?: number
  /** How long the answers to a question are reused, ms. Default 10 s. */
  answerTtlMs?: number
  /** How long the link table is trusted, ms. Default 10 s. */
  linkTtlMs?: number
  onError?: (what: string, error: unknown) => void
}

const ARPHRD_LOOPBACK = 772
const POLL_MS = 25
const UPPER_KINDS = new Set(['macvlan', 'macvtap', 'ipvlan', 'ipvtap'])

interface Ask {
  address: string
  ifindex: number
  macs: string[]
  sentAt: number
  retried: boolean
  /** When the second question went out. */
  retriedAt: number
  mac: string
  done: Promise<readonly string[] | null>
  resolve: (macs: readonly string[] | null) => void
}

export class LinkView {
  readonly #native: NativeLinkFacts
  readonly #now: () => number
  readonly #windowMs: number
  readonly #retryMs: number
  readonly #maxAsks: number
  readonly #perSecond: number
  readonly #answerTtlMs: number
  readonly #linkTtlMs: number
  readonly #onError: (what: string, error: unknown) => void
  #links = new Map<number, NativeLink>()
  #linksAt = -Infinity
  #arrival = new Map<string, ReadonlySet<number>>()
  readonly #asks = new Map<string, Ask>()
  readonly #answers = new FifoMap<string, { macs: readonly string[]; until: number }>(4096)
  #timer: NodeJS.Timeout | undefined
  #budget: number
  #budgetAt = -Infinity
  #closed = false
  readonly #failed = new Set<string>()

  constructor(options: LinkViewOptions) {
    this.#native = options.native
    this.#now = options.now ?? Date.now
    this.#windowMs = options.windowMs ?? 600
    this.#retryMs = options.retryMs ?? 200
    this.#maxAsks = options.maxAsks ?? 256
    this.#perSecond = options.asksPerSecond ?? 100
    this.#budget = this.#perSecond
    this.#answerTtlMs = options.answerTtlMs ?? 10_000
    this.#linkTtlMs = options.linkTtlMs ?? 10_000
    this.#onError = options.onError ?? (() => {})
  }

  /**
   * How this host would answer `address`: the route from `from` (the address the packet
   * was sent to, so rules that select by source apply), or, when that finds no way (a
   * `from` the rules do not know, a broadcast), the plain route. Null when the kernel
   * cannot be asked.
   */
  route(address: string, from?: string): NativeRoute | null {
    if (this.#closed) return null
    if (from !== undefined) {
      try {
        const r = this.#native.route(address, from)
        if (!NO_ROUTE_TYPES.has(r.type)) return r
      } catch {
        // EINVAL for a source that is not local (a broadcast destination): the plain route below.
      }
    }
    try {
      return this.#native.route(address)
    } catch (err) {
      this.#fail('route', err)
      return null
    }
  }

  neighbour(address: string, ifindex: number): NativeNeighbour | null {
    if (this.#closed) return null
    try {
      return this.#native.neighbour(address, ifindex)
    } catch (err) {
      this.#fail('neighbour', err)
      return null
    }
  }

  link(ifindex: number): NativeLink | undefined {
    this.#refreshLinks(!this.#links.has(ifindex))
    return this.#links.get(ifindex)
  }

  isLoopback(ifindex: number): boolean {
    return this.link(ifindex)?.type === ARPHRD_LOOPBACK
  }

  /**
   * The interfaces a frame seen on `ifindex` (with outer VLAN `vlan`) arrived on at
   * layer 3: the interface, the bridge or bond it is a port of (and theirs), the VLAN
   * device for its tag, and macvlan/ipvlan devices on any of them. A capture on every
   * interface reports a bridged frame on the port it was seen first, while routes name
   * the bridge: both are the same arrival.
   */
  arrivalSet(ifindex: number, vlan: number | undefined): ReadonlySet<number> {
    this.#refreshLinks(!this.#links.has(ifindex))
    const key = `${ifindex}/${vlan ?? ''}`
    const cached = this.#arrival.get(key)
    if (cached !== undefined) return cached
    const set = new Set<number>([ifindex])
    const addMasters = (start: number): void => {
      let cur = this.#links.get(start)
      for (let depth = 0; cur !== undefined && cur.master !== 0 && depth < 8; depth++) {
        set.add(cur.master)
        cur = this.#links.get(cur.master)
      }
    }
    addMasters(ifindex)
    for (let round = 0; round < 2; round++) {
      for (const l of this.#links.values()) {
        if (set.has(l.ifindex) || !set.has(l.link)) continue
        if ((l.kind === 'vlan' && l.vlan === vlan && vlan !== undefined) || UPPER_KINDS.has(l.kind)) {
          set.add(l.ifindex)
          addMasters(l.ifindex)
        }
      }
    }
    this.#arrival.set(key, set)
    return set
  }

  /**
   * Who answers for `address` on `ifindex`: the link-layer addresses heard within the
   * window (empty: nobody), or null when the question cannot be asked now (no hardware
   * address on the interface, the budget is spent, the view is closed).
   */
  ask(address: string, ifindex: number): Promise<readonly string[] | null> {
    const key = `${address}%${ifindex}`
    const now = this.#now()
    const known = this.#answers.get(key)
    if (known !== undefined && known.until > now) return Promise.resolve(known.macs)
    const open = this.#asks.get(key)
    if (open !== undefined) return open.done
    if (this.#closed || this.#asks.size >= this.#maxAsks) return Promise.resolve(null)
    if (now - this.#budgetAt >= 1000) {
      this.#budgetAt = now
      this.#budget = this.#perSecond
    }
    if (this.#budget <= 0) return Promise.resolve(null)
    const mac = this.link(ifindex)?.mac
    if (mac === undefined || mac === '00:00:00:00:00:00') return Promise.resolve(null)
    this.#budget--
    let resolve!: (macs: readonly string[] | null) => void
    const done = new Promise<readonly string[] | null>((r) => {
      resolve = r
    })
    const ask: Ask = { address, ifindex, macs: [], sentAt: now, retried: false, retriedAt: 0, mac, done, resolve }
    if (!this.#send(ask)) return Promise.resolve(null)
    this.#asks.set(key, ask)
    this.#schedule()
    return done
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#timer)
    for (const a of this.#asks.values()) a.resolve(null)
    this.#asks.clear()
    this.#native.close()
  }

  // -------------------------------------------------------------------------

  #send(ask: Ask): boolean {
    try {
      this.#native.probe(ask.address, ask.ifindex, ask.mac)
      return true
    } catch (err) {
      this.#fail('probe', err)
      return false
    }
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#asks.size === 0) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#poll()
      this.#schedule()
    }, POLL_MS)
    this.#timer.unref()
  }

  #poll(): void {
    if (this.#closed) return
    let answers: ReturnType<NativeLinkFacts['answers']> = []
    try {
      answers = this.#native.answers()
    } catch (err) {
      this.#fail('answers', err)
    }
    for (const a of answers) {
      for (const ask of this.#asks.values()) {
        if (ask.address !== a.address) continue
        // An answer on a port of the bridge we asked on is an answer on the bridge.
        if (a.ifindex !== ask.ifindex && this.#links.get(a.ifindex)?.master !== ask.ifindex) continue
        if (!ask.macs.includes(a.mac)) ask.macs.push(a.mac)
      }
    }
    const now = this.#now()
    for (const [key, ask] of this.#asks) {
      if (!ask.retried && ask.macs.length === 0 && now - ask.sentAt >= this.#retryMs) {
        // One lost request must not read as "nobody answers".
        ask.retried = true
        ask.retriedAt = now
        this.#send(ask)
        continue
      }
      const heard = ask.macs.length > 0 || (ask.retried && now - ask.retriedAt >= this.#windowMs - this.#retryMs)
      if (now - ask.sentAt >= this.#windowMs && heard) {
        this.#asks.delete(key)
        const macs = Object.freeze([...ask.macs].sort())
        this.#answers.set(key, { macs, until: now + this.#answerTtlMs })
        ask.resolve(macs)
      }
    }
  }

  #refreshLinks(missing: boolean): void {
    if (this.#closed) return
    const now = this.#now()
    const age = now - this.#linksAt
    if (age < this.#linkTtlMs && !(missing && age >= 1000)) return
    this.#linksAt = now
    try {
      this.#links = new Map(this.#native.links().map((l) => [l.ifindex, l]))
      this.#arrival = new Map()
    } catch (err) {
      this.#fail('links', err)
    }
  }

  #fail(what: string, err: unknown): void {
    const code = (err as { code?: unknown }).code
    const key = `${what}:${typeof code === 'string' ? code : 'error'}`
    if (this.#failed.has(key)) return
    this.#failed.add(key)
    this.#onError(what, err)
  }
}

/** Route types that mean "no way back": a packet claiming such a source cannot be answered. */
export const NO_ROUTE_TYPES: ReadonlySet<number> = new Set([RTN.unspec, RTN.blackhole, RTN.unreachable, RTN.prohibit, RTN.throw])
