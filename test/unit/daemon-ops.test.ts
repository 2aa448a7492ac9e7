/**
 * The daemon's operations on the fake addon and an in-memory firewall, without
 * root: an operator's block (guards refuse, timeouts only grow, the engine learns
 * it), unblock (the engine, the list and the kernel agree afterwards), list with
 * origins, status parts, and reload — applied live (tripwires through setPorts and
 * their listeners, policy kept with its blocks, allowlist lifting a block it now
 * protects, notifiers swapped) or refused with nothing changed (a field that needs
 * a restart, an invalid config with its file:line:column). One test goes through a
 * real control socket to prove the assembly serves these same methods.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveWatch } from '../../lib/cli/options.js'
import { startDaemon } from '../../lib/daemon/assemble.js'
import { type ConfigInput, readConfig, resolveConfig } from '../../lib/daemon/config.js'
import { controlRequest } from '../../lib/daemon/control-client.js'
import type { Daemon } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, OperatorEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import type { ActiveBlockEntry, BlockRequest, Responder, ResponderResult } from '../../lib/responders/types.js'
import { waitFor } from '../helpers/cli.js'
import { fakeBinding, fakeHost, type FakeCapture } from '../helpers/fake-binding.js'

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c()
})

/** A firewall holding its blocks in memory, with kernel-like expiry and upgrade. */
function memoryFirewall(): Responder & { held: Map<string, { expiresAt: number; timeoutMs: number }>; requests: BlockRequest[][] } {
  const held = new Map<string, { expiresAt: number; timeoutMs: number }>()
  const requests: BlockRequest[][] = []
  const res = (applied: string[], extra: Partial<ResponderResult> = {}): ResponderResult => ({ responder: 'nftables', ok: true, applied, failed: [], ...extra })
  return {
    name: 'nftables',
    held,
    requests,
    start: async () => [],
    block: async (reqs) => {
      requests.push([...reqs])
      for (const r of reqs) {
        const cur = held.get(r.address)
        // nft `add element` keeps an existing element's timeout; an upgrade replaces it.
        if (cur === undefined || r.upgrade === true) held.set(r.address, { expiresAt: Date.now() + r.ttlMs, timeoutMs: r.ttlMs })
      }
      return res(reqs.map((r) => r.address))
    },
    unblock: async (addresses) => {
      const applied = addresses.filter((a) => held.delete(a))
      return res(applied, { absent: addresses.filter((a) => !applied.includes(a)) })
    },
    list: async () =>
      [...held].map(([address, b]): ActiveBlockEntry => ({ address, family: address.includes(':') ? 6 : 4, expiresInMs: b.expiresAt - Date.now(), timeoutMs: b.timeoutMs })),
    notify: async () => res([]),
    close: async () => {},
  }
}

async function start(input: ConfigInput, extra: { reloadSource?: () => Promise<ReturnType<typeof resolveConfig>>; firewall?: Responder | null } = {}) {
  const binding = fakeBinding()
  const events: PortanoiaEvent[] = []
  const logs: string[] = []
  const fw = memoryFirewall()
  const daemon = await startDaemon(
    resolveConfig({ statsInterval: '0s', control: false, state: false, ...input }),
    {
      firewall: extra.firewall === undefined ? fw : extra.firewall,
      onEvent: (e) => events.push(e),
      onLog: (_l, m) => logs.push(m),
      ...(extra.reloadSource !== undefined && { reloadSource: extra.reloadSource }),
    },
    { host: fakeHost(), sensor: { binding } },
  )
  closers.push(() => daemon.close())
  const capture = binding.captures[0] as FakeCapture
  const decisions = (): DecisionEvent[] => events.filter((e): e is DecisionEvent => e.type === 'decision')
  const operator = (): OperatorEvent[] => events.filter((e): e is OperatorEvent => e.type === 'operator')
  return { daemon, capture, fw, events, logs, decisions, operator }
}

/** A verified connect from `src` and the decision it leads to. */
async function connect(t: { capture: FakeCapture; decisions: () => DecisionEvent[] }, src: string, dstPort = 2222): Promise<DecisionEvent> {
  const before = t.decisions().length
  t.capture.hit({ src, dstPort, kind: 'connect' })
  await waitFor(`a decision about ${src}`, () => t.decisions().slice(before).some((d) => d.src === src))
  return t.decisions().slice(before).find((d) => d.src === src) as DecisionEvent
}

describe('block', () => {
  it('refuses guarded addresses by name, blocks the rest as operator blocks the engine knows', async () => {
    const t = await start({ tcp: [2222], allow: ['198.18.5.0/24'] })
    const out = await t.daemon.block(['198.18.0.9', '127.0.0.1', '198.18.5.7', 'fd52:43dd::9'], { ttl: '10m' })
    expect(out).toEqual({
      applied: ['198.18.0.9', 'fd52:43dd::9'],
      kept: [],
      refused: [
        { address: '127.0.0.1', reason: 'guard:special' },
        { address: '198.18.5.7', reason: 'guard:allowlist' },
      ],
      failed: [],
      ttlMs: 600_000,
    })
    // Guarded addresses never reached the firewall.
    expect(t.fw.requests.flat().map((r) => r.address)).toEqual(['198.18.0.9', 'fd52:43dd::9'])
    const listed = await t.daemon.list()
    expect(listed.map((b) => [b.address, b.origin, b.reason])).toEqual([
      ['198.18.0.9', 'operator', 'operator'],
      ['fd52:43dd::9', 'operator', 'operator'],
    ])
    // The engine knows: a scan from the address is already blocked, not blocked again.
    expect((await connect(t, '198.18.0.9')).reason).toBe('already-blocked')
    expect(t.fw.requests).toHaveLength(1)
    const status = await t.daemon.status()
    expect(status.blocks.kernel).toEqual({ total: 2, byOrigin: { local: 0, operator: 2, fleet: 0, adopted: 0, unknown: 0 }, byReason: { operator: 2 } })
    expect(t.operator()).toEqual([
      expect.objectContaining({
        op: 'block',
        outcome: 'partial',
        addresses: ['198.18.0.9', 'fd52:43dd::9'],
        ttlMs: 600_000,
        refused: [
          { address: '127.0.0.1', reason: 'guard:special' },
          { address: '198.18.5.7', reason: 'guard:allowlist' },
        ],
      }),
    ])
  })

  it('timeouts only grow: a longer block is kept, a shorter one extended; the default TTL is the config blockTtl', async () => {
    const t = await start({ tcp: [2222], blockTtl: '2h' })
    await t.daemon.block(['198.18.0.9'], { ttl: '1h' })
    const kept = await t.daemon.block(['198.18.0.9'], { ttl: '10m' })
    expect(kept.applied).toEqual([])
    expect(kept.kept).toEqual([{ address: '198.18.0.9', expiresInMs: expect.any(Number) }])
    expect(kept.kept[0]!.expiresInMs).toBeGreaterThan(3_500_000)
    const longer = await t.daemon.block(['198.18.0.9'])
    expect(longer).toMatchObject({ applied: ['198.18.0.9'], ttlMs: 7_200_000 })
    expect(t.fw.requests.at(-1)).toEqual([{ address: '198.18.0.9', family: 4, ttlMs: 7_200_000, upgrade: true }])
    expect(t.fw.held.get('198.18.0.9')?.timeoutMs).toBe(7_200_000)
  })

  it('checks every address and the TTL as the config does, before anything reaches the firewall', async () => {
    const t = await start({ tcp: [2222], backend: 'ipset' }, { firewall: null })
    await expect(t.daemon.block(['198.18.0.9'])).rejects.toMatchObject({ code: 'PORTANOIA_NO_FIREWALL' })
    const u = await start({ tcp: [2222] })
    await expect(u.daemon.block(['198.18.0.9', 'nope'])).rejects.toMatchObject({ code: 'PORTANOIA_BAD_ADDRESS', message: '"nope" is not an IPv4 or IPv6 address' })
    await expect(u.daemon.block(['198.18.0.9'], { ttl: '5x' })).rejects.toMatchObject({ code: 'PORTANOIA_BAD_CONFIG', message: 'ttl: "5x" is not a duration' })
    await expect(u.daemon.block(['198.18.0.9'], { ttl: '500ms' })).rejects.toMatchObject({ code: 'PORTANOIA_BAD_CONFIG', message: 'ttl: 500ms is shorter than the 1s minimum' })
    await expect(u.daemon.unblock(['198.18.0.9;'])).rejects.toMatchObject({ code: 'PORTANOIA_BAD_ADDRESS' })
    expect(u.fw.requests).toEqual([])
  })
})

describe('unblock and list', () => {
  it('a policy block is listed as local/verified; after unblock the kernel, the list and the engine agree', async () => {
    const t = await start({ tcp: [2222] })
    expect((await connect(t, '198.18.0.2')).reason).toBe('blocked')
    await waitFor('the block in the kernel', () => t.fw.held.has('198.18.0.2'))
    expect((await t.daemon.list()).map((b) => [b.address, b.origin, b.reason])).toEqual([['198.18.0.2', 'local', 'verified']])
    const r = await t.daemon.unblock(['198.18.0.2', '198.18.0.77'])
    expect(r).toMatchObject({ applied: ['198.18.0.2'], absent: ['198.18.0.77'] })
    expect(await t.daemon.list()).toEqual([])
    expect((await t.daemon.status()).blocks.policy).toEqual({ verified: 0, spoofable: 0 })
    // The engine forgot it: the next scan is blocked again, not `already-blocked`.
    expect((await connect(t, '198.18.0.2')).reason).toBe('blocked')
    await waitFor('the new block', () => t.fw.held.has('198.18.0.2'))
    expect(t.operator().map((e) => [e.op, e.outcome, e.addresses])).toEqual([['unblock', 'applied', ['198.18.0.2']]])
  })

  it('an element nobody here made is listed as unknown', async () => {
    const t = await start({ tcp: [2222] })
    t.fw.held.set('198.18.0.44', { expiresAt: Date.now() + 60_000, timeoutMs: 60_000 })
    expect((await t.daemon.list()).map((b) => [b.address, b.origin, b.reason])).toEqual([['198.18.0.44', 'unknown', 'unknown']])
  })
})

describe('reload', () => {
  it('applies tripwires, policy and allowlist live; blocks survive and a newly allowlisted one is lifted', async () => {
    const t = await start({ tcp: [2222], blockTtl: '1h' })
    expect(t.capture.listenerPorts()).toEqual([2222])
    await connect(t, '198.18.0.2')
    await connect(t, '198.18.0.3')
    await waitFor('both blocks', () => t.fw.held.size === 2)
    const rec = await t.daemon.reload({ statsInterval: '0s', control: false, state: false, tcp: [2222, 2323], udp: [1900], blockTtl: '2h', allow: ['198.18.0.3'] })
    expect(rec).toMatchObject({ outcome: 'applied', changed: ['tcp/udp/sctp', 'blockTtl', 'allow'] })
    expect(t.daemon.ports).toEqual([
      { proto: 'tcp', from: 2222, to: 2222 },
      { proto: 'tcp', from: 2323, to: 2323 },
      { proto: 'udp', from: 1900, to: 1900 },
    ])
    expect(t.capture.listenerPorts()).toEqual([2222, 2323])
    expect((await t.daemon.status()).policy.blockTtlMs).toBe(7_200_000)
    // 198.18.0.3 is allowlisted now: lifted. 198.18.0.2 keeps its block and its 1 h timeout.
    expect([...t.fw.held.keys()]).toEqual(['198.18.0.2'])
    expect(t.fw.held.get('198.18.0.2')?.timeoutMs).toBe(3_600_000)
    const requested = t.fw.requests.length
    // Both scan again; neither is blocked anew (one is blocked, one allowlisted). The
    // sentinel, a new source on the new tripwire, is blocked with the new TTL.
    t.capture.hit({ src: '198.18.0.2', dstPort: 2222, kind: 'connect' }, { src: '198.18.0.3', dstPort: 2222, kind: 'connect' })
    const d = await connect(t, '198.18.0.4', 2323)
    expect(d).toMatchObject({ reason: 'blocked', ttlMs: 7_200_000 })
    await waitFor('the sentinel block', () => t.fw.held.has('198.18.0.4'))
    expect(t.fw.requests.slice(requested).flat().map((r) => r.address)).toEqual(['198.18.0.4'])
    expect([...t.fw.held.keys()]).toEqual(['198.18.0.2', '198.18.0.4'])
    expect(t.operator().filter((e) => e.op === 'reload')).toEqual([expect.objectContaining({ outcome: 'applied', changed: ['tcp/udp/sctp', 'blockTtl', 'allow'] })])
    expect((await t.daemon.status()).reload).toMatchObject({ applied: 1, refused: 0, last: { outcome: 'applied' } })
  })

  it('refuses a change that needs a restart, and an invalid config, changing nothing', async () => {
    const t = await start({ tcp: [2222], blockTtl: '1h' })
    await expect(t.daemon.reload({ statsInterval: '0s', control: false, state: false, tcp: [2323], interface: 'eth9', backend: 'ipset', blockTtl: '2h' })).rejects.toMatchObject({
      code: 'PORTANOIA_RELOAD_REFUSED',
      message: 'changed fields that need a restart: interface, backend',
    })
    await expect(t.daemon.reload({ statsInterval: '0s', control: false, state: false, tcp: [2222], dryRun: true })).rejects.toMatchObject({ code: 'PORTANOIA_RELOAD_REFUSED', message: expect.stringMatching(/dryRun/) })
    await expect(t.daemon.reload({ statsInterval: '0s', control: false, state: false, tcp: [2222], block: 'off' })).rejects.toMatchObject({ message: expect.stringMatching(/block \(to or from off\)/) })
    await expect(t.daemon.reload({ statsInterval: '0s', control: false, state: false, tcp: [2323], blockTtl: '5x' })).rejects.toMatchObject({ code: 'PORTANOIA_BAD_CONFIG' })
    expect(t.daemon.ports).toEqual([{ proto: 'tcp', from: 2222, to: 2222 }])
    expect((await t.daemon.status()).policy.blockTtlMs).toBe(3_600_000)
    expect((await connect(t, '198.18.0.2')).ttlMs).toBe(3_600_000)
    const refused = t.operator().filter((e) => e.op === 'reload')
    expect(refused.map((e) => e.outcome)).toEqual(['refused', 'refused', 'refused', 'refused'])
    expect(refused[0]).toMatchObject({ restart: ['interface', 'backend'], code: 'PORTANOIA_RELOAD_REFUSED', hint: expect.stringMatching(/restart/) })
    expect((await t.daemon.status()).reload).toMatchObject({ applied: 0, refused: 4, last: { outcome: 'refused', error: { code: 'PORTANOIA_BAD_CONFIG' } } })
  })

  it('the assembly opens the sensor with the config\'s ring size, and a new ring size needs a restart', async () => {
    const t = await start({ tcp: [2222], ringRecords: 4096 })
    expect(t.capture.options.ringRecords).toBe(4096)
    await expect(t.daemon.reload({ statsInterval: '0s', control: false, state: false, tcp: [2222], ringRecords: 8192 })).rejects.toMatchObject({
      code: 'PORTANOIA_RELOAD_REFUSED',
      message: 'changed fields that need a restart: ringRecords',
    })
    const d = await start({ tcp: [2222] })
    expect(d.capture.options.ringRecords).toBe(1 << 18)
  })

  it('without an argument re-reads the source: a config file edited in place, its errors with file:line:column', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pnreload-'))
    closers.push(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'portanoia.json')
    await writeFile(file, '{ "tcp": [2222], "statsInterval": "0s", "control": false, "state": false }')
    const source = async (): Promise<ReturnType<typeof resolveConfig>> => resolveWatch({}, await readConfig(file))
    const t = await start({ tcp: [2222] }, { reloadSource: source })
    await writeFile(file, '{\n  "tcp": [2222],\n  "statsInterval": "0s",\n  "control": false,\n  "state": false,\n  "threshold": 2, // two connects\n}')
    expect(await t.daemon.reload()).toMatchObject({ outcome: 'applied', changed: ['threshold'] })
    await writeFile(file, '{\n  "tcp": [2222],\n  "blokTtl": "1h"\n}')
    await expect(t.daemon.reload()).rejects.toThrow(`${file}:3:3: unknown field "blokTtl" (did you mean "blockTtl"?)`)
    expect((await t.daemon.status()).policy.threshold).toBe(2)
  })

  it('swaps the webhook: decisions after the reload go to the new URL, none to the old', async () => {
    const hits: string[] = []
    const server: Server = createServer((req, res) => {
      hits.push(req.url ?? '')
      req.resume()
      req.on('end', () => res.end('ok'))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise((r) => server.close(() => r())))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const t = await start({ tcp: [2222], webhook: `${base}/old` })
    await connect(t, '198.18.0.2')
    await waitFor('the first webhook', () => hits.includes('/old'))
    expect(await t.daemon.reload({ statsInterval: '0s', control: false, state: false, tcp: [2222], webhook: `${base}/new` })).toMatchObject({ changed: ['webhook'] })
    await connect(t, '198.18.0.3')
    await waitFor('the second webhook', () => hits.includes('/new'))
    expect(hits).toEqual(['/old', '/new'])
  })
})

describe('through the control socket', () => {
  it('the assembly serves status, block, list, unblock and reload on the configured path, and removes it at close', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pnops-'))
    closers.push(() => rm(dir, { recursive: true, force: true }))
    const path = join(dir, 'p.sock')
    const t = await start({ tcp: [2222], control: path })
    const daemon: Daemon = t.daemon
    const { status } = await controlRequest(path, { op: 'status' })
    expect(status).toMatchObject({ pid: process.pid, control: path, tripwires: { ports: '2222/tcp', listeners: 1 } })
    expect((await controlRequest(path, { op: 'block', addresses: ['198.18.0.9'], ttl: '1m' })).result).toMatchObject({ applied: ['198.18.0.9'], ttlMs: 60_000 })
    expect((await controlRequest(path, { op: 'list' })).blocks).toEqual([
      expect.objectContaining({ address: '198.18.0.9', origin: 'operator', reason: 'operator', timeoutMs: 60_000 }),
    ])
    await expect(controlRequest(path, { op: 'block', addresses: ['not-an-ip'] })).rejects.toMatchObject({ code: 'PORTANOIA_BAD_ADDRESS' })
    expect((await controlRequest(path, { op: 'unblock', addresses: ['198.18.0.9'] })).result).toMatchObject({ applied: ['198.18.0.9'] })
    // Daemon.start's source: the config it was given, resolved again.
    await expect(controlRequest(path, { op: 'reload' })).rejects.toMatchObject({ code: 'PORTANOIA_RELOAD_REFUSED', message: 'this daemon has no config source to read again' })
    await daemon.close()
    await expect(controlRequest(path, { op: 'status' })).rejects.toMatchObject({ code: 'PORTANOIA_NO_DAEMON' })
  })
})
