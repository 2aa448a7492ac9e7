/**
 * The daemon as contrib/portanoia.service runs it: an unprivileged user (nobody)
 * holding exactly CAP_NET_RAW and CAP_NET_ADMIN as ambient capabilities (and
 * nothing else in its bounding set), inside a test namespace, on a tripwire above
 * 1024. It must detect a connect, block it in the namespace's real nftables, and
 * answer `portanoia status` on its control socket. The built CLI runs from a
 * world-readable copy of what it loads, because the checkout may sit where nobody
 * cannot look (/root, a 0700 home); the socket lives in a directory owned by
 * nobody, as systemd's RuntimeDirectory would make it.
 */
import { type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { PACKAGE_ROOT } from '../../lib/binding.js'
import { cli, jsonLines, waitFor } from '../helpers/cli.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { tcpConnect } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/service-caps.test.ts')

const NOBODY = 65534
/** What the CLI loads at run time (prom-client only with --metrics). */
const RUNTIME = ['package.json', 'dist/lib', 'build/Release/portanoia.node', ...['commander', 'jsonc-parser', 'node-gyp-build', 'picocolors', 'zod'].map((m) => `node_modules/${m}`)]
/** CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/PID/status writes capability sets. */
const TWO_CAPS = (1n << 12n) | (1n << 13n)

let net: TestNet | undefined
let child: ChildProcess | undefined
const dirs: string[] = []

afterEach(async () => {
  if (child !== undefined) await stop(child)
  child = undefined
  await net?.destroy()
  net = undefined
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function tempDir(prefix: string, mode: number, owner?: number): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(d)
  chmodSync(d, mode)
  if (owner !== undefined) chownSync(d, owner, owner)
  return d
}

function capSet(status: string, name: string): bigint {
  const m = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status)
  if (m === null) throw new Error(`no ${name} in /proc status`)
  return BigInt(`0x${m[1] as string}`)
}

describe.skipIf(!IS_ROOT)('as a service user with two ambient capabilities', () => {
  it('detects a connect, blocks it in nftables, and answers status on its socket', async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    const copy = tempDir('pncaps-', 0o755)
    for (const part of RUNTIME) cpSync(join(PACKAGE_ROOT, part), join(copy, part), { recursive: true })
    const run = tempDir('pncapsrun-', 0o700, NOBODY)
    const socket = join(run, 'portanoia.sock')
    const cliMain = join(copy, 'dist', 'lib', 'cli', 'main.js')

    child = net.sensorSpawn('setpriv', [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      '--clear-groups',
      '--inh-caps=-all,+net_raw,+net_admin',
      '--ambient-caps=-all,+net_raw,+net_admin',
      '--bounding-set=-all,+net_raw,+net_admin',
      process.execPath,
      cliMain,
      'watch',
      '--tcp',
      '2222',
      '--json',
      '--control',
      socket,
    ])
    let out = ''
    let err = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number | null>((r) => child!.once('exit', r))
    await Promise.race([
      waitFor('the daemon to watch', () => err.includes('watching 2222/tcp'), 20_000),
      exited.then((code) => {
        throw new Error(`watch exited ${String(code)}: ${err}`)
      }),
    ])

    // It is who the unit says: nobody, with exactly the two capabilities, effective and ambient.
    const proc = readFileSync(`/proc/${child.pid}/status`, 'utf8')
    expect(/^Uid:\s+(\d+)/m.exec(proc)?.[1]).toBe(String(NOBODY))
    expect(capSet(proc, 'CapEff')).toBe(TWO_CAPS)
    expect(capSet(proc, 'CapAmb')).toBe(TWO_CAPS)
    expect(capSet(proc, 'CapBnd')).toBe(TWO_CAPS)

    // Detect → block: a completed handshake, then the element in the namespace's table.
    expect(await tcpConnect(a.peer, a.sensor.ipv4, 2222)).not.toBe('timeout')
    await waitFor('a block decision', () => out.includes('"reason":"blocked"'), 10_000)
    expect(jsonLines(out, (e) => e.type === 'decision' && e.reason === 'blocked')[0]).toMatchObject({ src: a.peer.ipv4, verified: true })
    await waitFor('the element in nftables', async () => {
      const r = await net!.sensorExec('nft', ['-j', 'list', 'set', 'inet', 'portanoia', 'verified4'])
      return r.code === 0 && r.stdout.includes(a.peer.ipv4)
    })
    expect(await tcpConnect(a.peer, a.sensor.ipv4, 2222)).toBe('timeout')

    // Status through the socket (root may connect; the socket is nobody's, 0600).
    const st = await cli(['status', '--json', '--control', socket])
    expect(st.code, st.stderr).toBe(0)
    const status = JSON.parse(st.stdout) as {
      pid: number
      tripwires: { ports: string; listeners: number }
      counters: { hits: number; decisions: Record<string, number> }
      blocks: { kernel: { total: number; byOrigin: Record<string, number>; byReason: Record<string, number> } }
    }
    expect(status.pid).toBe(child.pid)
    expect(status.tripwires).toMatchObject({ ports: '2222/tcp', listeners: 1 })
    expect(status.counters.hits).toBeGreaterThanOrEqual(1)
    expect(status.counters.decisions.blocked).toBe(1)
    expect(status.blocks.kernel).toMatchObject({ total: 1, byOrigin: { local: 1 }, byReason: { verified: 1 } })

    await stop(child)
    expect(child.exitCode, err).toBe(0)
  }, 60_000)
})
