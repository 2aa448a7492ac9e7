/**
 * The hop-count validator (hop-count filtering, Jin, Wang and Shin 2003): a sender's
 * distance in hops is stable, and a forger elsewhere on the network cannot know it.
 * The distance is learned from verified traffic only — the TTL of the ACK that
 * completed a handshake with a tripwire listener (the capture puts that ACK right
 * before its `connect`) — as initial TTL (the smallest of 32, 64, 128, 255 not below
 * the TTL seen) minus the TTL seen. A later packet claiming that address with another
 * initial TTL, or a distance off by more than one hop, is `hops:mismatch`; within one
 * hop, `hops:match`. Its source stays verified (the attributor's rule): the evidence
 * marks the packet, not the address. Tools that set their own TTL (nmap's raw probes
 * use 37 to 59) look like another distance, which is why nothing is learned from
 * packets that are not verified. Bounded: `maxSources` learned distances, the last
 * `maxAcks` ACK TTLs. Runs on the JS thread; `observe` is two Map operations per hit.
 */
import type { Hit } from '../types.js'
import { FifoMap } from './fifo-map.js'
import type { ValidationContext, Validator, ValidatorResult } from './types.js'

export interface HopCountOptions {
  now?: () => number
  /** How long a learned distance is trusted, ms. Default 1 h. */
  ttlMs?: number
  maxSources?: number
  maxAcks?: number
}

const INITIAL_TTLS = [32, 64, 128, 255]

/** The initial TTL a packet most likely left with: the smallest common one not below `ttl`. */
export function initialTtl(ttl: number): number {
  for (const t of INITIAL_TTLS) if (ttl <= t) return t
  return 255
}

interface Learned {
  initial: number
  hops: number
  until: number
}

export interface HopCountValidator extends Validator {
  /** The distance learned for `src`, if any. */
  learned(src: string): { initial: number; hops: number } | undefined
}

const MATCH: ValidatorResult = Object.freeze({ verdict: 'plausible', evidence: Object.freeze(['hops:match']) })

export function hopCountValidator(options: HopCountOptions = {}): HopCountValidator {
  const now = options.now ?? Date.now
  const ttlMs = options.ttlMs ?? 60 * 60_000
  const acks = new FifoMap<string, number>(options.maxAcks ?? 1024)
  const learned = new FifoMap<string, Learned>(options.maxSources ?? 4096)
  const live = (src: string): Learned | undefined => {
    const l = learned.get(src)
    if (l !== undefined && l.until <= now()) {
      learned.delete(src)
      return undefined
    }
    return l
  }
  return {
    name: 'hop-count',
    observe(hit: Hit): boolean {
      if (hit.proto !== 'tcp') return false
      if (hit.kind === 'connect') {
        const ttl = acks.get(`${hit.src} ${hit.srcPort} ${hit.dstPort}`)
        if (ttl === undefined) return false
        const initial = initialTtl(ttl)
        learned.delete(hit.src)
        learned.set(hit.src, { initial, hops: initial - ttl, until: now() + ttlMs })
        return true
      }
      if (hit.kind === 'ack' && hit.ttl > 0) acks.set(`${hit.src} ${hit.srcPort} ${hit.dstPort}`, hit.ttl)
      return false
    },
    validate(ctx: ValidationContext): ValidatorResult | null {
      if (ctx.ttl === 0) return null
      const l = live(ctx.src)
      if (l === undefined) return null
      const initial = initialTtl(ctx.ttl)
      const hops = initial - ctx.ttl
      if (initial === l.initial && Math.abs(hops - l.hops) <= 1) return MATCH
      return { verdict: 'forged', evidence: ['hops:mismatch'], detail: { learnedHops: l.hops, learnedInitialTtl: l.initial, hops, initialTtl: initial } }
    },
    learned(src) {
      const l = live(src)
      return l === undefined ? undefined : { initial: l.initial, hops: l.hops }
    },
  }
}
