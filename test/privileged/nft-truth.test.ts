/**
 * The nftables responder keeps the kernel the truth (issue 8), on a real kernel in a
 * test namespace: timeouts only grow (a shorter request leaves the element alone, a
 * longer one grows it); origins never share an element, so a short fleet ban and a
 * 5-minute spoofable block leave a longer block of another origin as it was (with a
 * plain `add element` the kernel rewrote the timeout: 4 h became 4 s); fleet
 * elements carry their tag as a comment that list() reads back; a table of the
 * previous layout (block4/block6) is migrated element by element with the time left
 * and no moment without the block; a flushed ruleset is put back by repair() and by
 * block(). Expected values come from the requests written here; the kernel is read
 * with nft directly (test/helpers/nft.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NftablesResponder, parseMonitorLine } from '../../lib/responders/nftables.js'
import { netnsRun, netnsStream } from '../../lib/responders/run.js'
import type { FirewallChange } from '../../lib/responders/types.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftEntries, nftScript, nftShape } from '../helpers/nft.js'

warnIfNotRoot('test/privileged/nft-truth.test.ts')

const A = '198.18.0.2'
const B = '198.18.0.3'
const C = 'fd52:43dd::2'

describe.skipIf(!IS_ROOT)('nftables: the kernel is the truth', () => {
  let net: TestNet
  beforeAll(async () => {
    net = await createTestNet()
  })
  afterAll(async () => {
    await net?.destroy()
  })

  async function fresh(): Promise<NftablesResponder> {
    const r = await net.sensorExec('nft', ['delete', 'table', 'inet', 'portanoia'])
    if (r.code !== 0 && !/No such file/.test(r.stderr)) throw new Error(r.stderr)
    const nft = new NftablesResponder({ run: netnsRun(net.sensorNs) })
    await nft.start()
    return nft
  }

  const element = async (set: string, address: string) => (await nftEntries(net.sensorExec))?.find((e) => e.set === set && e.address === address)

  it('timeouts only grow: a shorter request is kept as it is, a longer one grows the element', async () => {
    const nft = await fresh()
    expect((await nft.block([{ address: A, family: 4, ttlMs: 3_600_000 }])).ok).toBe(true)
    const short = await nft.block([{ address: A, family: 4, ttlMs: 300_000 }, { address: B, family: 4, ttlMs: 300_000 }])
    expect(short).toMatchObject({ ok: true, kept: [A] })
    expect(short.applied.sort()).toEqual([A, B])
    expect((await element('verified4', A))?.timeout).toBe(3600)
    expect((await element('verified4', B))?.timeout).toBe(300)
    const longer = await nft.block([{ address: A, family: 4, ttlMs: 7_200_000 }])
    expect(longer).toMatchObject({ ok: true, extended: [A] })
    expect((await element('verified4', A))?.timeout).toBe(7200)
  })

  it('origins never share an element: a 1 min fleet ban and a 5 min spoofable block leave a 4 h block alone', async () => {
    const nft = await fresh()
    await nft.block([{ address: A, family: 4, ttlMs: 4 * 3_600_000, evidence: 'fleet', fleet: { id: 7, origin: 'crowdsec', scenario: 'crowdsecurity/ssh-bf' } }])
    await nft.block([{ address: B, family: 4, ttlMs: 4 * 3_600_000 }])
    // Another origin's short decision, and one forged SYN under --block all.
    // A minute, not seconds: the element must still be there when a loaded machine reads it.
    await nft.block([{ address: B, family: 4, ttlMs: 60_000, evidence: 'fleet', fleet: { id: 8, origin: 'cscli', scenario: 'manual' } }])
    await nft.block([{ address: A, family: 4, ttlMs: 300_000, evidence: 'spoofable' }])
    expect((await element('fleet4', A))?.timeout).toBe(4 * 3600)
    expect((await element('verified4', B))?.timeout).toBe(4 * 3600)
    expect((await element('fleet4', B))?.timeout).toBe(60)
    expect((await element('spoofable4', A))?.timeout).toBe(300)
    // The fleet tag is in the kernel and comes back from list().
    expect((await element('fleet4', A))?.comment).toBe('fleet id=7 origin=crowdsec scenario=crowdsecurity/ssh-bf')
    const listed = await nft.list()
    expect(listed.find((e) => e.address === A && e.evidence === 'fleet')).toMatchObject({ fleet: { id: 7, origin: 'crowdsec', scenario: 'crowdsecurity/ssh-bf' } })
    // A fleet deletion lifts the fleet ban only.
    const u = await nft.unblock([B], { evidence: 'fleet' })
    expect(u.applied).toEqual([B])
    expect(await element('fleet4', B)).toBeUndefined()
    expect((await element('verified4', B))?.timeout).toBe(4 * 3600)
  })

  it('migrates a table of the previous layout with the time left, in one transaction', async () => {
    await net.sensorExec('nft', ['delete', 'table', 'inet', 'portanoia'])
    await nftScript(
      net.sensorExec,
      `add table inet portanoia
add set inet portanoia block4 { type ipv4_addr; flags timeout; }
add set inet portanoia block6 { type ipv6_addr; flags timeout; }
add chain inet portanoia input { type filter hook input priority -10; policy accept; }
add rule inet portanoia input ip saddr @block4 counter drop
add rule inet portanoia input ip6 saddr @block6 counter drop
add element inet portanoia block4 { ${A} timeout 1h, ${B} timeout 5m }
add element inet portanoia block6 { ${C} timeout 2h }
`,
    )
    const nft = new NftablesResponder({ run: netnsRun(net.sensorNs) })
    const adopted = await nft.start()
    expect(adopted.map((e) => [e.address, e.evidence]).sort()).toEqual([
      [A, 'verified'],
      [B, 'spoofable'],
      [C, 'verified'],
    ])
    const shape = await nftShape(net.sensorExec)
    expect(shape?.sets.sort()).toEqual(['fleet4', 'fleet6', 'spoofable4', 'spoofable6', 'verified4', 'verified6'])
    expect(shape?.rules).toBe(6)
    const a = await element('verified4', A)
    expect(a?.expires).toBeGreaterThan(3500)
    expect(a?.expires).toBeLessThanOrEqual(3600)
    expect((await element('spoofable4', B))?.expires).toBeLessThanOrEqual(300)
    expect((await element('verified6', C))?.expires).toBeGreaterThan(7100)
  })

  it('puts back a flushed ruleset: repair() reports what was missing, block() repairs on its own', async () => {
    const nft = await fresh()
    await nft.block([{ address: A, family: 4, ttlMs: 3_600_000 }])
    expect(await nft.repair()).toEqual([])
    await nftScript(net.sensorExec, 'flush ruleset\n')
    expect(await nftEntries(net.sensorExec)).toBeNull()
    expect(await nft.repair()).toEqual(['table'])
    expect((await nftShape(net.sensorExec))?.rules).toBe(6)
    // The rules of a chain gone: only they come back, the elements stay.
    await nft.block([{ address: B, family: 4, ttlMs: 3_600_000 }])
    await nftScript(net.sensorExec, 'flush chain inet portanoia input\n')
    expect(await nft.repair()).toEqual(['rules input'])
    expect((await element('verified4', B))?.timeout).toBe(3600)
    // A block into a flushed ruleset: the table comes back first, and the result says so.
    await nftScript(net.sensorExec, 'flush ruleset\n')
    const r = await nft.block([{ address: C, family: 6, ttlMs: 60_000 }])
    expect(r).toMatchObject({ ok: true, applied: [C], repaired: ['table'] })
    expect((await element('verified6', C))?.timeout).toBe(60)
  })

  it('watch() reports deletions under its table, and only those', async () => {
    const nft = await fresh()
    const run = netnsRun(net.sensorNs)
    const watching = new NftablesResponder({ run, monitor: netnsStream(net.sensorNs) })
    await nft.block([{ address: A, family: 4, ttlMs: 3_600_000 }, { address: B, family: 4, ttlMs: 3_600_000, evidence: 'fleet', fleet: { origin: 'cscli', scenario: 's' } }])
    const seen: FirewallChange[] = []
    const w = watching.watch((c) => seen.push(c))
    expect(w).not.toBeNull()
    try {
      // The monitor needs a moment to subscribe; a sentinel table of another name tells when it listens.
      await nftScript(net.sensorExec, 'add table inet other\n')
      await new Promise((r) => setTimeout(r, 300))
      await nftScript(net.sensorExec, `delete element inet portanoia verified4 { ${A} }\ndelete table inet other\n`)
      await nftScript(net.sensorExec, `delete element inet portanoia fleet4 { ${B} }\n`)
      await nftScript(net.sensorExec, 'flush ruleset\n')
      const end = Date.now() + 5000
      while (!seen.some((c) => c.kind === 'structure') && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
    } finally {
      await w!.stop()
    }
    expect(seen.filter((c) => c.kind === 'elements')).toEqual([
      { kind: 'elements', evidence: 'verified', addresses: [A] },
      { kind: 'elements', evidence: 'fleet', addresses: [B] },
    ])
    expect(seen.some((c) => c.kind === 'structure')).toBe(true)
    // Nothing about the other table.
    expect(JSON.stringify(seen)).not.toContain('other')
  })

  it('parses what nft monitor prints, and ignores other tables', () => {
    expect(parseMonitorLine('{"delete": {"table": {"family": "inet", "name": "portanoia", "handle": 1}}}')).toEqual({ kind: 'structure', detail: 'table deleted' })
    expect(parseMonitorLine('{"delete": {"table": {"family": "inet", "name": "crowdsec", "handle": 1}}}')).toBeNull()
    expect(parseMonitorLine('W: Received event for an unknown set.')).toMatchObject({ kind: 'unknown' })
  })
})
