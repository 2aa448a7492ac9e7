/**
 * Prefix bans (`--aggregate`, issue 12) with the real nft and the real socket table
 * of a test namespace. The peer namespace owns extra addresses in networks the
 * sensor routes to it, so each scanner connects from a source of its own:
 * - three verified scanners of 198.18.100.0/24 make the prefix a ban: the element is
 *   in `prefix4`, their single blocks are retired, and a fourth address of the
 *   network that never scanned is dropped;
 * - three of 198.18.101.0/24, a network that holds a gateway of the sensor (the next
 *   hop of an onlink route), are refused with guard:gateway and stay single blocks;
 * - three of 198.18.102.0/24, where an admin holds a connection to the sensor's
 *   service, are refused with guard:peer (the kernel's live answer over the prefix),
 *   and the admin still reaches the service;
 * - three IPv6 scanners rotating through fd52:43dd:99::/64 make the /64 a ban.
 * The refusals are positive events, so no "nothing happened" wait is needed.
 */
import type { ChildProcess } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { PortanoiaEvent, PrefixEvent } from '../../lib/daemon/events.js'
import type { NetnsHost } from '../../lib/lab/netns.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun, netnsStream } from '../../lib/responders/run.js'
import { StateFile } from '../../lib/daemon/state-file.js'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftElements, nftScript } from '../helpers/nft.js'
import { startService } from '../helpers/tcp.js'
import { waitFor } from '../helpers/wait.js'

warnIfNotRoot('test/privileged/prefix-bans.test.ts')

const TRIPWIRE = 2222
const SERVICE = 8080

let net: TestNet | undefined
const children: ChildProcess[] = []
const daemons: Daemon[] = []
let dir: string | undefined

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close()
  for (const c of children.splice(0)) await stop(c)
  await net?.destroy()
  net = undefined
  if (dir !== undefined) await removeScratch(dir)
  dir = undefined
})

async function ip(host: Pick<NetnsHost, 'exec'>, args: string[]): Promise<void> {
  const r = await host.exec('ip', args)
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`)
}

/** One TCP connect from `from` with source address `src`: 'connected', 'timeout', or another outcome. */
async function connectFrom(from: NetnsHost, src: string, dst: string, port: number, timeoutMs = 1500): Promise<string> {
  const script = `
    const s = require('node:net').connect({ host: ${JSON.stringify(dst)}, port: ${port}, localAddress: ${JSON.stringify(src)} })
    const done = (w) => { console.log(w); s.destroy(); process.exit(0) }
    s.on('connect', () => done('connected'))
    s.on('error', (e) => done(e.code))
    setTimeout(() => done('timeout'), ${timeoutMs})`
  const r = await from.exec(process.execPath, ['-e', script], { timeoutMs: timeoutMs + 5000 })
  const word = r.stdout.trim().split('\n').pop() ?? ''
  if (r.code !== 0 || word === '') throw new Error(`the connect probe from ${src} did not run (exit ${r.code}): ${r.stderr.trim()}`)
  return word
}

/** A connection from `src` held open until the process is stopped: an admin's session. */
async function holdFrom(from: NetnsHost, src: string, dst: string, port: number): Promise<ChildProcess> {
  const script = `
    const s = require('node:net').connect({ host: ${JSON.stringify(dst)}, port: ${port}, localAddress: ${JSON.stringify(src)} }, () => console.log('connected'))
    s.on('error', (e) => { console.log('error ' + e.code); process.exit(1) })
    setInterval(() => {}, 1000)`
  const child = from.spawn(process.execPath, ['-e', script])
  children.push(child)
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('connected')) resolve()
      if (out.includes('error')) reject(new Error(`the admin connection from ${src} failed: ${out.trim()}`))
    })
    child.once('exit', (code) => reject(new Error(`the admin connection from ${src} exited (${String(code)})`)))
  })
  return child
}

/** The prefixes in one of portanoia's interval sets. */
async function prefixes(n: TestNet, set: 'prefix4' | 'prefix6'): Promise<string[]> {
  const r = await n.sensorExec('nft', ['-j', 'list', 'set', 'inet', 'portanoia', set])
  if (r.code !== 0) throw new Error(`nft list set ${set}: ${r.stderr.trim()}`)
  const doc = JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: Array<{ elem?: { val?: { prefix?: { addr: string; len: number } } } }> } }> }
  const out: string[] = []
  for (const item of doc.nftables) {
    for (const e of item.set?.elem ?? []) {
      const p = e.elem?.val?.prefix
      if (p !== undefined) out.push(`${p.addr}/${p.len}`)
    }
  }
  return out.sort()
}

describe.skipIf(!IS_ROOT)('prefix bans', () => {
  it('three verified scanners of one /24 or /64 ban the prefix and retire their blocks; never a prefix holding a gateway or an admin peer', async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    const sensor = a.sensor.ipv4
    const ifs = a.sensor.ifname
    const groups = {
      banned: ['198.18.100.1', '198.18.100.2', '198.18.100.3'],
      gateway: ['198.18.101.10', '198.18.101.11', '198.18.101.12'],
      admin: ['198.18.102.1', '198.18.102.2', '198.18.102.3'],
      v6: ['fd52:43dd:99::1', 'fd52:43dd:99:0:ffff::2', 'fd52:43dd:99::3'],
    }
    const bystander = '198.18.100.50'
    const adminAddr = '198.18.102.9'
    for (const addr of [...groups.banned, ...groups.gateway, ...groups.admin, bystander, adminAddr]) await ip(a.peer, ['addr', 'add', `${addr}/32`, 'dev', a.peer.ifname])
    for (const addr of groups.v6) await ip(a.peer, ['-6', 'addr', 'add', `${addr}/128`, 'dev', a.peer.ifname, 'nodad'])
    for (const p of ['198.18.100.0/24', '198.18.101.0/24', '198.18.102.0/24']) await ip({ exec: net.sensorExec }, ['route', 'add', p, 'via', a.peer.ipv4])
    await ip({ exec: net.sensorExec }, ['-6', 'route', 'add', 'fd52:43dd:99::/64', 'via', a.peer.ipv6])
    // 198.18.101.1 is a next hop of the sensor's: a gateway inside 198.18.101.0/24.
    await ip({ exec: net.sensorExec }, ['route', 'add', '198.18.103.0/24', 'via', '198.18.101.1', 'dev', ifs, 'onlink'])
    children.push(await startService({ spawn: net.sensorSpawn }, SERVICE))
    await holdFrom(a.peer, adminAddr, sensor, SERVICE)

    const events: PortanoiaEvent[] = []
    const ns = net.sensorNs
    const daemon = await Daemon.compose({
      ports: [`${TRIPWIRE}/tcp`],
      netns: ns,
      firewall: new NftablesResponder({ run: netnsRun(ns), monitor: netnsStream(ns), prefixes: true }),
      aggregate: { threshold: 3, prefix4: 24, prefix6: 64 },
      statsIntervalMs: 0,
      onEvent: (e) => events.push(e),
    })
    daemons.push(daemon)
    const prefixEvents = (): PrefixEvent[] => events.filter((e): e is PrefixEvent => e.type === 'prefix')
    const scan = async (srcs: readonly string[]): Promise<void> => {
      for (const src of srcs) {
        const dst = src.includes(':') ? a.sensor.ipv6 : sensor
        expect(await connectFrom(a.peer, src, dst, TRIPWIRE)).not.toBe('timeout')
        await waitFor(`the block of ${src}`, () => events.find((e) => e.type === 'decision' && !('source' in e) && e.reason === 'blocked' && e.src === src))
      }
    }

    // A network of scanners only: banned, singles retired, a bystander of it dropped.
    await scan(groups.banned)
    const banned = await waitFor('the prefix ban', () => prefixEvents().find((e) => e.prefix === '198.18.100.0/24'))
    expect(banned).toMatchObject({ op: 'blocked', family: 4, count: 3, members: groups.banned, retired: 3 })
    expect(banned.ttlMs).toBeGreaterThan(3_500_000)
    expect(banned.ttlMs).toBeLessThanOrEqual(3_600_000)
    expect(await prefixes(net, 'prefix4')).toEqual(['198.18.100.0/24'])
    expect(await nftElements(net.sensorExec, ['verified4'])).toEqual([])
    expect(await connectFrom(a.peer, bystander, sensor, SERVICE, 1000)).toBe('timeout')

    // The network holding a gateway: refused, its scanners stay single blocks.
    await scan(groups.gateway)
    expect(await waitFor('the gateway refusal', () => prefixEvents().find((e) => e.prefix === '198.18.101.0/24'))).toMatchObject({ op: 'refused', reason: 'guard:gateway', count: 3 })
    expect(await nftElements(net.sensorExec, ['verified4'])).toEqual(groups.gateway)

    // The network of an admin: the live check over the prefix finds the session.
    await scan(groups.admin)
    expect(await waitFor('the peer refusal', () => prefixEvents().find((e) => e.prefix === '198.18.102.0/24'))).toMatchObject({ op: 'refused', reason: 'guard:peer', count: 3 })
    expect(await nftElements(net.sensorExec, ['verified4'])).toEqual([...groups.gateway, ...groups.admin].sort())
    expect(await connectFrom(a.peer, adminAddr, sensor, SERVICE)).toBe('connected')
    expect(await prefixes(net, 'prefix4')).toEqual(['198.18.100.0/24'])

    // An IPv6 scanner rotating through one /64.
    await scan(groups.v6)
    expect(await waitFor('the /64 ban', () => prefixEvents().find((e) => e.prefix === 'fd52:43dd:99::/64'))).toMatchObject({ op: 'blocked', family: 6, count: 3, retired: 3 })
    expect(await prefixes(net, 'prefix6')).toEqual(['fd52:43dd:99::/64'])
    expect(await nftElements(net.sensorExec, ['verified6'])).toEqual([])
  }, 180_000)

  it('a reboot (the table gone while no daemon ran) brings a prefix ban back from the state file, with its time left', async () => {
    net = await createTestNet()
    dir = await scratchDir('prefix-bans-')
    const statePath = `${dir}/state.json`
    const [a] = net.links as [TestNet['links'][0]]
    const scanners = ['198.18.100.1', '198.18.100.2']
    for (const addr of [...scanners, '198.18.100.50']) await ip(a.peer, ['addr', 'add', `${addr}/32`, 'dev', a.peer.ifname])
    await ip({ exec: net.sensorExec }, ['route', 'add', '198.18.100.0/24', 'via', a.peer.ipv4])
    const ns = net.sensorNs
    const start = async (events: PortanoiaEvent[]): Promise<Daemon> => {
      const d = await Daemon.compose({
        ports: [`${TRIPWIRE}/tcp`],
        netns: ns,
        firewall: new NftablesResponder({ run: netnsRun(ns), monitor: netnsStream(ns), prefixes: true }),
        aggregate: { threshold: 2, prefix4: 24, prefix6: 64 },
        state: new StateFile(statePath),
        statsIntervalMs: 0,
        onEvent: (e) => events.push(e),
      })
      daemons.push(d)
      return d
    }
    const first: PortanoiaEvent[] = []
    const d1 = await start(first)
    for (const src of scanners) {
      await connectFrom(a.peer, src, a.sensor.ipv4, TRIPWIRE)
      await waitFor(`the block of ${src}`, () => first.find((e) => e.type === 'decision' && !('source' in e) && e.reason === 'blocked' && e.src === src))
    }
    const banned = await waitFor('the prefix ban', () => first.find((e): e is PrefixEvent => e.type === 'prefix' && e.op === 'blocked'))
    await d1.close()
    daemons.splice(daemons.indexOf(d1), 1)
    // The reboot: the kernel lost the table.
    await nftScript(net.sensorExec, 'delete table inet portanoia\n')
    const second: PortanoiaEvent[] = []
    await start(second)
    const restored = second.find((e): e is PrefixEvent => e.type === 'prefix')
    expect(restored).toMatchObject({ op: 'restored', prefix: '198.18.100.0/24', family: 4 })
    // The time it had left: at most what the first ban had, and no more than the time since gone by.
    expect(restored?.ttlMs).toBeLessThanOrEqual(banned.ttlMs ?? 0)
    expect(Date.parse(restored?.expiresAt ?? '')).toBeLessThanOrEqual(Date.parse(banned.expiresAt ?? '') + 1000)
    expect(await prefixes(net, 'prefix4')).toEqual(['198.18.100.0/24'])
    expect(await connectFrom(a.peer, '198.18.100.50', a.sensor.ipv4, TRIPWIRE, 1000)).toBe('timeout')
  }, 180_000)
})
