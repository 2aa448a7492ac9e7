/**
 * The nftables responder on a real kernel, inside a test namespace only (every nft
 * command goes through netnsRun, so the host's firewall is never touched): a real
 * TCP service in the sensor namespace, peer 0 blocked through the responder and cut
 * off while peer 1 still connects, kernel-side expiry of a 2 s block, adoption on a
 * second start(), time left in list(), upgrade, unblock, repair, dry-run changing
 * nothing, and uninstall removing only `inet portanoia`.
 */
import type { ChildProcess } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { normalizeAddress } from '../../lib/policy/addr.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun } from '../../lib/responders/run.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { expectTimeLeft } from '../helpers/expiry.js'
import { canConnect, PROBE_PORT, startService } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/nftables.test.ts')

describe.skipIf(!IS_ROOT)('nftables responder (real kernel, test namespace)', () => {
  let net: TestNet
  let service: ChildProcess
  beforeAll(async () => {
    net = await createTestNet({ peers: 2 })
    service = await startService({ spawn: net.sensorSpawn }, PROBE_PORT)
  })
  afterAll(async () => {
    if (service !== undefined) await stop(service)
    await net?.destroy()
  })

  it('blocks, expires, adopts, lists, upgrades, unblocks and uninstalls', async () => {
    const run = netnsRun(net.sensorNs)
    // The helper writes fd52:43dd:0::2; responders take canonical literals only (fd52:43dd::2).
    const canon = (l: (typeof net.links)[0]): (typeof net.links)[0] => ({
      sensor: l.sensor,
      peer: { ...l.peer, ipv6: normalizeAddress(l.peer.ipv6) as string },
    })
    const [l0, l1] = net.links.map(canon) as [(typeof net.links)[0], (typeof net.links)[0]]
    // Another table that must survive everything portanoia does.
    const other = await net.sensorExec('nft', ['-f', '-'], {
      input: 'add table inet other\nadd chain inet other keep { type filter hook input priority 0; policy accept; }\n',
    })
    expect(other.code).toBe(0)

    const nft = new NftablesResponder({ run })
    expect(await nft.start()).toEqual([])
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(true)
    expect(await canConnect(l1.peer, l1.sensor.ipv4)).toBe(true)

    // Block peer 0 (both families): it is cut off, peer 1 is not.
    const blockedAt = Date.now()
    const b = await nft.block([
      { address: l0.peer.ipv4, family: 4, ttlMs: 3_600_000 },
      { address: l0.peer.ipv6, family: 6, ttlMs: 3_600_000 },
    ])
    expect(b).toMatchObject({ ok: true, applied: [l0.peer.ipv4, l0.peer.ipv6] })
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(false)
    expect(await canConnect(l0.peer, l0.sensor.ipv6)).toBe(false)
    expect(await canConnect(l1.peer, l1.sensor.ipv4)).toBe(true)
    expect(await canConnect(l1.peer, l1.sensor.ipv6)).toBe(true)

    // list() reads time left from the kernel.
    const listed = await nft.list()
    const v4 = listed.find((e) => e.address === l0.peer.ipv4)
    expect(v4).toMatchObject({ family: 4, timeoutMs: 3_600_000 })
    expectTimeLeft(v4!.expiresInMs, 3_600_000, blockedAt)
    expect(listed.find((e) => e.address === l0.peer.ipv6)).toMatchObject({ family: 6, timeoutMs: 3_600_000 })

    // A 2 s block on peer 1 expires in the kernel: nothing here removes it. (No probe
    // inside the 2 s: on a loaded machine it could start after the expiry; the hour
    // long blocks above show that an element drops traffic.)
    expect((await nft.block([{ address: l1.peer.ipv4, family: 4, ttlMs: 2000 }])).applied).toEqual([l1.peer.ipv4])
    await expect.poll(async () => (await nft.list()).map((e) => e.address), { timeout: 30_000, interval: 250 }).not.toContain(l1.peer.ipv4)
    expect(await canConnect(l1.peer, l1.sensor.ipv4)).toBe(true)

    // A second start() adopts: the blocks survive, no rule is duplicated.
    const again = new NftablesResponder({ run })
    const adopted = await again.start()
    expect(adopted.map((e) => e.address).sort()).toEqual([l0.peer.ipv4, l0.peer.ipv6].sort())
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(false)
    const rules = await net.sensorExec('nft', ['list', 'chain', 'inet', 'portanoia', 'input'])
    // One drop rule per set (three origins × two families), not one more.
    expect(rules.stdout.match(/drop/g)).toHaveLength(6)

    // A longer block grows the element (add, delete, add in one transaction).
    await again.block([{ address: l1.peer.ipv6, family: 6, ttlMs: 100_000 }])
    const up = await again.block([{ address: l1.peer.ipv6, family: 6, ttlMs: 3_600_000, upgrade: true }])
    expect(up.ok).toBe(true)
    expect((await again.list()).find((e) => e.address === l1.peer.ipv6)).toMatchObject({ timeoutMs: 3_600_000 })

    // Unblock: peer 0 is back; a second unblock finds nothing to remove.
    const u = await again.unblock([l0.peer.ipv4, l0.peer.ipv6, l1.peer.ipv6])
    expect(u).toMatchObject({ ok: true, applied: [l0.peer.ipv4, l0.peer.ipv6, l1.peer.ipv6], absent: [] })
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(true)
    expect(await canConnect(l0.peer, l0.sensor.ipv6)).toBe(true)
    expect((await again.unblock([l0.peer.ipv4])).absent).toEqual([l0.peer.ipv4])

    // Repair: rules removed behind our back come back on start(), the set keeps its element.
    await again.block([{ address: l0.peer.ipv4, family: 4, ttlMs: 600_000 }])
    expect((await net.sensorExec('nft', ['flush', 'chain', 'inet', 'portanoia', 'input'])).code).toBe(0)
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(true)
    expect((await new NftablesResponder({ run }).start()).map((e) => e.address)).toEqual([l0.peer.ipv4])
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(false)

    // Dry-run changes nothing.
    const before = (await net.sensorExec('nft', ['list', 'ruleset'])).stdout.replace(/expires \S+/g, '')
    const dry = new NftablesResponder({ run, dryRun: true })
    await dry.start()
    const d = await dry.block([{ address: l1.peer.ipv4, family: 4, ttlMs: 60_000 }])
    expect(d.script).toBe(`create element inet portanoia verified4 { ${l1.peer.ipv4} timeout 60s }\n`)
    await dry.unblock([l0.peer.ipv4])
    await dry.uninstall()
    const after = (await net.sensorExec('nft', ['list', 'ruleset'])).stdout.replace(/expires \S+/g, '')
    expect(after).toBe(before)

    // Uninstall removes inet portanoia only; a second uninstall is fine.
    expect((await again.uninstall()).ok).toBe(true)
    const tables = (await net.sensorExec('nft', ['list', 'tables'])).stdout
    expect(tables).not.toContain('portanoia')
    expect(tables).toContain('table inet other')
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(true)
    expect((await again.uninstall()).ok).toBe(true)
    expect(await again.list()).toEqual([])
  })

  it('adds the forward chain when asked and removes it when no longer asked', async () => {
    const run = netnsRun(net.sensorNs)
    const nft = new NftablesResponder({ run, forward: true })
    await nft.start()
    const chains = (await net.sensorExec('nft', ['list', 'table', 'inet', 'portanoia'])).stdout
    expect(chains).toMatch(/chain forward \{\s+type filter hook forward priority filter - 10; policy accept;/)
    // Back to input-only: the forward chain is removed on adopt.
    await new NftablesResponder({ run }).start()
    expect((await net.sensorExec('nft', ['list', 'table', 'inet', 'portanoia'])).stdout).not.toContain('chain forward')
    await nft.uninstall()
  })
})
