/**
 * The early drop (`enforce: ingress|both`, issue 12) on a real kernel in a test
 * namespace: a blocked source's packets are dropped by the netdev ingress chain on
 * the sensor's interface while a counter in an inet input chain of the test's own
 * (priority -300, before portanoia's) sees none of them — and sees them again once
 * the block is lifted; a deleted netdev table and a flushed ruleset come back with
 * their blocks; an unblock from a responder that does not enforce at ingress (the
 * CLI without a config) lifts the block from both tables, and its block writes into
 * the netdev table it finds; an interface that
 * disappears and comes back breaks nothing; a bad interface name is refused by the
 * CLI with what to do; and the daemon end to end: a scanner's verified block lands
 * in the netdev set, after `nft flush ruleset` the firewall sync puts both tables
 * back with it, and an element deleted from the netdev set alone is mirrored back. The kernel is read with nft directly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, FirewallEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun, netnsStream } from '../../lib/responders/run.js'
import { cli } from '../helpers/cli.js'
import { tcpConnect } from '../helpers/tcp.js'
import { waitFor } from '../helpers/wait.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftEntries, nftScript } from '../helpers/nft.js'

warnIfNotRoot('test/privileged/nft-ingress.test.ts')

describe.skipIf(!IS_ROOT)('nftables: early drop in a netdev ingress chain', () => {
  let net: TestNet
  let dev: string
  let peerIp: string
  let sensorIp: string
  beforeAll(async () => {
    net = await createTestNet()
    const link = net.links[0]!
    dev = link.sensor.ifname
    peerIp = link.peer.ipv4
    sensorIp = link.sensor.ipv4
  })
  afterAll(async () => {
    await net?.destroy()
  })

  /** Packets the rules of a chain counted (sum of its counters). */
  async function counted(family: string, table: string, chain: string): Promise<number> {
    const r = await net.sensorExec('nft', ['-j', 'list', 'chain', family, table, chain])
    if (r.code !== 0) throw new Error(`nft list chain ${family} ${table} ${chain}: ${r.stderr}`)
    let n = 0
    for (const item of (JSON.parse(r.stdout) as { nftables: Array<{ rule?: { expr: Array<{ counter?: { packets: number } }> } }> }).nftables) {
      for (const e of item.rule?.expr ?? []) n += e.counter?.packets ?? 0
    }
    return n
  }

  /** The elements of `netdev portanoia`, as set/address pairs; null without the table. */
  async function netdevElements(): Promise<string[] | null> {
    const r = await net.sensorExec('nft', ['-j', 'list', 'table', 'netdev', 'portanoia'])
    if (r.code !== 0) {
      if (/No such file/.test(r.stderr)) return null
      throw new Error(r.stderr)
    }
    const out: string[] = []
    for (const item of (JSON.parse(r.stdout) as { nftables: Array<{ set?: { name: string; elem?: unknown[] } }> }).nftables) {
      for (const e of item.set?.elem ?? []) {
        const val = typeof e === 'string' ? e : (e as { elem: { val: unknown } }).elem.val
        out.push(`${item.set?.name ?? ''} ${typeof val === 'string' ? val : JSON.stringify(val)}`)
      }
    }
    return out.sort()
  }

  /** Three pings from the peer; true when any answer came back. */
  async function pingReaches(): Promise<boolean> {
    const r = await net.links[0]!.peer.exec('ping', ['-c', '3', '-i', '0.2', '-W', '1', '-q', sensorIp], { timeoutMs: 10_000 })
    return r.code === 0
  }

  async function clean(): Promise<void> {
    for (const t of [['inet', 'portanoia'], ['netdev', 'portanoia'], ['inet', 'probe']]) {
      const r = await net.sensorExec('nft', ['delete', 'table', ...t])
      if (r.code !== 0 && !/No such file/.test(r.stderr)) throw new Error(r.stderr)
    }
    // The test's own witness: an input chain before portanoia's, counting the peer's packets.
    await nftScript(net.sensorExec, `add table inet probe\nadd chain inet probe seen { type filter hook input priority -300; policy accept; }\nadd rule inet probe seen ip saddr ${peerIp} counter\n`)
  }

  it('drops a blocked source at ingress: the inet input hook sees none of its packets, and sees them again after unblock', async () => {
    await clean()
    const nft = new NftablesResponder({ run: netnsRun(net.sensorNs), enforce: 'ingress', devices: [dev] })
    await nft.start()
    // Ingress only: the inet table is the record, without chains.
    const inetChains = await net.sensorExec('nft', ['-j', '-t', 'list', 'table', 'inet', 'portanoia'])
    expect(inetChains.stdout).not.toContain('"chain"')
    expect(await pingReaches()).toBe(true)
    const seenBefore = await counted('inet', 'probe', 'seen')
    expect(seenBefore).toBeGreaterThan(0)

    expect((await nft.block([{ address: peerIp, family: 4, ttlMs: 600_000 }])).ok).toBe(true)
    expect(await netdevElements()).toEqual([`verified4 ${peerIp}`])
    expect(await pingReaches()).toBe(false)
    expect(await counted('netdev', 'portanoia', `ingress_${dev}`)).toBeGreaterThanOrEqual(3)
    expect(await counted('inet', 'probe', 'seen')).toBe(seenBefore)

    // The CLI without a config (enforce unset) lifts it from both tables.
    const cliSide = new NftablesResponder({ run: netnsRun(net.sensorNs) })
    const u = await cliSide.unblock([peerIp])
    expect(u.applied).toEqual([peerIp])
    expect(u.script).toContain(`delete element netdev portanoia verified4 { ${peerIp} }`)
    expect(await netdevElements()).toEqual([])
    expect((await nftEntries(net.sensorExec))?.length).toBe(0)
    expect(await pingReaches()).toBe(true)
    expect(await counted('inet', 'probe', 'seen')).toBeGreaterThan(seenBefore)
    await nft.close()
  })

  it('a deleted netdev table comes back filled from the inet table; a flushed ruleset comes back and block() fills both', async () => {
    await clean()
    const nft = new NftablesResponder({ run: netnsRun(net.sensorNs), enforce: 'both', devices: [dev], prefixes: true })
    await nft.start()
    await nft.block([{ address: peerIp, family: 4, ttlMs: 600_000 }])
    await nft.blockPrefixes([{ prefix: '198.18.77.0/24', family: 4, ttlMs: 600_000 }])
    expect(await nft.repair()).toEqual([])

    await nftScript(net.sensorExec, 'delete table netdev portanoia\n')
    expect(await nft.repair()).toEqual(['netdev table'])
    expect(await netdevElements()).toEqual(['prefix4 {"prefix":{"addr":"198.18.77.0","len":24}}', `verified4 ${peerIp}`])
    const seen = await counted('inet', 'probe', 'seen')
    expect(await pingReaches()).toBe(false)
    expect(await counted('inet', 'probe', 'seen')).toBe(seen)

    await nftScript(net.sensorExec, 'flush ruleset\n')
    const problems = await nft.repair()
    expect(problems).toContain('table')
    expect(problems).toContain('netdev table')
    // As the firewall sync does after a lost table: the blocks it knows go back, to both tables.
    expect((await nft.block([{ address: peerIp, family: 4, ttlMs: 500_000 }])).ok).toBe(true)
    expect(await netdevElements()).toContain(`verified4 ${peerIp}`)
    expect((await nftEntries(net.sensorExec))?.map((e) => `${e.set} ${e.address}`)).toEqual([`verified4 ${peerIp}`])
    await nftScript(net.sensorExec, `add table inet probe\nadd chain inet probe seen { type filter hook input priority -300; policy accept; }\nadd rule inet probe seen ip saddr ${peerIp} counter\n`)
    expect(await pingReaches()).toBe(false)
    expect(await counted('inet', 'probe', 'seen')).toBe(0)
    expect(await counted('netdev', 'portanoia', `ingress_${dev}`)).toBeGreaterThanOrEqual(3)

    // An element removed from the netdev table alone is put back by the mirror; one added there alone is removed.
    await nftScript(net.sensorExec, `delete element netdev portanoia verified4 { ${peerIp} }\nadd element netdev portanoia verified4 { 198.18.0.99 timeout 1h }\n`)
    expect((await nft.mirror()).sort()).toEqual(['198.18.0.99', peerIp].sort())
    expect(await netdevElements()).toEqual([`verified4 ${peerIp}`])
    await nft.close()
  })

  it('an interface that disappears and comes back breaks nothing: its chain waits, the others keep dropping', async () => {
    await clean()
    // A veth pair of the sensor's own (no dummy module needed), one end named in the chains.
    const extra = await net.sensorExec('ip', ['link', 'add', 'pnx0', 'type', 'veth', 'peer', 'name', 'pnx1'])
    expect(extra.stderr).toBe('')
    const warnings: string[] = []
    const nft = new NftablesResponder({ run: netnsRun(net.sensorNs), enforce: 'ingress', devices: [dev, 'pnx0'], warn: (m) => warnings.push(m) })
    await nft.start()
    await nft.block([{ address: peerIp, family: 4, ttlMs: 600_000 }])
    expect((await net.sensorExec('ip', ['link', 'del', 'pnx0'])).code).toBe(0)
    // Kernels from 6.16 keep the chain without its device; older ones delete it and refuse it back (warned, retried).
    const problems = await nft.repair()
    expect(problems.every((p) => p === 'netdev chain ingress_pnx0')).toBe(true)
    expect(await pingReaches()).toBe(false)
    expect((await net.sensorExec('ip', ['link', 'add', 'pnx0', 'type', 'veth', 'peer', 'name', 'pnx1'])).stderr).toBe('')
    await nft.repair()
    expect(nft.absentDevices).toEqual([])
    const chains = await net.sensorExec('nft', ['list', 'chain', 'netdev', 'portanoia', 'ingress_pnx0'])
    expect(chains.stdout).toContain('device "pnx0"')
    expect(await pingReaches()).toBe(false)
    await nft.uninstall()
    expect(await netdevElements()).toBeNull()
    await net.sensorExec('ip', ['link', 'del', 'pnx0'])
    await nft.close()
  })

  it('portanoia block without a daemon writes into the netdev table it finds; uninstall removes both tables', async () => {
    await clean()
    const nft = new NftablesResponder({ run: netnsRun(net.sensorNs), enforce: 'ingress', devices: [dev] })
    await nft.start()
    await nft.close()
    const blk = await cli(['block', '--netns', net.sensorNs, peerIp, '--ttl', '10m'])
    expect(blk.stderr).toMatch(/straight to the kernel table/)
    expect(blk.code).toBe(0)
    expect(await netdevElements()).toEqual([`verified4 ${peerIp}`])
    expect(await pingReaches()).toBe(false)
    const un = await cli(['uninstall', '--netns', net.sensorNs])
    expect(un.code).toBe(0)
    expect(un.stdout).toBe('removed table inet portanoia, table netdev portanoia\n')
    expect(await netdevElements()).toBeNull()
  })

  it('the CLI refuses --enforce ingress without a usable interface, saying what to do', async () => {
    const none = await cli(['watch', '--netns', net.sensorNs, '--tcp', '2222', '--enforce', 'ingress', '--dry-run', '--no-control', '--no-state'])
    expect(none.code).toBe(2)
    expect(none.stderr).toMatch(/--enforce ingress needs --interface/)
    expect(none.stderr).toMatch(/--interface eth0/)
    const bad = await cli(['watch', '--netns', net.sensorNs, '--tcp', '2222', '--enforce', 'both', '--interface', 'eth0";x', '--dry-run', '--no-control', '--no-state'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/not an interface name portanoia can bind a chain to/)
  })
})

describe.skipIf(!IS_ROOT)('the daemon enforcing at ingress', () => {
  let net: TestNet | undefined
  let daemon: Daemon | undefined
  afterAll(async () => {
    await daemon?.close()
    await net?.destroy()
  })

  it('blocks a scanner in the netdev set; after nft flush ruleset both tables come back with the block', async () => {
    net = await createTestNet()
    const n = net
    const [a] = n.links as [TestNet['links'][0]]
    const events: PortanoiaEvent[] = []
    const warnings: string[] = []
    daemon = await Daemon.compose({
      ports: ['2222/tcp'],
      netns: n.sensorNs,
      interface: a.sensor.ifname,
      firewall: new NftablesResponder({ run: netnsRun(n.sensorNs), monitor: netnsStream(n.sensorNs), enforce: 'ingress', devices: [a.sensor.ifname], warn: (m) => warnings.push(m) }),
      statsIntervalMs: 0,
      onEvent: (e) => events.push(e),
    })
    const inNetdev = async (): Promise<true | undefined> => {
      const r = await n.sensorExec('nft', ['-j', 'list', 'set', 'netdev', 'portanoia', 'verified4'])
      return r.code === 0 && r.stdout.includes(`"${a.peer.ipv4}"`) ? true : undefined
    }
    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the block', () => events.find((e): e is DecisionEvent => e.type === 'decision' && e.reason === 'blocked' && e.src === a.peer.ipv4))
    await waitFor('the netdev element', inNetdev)
    expect(await tcpConnect(a.peer, a.sensor.ipv4, 2222, 800)).toBe('timeout')
    await nftScript(n.sensorExec, 'flush ruleset\n')
    const restored = await waitFor('the restored event', () => events.find((e): e is FirewallEvent => e.type === 'firewall' && e.op === 'restored' && (e.addresses ?? []).includes(a.peer.ipv4)))
    expect(restored.missing).toEqual(expect.arrayContaining(['table', 'netdev table']))
    await waitFor('the netdev element again', inNetdev)
    expect(await tcpConnect(a.peer, a.sensor.ipv4, 2222, 800)).toBe('timeout')
    // Deleted from the netdev set alone: the monitor reports it, the sync's full look mirrors it back.
    await nftScript(n.sensorExec, `delete element netdev portanoia verified4 { ${a.peer.ipv4} }\n`)
    const mirrored = await waitFor('the mirror event', () => events.find((e): e is FirewallEvent => e.type === 'firewall' && e.op === 'restored' && (e.missing ?? []).includes('netdev elements')))
    expect(mirrored.addresses).toEqual([a.peer.ipv4])
    await waitFor('the netdev element mirrored back', inNetdev)
    // The daemon still holds the block: the inet record was never touched.
    expect(events.some((e) => e.type === 'firewall' && e.op === 'forgotten')).toBe(false)
    expect(warnings).toEqual([])
  }, 120_000)
})
