/**
 * The built CLI's operations on a running `portanoia watch` in a test namespace,
 * through its control socket (the default one of that namespace), with real nft:
 * status and list report what the kernel holds with origins; block and unblock go
 * through the daemon, so its engine and the kernel agree; reload (the command and
 * SIGHUP) applies an edited config live, and a bad or restart-needing one is
 * refused while the old one keeps running — SIGHUP used to kill the process (exit
 * 129). A second daemon for the same namespace is refused; once the daemon is gone
 * the socket is too, and list/unblock fall back to the table, saying so.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { cli, jsonLines, startWatch, stopWatches, waitFor } from '../helpers/cli.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftEntries } from '../helpers/nft.js'
import { tcpConnect } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/control.test.ts')

let net: TestNet | undefined
const dirs: string[] = []

afterEach(async () => {
  await stopWatches()
  await net?.destroy()
  net = undefined
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

interface Element {
  address: string
  timeoutMs?: number
  expiresInMs?: number
}

/** The elements of the namespace's IPv4 sets (every origin's), read with nft (a failing nft fails the test). */
async function elements(n: TestNet): Promise<Element[]> {
  const all = await nftEntries(n.sensorExec)
  if (all === null) throw new Error('nft: table inet portanoia does not exist')
  return all
    .filter((e) => e.set.endsWith('4'))
    .map((e) => ({ address: e.address, ...(e.timeout !== undefined && { timeoutMs: e.timeout * 1000 }) }))
}

interface Status {
  tripwires: { ports: string }
  policy: { blockTtlMs: number }
  blocks: { kernel: { total: number; byOrigin: Record<string, number> }; policy: { verified: number } }
  reload: { applied: number; refused: number; last: { outcome: string; changed: string[]; error?: { message: string } } | null }
}

async function status(ns: string): Promise<Status> {
  const r = await cli(['status', '--netns', ns, '--json'])
  if (r.code !== 0) throw new Error(`status exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as Status
}

describe.skipIf(!IS_ROOT)('the control socket, end to end', () => {
  it('status, list, block and unblock go through the daemon; engine and kernel agree', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    const ns = net.sensorNs
    const w = await startWatch(['watch', '--netns', ns, '--tcp', '2222', '--json'])
    const path = `/run/portanoia/portanoia-${ns}.sock`
    const st = await stat(path)
    expect(st.isSocket()).toBe(true)
    expect(st.mode & 0o777).toBe(0o600)

    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the block', async () => (await elements(net!)).some((e) => e.address === a.peer.ipv4))
    const s1 = await status(ns)
    expect(s1.tripwires.ports).toBe('2222/tcp')
    expect(s1.blocks.kernel).toMatchObject({ total: 1, byOrigin: { local: 1, operator: 0 } })

    // An operator's block: guarded addresses refused by name, the other one in nft with its TTL.
    const blk = await cli(['block', '--netns', ns, b.peer.ipv4, a.sensor.ipv4, '--ttl', '10m'])
    expect(blk.code).toBe(1)
    expect(blk.stdout).toContain(`blocked ${b.peer.ipv4} for 10m`)
    expect(blk.stdout).toContain(`refused ${a.sensor.ipv4}: guard:self (never blocked)`)
    expect(blk.stderr).toContain(`through the running daemon (${path})`)
    expect((await elements(net)).find((e) => e.address === b.peer.ipv4)?.timeoutMs).toBe(600_000)
    expect((await elements(net)).some((e) => e.address === a.sensor.ipv4)).toBe(false)
    expect(await tcpConnect(b.peer, b.sensor.ipv4, 2222)).toBe('timeout')

    const listed = await cli(['list', '--netns', ns, '--json'])
    expect(listed.stderr).toContain('through the running daemon')
    const blocks = JSON.parse(listed.stdout) as Array<{ address: string; origin: string; reason: string }>
    expect(blocks.map((x) => [x.address, x.origin, x.reason]).sort()).toEqual(
      [
        [a.peer.ipv4, 'local', 'verified'],
        [b.peer.ipv4, 'operator', 'operator'],
      ].sort(),
    )

    // Unblock through the daemon: the kernel drops it, and the daemon's view with it.
    const un = await cli(['unblock', '--netns', ns, a.peer.ipv4])
    expect(un.code).toBe(0)
    expect(un.stdout).toBe(`unblocked ${a.peer.ipv4}\n`)
    expect((await elements(net)).map((e) => e.address)).toEqual([b.peer.ipv4])
    const s2 = await status(ns)
    expect(s2.blocks.kernel).toMatchObject({ total: 1, byOrigin: { local: 0, operator: 1 } })
    expect(s2.blocks.policy.verified).toBe(1) // the operator's block; the unblocked one is forgotten
    // The engine forgot it, so a new scan is a new block (not `already-blocked` behind an empty set).
    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the block again', async () => (await elements(net!)).some((e) => e.address === a.peer.ipv4))
    expect(jsonLines(w.out(), (e) => e.type === 'decision' && e.reason === 'blocked' && e.src === a.peer.ipv4)).toHaveLength(2)
    expect(jsonLines(w.out(), (e) => e.type === 'operator').map((e) => [e.op, e.outcome])).toEqual([
      ['block', 'partial'],
      ['unblock', 'applied'],
    ])

    // One daemon per namespace.
    const second = await cli(['watch', '--netns', ns, '--tcp', '2323'], 20_000)
    expect(second.code).toBe(1)
    expect(second.stderr).toContain(`another portanoia daemon answers on ${path}`)
    expect((await elements(net)).length).toBe(2)

    // Gone: the socket with it; list and unblock go to the table and say so; status needs the daemon.
    await stopWatches()
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' })
    const after = await cli(['list', '--netns', ns, '--json'])
    expect(after.stderr).toContain(`no daemon answers on ${path}: straight to the kernel table`)
    expect((JSON.parse(after.stdout) as Element[]).map((e) => e.address).sort()).toEqual([a.peer.ipv4, b.peer.ipv4].sort())
    const gone = await cli(['status', '--netns', ns])
    expect(gone.code).toBe(1)
    expect(gone.stderr).toContain(`no daemon answers on ${path}`)
  }, 90_000)

  it('reload and SIGHUP apply an edited config live; bad or restart-needing configs are refused and the old one runs on', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [TestNet['links'][0], TestNet['links'][0]]
    const ns = net.sensorNs
    const dir = await mkdtemp(join(tmpdir(), 'pnreload-'))
    dirs.push(dir)
    const file = join(dir, 'portanoia.json')
    await writeFile(file, JSON.stringify({ tcp: [2222], blockTtl: '1h' }))
    const w = await startWatch(['watch', '--netns', ns, '--config', file, '--json'])
    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the first block', async () => (await elements(net!)).some((e) => e.address === a.peer.ipv4))

    await writeFile(file, '{\n  // a second tripwire, longer blocks\n  "tcp": [2222, 2323],\n  "blockTtl": "2h",\n}\n')
    const r = await cli(['reload', '--netns', ns])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('reloaded: tcp/udp/sctp, blockTtl\n')
    await tcpConnect(b.peer, b.sensor.ipv4, 2323)
    await waitFor('a block from the new tripwire', async () => (await elements(net!)).some((e) => e.address === b.peer.ipv4))
    const els = await elements(net)
    expect(els.find((e) => e.address === b.peer.ipv4)?.timeoutMs).toBe(7_200_000)
    // The block made before the reload is still there, with its own timeout.
    expect(els.find((e) => e.address === a.peer.ipv4)?.timeoutMs).toBe(3_600_000)

    // SIGHUP with a broken file: refused with file:line:column, the process runs on.
    await writeFile(file, '{\n  "tcp": [2222, 2323],\n  "blokTtl": "2h"\n}\n')
    w.child.kill('SIGHUP')
    await waitFor('the refusal', () => w.err().includes('reload refused'))
    expect(w.err()).toContain(`reload refused, the previous config stays in force: ${file}:3:3: unknown field "blokTtl" (did you mean "blockTtl"?)`)
    expect(w.child.exitCode).toBeNull()
    // A field that needs a restart: refused, named.
    await writeFile(file, JSON.stringify({ tcp: [2222, 2323], blockTtl: '2h', backend: 'ipset' }))
    const refused = await cli(['reload', '--netns', ns])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('changed fields that need a restart: backend')
    const s = await status(ns)
    expect(s.tripwires.ports).toBe('2222/tcp,2323/tcp')
    expect(s.policy.blockTtlMs).toBe(7_200_000)
    expect(s.reload).toMatchObject({ applied: 1, refused: 2, last: { outcome: 'refused', error: { message: expect.stringMatching(/backend/) } } })
    expect(jsonLines(w.out(), (e) => e.type === 'operator' && e.op === 'reload').map((e) => e.outcome)).toEqual(['applied', 'refused', 'refused'])

    // SIGHUP with a good file applies it.
    await writeFile(file, JSON.stringify({ tcp: [2222], blockTtl: '2h' }))
    w.child.kill('SIGHUP')
    await waitFor('the reload', () => w.err().includes('reloaded: tcp/udp/sctp'))
    expect((await status(ns)).tripwires.ports).toBe('2222/tcp')
    expect(w.child.exitCode).toBeNull()
  }, 90_000)
})
