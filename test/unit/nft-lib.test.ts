/**
 * nftLibRun's routing, without a kernel: only `nft -f -` with a script goes to the
 * in-process context, everything else (and everything when libnftables does not load)
 * to the fallback; a transaction that does not come back is reported as timed out and
 * sends every later one to the fallback; a context that cannot be made is a 127, as a
 * program that could not start.
 */
import { describe, expect, it } from 'vitest'
import type { NativeBinding, NativeNft } from '../../lib/binding.js'
import { nftLibRun } from '../../lib/responders/nft-lib.js'
import type { RunFn, RunResult } from '../../lib/responders/types.js'

type Script = (script: string) => Promise<RunResult>

function fakeNft(run: Script, unavailable: string | null = null, made: Array<{ netns?: string }> = []): Pick<NativeBinding, 'Nft'> {
  class Nft implements NativeNft {
    static available(): string | null {
      return unavailable
    }
    constructor(options: { netns?: string }) {
      made.push(options)
    }
    run(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
      return run(script)
    }
    close(): void {}
  }
  return { Nft }
}

function recorder(): { calls: string[]; run: RunFn } {
  const calls: string[] = []
  return { calls, run: async (cmd, args) => (calls.push([cmd, ...args].join(' ')), { code: 0, stdout: 'child', stderr: '' }) }
}

describe('nftLibRun', () => {
  it('runs nft -f - scripts in-process and everything else as a child', async () => {
    const fb = recorder()
    const scripts: string[] = []
    const made: Array<{ netns?: string }> = []
    const run = nftLibRun(fb.run, { netns: 'pnt-x', binding: fakeNft(async (s) => (scripts.push(s), { code: 0, stdout: 'lib', stderr: '' }), null, made) })
    expect(await run('nft', ['-f', '-'], 'add table inet t\n')).toMatchObject({ code: 0, stdout: 'lib' })
    expect(await run('nft', ['-j', 'list', 'ruleset'])).toMatchObject({ stdout: 'child' })
    expect(await run('/usr/local/sbin/nft', ['-f', '-'], 'add table inet t\n')).toMatchObject({ stdout: 'child' })
    expect(await run('nft', ['-f', '-'])).toMatchObject({ stdout: 'child' })
    expect(await run('ip', ['-j', 'route'])).toMatchObject({ stdout: 'child' })
    expect(scripts).toEqual(['add table inet t\n'])
    expect(fb.calls).toEqual(['nft -j list ruleset', '/usr/local/sbin/nft -f -', 'nft -f -', 'ip -j route'])
    // One context, made at the first transaction, in the namespace's path.
    await run('nft', ['-f', '-'], 'add table inet u\n')
    expect(made).toEqual([{ netns: '/run/netns/pnt-x' }])
  })

  it('is the fallback itself when libnftables does not load', () => {
    const fb = recorder()
    expect(nftLibRun(fb.run, { binding: fakeNft(async () => ({ code: 0, stdout: '', stderr: '' }), 'libnftables.so.1: cannot open shared object file') })).toBe(fb.run)
  })

  it('reports a transaction that does not come back as timed out, then uses the fallback', async () => {
    const fb = recorder()
    const run = nftLibRun(fb.run, { timeoutMs: 20, binding: fakeNft(() => new Promise(() => {})) })
    const r = await run('nft', ['-f', '-'], 'add table inet t\n')
    expect(r).toMatchObject({ code: 124, timedOut: true })
    expect(r.stderr).toMatch(/outcome is unknown/)
    expect(await run('nft', ['-f', '-'], 'add table inet t\n')).toMatchObject({ stdout: 'child' })
    expect(fb.calls).toEqual(['nft -f -'])
  })

  it('answers 127 when the context cannot be made, and refuses bad options', async () => {
    const binding = fakeNft(() => Promise.reject(new Error('setns: EPERM /run/netns/pnt-x')))
    const run = nftLibRun(recorder().run, { netns: 'pnt-x', binding })
    expect(await run('nft', ['-f', '-'], 'add table inet t\n')).toMatchObject({ code: 127, stderr: 'nft: setns: EPERM /run/netns/pnt-x' })
    expect(() => nftLibRun(recorder().run, { netns: '-n', binding })).toThrow(/not a network namespace name/)
    expect(() => nftLibRun(recorder().run, { timeoutMs: 0, binding })).toThrow(/timeoutMs/)
  })
})
