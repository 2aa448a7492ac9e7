// The escalation ladder end to end without root: the policy's history (Offences)
// and what the engine gives each block, the config's ladder syntax and its checks,
// and the state file that carries the history and the blocks across restarts
// (atomic writes, bounds, a corrupt or unwritable file that never stops the daemon).
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../lib/daemon/config.js'
import { defaultStatePath, STATE_DIR, StateFile } from '../../lib/daemon/state-file.js'
import { resolvePolicyConfig } from '../../lib/policy/config.js'
import { PolicyEngine } from '../../lib/policy/engine.js'
import { ladderStep, Offences } from '../../lib/policy/offences.js'
import type { Hit } from '../../lib/types.js'

const H = 3_600_000
const D = 24 * H

function connect(src: string, verified = true): Hit {
  return {
    time: 0, timeNs: 0n, src, srcPort: 40000, dst: '198.18.0.1', dstPort: 2222, family: 4, proto: 'tcp',
    kind: verified ? 'connect' : 'syn', tcpFlags: verified ? 0x10 : 0x02, ttl: 64, verified, interface: 'eth0', ifindex: 2,
    fragment: false, ipOptions: false, extHeaders: false, truncated: false, ipId: 1, wireLen: 60,
    attribution: verified ? 'verified' : 'plausible', evidence: [],
  }
}

describe('the ladder in the engine', () => {
  function engineWith(config: Parameters<typeof resolvePolicyConfig>[0], offences = new Offences()) {
    const clock = { t: 1_700_000_000_000 }
    const engine = new PolicyEngine({ config, now: () => clock.t, offences })
    /** The block decision of one connect from `src`, after its earlier block ran out. */
    const blockOf = (src: string) => engine.observe(connect(src)).find((d) => d.action === 'block' || d.reason === 'dry-run')
    return { engine, clock, blockOf }
  }

  it('the n-th verified block of an address within forgetAfter gets step n, the last step from then on', () => {
    const { clock, blockOf } = engineWith({ blockTtlLadderMs: [H, D, 7 * D], windowMs: 1000 })
    const want = [
      [1, H],
      [2, D],
      [3, 7 * D],
      [4, 7 * D],
    ]
    for (const [offence, ttl] of want) {
      const d = blockOf('198.18.7.7')
      expect(d, `offence ${offence}`).toMatchObject({ action: 'block', reason: 'blocked', offence, ttlMs: ttl, expiresAt: clock.t + (ttl as number) })
      clock.t += (ttl as number) + 1000
    }
  })

  it('an address whose last block is older than forgetAfter starts again at step 1', () => {
    const { clock, blockOf } = engineWith({ blockTtlLadderMs: [H, D], forgetAfterMs: 2 * D, windowMs: 1000 })
    expect(blockOf('198.18.7.8')).toMatchObject({ offence: 1, ttlMs: H })
    clock.t += H + 1000
    expect(blockOf('198.18.7.8')).toMatchObject({ offence: 2, ttlMs: D })
    clock.t += D + 2 * D + 1000
    expect(blockOf('198.18.7.8')).toMatchObject({ offence: 1, ttlMs: H })
  })

  it('spoofable blocks keep the spoofable TTL and never climb the ladder', () => {
    const { engine, clock, blockOf } = engineWith({ block: 'all', blockTtlLadderMs: [H, D], windowMs: 1000 })
    for (let i = 0; i < 3; i++) {
      const d = engine.observe(connect('198.18.7.9', false)).find((x) => x.action === 'block')
      expect(d).toMatchObject({ verified: false, ttlMs: 300_000 })
      expect(d?.offence).toBeUndefined()
      clock.t += 300_000 + 1000
    }
    expect(blockOf('198.18.7.9')).toMatchObject({ offence: 1, ttlMs: H })
  })

  it('dry-run says which step a block would be without counting it', () => {
    const { clock, blockOf } = engineWith({ dryRun: true, blockTtlLadderMs: [H, D], windowMs: 1000 })
    expect(blockOf('198.18.7.10')).toMatchObject({ reason: 'dry-run', offence: 1, ttlMs: H })
    clock.t += H + 1000
    expect(blockOf('198.18.7.10')).toMatchObject({ reason: 'dry-run', offence: 1, ttlMs: H })
  })

  it('a history loaded at start counts: a restart does not reset a repeat offender', () => {
    const now = 1_700_000_000_000
    const offences = new Offences()
    offences.load([{ address: '198.18.7.11', count: 2, last: now - D }], now, 30 * D)
    const { blockOf } = engineWith({ blockTtlLadderMs: [H, D, 7 * D] }, offences)
    expect(blockOf('198.18.7.11')).toMatchObject({ offence: 3, ttlMs: 7 * D })
  })
})

describe('Offences', () => {
  it('is bounded: the address least recently blocked is forgotten first', () => {
    const o = new Offences(3)
    for (const [i, a] of ['198.18.1.1', '198.18.1.2', '198.18.1.3'].entries()) o.record(a, 1000 + i, 1e9)
    o.record('198.18.1.1', 2000, 1e9)
    o.record('198.18.1.4', 2001, 1e9)
    expect(o.entries(3000, 1e9).map((e) => e.address)).toEqual(['198.18.1.3', '198.18.1.1', '198.18.1.4'])
    const big = new Offences(2)
    expect(big.load([1, 2, 3].map((i) => ({ address: `198.18.2.${i}`, count: i, last: 1000 + i })), 2000, 1e9)).toBe(3)
    expect(big.entries(2000, 1e9).map((e) => e.address)).toEqual(['198.18.2.2', '198.18.2.3'])
  })

  it('ladderStep: step n, the last step past the end', () => {
    expect([1, 2, 3, 9].map((n) => ladderStep([10, 20, 30], n))).toEqual([10, 20, 30, 30])
  })
})

describe('config', () => {
  it("blockTtl '1h,1d,7d' is a ladder; its first step is the block TTL; forgetAfter defaults to 30d", () => {
    const c = resolveConfig({ tcp: [2222], blockTtl: '1h, 1d,7d', forgetAfter: '10d' })
    expect(c.policy).toMatchObject({ blockTtlMs: H, blockTtlLadderMs: [H, D, 7 * D], forgetAfterMs: 10 * D })
    expect(resolveConfig({ tcp: [2222] }).policy).toMatchObject({ blockTtlMs: H, blockTtlLadderMs: [H], forgetAfterMs: 30 * D })
  })

  it('refuses a ladder that gets shorter, a step the backend cannot hold, and a spoofable TTL above the first step', () => {
    expect(() => resolveConfig({ tcp: [2222], blockTtl: '1d,1h' })).toThrow(/field blockTtl: step 2 \(1h\) is shorter than step 1 \(1d\)/)
    expect(() => resolveConfig({ tcp: [2222], blockTtl: '1h,30d', backend: 'ipset' })).toThrow(/field blockTtl: 30d is longer than ipset allows/)
    expect(() => resolveConfig({ tcp: [2222], blockTtl: '1m,1d', spoofableTtl: '5m' })).toThrow(/spoofableTtl: 5m is longer than the verified TTL/)
    expect(() => resolveConfig({ tcp: [2222], blockTtl: '1h,' })).toThrow(/field blockTtl/)
    expect(() => resolvePolicyConfig({ blockTtlLadderMs: [2 * H, H] })).toThrow(/shorter than the one before/)
  })

  it('state: an absolute file path, or false', () => {
    expect(resolveConfig({ tcp: [2222], state: '/tmp/x/state.json' }).state).toBe('/tmp/x/state.json')
    expect(resolveConfig({ tcp: [2222], state: false }).state).toBe(false)
    expect(resolveConfig({ tcp: [2222] }).state).toBeUndefined()
    expect(() => resolveConfig({ tcp: [2222], state: 'state.json' })).toThrow(/field state: "state.json" is not a usable file path/)
  })
})

describe('the default state path', () => {
  it("is under systemd's $STATE_DIRECTORY when set (absolute, the first of a list), else /var/lib/portanoia; one file per namespace", async () => {
    expect(STATE_DIR).toBe('/var/lib/portanoia')
    expect(await defaultStatePath('lab1', {})).toBe('/var/lib/portanoia/state-lab1.json')
    expect(await defaultStatePath('lab1', { STATE_DIRECTORY: '/var/lib/portanoia-b/:/var/lib/other' })).toBe('/var/lib/portanoia-b/state-lab1.json')
    expect(await defaultStatePath('lab1', { STATE_DIRECTORY: 'relative/dir' })).toBe('/var/lib/portanoia/state-lab1.json')
  })

  it('points at a scratch folder in test runs, never the host\'s /var/lib/portanoia (test/setup.ts)', async () => {
    expect(process.env.STATE_DIRECTORY).toMatch(/\/portanoia-scratch\/state-/)
    expect(await defaultStatePath('lab1')).toBe(`${process.env.STATE_DIRECTORY}/state-lab1.json`)
  })
})

describe('StateFile', () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const d of dirs.splice(0)) {
      await chmod(d, 0o700).catch(() => {})
      await rm(d, { recursive: true, force: true })
    }
  })
  async function dir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'pnstate-'))
    dirs.push(d)
    return d
  }
  const content = (now: number) => ({
    offences: [{ address: '198.18.3.1', count: 2, last: now - 1000 }],
    blocks: [
      { address: '198.18.3.1', family: 4 as const, evidence: 'verified' as const, origin: 'local' as const, expiresAt: now + H },
      { address: 'fd52:43dd::3', family: 6 as const, evidence: 'spoofable' as const, origin: 'local' as const, expiresAt: now + 60_000 },
      { address: '198.18.3.2', family: 4 as const, evidence: 'verified' as const, origin: 'operator' as const, expiresAt: now - 1 },
    ],
  })

  it('round-trips what the daemon gives it, leaving out blocks that ran out; no temporary file is left', async () => {
    const d = await dir()
    const now = Date.now()
    const f = new StateFile(join(d, 'sub', 'state.json'))
    f.attach(() => content(now))
    await f.write()
    const back = await new StateFile(join(d, 'sub', 'state.json')).load()
    expect(back?.offences).toEqual(content(now).offences)
    expect(back?.blocks.map((b) => b.address)).toEqual(['198.18.3.1', 'fd52:43dd::3'])
    expect(await readdir(join(d, 'sub'))).toEqual(['state.json'])
  })

  it('keeps at most maxBlocks blocks, the longest-lasting', async () => {
    const d = await dir()
    const now = Date.now()
    const f = new StateFile(join(d, 'state.json'), { maxBlocks: 2 })
    f.attach(() => ({ offences: [], blocks: [1, 2, 3].map((i) => ({ address: `198.18.4.${i}`, family: 4 as const, evidence: 'verified' as const, origin: 'local' as const, expiresAt: now + i * H })) }))
    await f.write()
    expect((await f.load())?.blocks.map((b) => b.address).sort()).toEqual(['198.18.4.2', '198.18.4.3'])
  })

  it('a corrupt file is moved aside and said once; the daemon starts from nothing', async () => {
    const d = await dir()
    const path = join(d, 'state.json')
    for (const bad of ['{"v":1,"savedAt":0,"offences":[{"address":"not an address","count":1,"last":0}],"blocks":[]}', '{ truncated']) {
      await writeFile(path, bad)
      const logs: string[] = []
      expect(await new StateFile(path, { log: (l, m) => logs.push(`${l}: ${m}`) }).load()).toBeNull()
      expect(logs).toEqual([expect.stringMatching(new RegExp(`^warn: state file ${path} is corrupt .*moved to ${path}\\.corrupt`))])
      expect(await readFile(`${path}.corrupt`, 'utf8')).toBe(bad)
    }
  })

  it('an unwritable place is said once (and its recovery once); writes go on failing quietly', async () => {
    const d = await dir()
    const path = join(d, 'ro', 'state.json')
    await writeFile(join(d, 'ro'), 'a file where the directory should be')
    const logs: string[] = []
    const f = new StateFile(path, { log: (l, m) => logs.push(`${l}: ${m}`) })
    f.attach(() => content(Date.now()))
    await f.write()
    await f.write()
    expect(logs).toEqual([expect.stringMatching(/^warn: state file .*: cannot write it \((ENOTDIR|EEXIST)\); .*portanoia goes on\)$/)])
    expect(f.stats()).toMatchObject({ writes: 0, failures: 2, failing: 1 })
    await rm(join(d, 'ro'))
    await f.write()
    expect(logs[1]).toMatch(/^info: state file .*: written again/)
  })
})
