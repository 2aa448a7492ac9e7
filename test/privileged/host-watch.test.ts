/**
 * The native HostWatch against real kernels, in test namespaces: facts that the old
 * /proc and os.networkInterfaces() sources missed (an address on an UP interface
 * without carrier, the second hop of an ECMP route, a gateway in a policy-routing
 * table, a nexthop object's gateway), change notifications (an address added at
 * runtime arrives without polling), and the live checks (a TCP peer, including an
 * IPv4 peer of a dual-stack socket; an exact reply tuple; the route type of own,
 * broadcast and unicast destinations; the namespace's ephemeral port range).
 */
import type { ChildProcess } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { loadBinding, type NativeHostWatch, PEER_TCP, RTN } from '../../lib/binding.js'
import { formatAddress, parseAddress } from '../../lib/policy/addr.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { openConnection, startService } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/host-watch.test.ts')

let net: TestNet | undefined
const children: ChildProcess[] = []
const watches: NativeHostWatch[] = []

afterEach(async () => {
  for (const w of watches.splice(0)) w.close()
  for (const c of children.splice(0)) await stop(c)
  await net?.destroy()
  net = undefined
})

function watch(n: TestNet): NativeHostWatch {
  const w = new (loadBinding().HostWatch)({ netns: n.sensorPath })
  watches.push(w)
  return w
}

/** The kernel's text is canonical (RFC 5952); the test network's names need not be. */
function canon(text: string): string {
  const a = parseAddress(text)
  if (a === null) throw new Error(`not an address: ${text}`)
  return formatAddress(a)
}

async function ip(n: TestNet, args: string[]): Promise<void> {
  const r = await n.sensorExec('ip', args)
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
}

describe.skipIf(!IS_ROOT)('HostWatch (native, real kernel)', () => {
  it('sees addresses in any link state and every next hop of every table', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    // A bridge whose one port has no carrier is UP but NO-CARRIER (docker0 once its
    // containers are gone).
    await ip(net, ['link', 'add', 'pnbr0', 'type', 'bridge'])
    await ip(net, ['addr', 'add', '198.18.77.1/24', 'dev', 'pnbr0'])
    await ip(net, ['link', 'add', 'pnv0', 'type', 'veth', 'peer', 'name', 'pnv1'])
    await ip(net, ['link', 'set', 'pnv0', 'master', 'pnbr0'])
    await ip(net, ['link', 'set', 'pnv0', 'up'])
    await ip(net, ['link', 'set', 'pnbr0', 'up'])
    // ECMP: two hops for one prefix.
    await ip(net, ['route', 'add', '198.18.64.0/24', 'nexthop', 'via', a.peer.ipv4, 'nexthop', 'via', b.peer.ipv4])
    // Policy routing: a gateway only table 100 knows.
    await ip(net, ['route', 'add', 'default', 'via', b.peer.ipv4, 'table', '100'])
    await ip(net, ['rule', 'add', 'from', '198.18.1.1', 'table', '100'])
    // A nexthop object (Linux 5.3+).
    await ip(net, ['-6', 'nexthop', 'add', 'id', '7', 'via', b.peer.ipv6, 'dev', b.sensor.ifname])
    await ip(net, ['-6', 'route', 'add', 'fd52:43dd:99::/64', 'nhid', '7'])

    const f = watch(net).facts()
    const own = f.addresses.map((x) => x.address)
    expect(own).toEqual(expect.arrayContaining([a.sensor.ipv4, b.sensor.ipv4, canon(a.sensor.ipv6), '198.18.77.1', '127.0.0.1', '::1']))
    const bridge = f.addresses.find((x) => x.address === '198.18.77.1')
    expect(bridge).toMatchObject({ prefixLength: 24 })
    const gw = f.gateways.map((g) => `${g.address}@${g.table}`)
    expect(gw).toEqual(expect.arrayContaining([`${a.peer.ipv4}@254`, `${b.peer.ipv4}@254`, `${b.peer.ipv4}@100`, `${canon(b.peer.ipv6)}@254`]))
    expect(f.nexthops).toBe(true)
  })

  it('is told about a change without polling, and re-dumps', async () => {
    net = await createTestNet()
    const w = watch(net)
    const before = w.facts()
    expect(before.addresses.some((x) => x.address === '198.18.200.1')).toBe(false)
    let calls = 0
    const changed = new Promise<void>((resolve) => {
      w.start(() => {
        calls++
        if (w.facts().addresses.some((x) => x.address === '198.18.200.1')) resolve()
      })
    })
    await ip(net, ['addr', 'add', '198.18.200.1/32', 'dev', 'lo'])
    await changed
    const after = w.facts()
    expect(after.generation).toBeGreaterThan(before.generation)
    expect(after.noticedAtMs).toBeGreaterThan(0)
    expect(calls).toBeGreaterThan(0)
    expect(w.stats().notifications).toBeGreaterThan(0)
  })

  it('answers the live checks: peers (also IPv4 on a dual-stack socket), reply tuples, route types, the port range', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    // A dual-stack listener in the sensor namespace, and a session to it from peer 0.
    children.push(await startService(a.sensor, 8080))
    const inbound = await openConnection(a.peer, a.sensor.ipv4, 8080)
    children.push(inbound.child)
    // An outbound session from the sensor namespace to a service in peer 1.
    children.push(await startService(b.peer, 9090))
    const outbound = await openConnection(b.sensor, b.peer.ipv4, 9090)
    children.push(outbound.child)
    const w = watch(net)

    expect(w.peer(a.peer.ipv4) & PEER_TCP).toBe(PEER_TCP)
    expect(w.peer(b.peer.ipv4) & PEER_TCP).toBe(PEER_TCP)
    expect(w.peer('198.18.0.99')).toBe(0)
    expect(w.peer(a.peer.ipv6)).toBe(0)

    // The server's SYN-ACK to the outbound socket is a reply; to another port it is not.
    expect(w.connected(6, b.sensor.ipv4, outbound.localPort, b.peer.ipv4, 9090)).toBe(true)
    expect(w.connected(6, b.sensor.ipv4, outbound.localPort, b.peer.ipv4, 9091)).toBe(false)
    // The listener of port 8080 is no connection to reply to.
    expect(w.connected(6, a.sensor.ipv4, 8080, '198.18.0.99', 40000)).toBe(false)

    expect(w.routeType(a.sensor.ipv4)).toBe(RTN.local)
    expect(w.routeType('198.18.0.255')).toBe(RTN.broadcast)
    expect(w.routeType(a.peer.ipv4)).toBe(RTN.unicast)
    expect(w.routeType(a.sensor.ipv6)).toBe(RTN.local)

    const set = await net.sensorExec('sysctl', ['-w', 'net.ipv4.ip_local_port_range=40000 50000'])
    expect(set.code).toBe(0)
    expect(w.localPortRange()).toEqual([40000, 50000])
  })
})
