// Guards and the host-fact parsers that remain (resolv.conf, the /proc/net socket
// tables), against fixture text shaped like the real files (test/fixtures/host/),
// including IPv4-mapped spellings of guarded addresses and IPv6 gateways; and
// readHostFacts, which asks this process's kernel (rtnetlink needs no privilege).
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { isPortanoiaError } from '../../lib/errors.js'
import { Guards, parseProcNetSockets, parseResolvConf } from '../../lib/policy/guards.js'
import { readHostFacts } from '../../lib/daemon/host-watch.js'

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'host')
const fixture = (name: string): Promise<string> => readFile(join(FIXTURES, name), 'utf8')

describe('parsers', () => {
  it('resolv.conf: nameservers, comments skipped, zone dropped, junk ignored', async () => {
    expect(parseResolvConf(await fixture('resolv.conf'))).toEqual(['198.18.0.53', 'fd52:43dd::53', 'fe80::53'])
    expect(parseResolvConf(await fixture('resolv-stub.conf'))).toEqual(['127.0.0.53'])
  })

  it('/proc/net/tcp: rows with both ends, little-endian words', async () => {
    const rows = parseProcNetSockets(await fixture('proc-net-tcp'))
    expect(rows[0]).toEqual({ local: '0.0.0.0', localPort: 22, remote: '0.0.0.0', remotePort: 0, state: 0x0a })
    expect(rows[1]).toEqual({ local: '198.18.0.1', localPort: 22, remote: '198.18.0.10', remotePort: 54321, state: 1 })
  })

  it('/proc/net/tcp6: four host-order words; mapped peers become IPv4', async () => {
    const rows = parseProcNetSockets(await fixture('proc-net-tcp6'))
    expect(rows[1]).toMatchObject({ local: 'fd52:43dd::1', localPort: 22, remote: 'fd52:43dd::10', remotePort: 54321 })
    expect(rows.map((r) => r.remote)).toContain('198.18.0.20')
  })

  it('skips lines it does not understand', () => {
    const text = 'header\n   0: zz:0016 00000000:0000 01\n   1: 010012C6:0016 0A0012C6:D431 01 more\nshort\n'
    expect(parseProcNetSockets(text).map((r) => r.remote)).toEqual(['198.18.0.10'])
    expect(parseProcNetSockets('')).toEqual([])
  })
})

describe('Guards', () => {
  const snapshot = async () => ({
    interfaces: [
      { address: '127.0.0.1', prefixLength: 8 },
      { address: '::1', prefixLength: 128 },
      { address: '198.18.0.1', prefixLength: 24 },
      { address: 'fd52:43dd::1', prefixLength: 64 },
      { address: 'fe80::211:22ff:fe33:4455', prefixLength: 64 },
      { address: '198.19.0.2', prefixLength: 16 },
    ],
    gateways: ['198.18.0.254', '198.19.0.1', 'fd52:43dd::1', 'fe80::1'],
    resolvers: parseResolvConf(await fixture('resolv.conf')),
    peers: ['198.18.0.10', '127.0.0.1', '198.19.0.80', 'fd52:43dd::10', '198.18.0.20'],
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
  it("reads this namespace's kernel facts and the resolver files it is given", async () => {
    const facts = await readHostFacts({ resolvConf: [join(FIXTURES, 'resolv-stub.conf'), join(FIXTURES, 'resolv.conf'), join(FIXTURES, 'absent.conf')] })
    expect(facts.warnings).toEqual([`${join(FIXTURES, 'absent.conf')}: ENOENT`])
    expect(facts.snapshot.resolvers).toEqual(['127.0.0.53', '198.18.0.53', 'fd52:43dd::53', 'fe80::53'])
    // Every Linux network namespace has loopback.
    expect(facts.snapshot.interfaces).toContainEqual({ address: '127.0.0.1', prefixLength: 8 })
    const g = new Guards(facts.snapshot)
    expect(g.check('fd52:43dd::53')).toBe('resolver')
  })
})
