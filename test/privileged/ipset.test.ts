/**
 * The ipset/iptables responder on a real kernel, inside a test namespace only (every
 * ipset/iptables command goes through netnsRun): peer 0 blocked and cut off while
 * peer 1 still connects, a 2 s block expiring in the kernel, a second start() adding
 * no duplicate rule, list() with time left, unblock, dry-run changing nothing, and
 * uninstall removing only portanoia's rules and sets. Runs once with `iptables`
 * (the nf_tables variant on Debian 12) and once with `iptables-legacy` when present.
 */
import type { ChildProcess } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { normalizeAddress } from '../../lib/policy/addr.js'
import { IpsetResponder } from '../../lib/responders/ipset.js'
import { netnsRun } from '../../lib/responders/run.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { expectTimeLeft } from '../helpers/expiry.js'
import { canConnect, PROBE_PORT, startService } from '../helpers/tcp.js'
import { hasCommand } from '../helpers/tools.js'

warnIfNotRoot('test/privileged/ipset.test.ts')

const variants: Array<{ iptables: string; ip6tables: string }> = [{ iptables: 'iptables', ip6tables: 'ip6tables' }]
if (IS_ROOT && hasCommand('iptables-legacy') && hasCommand('ip6tables-legacy')) variants.push({ iptables: 'iptables-legacy', ip6tables: 'ip6tables-legacy' })
if (IS_ROOT && !hasCommand('ipset')) console.warn('\n*** SKIPPED: test/privileged/ipset.test.ts needs ipset and iptables (.ci/run installs them). ***\n')

describe.skipIf(!IS_ROOT || !hasCommand('ipset'))('ipset responder (real kernel, test namespace)', () => {
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

  it.each(variants)('blocks, expires, lists, unblocks and uninstalls with $iptables', async (tools) => {
    const run = netnsRun(net.sensorNs)
    const [l0, l1] = net.links as [(typeof net.links)[0], (typeof net.links)[0]]
    const p0v6 = normalizeAddress(l0.peer.ipv6) as string
    // Someone else's rule and set, which must survive uninstall.
    expect((await net.sensorExec('ipset', ['create', 'other', 'hash:ip', '-exist'])).code).toBe(0)
    expect((await net.sensorExec(tools.iptables, ['-w', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'ACCEPT'])).code).toBe(0)

    const ips = new IpsetResponder({ run, ...tools })
    expect(await ips.start()).toEqual([])
    const blockedAt = Date.now()
    const r = await ips.block([
      { address: l0.peer.ipv4, family: 4, ttlMs: 3_600_000 },
      { address: p0v6, family: 6, ttlMs: 3_600_000 },
    ])
    expect(r).toMatchObject({ ok: true, applied: [l0.peer.ipv4, p0v6] })
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(false)
    expect(await canConnect(l0.peer, l0.sensor.ipv6)).toBe(false)
    expect(await canConnect(l1.peer, l1.sensor.ipv4)).toBe(true)
    expect(await canConnect(l1.peer, l1.sensor.ipv6)).toBe(true)

    const listed = await ips.list()
    expectTimeLeft(listed.find((e) => e.address === l0.peer.ipv4)!.expiresInMs, 3_600_000, blockedAt)
    expect(listed.map((e) => e.address)).toContain(p0v6)

    // A second start() adopts: entries kept, no duplicate rule.
    expect((await new IpsetResponder({ run, ...tools }).start()).map((e) => e.address).sort()).toEqual([l0.peer.ipv4, p0v6].sort())
    const save = (await net.sensorExec(`${tools.iptables}-save`, [])).stdout
    expect(save.match(/--match-set portanoia4 src -j DROP/g)).toHaveLength(1)

    // Kernel-side expiry of a 2 s block: nothing here removes it. (No probe inside the
    // 2 s: on a loaded machine it could start after the expiry.)
    expect((await ips.block([{ address: l1.peer.ipv4, family: 4, ttlMs: 2000 }])).applied).toEqual([l1.peer.ipv4])
    await expect.poll(async () => (await ips.list()).map((e) => e.address), { timeout: 30_000, interval: 250 }).not.toContain(l1.peer.ipv4)
    expect(await canConnect(l1.peer, l1.sensor.ipv4)).toBe(true)

    const u = await ips.unblock([l0.peer.ipv4, '198.18.77.1'])
    expect(u).toMatchObject({ ok: true, applied: [l0.peer.ipv4], absent: ['198.18.77.1'] })
    expect(await canConnect(l0.peer, l0.sensor.ipv4)).toBe(true)

    // Dry-run changes nothing.
    const listBefore = (await net.sensorExec('ipset', ['list', '-output', 'save'])).stdout.replace(/timeout \d+/g, '')
    const dry = new IpsetResponder({ run, ...tools, dryRun: true })
    await dry.start()
    expect((await dry.block([{ address: l1.peer.ipv4, family: 4, ttlMs: 60_000 }])).script).toContain(`add portanoia4 ${l1.peer.ipv4} timeout 60`)
    await dry.uninstall()
    expect((await net.sensorExec('ipset', ['list', '-output', 'save'])).stdout.replace(/timeout \d+/g, '')).toBe(listBefore)

    // Uninstall: our rules and sets go, the other rule and set stay.
    const un = await ips.uninstall()
    expect(un.failed).toEqual([])
    expect(un.ok).toBe(true)
    expect(await canConnect(l0.peer, l0.sensor.ipv6)).toBe(true)
    const sets = (await net.sensorExec('ipset', ['list', '-n'])).stdout
    expect(sets).not.toContain('portanoia')
    expect(sets).toContain('other')
    const rules = (await net.sensorExec(tools.iptables, ['-w', '-S', 'INPUT'])).stdout
    expect(rules).not.toContain('portanoia')
    expect(rules).toContain('--dport 9 -j ACCEPT')
    expect((await ips.uninstall()).ok).toBe(true)
    // Leave the namespace clean for the next variant.
    await net.sensorExec(tools.iptables, ['-w', '-D', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'ACCEPT'])
    await net.sensorExec('ipset', ['destroy', 'other'])
  })
})
