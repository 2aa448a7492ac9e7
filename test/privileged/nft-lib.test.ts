/**
 * nftables transactions in-process (native/nft_lib.h through lib/responders/nft-lib.ts)
 * on a real kernel, in a test namespace only: the context writes into the namespace
 * it was given and nowhere else (the host's tables are read before and after), a
 * script is one transaction (a failing line leaves nothing of the batch behind, with
 * nft's own error text), concurrent runs all land (also two namespaces' contexts side by
 * side, each writing into its own), a namespace that does not exist is
 * a clear error, and the nftables responder blocks end to end through it without
 * starting an nft process for its transactions.
 */
import { spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadBinding } from '../../lib/binding.js'
import { nftLibRun, nftLibUnavailable } from '../../lib/responders/nft-lib.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { netnsRun } from '../../lib/responders/run.js'
import type { RunFn } from '../../lib/responders/types.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { canConnect, PROBE_PORT, startService } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/nft-lib.test.ts')

const TABLE = 'pnlibtest'

/** The host's own table list, read only: the test must leave it as it found it. */
function hostTables(): string {
  const r = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' })
  expect(r.status).toBe(0)
  return r.stdout
}

describe.skipIf(!IS_ROOT)('nftables in-process (libnftables, real kernel, test namespace)', () => {
  let net: TestNet
  let service: ChildProcess
  beforeAll(async () => {
    net = await createTestNet({ peers: 1 })
    service = await startService({ spawn: net.sensorSpawn }, PROBE_PORT)
  })
  afterAll(async () => {
    if (service !== undefined) await stop(service)
    await net?.destroy()
  })

  /** The elements of set `s` of the test table, as the nft command lists them in the namespace. */
  async function elements(): Promise<string[]> {
    const r = await net.sensorExec('nft', ['-j', 'list', 'set', 'inet', TABLE, 's'])
    expect(r.code, r.stderr).toBe(0)
    const json = JSON.parse(r.stdout) as { nftables: Array<{ set?: { elem?: Array<string | { elem: { val: string } }> } }> }
    const set = json.nftables.find((o) => o.set !== undefined)?.set
    return (set?.elem ?? []).map((e) => (typeof e === 'string' ? e : e.elem.val)).sort()
  }

  it('commits into its namespace only, one transaction per script, with nft\'s error text', async () => {
    // CI installs nftables, whose library this loads: not finding it is a failure here.
    expect(nftLibUnavailable()).toBeNull()
    const before = hostTables()
    const nft = new (loadBinding().Nft)({ netns: `/run/netns/${net.sensorNs}` })
    try {
      const made = await nft.run(`add table inet ${TABLE}\nadd set inet ${TABLE} s { type ipv4_addr; flags timeout; }\nadd element inet ${TABLE} s { 198.18.9.1 timeout 1h }\n`)
      expect(made, made.stderr).toMatchObject({ code: 0, stderr: '' })
      expect(await elements()).toEqual(['198.18.9.1'])

      // The second line fails: the first must not be committed either, and the error
      // reads as the nft command's own for the same script (line, column, the line itself).
      const badScript = `add element inet ${TABLE} s { 198.18.9.2 }\nadd element inet ${TABLE} nosuch { 198.18.9.3 }\n`
      const bad = await nft.run(badScript)
      expect(bad.code).toBe(1)
      expect(bad.stderr).toMatch(/^\/dev\/stdin:2:\d+-\d+: Error: No such file or directory\n.*nosuch/)
      expect(await elements()).toEqual(['198.18.9.1'])
      const cli = await net.sensorExec('nft', ['-f', '-'], { input: badScript })
      expect({ code: cli.code, stderr: cli.stderr }).toEqual({ code: 1, stderr: bad.stderr })

      // A syntax error is refused before anything reaches the kernel, and the context still works after it.
      const syntax = await nft.run('add elemnt nonsense\n')
      expect(syntax.code).toBe(1)
      expect(syntax.stderr).toMatch(/syntax error/)

      // Concurrent runs share one context under its lock: all of them land.
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => nft.run(`add element inet ${TABLE} s { 198.18.10.${i + 1} }\n`)))
      expect(many.map((r) => r.code)).toEqual(many.map(() => 0))
      expect(await elements()).toHaveLength(21)

      // Listing works too, with its output returned, not printed.
      const listed = await nft.run(`list set inet ${TABLE} s\n`)
      expect(listed.code).toBe(0)
      expect(listed.stdout).toContain('198.18.10.20')

      expect(() => nft.run('add table inet x\0')).toThrow(/NUL/)
    } finally {
      nft.close()
    }
    await expect(nft.run(`list tables\n`)).rejects.toThrow(/closed/)
    expect(hostTables()).toBe(before)
    expect(hostTables()).not.toContain(TABLE)
  })

  it('runs two namespaces\' contexts side by side, each into its own; a run pending at close() settles', async () => {
    const Nft = loadBinding().Nft
    const peerNs = net.links[0]!.peer.ns
    const a = new Nft({ netns: `/run/netns/${net.sensorNs}` })
    const b = new Nft({ netns: `/run/netns/${peerNs}` })
    const made = await Promise.all([
      ...Array.from({ length: 10 }, () => a.run('add table inet pnlibside\n')),
      ...Array.from({ length: 10 }, () => b.run('add table inet pnlibpeer\n')),
    ])
    expect(made.map((r) => r.code)).toEqual(made.map(() => 0))
    const sensorTables = (await net.sensorExec('nft', ['list', 'tables'])).stdout
    const peerTables = (await net.links[0]!.peer.exec('nft', ['list', 'tables'])).stdout
    expect(sensorTables).toContain('pnlibside')
    expect(sensorTables).not.toContain('pnlibpeer')
    expect(peerTables).toContain('pnlibpeer')
    expect(peerTables).not.toContain('pnlibside')
    // A run queued or in progress when close() comes settles (committed, or refused as closed).
    const pending = b.run('delete table inet pnlibpeer\n').then(
      (r) => `code ${r.code}`,
      (e: Error) => e.message,
    )
    b.close()
    a.close()
    expect(await pending).toMatch(/^code 0$|closed/)
  })

  it('reads (`nft -j [-t] list …`) give the command\'s own JSON and error text; anything else is the command\'s', async () => {
    const calls: string[] = []
    const base = netnsRun(net.sensorNs)
    const fallback: RunFn = async (cmd, args, input) => {
      calls.push([cmd, ...args].join(' '))
      return await base(cmd, args, input)
    }
    const run = nftLibRun(fallback, { netns: net.sensorNs })
    const made = await run('nft', ['-f', '-'], `add table inet ${TABLE}r\nadd set inet ${TABLE}r s { type ipv4_addr; flags timeout; }\nadd element inet ${TABLE}r s { 198.18.9.7 timeout 1h, 198.18.9.8 }\n`)
    expect(made.code, made.stderr).toBe(0)
    try {
      for (const args of [
        ['-j', '-t', 'list', 'table', 'inet', `${TABLE}r`],
        ['-j', 'list', 'set', 'inet', `${TABLE}r`, 's'],
        ['-j', 'list', 'table', 'inet', `${TABLE}-none`],
        ['-j', 'list', 'set', 'inet', `${TABLE}r`, 'none'],
      ]) {
        const mine = await run('nft', args)
        const cli = await net.sensorExec('nft', args)
        expect(mine.code, args.join(' ')).toBe(cli.code)
        // The same JSON, but for an element's time left (whole seconds: the two reads may
        // straddle a tick).
        const read = (json: string): unknown => JSON.parse(json, (k, v: unknown) => (k === 'expires' ? undefined : v))
        if (cli.code === 0) expect(read(mine.stdout), args.join(' ')).toEqual(read(cli.stdout))
        else expect(mine.stderr, args.join(' ')).toBe(cli.stderr)
      }
      const set = (JSON.parse((await run('nft', ['-j', 'list', 'set', 'inet', `${TABLE}r`, 's'])).stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> }).nftables.find((o) => o.set)?.set
      expect(set?.elem).toHaveLength(2)
      const terse = (JSON.parse((await run('nft', ['-j', '-t', 'list', 'set', 'inet', `${TABLE}r`, 's'])).stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> }).nftables.find((o) => o.set)?.set
      expect(terse).toBeDefined()
      expect(terse?.elem).toBeUndefined()
      // A transaction after a JSON read prints no JSON (each run sets its own output flags).
      const plain = await run('nft', ['-f', '-'], `list set inet ${TABLE}r s\n`)
      expect(plain.stdout).toMatch(/^table inet /)
      expect(calls).toEqual([])
      // Not a plain read: the command runs it.
      await run('nft', ['-j', 'list', 'set', 'inet', `${TABLE}r`, 's;flush'])
      await run('nft', ['-a', 'list', 'tables'])
      expect(calls).toEqual([`nft -j list set inet ${TABLE}r s;flush`, 'nft -a list tables'])
    } finally {
      await net.sensorExec('nft', ['delete', 'table', 'inet', `${TABLE}r`])
    }
  })

  it('refuses a namespace that does not exist, at construction and through nftLibRun', async () => {
    const Nft = loadBinding().Nft
    expect(() => new Nft({ netns: `/run/netns/${net.sensorNs}-gone` })).toThrow(/ENOENT/)
    const fallback: RunFn = async () => ({ code: 99, stdout: '', stderr: 'fallback' })
    const run = nftLibRun(fallback, { netns: `${net.sensorNs}-gone` })
    const r = await run('nft', ['-f', '-'], 'list tables\n')
    expect(r.code).toBe(127)
    expect(r.stderr).toMatch(/ENOENT/)
    expect(() => nftLibRun(fallback, { netns: '../etc' })).toThrow(/not a network namespace name/)
  })

  it('blocks through the nftables responder end to end without an nft process per transaction', async () => {
    const link = net.links[0]!
    const spawned: string[] = []
    const base = netnsRun(net.sensorNs)
    const counted: RunFn = async (cmd, args, input) => {
      spawned.push([cmd, ...args].join(' '))
      return await base(cmd, args, input)
    }
    const responder = new NftablesResponder({ run: nftLibRun(counted, { netns: net.sensorNs }) })
    try {
      await responder.start()
      expect(await canConnect(link.peer, link.sensor.ipv4)).toBe(true)
      const transactionsBefore = spawned.filter((c) => c === 'nft -f -').length
      const b = await responder.block([{ address: link.peer.ipv4, family: 4, ttlMs: 3_600_000 }])
      expect(b).toMatchObject({ ok: true, applied: [link.peer.ipv4] })
      expect(await canConnect(link.peer, link.sensor.ipv4)).toBe(false)
      // The block went through libnftables: no `nft -f -` child was started for it.
      expect(spawned.filter((c) => c === 'nft -f -').length).toBe(transactionsBefore)
      expect(transactionsBefore).toBe(0)
      // The kernel holds it, as the responder reads it back (in-process too).
      expect((await responder.list()).map((e) => e.address)).toContain(link.peer.ipv4)
      expect((await responder.unblock([link.peer.ipv4])).ok).toBe(true)
      expect(await canConnect(link.peer, link.sensor.ipv4)).toBe(true)
      // Neither its transactions nor its reads started an nft process.
      expect(spawned.filter((c) => c.startsWith('nft -f') || c.startsWith('nft -j'))).toEqual([])
    } finally {
      await responder.uninstall()
    }
  })
})
