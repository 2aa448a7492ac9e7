// Prefix bans without root: which prefixes reach the threshold (verified blocks
// only, confirmed and running), how long a ban lasts (the longest block it
// replaces), refusals remembered for a while, the overlap test the guards use, and
// the parsing of `ss` lines for the live check over a prefix, the guards' overlap
// check, the config's --aggregate, and the nftables responder's prefix sets.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { resolveConfig } from '../../lib/daemon/config.js'
import { prefixPeer, localPort } from '../../lib/daemon/prefix-peers.js'
import { StateFile } from '../../lib/daemon/state-file.js'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'
import { parseCidr } from '../../lib/policy/addr.js'
import { Guards } from '../../lib/policy/guards.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { cidrOverlaps, type BlockFact, PrefixBans } from '../../lib/policy/prefixes.js'
import type { RunFn } from '../../lib/responders/types.js'

const NOW = 1_700_000_000_000
const v = (src: string, left = 60_000, verified = true): BlockFact => ({ src, family: src.includes(':') ? 6 : 4, verified, expiresAt: NOW + left })

describe('PrefixBans.candidates', () => {
  it('a /24 with N verified blocks is a candidate; spoofable ones do not count but are covered; the ban lasts as the longest', () => {
    const p = new PrefixBans({ threshold: 3, prefix4: 24, prefix6: 64 })
    const two = [v('198.18.5.1'), v('198.18.5.2'), v('198.18.5.3', 60_000, false), v('198.18.6.1'), v('198.18.6.2')]
    expect(p.candidates(two, NOW)).toEqual([])
    const three = [...two, v('198.18.5.200', 900_000)]
    const c = p.candidates(three, NOW)
    expect(c.map((x) => x.prefix)).toEqual(['198.18.5.0/24'])
    expect(c[0]?.members).toEqual(['198.18.5.1', '198.18.5.2', '198.18.5.200'])
    expect(c[0]?.covered).toEqual(['198.18.5.1', '198.18.5.2', '198.18.5.3', '198.18.5.200'])
    expect(c[0]?.expiresAt).toBe(NOW + 900_000)
  })

  it('IPv6 rotating through one /64 (default) or a configured /56; expired blocks do not count', () => {
    const p64 = new PrefixBans({ threshold: 2, prefix4: 24, prefix6: 64 })
    expect(p64.candidates([v('fd52:43dd:0:1::a'), v('fd52:43dd:0:1:ffff::b'), v('fd52:43dd:0:2::c')], NOW).map((x) => x.prefix)).toEqual(['fd52:43dd:0:1::/64'])
    expect(p64.candidates([v('fd52:43dd:0:1::a'), v('fd52:43dd:0:1::b', -1)], NOW)).toEqual([])
    const p56 = new PrefixBans({ threshold: 2, prefix4: 24, prefix6: 56 })
    expect(p56.candidates([v('fd52:43dd:0:1::a'), v('fd52:43dd:0:2::c')], NOW).map((x) => x.prefix)).toEqual(['fd52:43dd::/56'])
  })

  it('not proposed while a ban holds it, nor within retryMs of a refusal', () => {
    const p = new PrefixBans({ threshold: 2, prefix4: 24, prefix6: 64 }, { retryMs: 10_000 })
    const blocks = [v('198.18.5.1'), v('198.18.5.2')]
    p.refuse('198.18.5.0/24', NOW)
    expect(p.candidates(blocks, NOW + 9_999)).toEqual([])
    expect(p.candidates(blocks, NOW + 10_000)).toHaveLength(1)
    p.add({ cidr: parseCidr('198.18.5.0/24'), prefix: '198.18.5.0/24', family: 4, expiresAt: NOW + 60_000, members: [] })
    expect(p.candidates(blocks, NOW + 10_000)).toEqual([])
    expect(p.covering('198.18.5.77', NOW)?.prefix).toBe('198.18.5.0/24')
    expect(p.covering('198.18.6.77', NOW)).toBeUndefined()
    // A ban that ran out covers nothing and is dropped.
    expect(p.covering('198.18.5.77', NOW + 60_000)).toBeUndefined()
    expect(p.active(NOW + 60_000)).toEqual([])
  })
})

describe('cidrOverlaps', () => {
  it('networks overlap when one holds the other, in one family', () => {
    const c = (t: string) => parseCidr(t)
    expect(cidrOverlaps(c('198.18.5.0/24'), c('198.18.5.1'))).toBe(true)
    expect(cidrOverlaps(c('198.18.5.0/24'), c('198.18.0.0/15'))).toBe(true)
    expect(cidrOverlaps(c('198.18.5.0/24'), c('198.18.6.0/24'))).toBe(false)
    expect(cidrOverlaps(c('198.18.5.0/24'), c('fd52:43dd::/32'))).toBe(false)
    expect(cidrOverlaps(c('fd52:43dd:0:1::/64'), c('fd52:43dd:0:1::9'))).toBe(true)
  })
})

describe('the live check over a prefix (ss)', () => {
  const fake = (answers: Record<string, { code: number; stdout: string; stderr?: string }>) => {
    const calls: string[][] = []
    const run: RunFn = async (cmd, args) => {
      calls.push([cmd, ...args])
      const a = answers[args[2] as string] ?? { code: 0, stdout: '' }
      return { code: a.code, stdout: a.stdout, stderr: a.stderr ?? '' }
    }
    return { run, calls }
  }

  it('asks TCP and SCTP with the prefix as a dst filter, in connected states but time-wait', async () => {
    const f = fake({})
    expect(await prefixPeer(f.run, parseCidr('198.18.5.0/24'), () => false)).toEqual({ peer: false })
    expect(f.calls).toEqual([
      ['ss', '-H', '-n', '-t', 'state', 'connected', 'exclude', 'time-wait', 'dst', '198.18.5.0/24'],
      ['ss', '-H', '-n', '-S', 'state', 'connected', 'exclude', 'time-wait', 'dst', '198.18.5.0/24'],
    ])
  })

  it('a connection on a tripwire port is not a peer; any other is; an unreadable line or a failed ss fails closed', async () => {
    const est = 'ESTAB 0      0      198.18.0.1:2222 198.18.5.9:40000\n'
    expect(await prefixPeer(fake({ '-t': { code: 0, stdout: est } }).run, parseCidr('198.18.5.0/24'), (p) => p === 2222)).toEqual({ peer: false })
    expect(await prefixPeer(fake({ '-t': { code: 0, stdout: est } }).run, parseCidr('198.18.5.0/24'), () => false)).toMatchObject({ peer: true })
    expect(await prefixPeer(fake({ '-t': { code: 0, stdout: 'garbage\n' } }).run, parseCidr('198.18.5.0/24'), (p) => p === 2222)).toMatchObject({ peer: true })
    expect(await prefixPeer(fake({ '-t': { code: 127, stdout: '', stderr: 'spawn ss ENOENT' } }).run, parseCidr('198.18.5.0/24'), () => false)).toMatchObject({ peer: null })
    // No sctp_diag: TCP's answer stands.
    expect(await prefixPeer(fake({ '-S': { code: 1, stdout: '' } }).run, parseCidr('198.18.5.0/24'), () => false)).toEqual({ peer: false })
  })

  it('localPort reads IPv4, bracketed IPv6 and SCTP path lines', () => {
    expect(localPort('ESTAB 0 0 198.18.0.1:22 198.18.5.9:40000')).toBe(22)
    expect(localPort('ESTAB 0 0 [fd52:43dd::1]:443 [fd52:43dd:0:1::9]:5000')).toBe(443)
    expect(localPort('   `- ESTAB 0 0 198.18.0.1%veth0:2905 198.18.5.9:5000')).toBe(2905)
    expect(localPort('nonsense')).toBeNull()
  })
})

describe('Guards.checkNetwork', () => {
  it('refuses a network holding an own address, gateway, resolver or special address, or overlapping the allowlist', () => {
    const g = new Guards({
      interfaces: [{ address: '198.18.0.1', prefixLength: 24 }],
      gateways: ['198.18.1.1'],
      resolvers: ['fd52:43dd:53::53'],
      allowlist: ['198.18.2.128/25', '198.18.8.0/21'],
    })
    const c = (t: string) => parseCidr(t)
    expect(g.checkNetwork(c('198.18.0.0/24'))).toBe('self')
    expect(g.checkNetwork(c('198.18.1.0/24'))).toBe('gateway')
    expect(g.checkNetwork(c('fd52:43dd:53::/64'))).toBe('resolver')
    // An allowlisted network inside the prefix, and one holding it.
    expect(g.checkNetwork(c('198.18.2.0/24'))).toBe('allowlist')
    expect(g.checkNetwork(c('198.18.9.0/24'))).toBe('allowlist')
    expect(g.checkNetwork(c('127.0.0.0/24'))).toBe('special')
    expect(g.checkNetwork(c('198.18.3.0/24'))).toBeNull()
    expect(g.checkNetwork(c('fd52:43dd:99::/64'))).toBeNull()
  })
})

describe('config: --aggregate', () => {
  it('N ≥ 2 with /24 and /64 by default, lengths configurable within /8–/31 and /16–/127, nftables only', () => {
    expect(resolveConfig({ tcp: [2222], aggregate: '8' }).aggregate).toEqual({ threshold: 8, prefix4: 24, prefix6: 64 })
    expect(resolveConfig({ tcp: [2222], aggregate: 3, aggregatePrefix4: '22', aggregatePrefix6: 56 }).aggregate).toEqual({ threshold: 3, prefix4: 22, prefix6: 56 })
    expect(resolveConfig({ tcp: [2222] }).aggregate).toBeUndefined()
    expect(() => resolveConfig({ tcp: [2222], aggregate: 1 })).toThrow(/at least 2/)
    expect(() => resolveConfig({ tcp: [2222], aggregate: 3, aggregatePrefix4: 32 })).toThrow(/\/32 is not \/8 to \/31/)
    expect(() => resolveConfig({ tcp: [2222], aggregate: 3, aggregatePrefix6: 8 })).toThrow(/\/8 is not \/16 to \/127/)
    expect(() => resolveConfig({ tcp: [2222], aggregate: 3, backend: 'ipset' })).toThrow(/need the nftables backend/)
    expect(() => resolveConfig({ tcp: [2222], aggregatePrefix4: 24 })).toThrow(/without field aggregate/)
  })
})

describe('nftables: prefix sets', () => {
  const recorder = () => {
    const calls: Array<{ args: string[]; input: string | undefined }> = []
    const missing = { code: 1, stdout: '', stderr: 'Error: No such file or directory\n' }
    let first = true
    const run: RunFn = async (_cmd, args, input) => {
      calls.push({ args: [...args], input })
      // No netdev table (the early-drop mirror) on this host.
      if (args.includes('list') && (first || args.includes('netdev'))) {
        first = false
        return missing
      }
      return { code: 0, stdout: '', stderr: '' }
    }
    return { run, calls }
  }

  it('with `prefixes`, interval sets and their drop rules join the table; blockPrefixes writes only checked networks', async () => {
    const r = recorder()
    const nft = new NftablesResponder({ run: r.run, prefixes: true })
    await nft.start()
    const setup = r.calls.find((c) => c.args.includes('-f'))?.input ?? ''
    expect(setup).toContain('add set inet portanoia prefix4 { type ipv4_addr; flags interval,timeout; }\n')
    expect(setup).toContain('add set inet portanoia prefix6 { type ipv6_addr; flags interval,timeout; }\n')
    expect(setup).toMatch(/saddr @fleet6 counter drop\nadd rule inet portanoia input ip saddr @prefix4 counter drop\nadd rule inet portanoia input ip6 saddr @prefix6 counter drop\n$/)
    const res = await nft.blockPrefixes([
      { prefix: '198.18.5.0/24', family: 4, ttlMs: 3_600_000 },
      { prefix: 'fd52:43dd:99::/64', family: 6, ttlMs: 60_500 },
      { prefix: '198.18.5.1/24', family: 4, ttlMs: 60_000 },
      { prefix: '198.18.0.0/15; flush ruleset', family: 4, ttlMs: 60_000 },
      { prefix: '0.0.0.0/0', family: 4, ttlMs: 60_000 },
      { prefix: '198.18.6.0/24', family: 6, ttlMs: 60_000 },
    ])
    expect(res.applied).toEqual(['198.18.5.0/24', 'fd52:43dd:99::/64'])
    expect(res.failed.map((f) => f.address)).toEqual(['198.18.5.1/24', '198.18.0.0/15; flush ruleset', '0.0.0.0/0', '198.18.6.0/24'])
    expect(res.script).toBe('add element inet portanoia prefix4 { 198.18.5.0/24 timeout 3600s }\nadd element inet portanoia prefix6 { fd52:43dd:99::/64 timeout 61s }\n')
  })

  it('without `prefixes`, the table has no prefix sets and blockPrefixes refuses', async () => {
    const r = recorder()
    const nft = new NftablesResponder({ run: r.run })
    await nft.start()
    expect(r.calls.find((c) => c.args.includes('-f'))?.input ?? '').not.toContain('prefix')
    const res = await nft.blockPrefixes([{ prefix: '198.18.5.0/24', family: 4, ttlMs: 60_000 }])
    expect(res.applied).toEqual([])
    expect(res.failed[0]?.error).toMatch(/prefix sets are off/)
  })
})

describe('the state file keeps prefix bans', () => {
  it('round-trips them, leaves out those that ran out, and sets aside a file with a bad network', async () => {
    const dir = await scratchDir('prefix-state-')
    try {
      const path = join(dir, 'state.json')
      const now = Date.now()
      const f = new StateFile(path)
      f.attach(() => ({
        offences: [],
        blocks: [],
        prefixes: [
          { prefix: '198.18.100.0/24', family: 4, expiresAt: now + 60_000 },
          { prefix: 'fd52:43dd:99::/64', family: 6, expiresAt: now - 1 },
        ],
      }))
      await f.write()
      expect((await new StateFile(path).load())?.prefixes).toEqual([{ prefix: '198.18.100.0/24', family: 4, expiresAt: now + 60_000 }])
      await writeFile(path, JSON.stringify({ v: 1, savedAt: now, offences: [], blocks: [], prefixes: [{ prefix: '198.18.100.1/24', family: 4, expiresAt: now + 1 }] }))
      expect(await new StateFile(path).load()).toBeNull()
      // A file of the version before (no prefixes) reads as none.
      await writeFile(path, JSON.stringify({ v: 1, savedAt: now, offences: [], blocks: [] }))
      expect((await new StateFile(path).load())?.prefixes).toBeUndefined()
    } finally {
      await removeScratch(dir)
    }
  })
})
