/**
 * Attribution without a kernel: the Attributor's fold rule (verified beats everything,
 * forged needs a forged verdict, plausible otherwise), its cache per source and packet
 * signature, the check budget, pending answers and their settling, the verified memory,
 * marks, validator failures and bounded memory; and the built-in validators against a
 * fake LinkFacts (test/helpers/fake-link.ts): reverse path (no route, another interface,
 * a bridge port, a VLAN tag, own addresses, loose mode), link layer (a confirmed entry,
 * a question answered by the frame's MAC, by another, by nobody, by several, guarded
 * addresses always asked, off-link sources left alone), LinkView's questions (retry,
 * window, coalescing, budget, answers heard on a bridge port) and hop counts learned
 * from verified handshakes only. Expected values come from the rules written in
 * lib/attribution/types.ts and the validators' file comments.
 */
import { describe, expect, it } from 'vitest'
import { Attributor, fold } from '../../lib/attribution/attributor.js'
import { hopCountValidator, initialTtl } from '../../lib/attribution/hop-count.js'
import { linkLayerValidator } from '../../lib/attribution/link-layer.js'
import { LinkView } from '../../lib/attribution/link-view.js'
import { reversePathValidator } from '../../lib/attribution/reverse-path.js'
import type { ValidationContext, Validator, ValidatorResult } from '../../lib/attribution/types.js'
import { NUD, RTN } from '../../lib/binding.js'
import type { Hit } from '../../lib/types.js'
import { FakeLinkFacts } from '../helpers/fake-link.js'

function hit(src: string, over: Partial<Hit> = {}): Hit {
  return {
    time: 0,
    timeNs: 0n,
    src,
    srcPort: 40000,
    dst: src.includes(':') ? 'fd52:43dd::1' : '198.18.0.1',
    dstPort: 2222,
    family: src.includes(':') ? 6 : 4,
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
    srcMac: '02:00:00:00:00:aa',
    attribution: over.verified === true ? 'verified' : 'plausible',
    evidence: [],
    ...over,
  }
}

function ctx(src: string, over: Partial<ValidationContext> = {}): ValidationContext {
  const h = hit(src)
  return { src, family: h.family, dst: h.dst, ifindex: 2, interface: 'eth0', vlan: undefined, srcMac: '02:00:00:00:00:aa', ttl: 64, hit: h, ...over }
}

/** A validator whose answers the test sets per source, counting its calls. */
function scripted(name: string, answers: Record<string, ValidatorResult | null | Promise<ValidatorResult | null>>): Validator & { calls: string[] } {
  const calls: string[] = []
  return {
    name,
    calls,
    validate: (c) => {
      calls.push(c.src)
      const a = answers[c.src]
      return a === undefined ? null : a
    },
  }
}

const forged = (...evidence: string[]): ValidatorResult => ({ verdict: 'forged', evidence })
const plausible = (...evidence: string[]): ValidatorResult => ({ verdict: 'plausible', evidence })

describe('the fold rule', () => {
  it('forged needs a forged verdict; plausible otherwise; evidence is the union in validator order', () => {
    expect(fold([plausible('a'), null, { evidence: ['b', 'a'] }], false)).toMatchObject({ attribution: 'plausible', evidence: ['a', 'b'], pending: false })
    expect(fold([plausible('link:match'), forged('hops:mismatch')], false)).toMatchObject({ attribution: 'forged', evidence: ['link:match', 'hops:mismatch'] })
    expect(fold([], false)).toMatchObject({ attribution: 'plausible', evidence: [] })
  })

  it('an open answer says pending; a forged one is final and is not', () => {
    expect(fold([plausible('x')], true)).toMatchObject({ attribution: 'plausible', evidence: ['x', 'pending'], pending: true })
    expect(fold([forged('self')], true)).toMatchObject({ attribution: 'forged', evidence: ['self'], pending: false })
  })

  it('details merge, the first validator’s key wins', () => {
    expect(fold([{ evidence: [], detail: { a: 1 } }, { evidence: [], detail: { a: 2, b: 'x' } }], false).detail).toEqual({ a: 1, b: 'x' })
  })
})

describe('Attributor', () => {
  it('validates once per source and signature (interface, link-layer source, TTL) and hands out one shared answer', () => {
    const v = scripted('s', { '198.18.0.7': forged('rpf:no-route') })
    const a = new Attributor({ validators: [v] })
    const first = a.attribute(hit('198.18.0.7'))
    expect(a.attribute(hit('198.18.0.7', { srcPort: 1, dstPort: 3 }))).toBe(first)
    expect(v.calls).toEqual(['198.18.0.7'])
    a.attribute(hit('198.18.0.7', { ttl: 50 }))
    a.attribute(hit('198.18.0.7', { srcMac: '02:00:00:00:00:bb' }))
    a.attribute(hit('198.18.0.7', { ifindex: 3 }))
    expect(v.calls.length).toBe(4)
    expect(first).toMatchObject({ attribution: 'forged', evidence: ['rpf:no-route'] })
    expect(Object.isFrozen(first) && Object.isFrozen(first.evidence)).toBe(true)
  })

  it('asks again once an answer is older than ttlMs', () => {
    const clock = { t: 0 }
    const v = scripted('s', {})
    const a = new Attributor({ validators: [v], ttlMs: 1000, now: () => clock.t })
    a.attribute(hit('198.18.0.7'))
    clock.t = 999
    a.attribute(hit('198.18.0.7'))
    clock.t = 1000
    a.attribute(hit('198.18.0.7'))
    expect(v.calls.length).toBe(2)
  })

  it('rations new checks: past checksPerSecond a new source is unchecked until the next second', () => {
    const clock = { t: 0 }
    const v = scripted('s', {})
    const a = new Attributor({ validators: [v], checksPerSecond: 2, now: () => clock.t })
    a.attribute(hit('198.18.0.1'))
    a.attribute(hit('198.18.0.2'))
    expect(a.attribute(hit('198.18.0.3'))).toMatchObject({ attribution: 'plausible', evidence: ['unchecked'] })
    expect(a.stats()).toMatchObject({ checks: 2, skipped: 1 })
    clock.t = 1000
    expect(a.attribute(hit('198.18.0.3')).evidence).toEqual([])
    expect(v.calls).toEqual(['198.18.0.1', '198.18.0.2', '198.18.0.3'])
  })

  it('caches no answer for hits past the budget: a flood of new sources evicts none of the checked answers', () => {
    const clock = { t: 0 }
    const v = scripted('s', {})
    const a = new Attributor({ validators: [v], checksPerSecond: 2, maxEntries: 2, now: () => clock.t })
    a.attribute(hit('198.18.0.1'))
    a.attribute(hit('198.18.0.2'))
    for (let i = 0; i < 100; i++) expect(a.attribute(hit(`198.18.1.${i}`)).evidence).toEqual(['unchecked'])
    expect(a.stats()).toMatchObject({ checks: 2, skipped: 100, cached: 2 })
    // Still the checked answers (a cached `unchecked` would have evicted them), with no new check.
    expect(a.attribute(hit('198.18.0.1')).evidence).toEqual([])
    expect(a.attribute(hit('198.18.0.2')).evidence).toEqual([])
    expect(v.calls).toEqual(['198.18.0.1', '198.18.0.2'])
  })

  it('answerFor() of the hit just attributed is its answer; after a mark it is asked afresh', () => {
    const a = new Attributor({ validators: [scripted('s', {})] })
    const h = hit('198.18.0.3')
    const first = a.attribute(h)
    expect(a.answerFor(h)).toBe(first)
    a.mark('198.18.0.3', ['decoy'], 60_000)
    expect(a.answerFor(h).evidence).toContain('decoy')
    expect(a.stats().hits).toBe(1)
  })

  it('a pending answer settles: the cache holds the final one and listeners hear the source', async () => {
    let resolve!: (r: ValidatorResult) => void
    const later = new Promise<ValidatorResult>((r) => (resolve = r))
    const a = new Attributor({ validators: [scripted('sync', { '198.18.0.9': { evidence: ['rpf:pass'] } }), scripted('async', { '198.18.0.9': later })] })
    const heard: string[] = []
    a.onSettled((src, r) => heard.push(`${src} ${r.attribution}`))
    expect(a.attribute(hit('198.18.0.9'))).toMatchObject({ attribution: 'plausible', evidence: ['rpf:pass', 'pending'], pending: true })
    expect(a.stats().pending).toBe(1)
    resolve(forged('link:no-answer'))
    await later
    await new Promise((r) => setImmediate(r))
    expect(heard).toEqual(['198.18.0.9 forged'])
    expect(a.attribute(hit('198.18.0.9'))).toMatchObject({ attribution: 'forged', evidence: ['rpf:pass', 'link:no-answer'], pending: false })
    expect(a.stats().pending).toBe(0)
  })

  it('a source that completed a handshake stays verified: later packets claiming it keep their evidence, not their verdict', () => {
    const clock = { t: 0 }
    const a = new Attributor({ validators: [scripted('s', { '198.18.0.5': forged('hops:mismatch') })], verifiedMs: 5000, now: () => clock.t })
    expect(a.attribute(hit('198.18.0.5'))).toMatchObject({ attribution: 'forged' })
    expect(a.attribute(hit('198.18.0.5', { kind: 'connect', verified: true, ifindex: 0, ttl: 0 }))).toMatchObject({ attribution: 'verified', evidence: [] })
    expect(a.attribute(hit('198.18.0.5'))).toMatchObject({ attribution: 'verified', evidence: ['hops:mismatch'] })
    clock.t = 5000
    expect(a.attribute(hit('198.18.0.5')).attribution).toBe('forged')
  })

  it('a validator that throws or rejects costs its verdict, not the answer', async () => {
    const errors: string[] = []
    const a = new Attributor({
      validators: [
        { name: 'boom', validate: () => { throw new Error('boom') } },
        { name: 'reject', validate: () => Promise.reject(new Error('no')) },
        scripted('ok', { '198.18.0.4': plausible('link:match') }),
      ],
      onError: (v) => errors.push(v),
    })
    expect(a.attribute(hit('198.18.0.4'))).toMatchObject({ attribution: 'plausible', evidence: ['validator-failed', 'link:match', 'pending'] })
    await new Promise((r) => setImmediate(r))
    expect(a.attribute(hit('198.18.0.4'))).toMatchObject({ attribution: 'plausible', evidence: ['validator-failed', 'link:match'], detail: { failedValidator: 'boom' } })
    expect(errors).toEqual(['boom', 'reject'])
  })

  it('marks add evidence to every answer about a source until they run out', () => {
    const clock = { t: 0 }
    const a = new Attributor({ validators: [scripted('s', { '198.18.0.3': forged('link:no-answer') })], now: () => clock.t })
    a.mark('198.18.0.3', ['decoy'], 100)
    expect(a.attribute(hit('198.18.0.3')).evidence).toEqual(['link:no-answer', 'decoy'])
    a.mark('198.18.0.3', ['decoy', 'decoy:sender'], 100)
    expect(a.attribute(hit('198.18.0.3')).evidence).toEqual(['link:no-answer', 'decoy', 'decoy:sender'])
    clock.t = 100
    expect(a.attribute(hit('198.18.0.3')).evidence).toEqual(['link:no-answer'])
  })

  it('keeps at most maxEntries answers; closed, it answers unchecked and closes its validators', () => {
    let closed = 0
    const a = new Attributor({ validators: [{ name: 'c', validate: () => null, close: () => closed++ }], maxEntries: 100, checksPerSecond: 1e9 })
    for (let i = 0; i < 1000; i++) a.attribute(hit(`198.18.${i >> 8}.${i & 255}`))
    expect(a.stats().cached).toBe(100)
    a.close()
    a.close()
    expect(closed).toBe(1)
    expect(a.attribute(hit('198.18.0.1')).evidence).toEqual(['unchecked'])
    expect(a.attribute(hit('198.18.0.1', { verified: true })).attribution).toBe('verified')
  })
})

/** eth0 (2) and eth1 (3) on the sensor, br0 (4) with port veth1 (5), eth0.100 (6), lo (1). */
function facts(): FakeLinkFacts {
  return new FakeLinkFacts()
    .link(1, 'lo', { type: 772, mac: '00:00:00:00:00:00' })
    .link(2, 'eth0')
    .link(3, 'eth1')
    .link(4, 'br0', { kind: 'bridge' })
    .link(5, 'veth1', { kind: 'veth', master: 4 })
    .link(6, 'eth0.100', { kind: 'vlan', vlan: 100, link: 2 })
}

describe('reverse path', () => {
  it('no route back, another interface, an own address from a link: forged; the arrival interface: pass', () => {
    const f = facts()
    f.routes.set('203.0.113.9', { type: RTN.blackhole, oif: 0, table: 254 })
    f.via('192.0.2.7', '198.18.1.1', 3)
    f.via('192.0.2.8', '198.18.0.254', 2)
    f.routes.set('198.18.0.1', { type: RTN.local, oif: 1, table: 255 })
    const v = reversePathValidator(new LinkView({ native: f }))
    expect(v.validate(ctx('203.0.113.9'))).toMatchObject({ verdict: 'forged', evidence: ['rpf:no-route'] })
    expect(v.validate(ctx('10.9.9.9'))).toMatchObject({ verdict: 'forged', evidence: ['rpf:no-route'] })
    expect(v.validate(ctx('192.0.2.7'))).toMatchObject({ verdict: 'forged', evidence: ['rpf:other-interface'], detail: { routeInterface: 'eth1' } })
    expect(v.validate(ctx('192.0.2.8'))).toEqual({ evidence: ['rpf:pass'] })
    expect(v.validate(ctx('198.18.0.1'))).toMatchObject({ verdict: 'forged', evidence: ['self'] })
    expect(v.validate(ctx('198.18.0.1', { ifindex: 1 }))).toBeNull()
    expect(v.validate(ctx('192.0.2.7', { ifindex: 0 }))).toBeNull()
  })

  it('a bridge port is its bridge, a tagged frame is its VLAN device', () => {
    const f = facts().onLink('198.19.0.9', 4).onLink('198.20.0.9', 6)
    const v = reversePathValidator(new LinkView({ native: f }))
    expect(v.validate(ctx('198.19.0.9', { ifindex: 5 }))).toEqual({ evidence: ['rpf:pass'] })
    expect(v.validate(ctx('198.19.0.9', { ifindex: 4 }))).toEqual({ evidence: ['rpf:pass'] })
    expect(v.validate(ctx('198.20.0.9', { ifindex: 2, vlan: 100 }))).toEqual({ evidence: ['rpf:pass'] })
    expect(v.validate(ctx('198.20.0.9', { ifindex: 2, vlan: 200 }))).toMatchObject({ evidence: ['rpf:other-interface'] })
    expect(v.validate(ctx('198.20.0.9', { ifindex: 2 }))).toMatchObject({ evidence: ['rpf:other-interface'] })
  })

  it('loose mode keeps only "no route" and "self"', () => {
    const f = facts().via('192.0.2.7', '198.18.1.1', 3)
    f.routes.set('203.0.113.9', { type: RTN.unreachable, oif: 0, table: 0 })
    const v = reversePathValidator(new LinkView({ native: f }), 'loose')
    expect(v.validate(ctx('192.0.2.7'))).toEqual({ evidence: ['rpf:pass'] })
    expect(v.validate(ctx('203.0.113.9'))).toMatchObject({ verdict: 'forged' })
  })
})

describe('link layer', () => {
  const FRAME = '02:00:00:00:00:aa'
  const OTHER = '02:00:00:00:00:bb'
  const view = (f: FakeLinkFacts): LinkView => new LinkView({ native: f, windowMs: 40, retryMs: 15 })

  it('a confirmed neighbour entry answers at once: the same MAC is a match, another a mismatch', () => {
    const f = facts().onLink('198.18.0.2', 2).onLink('198.18.0.3', 2).entry('198.18.0.2', 2, NUD.reachable, FRAME).entry('198.18.0.3', 2, NUD.permanent, OTHER)
    const v = linkLayerValidator(view(f))
    expect(v.validate(ctx('198.18.0.2'))).toMatchObject({ verdict: 'plausible', evidence: ['link:match'] })
    expect(v.validate(ctx('198.18.0.3'))).toMatchObject({ verdict: 'forged', evidence: ['link:mismatch'], detail: { holder: OTHER, frameMac: FRAME } })
    expect(f.probes).toEqual([])
  })

  it('anything less is asked: one answer from the frame’s MAC, another MAC, nobody, several', async () => {
    const f = facts()
    for (const a of ['198.18.0.4', '198.18.0.5', '198.18.0.6', '198.18.0.7']) f.onLink(a, 2)
    f.entry('198.18.0.4', 2, NUD.stale, OTHER) // a STALE entry can be a forger's: asked
    f.station('198.18.0.4', FRAME, 2).station('198.18.0.5', OTHER, 2).station('198.18.0.7', FRAME, 2).station('198.18.0.7', OTHER, 2)
    const v = linkLayerValidator(view(f))
    const [match, mismatch, none, conflict] = await Promise.all(['198.18.0.4', '198.18.0.5', '198.18.0.6', '198.18.0.7'].map((a) => v.validate(ctx(a))))
    expect(match).toMatchObject({ verdict: 'plausible', evidence: ['link:match'] })
    expect(mismatch).toMatchObject({ verdict: 'forged', evidence: ['link:mismatch'], detail: { holder: OTHER } })
    expect(none).toMatchObject({ verdict: 'forged', evidence: ['link:no-answer'] })
    expect(conflict).toEqual({ evidence: ['link:conflict'], detail: { holder: `${FRAME} ${OTHER}`, frameMac: FRAME } })
    // Nobody answering was asked twice: one lost request must not read as silence.
    expect(f.probes.filter((p) => p.address === '198.18.0.6').length).toBe(2)
    expect(f.probes.filter((p) => p.address === '198.18.0.4').length).toBe(1)
    expect(f.probes[0]).toEqual({ address: '198.18.0.4', ifindex: 2, mac: '02:00:00:00:00:02' })
  })

  it('a guarded address is always asked, whatever the entry says', async () => {
    const f = facts().onLink('198.18.0.1', 2).entry('198.18.0.1', 2, NUD.reachable, FRAME).station('198.18.0.1', OTHER, 2)
    const v = linkLayerValidator(view(f), { ask: (src) => src === '198.18.0.1' })
    expect(await v.validate(ctx('198.18.0.1'))).toMatchObject({ verdict: 'forged', evidence: ['link:mismatch'] })
  })

  it('off-link sources, frames without a MAC, and packets from another interface than the route back are left alone', () => {
    const f = facts().via('192.0.2.1', '198.18.0.254', 2).onLink('198.18.1.2', 3)
    const v = linkLayerValidator(view(f))
    expect(v.validate(ctx('192.0.2.1'))).toBeNull()
    expect(v.validate(ctx('198.18.1.2', { ifindex: 3, srcMac: undefined }))).toBeNull()
    expect(v.validate(ctx('198.18.1.2'))).toBeNull()
    expect(f.probes).toEqual([])
  })

  it('answers on a port of the bridge asked on count; answers for other addresses or interfaces do not', async () => {
    const f = facts().onLink('198.19.0.9', 4).station('198.19.0.9', FRAME, 5).station('198.19.0.9', OTHER, 3)
    const v = linkLayerValidator(view(f))
    expect(await v.validate(ctx('198.19.0.9', { ifindex: 5 }))).toMatchObject({ verdict: 'plausible', evidence: ['link:match'] })
  })

  it('questions are coalesced, reused for answerTtlMs, and rationed (beyond: unchecked)', async () => {
    const f = facts().onLink('198.18.0.8', 2).onLink('198.18.0.9', 2).station('198.18.0.8', FRAME, 2)
    const lv = new LinkView({ native: f, windowMs: 30, retryMs: 10, asksPerSecond: 1 })
    const [a, b] = await Promise.all([lv.ask('198.18.0.8', 2), lv.ask('198.18.0.8', 2)])
    expect(a).toEqual([FRAME])
    expect(b).toBe(a)
    expect(await lv.ask('198.18.0.8', 2)).toBe(a)
    expect(await lv.ask('198.18.0.9', 2)).toBeNull()
    expect(f.probes.length).toBe(1)
    const v = linkLayerValidator(lv)
    expect(await v.validate(ctx('198.18.0.9'))).toEqual({ evidence: ['unchecked'] })
    lv.close()
    expect(f.closed).toBe(true)
  })
})

describe('hop count', () => {
  const ack = (src: string, ttl: number): Hit => hit(src, { kind: 'ack', tcpFlags: 0x10, ttl, srcPort: 50000 })
  const connect = (src: string): Hit => hit(src, { kind: 'connect', verified: true, ttl: 0, ifindex: 0, srcPort: 50000, tcpFlags: 0x10 })

  it('initial TTL is the smallest of 32, 64, 128, 255 not below the TTL seen', () => {
    expect([1, 32, 33, 64, 65, 128, 129, 255].map(initialTtl)).toEqual([32, 32, 64, 64, 128, 128, 255, 255])
  })

  it('learns the distance from the ACK of a verified handshake, and judges later packets by it', () => {
    const v = hopCountValidator()
    v.observe!(ack('198.18.0.2', 61))
    v.observe!(connect('198.18.0.2'))
    expect(v.learned('198.18.0.2')).toEqual({ initial: 64, hops: 3 })
    expect(v.validate(ctx('198.18.0.2', { ttl: 61 }))).toMatchObject({ verdict: 'plausible', evidence: ['hops:match'] })
    expect(v.validate(ctx('198.18.0.2', { ttl: 62 }))).toMatchObject({ verdict: 'plausible' })
    expect(v.validate(ctx('198.18.0.2', { ttl: 63 }))).toMatchObject({ verdict: 'forged', evidence: ['hops:mismatch'], detail: { learnedHops: 3, hops: 1 } })
    expect(v.validate(ctx('198.18.0.2', { ttl: 125 }))).toMatchObject({ verdict: 'forged' })
    expect(v.validate(ctx('198.18.0.3', { ttl: 30 }))).toBeNull()
  })

  it('learns nothing from packets that are not verified, or from a connect whose ACK it did not see', () => {
    const v = hopCountValidator()
    v.observe!(ack('198.18.0.2', 61))
    v.observe!(hit('198.18.0.2', { ttl: 40 }))
    expect(v.learned('198.18.0.2')).toBeUndefined()
    v.observe!(connect('198.18.0.4'))
    expect(v.learned('198.18.0.4')).toBeUndefined()
  })

  it('through the attributor: the verified source stays verified, the packet carries hops:mismatch', () => {
    const a = new Attributor({ validators: [hopCountValidator()] })
    a.attribute(ack('198.18.0.2', 64))
    a.attribute(connect('198.18.0.2'))
    expect(a.attribute(hit('198.18.0.2', { ttl: 50 }))).toMatchObject({ attribution: 'verified', evidence: ['hops:mismatch'] })
    expect(a.attribute(hit('198.18.0.2', { ttl: 64 }))).toMatchObject({ attribution: 'verified', evidence: ['hops:match'] })
  })
})
