/**
 * The kernel's set is the truth (issue 8), end to end: the daemon in a test
 * namespace with the real nft of that namespace (and its `nft monitor`), a fake
 * CrowdSec LAPI where the fleet is involved. Each case is a reproduction from the
 * issue that failed before:
 * - `nft flush ruleset` (an nftables service reload): the table comes back by
 *   itself, with the blocked scanner's element and its time left, and an event —
 *   before, the scanner completed handshakes again until some new address was blocked;
 * - without the monitor, a handshake from the blocked scanner proves the block
 *   missing: `reapplied`, and the whole table is back;
 * - `portanoia unblock` while the daemon runs: the daemon forgets the block (an
 *   event), and the scanner's next connect is blocked again — before, the daemon
 *   still counted it blocked and the scanner was free for the rest of the TTL;
 * - a short fleet decision of another origin, and one forged SYN from a fleet-banned
 *   attacker under `--block all`, leave the longer blocks as they were — before, the
 *   kernel element became `timeout 4s` / 5 min;
 * - after a restart, fleet bans are adopted as fleet bans, and a LAPI delete still
 *   lifts them — before, they became local blocks;
 * - only verified blocks are pushed by default;
 * - a fleet duration longer than the firewall holds is clamped, once.
 * The kernel is read with nft directly (test/helpers/nft.ts); nft failing fails the test.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon, type DaemonOptions } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, FirewallEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import type { ResolvedFleet } from '../../lib/fleet/config.js'
import { Secret } from '../../lib/fleet/lapi.js'
import { IpsetResponder } from '../../lib/responders/ipset.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun, netnsStream } from '../../lib/responders/run.js'
import { cli } from '../helpers/cli.js'
import { type FakeLapi, startFakeLapi } from '../helpers/fake-lapi.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftEntries, nftScript } from '../helpers/nft.js'
import { probeFrame, sendFrames } from '../helpers/probes.js'
import { tcpConnect } from '../helpers/tcp.js'
import { internals } from '../helpers/internals.js'

warnIfNotRoot('test/privileged/firewall-truth.test.ts')

const TRIPWIRE = 2222
const KEY = 'bouncer-key-truth'
const PASSWORD = 'machine-password-truth'

let net: TestNet | undefined
let lapi: FakeLapi | undefined
const daemons: Daemon[] = []

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close()
  await lapi?.close()
  lapi = undefined
  await net?.destroy()
  net = undefined
})

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function fleetConfig(url: string, over: Partial<ResolvedFleet> = {}): ResolvedFleet {
  return {
    url,
    machine: 'host-a',
    password: new Secret(PASSWORD),
    bouncerKey: new Secret(KEY),
    push: true,
    pull: true,
    pushIntervalMs: 50,
    pullIntervalMs: 100,
    queueLimit: 100,
    timeoutMs: 2000,
    pushSpoofable: false,
    warnings: [],
    ...over,
  }
}

async function startDaemon(n: TestNet, options: Partial<DaemonOptions> & { monitor?: boolean } = {}) {
  const events: PortanoiaEvent[] = []
  const { monitor, ...rest } = options
  const daemon = await Daemon.compose({
    ports: [`${TRIPWIRE}/tcp`],
    netns: n.sensorNs,
    firewall: new NftablesResponder({ run: netnsRun(n.sensorNs), ...(monitor !== false && { monitor: netnsStream(n.sensorNs) }) }),
    statsIntervalMs: 0,
    onEvent: (e) => events.push(e),
    ...rest,
  })
  daemons.push(daemon)
  const decisions = (): DecisionEvent[] => events.filter((e): e is DecisionEvent => e.type === 'decision' && !('source' in e))
  const firewall = (): FirewallEvent[] => events.filter((e): e is FirewallEvent => e.type === 'firewall')
  return { daemon, events, decisions, firewall }
}

const element = async (n: TestNet, set: string, address: string) => (await nftEntries(n.sensorExec))?.find((e) => e.set === set && e.address === address)

/** A verified scanner, blocked: its element is in the kernel and the firewall confirmed it. */
async function blockScanner(n: TestNet, d: Awaited<ReturnType<typeof startDaemon>>): Promise<string> {
  const [a] = n.links as [TestNet['links'][0]]
  await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)
  await waitFor('the block', () => d.decisions().find((x) => x.reason === 'blocked' && x.src === a.peer.ipv4))
  await waitFor('the element', async () => ((await element(n, 'verified4', a.peer.ipv4)) !== undefined ? true : undefined))
  await waitFor('the confirmation', () => (internals(d.daemon).engine.confirmedBlocks().some((b) => b.src === a.peer.ipv4) ? true : undefined))
  expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 800)).toBe('timeout')
  return a.peer.ipv4
}

describe.skipIf(!IS_ROOT)('the kernel is the truth (daemon)', () => {
  it('nft flush ruleset: the table comes back by itself with the block and its time left, and says so', async () => {
    net = await createTestNet()
    const d = await startDaemon(net)
    const scanner = await blockScanner(net, d)
    await nftScript(net.sensorExec, 'flush ruleset\n')
    const restored = await waitFor('the restored event', () => d.firewall().find((e) => e.op === 'restored'))
    expect(restored).toMatchObject({ responder: 'nftables', missing: ['table'], count: 1, addresses: [scanner] })
    const e = await element(net, 'verified4', scanner)
    expect(e?.expires).toBeGreaterThan(3500)
    expect(e?.expires).toBeLessThanOrEqual(3600)
    const [a] = net.links as [TestNet['links'][0]]
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 800)).toBe('timeout')
    // No new block was needed to bring it back, and nothing was decided twice.
    expect(d.decisions().filter((x) => x.reason === 'blocked')).toHaveLength(1)
  }, 120_000)

  it('without the monitor, a handshake from the blocked scanner proves the block missing: reapplied, the table is back', async () => {
    net = await createTestNet()
    const d = await startDaemon(net, { monitor: false, firewallSyncMs: 60_000 })
    const scanner = await blockScanner(net, d)
    // The proof must come after the confirmation margin.
    await new Promise((r) => setTimeout(r, 1100))
    await nftScript(net.sensorExec, 'flush ruleset\n')
    const [a] = net.links as [TestNet['links'][0]]
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)).toMatch(/connected|reset/)
    const re = await waitFor('the reapplied decision', () => d.decisions().find((x) => x.reason === 'reapplied'))
    expect(re).toMatchObject({ action: 'block', src: scanner, verified: true })
    expect(re.ttlMs).toBeLessThanOrEqual(3_600_000)
    await waitFor('the element', async () => ((await element(net!, 'verified4', scanner)) !== undefined ? true : undefined))
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 800)).toBe('timeout')
    expect(d.firewall().some((e) => e.op === 'restored')).toBe(true)
  }, 120_000)

  it('portanoia unblock while the daemon runs: the block is forgotten, and the next scan is blocked again', async () => {
    net = await createTestNet()
    const d = await startDaemon(net)
    const scanner = await blockScanner(net, d)
    const u = await cli(['unblock', '--netns', net.sensorNs, scanner])
    expect(u.code).toBe(0)
    const forgotten = await waitFor('the forgotten event', () => d.firewall().find((e) => e.op === 'forgotten'))
    expect(forgotten).toMatchObject({ count: 1, addresses: [scanner] })
    expect(internals(d.daemon).engine.isBlocked(scanner)).toBe(false)
    const [a] = net.links as [TestNet['links'][0]]
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)).toMatch(/connected|reset/)
    await waitFor('a second block', () => (d.decisions().filter((x) => x.reason === 'blocked').length === 2 ? true : undefined))
    await waitFor('the element again', async () => ((await element(net!, 'verified4', scanner)) !== undefined ? true : undefined))
  }, 120_000)

  it('a short fleet decision of another origin and one forged SYN never shorten a longer block', async () => {
    net = await createTestNet()
    lapi = await startFakeLapi({ machine: 'host-a', password: PASSWORD, bouncerKeys: [KEY] })
    // A crafted on-link source stands in for a spoofable block: without attribution, which would find it forged.
    const d = await startDaemon(net, { policy: { block: 'all' }, fleet: fleetConfig(lapi.url), attribution: false })
    const scanner = await blockScanner(net, d)
    const attacker = '198.18.0.77'
    lapi.feed({
      new: [
        { value: scanner, duration: '8s', origin: 'cscli', scenario: 'manual', type: 'ban', scope: 'Ip' },
        { value: attacker, duration: '4h', origin: 'crowdsec', scenario: 'crowdsecurity/ssh-bf', type: 'ban', scope: 'Ip' },
      ],
    })
    // Read as soon as it is there: 8 s leaves a loaded machine time to see it before it expires.
    const short = await waitFor('the short fleet element', async () => element(net!, 'fleet4', scanner))
    expect(short.timeout).toBe(8)
    await waitFor('the long fleet element', async () => element(net!, 'fleet4', attacker))
    // The banned attacker sends one forged-looking SYN: a 5-minute spoofable block, beside the 4 h ban.
    const [a] = net.links as [TestNet['links'][0]]
    sendFrames(a.peer, [probeFrame(a.peer, a.sensor, { family: 4, proto: 'tcp', src: attacker, srcPort: 40777, dstPort: TRIPWIRE })])
    await waitFor('the spoofable element', async () => ((await element(net!, 'spoofable4', attacker)) !== undefined ? true : undefined))
    expect((await element(net, 'fleet4', attacker))?.timeout).toBe(4 * 3600)
    expect((await element(net, 'verified4', scanner))?.timeout).toBe(3600)
    // Once the 8 s decision has run out, the scanner is still cut off.
    await waitFor('the short fleet element to expire', async () => ((await element(net!, 'fleet4', scanner)) === undefined ? true : undefined), 30_000)
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 800)).toBe('timeout')
  }, 120_000)

  it('a restart adopts fleet bans as fleet bans: a LAPI delete still lifts them; only verified blocks were pushed', async () => {
    net = await createTestNet()
    lapi = await startFakeLapi({ machine: 'host-a', password: PASSWORD, bouncerKeys: [KEY] })
    // A crafted on-link source stands in for a spoofable block: without attribution, which would find it forged.
    const first = await startDaemon(net, { policy: { block: 'all' }, fleet: fleetConfig(lapi.url), attribution: false })
    lapi.feed({ new: [{ id: 501, value: '198.18.0.88', duration: '4h', origin: 'crowdsec', scenario: 'crowdsecurity/ssh-bf', type: 'ban', scope: 'Ip' }] })
    await waitFor('the fleet element', async () => ((await element(net!, 'fleet4', '198.18.0.88')) !== undefined ? true : undefined))
    expect((await element(net, 'fleet4', '198.18.0.88'))?.comment).toBe('fleet id=501 origin=crowdsec scenario=crowdsecurity/ssh-bf')
    // A forged source blocked under --block all is not pushed; the verified scanner is.
    const [a] = net.links as [TestNet['links'][0]]
    sendFrames(a.peer, [probeFrame(a.peer, a.sensor, { family: 4, proto: 'tcp', src: '198.18.0.66', srcPort: 40666, dstPort: TRIPWIRE })])
    await waitFor('the spoofable block', () => first.decisions().find((x) => x.reason === 'blocked' && x.src === '198.18.0.66'))
    const scanner = await blockScanner(net, first)
    await waitFor('the pushed alert', () => (lapi!.alertBatches.flat().length > 0 ? true : undefined))
    await first.daemon.close()
    const pushed = (lapi.alertBatches.flat() as Array<{ source: { value: string } }>).map((x) => x.source.value)
    expect(pushed).toEqual([scanner])

    const second = await startDaemon(net, { fleet: fleetConfig(lapi.url) })
    expect(internals(second.daemon).engine.isBlocked('198.18.0.88')).toBe(false)
    lapi.feed({ deleted: [{ id: 501, value: '198.18.0.88', origin: 'crowdsec', scenario: 'crowdsecurity/ssh-bf', type: 'ban', scope: 'Ip', duration: '0s' }] })
    await waitFor('the lift', async () => ((await element(net!, 'fleet4', '198.18.0.88')) === undefined ? true : undefined))
    expect(second.events.some((e) => e.type === 'fleet' && e.op === 'unblocked' && e.src === '198.18.0.88')).toBe(true)
    // The local block of the scanner was adopted as local and stays.
    expect(internals(second.daemon).engine.isBlocked(scanner)).toBe(true)
  }, 120_000)

  it('a fleet duration longer than the firewall holds is clamped once, never retried', async () => {
    net = await createTestNet()
    lapi = await startFakeLapi({ machine: 'host-a', password: PASSWORD, bouncerKeys: [KEY] })
    const d = await startDaemon(net, { fleet: fleetConfig(lapi.url, { push: false }) })
    lapi.feed({ new: [{ id: 601, value: '198.18.0.99', duration: '1000000h', origin: 'cscli', scenario: 'forever', type: 'ban', scope: 'Ip' }] })
    await waitFor('the fleet element', async () => ((await element(net!, 'fleet4', '198.18.0.99')) !== undefined ? true : undefined))
    expect((await element(net, 'fleet4', '198.18.0.99'))?.timeout).toBe(2 ** 31 - 1)
    // Several polls later: one clamp event, no apply failure.
    await new Promise((r) => setTimeout(r, 800))
    expect(d.events.filter((e) => e.type === 'fleet' && e.op === 'clamped')).toHaveLength(1)
    expect(d.events.filter((e) => e.type === 'fleet' && e.op === 'apply-failed')).toEqual([])
  }, 120_000)

  it('ipset backend: flushed rules come back by themselves, an ipset flush is an unblock the daemon forgets', async () => {
    net = await createTestNet()
    const run = netnsRun(net.sensorNs)
    const d = await startDaemon(net, { firewall: new IpsetResponder({ run }), firewallSyncMs: 300, firewallFullSyncMs: 1000 })
    const [a] = net.links as [TestNet['links'][0]]
    await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)
    await waitFor('the confirmation', () => (internals(d.daemon).engine.confirmedBlocks().some((b) => b.src === a.peer.ipv4) ? true : undefined))
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 800)).toBe('timeout')
    // A firewall reload that flushes the iptables rules: they come back, the set kept its entry.
    expect((await net.sensorExec('iptables', ['-w', '-F', 'INPUT'])).code).toBe(0)
    const restored = await waitFor('the restored event', () => d.firewall().find((e) => e.op === 'restored'))
    expect(restored.missing).toEqual(expect.arrayContaining(['rule INPUT portanoia4']))
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 800)).toBe('timeout')
    // An operator empties the set: the daemon follows the kernel and forgets the block.
    expect((await net.sensorExec('ipset', ['flush', 'portanoia4'])).code).toBe(0)
    const forgotten = await waitFor('the forgotten event', () => d.firewall().find((e) => e.op === 'forgotten'))
    expect(forgotten).toMatchObject({ responder: 'ipset', addresses: [a.peer.ipv4] })
    expect(internals(d.daemon).engine.isBlocked(a.peer.ipv4)).toBe(false)
  }, 120_000)
})
