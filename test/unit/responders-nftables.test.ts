/**
 * The nftables responder against a fake `run` that records every call: the exact
 * scripts for create, adopt, repair, batch, upgrade, unblock, uninstall and dry-run,
 * and that nothing invalid ever reaches a script.
 */
import { describe, expect, it } from 'vitest'
import { NftablesResponder, parseNftTable } from '../../lib/responders/nftables.js'
import type { RunFn, RunResult } from '../../lib/responders/types.js'

interface Call {
  cmd: string
  args: string[]
  input: string | undefined
}

function fakeRun(answers: Array<Partial<RunResult>> = []): { run: RunFn; calls: Call[] } {
  const calls: Call[] = []
  const run: RunFn = async (cmd, args, input) => {
    calls.push({ cmd, args: [...args], input })
    const a = answers.shift() ?? {}
    return { code: a.code ?? 0, stdout: a.stdout ?? '', stderr: a.stderr ?? '' }
  }
  return { run, calls }
}

const MISSING = { code: 1, stderr: 'Error: No such file or directory\nlist table inet portanoia\n' }
const meta = { metainfo: { version: '1.0.6', json_schema_version: 1 } }
function tableJson(extra: unknown[] = [], opts: { prio?: number; rules?: boolean; set4?: Record<string, unknown> } = {}): string {
  const rule = (chain: string, proto: string, set: string): unknown => ({
    rule: {
      family: 'inet', table: 'portanoia', chain, handle: 5,
      expr: [
        { match: { op: '==', left: { payload: { protocol: proto, field: 'saddr' } }, right: `@${set}` } },
        { counter: { packets: 3, bytes: 180 } },
        { drop: null },
      ],
    },
  })
  return JSON.stringify({
    nftables: [
      meta,
      { table: { family: 'inet', name: 'portanoia', handle: 1 } },
      {
        set: {
          family: 'inet', name: 'block4', table: 'portanoia', type: 'ipv4_addr', handle: 1, flags: ['timeout'],
          elem: [{ elem: { val: '198.18.0.2', timeout: 3600, expires: 3599 } }, '198.18.0.9', { elem: { val: { prefix: { addr: '10.0.0.0', len: 8 } } } }],
          ...opts.set4,
        },
      },
      { set: { family: 'inet', name: 'block6', table: 'portanoia', type: 'ipv6_addr', handle: 2, flags: ['timeout'], elem: [{ elem: { val: 'fd52:43dd::2', timeout: 60, expires: 59 } }] } },
      { chain: { family: 'inet', table: 'portanoia', name: 'input', handle: 3, type: 'filter', hook: 'input', prio: opts.prio ?? -10, policy: 'accept' } },
      ...(opts.rules === false ? [] : [rule('input', 'ip', 'block4'), rule('input', 'ip6', 'block6')]),
      ...extra,
    ],
  })
}

const CREATE = `add table inet portanoia
add set inet portanoia block4 { type ipv4_addr; flags timeout; }
add set inet portanoia block6 { type ipv6_addr; flags timeout; }
add chain inet portanoia input { type filter hook input priority -10; policy accept; }
add rule inet portanoia input ip saddr @block4 counter drop
add rule inet portanoia input ip6 saddr @block6 counter drop
`

describe('nftables responder', () => {
  it('creates the table in one transaction when it does not exist', async () => {
    const { run, calls } = fakeRun([MISSING])
    const nft = new NftablesResponder({ run })
    expect(await nft.start()).toEqual([])
    expect(calls.map((c) => [c.cmd, ...c.args])).toEqual([
      ['nft', '-j', 'list', 'table', 'inet', 'portanoia'],
      ['nft', '-f', '-'],
    ])
    expect(calls[1]!.input).toBe(CREATE)
  })

  it('adopts an intact table without touching rules or sets, and returns its blocks', async () => {
    const { run, calls } = fakeRun([{ stdout: tableJson() }])
    const nft = new NftablesResponder({ run })
    const blocks = await nft.start()
    expect(blocks).toEqual([
      { address: '198.18.0.2', family: 4, timeoutMs: 3_600_000, expiresInMs: 3_599_000 },
      { address: '198.18.0.9', family: 4 },
      { address: 'fd52:43dd::2', family: 6, timeoutMs: 60_000, expiresInMs: 59_000 },
    ])
    expect(calls[1]!.input).toBe(`add table inet portanoia
add set inet portanoia block4 { type ipv4_addr; flags timeout; }
add set inet portanoia block6 { type ipv6_addr; flags timeout; }
add chain inet portanoia input { type filter hook input priority -10; policy accept; }
`)
    expect(calls[1]!.input).not.toMatch(/flush|delete/)
  })

  it('repairs missing rules by refilling the chain, never flushing a set', async () => {
    const { run, calls } = fakeRun([{ stdout: tableJson([], { rules: false }) }])
    await new NftablesResponder({ run }).start()
    expect(calls[1]!.input).toBe(`add table inet portanoia
flush chain inet portanoia input
add set inet portanoia block4 { type ipv4_addr; flags timeout; }
add set inet portanoia block6 { type ipv6_addr; flags timeout; }
add chain inet portanoia input { type filter hook input priority -10; policy accept; }
add rule inet portanoia input ip saddr @block4 counter drop
add rule inet portanoia input ip6 saddr @block6 counter drop
`)
  })

  it('recreates a chain on the wrong priority and a set without timeouts, keeping its elements', async () => {
    const { run, calls } = fakeRun([{ stdout: tableJson([], { prio: 0, set4: { flags: [] } }) }])
    await new NftablesResponder({ run }).start()
    expect(calls[1]!.input).toBe(`add table inet portanoia
flush chain inet portanoia input
delete chain inet portanoia input
delete set inet portanoia block4
add set inet portanoia block4 { type ipv4_addr; flags timeout; }
add set inet portanoia block6 { type ipv6_addr; flags timeout; }
add element inet portanoia block4 { 198.18.0.2 timeout 3599s, 198.18.0.9 }
add chain inet portanoia input { type filter hook input priority -10; policy accept; }
add rule inet portanoia input ip saddr @block4 counter drop
add rule inet portanoia input ip6 saddr @block6 counter drop
`)
  })

  it('adds the forward chain when asked and removes it when no longer asked', async () => {
    const a = fakeRun([MISSING])
    await new NftablesResponder({ run: a.run, forward: true }).start()
    expect(a.calls[1]!.input).toContain('add chain inet portanoia forward { type filter hook forward priority -10; policy accept; }\nadd rule inet portanoia forward ip saddr @block4 counter drop')
    const fwd = { chain: { family: 'inet', table: 'portanoia', name: 'forward', type: 'filter', hook: 'forward', prio: -10, policy: 'accept' } }
    const b = fakeRun([{ stdout: tableJson([fwd]) }])
    await new NftablesResponder({ run: b.run }).start()
    expect(b.calls[1]!.input).toContain('flush chain inet portanoia forward\ndelete chain inet portanoia forward\n')
  })

  it('start() rejects with a hint when nft cannot run', async () => {
    const { run } = fakeRun([{ code: 1, stderr: 'Error: Operation not permitted' }])
    await expect(new NftablesResponder({ run }).start()).rejects.toMatchObject({ code: 'PORTANOIA_NFT_FAILED', hint: 'run as root or with CAP_NET_ADMIN' })
    const missing = fakeRun([{ code: 127, stderr: 'nft: ENOENT' }])
    await expect(new NftablesResponder({ run: missing.run }).start()).rejects.toMatchObject({ hint: 'nft is not installed or not on PATH' })
  })

  it('blocks a batch in one transaction; upgrades are added, deleted and added again', async () => {
    const { run, calls } = fakeRun()
    const nft = new NftablesResponder({ run })
    const r = await nft.block([
      { address: '198.18.0.2', family: 4, ttlMs: 3_600_000 },
      { address: '198.18.0.3', family: 4, ttlMs: 1500 },
      { address: 'fd52:43dd::2', family: 6, ttlMs: 60_000 },
      { address: '198.18.0.4', family: 4, ttlMs: 3_600_000, upgrade: true },
    ])
    expect(r).toMatchObject({ responder: 'nftables', ok: true, failed: [] })
    expect(r.applied).toEqual(['198.18.0.2', '198.18.0.3', 'fd52:43dd::2', '198.18.0.4'])
    expect(calls).toHaveLength(1)
    expect(calls[0]!.args).toEqual(['-f', '-'])
    expect(calls[0]!.input).toBe(`add element inet portanoia block4 { 198.18.0.2 timeout 3600s, 198.18.0.3 timeout 2s, 198.18.0.4 timeout 3600s }
add element inet portanoia block6 { fd52:43dd::2 timeout 60s }
delete element inet portanoia block4 { 198.18.0.4 }
add element inet portanoia block4 { 198.18.0.4 timeout 3600s }
`)
    expect(r.script).toBe(calls[0]!.input)
  })

  it('refuses invalid addresses, wrong families and bad TTLs before anything runs', async () => {
    const { run, calls } = fakeRun()
    const nft = new NftablesResponder({ run })
    const hostile = [
      { address: '1.2.3.4;rm -rf /', family: 4 as const, ttlMs: 1000 },
      { address: '1.2.3.4 }\nflush ruleset', family: 4 as const, ttlMs: 1000 },
      { address: '198.18.0.2', family: 6 as const, ttlMs: 1000 },
      { address: '::FFFF:198.18.0.2', family: 4 as const, ttlMs: 1000 },
      { address: '198.18.0.5', family: 4 as const, ttlMs: 0 },
      { address: '198.18.0.6', family: 4 as const, ttlMs: Number.POSITIVE_INFINITY },
      { address: '198.18.0.7', family: 4 as const, ttlMs: Number.NaN },
    ]
    const r = await nft.block(hostile)
    expect(r.ok).toBe(false)
    expect(r.failed.map((f) => f.address)).toEqual(hostile.map((h) => h.address))
    expect(calls).toHaveLength(0)
    // A mixed batch applies the valid part only.
    const r2 = await nft.block([...hostile, { address: '198.18.0.8', family: 4, ttlMs: 1000 }])
    expect(r2.applied).toEqual(['198.18.0.8'])
    expect(calls[0]!.input).toBe('add element inet portanoia block4 { 198.18.0.8 timeout 1s }\n')
  })

  it('writes TTLs past 99999999 s in units: nft refuses a longer seconds field ("value too large")', async () => {
    // Like nft 1.0.6: a seconds field of nine or more digits is an error, the same span in days is not.
    const calls: string[] = []
    const run: RunFn = async (_cmd, _args, input) => {
      calls.push(input ?? '')
      return /timeout \d{9,}s/.test(input ?? '') ? { code: 1, stdout: '', stderr: 'Error: value too large' } : { code: 0, stdout: '', stderr: '' }
    }
    const nft = new NftablesResponder({ run })
    const r = await nft.block([
      { address: '198.18.0.2', family: 4, ttlMs: 2000 * 86_400_000 },
      { address: '198.18.0.3', family: 4, ttlMs: (2 ** 31 - 1) * 1000 },
      { address: '198.18.0.4', family: 4, ttlMs: 99_999_999_000 },
    ])
    expect(r.ok).toBe(true)
    expect(calls[0]).toBe('add element inet portanoia block4 { 198.18.0.2 timeout 2000d, 198.18.0.3 timeout 24855d3h14m7s, 198.18.0.4 timeout 99999999s }\n')
  })

  it('reports a failed transaction per address, and rebuilds a vanished table once', async () => {
    const a = fakeRun([{ code: 1, stderr: 'Error: Could not process rule: No such file or directory' }, MISSING, {}, {}])
    const r = await new NftablesResponder({ run: a.run }).block([{ address: '198.18.0.2', family: 4, ttlMs: 1000 }])
    expect(r.ok).toBe(true)
    expect(a.calls.map((c) => c.args.join(' '))).toEqual(['-f -', '-j list table inet portanoia', '-f -', '-f -'])
    expect(a.calls[2]!.input).toBe(CREATE)
    const b = fakeRun([{ code: 1, stderr: 'Error: Operation not permitted' }])
    const r2 = await new NftablesResponder({ run: b.run }).block([{ address: '198.18.0.2', family: 4, ttlMs: 1000 }])
    expect(r2.ok).toBe(false)
    expect(r2.failed[0]!.error).toMatch(/Operation not permitted.*CAP_NET_ADMIN/)
  })

  it('unblocks only members, reports the rest as absent', async () => {
    const { run, calls } = fakeRun([{ stdout: tableJson() }])
    const r = await new NftablesResponder({ run }).unblock(['198.18.0.2', 'fd52:43dd::2', '198.18.0.77', 'bogus;'])
    expect(r.applied).toEqual(['198.18.0.2', 'fd52:43dd::2'])
    expect(r.absent).toEqual(['198.18.0.77'])
    expect(r.failed).toEqual([{ address: 'bogus;', error: expect.any(String) }])
    expect(calls[1]!.input).toBe('delete element inet portanoia block4 { 198.18.0.2 }\ndelete element inet portanoia block6 { fd52:43dd::2 }\n')
  })

  it('retries an unblock once when an element expired between the read and the delete', async () => {
    const gone = JSON.stringify({ nftables: [meta, { set: { family: 'inet', name: 'block4', table: 'portanoia', type: 'ipv4_addr', flags: ['timeout'] } }] })
    const { run, calls } = fakeRun([{ stdout: tableJson() }, { code: 1, stderr: 'Error: No such file or directory' }, { stdout: gone }])
    const r = await new NftablesResponder({ run }).unblock(['198.18.0.2'])
    expect(r.ok).toBe(true)
    expect(r.absent).toEqual(['198.18.0.2'])
    expect(calls).toHaveLength(3)
  })

  it('lists time left; an absent table lists nothing; other errors reject', async () => {
    const a = fakeRun([{ stdout: tableJson() }])
    expect((await new NftablesResponder({ run: a.run }).list())[0]).toEqual({ address: '198.18.0.2', family: 4, timeoutMs: 3_600_000, expiresInMs: 3_599_000 })
    expect(await new NftablesResponder({ run: fakeRun([MISSING]).run }).list()).toEqual([])
    await expect(new NftablesResponder({ run: fakeRun([{ code: 1, stderr: 'Error: Operation not permitted' }]).run }).list()).rejects.toMatchObject({ code: 'PORTANOIA_NFT_FAILED' })
    await expect(new NftablesResponder({ run: fakeRun([{ stdout: 'not json' }]).run }).list()).rejects.toMatchObject({ code: 'PORTANOIA_NFT_FAILED' })
  })

  it('ignores elements of the wrong family or form when parsing', () => {
    const s = parseNftTable(JSON.stringify({ nftables: [{ set: { family: 'inet', table: 'portanoia', name: 'block4', type: 'ipv4_addr', flags: ['timeout'], elem: ['fd52::1', 42, null, { elem: {} }, '198.18.0.1'] } }] }))
    expect(s.sets.get('block4')!.elements).toEqual([{ address: '198.18.0.1', family: 4 }])
    // Another table's objects are not ours.
    const t = parseNftTable(JSON.stringify({ nftables: [{ set: { family: 'inet', table: 'other', name: 'block4', type: 'ipv4_addr' } }] }))
    expect(t.sets.size).toBe(0)
  })

  it('uninstalls only its table, tolerating its absence', async () => {
    const a = fakeRun()
    const r = await new NftablesResponder({ run: a.run }).uninstall()
    expect(r.ok).toBe(true)
    expect(a.calls[0]!.input).toBe('delete table inet portanoia\n')
    const b = fakeRun([{ code: 1, stderr: 'Error: Could not process rule: No such file or directory' }])
    expect((await new NftablesResponder({ run: b.run }).uninstall()).ok).toBe(true)
  })

  it('dry-run runs nothing and returns the exact scripts', async () => {
    const { run, calls } = fakeRun()
    const nft = new NftablesResponder({ run, dryRun: true })
    expect(await nft.start()).toEqual([])
    expect(nft.lastSetupScript).toBe(CREATE)
    const b = await nft.block([{ address: '198.18.0.2', family: 4, ttlMs: 5000, upgrade: true }])
    expect(b).toMatchObject({ ok: true, dryRun: true, applied: ['198.18.0.2'] })
    expect(b.script).toBe(
      'add element inet portanoia block4 { 198.18.0.2 timeout 5s }\ndelete element inet portanoia block4 { 198.18.0.2 }\nadd element inet portanoia block4 { 198.18.0.2 timeout 5s }\n',
    )
    expect((await nft.unblock(['198.18.0.2'])).script).toBe('delete element inet portanoia block4 { 198.18.0.2 }\n')
    expect((await nft.uninstall()).script).toBe('delete table inet portanoia\n')
    expect(await nft.list()).toEqual([])
    expect(calls).toHaveLength(0)
  })

  it('splits huge batches into statements but keeps one transaction', async () => {
    const { run, calls } = fakeRun()
    const reqs = Array.from({ length: 10 }, (_, i) => ({ address: `198.18.1.${i + 1}`, family: 4 as const, ttlMs: 1000 }))
    await new NftablesResponder({ run, chunk: 4 }).block(reqs)
    expect(calls).toHaveLength(1)
    expect(calls[0]!.input!.split('\n').filter(Boolean)).toHaveLength(3)
  })
})
