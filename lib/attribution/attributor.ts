/**
 * The Attributor: answers "is this packet's source plausibly its sender, or forged?" for
 * every hit without slowing the hit path. It runs on the JS thread. Validators run once
 * per source and packet signature (arrival interface, link-layer source, TTL) and their
 * folded answer is cached (bounded, FIFO, `ttlMs`), so a scanner's thousand probes cost
 * one validation; a hit then costs a few lookups keyed by its record's words (no string
 * is built for it: lib/hit-key.ts, lib/word-map.ts; an IPv4-mapped source shares its
 * IPv4 form's tables), and the answer it gets is a shared frozen object (never a per-hit
 * allocation). New validations are rationed
 * (`checksPerSecond`): past the budget a hit is `unchecked`, so a flood of forged
 * sources cannot turn the checks into the hot path. A validator that answers with a
 * promise leaves the hit `pending` (plausible, evidence `pending`) until it settles;
 * then the answer is replaced and `onSettled` listeners hear the source.
 *
 * The fold rule (types.ts): verified beats everything — a hit that completed a
 * handshake, or any hit from a source that did within `verifiedMs` (bounded memory):
 * a source that was verified never becomes forged because of a later forged packet
 * claiming it (the evidence still names what that packet showed). Otherwise forged
 * needs a forged verdict from some validator; plausible otherwise.
 *
 * Invariants: every table is bounded (WordMap, FifoMap); nothing a validator throws reaches the
 * caller (it becomes `validator-failed` and one onError call); closed attributors
 * answer `unchecked`.
 */

import { UNCHECKED as PLAIN_UNCHECKED, VERIFIED as PLAIN_VERIFIED } from '../decode.js'
import { HIT_KEY_WORDS, hitKey, KEY_SOURCE, textKey } from '../hit-key.js'
import type { Hit } from '../types.js'
import { WordMap } from '../word-map.js'
import type { Attributed, Attribution, ValidationContext, Validator, ValidatorResult } from './types.js'

export interface AttributorOptions {
  /** The validators, in the order their evidence is listed. */
  validators: readonly Validator[]
  /** Milliseconds; default Date.now. */
  now?: () => number
  /** Cached answers (source × packet signature). Default 16,384. */
  maxEntries?: number
  /** How long an answer is reused, ms. Default 30 s (neighbour and route facts change). */
  ttlMs?: number
  /** New validations a second; beyond it hits are `unchecked`. Default 2000. */
  checksPerSecond?: number
  /** How long a source that completed a handshake stays verified, ms. Default 1 h. */
  verifiedMs?: number
  /** Verified sources remembered. Default 16,384. */
  maxVerified?: number
  /** A validator threw or rejected (said once per validator and error code by the caller's choice). */
  onError?: (validator: string, error: unknown) => void
  /** Runs once, last, when the attributor closes (a sensor detaching it). */
  onClose?: () => void
}

export interface AttributorStats {
  /** Hits answered. */
  hits: number
  /** Validations run (cache misses within the budget). */
  checks: number
  /** Hits answered `unchecked` because the budget was spent. */
  skipped: number
  /** Answers cached now, and those still pending. */
  cached: number
  pending: number
  /** Answers by attribution since start (hits). */
  verified: number
  plausible: number
  forged: number
}

/** The key parts a packet's answer depends on besides the source. */
interface Entry {
  src: string
  /** The source's generation when the answer was made (a validator that learned something bumps it). */
  generation: number
  result: Attributed
  /** result with attribution `verified` (a verified source's later packets); made on demand. */
  asVerified: Attributed | undefined
  /** result with the source's marks appended; made on demand, keyed by the marks array. */
  marked: Attributed | undefined
  markedWith: readonly string[] | undefined
  expiresAt: number
}

const DEFAULTS = {
  maxEntries: 16_384,
  ttlMs: 30_000,
  checksPerSecond: 2000,
  verifiedMs: 60 * 60_000,
  maxVerified: 16_384,
} as const

const NO_DETAIL: Readonly<Record<string, string | number>> = Object.freeze({})

function freeze(attribution: Attribution, evidence: readonly string[], detail: Readonly<Record<string, string | number>>, pending: boolean): Attributed {
  return Object.freeze({ attribution, evidence: Object.freeze([...evidence]), detail, pending })
}

/** The answer without an attributor, or when no check could run (decode.ts's, with its details). */
export const UNCHECKED: Attributed = freeze(PLAIN_UNCHECKED.attribution, PLAIN_UNCHECKED.evidence, NO_DETAIL, false)
/** A hit that is itself a completed handshake. */
export const VERIFIED: Attributed = freeze(PLAIN_VERIFIED.attribution, PLAIN_VERIFIED.evidence, NO_DETAIL, false)

/** What a hit's attribution is when nothing was attached to tell: verified or unchecked. */
export function unattributed(hit: Pick<Hit, 'verified'>): Attributed {
  return hit.verified ? VERIFIED : UNCHECKED
}

/** Folds validator results into one answer (types.ts: the fold rule, without the verified step). */
export function fold(results: ReadonlyArray<ValidatorResult | null>, pending: boolean): Attributed {
  const evidence: string[] = []
  let detail: Record<string, string | number> | undefined
  let forged = false
  for (const r of results) {
    if (r === null) continue
    if (r.verdict === 'forged') forged = true
    for (const name of r.evidence) if (!evidence.includes(name)) evidence.push(name)
    if (r.detail !== undefined) {
      detail ??= {}
      for (const [k, v] of Object.entries(r.detail)) if (!(k in detail) && (typeof v === 'string' || typeof v === 'number')) detail[k] = v
    }
  }
  // A forged verdict is final (no later answer can undo it): not pending.
  const open = pending && !forged
  if (open && !evidence.includes('pending')) evidence.push('pending')
  return freeze(forged ? 'forged' : 'plausible', evidence, detail === undefined ? NO_DETAIL : Object.freeze(detail), open)
}

function withAttribution(a: Attributed, attribution: Attribution): Attributed {
  return freeze(attribution, a.evidence, a.detail, a.pending)
}

/** The entry of every hit past the budget: never cached, its lazy fields are the same for all. */
const SKIPPED: Entry = { src: '', generation: 0, result: UNCHECKED, asVerified: undefined, marked: undefined, markedWith: undefined, expiresAt: -Infinity }

export class Attributor {
  readonly #validators: readonly Validator[]
  readonly #now: () => number
  readonly #ttlMs: number
  readonly #verifiedMs: number
  readonly #perSecond: number
  readonly #onError: (validator: string, error: unknown) => void
  readonly #onClose: () => void
  /** Answers by packet signature (the hit's whole key). */
  readonly #entries: WordMap<Entry>
  /** Source → when its verification runs out. */
  readonly #verified: WordMap<number>
  /** Source → extra evidence names (decoy grouping), with when they run out. */
  readonly #marks = new WordMap<{ names: readonly string[]; until: number }>(KEY_SOURCE, 4096)
  /** Source → generation, bumped when a validator's knowledge about it changed. */
  readonly #generations = new WordMap<number>(KEY_SOURCE, 4096)
  /** Scratch keys: attribute()'s hit, answerFor()'s, and the calls that name a source by its text. */
  readonly #key = new Int32Array(HIT_KEY_WORDS)
  readonly #answerKey = new Int32Array(HIT_KEY_WORDS)
  readonly #textKey = new Int32Array(HIT_KEY_WORDS)
  /**
   * The last hit attribute() answered, its answer and when: answerFor() of that hit at
   * the same time reuses it (until an answer settles or a mark changes).
   */
  #lastHit: Hit | null = null
  #lastAnswer: Attributed = UNCHECKED
  #lastAt = 0
  readonly #listeners: Array<(src: string, result: Attributed, hit: Hit) => void> = []
  #pendingCount = 0
  #budget: number
  #budgetAt = -Infinity
  #closed = false
  readonly #stats = { hits: 0, checks: 0, skipped: 0, verified: 0, plausible: 0, forged: 0 }

  constructor(options: AttributorOptions) {
    this.#validators = [...options.validators]
    this.#now = options.now ?? Date.now
    this.#ttlMs = options.ttlMs ?? DEFAULTS.ttlMs
    this.#verifiedMs = options.verifiedMs ?? DEFAULTS.verifiedMs
    this.#perSecond = options.checksPerSecond ?? DEFAULTS.checksPerSecond
    this.#budget = this.#perSecond
    this.#onError = options.onError ?? (() => {})
    this.#onClose = options.onClose ?? (() => {})
    this.#entries = new WordMap(HIT_KEY_WORDS, options.maxEntries ?? DEFAULTS.maxEntries)
    this.#verified = new WordMap(KEY_SOURCE, options.maxVerified ?? DEFAULTS.maxVerified)
  }

  get validators(): readonly Validator[] {
    return this.#validators
  }

  /**
   * The hit's attribution, from the cache; a miss within the budget runs the
   * validators (their synchronous part now, the rest settles later). Never throws.
   */
  attribute(hit: Hit): Attributed {
    if (this.#closed) return unattributed(hit)
    const key = this.#key
    // A source that is not an address has nothing to check (the policy counts it invalid).
    const keyed = hitKey(hit, key)
    for (const v of this.#validators) {
      if (v.observe === undefined) continue
      try {
        if (v.observe(hit) === true && keyed) {
          const g = this.#generations.find(key)
          if (g < 0) this.#generations.set(key, 1)
          else this.#generations.setValueAt(g, this.#generations.valueAt(g) + 1)
        }
      } catch (err) {
        this.#onError(v.name, err)
      }
    }
    const now = this.#now()
    if (hit.verified && keyed) {
      const verified = this.#verified
      const slot = verified.find(key)
      if (slot < 0) verified.set(key, now + this.#verifiedMs)
      else {
        verified.setValueAt(slot, now + this.#verifiedMs)
        verified.touch(slot)
      }
    }
    const out = keyed ? this.#answer(hit, key, now) : unattributed(hit)
    this.#lastHit = hit
    this.#lastAnswer = out
    this.#lastAt = now
    const stats = this.#stats
    stats.hits++
    if (out.attribution === 'verified') stats.verified++
    else if (out.attribution === 'forged') stats.forged++
    else stats.plausible++
    return out
  }

  /**
   * The answer attribute() gave (or would give) `hit`, without counting it or letting
   * the validators observe it again: for code that needs the details after the fact.
   */
  answerFor(hit: Hit): Attributed {
    if (this.#closed) return unattributed(hit)
    const now = this.#now()
    if (hit === this.#lastHit && now === this.#lastAt) return this.#lastAnswer
    const key = this.#answerKey
    return hitKey(hit, key) ? this.#answer(hit, key, now) : unattributed(hit)
  }

  #answer(hit: Hit, key: Int32Array, now: number): Attributed {
    if (hit.verified) return VERIFIED
    const g = this.#generations.find(key)
    const generation = g < 0 ? 0 : this.#generations.valueAt(g)
    const slot = this.#entries.find(key)
    let entry = slot < 0 ? undefined : this.#entries.valueAt(slot)
    if (entry === undefined || (!entry.result.pending && (entry.expiresAt <= now || entry.generation !== generation))) {
      entry = this.#check(hit, key, now, generation)
    }
    let out = entry.result
    const m = this.#marks.find(key)
    if (m >= 0) {
      const marks = this.#marks.valueAt(m)
      if (marks.until <= now) this.#marks.deleteSlot(m)
      else {
        if (entry.markedWith !== marks.names) {
          entry.marked = freeze(out.attribution, [...out.evidence, ...marks.names.filter((n) => !out.evidence.includes(n))], out.detail, out.pending)
          entry.markedWith = marks.names
        }
        out = entry.marked ?? out
      }
    }
    if (this.#verifiedKey(key, now)) {
      if (out === entry.result) return (entry.asVerified ??= withAttribution(out, 'verified'))
      return withAttribution(out, 'verified')
    }
    return out
  }

  /** Whether `src` completed a handshake within the verified memory. */
  isVerified(src: string, now = this.#now()): boolean {
    return textKey(src, this.#textKey) && this.#verifiedKey(this.#textKey, now)
  }

  #verifiedKey(key: Int32Array, now: number): boolean {
    const slot = this.#verified.find(key)
    if (slot < 0) return false
    if (this.#verified.valueAt(slot) > now) return true
    this.#verified.deleteSlot(slot)
    return false
  }

  /**
   * Adds evidence names to every answer about `src` for `ms` (decoy grouping marks its
   * members this way). Names already marked are kept.
   */
  mark(src: string, names: readonly string[], ms: number): void {
    const key = this.#textKey
    if (!textKey(src, key)) return
    this.#lastHit = null
    const now = this.#now()
    const old = this.#marks.get(key)
    const keep = old !== undefined && old.until > now ? old.names : []
    const merged = [...keep, ...names.filter((n) => !keep.includes(n))]
    this.#marks.set(key, { names: Object.freeze(merged), until: now + ms })
  }

  /** `fn(src, result, hit)` after a pending answer settled (`hit`: the packet that asked). Returns a function that unsubscribes. */
  onSettled(fn: (src: string, result: Attributed, hit: Hit) => void): () => void {
    this.#listeners.push(fn)
    return () => {
      const i = this.#listeners.indexOf(fn)
      if (i >= 0) this.#listeners.splice(i, 1)
    }
  }

  stats(): AttributorStats {
    return { ...this.#stats, cached: this.#entries.size, pending: this.#pendingCount }
  }

  /** Closes every validator; later hits are `unchecked`. Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    for (const v of this.#validators) {
      try {
        v.close?.()
      } catch (err) {
        this.#onError(v.name, err)
      }
    }
    this.#entries.clear()
    this.#onClose()
  }

  // -------------------------------------------------------------------------

  #check(hit: Hit, key: Int32Array, now: number, generation: number): Entry {
    if (now - this.#budgetAt >= 1000) {
      this.#budgetAt = now
      this.#budget = this.#perSecond
    }
    if (this.#budget <= 0) {
      this.#stats.skipped++
      // Not cached: the source is checked once the budget refills, and a flood past the
      // budget neither allocates per hit nor evicts the answers that were checked.
      return SKIPPED
    }
    this.#budget--
    this.#stats.checks++
    const src = hit.src
    const ctx: ValidationContext = {
      src,
      family: hit.family,
      dst: hit.dst,
      ifindex: hit.ifindex,
      interface: hit.interface,
      vlan: hit.vlan,
      srcMac: hit.srcMac,
      ttl: hit.ttl,
      hit,
    }
    const results: Array<ValidatorResult | null> = []
    const waiting: Array<Promise<void>> = []
    this.#validators.forEach((v, i) => {
      results.push(null)
      let r: ValidatorResult | null | Promise<ValidatorResult | null>
      try {
        r = v.validate(ctx)
      } catch (err) {
        this.#onError(v.name, err)
        results[i] = { evidence: ['validator-failed'], detail: { failedValidator: v.name } }
        return
      }
      if (r instanceof Promise) {
        waiting.push(
          r.then(
            (value) => {
              results[i] = value
            },
            (err: unknown) => {
              this.#onError(v.name, err)
              results[i] = { evidence: ['validator-failed'], detail: { failedValidator: v.name } }
            },
          ),
        )
      } else {
        results[i] = r
      }
    })
    const entry: Entry = {
      src,
      generation,
      result: fold(results, waiting.length > 0),
      asVerified: undefined,
      marked: undefined,
      markedWith: undefined,
      expiresAt: now + this.#ttlMs,
    }
    this.#entries.set(key, entry)
    if (waiting.length > 0) {
      this.#pendingCount++
      void Promise.all(waiting).then(() => {
        this.#pendingCount--
        if (this.#closed) return
        this.#lastHit = null
        const was = entry.result
        entry.result = fold(results, false)
        entry.asVerified = undefined
        entry.markedWith = undefined
        entry.expiresAt = this.#now() + this.#ttlMs
        // Listeners hear only answers that were open; a forged one was final already.
        if (!was.pending) return
        for (const fn of [...this.#listeners]) {
          try {
            fn(src, entry.result, hit)
          } catch (err) {
            this.#onError('onSettled', err)
          }
        }
      })
    }
    return entry
  }
}
