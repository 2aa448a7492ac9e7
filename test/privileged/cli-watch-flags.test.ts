/**
 * `portanoia watch` flags that change what runs, as operators run them (the built
 * CLI in a child process, everything in test namespaces): --hits adds one `hit`
 * event per packet (and without it there is none); --stats-interval emits `stats`
 * events while running; --forward makes a block drop forwarded traffic too (a
 * routed peer behind the sensor stops being reachable from the blocked source,
 * which an input-only block leaves alone); and the drop to nobody: report-only
 * watch started inside the namespace (no --netns, which keeps root) runs as uid/gid
 * 65534 after start-up and still detects, while a firewall backend keeps root.
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { CLI_MAIN, jsonLines, startWatch, stopWatches, type Watch, waitFor } from '../helpers/cli.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftElements } from '../helpers/nft.js'
import { startService, tcpConnect } from '../helpers/tcp.js'
import type { ChildProcess } from 'node:child_process'

warnIfNotRoot('test/privileged/cli-watch-flags.test.ts')

const TRIPWIRE = 2222
const SERVICE = 8080

let net: TestNet | undefined
const children: ChildProcess[] = []

afterEach(async () => {
  await stopWatches()
  for (const c of children.splice(0)) await stop(c)
  await net?.destroy()
  net = undefined
})

type Line = { type: string; [k: string]: unknown }

describe.skipIf(!IS_ROOT)('portanoia watch flags', () => {
  it('--hits: one hit event per packet of the scan, and none without it', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    const plain = await startWatch(['watch', '--netns', net.sensorNs, '--tcp', String(TRIPWIRE), '--json'])
    await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)
    // The decision comes after the hit that made it: by then a hit event would be there.
    await waitFor('the decision', () => jsonLines(plain.out(), (e) => e.type === 'decision').length > 0)
    expect(jsonLines(plain.out(), (e) => e.type === 'hit')).toEqual([])
    await stopWatches()

    // Another peer (the first one is blocked now), with --hits.
    const w = await startWatch(['watch', '--netns', net.sensorNs, '--tcp', String(TRIPWIRE), '--hits', '--json'])
    await tcpConnect(b.peer, b.sensor.ipv4, TRIPWIRE)
    // The SYN alone may already be decided (reported, spoofable): wait for the block, which
    // only the verified connect makes, so its hit event is out by then.
    await waitFor('the block', () => jsonLines<Line>(w.out(), (e) => e.type === 'decision' && e.reason === 'blocked').length > 0)
    const hits = jsonLines<Line>(w.out(), (e) => e.type === 'hit')
    // The handshake as the listener saw it: the SYN on the wire, then the verified connect.
    expect(hits.find((h) => h.kind === 'syn')).toMatchObject({ v: 1, src: b.peer.ipv4, dst: b.sensor.ipv4, dstPort: TRIPWIRE, proto: 'tcp', verified: false })
    expect(hits.find((h) => h.kind === 'connect')).toMatchObject({ src: b.peer.ipv4, dstPort: TRIPWIRE, verified: true })
    const lines = w.out().split('\n')
    const firstHit = lines.findIndex((l) => l.includes('"type":"hit"'))
    const firstDecision = lines.findIndex((l) => l.includes('"type":"decision"'))
    expect(firstHit).toBeGreaterThanOrEqual(0)
    expect(firstHit).toBeLessThan(firstDecision)
  })

  it('--stats-interval 1s: stats events while running, each with a later uptime', async () => {
    net = await createTestNet()
    const w = await startWatch(['watch', '--netns', net.sensorNs, '--tcp', String(TRIPWIRE), '--stats-interval', '1s', '--json'])
    await waitFor('two periodic stats events', () => jsonLines(w.out(), (e) => e.type === 'stats').length >= 2)
    expect(w.child.exitCode).toBeNull()
    const [s1, s2] = jsonLines<Line & { uptimeMs: number }>(w.out(), (e) => e.type === 'stats')
    expect(s2!.uptimeMs).toBeGreaterThan(s1!.uptimeMs)
    expect(s1).toMatchObject({ v: 1, policy: { hits: 0 } })
  })

  it('--forward: a block also drops the blocked source\'s forwarded traffic; without it only input is dropped', async () => {
    // Peer 0 (the attacker) and peer 2 reach peer 1 (a published service behind the sensor)
    // through the sensor, which routes between its links.
    net = await createTestNet({ peers: 3 })
    const [a, b, c] = net.links as [TestNet['links'][0], TestNet['links'][0], TestNet['links'][0]]
    const forwarding = await net.sensorExec(process.execPath, ['-e', "require('fs').writeFileSync('/proc/sys/net/ipv4/ip_forward', '1')"])
    expect(forwarding.code, forwarding.stderr).toBe(0)
    for (const link of [a, b, c]) {
      const r = await link.peer.exec('ip', ['route', 'add', '198.18.0.0/16', 'via', link.sensor.ipv4])
      expect(r.code, r.stderr).toBe(0)
    }
    children.push(await startService(b.peer, SERVICE))
    expect(await tcpConnect(a.peer, b.peer.ipv4, SERVICE)).toBe('connected')
    expect(await tcpConnect(c.peer, b.peer.ipv4, SERVICE)).toBe('connected')

    // Without --forward: the scanner is blocked on input, its forwarded traffic passes.
    const input = await startWatch(['watch', '--netns', net.sensorNs, '--tcp', String(TRIPWIRE), '--json'])
    await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)
    await waitFor('the block', async () => (await nftElements(net!.sensorExec, ['verified4'])).includes(a.peer.ipv4))
    expect(jsonLines(input.out(), (e) => e.type === 'decision' && e.reason === 'blocked')).toHaveLength(1)
    expect(await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE, 1000)).toBe('timeout')
    expect(await tcpConnect(a.peer, b.peer.ipv4, SERVICE)).toBe('connected')
    await stopWatches()

    // With --forward the adopted block now drops it on the forward hook as well.
    await startWatch(['watch', '--netns', net.sensorNs, '--tcp', String(TRIPWIRE), '--forward', '--json'])
    expect(await nftElements(net.sensorExec, ['verified4'])).toEqual([a.peer.ipv4])
    expect(await tcpConnect(a.peer, b.peer.ipv4, SERVICE)).toBe('timeout')
    // Only the blocked source: peer 2's forwarded traffic still passes.
    expect(await tcpConnect(c.peer, b.peer.ipv4, SERVICE)).toBe('connected')
  })
})

/** The Uid: and Gid: lines of /proc/PID/status (real, effective, saved, filesystem). */
async function ids(pid: number): Promise<{ uid: number[]; gid: number[]; groups: string }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): string => status.split('\n').find((l) => l.startsWith(`${name}:`))!.slice(name.length + 1).trim()
  return { uid: field('Uid').split(/\s+/).map(Number), gid: field('Gid').split(/\s+/).map(Number), groups: field('Groups') }
}

/** `portanoia watch ARGS` started inside the namespace itself (no --netns), like a container's own daemon. */
async function watchInside(ns: string, args: readonly string[]): Promise<Watch> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI_MAIN, 'watch', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()))
  await waitFor(`watch started (stderr: ${err})`, () => {
    if (child.exitCode !== null) throw new Error(`watch exited ${String(child.exitCode)}: ${err}`)
    return err.includes('watching ')
  }, 60_000)
  return { child, out: () => out, err: () => err }
}

describe.skipIf(!IS_ROOT)('dropping root', () => {
  it('report-only watch runs as nobody after start-up and still detects; a firewall backend keeps root', async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    // `ip netns exec` execs node in place: the child's PID is the daemon's.
    const w = await watchInside(net.sensorNs, ['--tcp', String(TRIPWIRE), '--backend', 'none', '--json'])
    await waitFor('the drop', () => w.err().includes('dropped root, now running as uid/gid 65534 (nobody)'))
    expect(await ids(w.child.pid!)).toEqual({ uid: [65534, 65534, 65534, 65534], gid: [65534, 65534, 65534, 65534], groups: '' })
    // The capture socket and listener opened as root keep working.
    await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)
    // The SYN (spoofable) and then the completed handshake (verified): capture and listener both work.
    await waitFor('a verified decision made as nobody', () => jsonLines(w.out(), (e) => e.type === 'decision' && e.src === a.peer.ipv4 && e.verified === true).length > 0)
    expect(jsonLines(w.out(), (e) => e.type === 'error')).toEqual([])
    await stop(w.child)
    expect(w.child.exitCode).toBe(0)
    expect(w.out()).toMatch(/"type":"stats"/)

    // With the nftables backend every later batch needs CAP_NET_ADMIN: root stays.
    const fw = await watchInside(net.sensorNs, ['--tcp', String(TRIPWIRE), '--json'])
    await tcpConnect(a.peer, a.sensor.ipv4, TRIPWIRE)
    await waitFor('the block', async () => (await nftElements(net!.sensorExec, ['verified4'])).includes(a.peer.ipv4))
    expect((await ids(fw.child.pid!)).uid).toEqual([0, 0, 0, 0])
    expect(fw.err()).not.toContain('dropped root')
  })
})
