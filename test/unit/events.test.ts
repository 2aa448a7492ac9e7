// The JSON-lines event schema: builders produce events their own schemas accept,
// lines round-trip, and readers get a clear error naming the bad field.
import { describe, expect, it } from 'vitest'
import {
  EVENT_SCHEMA_VERSION,
  decisionEvent,
  errorEvent,
  eventSchema,
  hitEvent,
  parseEventLine,
  statsEvent,
  toJsonLine,
} from '../../lib/daemon/events.js'
import { PortanoiaError } from '../../lib/errors.js'
import { PolicyEngine } from '../../lib/policy/engine.js'
import type { Hit } from '../../lib/types.js'

const T = Date.UTC(2025, 0, 31, 12, 0, 0)

const hit: Hit = {
  time: T + 0.123,
  timeNs: BigInt(T) * 1_000_000n + 123_456n,
  src: 'fd52:43dd::9',
  srcPort: 51000,
  dst: 'fd52:43dd::1',
  dstPort: 2222,
  family: 6,
  proto: 'tcp',
  kind: 'connect',
  tcpFlags: 0x10,
  ttl: 0,
  verified: true,
  interface: 'eth0',
  ifindex: 2,
  vlan: 12,
  fragment: false,
  ipOptions: false,
  extHeaders: false,
  truncated: false,
  ipId: 0,
  wireLen: 74,
  attribution: 'verified',
  evidence: [],
}

function decisions() {
  let t = T
  const engine = new PolicyEngine({ config: { block: 'all', maxBlocksPerMinute: 1 }, now: () => t })
  const out = [
    ...engine.observe(hit),
    ...engine.observe({ ...hit, src: '198.18.0.5', dst: '198.18.0.1', family: 4, kind: 'syn', verified: false }),
    ...engine.observe({ ...hit, src: '198.18.0.6', dst: '198.18.0.1', family: 4, kind: 'udp', proto: 'udp', verified: false }),
  ]
  t += 61_000
  out.push(...engine.tick())
  return { engine, out }
}

describe('builders', () => {
  it('hit: ISO time, nanoseconds as a decimal string, optional fields kept', () => {
    const e = hitEvent(hit)
    expect(e).toMatchObject({ type: 'hit', v: 1, time: '2025-01-31T12:00:00.000Z', timeNs: '1738324800000123456', vlan: 12 })
    expect(e.sctpChunk).toBeUndefined()
    expect(eventSchema.parse(e)).toEqual(e)
  })

  it('decision: every decision the engine makes is a valid event', () => {
    const { out } = decisions()
    expect(out.map((d) => [d.reason, d.breaker])).toEqual([
      ['blocked', undefined],
      ['blocked', undefined],
      ['rate-capped', 'open'],
      ['rate-capped', 'closed'],
    ])
    for (const d of out) {
      const e = decisionEvent(d)
      expect(eventSchema.parse(e)).toEqual(e)
      expect(e.time).toMatch(/Z$/)
    }
    const blocked = decisionEvent(out[0]!)
    expect(blocked).toMatchObject({
      type: 'decision',
      action: 'block',
      src: 'fd52:43dd::9',
      ttlMs: 3_600_000,
      expiresAt: '2025-01-31T13:00:00.000Z',
      ports: ['2222/tcp'],
      kinds: ['connect'],
      trigger: { dst: 'fd52:43dd::1', dstPort: 2222, srcPort: 51000, proto: 'tcp', kind: 'connect', interface: 'eth0' },
    })
    expect(decisionEvent(out[3]!).suppressed).toEqual({ sources: 0, hits: 0 })
  })

  it('decision: a block without expiry has no expiresAt', () => {
    const engine = new PolicyEngine({ now: () => T })
    engine.adopt([{ src: '198.18.0.9' }])
    const [d] = engine.observe({ ...hit, src: '198.18.0.9', family: 4, dst: '198.18.0.1' })
    expect(d!.reason).toBe('already-blocked')
    const e = decisionEvent(d!)
    expect('expiresAt' in e).toBe(false)
    expect(eventSchema.parse(e)).toEqual(e)
  })

  it('stats: policy counters plus free-form sensor and responder counters', () => {
    const { engine } = decisions()
    const e = statsEvent({
      policy: engine.stats(),
      sensor: { packets: 10, drops: 0, ringDrops: 0 },
      responders: { nftables: { applied: 2, failed: 0 } },
      uptimeMs: 61_000.4,
      time: T,
    })
    expect(e).toMatchObject({ type: 'stats', uptimeMs: 61_000, policy: { activeBlocks: { verified: 1, spoofable: 1 } } })
    expect(e.policy.decisions.blocked).toBe(2)
    expect(eventSchema.parse(e)).toEqual(e)
  })

  it('error: keeps system error codes and PortanoiaError hints', () => {
    const sys = Object.assign(new Error('spawn nft ENOENT'), { code: 'ENOENT' })
    const e1 = errorEvent({ responder: 'nftables', error: sys, action: 'block', reason: 'blocked', addresses: ['198.18.0.5', 'fd52:43dd::9'], time: T })
    expect(e1).toMatchObject({ type: 'error', code: 'ENOENT', message: 'spawn nft ENOENT', action: 'block', addresses: ['198.18.0.5', 'fd52:43dd::9'] })
    const e2 = errorEvent({
      responder: 'exec',
      error: new PortanoiaError('PORTANOIA_RESPONDER_FAILED', 'command timed out after 5000 ms', { hint: 'raise --exec-timeout' }),
      src: '198.18.0.5',
    })
    expect(e2).toMatchObject({ code: 'PORTANOIA_RESPONDER_FAILED', hint: 'raise --exec-timeout', src: '198.18.0.5' })
    const e3 = errorEvent({ responder: 'webhook', error: 'socket hang up' })
    expect(e3).toMatchObject({ code: 'PORTANOIA_RESPONDER_FAILED', message: 'socket hang up' })
    for (const e of [e1, e2, e3]) expect(eventSchema.parse(e)).toEqual(e)
  })
})

describe('lines', () => {
  it('one JSON object per line, round-tripping', () => {
    const { out } = decisions()
    const events = [hitEvent(hit), ...out.map(decisionEvent)]
    const text = events.map(toJsonLine).join('')
    const lines = text.split('\n')
    expect(lines.pop()).toBe('')
    expect(lines).toHaveLength(events.length)
    expect(lines.map(parseEventLine)).toEqual(events)
    for (const e of lines.map(parseEventLine)) expect(e.v).toBe(EVENT_SCHEMA_VERSION)
  })

  it('says which field is wrong', () => {
    const good = decisionEvent(decisions().out[0]!)
    const cases: Array<[unknown, RegExp]> = [
      [{ ...good, reason: 'because' }, /^reason: /],
      [{ ...good, src: '198.18.0.1; drop' }, /^src: /],
      [{ ...good, v: 2 }, /^v: /],
      [{ ...good, time: 'yesterday' }, /^time: /],
      [{ ...good, trigger: { ...good.trigger, dstPort: 70000 } }, /^trigger\.dstPort: /],
      [{ ...good, type: 'gossip' }, /^type: /],
    ]
    for (const [doc, message] of cases) {
      expect(() => parseEventLine(JSON.stringify(doc))).toThrow(message)
    }
    expect(() => parseEventLine('{not json')).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_EVENT' }))
  })

  it('field order is stable (type, time, v first) for people reading the stream', () => {
    const line = toJsonLine(decisionEvent(decisions().out[0]!))
    expect(line.startsWith('{"type":"decision","time":"')).toBe(true)
    expect(line.indexOf('"v":1')).toBeLessThan(line.indexOf('"action"'))
  })
})
