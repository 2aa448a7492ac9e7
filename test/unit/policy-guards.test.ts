// Guards and the host-fact parsers, against fixture text shaped like the real
// /proc and /etc files (test/fixtures/host/), including IPv4-mapped spellings of
// guarded addresses and IPv6 gateways.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { isPortanoiaError } from '../../lib/errors.js'
import {
  Guards,
  parseEstablishedPeers,
  parseIfInet6,
  parseIpAddrJson,
  parseNetworkInterfaces,
  parseProcNetIpv6Route,
  parseProcNetRoute,
  parseProcNetSockets,
  parseResolvConf,
} from '../../lib/policy/guards.js'
import { readHostFacts } from '../../lib/daemon/host-facts.js'

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'host')
const fixture = (name: string): Promise<string> => readFile(join(FIXTURES, name), 'utf8')

describe('parsers', () => {
  it('/proc/net/route: UP+GATEWAY routes only, little-endian words', async () => {
    expect(parseProcNetRoute(await fixture('proc-net-route'))).toEqual(['198.18.0.254', '198.19.0.1'])
  })

  it('/proc/net/route on a big-endian host', () => {
    const text = 'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\neth0\t00000000\tC61200FE\t0003\t0\t0\t0\t00000000\t0\t0\t0\n'
    expect(parseProcNetRoute(text, 'BE')).toEqual(['198.18.0.254'])
  })

  it('/proc/net/ipv6_route: next hops of RTF_GATEWAY routes, global and link-local', async () => {
    expect(parseProcNetIpv6Route(await fixture('proc-net-ipv6_route'))).toEqual(['fd52:43dd::1', 'fe80::1'])
  })

  it('resolv.conf: nameservers, comments skipped, zone dropped, junk ignored', async () => {
    expect(parseResolvConf(await fixture('resolv.conf'))).toEqual(['198.18.0.53', 'fd52:43dd::53', 'fe80::53'])
    expect(parseResolvConf(await fixture('resolv-stub.conf'))).toEqual(['127.0.0.53'])
  })

  it('/proc/net/tcp: ESTABLISHED remote addresses, both directions', async () => {
    const text = await fixture('proc-net-tcp')
    expect(parseEstablishedPeers(text)).toEqual(['198.18.0.10', '127.0.0.1', '198.19.0.80'])
    const rows = parseProcNetSockets(text)
    expect(rows[0]).toEqual({ local: '0.0.0.0', localPort: 22, remote: '0.0.0.0', remotePort: 0, state: 0x0a })
    expect(rows[1]).toEqual({ local: '198.18.0.1', localPort: 22, remote: '198.18.0.10', remotePort: 54321, state: 1 })
  })

  it('/proc/net/tcp6: four host-order words; mapped peers become IPv4', async () => {
    const text = await fixture('proc-net-tcp6')
    expect(parseEstablishedPeers(text)).toEqual(['fd52:43dd::10', '198.18.0.20'])
    expect(parseProcNetSockets(text)[1]).toMatchObject({ local: 'fd52:43dd::1', localPort: 22, remotePort: 54321 })
  })

  it('skips lines it does not understand', () => {
    const text = 'header\n   0: zz:0016 00000000:0000 01\n   1: 010012C6:0016 0A0012C6:D431 01 more\nshort\n'
    expect(parseEstablishedPeers(text)).toEqual(['198.18.0.10'])
    expect(parseProcNetRoute('')).toEqual([])
  })

  it('/proc/net/if_inet6: own IPv6 addresses with prefix lengths', async () => {
    expect(parseIfInet6(await fixture('proc-net-if_inet6'))).toEqual([
      { address: 'fd52:43dd::1', prefixLength: 64, interface: 'eth0' },
      { address: 'fe80::211:22ff:fe33:4455', prefixLength: 64, interface: 'eth0' },
      { address: '::1', prefixLength: 128, interface: 'lo' },
      { address: 'fd52:43dd:1::1', prefixLength: 48, interface: 'eth1' },
    ])
  })

  it('ip -j addr: both families', async () => {
    const addrs = parseIpAddrJson(await fixture('ip-j-addr.json'))
    expect(addrs.map((a) => `${a.address}/${a.prefixLength}%${a.interface}`)).toEqual([
      '127.0.0.1/8%lo',
      '::1/128%lo',
      '198.18.0.1/24%eth0',
      'fd52:43dd::1/64%eth0',
      'fe80::211:22ff:fe33:4455/64%eth0',
      '198.19.0.2/16%eth1',
    ])
  })

  it('ip -j addr: refuses what is not its JSON', () => {
    for (const bad of ['not json', '{"addr_info":[]}']) {
      expect(() => parseIpAddrJson(bad)).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_HOST_FACTS' }))
    }
  })

  it('os.networkInterfaces() shape', () => {
    const addrs = parseNetworkInterfaces({
      eth0: [
        { address: '198.18.0.1', netmask: '255.255.255.0', family: 'IPv4', mac: '00:11:22:33:44:55', internal: false, cidr: '198.18.0.1/24' },
        { address: 'fd52:43dd::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '00:11:22:33:44:55', internal: false, cidr: 'fd52:43dd::1/64', scopeid: 0 },
      ],
      odd: [{ address: '198.18.0.9', netmask: '255.0.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: null }],
    })
    expect(addrs).toEqual([
      { address: '198.18.0.1', prefixLength: 24, interface: 'eth0' },
      { address: 'fd52:43dd::1', prefixLength: 64, interface: 'eth0' },
      { address: '198.18.0.9', prefixLength: 32, interface: 'odd' },
    ])
  })
})

describe('Guards', () => {
  const snapshot = async () => ({
    interfaces: parseIpAddrJson(await fixture('ip-j-addr.json')),
    gateways: [
      ...parseProcNetRoute(await fixture('proc-net-route')),
      ...parseProcNetIpv6Route(await fixture('proc-net-ipv6_route')),
    ],
    resolvers: parseResolvConf(await fixture('resolv.conf')),
    peers: [...parseEstablishedPeers(await fixture('proc-net-tcp')), ...parseEstablishedPeers(await fixture('proc-net-tcp6'))],
    allowlist: ['198.19.128.0/17', 'fd52:43dd:ffff::/48'],
  })

  it('guards each category, by the first matching reason', async () => {
    const g = new Guards(await snapshot())
    const cases: Array<[string, string | null]> = [
      ['198.18.0.1', 'self'],
      ['198.19.0.2', 'self'],
      ['fd52:43dd::1', 'self'],
      ['198.18.0.254', 'gateway'],
      ['198.19.0.1', 'gateway'],
      ['198.18.0.53', 'resolver'],
      ['fd52:43dd::53', 'resolver'],
      ['198.18.0.10', 'peer'],
      ['198.19.0.80', 'peer'],
      ['fd52:43dd::10', 'peer'],
      ['198.18.0.20', 'peer'],
      ['198.19.200.7', 'allowlist'],
      ['fd52:43dd:ffff:1::7', 'allowlist'],
      ['127.0.0.1', 'special'],
      ['::1', 'special'],
      ['fe80::1', 'special'],
      ['fe80::53', 'special'],
      ['224.0.0.1', 'special'],
      ['ff02::1', 'special'],
      ['255.255.255.255', 'special'],
      ['198.18.0.255', 'special'],
      ['198.19.255.255', 'special'],
      ['0.0.0.0', 'special'],
      ['::', 'special'],
      ['::198.18.0.99', 'special'],
      ['198.18.0.99', null],
      ['198.19.0.53', null],
      ['fd52:43dd::99', null],
      ['fd52:43dd::2', null],
      ['not an address', null],
    ]
    for (const [addr, reason] of cases) expect(g.check(addr), addr).toBe(reason)
  })

  it('guards IPv4-mapped IPv6 spellings of guarded IPv4 addresses', async () => {
    const g = new Guards(await snapshot())
    expect(g.check('::ffff:198.18.0.1')).toBe('self')
    expect(g.check('::ffff:198.18.0.254')).toBe('gateway')
    expect(g.check('::FFFF:c612:00fe')).toBe('gateway')
    expect(g.check('::ffff:198.18.0.53')).toBe('resolver')
    expect(g.check('::ffff:198.18.0.10')).toBe('peer')
    expect(g.check('::ffff:198.19.200.7')).toBe('allowlist')
    expect(g.check('::ffff:127.0.0.1')).toBe('special')
    expect(g.check({ family: 6, value: 0xffff_c612_00fen })).toBe('gateway')
    const onlyMapped = new Guards({ gateways: ['::ffff:198.18.0.77'] })
    expect(onlyMapped.check('198.18.0.77')).toBe('gateway')
  })

  it('update replaces only the categories given', async () => {
    const g = new Guards(await snapshot())
    g.update({ peers: ['198.18.7.7'] })
    expect(g.check('198.18.0.10')).toBeNull()
    expect(g.check('198.18.7.7')).toBe('peer')
    expect(g.check('198.18.0.254')).toBe('gateway')
    g.update({ allowlist: [] })
    expect(g.check('198.19.200.7')).toBeNull()
    expect(g.counts()).toMatchObject({ peer: 1, allowlist: 0, gateway: 4 })
  })

  it('update is all-or-nothing: one bad entry changes nothing', async () => {
    const g = new Guards(await snapshot())
    let err: unknown
    try {
      g.update({ peers: ['198.18.9.9'], allowlist: ['198.18.5.3/15'] })
    } catch (e) {
      err = e
    }
    expect(isPortanoiaError(err, 'PORTANOIA_BAD_CIDR')).toBe(true)
    expect((err as Error).message).toMatch(/^allowlist: /)
    expect(g.check('198.18.9.9')).toBeNull()
    expect(g.check('198.18.0.10')).toBe('peer')
    expect(() => g.update({ gateways: ['198.18.0.1; flush ruleset'] })).toThrow(/gateways: /)
  })
})

describe('readHostFacts', () => {
  const dirs: string[] = []
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  it('reads a host tree and reports what is missing', async () => {
    const root = await mkdtemp(join(tmpdir(), 'portanoia-host-'))
    dirs.push(root)
    await mkdir(join(root, 'proc/net'), { recursive: true })
    await mkdir(join(root, 'etc'), { recursive: true })
    await mkdir(join(root, 'run/systemd/resolve'), { recursive: true })
    for (const [from, to] of [
      ['proc-net-route', 'proc/net/route'],
      ['proc-net-ipv6_route', 'proc/net/ipv6_route'],
      ['proc-net-tcp', 'proc/net/tcp'],
      ['proc-net-if_inet6', 'proc/net/if_inet6'],
      ['resolv-stub.conf', 'etc/resolv.conf'],
      ['resolv.conf', 'run/systemd/resolve/resolv.conf'],
    ] as const) {
      await writeFile(join(root, to), await fixture(from))
    }
    const facts = await readHostFacts({
      root,
      interfaces: () => ({
        eth0: [{ address: '198.18.0.1', netmask: '255.255.255.0', family: 'IPv4', mac: '00:11:22:33:44:55', internal: false, cidr: '198.18.0.1/24' }],
      }),
    })
    expect(facts.warnings).toEqual(['/proc/net/tcp6: ENOENT'])
    expect(facts.snapshot.gateways).toEqual(['198.18.0.254', '198.19.0.1', 'fd52:43dd::1', 'fe80::1'])
    expect(facts.snapshot.resolvers).toEqual(['127.0.0.53', '198.18.0.53', 'fd52:43dd::53', 'fe80::53'])
    expect(facts.snapshot.peers).toEqual(['198.18.0.10', '127.0.0.1', '198.19.0.80'])
    expect(facts.snapshot.interfaces.map((i) => i.address)).toContain('198.18.0.1')
    expect(facts.snapshot.interfaces.map((i) => i.address)).toContain('fd52:43dd:1::1')
    const g = new Guards(facts.snapshot)
    expect(g.check('198.18.0.255')).toBe('special')
    expect(g.check('fd52:43dd::53')).toBe('resolver')
  })
})
