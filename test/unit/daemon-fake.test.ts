/**
 * The Daemon's wiring without root, on the fake addon (test/helpers/fake-binding.ts):
 * which TCP tripwires get listeners (the sensor's `listen` list, honoured by
 * setPorts; the daemon giving explicit ports listeners while `unused` ports stay
 * unbound, so a connect to an explicit port is still verified and blocked), and
 * fleet mode's two degraded shapes against the fake LAPI: dry-run pulls nothing
 * (so no fleet `block` event claims a ban that never reached the kernel), and
 * without a firewall (`--backend none`) local blocks are still pushed.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon, type DaemonOptions } from '../../lib/daemon/daemon.js'
import type { PortanoiaEvent } from '../../lib/daemon/events.js'
import type { ResolvedFleet } from '../../lib/fleet/config.js'
import { Secret } from '../../lib/fleet/lapi.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import type { BlockRequest, Responder, ResponderResult, RunFn } from '../../lib/responders/types.js'
import { open } from '../../lib/sensor.js'
import { type FakeLapi, startFakeLapi } from '../helpers/fake-lapi.js'
import { fakeBinding, fakeHost, recordingFirewall } from '../helpers/fake-binding.js'

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c()
})

async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function startDaemon(options: Omit<DaemonOptions, 'sensor' | 'host'> & { listening?: { tcp?: number[] } }) {
  const binding = fakeBinding()
  const host = fakeHost(options.listening ?? {})
  const events: PortanoiaEvent[] = []
  const logs: string[] = []
  const daemon = await Daemon.compose({
    statsIntervalMs: 0,
    ...options,
    host,
    sensor: { binding },
    onEvent: (e) => events.push(e),
    onLog: (_level, m) => logs.push(m),
  })
  closers.push(() => daemon.close())
  return { daemon, capture: binding.captures[0]!, host, events, logs }
}

describe('per-port listeners', () => {
  it('open({ listen: [...] }) gives listeners to the listed TCP tripwires only, and setPorts keeps to the list', async () => {
    const binding = fakeBinding()
    const sensor = await open({ ports: ['2222/tcp', '3000-3002/tcp', '5353/udp'], listen: ['2222/tcp', 4000], binding })
    closers.push(() => sensor.close())
    const capture = binding.captures[0]!
    expect(capture.listenerPorts()).toEqual([2222])
    expect(sensor.stats().listeners).toBe(1)
    // 4000 is on the list: it gets a listener once it becomes a tripwire; 3005 is not.
    await sensor.setPorts(['2222/tcp', '3000-3002/tcp', '3005/tcp', '4000/tcp'])
    expect(capture.listenerPorts()).toEqual([2222, 4000])
    await sensor.setPorts(['3000/tcp', '4000/tcp'])
    expect(capture.listenerPorts()).toEqual([4000])
    // Ports that never had a listener were never opened.
    expect(capture.listenerLog.sort((a, b) => a - b)).toEqual([2222, 4000])
  })

  it('listen: [] opens none; a non-TCP or malformed listen list is refused before any capture exists', async () => {
    const binding = fakeBinding()
    const sensor = await open({ ports: ['2222/tcp'], listen: [], binding })
    closers.push(() => sensor.close())
    expect(binding.captures[0]!.listenerPorts()).toEqual([])
    for (const listen of [['5353/udp'], ['nope'], 'yes']) {
      const b = fakeBinding()
      await expect(open({ ports: ['2222/tcp'], listen: listen as never, binding: b })).rejects.toMatchObject({
        code: expect.stringMatching(/^PORTANOIA_BAD_/),
      })
      expect(b.captures).toHaveLength(0)
    }
  })

  it('with unused ranges, explicit TCP tripwires listen and unused ones do not, across port syncs', async () => {
    const fw = recordingFirewall()
    const { daemon, capture, host, events } = await startDaemon({
      ports: ['2222/tcp', '5353/udp'],
      unused: ['3000-3003'],
      listening: { tcp: [3001] },
      firewall: fw,
    })
    expect(daemon.ports).toEqual([
      { proto: 'tcp', from: 2222, to: 2222 },
      { proto: 'tcp', from: 3000, to: 3000 },
      { proto: 'tcp', from: 3002, to: 3003 },
      { proto: 'udp', from: 5353, to: 5353 },
    ])
    expect(capture.listenerPorts()).toEqual([2222])

    // A service takes 3002: the tripwire set shrinks, the explicit listener stays.
    host.listeningNow = { ...host.listeningNow, tcp: new Set([3001, 3002, 2222]) }
    await daemon.syncPorts()
    expect(daemon.ports.some((r) => r.proto === 'tcp' && r.from <= 3002 && r.to >= 3002)).toBe(false)
    expect(capture.listenerPorts()).toEqual([2222])

    // The listener completed a handshake: a verified connect, blocked.
    capture.hit({ src: '198.18.0.2', dstPort: 2222, kind: 'syn' }, { src: '198.18.0.2', dstPort: 2222, kind: 'connect' })
    await waitFor('the block', () => fw.blocked.length > 0)
    expect(fw.blocked[0]).toMatchObject({ address: '198.18.0.2', family: 4 })
    expect(events.find((e) => e.type === 'decision' && e.reason === 'blocked')).toMatchObject({ src: '198.18.0.2', verified: true })
  })

  it('a forced sync made while another runs resolves only after a read that began after it', async () => {
    const { daemon, host } = await startDaemon({ unused: ['3000-3003'], firewall: null })
    let reads = 0
    // A slow read of the table as it was when the read began.
    host.listening = async () => {
      reads++
      const table = host.listeningNow
      await new Promise((r) => setTimeout(r, 30))
      return table
    }
    const first = daemon.syncPorts()
    // The table changes while the first read is in flight; the caller of the second
    // sync must see the change once its promise resolves.
    host.listeningNow = { ...host.listeningNow, tcp: new Set([3002]) }
    await Promise.all([first, daemon.syncPorts()])
    expect(reads).toBe(2)
    expect(daemon.ports).toEqual([
      { proto: 'tcp', from: 3000, to: 3001 },
      { proto: 'tcp', from: 3003, to: 3003 },
    ])
  })

  it('unused ranges alone run without listeners; without unused every TCP tripwire listens', async () => {
    const a = await startDaemon({ unused: ['3000-3003'], firewall: null })
    expect(a.capture.listenerPorts()).toEqual([])
    const b = await startDaemon({ ports: ['2222/tcp', '2323/tcp', '5353/udp'], firewall: null })
    expect(b.capture.listenerPorts()).toEqual([2222, 2323])
    const c = await startDaemon({ ports: ['2222/tcp'], unused: ['3000-3001'], listen: false, firewall: null })
    expect(c.capture.listenerPorts()).toEqual([])
  })
})

describe('fleet mode in degraded shapes (fake LAPI)', () => {
  const PASSWORD = 'pw-not-printed'
  const KEY = 'bouncer-key-not-printed'
  let fake: FakeLapi

  async function lapi(): Promise<FakeLapi> {
    fake = await startFakeLapi({ machine: 'host-a', password: PASSWORD, bouncerKeys: [KEY] })
    closers.push(() => fake.close())
    return fake
  }

  function fleetConfig(over: Partial<ResolvedFleet>): ResolvedFleet {
    return {
      url: fake.url,
      machine: 'host-a',
      password: new Secret(PASSWORD),
      bouncerKey: new Secret(KEY),
      push: true,
      pull: true,
      pushIntervalMs: 50,
      pullIntervalMs: 50,
      queueLimit: 100,
      timeoutMs: 2000,
      pushSpoofable: false,
      warnings: [],
      ...over,
    }
  }

  it('--dry-run: fleet bans are not pulled, so no fleet block event claims an unapplied ban', async () => {
    await lapi()
    fake.feed({ new: [{ value: '198.18.9.9', origin: 'cscli' }] })
    const runs: string[] = []
    const run: RunFn = async (cmd, args, input) => {
      runs.push(`${cmd} ${args.join(' ')} ${input ?? ''}`)
      return { code: 0, stdout: '', stderr: '' }
    }
    const { daemon, events, logs } = await startDaemon({
      ports: ['2222/tcp'],
      policy: { dryRun: true },
      firewall: new NftablesResponder({ run, dryRun: true }),
      fleet: fleetConfig({ push: false }),
    })
    // No pull exists to poll (no sleep needed to see one did not): the final stats name none.
    await daemon.close()
    const stats = events.filter((e) => e.type === 'stats').at(-1)
    expect(stats?.type === 'stats' && Object.keys(stats.responders ?? {}).sort()).toEqual(['daemon', 'nftables'])
    expect(fake.requests.filter((r) => r.includes('/v1/decisions/stream'))).toEqual([])
    expect(events.filter((e) => e.type === 'decision' && 'source' in e && e.source === 'fleet')).toEqual([])
    expect(logs.join('\n')).toMatch(/dry-run applies nothing.*pulling is off/)
    expect(runs.join('\n')).not.toContain('198.18.9.9')
  })

  it('--backend none: local blocks are still pushed to LAPI; nothing is pulled', async () => {
    await lapi()
    const { capture, events, logs } = await startDaemon({
      ports: ['2222/tcp'],
      firewall: null,
      fleet: fleetConfig({}),
    })
    expect(logs.join('\n')).toMatch(/no firewall backend.*pulling is off, pushing only/)
    capture.hit({ src: '198.18.0.7', dstPort: 2222, kind: 'connect' })
    await waitFor('the alert', () => fake.alertBatches.length > 0)
    const alert = fake.alertBatches[0]![0] as { decisions: Array<{ value: string; origin: string; type: string }> }
    expect(alert.decisions[0]).toMatchObject({ value: '198.18.0.7', origin: 'portanoia', type: 'ban' })
    expect(events.find((e) => e.type === 'decision' && e.reason === 'blocked')).toMatchObject({ src: '198.18.0.7' })
    expect(fake.requests.filter((r) => r.includes('/v1/decisions/stream'))).toEqual([])
  })
})

describe('failures inside the pipeline become events', () => {
  /** Runs `body` with unhandled rejections and uncaught exceptions recorded instead of ending the run. */
  async function recordingEscapes(body: (escaped: unknown[]) => Promise<void>): Promise<void> {
    const escaped: unknown[] = []
    const onEscape = (e: unknown): void => {
      escaped.push(e)
    }
    process.on('unhandledRejection', onEscape)
    process.on('uncaughtException', onEscape)
    try {
      await body(escaped)
    } finally {
      process.off('unhandledRejection', onEscape)
      process.off('uncaughtException', onEscape)
    }
  }

  it('a throwing onScript (dry-run) is an error event, not an unhandled rejection', async () => {
    await recordingEscapes(async (escaped) => {
      const run: RunFn = async () => ({ code: 0, stdout: '', stderr: '' })
      const { capture, events } = await startDaemon({
        ports: ['2222/tcp'],
        policy: { dryRun: true },
        firewall: new NftablesResponder({ run, dryRun: true }),
        // The setup script at start is the caller's own call stack; the block script comes from the pipeline.
        onScript: (script) => {
          if (script.includes('create element')) throw new Error('terminal went away')
        },
      })
      capture.hit({ src: '198.18.0.7', dstPort: 2222, kind: 'connect' })
      await waitFor('an error event', () => events.some((e) => e.type === 'error' && e.message.includes('terminal went away')))
      // The sentinel: the next batch settles after the first one's handling is over.
      capture.hit({ src: '198.18.0.8', dstPort: 2222, kind: 'connect' })
      await waitFor('the second error event', () => events.filter((e) => e.type === 'error').length === 2)
      expect(escaped).toEqual([])
    })
  })

  it("a throw while handling a notifier's result is an error event, not an unhandled rejection", async () => {
    await recordingEscapes(async (escaped) => {
      // A notifier in dry-run hands back the script it would run; the caller's onScript throws on it.
      const notifier: Responder = {
        name: 'fake-notifier',
        start: async () => [],
        block: async () => ({ responder: 'fake-notifier', ok: true, applied: [], failed: [] }),
        unblock: async () => ({ responder: 'fake-notifier', ok: true, applied: [], failed: [] }),
        list: async () => [],
        notify: async () => ({ responder: 'fake-notifier', ok: true, applied: [], failed: [], dryRun: true, script: 'curl ...\n' }),
        close: async () => {},
      }
      const { capture, events } = await startDaemon({
        ports: ['2222/tcp'],
        firewall: null,
        notifiers: [notifier],
        onScript: () => {
          throw new Error('terminal went away')
        },
      })
      capture.hit({ src: '198.18.0.7', dstPort: 2222, kind: 'connect' })
      await waitFor('an error event', () => events.some((e) => e.type === 'error' && e.message.includes('terminal went away')))
      expect(events.find((e) => e.type === 'error')).toMatchObject({ responder: 'fake-notifier' })
      // The sentinel: a later hit is still decided and notified, after the failed one settled.
      capture.hit({ src: '198.18.0.8', dstPort: 2222, kind: 'connect' })
      await waitFor('the second error event', () => events.filter((e) => e.type === 'error').length === 2)
      expect(escaped).toEqual([])
    })
  })

  it('a throw in the policy tick is an error event, and the pipeline goes on', async () => {
    await recordingEscapes(async (escaped) => {
      // The engine's clock is the caller's; a throwing one makes the 1 s tick throw.
      let broken = false
      const { capture, events } = await startDaemon({
        ports: ['2222/tcp'],
        firewall: null,
        now: () => {
          if (broken) throw new Error('clock unavailable')
          return Date.now()
        },
      })
      broken = true
      await waitFor('an error event from the tick', () => events.some((e) => e.type === 'error' && e.message.includes('clock unavailable')), 5000)
      broken = false
      expect(events.find((e) => e.type === 'error')).toMatchObject({ responder: 'policy' })
      capture.hit({ src: '198.18.0.9', dstPort: 2222, kind: 'connect' })
      await waitFor('a decision after the failed tick', () => events.some((e) => e.type === 'decision' && e.src === '198.18.0.9'))
      expect(escaped).toEqual([])
    })
  })
})

describe('TTL limits', () => {
  it('refuses a verified TTL longer than the firewall can hold before anything opens', async () => {
    const fw = { ...recordingFirewall(), maxTtlMs: 10_000 }
    const binding = fakeBinding()
    await expect(
      Daemon.compose({ ports: ['2222/tcp'], firewall: fw, policy: { blockTtlMs: 20_000 }, sensor: { binding }, host: fakeHost({}) }),
    ).rejects.toMatchObject({ code: 'PORTANOIA_BAD_POLICY', message: expect.stringMatching(/fake-fw can hold \(10000 ms\)/) })
    expect(fw.blocked).toEqual([])
  })
})

describe('the hit ring', () => {
  it('the daemon opens its sensor with a 262,144-record ring (a forged flood\'s first second), and sensor.ringRecords still sets it', async () => {
    const { capture } = await startDaemon({ ports: ['2222/tcp'], firewall: null })
    expect(capture.options.ringRecords).toBe(1 << 18)
    const binding = fakeBinding()
    const daemon = await Daemon.compose({
      statsIntervalMs: 0,
      ports: ['2222/tcp'],
      firewall: null,
      host: fakeHost({}),
      sensor: { binding, ringRecords: 4096 },
    })
    closers.push(() => daemon.close())
    expect(binding.captures[0]!.options.ringRecords).toBe(4096)
  })
})
