/**
 * The daemon's vetting stage on the fake addon: block decisions wait for the kernel's
 * peer check (a fake here, answering when the test says so), are asked in one batch
 * per sensor drain, one batch in flight while the next gathers; a refused block
 * becomes `guard:peer` and never shows up as a `blocked` event, a firewall request or
 * a notifier's decision, while a passed one does; the operator's block asks the same
 * check; close() vets what is held before the last firewall batch.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import type { LiveChecks } from '../../lib/daemon/host-watch.js'
import { type Address, formatAddress } from '../../lib/policy/addr.js'
import type { Decision } from '../../lib/policy/decision.js'
import type { GuardReason } from '../../lib/policy/guards.js'
import type { BlockRequest, Responder, ResponderResult } from '../../lib/responders/types.js'
import { fakeBinding, fakeHost, recordingFirewall } from '../helpers/fake-binding.js'

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c()
})

async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** A kernel whose peer check answers when the test resolves it: `peers` lists the addresses it calls peers. */
function slowKernel(peers: string[]) {
  const calls: Array<{ targets: string[]; answer: () => void }> = []
  const live: LiveChecks = {
    route: () => null,
    guard: () => null,
    isLocal: () => true,
    isReply: () => false,
    peers: (targets: ReadonlyArray<Address | { family: 4 | 6; network: bigint; prefix: number }>) =>
      new Promise<Array<GuardReason | null>>((resolve) => {
        const text = targets.map((t) => ('value' in t ? formatAddress(t) : 'network'))
        calls.push({ targets: text, answer: () => resolve(text.map((a) => (peers.includes(a) ? 'peer' : null))) })
      }),
  }
  return { live, calls }
}

function recordingNotifier(): Responder & { told: Decision[] } {
  const n = {
    name: 'note',
    told: [] as Decision[],
    start: async () => [],
    block: async () => ({ responder: 'note', ok: true, applied: [], failed: [] }),
    unblock: async () => ({ responder: 'note', ok: true, applied: [], failed: [] }),
    list: async () => [],
    notify: async (ds: readonly Decision[]) => {
      n.told.push(...ds)
      return { responder: 'note', ok: true, applied: [], failed: [] }
    },
    close: async () => {},
  }
  return n
}

/** A kernel whose peer check fails: every call rejects, as sock_diag refusing would. */
function failingKernel() {
  const calls: string[][] = []
  const live: LiveChecks = {
    route: () => null,
    guard: () => null,
    isLocal: () => true,
    isReply: () => false,
    peers: async (targets) => {
      calls.push(targets.map((t) => ('value' in t ? formatAddress(t) : 'network')))
      throw Object.assign(new Error('SOCK_DIAG_BY_FAMILY: Operation not permitted'), { code: 'EPERM' })
    },
  }
  return { live, calls }
}

async function start(peers: string[], kernel: { live: LiveChecks } = slowKernel(peers)) {
  const binding = fakeBinding()
  const fw = recordingFirewall()
  const note = recordingNotifier()
  const events: PortanoiaEvent[] = []
  const daemon = await Daemon.compose({
    ports: ['2222/tcp'],
    policy: { block: 'all' },
    firewall: fw,
    notifiers: [note],
    statsIntervalMs: 0,
    host: fakeHost({}, kernel.live),
    sensor: { binding },
    onEvent: (e) => events.push(e),
  })
  closers.push(() => daemon.close())
  const decisions = (): Array<[string, string]> =>
    events.filter((e): e is DecisionEvent => e.type === 'decision').map((e) => [e.src, e.reason])
  return { daemon, capture: binding.captures[0]!, kernel: kernel as ReturnType<typeof slowKernel>, fw, note, events, decisions }
}

describe('block decisions wait for the kernel\'s peer check', () => {
  it('a refused block is guard:peer and nothing else; a passed one from the same drain is blocked; one batch for both', async () => {
    const d = await start(['198.18.0.10'])
    d.capture.hit({ src: '198.18.0.10', dstPort: 2222, kind: 'syn' }, { src: '198.18.0.11', dstPort: 2222, kind: 'syn' })
    await waitFor('the check', () => d.kernel.calls.length === 1)
    expect(d.kernel.calls[0]!.targets).toEqual(['198.18.0.10', '198.18.0.11'])
    // Held: nothing said, nothing sent, while the kernel has not answered.
    await new Promise((r) => setTimeout(r, 50))
    expect(d.decisions()).toEqual([])
    expect(d.fw.blocked).toEqual([])
    d.kernel.calls[0]!.answer()
    await waitFor('the firewall', () => d.fw.blocked.length === 1)
    expect(d.decisions()).toEqual([
      ['198.18.0.10', 'guard:peer'],
      ['198.18.0.11', 'blocked'],
    ])
    expect(d.fw.blocked.map((r) => r.address)).toEqual(['198.18.0.11'])
    await waitFor('the notifier', () => d.note.told.length === 2)
    expect(d.note.told.map((x) => [x.src, x.reason])).toEqual([
      ['198.18.0.10', 'guard:peer'],
      ['198.18.0.11', 'blocked'],
    ])
    const status = await d.daemon.status()
    expect(status.counters).toMatchObject({ decisions: expect.objectContaining({ blocked: 1, 'guard:peer': 1 }) })
  })

  it('one batch in flight: what arrives meanwhile is the next batch', async () => {
    const d = await start([])
    d.capture.hit({ src: '198.18.0.20', dstPort: 2222, kind: 'syn' })
    await waitFor('the first check', () => d.kernel.calls.length === 1)
    d.capture.hit({ src: '198.18.0.21', dstPort: 2222, kind: 'syn' })
    d.capture.hit({ src: '198.18.0.22', dstPort: 2222, kind: 'syn' })
    await new Promise((r) => setTimeout(r, 50))
    expect(d.kernel.calls).toHaveLength(1)
    d.kernel.calls[0]!.answer()
    await waitFor('the second check', () => d.kernel.calls.length === 2)
    expect(d.kernel.calls[1]!.targets).toEqual(['198.18.0.21', '198.18.0.22'])
    d.kernel.calls[1]!.answer()
    await waitFor('three blocks', () => d.fw.blocked.length === 3)
    expect(d.decisions().map(([, r]) => r)).toEqual(['blocked', 'blocked', 'blocked'])
  })

  it('the operator\'s block asks the same check, in one batch', async () => {
    const d = await start(['198.18.0.30'])
    const outcome = d.daemon.block(['198.18.0.30', '198.18.0.31'])
    await waitFor('the check', () => d.kernel.calls.length === 1)
    expect(d.kernel.calls[0]!.targets).toEqual(['198.18.0.30', '198.18.0.31'])
    d.kernel.calls[0]!.answer()
    expect(await outcome).toMatchObject({ applied: ['198.18.0.31'], refused: [{ address: '198.18.0.30', reason: 'guard:peer' }] })
    expect(d.fw.blocked.map((r) => r.address)).toEqual(['198.18.0.31'])
  })

  it('close() vets what is held before the last firewall batch', async () => {
    const d = await start([])
    d.capture.hit({ src: '198.18.0.40', dstPort: 2222, kind: 'syn' })
    await waitFor('the check', () => d.kernel.calls.length === 1)
    const closing = d.daemon.close()
    await new Promise((r) => setTimeout(r, 50))
    expect(d.fw.blocked).toEqual([])
    d.kernel.calls[0]!.answer()
    await closing
    expect(d.fw.blocked.map((r) => r.address)).toEqual(['198.18.0.40'])
    expect(d.decisions()).toEqual([['198.18.0.40', 'blocked']])
  })

  it('a check that fails blocks no spoofable source (peer-check-failed, with an error saying why) and still blocks a verified one', async () => {
    const kernel = failingKernel()
    const d = await start([], kernel)
    d.capture.hit({ src: '198.18.0.50', dstPort: 2222, kind: 'syn' }, { src: '198.18.0.51', dstPort: 2222, kind: 'connect' })
    await waitFor('the verified block', () => d.fw.blocked.length === 1)
    expect(kernel.calls).toEqual([['198.18.0.50', '198.18.0.51']])
    expect(d.decisions()).toEqual([
      ['198.18.0.50', 'peer-check-failed'],
      ['198.18.0.51', 'blocked'],
    ])
    expect(d.fw.blocked.map((r) => r.address)).toEqual(['198.18.0.51'])
    const failed = d.events.find((e) => e.type === 'decision' && e.src === '198.18.0.50')
    expect(failed).toMatchObject({ action: 'report', verified: false })
    const errors = d.events.filter((e) => e.type === 'error')
    expect(errors).toMatchObject([{ responder: 'guards', code: 'PORTANOIA_PEER_CHECK_FAILED', message: expect.stringContaining('Operation not permitted') }])
    // The same source again in its window: not asked about again, nothing new said; still not blocked.
    d.capture.hit({ src: '198.18.0.50', dstPort: 2223, kind: 'syn' }, { src: '198.18.0.52', dstPort: 2222, kind: 'connect' })
    await waitFor('the sentinel block', () => d.fw.blocked.length === 2)
    expect(kernel.calls[1]).toEqual(['198.18.0.52'])
    expect(d.decisions().filter(([src]) => src === '198.18.0.50')).toEqual([['198.18.0.50', 'peer-check-failed']])
    expect(d.fw.blocked.map((r) => r.address)).toEqual(['198.18.0.51', '198.18.0.52'])
    const status = await d.daemon.status()
    expect(status.counters).toMatchObject({ decisions: expect.objectContaining({ blocked: 2, 'peer-check-failed': 1 }) })
  })
})
