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

type Script = (script: string, options?: { json?: boolean; terse?: boolean }) => Promise<RunResult>

function fakeNft(run: Script, unavailable: string | null = null, made: Array<{ netns?: string }> = []): Pick<NativeBinding, 'Nft'> {
  class Nft implements NativeNft {
    static available(): string | null {
      return unavailable
    }
    constructor(options: { netns?: string }) {
      made.push(options)
    }
    run(script: string, options?: { json?: boolean; terse?: boolean }): Promise<{ code: number; stdout: string; stderr: string }> {
      return run(script, options)
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
  it('runs nft -f - scripts and plain `nft -j [-t] list` reads in-process, everything else as a child', async () => {
    const fb = recorder()
    const scripts: string[] = []
    const made: Array<{ netns?: string }> = []
    const run = nftLibRun(fb.run, {
      netns: 'pnt-x',
      binding: fakeNft(async (s, o) => (scripts.push(`${JSON.stringify(o ?? {})} ${s}`), { code: 1, stdout: '', stderr: '/dev/stdin:1:12-20: Error: No such file or directory\nlist table x\n' }), null, made),
    })
    // A transaction keeps the script's place in the error text (the command's `-f -` does too);
    // a read drops it, as the command does for a command given as arguments.
    expect(await run('nft', ['-f', '-'], 'add table inet t\n')).toMatchObject({ code: 1, stderr: /^\/dev\/stdin:1:12-20: Error/ })
    expect(await run('nft', ['-j', 'list', 'ruleset'])).toMatchObject({ code: 1, stderr: /^Error: No such file/ })
    expect(await run('nft', ['-j', '-t', 'list', 'table', 'inet', 'portanoia'])).toMatchObject({ code: 1 })
    for (const [args, input] of [
      [['-j', 'list', 'set', 'inet', 't', 's;flush ruleset']],
      [['-j', 'list']],
      [['-j', 'list', '-a', 'ruleset']],
      [['-j', 'monitor', 'destroy']],
      [['-j', '-a', 'list', 'ruleset']],
      [['-j', 'list', 'ruleset'], 'flush ruleset\n'],
    ] as Array<[string[], string?]>) {
      expect(await run('nft', args, input)).toMatchObject({ stdout: 'child' })
    }
    expect(await run('/usr/local/sbin/nft', ['-f', '-'], 'add table inet t\n')).toMatchObject({ stdout: 'child' })
    expect(await run('nft', ['-f', '-'])).toMatchObject({ stdout: 'child' })
    expect(await run('ip', ['-j', 'route'])).toMatchObject({ stdout: 'child' })
    expect(scripts).toEqual(['{} add table inet t\n', '{"json":true} list ruleset\n', '{"json":true,"terse":true} list table inet portanoia\n'])
    expect(fb.calls).toEqual([
      'nft -j list set inet t s;flush ruleset',
      'nft -j list',
      'nft -j list -a ruleset',
      'nft -j monitor destroy',
      'nft -j -a list ruleset',
      'nft -j list ruleset',
      '/usr/local/sbin/nft -f -',
      'nft -f -',
      'ip -j route',
    ])
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
