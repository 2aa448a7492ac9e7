/**
 * The daemon in fleet mode while CrowdSec's LAPI is down, by its public entry
 * (Daemon.start with a `crowdsec` config), capturing in a test namespace with that
 * namespace's real nft. "Down" twice over: first a LAPI that accepts connections and
 * never answers (the worst case: every request waits for its deadline), then one
 * that refuses them. A verified connect is blocked in the kernel while the daemon's
 * own LAPI requests are still hanging — detection and blocking never wait for the
 * fleet — the fleet failure is reported as a `fleet` event, the local blocks queue
 * for a later push, and close() returns. The stand-in LAPI listens on 127.0.0.1 in
 * this process (the daemon's fleet client runs here, not in the namespace).
 */
import { chmod, writeFile } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { PortanoiaEvent } from '../../lib/daemon/events.js'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftElements } from '../helpers/nft.js'
import { tcpConnect } from '../helpers/tcp.js'
import { waitFor } from '../helpers/wait.js'

warnIfNotRoot('test/privileged/daemon-lapi-down.test.ts')

const TRIPWIRE = 2222

let net: TestNet | undefined
let daemon: Daemon | undefined
let server: Server | undefined
let dir: string | undefined
const held: Socket[] = []

afterEach(async () => {
  await daemon?.close()
  daemon = undefined
  for (const s of held.splice(0)) s.destroy()
  if (server !== undefined) await new Promise<void>((r) => server!.close(() => r()))
  server = undefined
  await net?.destroy()
  net = undefined
  if (dir !== undefined) await removeScratch(dir)
  dir = undefined
})

describe.skipIf(!IS_ROOT)('Daemon with the fleet LAPI down', () => {
  it('blocks locally while LAPI hangs, then while it refuses; says so; queues the push; closes', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    // A LAPI that takes every connection and never says a word.
    let connections = 0
    server = createServer((s) => {
      connections++
      held.push(s)
      s.on('error', () => {})
    })
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    dir = await scratchDir('pnlapi-')
    const passwordFile = join(dir, 'password')
    const bouncerKeyFile = join(dir, 'key')
    await writeFile(passwordFile, 'not-a-real-password\n')
    await writeFile(bouncerKeyFile, 'not-a-real-key\n')
    await chmod(passwordFile, 0o600)
    await chmod(bouncerKeyFile, 0o600)

    const events: PortanoiaEvent[] = []
    daemon = await Daemon.start(
      {
        tcp: [TRIPWIRE],
        netns: net.sensorNs,
        statsInterval: '1h',
        crowdsec: { url, machine: 'host-a', passwordFile, bouncerKeyFile, pushIntervalMs: 100, pullIntervalMs: 200, timeoutMs: 60_000 },
      },
      { onEvent: (e) => events.push(e) },
    )
    const fleetOps = (): string[] => events.flatMap((e) => (e.type === 'fleet' ? [e.op] : []))

    // The pull's first request is in LAPI's hands: no answer, and a 60 s deadline.
    await waitFor('a request to the hanging LAPI', () => (connections > 0 ? true : undefined))
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)).toMatch(/connected|reset/)
    await waitFor('the local block', async () => ((await nftElements(net!.sensorExec, ['verified4'])).includes(a.peer.ipv4) ? true : undefined))
    // Blocked in the kernel while every LAPI request was still unanswered: the block did not wait for the fleet.
    expect(held.some((s) => !s.destroyed)).toBe(true)
    expect(fleetOps().filter((op) => op.endsWith('-failed') || op.endsWith('-recovered'))).toEqual([])

    // LAPI goes away for good: connections are refused from now on.
    await new Promise<void>((r) => {
      server!.close(() => r())
      for (const s of held.splice(0)) s.destroy()
    })
    server = undefined
    await waitFor('a fleet failure event', () => (fleetOps().some((op) => op === 'push-failed' || op === 'pull-failed') ? true : undefined))
    expect(await tcpConnect(b.peer, b.sensor.ipv4, TRIPWIRE)).toMatch(/connected|reset/)
    await waitFor('the second local block', async () => ((await nftElements(net!.sensorExec, ['verified4'])).includes(b.peer.ipv4) ? true : undefined))
    expect(events.filter((e) => e.type === 'decision' && e.reason === 'blocked').map((e) => (e.type === 'decision' ? e.src : ''))).toEqual([a.peer.ipv4, b.peer.ipv4])

    // Nothing reached LAPI: both blocks wait in the push queue; close() does not hang on LAPI.
    const closing = daemon.close()
    daemon = undefined
    await closing
    const stats = events.filter((e) => e.type === 'stats').at(-1)
    expect(stats?.type === 'stats' && stats.responders?.['fleet-push']).toMatchObject({ pushes: 0, queued: 2 })
  })
})
