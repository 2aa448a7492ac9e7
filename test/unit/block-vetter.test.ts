/**
 * BlockVetter on its own, with a fake peer check the test answers by hand: every
 * held decision gets exactly one answer, in order; a check that rejects, answers too
 * little, or never answers (its deadline passes) answers 'unchecked' — never "not a
 * peer" — with one error per run of failures; a check that timed out and still runs
 * holds the next batch back, so no two checks are ever outstanding; past `maxHeld`
 * decisions are answered 'unchecked' at once. The deadlines here are met by checks
 * that never settle, so no outcome depends on how fast the machine is.
 */
import { describe, expect, it } from 'vitest'
import { BlockVetter, type BlockVetterOptions } from '../../lib/daemon/block-vetter.js'
import { PortanoiaError } from '../../lib/errors.js'
import { type Address, formatAddress } from '../../lib/policy/addr.js'
import type { Decision } from '../../lib/policy/decision.js'
import type { VetAnswer } from '../../lib/policy/engine.js'
import type { GuardReason } from '../../lib/policy/guards.js'

const decision = (src: string): Decision => ({
  action: 'block',
  reason: 'blocked',
  src,
  family: 4,
  verified: false,
  attribution: 'plausible',
  evidence: [],
  ports: ['2222/tcp'],
  portsTruncated: false,
  kinds: ['syn'],
  count: 1,
  verifiedCount: 0,
  firstSeen: 0,
  lastSeen: 0,
  windowStart: 0,
  windowMs: 60_000,
  final: false,
  time: 0,
})

interface Call {
  targets: string[]
  resolve(answers: Array<GuardReason | null>): void
  reject(err: Error): void
}

function setup(options: Partial<BlockVetterOptions> = {}) {
  const calls: Call[] = []
  const answers: Array<[string, VetAnswer]> = []
  const errors: unknown[] = []
  const vetter = new BlockVetter({
    check: (targets: readonly Address[]) =>
      new Promise((resolve, reject) => {
        calls.push({ targets: targets.map(formatAddress), resolve, reject })
      }),
    onVetted: (d, a) => answers.push([d.src, a]),
    onError: (e) => errors.push(e),
    ...options,
  })
  return { vetter, calls, answers, errors }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !check(); i++) await turn()
  if (!check()) throw new Error(`never: ${what}`)
}

describe('BlockVetter', () => {
  it('one batch per turn, one target per address, every decision answered in order', async () => {
    const t = setup()
    for (const src of ['198.18.0.1', '198.18.0.2', '198.18.0.1']) t.vetter.add(decision(src))
    await until('the check', () => t.calls.length === 1)
    expect(t.calls[0]!.targets).toEqual(['198.18.0.1', '198.18.0.2'])
    expect(t.answers).toEqual([])
    t.calls[0]!.resolve(['peer', null])
    await t.vetter.drain()
    expect(t.answers).toEqual([
      ['198.18.0.1', 'peer'],
      ['198.18.0.2', null],
      ['198.18.0.1', 'peer'],
    ])
    expect(t.errors).toEqual([])
    expect(t.vetter.stats()).toMatchObject({ held: 3, batches: 1, refused: 2, unchecked: 0, failedBatches: 0 })
  })

  it('a check that rejects answers unchecked for its whole batch, with one error per run of failures', async () => {
    const t = setup()
    t.vetter.add(decision('198.18.0.1'))
    t.vetter.add(decision('198.18.0.2'))
    await until('the first check', () => t.calls.length === 1)
    t.calls[0]!.reject(Object.assign(new Error('sock_diag: Operation not permitted'), { code: 'EPERM' }))
    await t.vetter.drain()
    t.vetter.add(decision('198.18.0.3'))
    await until('the second check', () => t.calls.length === 2)
    t.calls[1]!.reject(new Error('again'))
    await t.vetter.drain()
    expect(t.answers).toEqual([
      ['198.18.0.1', 'unchecked'],
      ['198.18.0.2', 'unchecked'],
      ['198.18.0.3', 'unchecked'],
    ])
    expect(t.errors).toHaveLength(1)
    expect(t.errors[0]).toBeInstanceOf(PortanoiaError)
    expect(t.errors[0]).toMatchObject({ code: 'PORTANOIA_PEER_CHECK_FAILED', message: expect.stringContaining('Operation not permitted') })
    // Recovered, then failing again: said again.
    t.vetter.add(decision('198.18.0.4'))
    await until('the third check', () => t.calls.length === 3)
    t.calls[2]!.resolve([null])
    await t.vetter.drain()
    t.vetter.add(decision('198.18.0.5'))
    await until('the fourth check', () => t.calls.length === 4)
    t.calls[3]!.reject(new Error('once more'))
    await t.vetter.drain()
    expect(t.answers.slice(3)).toEqual([
      ['198.18.0.4', null],
      ['198.18.0.5', 'unchecked'],
    ])
    expect(t.errors).toHaveLength(2)
    expect(t.vetter.stats()).toMatchObject({ unchecked: 4, failedBatches: 3 })
  })

  it('a check that throws synchronously or answers too few is unchecked, never "not a peer"', async () => {
    const thrown = setup({
      check: () => {
        throw new Error('sync throw')
      },
    })
    thrown.vetter.add(decision('198.18.0.1'))
    await thrown.vetter.drain()
    expect(thrown.answers).toEqual([['198.18.0.1', 'unchecked']])
    const short = setup()
    short.vetter.add(decision('198.18.0.1'))
    short.vetter.add(decision('198.18.0.2'))
    await until('the check', () => short.calls.length === 1)
    short.calls[0]!.resolve([null])
    await short.vetter.drain()
    expect(short.answers).toEqual([
      ['198.18.0.1', null],
      ['198.18.0.2', 'unchecked'],
    ])
  })

  it('a check that never answers: its batch is unchecked at the deadline, and the next batch waits for it rather than asking beside it', async () => {
    const t = setup({ timeoutMs: 20 })
    t.vetter.add(decision('198.18.0.1'))
    await t.vetter.drain()
    expect(t.answers).toEqual([['198.18.0.1', 'unchecked']])
    expect(t.errors).toMatchObject([{ code: 'PORTANOIA_PEER_CHECK_FAILED', message: expect.stringContaining('no answer within 20 ms') }])
    // The first check still runs: the second batch is not asked, and fails at its own deadline.
    t.vetter.add(decision('198.18.0.2'))
    await t.vetter.drain()
    expect(t.calls).toHaveLength(1)
    expect(t.answers[1]).toEqual(['198.18.0.2', 'unchecked'])
    // Once the stuck check settles (late: its answer is not used), the next batch asks again.
    t.calls[0]!.resolve([null])
    t.vetter.add(decision('198.18.0.3'))
    await until('the next check', () => t.calls.length === 2)
    expect(t.calls[1]!.targets).toEqual(['198.18.0.3'])
    t.calls[1]!.resolve(['peer'])
    await t.vetter.drain()
    expect(t.answers[2]).toEqual(['198.18.0.3', 'peer'])
    expect(t.errors).toHaveLength(1)
  })

  it('past maxHeld decisions waiting or in flight, a decision is answered unchecked at once', async () => {
    const t = setup({ maxHeld: 2 })
    t.vetter.add(decision('198.18.0.1'))
    t.vetter.add(decision('198.18.0.2'))
    t.vetter.add(decision('198.18.0.3'))
    expect(t.answers).toEqual([['198.18.0.3', 'unchecked']])
    expect(t.errors).toMatchObject([{ code: 'PORTANOIA_PEER_CHECK_FAILED' }])
    await until('the check', () => t.calls.length === 1)
    expect(t.calls[0]!.targets).toEqual(['198.18.0.1', '198.18.0.2'])
    t.calls[0]!.resolve([null, null])
    await t.vetter.drain()
    // Room again once answered.
    t.vetter.add(decision('198.18.0.4'))
    await until('the second check', () => t.calls.length === 2)
    t.calls[1]!.resolve([null])
    await t.vetter.drain()
    expect(t.answers.map(([src, a]) => `${src} ${String(a)}`)).toEqual(['198.18.0.3 unchecked', '198.18.0.1 null', '198.18.0.2 null', '198.18.0.4 null'])
  })

  it('a throw from onVetted reaches onError and the other decisions are still answered', async () => {
    const errors: unknown[] = []
    const seen: string[] = []
    const vetter = new BlockVetter({
      check: async (targets) => targets.map(() => null),
      onVetted: (d) => {
        seen.push(d.src)
        if (d.src === '198.18.0.1') throw new Error('consumer broke')
      },
      onError: (e) => errors.push(e),
    })
    vetter.add(decision('198.18.0.1'))
    vetter.add(decision('198.18.0.2'))
    await vetter.drain()
    expect(seen).toEqual(['198.18.0.1', '198.18.0.2'])
    expect(errors).toMatchObject([{ message: 'consumer broke' }])
  })
})
