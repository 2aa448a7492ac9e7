/**
 * Responses that learn (issue 12), with the real nft of a test namespace and a
 * state file in a scratch folder (lib/lab/scratch.ts):
 * - the escalation ladder across restarts: a scanner's first block gets step 1;
 *   after it ran out and the daemon restarted, its next block gets step 2 — the
 *   history came from the state file, and the kernel element says so;
 * - a simulated reboot (the table deleted while no daemon runs): the next start
 *   puts the block back with the time it had left, except on an address that is
 *   now guarded; the scanner's connect times out again;
 * - with the table in place the kernel is the truth: a block removed while the
 *   daemon was down is not brought back from the journal.
 * The kernel is read with nft directly (test/helpers/nft.ts).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon, type DaemonOptions } from '../../lib/daemon/daemon.js'
import type { DecisionEvent, FirewallEvent, PortanoiaEvent } from '../../lib/daemon/events.js'
import { StateFile } from '../../lib/daemon/state-file.js'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun, netnsStream } from '../../lib/responders/run.js'
import { internals } from '../helpers/internals.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftEntries, nftScript } from '../helpers/nft.js'
import { tcpConnect } from '../helpers/tcp.js'
import { waitFor } from '../helpers/wait.js'

warnIfNotRoot('test/privileged/responses.test.ts')

const TRIPWIRE = 2222

let net: TestNet | undefined
let dir: string | undefined
const daemons: Daemon[] = []

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.close()
  await net?.destroy()
  net = undefined
  if (dir !== undefined) await removeScratch(dir)
  dir = undefined
})

async function startDaemon(n: TestNet, statePath: string, options: Partial<DaemonOptions> = {}) {
  const events: PortanoiaEvent[] = []
  const logs: string[] = []
  const daemon = await Daemon.compose({
    ports: [`${TRIPWIRE}/tcp`],
    netns: n.sensorNs,
    firewall: new NftablesResponder({ run: netnsRun(n.sensorNs), monitor: netnsStream(n.sensorNs) }),
    statsIntervalMs: 0,
    state: new StateFile(statePath),
    onEvent: (e) => events.push(e),
    onLog: (_l, m) => logs.push(m),
    ...options,
  })
  daemons.push(daemon)
  const decisions = (): DecisionEvent[] => events.filter((e): e is DecisionEvent => e.type === 'decision' && !('source' in e))
  const firewall = (): FirewallEvent[] => events.filter((e): e is FirewallEvent => e.type === 'firewall')
  return { daemon, events, decisions, firewall, logs }
}

async function stop(d: { daemon: Daemon }): Promise<void> {
  await d.daemon.close()
  daemons.splice(daemons.indexOf(d.daemon), 1)
}

const element = async (n: TestNet, set: string, address: string) => (await nftEntries(n.sensorExec))?.find((e) => e.set === set && e.address === address)

/** A verified connect from link `i`'s peer and its block decision, once the element is in the kernel. */
async function scan(n: TestNet, d: Awaited<ReturnType<typeof startDaemon>>, i = 0): Promise<DecisionEvent> {
  const link = n.links[i] as TestNet['links'][0]
  const before = d.decisions().length
  await tcpConnect(link.peer, link.sensor.ipv4, TRIPWIRE)
  const block = await waitFor('the block', () => d.decisions().slice(before).find((x) => x.reason === 'blocked' && x.src === link.peer.ipv4))
  await waitFor('the element', async () => ((await element(n, 'verified4', link.peer.ipv4)) !== undefined ? true : undefined))
  return block
}

describe.skipIf(!IS_ROOT)('responses that learn', () => {
  it('the ladder across restarts, and a reboot restores the block with its time left, never on a guarded address', async () => {
    net = await createTestNet({ peers: 2 })
    dir = await scratchDir('responses-')
    const statePath = join(dir, 'state.json')
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    const policy = { blockTtlLadderMs: [3000, 3_600_000, 86_400_000] }

    // First run: the first block of each scanner is step 1 (3 s).
    const first = await startDaemon(net, statePath, { policy })
    expect(await scan(net, first, 0)).toMatchObject({ offence: 1, ttlMs: 3000 })
    expect(await scan(net, first, 1)).toMatchObject({ offence: 1, ttlMs: 3000 })
    await stop(first)
    // Step 1 runs out in the kernel.
    await waitFor('the expiry', async () => ((await element(net!, 'verified4', a.peer.ipv4)) === undefined ? true : undefined), 20_000)

    // Second run: the history came from the state file, so the next block is step 2 (1 h).
    const second = await startDaemon(net, statePath, { policy })
    expect(await scan(net, second, 0)).toMatchObject({ offence: 2, ttlMs: 3_600_000 })
    expect((await element(net, 'verified4', a.peer.ipv4))?.timeout).toBe(3600)
    await stop(second)
    const saved = JSON.parse(await readFile(statePath, 'utf8')) as { blocks: Array<{ address: string; expiresAt: number }> }
    expect(saved.blocks.map((x) => x.address)).toEqual([a.peer.ipv4])
    // Peer b's address is in the journal too, as if its block had been long: after
    // the reboot it is allowlisted and must not come back.
    saved.blocks.push({ ...saved.blocks[0]!, address: b.peer.ipv4 })
    await writeFile(statePath, JSON.stringify(saved))

    // A reboot: the kernel lost the table while no daemon ran.
    await nftScript(net.sensorExec, 'delete table inet portanoia\n')
    const third = await startDaemon(net, statePath, { policy, allowlist: [`${b.peer.ipv4}/32`] })
    const restored = third.firewall().find((e) => e.op === 'restored')
    expect(restored).toMatchObject({ missing: ['table'], count: 1, addresses: [a.peer.ipv4] })
    // The time it had left: what the journal said, less what passed until the kernel was read.
    const e = await element(net, 'verified4', a.peer.ipv4)
    const leftS = (saved.blocks[0]!.expiresAt - Date.now()) / 1000
    expect(e?.expires).toBeGreaterThanOrEqual(Math.floor(leftS) - 1)
    expect(e?.expires).toBeLessThanOrEqual(3600)
    expect(await element(net, 'verified4', b.peer.ipv4)).toBeUndefined()
    expect(third.logs.some((m) => m.includes(`not restored, now guarded: ${b.peer.ipv4} (allowlist)`))).toBe(true)
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 800)).toBe('timeout')
    // The restored block is the engine's: a hit from it is already-blocked, not a new offence.
    expect(internals(third.daemon).engine.isBlocked(a.peer.ipv4)).toBe(true)
  }, 120_000)

  it('with the table in place the kernel is the truth: a block removed while the daemon was down stays removed', async () => {
    net = await createTestNet()
    dir = await scratchDir('responses-')
    const statePath = join(dir, 'state.json')
    const [a] = net.links as [TestNet['links'][0]]
    const first = await startDaemon(net, statePath)
    await scan(net, first, 0)
    await stop(first)
    await nftScript(net.sensorExec, `delete element inet portanoia verified4 { ${a.peer.ipv4} }\n`)
    const second = await startDaemon(net, statePath)
    expect(second.firewall().filter((e) => e.op === 'restored')).toEqual([])
    expect(await element(net, 'verified4', a.peer.ipv4)).toBeUndefined()
    // Its history stays: the next block is its second.
    expect(await scan(net, second, 0)).toMatchObject({ offence: 2 })
  }, 120_000)
})
