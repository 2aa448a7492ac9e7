/**
 * The batched, off-thread peer check (HostWatch.peers(), native/sock_diag.cc) against
 * the real kernel, in test namespaces: a batch holding one real peer — an IPv4 client
 * of a dual-stack (AF_INET6) service, so its socket holds it IPv4-mapped — among
 * addresses and networks that are not peers answers exactly that one and its network,
 * in one walk; the tripwire listeners' local ports do not count, and the kernel drops
 * their sockets itself (none is read); a peer with thousands of connections is
 * answered without reading them all, and the rest of its batch still is; a batch
 * longer than one bytecode program is split, the kernel takes every program, and the
 * last target is still answered. Expected answers come from the sessions each test
 * opens, never from the code under test.
 */
import type { ChildProcess } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { loadBinding, type NativeHostWatch, PEER_TCP } from '../../lib/binding.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { holdConnection, manyConnections, startService } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/peer-check.test.ts')

type Link = TestNet['links'][0]

let net: TestNet | undefined
const children: ChildProcess[] = []
const watches: NativeHostWatch[] = []

afterEach(async () => {
  for (const w of watches.splice(0)) w.close()
  for (const c of children.splice(0)) await stop(c, 'SIGKILL')
  await net?.destroy()
  net = undefined
})

function watch(n: TestNet): NativeHostWatch {
  const w = new (loadBinding().HostWatch)({ netns: n.sensorPath })
  watches.push(w)
  return w
}

/** 1 for a TCP peer, 0 otherwise, per target. */
async function tcpPeers(w: NativeHostWatch, targets: string[], ignore?: number[]): Promise<number[]> {
  return (await w.peers(targets, ignore)).map((b) => (b & PEER_TCP) !== 0 ? 1 : 0)
}

/** The /24 of an IPv4 address. */
const net24 = (a: string): string => `${a.split('.').slice(0, 3).join('.')}.0/24`

describe.skipIf(!IS_ROOT)('batched peer check (native, real kernel)', () => {
  it('answers exactly the real peer (an IPv4 peer of an AF_INET6 socket) and its network, in one walk', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [Link, Link]
    // A dual-stack listener: the IPv4 client's socket is AF_INET6 with ::ffff:a.b.c.d.
    children.push(await startService(a.sensor, 8080))
    children.push(await holdConnection(a.peer, a.sensor.ipv4, 8080))
    const w = watch(net)
    const targets = [
      '198.18.0.99',
      b.peer.ipv4,
      a.peer.ipv6,
      'fd52:43dd::99',
      a.peer.ipv4,
      '198.18.200.0/24',
      'fd52:43dd::/32',
      net24(a.peer.ipv4),
      '198.19.0.0/16',
    ]
    const before = w.stats()
    expect(await tcpPeers(w, targets)).toEqual([0, 0, 0, 0, 1, 0, 0, 1, 0])
    const after = w.stats()
    expect(after.peerBatches - before.peerBatches).toBe(1)
    // One walk: the kernel has both families in one dump (TCPDIAG_GETSOCK); a kernel
    // without it takes two (AF_INET, AF_INET6). Never one per target.
    expect(after.peerWalks - before.peerWalks).toBeLessThanOrEqual(2)
    // The same answer as the synchronous single-address check.
    expect(w.peer(a.peer.ipv4) & PEER_TCP).toBe(PEER_TCP)
    expect(w.peer(b.peer.ipv4)).toBe(0)
  })

  it('sockets on ignored local ports (the tripwire listeners\') do not count, and the kernel drops them itself', async () => {
    net = await createTestNet({ peers: 1 })
    const [a] = net.links as [Link]
    children.push(await startService(a.sensor, 2222))
    children.push(await holdConnection(a.peer, a.sensor.ipv4, 2222))
    const w = watch(net)
    expect(await tcpPeers(w, [a.peer.ipv4, '198.18.0.99'])).toEqual([1, 0])
    const before = w.stats().peerSockets
    expect(await tcpPeers(w, [a.peer.ipv4, '198.18.0.99'], [2220, 2221, 2222, 9000])).toEqual([0, 0])
    expect(w.stats().peerSockets - before).toBe(0)
  })

  it('thousands of connections from the one peer: answered without reading them all, and the rest of the batch still answered', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [Link, Link]
    const count = 4000
    await manyConnections(b.sensor, b.peer, b.sensor.ipv4, 9100, count, children)
    // A second, ordinary peer whose one connection may sit anywhere in the hash.
    children.push(await startService(a.sensor, 8080))
    children.push(await holdConnection(a.peer, a.sensor.ipv4, 8080))
    const w = watch(net)
    const before = w.stats()
    const targets = ['198.18.0.99', b.peer.ipv4, 'fd52:43dd::99', net24(b.peer.ipv4), a.peer.ipv4, '198.18.7.7']
    expect(await tcpPeers(w, targets)).toEqual([0, 1, 0, 1, 1, 0])
    const after = w.stats()
    // A walk is left once the sockets of answered peers pile up (about two receive
    // buffers), and asked again for what is still open.
    expect(after.peerSockets - before.peerSockets).toBeLessThan(count / 2)
    expect(after.peerWalks - before.peerWalks).toBeLessThanOrEqual(4)
    // Every connection counts as a peer only off the ignored port.
    expect(await tcpPeers(w, [b.peer.ipv4, a.peer.ipv4], [9100])).toEqual([0, 1])
  })

  it('a batch longer than one program is split; the kernel takes every program and the last target is answered', async () => {
    net = await createTestNet({ peers: 1 })
    const [a] = net.links as [Link]
    children.push(await startService(a.sensor, 8080))
    children.push(await holdConnection(a.peer, a.sensor.ipv4, 8080))
    const w = watch(net)
    const others = Array.from({ length: 5000 }, (_, i) => `fd52:43dd:1::${(i + 1).toString(16)}`)
    const before = w.stats().peerWalks
    const answer = await tcpPeers(w, [...others, a.peer.ipv4])
    expect(answer.length).toBe(5001)
    expect(answer.indexOf(1)).toBe(5000)
    expect(answer.filter((x) => x === 1).length).toBe(1)
    // 2047 IPv6 conditions fit one program: three programs, three walks (or six).
    expect(w.stats().peerWalks - before).toBeGreaterThanOrEqual(3)
  })

  it('batches asked together run one after another, each answered; close() settles the one in flight', async () => {
    net = await createTestNet({ peers: 1 })
    const [a] = net.links as [Link]
    children.push(await startService(a.sensor, 8080))
    children.push(await holdConnection(a.peer, a.sensor.ipv4, 8080))
    const w = watch(net)
    const asked = [tcpPeers(w, [a.peer.ipv4]), tcpPeers(w, ['198.18.0.99']), tcpPeers(w, ['198.18.0.98', a.peer.ipv4])]
    expect(await Promise.all(asked)).toEqual([[1], [0], [0, 1]])
    const inFlight = w.peers([a.peer.ipv4])
    const queued = w.peers(['198.18.0.99'])
    w.close()
    expect(((await inFlight)[0] ?? 0) & PEER_TCP).toBe(PEER_TCP)
    await expect(queued).rejects.toThrow(/closed/)
    expect(() => w.peers([a.peer.ipv4])).toThrow(/closed/)
  })
})
