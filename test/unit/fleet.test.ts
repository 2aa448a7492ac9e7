// FleetPush and FleetPull against a fake LAPI on 127.0.0.1 and a recording
// responder: batching, coalescing, retries with backoff, the queue bound and its
// drop count, a caller that never waits; the stream applied idempotently with the
// time remaining, deletions lifting only what the fleet applied, null lists,
// own decisions skipped, Range/non-ban skipped, and local guards winning (also
// after the guards change).
import { afterEach, describe, expect, it } from 'vitest'
import { type FleetDecisionEvent, fleetDecisionEventSchema, fleetEventSchema, type FleetStreamEvent } from '../../lib/fleet/events.js'
import { alertFor, FleetPull, FleetPush, SCENARIO_SPOOFABLE, SCENARIO_VERIFIED } from '../../lib/fleet/fleet.js'
import { LapiClient } from '../../lib/fleet/lapi.js'
import type { Decision } from '../../lib/policy/decision.js'
import { Guards } from '../../lib/policy/guards.js'
import type { BlockRequest, ResponderResult } from '../../lib/responders/types.js'
import { type FakeLapi, startFakeLapi } from '../helpers/fake-lapi.js'

const PASSWORD = 'pw-secret'
const KEY = 'key-secret'

let fake: FakeLapi | null = null
const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0)) await c()
  await fake?.close()
  fake = null
})

async function setup(): Promise<FakeLapi> {
  fake = await startFakeLapi({ machine: 'host-a', password: PASSWORD, bouncerKeys: [KEY] })
  return fake
}

function decision(src: string, over: Partial<Decision> = {}): Decision {
  const t = Date.parse('2026-01-01T00:00:00Z')
  return {
    action: 'block',
    reason: 'blocked',
    src,
    family: src.includes(':') ? 6 : 4,
    verified: true,
    attribution: 'verified',
    evidence: [],
    ttlMs: 3_600_000,
    expiresAt: t + 3_600_000,
    ports: ['22/tcp', '3389/tcp'],
    portsTruncated: false,
    kinds: ['connect', 'syn'],
    count: 3,
    verifiedCount: 1,
    firstSeen: t,
    lastSeen: t + 500,
    windowStart: t,
    windowMs: 60_000,
    time: t + 500,
    final: false,
    trigger: { dst: '198.18.0.1', dstPort: 22, srcPort: 40000, proto: 'tcp', kind: 'connect', interface: 'pns0' },
    ...over,
  }
}

function validate(events: FleetStreamEvent[]): void {
  for (const e of events) {
    const r = e.type === 'decision' ? fleetDecisionEventSchema.safeParse(e) : fleetEventSchema.safeParse(e)
    expect(r.success, JSON.stringify(e)).toBe(true)
  }
}

class Clock {
  t = Date.parse('2026-01-01T00:00:00Z')
  now = (): number => this.t
}

describe('alertFor', () => {
  it('builds the alert LAPI wants, scenario by evidence', () => {
    const a = alertFor(decision('198.18.5.5'), 3_600_000)
    expect(a.scenario).toBe(SCENARIO_VERIFIED)
    expect(a.decisions).toEqual([
      { origin: 'portanoia', type: 'ban', scope: 'Ip', value: '198.18.5.5', duration: '1h', scenario: SCENARIO_VERIFIED },
    ])
    expect(a.source).toEqual({ scope: 'Ip', value: '198.18.5.5', ip: '198.18.5.5' })
    expect(a.message).toContain('22/tcp 3389/tcp')
    expect(a.message).toContain('connect syn')
    expect(a.start_at).toBe('2026-01-01T00:00:00.000Z')
    expect(a.events[0]?.meta).toContainEqual({ key: 'ports', value: '22/tcp 3389/tcp' })
    const s = alertFor(decision('fd52:43dd:9::9', { verified: false, verifiedCount: 0, portsTruncated: true }), 600_000)
    expect(s.scenario).toBe(SCENARIO_SPOOFABLE)
    expect(s.decisions[0]?.duration).toBe('10m')
    expect(s.message).toMatch(/…/)
    expect(s.message).toMatch(/spoofable/)
  })
})

describe('FleetPush', () => {
  function makePush(f: FakeLapi, over: Partial<ConstructorParameters<typeof FleetPush>[0]> = {}) {
    const events: FleetStreamEvent[] = []
    // Generous: a loaded machine must not turn a slow answer into a push failure the test did not ask for.
    const client = new LapiClient({ url: f.url, machine: 'host-a', password: PASSWORD, timeoutMs: 10_000 })
    const push = new FleetPush({ client, onEvent: (e) => events.push(e), random: () => 0, ...over })
    closers.push(() => push.close())
    return { push, events, client }
  }

  it('sends only block/blocked decisions, in batches', async () => {
    const f = await setup()
    const { push } = makePush(f, { batchSize: 50 })
    expect(push.push(decision('198.18.1.1', { action: 'report', reason: 'spoofable-report-only' }))).toBe(false)
    expect(push.push(decision('198.18.1.2', { action: 'none', reason: 'guard:self' }))).toBe(false)
    expect(push.push(decision('198.18.1.3', { reason: 'dry-run' }))).toBe(false)
    for (let i = 0; i < 120; i++) expect(push.push(decision(`198.18.2.${i}`))).toBe(true)
    await push.flush()
    expect(f.alertBatches.map((b) => b.length)).toEqual([50, 50, 20])
    expect(push.stats()).toMatchObject({ pushes: 120, pushFailures: 0, drops: 0, queued: 0 })
    expect(f.logins).toBe(1)
  })

  it('pushes only blocks from verified evidence unless told to push spoofable ones too', async () => {
    const f = await setup()
    const { push } = makePush(f)
    // A forged packet under --block all must not become a fleet-wide ban.
    expect(push.push(decision('198.18.9.1', { verified: false, verifiedCount: 0, ttlMs: 300_000 }))).toBe(false)
    expect(push.push(decision('198.18.9.2'))).toBe(true)
    await push.flush()
    expect((f.alertBatches.flat() as Array<{ source: { value: string } }>).map((a) => a.source.value)).toEqual(['198.18.9.2'])
    const opt = makePush(f, { pushSpoofable: true })
    expect(opt.push.push(decision('198.18.9.3', { verified: false, verifiedCount: 0, ttlMs: 300_000 }))).toBe(true)
  })

  it('sends on its timer, a full batch at once, and coalesces by address', async () => {
    const f = await setup()
    const { push } = makePush(f, { intervalMs: 60_000, batchSize: 3, pushSpoofable: true })
    push.start()
    push.push(decision('198.18.3.1', { verified: false }))
    push.push(decision('198.18.3.1', { verified: true })) // the upgrade replaces the queued one
    push.push(decision('198.18.3.2'))
    expect(push.stats().queued).toBe(2)
    push.push(decision('198.18.3.3'))
    await expect.poll(() => f.alertBatches.length, { timeout: 2000 }).toBe(1)
    const batch = f.alertBatches[0] as Array<{ scenario: string; source: { value: string } }>
    expect(batch.map((a) => a.source.value)).toEqual(['198.18.3.1', '198.18.3.2', '198.18.3.3'])
    expect(batch[0]?.scenario).toBe(SCENARIO_VERIFIED)
  })

  it('push() never waits for LAPI: it queues synchronously while LAPI holds a request', async () => {
    const f = await setup()
    f.delayMs = 2000
    const { push } = makePush(f, { intervalMs: 10 })
    push.start()
    expect(push.push(decision('198.18.4.0'))).toBe(true)
    // LAPI has a request of ours and is sitting on it.
    await expect.poll(() => f.requests.length, { timeout: 10_000 }).toBeGreaterThan(0)
    // push() returns a boolean, not a promise: nothing it does can wait for that answer.
    for (let i = 1; i < 200; i++) expect(push.push(decision(`198.18.4.${i}`))).toBe(true)
    expect(f.alertBatches).toEqual([])
    expect(push.stats().queued).toBeGreaterThanOrEqual(199)
    f.delayMs = 0
  })

  it('retries with backoff, reports the failure once and the recovery', async () => {
    const f = await setup()
    const clock = new Clock()
    const { push, events } = makePush(f, { now: clock.now, backoffMs: 1000 })
    push.push(decision('198.18.5.1'))
    f.failNext('/v1/alerts', 2, 500)
    await push.flush()
    expect(push.stats()).toMatchObject({ pushes: 0, pushFailures: 1, queued: 1 })
    await push.flush()
    expect(push.stats()).toMatchObject({ pushes: 0, pushFailures: 2, queued: 1 })
    await push.flush()
    expect(push.stats()).toMatchObject({ pushes: 1, pushFailures: 2, queued: 0, abandoned: 0 })
    expect(events.map((e) => (e.type === 'fleet' ? e.op : e.type))).toEqual(['push-failed', 'push-recovered'])
    expect(events[0]).toMatchObject({ status: 500, code: 'PORTANOIA_LAPI_HTTP' })
    validate(events)
  })

  it('the timer honours the backoff', async () => {
    const f = await setup()
    const { push } = makePush(f, { intervalMs: 20, backoffMs: 400, maxBackoffMs: 400 })
    f.failNext('/v1/alerts', 1, 503)
    push.start()
    push.push(decision('198.18.5.9'))
    await expect.poll(() => push.stats().pushFailures, { timeout: 2000 }).toBe(1)
    const failedAt = Date.now()
    await expect.poll(() => push.stats().pushes, { timeout: 3000 }).toBe(1)
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(300)
    expect(f.requests.filter((r) => r === 'POST /v1/alerts')).toHaveLength(2)
  })

  it('gives up on an alert after maxAttempts refusals', async () => {
    const f = await setup()
    const { push, events } = makePush(f, { maxAttempts: 3 })
    push.push(decision('198.18.6.1'))
    push.push(decision('198.18.6.2'))
    f.failNext('/v1/alerts', 3, 500)
    for (let i = 0; i < 3; i++) await push.flush()
    expect(push.stats()).toMatchObject({ pushes: 0, pushFailures: 3, abandoned: 2, queued: 0 })
    expect(events.filter((e) => e.type === 'fleet' && e.op === 'abandoned').map((e) => e.src)).toEqual([
      '198.18.6.1',
      '198.18.6.2',
    ])
    // A non-retryable refusal (422) gives up at once.
    push.push(decision('198.18.6.3'))
    f.failNext('/v1/alerts', 1, 422)
    await push.flush()
    expect(push.stats()).toMatchObject({ abandoned: 3, queued: 0 })
  })

  it('a refused login keeps alerts queued until the password is fixed', async () => {
    const f = await setup()
    const events: FleetStreamEvent[] = []
    const client = new LapiClient({ url: f.url, machine: 'host-a', password: 'wrong' })
    const push = new FleetPush({ client, maxAttempts: 1, onEvent: (e) => events.push(e) })
    closers.push(() => push.close())
    push.push(decision('198.18.6.9'))
    await push.flush()
    await push.flush()
    expect(push.stats()).toMatchObject({ pushFailures: 2, abandoned: 0, queued: 1 })
    expect(events[0]).toMatchObject({ op: 'push-failed', code: 'PORTANOIA_LAPI_AUTH', status: 401 })
    expect(JSON.stringify(events)).not.toContain('wrong')
  })

  it('an unreachable LAPI spends no attempts: alerts wait in the bounded queue', async () => {
    const f = await setup()
    const url = f.url
    await f.close()
    fake = null
    const events: FleetStreamEvent[] = []
    const client = new LapiClient({ url, machine: 'host-a', password: PASSWORD, timeoutMs: 500 })
    const push = new FleetPush({ client, maxAttempts: 2, queueLimit: 10, onEvent: (e) => events.push(e) })
    closers.push(() => push.close())
    for (let i = 0; i < 25; i++) push.push(decision(`198.18.7.${i}`))
    for (let i = 0; i < 4; i++) await push.flush()
    expect(push.stats()).toMatchObject({ pushes: 0, pushFailures: 4, abandoned: 0, drops: 15, queued: 10 })
    const dropped = events.filter((e) => e.type === 'fleet' && e.op === 'dropped')
    expect(dropped).toHaveLength(15)
    expect(dropped[0]).toMatchObject({ src: '198.18.7.0', count: 1 })
    // One push-failed: the same error is not repeated on every attempt.
    expect(events.filter((e) => e.type === 'fleet' && e.op === 'push-failed')).toHaveLength(1)
    validate(events)

    // LAPI comes back (on a new port: the test cannot rebind the old one reliably).
    fake = await startFakeLapi({ machine: 'host-a', password: PASSWORD, bouncerKeys: [] })
    const back = new FleetPush({ client: new LapiClient({ url: fake.url, machine: 'host-a', password: PASSWORD }), queueLimit: 10 })
    closers.push(() => back.close())
    for (let i = 0; i < 25; i++) back.push(decision(`198.18.7.${i}`))
    await back.flush()
    const sent = fake.alertBatches.flat() as Array<{ source: { value: string } }>
    // The newest ten survive.
    expect(sent.map((a) => a.source.value)).toEqual(Array.from({ length: 10 }, (_, i) => `198.18.7.${15 + i}`))
  })

  it('pushes the time remaining and drops alerts whose ban already ended', async () => {
    const f = await setup()
    const clock = new Clock()
    const { push } = makePush(f, { now: clock.now })
    push.push(decision('198.18.8.1', { ttlMs: 60_000 }))
    push.push(decision('198.18.8.2', { ttlMs: 3_600_000 }))
    clock.t += 61_000
    await push.flush()
    expect(push.stats()).toMatchObject({ pushes: 1, expired: 1 })
    const sent = f.alertBatches.flat() as Array<{ decisions: Array<{ duration: string }> }>
    expect(sent[0]?.decisions[0]?.duration).toBe('58m59s')
  })

  it('remembers what it pushed until the ban ends', () => {
    const clock = new Clock()
    const push = new FleetPush({ client: { pushAlerts: async () => [] }, now: clock.now })
    push.push(decision('198.18.9.1', { ttlMs: 10_000 }))
    expect(push.pushed('198.18.9.1')).toBe(true)
    expect(push.pushed('198.18.9.2')).toBe(false)
    clock.t += 10_001
    expect(push.pushed('198.18.9.1')).toBe(false)
  })

  it('close() makes a last attempt and is idempotent', async () => {
    const f = await setup()
    const { push } = makePush(f)
    push.start()
    push.push(decision('198.18.10.1'))
    const a = push.close()
    const b = push.close()
    await Promise.all([a, b])
    expect(f.alertBatches.flat()).toHaveLength(1)
    expect(push.push(decision('198.18.10.2'))).toBe(false)
  })
})

class RecordingResponder {
  readonly name = 'recording'
  blocks: BlockRequest[][] = []
  unblocks: string[][] = []
  unblockOptions: unknown[] = []
  failFor = new Set<string>()
  async block(requests: readonly BlockRequest[]): Promise<ResponderResult> {
    this.blocks.push([...requests])
    const failed = requests.filter((r) => this.failFor.has(r.address)).map((r) => ({ address: r.address, error: 'nft said no' }))
    const applied = requests.filter((r) => !this.failFor.has(r.address)).map((r) => r.address)
    return { responder: this.name, ok: failed.length === 0, applied, failed }
  }
  async unblock(addresses: readonly string[], options?: unknown): Promise<ResponderResult> {
    this.unblocks.push([...addresses])
    this.unblockOptions.push(options)
    return { responder: this.name, ok: true, applied: [...addresses], failed: [] }
  }
}

describe('FleetPull', () => {
  async function makePull(over: Partial<ConstructorParameters<typeof FleetPull>[0]> = {}) {
    const f = await setup()
    const responder = new RecordingResponder()
    const guards = new Guards({ gateways: ['198.18.0.2'], allowlist: ['198.18.100.0/24'] })
    const events: FleetStreamEvent[] = []
    const client = new LapiClient({ url: f.url, bouncerKey: KEY, timeoutMs: 1000 })
    const pull = new FleetPull({ client, responder, guards, onEvent: (e) => events.push(e), ...over })
    closers.push(() => pull.close())
    return { f, pull, responder, guards, events }
  }

  it('syncs at startup, then applies new bans with the time remaining, once', async () => {
    const { f, pull, responder, events } = await makePull()
    await pull.poll()
    expect(f.requests).toEqual(['GET /v1/decisions/stream?startup=true'])
    expect(responder.blocks).toEqual([]) // null lists
    f.feed({ new: [{ id: 7, value: '198.18.5.5', duration: '3h59m58.123s', origin: 'portanoia', scenario: SCENARIO_VERIFIED }] })
    await pull.poll()
    expect(f.requests[1]).toBe('GET /v1/decisions/stream')
    expect(responder.blocks).toHaveLength(1)
    const req = responder.blocks[0]?.[0]
    // The fleet's own set, tagged with the decision: a restart adopts it as this fleet ban.
    expect(req).toMatchObject({ address: '198.18.5.5', family: 4, evidence: 'fleet', fleet: { id: 7, origin: 'portanoia', scenario: SCENARIO_VERIFIED } })
    expect(req?.upgrade).toBeUndefined()
    expect(req?.ttlMs).toBeGreaterThan(14_397_000)
    expect(req?.ttlMs).toBeLessThanOrEqual(14_398_123)
    const applied = events[0] as FleetDecisionEvent
    expect(applied).toMatchObject({ type: 'decision', source: 'fleet', action: 'block', reason: 'fleet', src: '198.18.5.5', fleetId: 7, origin: 'portanoia' })
    // The same decision again (LAPI re-sends, or a restart of the stream): nothing to do.
    f.feed({ new: [{ id: 7, value: '198.18.5.5', duration: '3h59m50s' }] })
    await pull.poll()
    expect(responder.blocks).toHaveLength(1)
    // A longer one replaces it.
    f.feed({ new: [{ id: 8, value: '198.18.5.5', duration: '24h' }] })
    await pull.poll()
    expect(responder.blocks).toHaveLength(2)
    expect(pull.stats()).toMatchObject({ pulls: 4, applied: 2, active: 1, refused: 0 })
    validate(events)
  })

  it('applies deletions only to bans it applied, matching the decision id', async () => {
    const { f, pull, responder, events } = await makePull()
    await pull.poll()
    f.feed({ new: [{ id: 1, value: '198.18.6.6' }, { id: 2, value: 'fd52:43dd:9::0009' }] })
    await pull.poll()
    expect(responder.blocks[0]?.map((r) => r.address)).toEqual(['198.18.6.6', 'fd52:43dd:9::9'])
    f.feed({ deleted: [{ id: 99, value: '198.18.6.6' }, { id: 5, value: '198.18.66.66' }] })
    await pull.poll()
    expect(responder.unblocks).toEqual([]) // another decision's id; an address never applied
    f.feed({ deleted: [{ id: 1, value: '198.18.6.6' }, { id: 2, value: 'fd52:43dd:9::9' }] })
    await pull.poll()
    expect(responder.unblocks).toEqual([['198.18.6.6', 'fd52:43dd:9::9']])
    // LAPI re-sends deletions for a while: lifted once.
    f.feed({ deleted: [{ id: 1, value: '198.18.6.6' }] })
    await pull.poll()
    expect(responder.unblocks).toHaveLength(1)
    expect(pull.stats()).toMatchObject({ unblocked: 2, active: 0 })
    expect(events.filter((e) => e.type === 'fleet' && e.op === 'unblocked')).toHaveLength(2)
    validate(events)
  })

  it('deleted and re-added in one answer ends up banned', async () => {
    const { f, pull, responder } = await makePull()
    await pull.poll()
    f.feed({ new: [{ id: 1, value: '198.18.6.7', duration: '1h' }] })
    await pull.poll()
    f.feed({ deleted: [{ id: 1, value: '198.18.6.7' }], new: [{ id: 3, value: '198.18.6.7', duration: '1h' }] })
    await pull.poll()
    expect(responder.unblocks).toEqual([['198.18.6.7']])
    expect(responder.blocks).toHaveLength(2)
    expect(pull.active().get('198.18.6.7')?.id).toBe(3)
  })

  it('local guards win: a ban on a guarded address is refused with a guard decision', async () => {
    const { f, pull, responder, events } = await makePull()
    await pull.poll()
    f.feed({ new: [{ id: 4, value: '198.18.0.2', origin: 'portanoia' }, { id: 5, value: '198.18.100.7' }, { id: 6, value: '127.0.0.1' }] })
    await pull.poll()
    expect(responder.blocks).toEqual([])
    const refusals = events.filter((e): e is FleetDecisionEvent => e.type === 'decision')
    expect(refusals.map((e) => [e.action, e.reason, e.src, e.source])).toEqual([
      ['none', 'guard:gateway', '198.18.0.2', 'fleet'],
      ['none', 'guard:allowlist', '198.18.100.7', 'fleet'],
      ['none', 'guard:special', '127.0.0.1', 'fleet'],
    ])
    expect(pull.stats()).toMatchObject({ refused: 3, applied: 0 })
    // Re-sent: not reported again.
    f.feed({ new: [{ id: 4, value: '198.18.0.2' }] })
    await pull.poll()
    expect(pull.stats().refused).toBe(3)
    validate(events)
  })

  it('re-checks refused and applied bans when the guards change', async () => {
    const { f, pull, responder, guards, events } = await makePull()
    await pull.poll()
    f.feed({ new: [{ id: 1, value: '198.18.0.2' }, { id: 2, value: '198.18.44.4' }] })
    await pull.poll()
    expect(responder.blocks.flat().map((r) => r.address)).toEqual(['198.18.44.4'])
    // The gateway moves; an operator allowlists 198.18.44.4.
    guards.update({ gateways: ['198.18.0.3'], allowlist: ['198.18.44.4'] })
    await pull.poll()
    expect(responder.blocks.flat().map((r) => r.address)).toEqual(['198.18.44.4', '198.18.0.2'])
    expect(responder.unblocks).toEqual([['198.18.44.4']])
    expect(events.filter((e) => e.type === 'decision').map((e) => `${e.action}:${e.reason}:${e.src}`)).toEqual([
      'none:guard:gateway:198.18.0.2',
      'block:fleet:198.18.44.4',
      'none:guard:allowlist:198.18.44.4',
      'block:fleet:198.18.0.2',
    ])
  })

  it("skips this host's own decisions coming back; a deletion lifts the fleet's own element only", async () => {
    const local = new Set(['198.18.7.1', '198.18.7.2'])
    const { f, pull, responder, events } = await makePull({ isLocalBlock: (a) => local.has(a) })
    await pull.poll()
    f.feed({
      new: [
        { id: 1, value: '198.18.7.1', origin: 'portanoia' }, // ours, back from LAPI
        { id: 2, value: '198.18.7.2', origin: 'cscli' }, // an operator's ban on an address we also block
        { id: 3, value: '198.18.7.3', origin: 'portanoia' }, // another host's
      ],
    })
    await pull.poll()
    expect(responder.blocks.flat().map((r) => r.address)).toEqual(['198.18.7.2', '198.18.7.3'])
    expect(events).toContainEqual(expect.objectContaining({ op: 'skipped', why: 'own', src: '198.18.7.1' }))
    f.feed({ deleted: [{ id: 2, value: '198.18.7.2' }, { id: 3, value: '198.18.7.3' }] })
    await pull.poll()
    // Both fleet bans go; the local block of 198.18.7.2 lives in a set of its own and stays.
    expect(responder.unblocks).toEqual([['198.18.7.2', '198.18.7.3']])
    expect(responder.unblockOptions).toEqual([{ evidence: 'fleet' }])
  })

  it('clamps a ban longer than the firewall holds, once, with one event; never retries it for its length', async () => {
    const { f, pull, responder, events } = await makePull({ maxTtlMs: 10_000_000 })
    await pull.poll()
    f.feed({ new: [{ id: 11, value: '198.18.8.1', duration: '876000h', origin: 'cscli', scenario: 'forever' }] })
    for (let i = 0; i < 4; i++) await pull.poll()
    expect(responder.blocks).toHaveLength(1)
    expect(responder.blocks[0]?.[0]?.ttlMs).toBeLessThanOrEqual(10_000_000)
    expect(responder.blocks[0]?.[0]?.ttlMs).toBeGreaterThan(9_990_000)
    const clamped = events.filter((e) => e.type === 'fleet' && e.op === 'clamped')
    expect(clamped).toHaveLength(1)
    expect(clamped[0]).toMatchObject({ src: '198.18.8.1', detail: expect.stringMatching(/^876000h → 2h46m4\d/) })
    expect(events.filter((e) => e.type === 'fleet' && e.op === 'apply-failed')).toEqual([])
    validate(events)
  })

  it('adopts fleet bans found in the kernel with their tag, so a deletion of that decision still lifts them', async () => {
    const { f, pull, responder } = await makePull()
    await pull.poll()
    const n = await pull.adopt([
      { address: '198.18.9.9', family: 4, expiresInMs: 3_600_000, evidence: 'fleet', fleet: { id: 21, origin: 'crowdsec', scenario: 's' } },
      { address: '198.18.0.2', family: 4, expiresInMs: 3_600_000, evidence: 'fleet', fleet: { id: 22, origin: 'crowdsec', scenario: 's' } },
      { address: '198.18.9.10', family: 4, expiresInMs: 3_600_000, evidence: 'verified' },
    ])
    // One adopted; the one on the gateway is lifted at once (guards win); a local one is not the fleet's.
    expect(n).toBe(1)
    expect(responder.unblocks).toEqual([['198.18.0.2']])
    expect(pull.bans().map((b) => [b.address, b.tag.id])).toEqual([['198.18.9.9', 21]])
    // Another decision of the same address is not this ban.
    f.feed({ deleted: [{ id: 99, value: '198.18.9.9' }] })
    await pull.poll()
    expect(responder.unblocks).toHaveLength(1)
    f.feed({ deleted: [{ id: 21, value: '198.18.9.9' }] })
    await pull.poll()
    expect(responder.unblocks).toEqual([['198.18.0.2'], ['198.18.9.9']])
    expect(pull.bans()).toEqual([])
  })

  it('skips Range scopes, other types, bad values and ended bans, and says so', async () => {
    const { f, pull, responder, events } = await makePull()
    await pull.poll()
    f.feed({
      new: [
        { value: '198.18.8.0/24', scope: 'Range' },
        { value: 'FR', scope: 'Country' },
        { value: '198.18.8.1', type: 'captcha' },
        { value: 'not-an-ip' },
        { value: '198.18.8.2', duration: '-1.5s' },
        { value: '198.18.8.3', duration: 'soon' },
      ],
    })
    await pull.poll()
    expect(responder.blocks).toEqual([])
    const skipped = events.filter((e) => e.type === 'fleet' && e.op === 'skipped')
    expect(skipped.map((e) => (e.type === 'fleet' ? `${e.why}:${e.detail}` : ''))).toEqual([
      'scope:Range',
      'scope:Country',
      'type:captcha',
      'bad-value:not-an-ip',
      'expired:-1.5s',
      'bad-duration:soon',
    ])
    expect(pull.stats().skipped).toBe(6)
    validate(events)
  })

  it('retries a ban the responder failed to apply', async () => {
    const { f, pull, responder } = await makePull()
    responder.failFor.add('198.18.9.9')
    await pull.poll()
    f.feed({ new: [{ id: 1, value: '198.18.9.9' }] })
    await pull.poll()
    expect(pull.stats()).toMatchObject({ applied: 0, applyFailures: 1 })
    responder.failFor.clear()
    await pull.poll()
    expect(pull.stats()).toMatchObject({ applied: 1, active: 1 })
    expect(responder.blocks).toHaveLength(2)
  })

  it('counts failed pulls, reports once, and syncs from scratch until one startup call succeeds', async () => {
    const { f, pull, events } = await makePull()
    f.failNext('/v1/decisions/stream', 3, 500)
    await pull.poll()
    await pull.poll()
    await pull.poll()
    await pull.poll()
    expect(f.requests).toEqual(Array(4).fill('GET /v1/decisions/stream?startup=true'))
    expect(pull.stats()).toMatchObject({ pulls: 1, pullFailures: 3 })
    expect(events.map((e) => (e.type === 'fleet' ? e.op : e.type))).toEqual(['pull-failed', 'pull-recovered'])
    validate(events)
  })

  it('polls on its own once started', async () => {
    const { f, pull, responder } = await makePull({ intervalMs: 30 })
    pull.start()
    f.feed({ new: [{ id: 1, value: '198.18.11.1' }] })
    await expect.poll(() => responder.blocks.length, { timeout: 2000 }).toBe(1)
    await expect.poll(() => pull.stats().pulls, { timeout: 2000 }).toBeGreaterThan(3)
    await pull.close()
    // The sentinel: a second pull on the same interval against the same LAPI. Once it
    // has polled three more times, a timer the closed one had left would have fired too.
    const sentinel = new FleetPull({
      client: new LapiClient({ url: f.url, bouncerKey: KEY, timeoutMs: 1000 }),
      responder: new RecordingResponder(),
      guards: new Guards(),
      onEvent: () => {},
      intervalMs: 30,
    })
    closers.push(() => sentinel.close())
    const n = f.requests.length
    sentinel.start()
    await expect.poll(() => sentinel.stats().pulls, { timeout: 10_000 }).toBeGreaterThanOrEqual(3)
    await sentinel.close()
    expect(f.requests.length - n).toBe(sentinel.stats().pulls + sentinel.stats().pullFailures)
  })
})
