// Address parsing, canonical form, CIDR sets and special-address classification.
// The canonical form is what reaches nft, so isValidAddress is tested against the
// inputs an attacker or a sloppy config would send.
import { describe, expect, it } from 'vitest'
import {
  CidrSet,
  cidrContains,
  classifyAddress,
  directedBroadcast,
  formatAddress,
  formatCidr,
  isValidAddress,
  normalizeAddress,
  parseAddress,
  parseCidr,
} from '../../lib/policy/addr.js'
import { isPortanoiaError } from '../../lib/errors.js'

describe('parseAddress / normalizeAddress', () => {
  it('parses IPv4 dotted quads', () => {
    expect(parseAddress('198.18.0.1')).toEqual({ family: 4, value: 0xc6120001n })
    expect(normalizeAddress('0.0.0.0')).toBe('0.0.0.0')
    expect(normalizeAddress('255.255.255.255')).toBe('255.255.255.255')
  })

  it('refuses malformed IPv4, including leading zeros (octal in inet_aton)', () => {
    for (const bad of ['198.18.0', '198.18.0.1.2', '198.18.0.256', '198.018.0.1', '198.18.0.-1', '198.18.0.1 ', ' 198.18.0.1', '198.18.0.x', '', '1e2.0.0.1']) {
      expect(parseAddress(bad), bad).toBeNull()
    }
  })

  it('parses IPv6 in every spelling and prints RFC 5952', () => {
    expect(normalizeAddress('fd52:43dd:0:0:0:0:0:1')).toBe('fd52:43dd::1')
    expect(normalizeAddress('FD52:43DD:0000::0001')).toBe('fd52:43dd::1')
    expect(normalizeAddress('::')).toBe('::')
    expect(normalizeAddress('::1')).toBe('::1')
    expect(normalizeAddress('fd52:0:0:1:0:0:0:1')).toBe('fd52:0:0:1::1')
    // Tie: the first run of zeros is compressed; a single zero group is not.
    expect(normalizeAddress('fd52:0:0:1:2:0:0:3')).toBe('fd52::1:2:0:0:3')
    expect(normalizeAddress('fd52:43dd:1:0:2:3:4:5')).toBe('fd52:43dd:1:0:2:3:4:5')
    expect(normalizeAddress('fd52:43dd::198.18.0.1')).toBe('fd52:43dd::c612:1')
  })

  it('refuses malformed IPv6', () => {
    for (const bad of [':', ':::', '1:::2', ':1::2', '1::2:', 'fd52::43dd::1', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', 'fd52:43dd::1%eth0', '12345::', 'g::1', '[::1]', '::1.2.3', '1.2.3.4::', 'fd52::1/64']) {
      expect(parseAddress(bad), bad).toBeNull()
    }
  })

  it('folds IPv4-mapped IPv6 into IPv4', () => {
    expect(parseAddress('::ffff:198.18.0.1')).toEqual({ family: 4, value: 0xc6120001n })
    expect(normalizeAddress('::FFFF:c612:0001')).toBe('198.18.0.1')
    expect(normalizeAddress('0:0:0:0:0:ffff:198.18.0.1')).toBe('198.18.0.1')
    expect(formatAddress({ family: 6, value: 0xffff_c612_0001n })).toBe('198.18.0.1')
  })
})

describe('isValidAddress', () => {
  it('accepts canonical literals only', () => {
    for (const ok of ['198.18.0.1', 'fd52:43dd::1', '::1', '::', '127.0.0.1', 'fe80::1']) expect(isValidAddress(ok), ok).toBe(true)
  })

  it('refuses anything that is not exactly a canonical literal', () => {
    const bad: unknown[] = [
      '198.18.0.1 ',
      '198.18.0.1;',
      '198.18.0.1; flush ruleset',
      '$(reboot)',
      '198.18.0.1\n',
      'FD52:43DD::1',
      'fd52:43dd:0::1',
      '::ffff:198.18.0.1',
      'fe80::1%eth0',
      '198.18.0.0/15',
      '198.018.0.1',
      '',
      undefined,
      42,
      { toString: () => '198.18.0.1' },
    ]
    for (const b of bad) expect(isValidAddress(b), String(b)).toBe(false)
  })
})

describe('parseCidr', () => {
  it('parses networks and bare addresses', () => {
    expect(formatCidr(parseCidr('198.18.0.0/15'))).toBe('198.18.0.0/15')
    expect(formatCidr(parseCidr('198.18.0.7'))).toBe('198.18.0.7/32')
    expect(formatCidr(parseCidr('fd52:43dd::/32'))).toBe('fd52:43dd::/32')
    expect(formatCidr(parseCidr('fd52:43dd::5'))).toBe('fd52:43dd::5/128')
    expect(formatCidr(parseCidr('0.0.0.0/0'))).toBe('0.0.0.0/0')
    expect(formatCidr(parseCidr('::/0'))).toBe('::/0')
  })

  it('turns an IPv4-mapped network into IPv4', () => {
    expect(formatCidr(parseCidr('::ffff:198.18.0.0/111'))).toBe('198.18.0.0/15')
  })

  it('explains what is wrong', () => {
    const cases: Array<[string, RegExp, RegExp?]> = [
      ['198.18.5.3/15', /host bits/, /did you mean 198\.18\.0\.0\/15/],
      ['198.18.0.0/33', /prefix length/],
      ['198.18.0.0/', /prefix length/],
      ['198.18.0.0/015', /prefix length/],
      ['fd52:43dd::/129', /prefix length/],
      ['example.org/24', /not an IPv4 or IPv6 address/],
      ['', /empty/],
      ['::ffff:198.18.0.0/64', /at least 96/],
    ]
    for (const [text, message, hint] of cases) {
      let err: unknown
      try {
        parseCidr(text)
      } catch (e) {
        err = e
      }
      expect(isPortanoiaError(err, 'PORTANOIA_BAD_CIDR'), text).toBe(true)
      const pe = err as Error & { hint?: string }
      expect(pe.message).toMatch(message)
      if (hint) expect(pe.hint).toMatch(hint)
    }
  })

  it('contains', () => {
    const net = parseCidr('198.18.0.0/15')
    expect(cidrContains(net, parseAddress('198.19.255.255')!)).toBe(true)
    expect(cidrContains(net, parseAddress('198.20.0.0')!)).toBe(false)
    expect(cidrContains(net, parseAddress('fd52:43dd::1')!)).toBe(false)
  })
})

describe('CidrSet', () => {
  it('matches across prefix lengths and families', () => {
    const set = new CidrSet(['198.18.0.0/24', '198.19.7.9', 'fd52:43dd:1::/48', 'fd52:43dd::9'])
    expect(set.size).toBe(4)
    expect(set.has('198.18.0.200')).toBe(true)
    expect(set.has('198.18.1.0')).toBe(false)
    expect(set.has('198.19.7.9')).toBe(true)
    expect(set.has('198.19.7.8')).toBe(false)
    expect(set.has('fd52:43dd:1:ffff::1')).toBe(true)
    expect(set.has('fd52:43dd:2::1')).toBe(false)
    expect(set.has('fd52:43dd::9')).toBe(true)
    expect(set.has('::ffff:198.18.0.3')).toBe(true)
    expect(set.has({ family: 6, value: 0xffff_c612_0003n })).toBe(true)
    expect(set.has('not an address')).toBe(false)
  })

  it('handles /0 and /32 edges and duplicate adds', () => {
    const set = new CidrSet(['0.0.0.0/0'])
    set.add('0.0.0.0/0')
    expect(set.size).toBe(1)
    expect(set.has('255.255.255.255')).toBe(true)
    expect(set.has('fd52:43dd::1')).toBe(false)
    const hi = new CidrSet(['255.255.255.255/32'])
    expect(hi.has('255.255.255.255')).toBe(true)
    expect(hi.has('255.255.255.254')).toBe(false)
  })

  it('iterates what it holds', () => {
    const set = new CidrSet(['198.18.0.0/15', 'fd52:43dd::/32'])
    expect([...set].map(formatCidr).sort()).toEqual(['198.18.0.0/15', 'fd52:43dd::/32'])
  })

  it('holds 100k exact addresses and finds exactly those', () => {
    const set = new CidrSet()
    for (let i = 0; i < 100_000; i++) set.add({ family: 4, network: 0xc6120000n + BigInt(i), prefix: 32 })
    let hits = 0
    for (let i = 0; i < 131_072; i++) if (set.has(`198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`)) hits++
    expect(hits).toBe(100_000)
  })
})

describe('classifyAddress', () => {
  it('classifies IPv4 specials', () => {
    expect(classifyAddress('0.0.0.0')).toBe('unspecified')
    expect(classifyAddress('0.1.2.3')).toBe('unspecified')
    expect(classifyAddress('127.0.0.1')).toBe('loopback')
    expect(classifyAddress('127.255.0.9')).toBe('loopback')
    expect(classifyAddress('169.254.10.1')).toBe('link-local')
    expect(classifyAddress('224.0.0.1')).toBe('multicast')
    expect(classifyAddress('239.255.255.250')).toBe('multicast')
    expect(classifyAddress('255.255.255.255')).toBe('broadcast')
    expect(classifyAddress('198.18.0.1')).toBeNull()
    expect(classifyAddress('240.0.0.1')).toBeNull()
  })

  it('classifies IPv6 specials and mapped/compat oddities', () => {
    expect(classifyAddress('::')).toBe('unspecified')
    expect(classifyAddress('::1')).toBe('loopback')
    expect(classifyAddress('fe80::1')).toBe('link-local')
    expect(classifyAddress('febf:ffff::1')).toBe('link-local')
    expect(classifyAddress('fec0::1')).toBeNull()
    expect(classifyAddress('ff02::1')).toBe('multicast')
    expect(classifyAddress('::ffff:127.0.0.1')).toBe('loopback')
    expect(classifyAddress('::ffff:224.0.0.1')).toBe('multicast')
    expect(classifyAddress('::ffff:198.18.0.1')).toBeNull()
    expect(classifyAddress('::198.18.0.1')).toBe('ipv4-compat')
    expect(classifyAddress('fd52:43dd::1')).toBeNull()
  })

  it('computes directed broadcasts', () => {
    expect(formatAddress(directedBroadcast('198.18.0.1', 24)!)).toBe('198.18.0.255')
    expect(formatAddress(directedBroadcast('198.18.3.1', 15)!)).toBe('198.19.255.255')
    expect(formatAddress(directedBroadcast('198.18.0.1', 30)!)).toBe('198.18.0.3')
    expect(directedBroadcast('198.18.0.1', 31)).toBeNull()
    expect(directedBroadcast('198.18.0.1', 32)).toBeNull()
    expect(directedBroadcast('fd52:43dd::1', 64)).toBeNull()
  })
})
