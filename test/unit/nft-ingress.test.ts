/**
 * The early drop (`enforce: ingress|both`) against a fake `run` answering per
 * command: the netdev table's setup script (sets, one ingress chain per device,
 * the inet table without chains for ingress only), writes naming both tables in
 * one transaction, the per-device fallback when the kernel refuses a chain for an
 * absent device, the mirror's diff and script, unblock from both tables, the
 * monitor's netdev lines, and the checks on device names and the config.
 */
import { describe, expect, it } from 'vitest'
import { resolveConfig } from '../../lib/daemon/config.js'
import { isPortanoiaError } from '../../lib/errors.js'
import { deviceProblem, ingressProblems, mirrorDiff } from '../../lib/responders/nft-ingress.js'
import { NftablesResponder, parseMonitorLine, parseNftTable } from '../../lib/responders/nftables.js'
import type { RunFn, RunResult } from '../../lib/responders/types.js'

const MISSING: RunResult = { code: 1, stdout: '', stderr: 'Error: No such file or directory\n' }
const OK: RunResult = { code: 0, stdout: '', stderr: '' }
const SETS = ['verified4', 'verified6', 'spoofable4', 'spoofable6', 'fleet4', 'fleet6']

/** A host: `answer` decides per call (default: tables absent, scripts succeed); every call is recorded. */
function host(answer: (args: readonly string[], input: string | undefined) => RunResult | undefined = () => undefined) {
  const calls: Array<{ args: string[]; input: string | undefined }> = []
  const run: RunFn = async (_cmd, args, input) => {
    calls.push({ args: [...args], input })
    const a = answer(args, input)
    if (a !== undefined) return a
    return args.includes('list') ? MISSING : OK
  }
  const scripts = (): string[] => calls.filter((c) => c.args.includes('-f')).map((c) => c.input ?? '')
  return { run, calls, scripts }
}

const table = (family: 'inet' | 'netdev', sets: Record<string, unknown[]>, extra: unknown[] = []): string =>
  JSON.stringify({
    nftables: [
      { table: { family, name: 'portanoia' } },
      ...Object.entries(sets).map(([name, elem]) => ({
        set: { family, table: 'portanoia', name, type: name.endsWith('4') ? 'ipv4_addr' : 'ipv6_addr', flags: name.startsWith('prefix') ? ['interval', 'timeout'] : ['timeout'], elem },
      })),
      ...extra,
    ],
  })
const allSets = (fill: Record<string, unknown[]> = {}): Record<string, unknown[]> => Object.fromEntries(SETS.map((s) => [s, fill[s] ?? []]))
const el = (val: unknown, expires: number, comment?: string): unknown => ({ elem: { val, timeout: expires + 1, expires, ...(comment !== undefined && { comment }) } })

describe('early drop: the netdev table', () => {
  it('enforce ingress: the inet table keeps the sets without chains; the netdev table gets the sets and one chain per device', async () => {
    const h = host()
    const nft = new NftablesResponder({ run: h.run, enforce: 'ingress', devices: ['eth0', 'veth-a.1'] })
    await nft.start()
    const [inet, netdev, chains] = h.scripts()
    expect(inet).toContain('add set inet portanoia verified4 { type ipv4_addr; flags timeout; }')
    expect(inet).not.toContain('add chain')
    expect(netdev).toBe(`add table netdev portanoia\n${SETS.map((s) => `add set netdev portanoia ${s} { type ${s.endsWith('4') ? 'ipv4_addr' : 'ipv6_addr'}; flags timeout; }\n`).join('')}`)
    const rules = (chain: string): string => SETS.map((s) => `add rule netdev portanoia ${chain} ${s.endsWith('4') ? 'ip' : 'ip6'} saddr @${s} counter drop\n`).join('')
    expect(chains).toBe(
      `add chain netdev portanoia ingress_eth0 { type filter hook ingress device "eth0" priority -10; policy accept; }\n${rules('ingress_eth0')}` +
        `add chain netdev portanoia ingress_veth-a.1 { type filter hook ingress device "veth-a.1" priority -10; policy accept; }\n${rules('ingress_veth-a.1')}`,
    )
    expect(nft.paths).toEqual(['input', 'forward'])
  })

  it('enforce both: the input chain stays; prefix sets join both tables; writes name both tables in one transaction', async () => {
    const h = host()
    const nft = new NftablesResponder({ run: h.run, enforce: 'both', devices: ['eth0'], prefixes: true })
    await nft.start()
    const [inet, netdev, chains] = h.scripts()
    expect(inet).toContain('add chain inet portanoia input { type filter hook input priority -10; policy accept; }')
    expect(netdev).toContain('add set netdev portanoia prefix4 { type ipv4_addr; flags interval,timeout; }')
    expect(chains).toMatch(/add rule netdev portanoia ingress_eth0 ip6 saddr @prefix6 counter drop\n$/)
    const before = h.calls.length
    const r = await nft.block([{ address: '198.18.0.2', family: 4, ttlMs: 60_000 }, { address: 'fd52:43dd::2', family: 6, ttlMs: 60_000, evidence: 'spoofable' }])
    expect(r.ok).toBe(true)
    expect(h.calls.length).toBe(before + 1)
    expect(r.script).toBe(
      'create element inet portanoia verified4 { 198.18.0.2 timeout 60s }\ncreate element inet portanoia spoofable6 { fd52:43dd::2 timeout 60s }\n' +
        'create element netdev portanoia verified4 { 198.18.0.2 timeout 60s }\ncreate element netdev portanoia spoofable6 { fd52:43dd::2 timeout 60s }\n',
    )
    const p = await nft.blockPrefixes([{ prefix: '198.18.5.0/24', family: 4, ttlMs: 3_600_000 }])
    expect(p.script).toBe('add element inet portanoia prefix4 { 198.18.5.0/24 timeout 3600s }\nadd element netdev portanoia prefix4 { 198.18.5.0/24 timeout 3600s }\n')
  })

  it('a device the kernel refuses (absent, before 6.16) gets no chain, is warned about once, and the others get theirs', async () => {
    let present = false
    const h = host((args, input) => {
      if (!args.includes('-f') || input === undefined) return undefined
      // The kernel refuses any transaction naming the absent device.
      if (input.includes('device "gone0"') && !present) return { code: 1, stdout: '', stderr: 'Error: Could not process rule: No such file or directory\n' }
      return undefined
    })
    const warnings: string[] = []
    const nft = new NftablesResponder({ run: h.run, enforce: 'ingress', devices: ['eth0', 'gone0'], warn: (m) => warnings.push(m) })
    await nft.start()
    const chainScripts = h.scripts().filter((s) => s.startsWith('add chain'))
    expect(chainScripts).toHaveLength(3)
    expect(chainScripts[1]).toMatch(/^add chain netdev portanoia ingress_eth0 /)
    expect(nft.absentDevices).toEqual(['gone0'])
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/no chain on gone0/)
  })

  it('refuses device names that are not safe in a chain name and as the quoted device, with what to do', () => {
    for (const bad of ['', 'any', 'eth0; flush ruleset', 'eth0"', 'a'.repeat(16), '-x', '.', 'eth 0', 'eth0/1']) {
      let err: unknown
      try {
        new NftablesResponder({ enforce: 'ingress', devices: [bad] })
      } catch (e) {
        err = e
      }
      expect(isPortanoiaError(err, 'PORTANOIA_BAD_OPTION'), bad).toBe(true)
      expect(deviceProblem(bad)).not.toBeNull()
    }
    expect(() => new NftablesResponder({ enforce: 'both' })).toThrow(/needs the interfaces/)
    expect(() => new NftablesResponder({ enforce: 'ingress', devices: ['eth0', 'eth0'] })).toThrow(/named twice/)
    expect(() => new NftablesResponder({ enforce: 'sideways' as 'input' })).toThrow(/not one of input, ingress, both/)
    expect(deviceProblem('enp0s31f6')).toBeNull()
    expect(deviceProblem('br-1a2b.100')).toBeNull()
  })

  it('reports what the netdev table lacks, with names no caller takes for the inet table', () => {
    const shape = {
      sets: SETS.map((s) => ({ name: s, type: s.endsWith('4') ? 'ipv4_addr' : 'ipv6_addr', interval: false, rule: '', sig: `${s.endsWith('4') ? 'ip' : 'ip6'}.saddr==@${s} drop` })),
      devices: ['eth0'],
      priority: -10,
    }
    expect(ingressProblems(null, shape)).toEqual(['netdev table'])
    const state = parseNftTable(table('netdev', { verified4: [] }, [{ chain: { family: 'netdev', table: 'portanoia', name: 'ingress_old', type: 'filter', hook: 'ingress', prio: -10, policy: 'accept' } }]), true, 'netdev')
    expect(ingressProblems(state, shape)).toEqual(['netdev set verified6', 'netdev set spoofable4', 'netdev set spoofable6', 'netdev set fleet4', 'netdev set fleet6', 'netdev chain ingress_eth0', 'netdev chain ingress_old (not wanted)'])
  })

  it('unblock deletes from each table where the element is, even when this responder does not enforce at ingress', async () => {
    const h = host((args) => {
      if (args.includes('inet') && args.includes('list')) return { ...OK, stdout: table('inet', allSets({ verified4: ['198.18.0.2', '198.18.0.3'] })) }
      if (args.includes('netdev') && args.includes('list')) return { ...OK, stdout: table('netdev', allSets({ verified4: ['198.18.0.2'] })) }
      return undefined
    })
    const r = await new NftablesResponder({ run: h.run }).unblock(['198.18.0.2', '198.18.0.3'])
    expect(r.applied).toEqual(['198.18.0.2', '198.18.0.3'])
    expect(r.script).toBe('delete element inet portanoia verified4 { 198.18.0.2, 198.18.0.3 }\ndelete element netdev portanoia verified4 { 198.18.0.2 }\n')
  })

  it('the mirror adds what the netdev sets lack, grows what they hold shorter, removes what the record does not hold', async () => {
    const record = table('inet', { ...allSets({ verified4: [el('198.18.0.2', 3000), el('198.18.0.3', 3000)], fleet4: [el('198.18.0.7', 900, 'fleet id=4 origin=cscli scenario=manual')] }), prefix4: [el({ prefix: { addr: '198.18.5.0', len: 24 } }, 600)] })
    const mirror = table('netdev', { ...allSets({ verified4: [el('198.18.0.3', 10), el('198.18.0.66', 3000)], fleet4: [] }), prefix4: [] })
    const h = host((args) => {
      if (args.includes('list')) return { ...OK, stdout: args.includes('netdev') ? mirror : record }
      return undefined
    })
    const nft = new NftablesResponder({ run: h.run, enforce: 'both', devices: ['eth0'], prefixes: true })
    const changed = await nft.mirror()
    expect(changed.sort()).toEqual(['198.18.0.2', '198.18.0.3', '198.18.0.66', '198.18.0.7', '198.18.5.0/24'])
    expect(h.scripts()).toEqual([
      'delete element netdev portanoia verified4 { 198.18.0.66 }\n' +
        'add element netdev portanoia verified4 { 198.18.0.2 timeout 3000s }\n' +
        'add element netdev portanoia fleet4 { 198.18.0.7 timeout 900s comment "fleet id=4 origin=cscli scenario=manual" }\n' +
        'add element netdev portanoia prefix4 { 198.18.5.0/24 timeout 600s }\n' +
        'add element netdev portanoia verified4 { 198.18.0.3 }\n' +
        'delete element netdev portanoia verified4 { 198.18.0.3 }\n' +
        'add element netdev portanoia verified4 { 198.18.0.3 timeout 3000s }\n',
    ])
    // In step: nothing to write.
    const d = mirrorDiff(parseNftTable(record), parseNftTable(record), ['verified4', 'fleet4', 'prefix4'])
    expect(d).toEqual({ add: [], grow: [], remove: [] })
  })

  it('a comment that is not a fleet tag never reaches the mirror script', () => {
    const record = parseNftTable(table('inet', allSets({ verified4: [el('198.18.0.2', 50, 'x" } ; flush ruleset ; add element inet t s { "')] })))
    const d = mirrorDiff(record, parseNftTable(table('inet', allSets())), ['verified4'])
    expect(d.add).toEqual([{ set: 'verified4', key: '198.18.0.2', expiresInMs: 50_000 }])
  })

  it('the monitor reports deletions in the netdev table of portanoia only', () => {
    expect(parseMonitorLine(JSON.stringify({ delete: { table: { family: 'netdev', name: 'portanoia' } } }))).toEqual({ kind: 'structure', detail: 'netdev table portanoia deleted' })
    expect(parseMonitorLine(JSON.stringify({ delete: { element: { family: 'netdev', table: 'portanoia', name: 'verified4', elem: { set: ['198.18.0.2'] } } } }))).toMatchObject({ kind: 'unknown' })
    expect(parseMonitorLine(JSON.stringify({ delete: { chain: { family: 'netdev', table: 'other', name: 'x' } } }))).toBeNull()
  })
})

describe('config: enforce', () => {
  it('input by default; ingress and both need nftables and a named interface; ingress refuses --forward', () => {
    expect(resolveConfig({ tcp: [2222] }).enforce).toBe('input')
    expect(resolveConfig({ tcp: [2222], enforce: 'both', interface: 'eth0' }).enforce).toBe('both')
    expect(() => resolveConfig({ tcp: [2222], enforce: 'ingress' })).toThrow(/needs field interface/)
    expect(() => resolveConfig({ tcp: [2222], enforce: 'ingress', interface: 'any' })).toThrow(/needs field interface/)
    expect(() => resolveConfig({ tcp: [2222], enforce: 'ingress', interface: 'eth"0' })).toThrow(/not an interface name portanoia can bind/)
    expect(() => resolveConfig({ tcp: [2222], enforce: 'ingress', interface: 'eth0', backend: 'ipset' })).toThrow(/needs the nftables backend/)
    expect(() => resolveConfig({ tcp: [2222], enforce: 'ingress', interface: 'eth0', forward: true })).toThrow(/use --enforce both|ingress chain already drops/)
    expect(() => resolveConfig({ tcp: [2222], enforce: 'early' })).toThrow(/not a place to enforce blocks/)
  })
})
