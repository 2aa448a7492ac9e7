/**
 * The nftables responder against a fake `run` that records every call: the exact
 * scripts for create, adopt, migration, repair, batch (create-only first, then
 * grow-only), unblock per origin, uninstall and dry-run, the fleet comment and the
 * monitor's lines, and that nothing invalid ever reaches a script.
 */
import { describe, expect, it } from 'vitest'
import { fleetComment, parseFleetComment } from '../../lib/responders/common.js'
import { NftablesResponder, parseMonitorLine, parseNftTable } from '../../lib/responders/nftables.js'
import type { RunFn, RunResult } from '../../lib/responders/types.js'

interface Call {
  cmd: string
  args: string[]
  input: string | undefined
}

/**
 * Answers in order; a read of the netdev table (the early-drop mirror) is answered
 * apart, from `netdev` (default: no such table), and recorded in `netdevReads`.
 */
function fakeRun(answers: Array<Partial<RunResult>> = [], netdev: Array<Partial<RunResult>> = []): { run: RunFn; calls: Call[]; netdevReads: Call[] } {
  const calls: Call[] = []
  const netdevReads: Call[] = []
  const run: RunFn = async (cmd, args, input) => {
    if (args.includes('list') && args.includes('netdev')) {
      netdevReads.push({ cmd, args: [...args], input })
      const a = netdev.shift() ?? { code: 1, stderr: 'Error: No such file or directory\n' }
      return { code: a.code ?? 0, stdout: a.stdout ?? '', stderr: a.stderr ?? '' }
    }
    calls.push({ cmd, args: [...args], input })
    const a = answers.shift() ?? {}
    return { code: a.code ?? 0, stdout: a.stdout ?? '', stderr: a.stderr ?? '' }
  }
  return { run, calls, netdevReads }
}

const MISSING = { code: 1, stderr: 'Error: No such file or directory\nlist table inet portanoia\n' }
const EXISTS = { code: 1, stderr: 'Error: Could not process rule: File exists\ncreate element inet portanoia verified4 { 198.18.0.2 timeout 3600s }\n' }
const meta = { metainfo: { version: '1.0.6', json_schema_version: 1 } }
const SETS = ['verified4', 'verified6', 'spoofable4', 'spoofable6', 'fleet4', 'fleet6']
const rule = (chain: string, set: string): unknown => ({
  rule: {
    family: 'inet', table: 'portanoia', chain, handle: 5,
    expr: [
      { match: { op: '==', left: { payload: { protocol: set.endsWith('4') ? 'ip' : 'ip6', field: 'saddr' } }, right: `@${set}` } },
      { counter: { packets: 3, bytes: 180 } },
      { drop: null },
    ],
  },
})
const set = (name: string, elem: unknown[] = [], extra: Record<string, unknown> = {}): unknown => ({
  set: { family: 'inet', name, table: 'portanoia', type: name.endsWith('4') ? 'ipv4_addr' : 'ipv6_addr', handle: 1, flags: ['timeout'], elem, ...extra },
})
function tableJson(extra: unknown[] = [], opts: { prio?: number; rules?: boolean; verified4?: Record<string, unknown> } = {}): string {
  return JSON.stringify({
    nftables: [
      meta,
      { table: { family: 'inet', name: 'portanoia', handle: 1 } },
      set('verified4', [{ elem: { val: '198.18.0.2', timeout: 3600, expires: 3599 } }, '198.18.0.9', { elem: { val: { prefix: { addr: '10.0.0.0', len: 8 } } } }], opts.verified4),
      set('verified6', [{ elem: { val: 'fd52:43dd::2', timeout: 60, expires: 59 } }]),
      set('spoofable4', [{ elem: { val: '198.18.0.5', timeout: 300, expires: 200 } }]),
      set('spoofable6'),
      set('fleet4', [{ elem: { val: '198.18.0.7', timeout: 14400, expires: 14000, comment: 'fleet id=42 origin=cscli scenario=manual' } }]),
      set('fleet6'),
      { chain: { family: 'inet', table: 'portanoia', name: 'input', handle: 3, type: 'filter', hook: 'input', prio: opts.prio ?? -10, policy: 'accept' } },
      ...(opts.rules === false ? [] : SETS.map((s) => rule('input', s))),
      ...extra,
    ],
  })
}

const SET_LINES = SETS.map((s) => `add set inet portanoia ${s} { type ${s.endsWith('4') ? 'ipv4_addr' : 'ipv6_addr'}; flags timeout; }\n`).join('')
const RULE_LINES = (chain: string): string => SETS.map((s) => `add rule inet portanoia ${chain} ${s.endsWith('4') ? 'ip' : 'ip6'} saddr @${s} counter drop\n`).join('')
const CREATE = `add table inet portanoia
${SET_LINES}add chain inet portanoia input { type filter hook input priority -10; policy accept; }
${RULE_LINES('input')}`

describe('nftables responder', () => {
  it('creates the table in one transaction when it does not exist: a set per origin and family, a drop rule for each', async () => {
    const { run, calls } = fakeRun([MISSING])
    const nft = new NftablesResponder({ run })
    expect(await nft.start()).toEqual([])
    expect(calls.map((c) => [c.cmd, ...c.args])).toEqual([
      ['nft', '-j', 'list', 'table', 'inet', 'portanoia'],
      ['nft', '-f', '-'],
    ])
    expect(calls[1]!.input).toBe(CREATE)
    expect(nft.startReport).toBeNull()
  })

  it('adopts an intact table without touching rules or sets, and returns its blocks with their origin', async () => {
    const { run, calls } = fakeRun([{ stdout: tableJson() }, {}, { stdout: tableJson() }])
    const nft = new NftablesResponder({ run })
    const blocks = await nft.start()
    expect(blocks).toEqual([
      { address: '198.18.0.2', family: 4, timeoutMs: 3_600_000, expiresInMs: 3_599_000, evidence: 'verified' },
      { address: '198.18.0.9', family: 4, evidence: 'verified' },
      { address: 'fd52:43dd::2', family: 6, timeoutMs: 60_000, expiresInMs: 59_000, evidence: 'verified' },
      { address: '198.18.0.5', family: 4, timeoutMs: 300_000, expiresInMs: 200_000, evidence: 'spoofable' },
      { address: '198.18.0.7', family: 4, timeoutMs: 14_400_000, expiresInMs: 14_000_000, evidence: 'fleet', fleet: { id: 42, origin: 'cscli', scenario: 'manual' } },
    ])
    expect(calls[1]!.input).toBe(`add table inet portanoia
${SET_LINES}add chain inet portanoia input { type filter hook input priority -10; policy accept; }
`)
    expect(calls[1]!.input).not.toMatch(/flush|delete/)
    expect(nft.startReport).toEqual({ problems: [], migrated: [] })
  })

  it('repairs missing rules by refilling the chain, never flushing a set', async () => {
    const { run, calls } = fakeRun([{ stdout: tableJson([], { rules: false }) }])
    await new NftablesResponder({ run }).start()
    expect(calls[1]!.input).toBe(`add table inet portanoia
flush chain inet portanoia input
${SET_LINES}add chain inet portanoia input { type filter hook input priority -10; policy accept; }
${RULE_LINES('input')}`)
  })

  it('recreates a chain on the wrong priority and a set without timeouts, keeping its elements', async () => {
    const { run, calls } = fakeRun([{ stdout: tableJson([], { prio: 0, verified4: { flags: [] } }) }])
    await new NftablesResponder({ run }).start()
    expect(calls[1]!.input).toBe(`add table inet portanoia
flush chain inet portanoia input
delete chain inet portanoia input
delete set inet portanoia verified4
${SET_LINES}add element inet portanoia verified4 { 198.18.0.2 timeout 3599s, 198.18.0.9 }
add chain inet portanoia input { type filter hook input priority -10; policy accept; }
${RULE_LINES('input')}`)
  })

  it('migrates the sets of an earlier version: elements by timeout into verified or spoofable, with the time left, in the same transaction', async () => {
    const legacy = JSON.stringify({
      nftables: [
        meta,
        { table: { family: 'inet', name: 'portanoia', handle: 1 } },
        set('block4', [{ elem: { val: '198.18.0.2', timeout: 3600, expires: 1800 } }, { elem: { val: '198.18.0.3', timeout: 300, expires: 100 } }]),
        set('block6', [{ elem: { val: 'fd52:43dd::2', timeout: 7200, expires: 7000 } }]),
        { chain: { family: 'inet', table: 'portanoia', name: 'input', handle: 3, type: 'filter', hook: 'input', prio: -10, policy: 'accept' } },
        rule('input', 'block4'),
        rule('input', 'block6'),
      ],
    })
    const { run, calls } = fakeRun([{ stdout: legacy }, {}, { stdout: tableJson() }])
    const nft = new NftablesResponder({ run })
    await nft.start()
    expect(calls[1]!.input).toBe(`add table inet portanoia
flush chain inet portanoia input
delete set inet portanoia block4
delete set inet portanoia block6
${SET_LINES}add element inet portanoia verified4 { 198.18.0.2 timeout 1800s }
add element inet portanoia spoofable4 { 198.18.0.3 timeout 100s }
add element inet portanoia verified6 { fd52:43dd::2 timeout 7000s }
add chain inet portanoia input { type filter hook input priority -10; policy accept; }
${RULE_LINES('input')}`)
    expect(nft.startReport?.migrated).toEqual(['198.18.0.2', '198.18.0.3', 'fd52:43dd::2'])
    expect(nft.startReport?.problems).toEqual([...SETS.map((x) => `set ${x}`), 'legacy set block4', 'legacy set block6', 'rules input'])
  })

  it('adds the forward chain when asked and removes it when no longer asked', async () => {
    const a = fakeRun([MISSING])
    await new NftablesResponder({ run: a.run, forward: true }).start()
    expect(a.calls[1]!.input).toContain(`add chain inet portanoia forward { type filter hook forward priority -10; policy accept; }\n${RULE_LINES('forward')}`)
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

  it('blocks a batch as one create-only transaction, each origin into its own set, fleet bans with their tag', async () => {
    const { run, calls } = fakeRun()
    const nft = new NftablesResponder({ run })
    const r = await nft.block([
      { address: '198.18.0.2', family: 4, ttlMs: 3_600_000 },
      { address: '198.18.0.3', family: 4, ttlMs: 1500, evidence: 'spoofable' },
      { address: 'fd52:43dd::2', family: 6, ttlMs: 60_000 },
      { address: '198.18.0.4', family: 4, ttlMs: 3_600_000, upgrade: true, evidence: 'verified' },
      { address: '198.18.0.2', family: 4, ttlMs: 4 * 3_600_000, evidence: 'fleet', fleet: { id: 9, origin: 'crowdsec', scenario: 'crowdsecurity/ssh-bf"; flush ruleset' } },
    ])
    expect(r).toMatchObject({ responder: 'nftables', ok: true, failed: [] })
    expect(r.applied).toEqual(['198.18.0.2', '198.18.0.3', 'fd52:43dd::2', '198.18.0.4', '198.18.0.2'])
    expect(calls).toHaveLength(1)
    expect(calls[0]!.args).toEqual(['-f', '-'])
    expect(calls[0]!.input).toBe(`create element inet portanoia verified4 { 198.18.0.2 timeout 3600s, 198.18.0.4 timeout 3600s }
create element inet portanoia verified6 { fd52:43dd::2 timeout 60s }
create element inet portanoia spoofable4 { 198.18.0.3 timeout 2s }
create element inet portanoia fleet4 { 198.18.0.2 timeout 14400s comment "fleet id=9 origin=crowdsec scenario=crowdsecurity/ssh-bf___flush_ruleset" }
`)
    expect(r.script).toBe(calls[0]!.input)
  })

  it('never shortens: when an element exists, the set is read and only new or longer ones are written', async () => {
    const held = JSON.stringify({
      nftables: [meta, set('verified4', [{ elem: { val: '198.18.0.2', timeout: 3600, expires: 3500 } }, { elem: { val: '198.18.0.3', timeout: 60, expires: 30 } }])],
    })
    const { run, calls } = fakeRun([EXISTS, { stdout: held }, {}])
    const r = await new NftablesResponder({ run }).block([
      { address: '198.18.0.2', family: 4, ttlMs: 300_000 },
      { address: '198.18.0.3', family: 4, ttlMs: 300_000 },
      { address: '198.18.0.4', family: 4, ttlMs: 300_000 },
    ])
    expect(r).toMatchObject({ ok: true, kept: ['198.18.0.2'], extended: ['198.18.0.3'] })
    expect(r.applied).toEqual(['198.18.0.2', '198.18.0.3', '198.18.0.4'])
    expect(calls.map((c) => c.args.join(' '))).toEqual(['-f -', '-j list set inet portanoia verified4', '-f -'])
    // Grow: add (a no-op on the element there), delete, add with the new timeout — one transaction.
    expect(calls[2]!.input).toBe(`add element inet portanoia verified4 { 198.18.0.4 timeout 300s }
add element inet portanoia verified4 { 198.18.0.3 }
delete element inet portanoia verified4 { 198.18.0.3 }
add element inet portanoia verified4 { 198.18.0.3 timeout 300s }
`)
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
      { address: '198.18.0.8', family: 4 as const, ttlMs: 1000, evidence: 'nonsense' as 'fleet' },
    ]
    const r = await nft.block(hostile)
    expect(r.ok).toBe(false)
    expect(r.failed.map((f) => f.address)).toEqual(hostile.map((h) => h.address))
    expect(calls).toHaveLength(0)
    // A mixed batch applies the valid part only.
    const r2 = await nft.block([...hostile, { address: '198.18.0.8', family: 4, ttlMs: 1000 }])
    expect(r2.applied).toEqual(['198.18.0.8'])
    expect(calls[0]!.input).toBe('create element inet portanoia verified4 { 198.18.0.8 timeout 1s }\n')
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
    expect(calls[0]).toBe('create element inet portanoia verified4 { 198.18.0.2 timeout 2000d, 198.18.0.3 timeout 24855d3h14m7s, 198.18.0.4 timeout 99999999s }\n')
  })

  it('reports a failed transaction per address, and rebuilds a vanished table once, saying so', async () => {
    const a = fakeRun([{ code: 1, stderr: 'Error: Could not process rule: No such file or directory' }, MISSING, {}, {}])
    const r = await new NftablesResponder({ run: a.run }).block([{ address: '198.18.0.2', family: 4, ttlMs: 1000 }])
    expect(r).toMatchObject({ ok: true, repaired: ['table'] })
    expect(a.calls.map((c) => c.args.join(' '))).toEqual(['-f -', '-j -t list table inet portanoia', '-f -', '-f -'])
    expect(a.calls[2]!.input).toBe(CREATE)
    const b = fakeRun([{ code: 1, stderr: 'Error: Operation not permitted' }])
    const r2 = await new NftablesResponder({ run: b.run }).block([{ address: '198.18.0.2', family: 4, ttlMs: 1000 }])
    expect(r2.ok).toBe(false)
    expect(r2.failed[0]!.error).toMatch(/Operation not permitted.*CAP_NET_ADMIN/)
  })

  it('repair() reads the shape tersely and changes nothing when it is intact', async () => {
    const intact = fakeRun([{ stdout: tableJson() }])
    expect(await new NftablesResponder({ run: intact.run }).repair()).toEqual([])
    expect(intact.calls.map((c) => c.args.join(' '))).toEqual(['-j -t list table inet portanoia'])
    const gone = fakeRun([MISSING, {}])
    expect(await new NftablesResponder({ run: gone.run }).repair()).toEqual(['table'])
    expect(gone.calls[1]!.input).toBe(CREATE)
  })

  it('unblocks only members, from every origin, or from one', async () => {
    const { run, calls } = fakeRun([{ stdout: tableJson() }])
    const r = await new NftablesResponder({ run }).unblock(['198.18.0.2', 'fd52:43dd::2', '198.18.0.77', 'bogus;'])
    expect(r.applied).toEqual(['198.18.0.2', 'fd52:43dd::2'])
    expect(r.absent).toEqual(['198.18.0.77'])
    expect(r.failed).toEqual([{ address: 'bogus;', error: expect.any(String) }])
    expect(calls[1]!.input).toBe('delete element inet portanoia verified4 { 198.18.0.2 }\ndelete element inet portanoia verified6 { fd52:43dd::2 }\n')
    const fleet = fakeRun([{ stdout: tableJson() }])
    const f = await new NftablesResponder({ run: fleet.run }).unblock(['198.18.0.2', '198.18.0.7'], { evidence: 'fleet' })
    expect(f).toMatchObject({ applied: ['198.18.0.7'], absent: ['198.18.0.2'] })
    expect(fleet.calls[1]!.input).toBe('delete element inet portanoia fleet4 { 198.18.0.7 }\n')
  })

  it('retries an unblock once when an element expired between the read and the delete', async () => {
    const gone = JSON.stringify({ nftables: [meta, set('verified4')] })
    const { run, calls } = fakeRun([{ stdout: tableJson() }, { code: 1, stderr: 'Error: No such file or directory' }, { stdout: gone }])
    const r = await new NftablesResponder({ run }).unblock(['198.18.0.2'])
    expect(r.ok).toBe(true)
    expect(r.absent).toEqual(['198.18.0.2'])
    expect(calls).toHaveLength(3)
  })

  it('lists time left; an absent table lists nothing; other errors reject', async () => {
    const a = fakeRun([{ stdout: tableJson() }])
    expect((await new NftablesResponder({ run: a.run }).list())[0]).toEqual({ address: '198.18.0.2', family: 4, timeoutMs: 3_600_000, expiresInMs: 3_599_000, evidence: 'verified' })
    expect(await new NftablesResponder({ run: fakeRun([MISSING]).run }).list()).toEqual([])
    await expect(new NftablesResponder({ run: fakeRun([{ code: 1, stderr: 'Error: Operation not permitted' }]).run }).list()).rejects.toMatchObject({ code: 'PORTANOIA_NFT_FAILED' })
    await expect(new NftablesResponder({ run: fakeRun([{ stdout: 'not json' }]).run }).list()).rejects.toMatchObject({ code: 'PORTANOIA_NFT_FAILED' })
  })

  it('ignores elements of the wrong family or form when parsing', () => {
    const s = parseNftTable(JSON.stringify({ nftables: [{ set: { family: 'inet', table: 'portanoia', name: 'verified4', type: 'ipv4_addr', flags: ['timeout'], elem: ['fd52::1', 42, null, { elem: {} }, '198.18.0.1'] } }] }))
    expect(s.sets.get('verified4')!.elements).toEqual([{ address: '198.18.0.1', family: 4, evidence: 'verified' }])
    // Another table's objects are not ours.
    const t = parseNftTable(JSON.stringify({ nftables: [{ set: { family: 'inet', table: 'other', name: 'verified4', type: 'ipv4_addr' } }] }))
    expect(t.sets.size).toBe(0)
  })

  it('fleet comments keep only characters that need no quoting and fit nft\'s limit', () => {
    expect(fleetComment({ id: 1, origin: 'CAPI', scenario: 'crowdsecurity/http-probing' })).toBe('fleet id=1 origin=CAPI scenario=crowdsecurity/http-probing')
    const long = fleetComment({ origin: 'x'.repeat(200), scenario: 'y'.repeat(200) })
    expect(long.length).toBeLessThanOrEqual(120)
    expect(fleetComment({ origin: 'a b"c\\n', scenario: '$(x)' })).toBe('fleet origin=a_b_c_n scenario=__x_')
    expect(parseFleetComment('fleet id=12 origin=cscli scenario=manual')).toEqual({ id: 12, origin: 'cscli', scenario: 'manual' })
    expect(parseFleetComment('something else')).toBeNull()
  })

  it('parses nft monitor lines: deletions under its own table only', () => {
    expect(parseMonitorLine('{"delete": {"element": {"family": "inet", "table": "portanoia", "name": "verified4", "elem": {"set": [{"elem": {"val": "198.18.0.1", "timeout": 3600, "expires": 3599}}]}}}}')).toEqual({
      kind: 'elements',
      evidence: 'verified',
      addresses: ['198.18.0.1'],
    })
    expect(parseMonitorLine('{"delete": {"set": {"family": "inet", "name": "fleet4", "table": "portanoia", "type": "invalid", "handle": 1}}}')).toMatchObject({ kind: 'structure' })
    expect(parseMonitorLine('{"delete": {"chain": {"family": "inet", "table": "crowdsec", "name": "input", "handle": 3}}}')).toBeNull()
    expect(parseMonitorLine('{"add": {"element": {"family": "inet", "table": "portanoia", "name": "verified4"}}}')).toBeNull()
    expect(parseMonitorLine('W: Received event for an unknown set.')).toMatchObject({ kind: 'unknown' })
  })

  it('uninstalls only its tables (inet, and netdev of the early drop), each in its own transaction, tolerating their absence', async () => {
    const a = fakeRun()
    const r = await new NftablesResponder({ run: a.run }).uninstall()
    expect(r.ok).toBe(true)
    expect(a.calls.map((c) => c.input)).toEqual(['delete table inet portanoia\n', 'delete table netdev portanoia\n'])
    expect(r.applied).toEqual(['inet portanoia', 'netdev portanoia'])
    const gone = { code: 1, stderr: 'Error: Could not process rule: No such file or directory' }
    const b = fakeRun([{}, gone])
    const rb = await new NftablesResponder({ run: b.run }).uninstall()
    expect(rb).toMatchObject({ ok: true, applied: ['inet portanoia'], absent: ['netdev portanoia'] })
    const c = fakeRun([{ code: 1, stderr: 'Error: Operation not permitted' }, gone])
    const rc = await new NftablesResponder({ run: c.run }).uninstall()
    expect(rc.ok).toBe(false)
    expect(rc.failed[0]?.address).toBe('inet portanoia')
  })

  it('dry-run runs nothing and returns the exact scripts', async () => {
    const { run, calls } = fakeRun()
    const nft = new NftablesResponder({ run, dryRun: true })
    expect(await nft.start()).toEqual([])
    expect(nft.lastSetupScript).toBe(CREATE)
    const b = await nft.block([{ address: '198.18.0.2', family: 4, ttlMs: 5000, upgrade: true }])
    expect(b).toMatchObject({ ok: true, dryRun: true, applied: ['198.18.0.2'] })
    expect(b.script).toBe('create element inet portanoia verified4 { 198.18.0.2 timeout 5s }\n')
    expect((await nft.unblock(['198.18.0.2'])).script).toBe(
      'delete element inet portanoia verified4 { 198.18.0.2 }\ndelete element inet portanoia spoofable4 { 198.18.0.2 }\ndelete element inet portanoia fleet4 { 198.18.0.2 }\ndelete element inet portanoia block4 { 198.18.0.2 }\n',
    )
    expect((await nft.uninstall()).script).toBe('delete table inet portanoia\ndelete table netdev portanoia\n')
    expect(await nft.list()).toEqual([])
    expect(await nft.repair()).toEqual([])
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
