// PolicyEngine with a fake clock: every reason code, thresholds and windows, the
// one-event-per-source-per-window rule, caps and the circuit breaker under a flood
// of 10,000 forged sources, adoption of kernel blocks, bounded memory, the live
// guard check (a fake kernel) right before every block, its asynchronous half
// (vetBlocks: blocks held for the caller's check, undone exactly when refused),
// transit hits, and lifting blocks that new facts guard.
import { describe, expect, it } from 'vitest'
import { REASON_CODES, type Decision, type ReasonCode } from '../../lib/policy/decision.js'
import { DEFAULT_POLICY, type PolicyConfig, resolvePolicyConfig } from '../../lib/policy/config.js'
import { PolicyEngine, type PolicyEngineOptions } from '../../lib/policy/engine.js'
import { type Address, formatAddress } from '../../lib/policy/addr.js'
import { Guards } from '../../lib/policy/guards.js'
import { Offences } from '../../lib/policy/offences.js'
import { decodeHit, HIT_FLAGS, HIT_RECORD_LAYOUT, HIT_RECORD_SIZE } from '../../lib/decode.js'
import { HIT_KEY, type Hit, RETAIN_HIT } from '../../lib/types.js'
import { HIT_KEY_WORDS, hitKey } from '../../lib/hit-key.js'

function hit(src: string, over: Partial<Hit> = {}): Hit {
  return {
    time: 0,
    timeNs: 0n,
    src,
    srcPort: 40000,
    dst: src.includes(':') ? 'fd52:43dd::1' : '198.18.0.1',
    dstPort: 2222,
    family: src.includes(':') && !src.startsWith('::ffff:') ? 6 : 4,
    proto: 'tcp',
    kind: 'syn',
    tcpFlags: 0x02,
    ttl: 64,
    verified: false,
    interface: 'eth0',
    ifindex: 2,
    fragment: false,
    ipOptions: false,
    extHeaders: false,
    truncated: false,
    ipId: 1,
    wireLen: 60,
    attribution: over.verified === true ? 'verified' : 'plausible',
    evidence: [],
    ...over,
  }
}

const connect = (src: string, over: Partial<Hit> = {}): Hit =>
  hit(src, { kind: 'connect', verified: true, ttl: 0, tcpFlags: 0x10, ...over })

/** 198.18.0.0/15 has 131,072 addresses; this walks them from 198.18.1.0. */
const forged = (i: number): string => `198.${18 + ((i + 256) >> 16)}.${((i + 256) >> 8) & 255}.${(i + 256) & 255}`

function setup(config: Partial<PolicyConfig> = {}, guards = new Guards(), extra: Pick<PolicyEngineOptions, 'liveGuard' | 'isLocal' | 'vetBlocks' | 'offences'> = {}) {
  const clock = { t: 1_700_000_000_000 }
  const engine = new PolicyEngine({ config, guards, now: () => clock.t, ...extra })
  const log: Decision[] = []
  const record = (ds: readonly Decision[]): Decision[] => {
    log.push(...ds)
    return [...ds]
  }
  return {
    engine,
    clock,
    log,
    observe: (h: Hit) => record(engine.observe(h)),
    tick: () => record(engine.tick()),
    advance: (ms: number) => {
      clock.t += ms
    },
  }
}

describe('config', () => {
  it('has documented defaults', () => {
    expect(resolvePolicyConfig()).toEqual(DEFAULT_POLICY)
    expect(DEFAULT_POLICY).toMatchObject({
      block: 'verified',
      blockTtlMs: 3_600_000,
      spoofableTtlMs: 300_000,
      threshold: 1,
      spoofableThreshold: 1,
      windowMs: 60_000,
      maxBlocksPerMinute: 60,
      maxActiveBlocks: 1000,
      dryRun: false,
    })
  })

  it('the spoofable TTL defaults to the shorter of 5 min and the verified TTL', () => {
    expect(resolvePolicyConfig({ blockTtlMs: 2000 })).toMatchObject({ blockTtlMs: 2000, spoofableTtlMs: 2000 })
    expect(resolvePolicyConfig({ blockTtlMs: 7_200_000 })).toMatchObject({ spoofableTtlMs: 300_000 })
  })

  it('names the field that is wrong', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ block: 'some' }, /policy\.block/],
      [{ threshold: 0 }, /policy\.threshold/],
      [{ windowMs: 1.5 }, /policy\.windowMs/],
      [{ maxActiveBlocks: '10' }, /policy\.maxActiveBlocks/],
      [{ dryRun: 'yes' }, /policy\.dryRun/],
      [{ maxBlocksPerMinut: 5 }, /policy\.maxBlocksPerMinut: unknown/],
      // A forged packet must not buy a longer block than a completed handshake.
      [{ spoofableTtlMs: 7_200_000 }, /policy\.spoofableTtlMs: 7200000 ms is longer than blockTtlMs/],
      [{ blockTtlMs: 60_000, spoofableTtlMs: 60_001 }, /policy\.spoofableTtlMs/],
    ]
    for (const [input, message] of bad) {
      expect(() => resolvePolicyConfig(input as Partial<PolicyConfig>)).toThrow(message)
      expect(() => new PolicyEngine({ config: input as Partial<PolicyConfig> })).toThrow(
        expect.objectContaining({ code: 'PORTANOIA_BAD_POLICY' }),
      )
    }
  })
})

describe('verified sources', () => {
  it('blocks on the first completed handshake, then stays quiet for the window', () => {
    const s = setup()
    const [d] = s.observe(connect('198.18.0.7'))
    expect(d).toMatchObject({
      action: 'block',
      reason: 'blocked',
      src: '198.18.0.7',
      family: 4,
      verified: true,
      ttlMs: 3_600_000,
      expiresAt: s.clock.t + 3_600_000,
      count: 1,
      verifiedCount: 1,
      ports: ['2222/tcp'],
      kinds: ['connect'],
      final: false,
      trigger: { dst: '198.18.0.1', dstPort: 2222, srcPort: 40000, proto: 'tcp', kind: 'connect', interface: 'eth0' },
    })
    expect(s.engine.isBlocked('198.18.0.7')).toBe(true)
    // The sensor sees packets before the firewall drops them: a blocked scanner keeps producing hits.
    for (let p = 1; p <= 20; p++) {
      s.advance(100)
      expect(s.observe(hit('198.18.0.7', { dstPort: 3000 + p }))).toEqual([])
    }
    s.advance(60_000)
    const [summary, ...rest] = s.tick()
    expect(rest).toEqual([])
    expect(summary).toMatchObject({ action: 'none', reason: 'already-blocked', final: true, count: 21, verified: true })
    expect(summary!.ports).toHaveLength(21)
    expect(summary!.kinds).toEqual(['syn', 'connect'])
    expect(s.tick()).toEqual([])
    // A new window opens with one already-blocked decision.
    const [again] = s.observe(hit('198.18.0.7'))
    expect(again).toMatchObject({ action: 'none', reason: 'already-blocked', count: 1, verified: false })
    expect(s.engine.stats().decisions.blocked).toBe(1)
  })

  it('escalates from spoofable-report-only to blocked within one window', () => {
    const s = setup()
    expect(s.observe(hit('198.18.0.8'))).toMatchObject([{ action: 'report', reason: 'spoofable-report-only', verified: false }])
    expect(s.observe(hit('198.18.0.8'))).toEqual([])
    expect(s.observe(connect('198.18.0.8'))).toMatchObject([{ action: 'block', reason: 'blocked', verified: true, count: 3 }])
  })

  it('applies the threshold to completed handshakes within a window', () => {
    const s = setup({ threshold: 3, windowMs: 10_000 })
    expect(s.observe(connect('198.18.0.9'))).toMatchObject([{ action: 'none', reason: 'below-threshold' }])
    s.advance(1000)
    expect(s.observe(connect('198.18.0.9'))).toEqual([])
    s.advance(9500) // the window (10 s from the first hit) has ended: counts start again
    const out = s.observe(connect('198.18.0.9'))
    expect(out).toMatchObject([
      { reason: 'below-threshold', final: true, count: 2 },
      { reason: 'below-threshold', final: false, count: 1 },
    ])
    s.observe(connect('198.18.0.9'))
    expect(s.observe(connect('198.18.0.9'))).toMatchObject([{ action: 'block', reason: 'blocked', verifiedCount: 3 }])
  })

  it('re-blocks after the block expires', () => {
    const s = setup({ blockTtlMs: 5000, windowMs: 1000 })
    s.observe(connect('fd52:43dd::7'))
    s.advance(5000)
    s.tick()
    expect(s.engine.isBlocked('fd52:43dd::7')).toBe(false)
    expect(s.observe(connect('fd52:43dd::7'))).toMatchObject([{ action: 'block', reason: 'blocked', family: 6 }])
  })

  it('reports IPv4-mapped sources as IPv4 and aggregates both spellings', () => {
    const s = setup()
    expect(s.observe(hit('::ffff:198.18.0.10'))).toMatchObject([{ src: '198.18.0.10', family: 4 }])
    expect(s.observe(connect('198.18.0.10'))).toMatchObject([{ src: '198.18.0.10', reason: 'blocked', count: 2 }])
  })

  it('counts invalid sources without deciding', () => {
    const s = setup()
    expect(s.observe(hit('198.18.0.1; reboot'))).toEqual([])
    expect(s.engine.stats().invalidSources).toBe(1)
  })
})

describe('guards', () => {
  const guards = () =>
    new Guards({
      interfaces: [{ address: '198.18.0.1', prefixLength: 24 }],
      gateways: ['198.18.0.254', 'fd52:43dd::fffe'],
      resolvers: ['198.18.0.53'],
      peers: ['198.18.0.22'],
      allowlist: ['198.19.0.0/16'],
    })

  it('never blocks a guarded source, even verified and with block all, and says why', () => {
    const s = setup({ block: 'all' }, guards())
    const cases: Array<[string, ReasonCode]> = [
      ['198.18.0.1', 'guard:self'],
      ['198.18.0.254', 'guard:gateway'],
      ['fd52:43dd::fffe', 'guard:gateway'],
      ['198.18.0.53', 'guard:resolver'],
      ['198.18.0.22', 'guard:peer'],
      ['198.19.3.4', 'guard:allowlist'],
      ['127.0.0.1', 'guard:special'],
      ['::1', 'guard:special'],
      ['fe80::1', 'guard:special'],
      ['224.0.0.1', 'guard:special'],
      ['198.18.0.255', 'guard:special'],
      ['::ffff:198.18.0.254', 'guard:gateway'],
      ['::ffff:198.18.0.22', 'guard:peer'],
    ]
    for (const [src, reason] of cases) {
      // Each case in its own window: both spellings of one address are one source.
      s.advance(60_000)
      s.tick()
      expect(s.observe(hit(src)), src).toMatchObject([{ action: 'none', reason }])
      expect(s.observe(connect(src, { dstPort: 2323 })), src).toEqual([])
      expect(s.engine.isBlocked(src)).toBe(false)
    }
    expect(s.log.every((d) => d.action === 'none')).toBe(true)
    expect(s.engine.stats().activeBlocks).toEqual({ verified: 0, spoofable: 0 })
  })

  it('follows guard updates while running', () => {
    const g = guards()
    const s = setup({ windowMs: 1000 }, g)
    expect(s.observe(connect('198.18.0.30'))).toMatchObject([{ reason: 'blocked' }])
    g.update({ peers: ['198.18.0.31'] })
    expect(s.observe(connect('198.18.0.31'))).toMatchObject([{ reason: 'guard:peer' }])
    // A source already being aggregated picks up the new guard on its next hit.
    expect(s.observe(hit('198.18.0.32'))).toMatchObject([{ reason: 'spoofable-report-only' }])
    g.update({ peers: ['198.18.0.32'] })
    // The refusal is said, though a report (which ranks higher) came before it.
    expect(s.observe(connect('198.18.0.32'))).toMatchObject([{ action: 'none', reason: 'guard:peer', verified: true }])
    expect(s.observe(connect('198.18.0.32'))).toEqual([])
    expect(s.engine.isBlocked('198.18.0.32')).toBe(false)
  })
})

describe('dry-run and block off', () => {
  it('dry-run reports would-be blocks with their TTL and blocks nothing', () => {
    const s = setup({ dryRun: true, block: 'all' })
    expect(s.observe(connect('198.18.0.40'))).toMatchObject([{ action: 'report', reason: 'dry-run', ttlMs: 3_600_000, verified: true }])
    expect(s.observe(hit('198.18.0.41'))).toMatchObject([{ action: 'report', reason: 'dry-run', ttlMs: 300_000, verified: false }])
    expect(s.log.some((d) => d.action === 'block')).toBe(false)
    // Simulated blocks make the rest of the run read like the real one would.
    s.advance(60_000)
    s.tick()
    expect(s.observe(connect('198.18.0.40'))).toMatchObject([{ action: 'none', reason: 'already-blocked' }])
  })

  it("block 'off' is the default policy in dry-run", () => {
    const s = setup({ block: 'off' })
    expect(s.observe(connect('198.18.0.42'))).toMatchObject([{ action: 'report', reason: 'dry-run', verified: true }])
    expect(s.observe(hit('198.18.0.43'))).toMatchObject([{ action: 'report', reason: 'spoofable-report-only' }])
  })
})

describe('spoofable sources with block all', () => {
  it('blocks with the short TTL, after the spoofable threshold', () => {
    const s = setup({ block: 'all', spoofableThreshold: 2 })
    expect(s.observe(hit('198.18.0.50'))).toMatchObject([{ action: 'none', reason: 'below-threshold' }])
    expect(s.observe(hit('198.18.0.50', { proto: 'udp', kind: 'udp', dstPort: 5353 }))).toMatchObject([
      { action: 'block', reason: 'blocked', verified: false, ttlMs: 300_000, ports: ['2222/tcp', '5353/udp'], kinds: ['syn', 'udp'] },
    ])
    expect(s.engine.stats().activeBlocks).toEqual({ verified: 0, spoofable: 1 })
  })

  it('upgrades a spoofable block when the source proves itself', () => {
    const s = setup({ block: 'all' })
    s.observe(hit('198.18.0.51'))
    expect(s.observe(connect('198.18.0.51'))).toMatchObject([
      { action: 'block', reason: 'blocked', verified: true, upgrade: true, ttlMs: 3_600_000 },
    ])
    expect(s.engine.stats().activeBlocks).toEqual({ verified: 1, spoofable: 0 })
    expect(s.observe(connect('198.18.0.51'))).toEqual([])
  })

  it('rate cap: opens the breaker once, suppresses per-source noise, closes when the rate falls', () => {
    const s = setup({ block: 'all', maxBlocksPerMinute: 3 })
    for (let i = 0; i < 3; i++) expect(s.observe(hit(forged(i)))).toMatchObject([{ action: 'block' }])
    expect(s.observe(hit(forged(3)))).toMatchObject([
      { action: 'report', reason: 'rate-capped', breaker: 'open', src: forged(3) },
    ])
    for (let i = 4; i < 20; i++) expect(s.observe(hit(forged(i)))).toEqual([])
    expect(s.engine.stats()).toMatchObject({ breaker: 'open', breakerCause: 'rate-capped', breakerTrips: 1 })
    // Verified evidence is never capped.
    expect(s.observe(connect('198.19.0.9'))).toMatchObject([{ action: 'block', verified: true }])
    s.advance(30_000)
    expect(s.tick()).toEqual([])
    s.advance(31_000)
    expect(s.tick()).toMatchObject([
      { action: 'none', reason: 'rate-capped', breaker: 'closed', src: forged(3), suppressed: { sources: 16, hits: 16 } },
    ])
    expect(s.observe(hit(forged(100)))).toMatchObject([{ action: 'block', reason: 'blocked' }])
  })

  it('active cap: opens the breaker, closes after blocks expire', () => {
    const s = setup({ block: 'all', maxActiveBlocks: 4, maxBlocksPerMinute: 100, spoofableTtlMs: 120_000 })
    for (let i = 0; i < 4; i++) s.observe(hit(forged(i)))
    expect(s.observe(hit(forged(4)))).toMatchObject([{ action: 'report', reason: 'active-cap', breaker: 'open' }])
    expect(s.observe(hit(forged(5)))).toEqual([])
    s.advance(61_000)
    // Pressure is gone but all four blocks are still in force: stays open.
    expect(s.tick().filter((d) => d.breaker)).toEqual([])
    s.advance(60_000)
    expect(s.tick().filter((d) => d.breaker)).toMatchObject([{ reason: 'active-cap', breaker: 'closed' }])
    expect(s.engine.stats().activeBlocks.spoofable).toBe(0)
  })

  it('10,000 forged sources never exceed the caps; the breaker opens and closes once; a verified source is still blocked', () => {
    const s = setup({ block: 'all' })
    const { maxBlocksPerMinute, maxActiveBlocks } = DEFAULT_POLICY
    let maxActive = 0
    let verifiedBlocked: Decision | undefined
    // 10,000 sources over 100 s (100 per second), three packets each.
    for (let i = 0; i < 10_000; i++) {
      s.advance(10)
      for (let k = 0; k < 3; k++) s.observe(hit(forged(i), { dstPort: 1000 + k }))
      if (i === 5000) verifiedBlocked = s.observe(connect('fd52:43dd::beef'))[0]
      if (i % 500 === 0) maxActive = Math.max(maxActive, s.engine.stats().activeBlocks.spoofable)
    }
    expect(verifiedBlocked).toMatchObject({ action: 'block', reason: 'blocked', verified: true })
    const blocks = s.log.filter((d) => d.action === 'block' && !d.verified)
    expect(blocks.length).toBeLessThanOrEqual(maxBlocksPerMinute)
    expect(maxActive).toBeLessThanOrEqual(maxActiveBlocks)
    // Within any 60 s, no more new blocks than the cap.
    const times = blocks.map((d) => d.time)
    for (const t of times) expect(times.filter((u) => u > t - 60_000 && u <= t).length).toBeLessThanOrEqual(maxBlocksPerMinute)
    // Output stayed bounded: nowhere near one event per packet or per source. Each
    // blocked source has its block and its end-of-window summary; the rest are the
    // breaker opening and closing and the verified block.
    s.advance(60_000)
    s.tick()
    expect(s.log.filter((d) => d.final).length).toBe(blocks.length)
    expect(s.log.length).toBe(2 * blocks.length + 3)
    const breaker = s.log.filter((d) => d.breaker !== undefined)
    expect(breaker.map((d) => d.breaker)).toEqual(['open', 'closed'])
    expect(breaker[0]).toMatchObject({ reason: 'rate-capped' })
    expect(breaker[1]!.suppressed!.hits).toBe(30_000 - 3 * maxBlocksPerMinute - 1)
    expect(s.engine.isBlocked('fd52:43dd::beef')).toBe(true)
    expect(s.engine.stats().activeBlocks.verified).toBe(1)
  })
})

describe('report cap', () => {
  it('100,000 forged sources in the default mode cost 600 reports and two breaker decisions, with the totals', () => {
    const guards = new Guards({ gateways: ['198.19.255.254'] })
    const s = setup({}, guards)
    const cap = DEFAULT_POLICY.maxReportsPerMinute
    expect(cap).toBe(600)
    const n = 100_000
    let verified: Decision[] = []
    let gateway: Decision[] = []
    let statsOpen: ReturnType<typeof s.engine.stats> | undefined
    // 1000 new forged sources a second for 100 s, one SYN each.
    for (let i = 0; i < n; i++) {
      if (i % 10 === 0) s.advance(10)
      s.observe(hit(forged(i)))
      if (i === 50_000) {
        verified = s.observe(connect('fd52:43dd::beef'))
        gateway = s.observe(hit('198.19.255.254'))
        statsOpen = s.engine.stats()
      }
    }
    // Never suppressed: a verified source, and a forged packet claiming the gateway.
    expect(verified).toMatchObject([{ action: 'block', reason: 'blocked', verified: true }])
    expect(gateway).toMatchObject([{ action: 'none', reason: 'guard:gateway' }])
    expect(statsOpen).toMatchObject({ reportBreaker: 'open', reportBreakerTrips: 1, breaker: 'closed' })
    const reports = s.log.filter((d) => d.reason === 'spoofable-report-only')
    expect(reports).toHaveLength(cap)
    s.advance(61_000)
    s.tick()
    const breaker = s.log.filter((d) => d.reason === 'report-capped')
    expect(breaker.map((d) => [d.action, d.breaker])).toEqual([
      ['report', 'open'],
      ['none', 'closed'],
    ])
    // Every forged source beyond the cap and the one that tripped it is in the totals.
    expect(breaker[1]!.suppressed).toEqual({ sources: n - cap - 1, hits: n - cap - 1 })
    expect(s.engine.stats()).toMatchObject({ reportBreaker: 'closed', suppressedSources: n - cap - 1 })
    // 100,000 sources, 604 decisions: 600 reports, open, close, the block, the guard.
    expect(s.log).toHaveLength(cap + 4)
    // Closed again: the next forged source is reported on its own.
    expect(s.observe(hit('198.18.0.77'))).toMatchObject([{ reason: 'spoofable-report-only' }])
  })

  it('a suppressed source that then completes a handshake is blocked', () => {
    const s = setup({ maxReportsPerMinute: 2 })
    s.observe(hit('198.18.0.2'))
    s.observe(hit('198.18.0.3'))
    expect(s.observe(hit('198.18.0.4'))).toMatchObject([{ reason: 'report-capped', breaker: 'open' }])
    expect(s.observe(hit('198.18.0.5'))).toEqual([])
    expect(s.observe(connect('198.18.0.5'))).toMatchObject([{ action: 'block', reason: 'blocked', verified: true, count: 2 }])
  })
})

describe('the kernel is the truth', () => {
  it('a handshake from a source whose block the firewall confirmed proves the block missing: reapplied once, with the time left', () => {
    const s = setup()
    const t0 = s.clock.t
    expect(s.observe(connect('198.18.0.40', { time: t0 }))).toMatchObject([{ action: 'block', reason: 'blocked', ttlMs: 3_600_000 }])
    // Until the firewall confirms, a second handshake is the same scan racing the block.
    s.advance(5000)
    expect(s.observe(connect('198.18.0.40', { time: s.clock.t }))).toEqual([])
    s.engine.confirm('198.18.0.40')
    const confirmed = s.clock.t
    // Within the margin: a handshake accepted just after the block went in is not proof.
    s.advance(500)
    expect(s.observe(connect('198.18.0.40', { time: confirmed + 500 }))).toEqual([])
    s.advance(30_000)
    const d = s.observe(connect('198.18.0.40', { time: s.clock.t }))
    expect(d).toMatchObject([{ action: 'block', reason: 'reapplied', verified: true, expiresAt: t0 + 3_600_000 }])
    expect(d[0]!.ttlMs).toBe(Math.ceil((t0 + 3_600_000 - s.clock.t) / 1000) * 1000)
    // Once per confirmation: the next handshake before the firewall confirms again is not news.
    s.advance(2000)
    expect(s.observe(connect('198.18.0.40', { time: s.clock.t }))).toEqual([])
    // A SYN (not a handshake) from a blocked source proves nothing.
    s.engine.confirm('198.18.0.40')
    s.advance(2000)
    expect(s.observe(hit('198.18.0.40', { time: s.clock.t }))).toEqual([])
  })

  it('confirmedBlocks() lists only confirmed blocks; setExpiry() takes the kernel\'s end', () => {
    const s = setup({ block: 'all' })
    s.observe(connect('198.18.0.41'))
    s.observe(hit('198.18.0.42'))
    expect(s.engine.confirmedBlocks()).toEqual([])
    s.engine.confirm('198.18.0.42')
    expect(s.engine.confirmedBlocks()).toEqual([{ src: '198.18.0.42', family: 4, verified: false, expiresAt: s.clock.t + 300_000, confirmedAt: s.clock.t }])
    s.engine.setExpiry('198.18.0.42', s.clock.t + 1000)
    s.advance(1001)
    expect(s.engine.isBlocked('198.18.0.42')).toBe(false)
    // Adopted blocks are in the kernel: confirmed.
    s.engine.adopt([{ src: '198.18.0.43', expiresInMs: 60_000, verified: true }])
    expect(s.engine.confirmedBlocks().map((b) => b.src)).toEqual(['198.18.0.43'])
  })
})

describe('adopt', () => {
  it('adopts kernel blocks: already-blocked, spoofable ones count against the cap, guarded ones are reported', () => {
    const guards = new Guards({ gateways: ['198.18.0.254'] })
    const s = setup({ block: 'all', maxActiveBlocks: 2 }, guards)
    const result = s.engine.adopt([
      { src: '198.18.0.60', expiresInMs: 1_800_000, timeoutMs: 3_600_000 },
      { src: '198.18.0.61', expiresInMs: 100_000, timeoutMs: 300_000 },
      { src: '::ffff:198.18.0.62', expiresInMs: 200_000 },
      { src: '198.18.0.254', expiresInMs: 200_000, verified: false },
      { src: 'nonsense', expiresInMs: 1 },
      { src: '198.18.0.63' },
    ])
    expect(result).toEqual({ adopted: 5, invalid: ['nonsense'], guarded: [{ src: '198.18.0.254', reason: 'gateway' }] })
    expect(s.engine.stats().activeBlocks).toEqual({ verified: 2, spoofable: 3 })
    expect(s.observe(hit('198.18.0.60'))).toMatchObject([{ reason: 'already-blocked', expiresAt: s.clock.t + 1_800_000 }])
    expect(s.observe(hit('198.18.0.63'))).toMatchObject([{ reason: 'already-blocked' }])
    expect(s.log.at(-1)!.expiresAt).toBeUndefined()
    expect(s.observe(hit('198.18.0.64'))).toMatchObject([{ reason: 'active-cap', breaker: 'open' }])
    expect(s.engine.activeBlocks().map((b) => b.src).sort()).toEqual([
      '198.18.0.254',
      '198.18.0.60',
      '198.18.0.61',
      '198.18.0.62',
      '198.18.0.63',
    ])
    expect(s.engine.release('198.18.0.254')).toBe(true)
    expect(s.engine.release('198.18.0.254')).toBe(false)
  })
})

describe('bounded memory', () => {
  it('caps tracked sources, evicting the oldest, and counts evictions', () => {
    const s = setup({ maxTrackedSources: 100 })
    for (let i = 0; i < 1000; i++) s.observe(hit(forged(i)))
    const st = s.engine.stats()
    expect(st.trackedSources).toBe(100)
    expect(st.evictions).toBe(900)
  })

  it('a flood of forged sources cannot evict a verified source being counted', () => {
    const s = setup({ maxTrackedSources: 100, threshold: 2 })
    expect(s.observe(connect('fd52:43dd::5'))).toMatchObject([{ reason: 'below-threshold' }])
    for (let i = 0; i < 5000; i++) s.observe(hit(forged(i)))
    expect(s.observe(connect('fd52:43dd::5'))).toMatchObject([{ reason: 'blocked', verifiedCount: 2 }])
  })

  it('keeps at most maxPortsPerSource ports per source and says so', () => {
    const s = setup({ maxPortsPerSource: 3, block: 'off' })
    for (let p = 0; p < 10; p++) s.observe(hit('198.18.0.70', { dstPort: 100 + p }))
    s.advance(60_000)
    const [summary] = s.tick()
    expect(summary).toMatchObject({ ports: ['100/tcp', '101/tcp', '102/tcp'], portsTruncated: true, count: 10, final: true })
  })

  it('drops ended windows on tick', () => {
    const s = setup()
    for (let i = 0; i < 500; i++) s.observe(hit(forged(i)))
    expect(s.engine.stats().trackedSources).toBe(500)
    s.advance(60_000)
    s.tick()
    expect(s.engine.stats().trackedSources).toBe(0)
  })
})

describe('live guard check, right before a block', () => {
  /** A fake kernel: which addresses it guards, and every address it was asked about. */
  function kernel(answers: Record<string, 'peer' | 'self'>) {
    const asked: string[] = []
    return {
      asked,
      liveGuard: (a: Address) => {
        const text = formatAddress(a)
        asked.push(text)
        return answers[text] ?? null
      },
    }
  }

  it('asks about the one address before each block, not per hit; a refusal is a guard decision', () => {
    const k = kernel({ '198.18.0.40': 'peer', '198.18.0.42': 'self' })
    const s = setup({ block: 'all' }, new Guards(), { liveGuard: k.liveGuard })
    expect(s.observe(hit('198.18.0.40'))).toMatchObject([{ action: 'none', reason: 'guard:peer', verified: false }])
    expect(s.observe(hit('198.18.0.40', { dstPort: 2323 }))).toEqual([])
    expect(s.observe(connect('198.18.0.42'))).toMatchObject([{ action: 'none', reason: 'guard:self', verified: true }])
    expect(s.observe(hit('198.18.0.41'))).toMatchObject([{ action: 'block', reason: 'blocked' }])
    expect(k.asked).toEqual(['198.18.0.40', '198.18.0.42', '198.18.0.41'])
    expect(s.engine.isBlocked('198.18.0.40')).toBe(false)
    expect(s.engine.isBlocked('198.18.0.42')).toBe(false)
    expect(s.engine.stats()).toMatchObject({ liveChecks: 3, liveRefusals: 2, activeBlocks: { verified: 0, spoofable: 1 } })
  })

  it('is not asked when no block is on the table', () => {
    const k = kernel({})
    const s = setup({ spoofableThreshold: 3 }, new Guards(), { liveGuard: k.liveGuard })
    s.observe(hit('198.18.0.43'))
    s.observe(hit('198.18.0.43'))
    s.observe(hit('198.18.0.43'))
    expect(s.log.map((d) => d.reason)).toEqual(['below-threshold', 'spoofable-report-only'])
    expect(k.asked).toEqual([])
  })

  it('says a refusal of an upgrade, though it ranks below the report before it', () => {
    const answers: Record<string, 'peer'> = {}
    const k = kernel(answers)
    const s = setup({}, new Guards(), { liveGuard: k.liveGuard })
    expect(s.observe(hit('198.18.0.44'))).toMatchObject([{ reason: 'spoofable-report-only' }])
    answers['198.18.0.44'] = 'peer'
    expect(s.observe(connect('198.18.0.44'))).toMatchObject([{ action: 'none', reason: 'guard:peer', verified: true }])
    expect(s.engine.isBlocked('198.18.0.44')).toBe(false)
  })
})

describe('vetted blocks: the caller\'s asynchronous peer check (vetBlocks)', () => {
  const vetted = (config: Partial<PolicyConfig> = {}, guards = new Guards()) => setup(config, guards, { vetBlocks: true })
  const one = (ds: readonly Decision[]): Decision => {
    expect(ds).toHaveLength(1)
    return ds[0] as Decision
  }

  it('a block that passes is emitted as it was decided, and counted once', () => {
    const s = vetted({ block: 'all' })
    const d = one(s.observe(hit('198.18.0.70')))
    expect(d).toMatchObject({ action: 'block', reason: 'blocked' })
    expect(s.engine.vet(d, null)).toEqual([d])
    expect(s.engine.isBlocked('198.18.0.70')).toBe(true)
    expect(s.engine.stats()).toMatchObject({ decisions: { blocked: 1, 'guard:peer': 0 }, activeBlocks: { spoofable: 1 }, spoofableBlocksLastMinute: 1 })
  })

  it('a refused block is undone in every table and counter, a guard:peer decision stands in for it, and it is remembered', () => {
    const s = vetted({ block: 'all' })
    const d = one(s.observe(hit('198.18.0.71')))
    const [g, ...rest] = s.engine.vet(d, 'peer')
    expect(rest).toEqual([])
    expect(g).toMatchObject({ action: 'none', reason: 'guard:peer', src: '198.18.0.71', verified: false, count: 1, final: false })
    expect(g).not.toHaveProperty('ttlMs')
    expect(g).not.toHaveProperty('expiresAt')
    expect(s.engine.isBlocked('198.18.0.71')).toBe(false)
    expect(s.engine.stats()).toMatchObject({
      decisions: { blocked: 0, 'guard:peer': 1 },
      activeBlocks: { verified: 0, spoofable: 0 },
      spoofableBlocksLastMinute: 0,
      liveRefusals: 1,
    })
    // Remembered like a live guard's refusal: the next hits say nothing new until the facts change.
    expect(s.observe(hit('198.18.0.71', { dstPort: 2323 }))).toEqual([])
    s.engine.guards.update({ gateways: ['198.18.9.9'] })
    expect(one(s.observe(hit('198.18.0.71', { dstPort: 2324 })))).toMatchObject({ action: 'block', reason: 'blocked' })
  })

  it('a refused block gives its place in the rate cap back', () => {
    const s = vetted({ block: 'all', maxBlocksPerMinute: 2 })
    const a = one(s.observe(hit('198.18.0.72')))
    one(s.observe(hit('198.18.0.73')))
    s.engine.vet(a, 'peer')
    // Two blocks a minute: the refused one does not count, so a third source is blocked.
    expect(one(s.observe(hit('198.18.0.74')))).toMatchObject({ action: 'block', reason: 'blocked' })
    expect(one(s.observe(hit('198.18.0.75')))).toMatchObject({ reason: 'rate-capped', breaker: 'open' })
  })

  it('a refused verified upgrade puts the spoofable block it replaced back in force', () => {
    const s = vetted({ block: 'all' })
    const first = one(s.observe(hit('198.18.0.76')))
    s.engine.vet(first, null)
    s.engine.confirm('198.18.0.76')
    const up = one(s.observe(connect('198.18.0.76')))
    expect(up).toMatchObject({ action: 'block', reason: 'blocked', verified: true, upgrade: true })
    expect(s.engine.vet(up, 'peer')).toMatchObject([{ action: 'none', reason: 'guard:peer', verified: true }])
    expect(s.engine.activeBlocks()).toMatchObject([{ src: '198.18.0.76', verified: false }])
    expect(s.engine.stats().decisions).toMatchObject({ blocked: 1, 'guard:peer': 1 })
  })

  it('a refused verified block is no offence: the escalation ladder is where it was', () => {
    const offences = new Offences()
    const H = 3_600_000
    const s = setup({ blockTtlLadderMs: [H, 24 * H], windowMs: 1000 }, new Guards(), { vetBlocks: true, offences })
    const first = one(s.observe(connect('198.18.0.92')))
    expect(first).toMatchObject({ reason: 'blocked', offence: 1, ttlMs: H })
    expect(s.engine.vet(first, null)).toEqual([first])
    const before = offences.get('198.18.0.92')
    expect(before).toMatchObject({ count: 1 })
    s.engine.release('198.18.0.92')
    s.advance(2000)
    const second = one(s.observe(connect('198.18.0.92')))
    expect(second).toMatchObject({ reason: 'blocked', offence: 2, ttlMs: 24 * H })
    expect(s.engine.vet(second, 'peer')).toMatchObject([{ reason: 'guard:peer' }])
    expect(offences.get('198.18.0.92')).toEqual(before)
  })

  it('a refused reapplied block keeps the record it would have put back (as a live refusal did)', () => {
    const s = vetted()
    s.engine.vet(one(s.observe(connect('198.18.0.77', { time: s.clock.t }))), null)
    s.engine.confirm('198.18.0.77')
    s.advance(30_000)
    const re = one(s.observe(connect('198.18.0.77', { time: s.clock.t })))
    expect(re).toMatchObject({ action: 'block', reason: 'reapplied' })
    expect(s.engine.vet(re, 'peer')).toMatchObject([{ action: 'none', reason: 'guard:peer' }])
    expect(s.engine.isBlocked('198.18.0.77')).toBe(true)
    expect(s.engine.stats().decisions).toMatchObject({ blocked: 1, reapplied: 0, 'guard:peer': 1 })
  })

  it('in dry-run the would-be block is vetted the same way', () => {
    const s = vetted({ block: 'all', dryRun: true })
    const d = one(s.observe(hit('198.18.0.78')))
    expect(d).toMatchObject({ action: 'report', reason: 'dry-run' })
    expect(s.engine.vet(d, 'peer')).toMatchObject([{ action: 'none', reason: 'guard:peer' }])
    expect(s.engine.stats().decisions).toMatchObject({ 'dry-run': 0, 'guard:peer': 1 })
    expect(s.engine.isBlocked('198.18.0.78')).toBe(false)
  })

  it('a window that ends while its block is vetted holds its summary until the answer, which it then agrees with', () => {
    for (const refusal of [null, 'peer'] as const) {
      const s = vetted({ block: 'all' })
      const d = one(s.observe(hit('198.18.0.79')))
      s.observe(hit('198.18.0.79', { dstPort: 2323 }))
      s.advance(60_000)
      expect(s.tick()).toEqual([])
      const out = s.engine.vet(d, refusal)
      expect(out.map((x) => [x.reason, x.final, x.count])).toEqual(
        refusal === null ? [['blocked', false, 1], ['already-blocked', true, 2]] : [['guard:peer', false, 1], ['guard:peer', true, 2]],
      )
      const counts = s.engine.stats().decisions
      expect([counts.blocked, counts['already-blocked'], counts['guard:peer']]).toEqual(refusal === null ? [1, 1, 0] : [0, 0, 2])
    }
  })

  it('a guard that appears while the block is vetted: not lifted (it is not in force yet), refused at the answer', () => {
    const g = new Guards()
    const s = vetted({ block: 'all' }, g)
    const d = one(s.observe(hit('198.18.0.80')))
    g.update({ gateways: ['198.18.0.80'] })
    expect(s.engine.liftGuarded()).toEqual([])
    expect(s.engine.vet(d, null)).toMatchObject([{ action: 'none', reason: 'guard:gateway' }])
    expect(s.engine.isBlocked('198.18.0.80')).toBe(false)
  })

  it('a block released while vetted (an operator\'s unblock) is dropped, its count undone', () => {
    const s = vetted({ block: 'all' })
    const d = one(s.observe(hit('198.18.0.81')))
    expect(s.engine.release('198.18.0.81')).toBe(true)
    expect(s.engine.vet(d, null)).toEqual([])
    expect(s.engine.stats().decisions.blocked).toBe(0)
  })

  it('a decision that was not held is returned as it is', () => {
    const s = vetted({ spoofableThreshold: 1 })
    const d = one(s.observe(hit('198.18.0.82')))
    expect(d.reason).toBe('spoofable-report-only')
    expect(s.engine.vet(d, 'peer')).toEqual([d])
  })

  describe('a check that could not answer (\'unchecked\') fails safe', () => {
    it('a spoofable block is undone and a peer-check-failed report stands in for it; the source is not asked about again this window', () => {
      const s = vetted({ block: 'all' })
      const d = one(s.observe(hit('198.18.0.83')))
      const [f, ...rest] = s.engine.vet(d, 'unchecked')
      expect(rest).toEqual([])
      expect(f).toMatchObject({ action: 'report', reason: 'peer-check-failed', src: '198.18.0.83', verified: false, count: 1 })
      expect(f).not.toHaveProperty('ttlMs')
      expect(f).not.toHaveProperty('expiresAt')
      expect(s.engine.isBlocked('198.18.0.83')).toBe(false)
      expect(s.engine.stats()).toMatchObject({
        decisions: { blocked: 0, 'peer-check-failed': 1, 'guard:peer': 0 },
        activeBlocks: { verified: 0, spoofable: 0 },
        liveRefusals: 0,
      })
      // The same window: no new block attempt (no decision handed out to be held), nothing new said.
      expect(s.observe(hit('198.18.0.83', { dstPort: 2323 }))).toEqual([])
      // A new window asks again.
      s.advance(60_000)
      const again = s.observe(hit('198.18.0.83', { dstPort: 2324 }))
      expect(again.map((x) => [x.reason, x.final])).toEqual([
        ['peer-check-failed', true],
        ['blocked', false],
      ])
      expect(s.engine.vet(again[1] as Decision, null)).toEqual([again[1]])
      expect(s.engine.isBlocked('198.18.0.83')).toBe(true)
    })

    it('it keeps its place in the rate cap: a check that keeps failing under a flood still trips the breaker', () => {
      const s = vetted({ block: 'all', maxBlocksPerMinute: 2 })
      for (const src of ['198.18.0.84', '198.18.0.85']) {
        expect(s.engine.vet(one(s.observe(hit(src))), 'unchecked')).toMatchObject([{ reason: 'peer-check-failed' }])
      }
      expect(one(s.observe(hit('198.18.0.86')))).toMatchObject({ reason: 'rate-capped', breaker: 'open' })
    })

    it('a verified block passes: a handshake proved the address', () => {
      const s = vetted()
      const d = one(s.observe(connect('198.18.0.87')))
      expect(d).toMatchObject({ action: 'block', reason: 'blocked', verified: true })
      expect(s.engine.vet(d, 'unchecked')).toEqual([d])
      expect(s.engine.isBlocked('198.18.0.87')).toBe(true)
      expect(s.engine.stats().decisions).toMatchObject({ blocked: 1, 'peer-check-failed': 0 })
    })

    it('a verified upgrade passes too, while the spoofable block it replaced would not have', () => {
      const s = vetted({ block: 'all' })
      expect(s.engine.vet(one(s.observe(hit('198.18.0.88'))), 'unchecked')).toMatchObject([{ reason: 'peer-check-failed' }])
      const up = one(s.observe(connect('198.18.0.88')))
      expect(up).toMatchObject({ action: 'block', reason: 'blocked', verified: true })
      expect(s.engine.vet(up, 'unchecked')).toEqual([up])
      expect(s.engine.activeBlocks()).toMatchObject([{ src: '198.18.0.88', verified: true }])
    })

    it('a snapshot guard that appeared meanwhile still says why', () => {
      const g = new Guards()
      const s = vetted({ block: 'all' }, g)
      const d = one(s.observe(hit('198.18.0.89')))
      g.update({ gateways: ['198.18.0.89'] })
      expect(s.engine.vet(d, 'unchecked')).toMatchObject([{ action: 'none', reason: 'guard:gateway' }])
    })

    it('in dry-run the would-be block of a spoofable source becomes the same report', () => {
      const s = vetted({ block: 'all', dryRun: true })
      const d = one(s.observe(hit('198.18.0.90')))
      expect(d).toMatchObject({ action: 'report', reason: 'dry-run' })
      expect(s.engine.vet(d, 'unchecked')).toMatchObject([{ action: 'report', reason: 'peer-check-failed' }])
      expect(s.engine.stats().decisions).toMatchObject({ 'dry-run': 0, 'peer-check-failed': 1 })
    })

    it('a summary that waited for the answer says the same', () => {
      const s = vetted({ block: 'all' })
      const d = one(s.observe(hit('198.18.0.91')))
      s.observe(hit('198.18.0.91', { dstPort: 2323 }))
      s.advance(60_000)
      expect(s.tick()).toEqual([])
      expect(s.engine.vet(d, 'unchecked').map((x) => [x.reason, x.final, x.count])).toEqual([
        ['peer-check-failed', false, 1],
        ['peer-check-failed', true, 2],
      ])
    })
  })
})

describe('transit', () => {
  it('a hit not addressed to this host is reported once per window, never blocks, and is no evidence', () => {
    const k = { asked: [] as string[] }
    const s = setup({ block: 'all' }, new Guards(), {
      isLocal: (dst) => dst === '198.18.0.1',
      liveGuard: (a) => {
        k.asked.push(formatAddress(a))
        return null
      },
    })
    const forwarded = (over: Partial<Hit> = {}): Hit => hit('198.18.0.50', { dst: '198.18.1.2', dstPort: 6379, ...over })
    expect(s.observe(forwarded())).toMatchObject([{ action: 'none', reason: 'transit', src: '198.18.0.50', trigger: { dst: '198.18.1.2', dstPort: 6379 } }])
    expect(s.observe(forwarded({ dstPort: 9200 }))).toEqual([])
    expect(s.observe(hit('198.18.0.51', { dst: '239.255.255.250', proto: 'udp', kind: 'udp', dstPort: 1900 }))).toMatchObject([{ reason: 'transit' }])
    expect(s.engine.isBlocked('198.18.0.50')).toBe(false)
    expect(k.asked).toEqual([])
    // The same source probing this host is judged on that evidence alone.
    expect(s.observe(hit('198.18.0.50'))).toMatchObject([{ action: 'block', reason: 'blocked', count: 1, ports: ['2222/tcp'] }])
    expect(s.engine.stats()).toMatchObject({ transitHits: 3 })
    s.advance(60_000)
    expect(s.tick()).toMatchObject([{ reason: 'transit', final: true, count: 2 }])
  })
})

describe('lifting blocks that new facts guard', () => {
  it('returns an unblock decision per guarded block, with the hit that led to it, and forgets the block', () => {
    const g = new Guards()
    const s = setup({ block: 'all' }, g)
    s.observe(connect('198.18.0.60', { dstPort: 2323 }))
    s.observe(hit('198.18.0.61'))
    s.observe(hit('198.18.0.62'))
    s.engine.adopt([{ src: '198.18.0.63', expiresInMs: 60_000, verified: true }])
    expect(s.engine.liftGuarded()).toEqual([])
    g.update({ interfaces: [{ address: '198.18.0.60', prefixLength: 32 }], gateways: ['198.18.0.61', '198.18.0.63'] })
    const lifted = s.engine.liftGuarded()
    expect(lifted.map((d) => [d.action, d.src, d.reason, d.verified])).toEqual([
      ['unblock', '198.18.0.60', 'guard:self', true],
      ['unblock', '198.18.0.63', 'guard:gateway', true],
      ['unblock', '198.18.0.61', 'guard:gateway', false],
    ])
    expect(lifted[0]!.trigger).toMatchObject({ dstPort: 2323, kind: 'connect' })
    // An adopted block came from no hit of this run.
    expect(lifted[1]!.trigger).toBeUndefined()
    for (const src of ['198.18.0.60', '198.18.0.61', '198.18.0.63']) expect(s.engine.isBlocked(src)).toBe(false)
    expect(s.engine.isBlocked('198.18.0.62')).toBe(true)
    expect(s.engine.liftGuarded()).toEqual([])
    expect(s.engine.stats().decisions['guard:gateway']).toBe(2)
  })

  it('builds an unblock decision for a block only the firewall knew', () => {
    const s = setup()
    expect(s.engine.unblockDecision('::ffff:198.18.0.70', 'allowlist')).toMatchObject({
      action: 'unblock',
      reason: 'guard:allowlist',
      src: '198.18.0.70',
      family: 4,
      verified: false,
      count: 0,
    })
    expect(s.engine.unblockDecision('not an address', 'self')).toBeNull()
  })
})

describe('attribution', () => {
  const forgedHit = (src: string, over: Partial<Hit> = {}): Hit => hit(src, { attribution: 'forged', evidence: ['link:no-answer'], ...over })
  const pendingHit = (src: string): Hit => hit(src, { evidence: ['rpf:pass', 'pending'] })

  it('--block all never blocks a source all of whose packets are forged; the decision says why and what', () => {
    const s = setup({ block: 'all' })
    const [d] = s.observe(forgedHit('198.18.0.50'))
    expect(d).toMatchObject({ action: 'report', reason: 'forged', attribution: 'forged', evidence: ['link:no-answer'], verified: false })
    expect(s.observe(forgedHit('198.18.0.50', { dstPort: 2223 }))).toEqual([])
    expect(s.engine.isBlocked('198.18.0.50')).toBe(false)
    expect(s.engine.stats().activeBlocks.spoofable).toBe(0)
  })

  it('a source with one plausible packet is plausible: blocked under --block all', () => {
    const s = setup({ block: 'all' })
    s.observe(forgedHit('198.18.0.51'))
    const [d] = s.observe(hit('198.18.0.51', { evidence: ['link:match'] }))
    expect(d).toMatchObject({ action: 'block', reason: 'blocked', attribution: 'plausible', evidence: ['link:no-answer', 'link:match'] })
  })

  it('a verified source never becomes forged: a forged packet claiming it changes nothing', () => {
    const s = setup({ block: 'all' })
    expect(s.observe(connect('198.18.0.52'))[0]).toMatchObject({ action: 'block', attribution: 'verified' })
    s.observe(forgedHit('198.18.0.52', { evidence: ['hops:mismatch'] }))
    s.advance(60_000)
    const [summary] = s.tick()
    expect(summary).toMatchObject({ final: true, attribution: 'verified', evidence: ['hops:mismatch'] })
  })

  it('holds a source whose answer is pending (no decision), then decides on it: plausible → block, forged → forged', () => {
    const s = setup({ block: 'all' })
    expect(s.observe(pendingHit('198.18.0.53'))).toEqual([])
    expect(s.engine.isBlocked('198.18.0.53')).toBe(false)
    // More packets while it is open: still nothing.
    expect(s.observe(pendingHit('198.18.0.53'))).toEqual([])
    expect(s.engine.reattribute('198.18.0.53', { attribution: 'plausible', evidence: ['link:match'] })[0]).toMatchObject({
      action: 'block',
      reason: 'blocked',
      evidence: ['rpf:pass', 'link:match'],
    })
    s.observe(pendingHit('198.18.0.54'))
    expect(s.engine.reattribute('198.18.0.54', { attribution: 'forged', evidence: ['link:no-answer'] })[0]).toMatchObject({
      action: 'report',
      reason: 'forged',
      attribution: 'forged',
    })
    expect(s.engine.isBlocked('198.18.0.54')).toBe(false)
    // A source the engine does not track: nothing to decide.
    expect(s.engine.reattribute('198.18.0.99', { attribution: 'plausible', evidence: [] })).toEqual([])
    // Settling counts no hit.
    expect(s.engine.stats().hits).toBe(3)
  })

  it('without --block all, attribution is reported, not acted on', () => {
    const s = setup()
    expect(s.observe(forgedHit('198.18.0.55'))[0]).toMatchObject({ action: 'report', reason: 'spoofable-report-only', attribution: 'forged' })
    expect(s.observe(pendingHit('198.18.0.56'))[0]).toMatchObject({ reason: 'spoofable-report-only', attribution: 'plausible' })
  })

  it('resets never count toward blocking a spoofable source: a forged SYN claiming a neighbour draws its genuine RST', () => {
    const s = setup({ block: 'all' })
    const rst = (src: string): Hit => hit(src, { kind: 'rst', tcpFlags: 0x04, evidence: ['link:match'] })
    // The forged SYN, then the neighbour's own (plausible) reset to the SYN-ACK it drew.
    expect(s.observe(forgedHit('198.18.0.60'))[0]).toMatchObject({ action: 'report', reason: 'forged' })
    expect(s.observe(rst('198.18.0.60'))).toEqual([])
    expect(s.engine.isBlocked('198.18.0.60')).toBe(false)
    // A source of resets only is reported, never blocked, however many it sends.
    expect(s.observe(rst('198.18.0.61'))[0]).toMatchObject({ action: 'report', reason: 'reset-only', attribution: 'plausible' })
    for (let i = 0; i < 5; i++) s.observe(rst('198.18.0.61'))
    expect(s.engine.isBlocked('198.18.0.61')).toBe(false)
    // A reset's settled answer is neither waited for nor counted.
    expect(s.engine.reattribute('198.18.0.60', { attribution: 'plausible', evidence: ['link:match'] }, rst('198.18.0.60'))).toEqual([])
    expect(s.engine.isBlocked('198.18.0.60')).toBe(false)
    // A real probe from a resetting source still blocks it (nmap -sS: SYN, then its RST).
    s.observe(rst('198.18.0.62'))
    expect(s.observe(hit('198.18.0.62', { evidence: ['link:match'] }))[0]).toMatchObject({ action: 'block', reason: 'blocked' })
    // Without --block all nothing changes: reported as spoofable.
    expect(setup().observe(rst('198.18.0.63'))[0]).toMatchObject({ reason: 'spoofable-report-only' })
  })

  it('keeps at most 16 evidence names per source and window', () => {
    const s = setup()
    for (let i = 0; i < 40; i++) s.observe(hit('198.18.0.57', { evidence: [`x:${i}`], dstPort: 2000 + i }))
    s.advance(60_000)
    expect(s.tick()[0]!.evidence.length).toBe(16)
  })
})

describe('coverage of the reason codes', () => {
  // One scenario per code, each from a fresh engine: runs alone (-t) as well as with the rest.
  const guarded = new Guards({
    interfaces: [{ address: '198.18.0.1', prefixLength: 24 }],
    gateways: ['198.18.0.254'],
    resolvers: ['198.18.0.53'],
    peers: ['198.18.0.22'],
    allowlist: ['198.19.0.0/16'],
  })
  const scenarios: Record<ReasonCode, () => readonly Decision[]> = {
    blocked: () => setup().observe(connect('198.18.0.7')),
    'already-blocked': () => {
      const s = setup()
      s.observe(connect('198.18.0.7'))
      s.advance(60_000)
      s.tick()
      return s.observe(hit('198.18.0.7'))
    },
    'below-threshold': () => setup({ block: 'all', spoofableThreshold: 2 }).observe(hit('198.18.0.50')),
    'spoofable-report-only': () => setup().observe(hit('198.18.0.50')),
    'guard:self': () => setup({}, guarded).observe(connect('198.18.0.1')),
    'guard:gateway': () => setup({}, guarded).observe(connect('198.18.0.254')),
    'guard:resolver': () => setup({}, guarded).observe(connect('198.18.0.53')),
    'guard:peer': () => setup({}, guarded).observe(connect('198.18.0.22')),
    'guard:allowlist': () => setup({}, guarded).observe(connect('198.19.3.4')),
    'guard:special': () => setup().observe(connect('127.0.0.1')),
    'rate-capped': () => {
      const s = setup({ block: 'all', maxBlocksPerMinute: 1 })
      s.observe(hit(forged(0)))
      return s.observe(hit(forged(1)))
    },
    'active-cap': () => {
      const s = setup({ block: 'all', maxActiveBlocks: 1 })
      s.observe(hit(forged(0)))
      return s.observe(hit(forged(1)))
    },
    'dry-run': () => setup({ dryRun: true }).observe(connect('198.18.0.7')),
    'report-capped': () => {
      const s = setup({ maxReportsPerMinute: 1 })
      s.observe(hit(forged(0)))
      return s.observe(hit(forged(1)))
    },
    transit: () => setup({ block: 'all' }, new Guards(), { isLocal: () => false }).observe(hit('198.18.0.50', { dst: '198.18.1.2' })),
    reapplied: () => {
      const s = setup()
      s.observe(connect('198.18.0.7', { time: s.clock.t }))
      s.engine.confirm('198.18.0.7')
      s.advance(2000)
      return s.observe(connect('198.18.0.7', { time: s.clock.t }))
    },
    forged: () => setup({ block: 'all' }).observe(hit('198.18.0.50', { attribution: 'forged', evidence: ['link:no-answer'] })),
    'reset-only': () => setup({ block: 'all' }).observe(hit('198.18.0.50', { kind: 'rst', tcpFlags: 0x04 })),
    'peer-check-failed': () => {
      const s = setup({ block: 'all' }, new Guards(), { vetBlocks: true })
      const [d] = s.observe(hit('198.18.0.50'))
      return s.engine.vet(d as Decision, 'unchecked')
    },
  }

  it('names a scenario for every reason code', () => {
    expect(Object.keys(scenarios).sort()).toEqual([...REASON_CODES].sort())
  })

  for (const [reason, run] of Object.entries(scenarios)) {
    it(`produces ${reason}`, () => {
      expect(run().map((d) => d.reason)).toEqual([reason])
    })
  }
})

describe('hits decoded from records', () => {
  /** A record as native/hit_record.h lays it out: 16 address bytes each, flags say IPv4. */
  function record(src: number[], over: { kind?: number; flags?: number; dst?: number[] } = {}): Buffer {
    const b = Buffer.alloc(HIT_RECORD_SIZE)
    const mapped = (a: number[]): number[] => (a.length === 4 ? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...a] : a)
    b.writeBigUInt64LE(1_700_000_000_000_000_000n, HIT_RECORD_LAYOUT.tsNs)
    b.set(mapped(src), HIT_RECORD_LAYOUT.src)
    b.set(mapped(over.dst ?? (src.length === 4 ? [198, 18, 0, 1] : [0xfd, 0x52, 0x43, 0xdd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])), HIT_RECORD_LAYOUT.dst)
    b.writeUInt16LE(40000, HIT_RECORD_LAYOUT.srcPort)
    b.writeUInt16LE(2222, HIT_RECORD_LAYOUT.dstPort)
    b.writeUInt32LE(2, HIT_RECORD_LAYOUT.ifindex)
    b[HIT_RECORD_LAYOUT.family] = src.length === 4 ? 4 : 6
    b[HIT_RECORD_LAYOUT.proto] = 6
    b[HIT_RECORD_LAYOUT.kind] = over.kind ?? 1
    b[HIT_RECORD_LAYOUT.tcpFlags] = over.kind === 2 ? 0x10 : 0x02
    b.writeUInt16LE((src.length === 4 ? HIT_FLAGS.ipv4 : 0) | (over.flags ?? 0), HIT_RECORD_LAYOUT.flags)
    return b
  }
  const V6 = (last: number): number[] => [0xfd, 0x52, 0x43, 0xdd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]
  // An IPv6 packet whose source is IPv4-mapped (::ffff:198.18.0.9): a forger's trick to
  // reach a guarded IPv4 host through its mapped spelling; addr.ts folds it to IPv4.
  const MAPPED = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 9]
  const records = [
    record([198, 18, 0, 7]),
    record([198, 18, 0, 7]),
    record(V6(5)),
    record(MAPPED),
    record([198, 18, 0, 8], { kind: 2, flags: HIT_FLAGS.verified }),
    record([198, 18, 0, 9]),
  ]
  const ifname = (): string => 'eth0'

  it('decide exactly as the same hits given as text, IPv4-mapped sources folded to IPv4', () => {
    const numeric = setup({ block: 'all' })
    const text = setup({ block: 'all' })
    for (const r of records) {
      const decoded = decodeHit(r, 0, ifname)
      expect(decoded[HIT_KEY]).toBeTypeOf('function')
      // The same hit as plain data: no HIT_KEY, so its key comes from its text and fields.
      const plain: Hit = { ...(JSON.parse(JSON.stringify(decoded)) as Omit<Hit, 'timeNs'>), timeNs: decoded.timeNs }
      const fromRecord = new Int32Array(HIT_KEY_WORDS)
      const fromText = new Int32Array(HIT_KEY_WORDS)
      expect(hitKey(decoded, fromRecord)).toBe(true)
      expect(hitKey(plain, fromText)).toBe(true)
      expect([...fromRecord]).toEqual([...fromText])
      numeric.observe(decoded)
      text.observe(plain)
    }
    numeric.advance(61_000)
    text.advance(61_000)
    numeric.tick()
    text.tick()
    expect(numeric.log.length).toBeGreaterThan(0)
    expect(JSON.stringify(numeric.log)).toBe(JSON.stringify(text.log))
    // The mapped source and 198.18.0.9 are one source: one block, counted twice.
    const nine = numeric.log.filter((d) => d.src === '198.18.0.9')
    expect(nine.some((d) => d.action === 'block')).toBe(true)
    expect(numeric.log.some((d) => d.src.startsWith('::ffff'))).toBe(false)
    expect(numeric.engine.stats().invalidSources).toBe(0)
  })

  it('keeps no hit: a decision reports the fields its source\'s last hit had when observed', () => {
    const { engine, observe, clock } = setup()
    const first = observe(hit('198.18.0.20', { srcPort: 999 }))
    expect(first).toHaveLength(1)
    const h = hit('198.18.0.20', { srcPort: 1000, dstPort: 2222 })
    observe(h)
    // Whatever becomes of the hit object afterwards (a decoder reuses nothing, but a
    // caller may), the engine reports what it saw.
    h.srcPort = 9
    h.dstPort = 9
    h.dst = '198.18.0.99'
    clock.t += 61_000
    const final = [...engine.tick()].find((d) => d.src === '198.18.0.20' && d.final)
    expect(final?.trigger).toEqual({ dst: '198.18.0.1', dstPort: 2222, srcPort: 1000, proto: 'tcp', kind: 'syn', interface: 'eth0' })
    const decoded = decodeHit(records[0]!, 0, ifname)
    expect(decoded[RETAIN_HIT]!()).toBe(decoded)
    expect(decoded.src).toBe('198.18.0.7')
  })
})

describe('sources only counted into a breaker (kept compact)', () => {
  it('come back with everything their window held: counts, kinds, evidence, window start, their breaker', () => {
    const s = setup({ block: 'all', maxBlocksPerMinute: 1, windowMs: 600_000 })
    const evidence = Object.freeze(['rpf:pass'])
    const t0 = s.clock.t
    expect(s.observe(hit('198.18.0.2'))[0]?.reason).toBe('blocked')
    expect(s.observe(hit('198.18.0.3'))[0]?.breaker).toBe('open')
    // Counted, not decided: three hits of one source while the breaker is open.
    for (const kind of ['syn', 'fin', 'syn'] as const) {
      s.clock.t += 1000
      expect(s.observe(hit('198.18.0.4', { kind, evidence }))).toEqual([])
    }
    const before = s.engine.stats()
    expect(before.suppressedSources).toBe(1)
    expect(before.suppressedHits).toBe(3)
    expect(before.trackedSources).toBe(3)
    // The breaker closes once the pressure is gone; the source's window is still open.
    s.clock.t = t0 + 125_000
    expect(s.engine.tick().some((d) => d.breaker === 'closed')).toBe(true)
    const [d] = s.observe(hit('198.18.0.4', { srcPort: 4242, evidence }))
    expect(d).toMatchObject({
      action: 'block',
      reason: 'blocked',
      src: '198.18.0.4',
      count: 4,
      windowStart: t0 + 1000,
      firstSeen: t0 + 1000,
      lastSeen: t0 + 125_000,
      kinds: ['syn', 'fin'],
      ports: ['2222/tcp'],
      evidence: ['rpf:pass'],
      attribution: 'plausible',
    })
    expect(d?.trigger).toEqual({ dst: '198.18.0.1', dstPort: 2222, srcPort: 4242, proto: 'tcp', kind: 'syn', interface: 'eth0' })
    // Counted into the breaker once, whatever form it was kept in.
    expect(s.engine.stats().suppressedSources).toBe(1)
  })

  it('keep nothing of one another: a counted source\'s state reused for the next new source starts afresh', () => {
    const s = setup({ block: 'all', maxBlocksPerMinute: 1, windowMs: 600_000 })
    const t0 = s.clock.t
    s.observe(hit('198.18.0.2'))
    expect(s.observe(hit('198.18.0.3'))[0]?.breaker).toBe('open')
    // A is counted (and kept compact) with a FIN, evidence, its own ports; B, new right after,
    // is counted with a plain SYN and nothing else.
    s.clock.t += 1000
    s.observe(hit('198.18.0.4', { kind: 'fin', tcpFlags: 0x01, srcPort: 1111, dstPort: 23, evidence: Object.freeze(['rpf:pass']) }))
    s.observe(hit('198.18.0.4', { kind: 'fin', tcpFlags: 0x01, srcPort: 1112, dstPort: 23, evidence: Object.freeze(['rpf:pass']) }))
    s.clock.t += 1000
    s.observe(hit('198.18.0.5', { srcPort: 2222 }))
    s.clock.t = t0 + 125_000
    expect(s.tick().some((d) => d.breaker === 'closed')).toBe(true)
    const [b] = s.observe(hit('198.18.0.5', { srcPort: 2223 }))
    expect(b).toMatchObject({ src: '198.18.0.5', count: 2, kinds: ['syn'], ports: ['2222/tcp'], evidence: [], firstSeen: t0 + 2000, windowStart: t0 + 2000 })
    expect(b?.trigger).toMatchObject({ srcPort: 2223, dstPort: 2222, kind: 'syn' })
    // A's own window is still there, whole, and a block of it speaks only of it.
    s.clock.t += 61_000
    const [a] = s.observe(hit('198.18.0.4', { kind: 'fin', tcpFlags: 0x01, srcPort: 1113, dstPort: 23, evidence: Object.freeze(['rpf:pass']) }))
    expect(a).toMatchObject({ src: '198.18.0.4', count: 3, kinds: ['fin'], ports: ['23/tcp'], evidence: ['rpf:pass'], firstSeen: t0 + 1000 })
    expect(s.engine.stats().suppressedSources).toBe(2)
  })

  it('end their window without a summary, and a held block or settled answer finds them by their text', () => {
    const s = setup({ block: 'all', maxBlocksPerMinute: 1 })
    s.observe(hit('198.18.0.2'))
    s.observe(hit('198.18.0.3'))
    s.observe(hit('198.18.0.5'))
    s.observe(hit('198.18.0.6'))
    expect(s.engine.stats().trackedSources).toBe(4)
    // A late answer about a compact source decides it again: forged is reported.
    const late = s.engine.reattribute('198.18.0.5', { attribution: 'forged', evidence: ['rpf:no-route'] })
    expect(late).toEqual([])
    s.clock.t += 61_000
    const ended = [...s.engine.tick()]
    expect(ended.filter((d) => d.src === '198.18.0.6')).toEqual([])
    expect(s.engine.stats().trackedSources).toBe(0)
  })
})
