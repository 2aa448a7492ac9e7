/**
 * The built CLI's responders end to end, in test namespaces (the CLI runs with
 * --netns, so its capture, firewall commands and exec commands act in the sensor
 * namespace while its own sockets — the webhook client — stay in the host
 * namespace): explicit --tcp tripwires keep their listeners, and so their verified
 * blocks, next to listener-less --unused ports; the ipset backend blocks a real
 * scanner and list/unblock/uninstall work on it; a webhook on 127.0.0.1 receives
 * the decision JSON; a 2 s block expires in the kernel after portanoia stopped; --exec runs argv with
 * tokens replaced and nothing a template word holds is ever run by a shell.
 */
import type { ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'
import { cli, jsonLines, startWatch, stopWatches, waitFor } from '../helpers/cli.js'
import { createTestNet, IS_ROOT, stop, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { expectTimeLeft } from '../helpers/expiry.js'
import { nftElements } from '../helpers/nft.js'
import { startService, tcpConnect } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/cli-responders.test.ts')

const SERVICE = 8080

let net: TestNet | undefined
const services: ChildProcess[] = []
let server: Server | undefined
const dirs: string[] = []

afterEach(async () => {
  await stopWatches()
  for (const s of services.splice(0)) await stop(s)
  await net?.destroy()
  net = undefined
  for (const d of dirs.splice(0)) await removeScratch(d)
  if (server !== undefined) {
    server.closeAllConnections()
    await new Promise<void>((r) => server!.close(() => r()))
    server = undefined
  }
})

type Link = TestNet['links'][number]

async function withService(n: TestNet): Promise<void> {
  services.push(await startService(n.links[0]!.sensor, SERVICE))
}

type Decision = { type: string; action: string; reason: string; src: string; verified: boolean; trigger?: { dstPort: number } }
const blocked = (out: string, src: string): Decision[] =>
  jsonLines<Decision>(out, (e) => e.type === 'decision' && e.reason === 'blocked' && e.src === src)

describe.skipIf(!IS_ROOT)('portanoia CLI responders', () => {
  it('--tcp with --unused: the explicit port listens, so a connect to it is verified and blocked; unused ports stay unbound', async () => {
    net = await createTestNet()
    const a = net.links[0] as Link
    await withService(net)
    const w = await startWatch(['watch', '--netns', net.sensorNs, '--tcp', '2222', '--unused', '3000-3010', '--json'])
    const listening = (await net.sensorExec('ss', ['-Hltn'])).stdout
    expect(listening).toMatch(/:2222\b/)
    expect(listening).not.toMatch(/:30(0\d|10)\b/)
    // An unused-range port has no listener: the kernel refuses, nothing is verified.
    expect(await tcpConnect(a.peer, a.sensor.ipv4, 3005)).toBe('refused')
    expect(await tcpConnect(a.peer, a.sensor.ipv4, SERVICE)).toBe('connected')
    expect(await tcpConnect(a.peer, a.sensor.ipv4, 2222)).not.toBe('timeout')
    await waitFor('the block', () => blocked(w.out(), a.peer.ipv4).length > 0)
    expect(blocked(w.out(), a.peer.ipv4)[0]).toMatchObject({ action: 'block', verified: true, trigger: { dstPort: 2222 } })
    await waitFor('the service cut off', async () => (await tcpConnect(a.peer, a.sensor.ipv4, SERVICE, 500)) === 'timeout')
  })

  it('--backend ipset: a connect scan puts the attacker in the set, cut off from a real service; list, unblock, uninstall', async () => {
    net = await createTestNet({ peers: 2 })
    const [a, b] = net.links as [Link, Link]
    await withService(net)
    const w = await startWatch(['watch', '--netns', net.sensorNs, '--tcp', '2222', '--backend', 'ipset', '--json'])
    const scannedAt = Date.now()
    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the block', () => blocked(w.out(), a.peer.ipv4).length > 0)
    await waitFor('the set member', async () => (await net!.sensorExec('ipset', ['list', 'portanoia4'])).stdout.includes(a.peer.ipv4))
    expect(await tcpConnect(a.peer, a.sensor.ipv4, SERVICE)).toBe('timeout')
    expect(await tcpConnect(b.peer, b.sensor.ipv4, SERVICE)).toBe('connected')
    await stopWatches()

    const listed = await cli(['list', '--backend', 'ipset', '--netns', net.sensorNs, '--json'])
    expect(listed.code).toBe(0)
    const entries = JSON.parse(listed.stdout) as Array<{ address: string; family: number; expiresInMs: number }>
    expect(entries).toHaveLength(1)
    expect(entries[0]).toMatchObject({ address: a.peer.ipv4, family: 4 })
    expectTimeLeft(entries[0]!.expiresInMs, 3_600_000, scannedAt)

    const un = await cli(['unblock', '--backend', 'ipset', '--netns', net.sensorNs, a.peer.ipv4])
    expect(un.code).toBe(0)
    expect(un.stdout).toContain(`unblocked ${a.peer.ipv4}`)
    expect((await cli(['list', '--backend', 'ipset', '--netns', net.sensorNs, '--json'])).stdout).toBe('[]\n')
    expect(await tcpConnect(a.peer, a.sensor.ipv4, SERVICE)).toBe('connected')

    const u = await cli(['uninstall', '--backend', 'ipset', '--netns', net.sensorNs])
    expect(u.code).toBe(0)
    expect((await net.sensorExec('ipset', ['list', '-n'])).stdout).not.toContain('portanoia')
    expect((await net.sensorExec('iptables', ['-S'])).stdout).not.toContain('portanoia')
    expect((await net.sensorExec('ip6tables', ['-S'])).stdout).not.toContain('portanoia')
  })

  it('list --json on an empty table prints [] (nftables and ipset)', async () => {
    net = await createTestNet()
    for (const backend of ['nftables', 'ipset']) {
      const r = await cli(['list', '--backend', backend, '--netns', net.sensorNs, '--json'])
      expect(r.code, `${backend}: ${r.stderr}`).toBe(0)
      expect(JSON.parse(r.stdout)).toEqual([])
    }
  })

  it('--webhook: a local HTTP server receives the decision JSON for a block', async () => {
    net = await createTestNet()
    const a = net.links[0] as Link
    const bodies: Array<{ body: string; type: string | undefined }> = []
    server = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        bodies.push({ body, type: req.headers['content-type'] })
        res.writeHead(204).end()
      })
    })
    // With --netns only the capture and the firewall live in the namespace; the CLI's
    // own sockets are in this (the host) namespace, so 127.0.0.1 here reaches it.
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
    const port = (server.address() as AddressInfo).port
    const w = await startWatch(['watch', '--netns', net.sensorNs, '--tcp', '2222', '--webhook', `http://127.0.0.1:${port}/`, '--json'])
    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the posted block', () => bodies.some((b) => b.body.includes('"reason":"blocked"')))
    const posted = bodies.find((b) => b.body.includes('"reason":"blocked"'))!
    expect(posted.type).toMatch(/^application\/json/)
    const decision = JSON.parse(posted.body) as Decision
    expect(decision).toMatchObject({ type: 'decision', v: 1, action: 'block', reason: 'blocked', src: a.peer.ipv4, verified: true })
    // The same decision as the event stream's.
    expect(blocked(w.out(), a.peer.ipv4)[0]).toEqual(decision)
  })

  it('--block-ttl 2s: the block expires in the kernel and the attacker connects again', async () => {
    net = await createTestNet()
    const a = net.links[0] as Link
    await withService(net)
    const w = await startWatch(['watch', '--netns', net.sensorNs, '--tcp', '2222', '--block-ttl', '2s', '--json'])
    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the block', () => blocked(w.out(), a.peer.ipv4).length > 0)
    expect(blocked(w.out(), a.peer.ipv4)[0]).toMatchObject({ ttlMs: 2000 })
    // portanoia stops (the pending batch is flushed on the way out, and the final stats
    // say it reached nft): from here on only the kernel can remove the element. No
    // probe inside the 2 s: on a loaded machine it could start after the expiry.
    await stopWatches()
    const stats = jsonLines<{ responders: { daemon: { applied: number } } }>(w.out(), (e) => e.type === 'stats').at(-1)
    expect(stats?.responders.daemon.applied).toBe(1)
    await waitFor('the kernel to expire it', async () => !(await nftElements(net!.sensorExec, ['verified4'])).includes(a.peer.ipv4), 30_000)
    expect(await tcpConnect(a.peer, a.sensor.ipv4, SERVICE)).toBe('connected')
  })

  it('--exec: argv with tokens replaced, no shell — words that look like shell syntax stay literal', async () => {
    net = await createTestNet()
    const a = net.links[0] as Link
    // The script the CLI runs lives beside the build (a noexec /tmp would refuse it) and goes afterwards.
    const dir = await scratchDir('pnexec-')
    dirs.push(dir)
    const file = join(dir, 'args.txt')
    const script = join(dir, 'record.sh')
    await writeFile(script, `#!/bin/sh\nprintf '%s\\n' "$@" >> ${file}\n`, { mode: 0o755 })
    const hostile = [`"{src}; touch ${dir}/pwned1"`, `'$(touch ${dir}/pwned2)'`, `\`touch\\ ${dir}/pwned3\``, `{dst}|touch`]
    const template = `${script} {src} {dstPort} {kind} {reason} {proto} {family} {action} ${hostile.join(' ')}`
    await startWatch(['watch', '--netns', net.sensorNs, '--tcp', '2222', '--exec', template, '--json'])
    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the command ran', async () => (await readFile(file, 'utf8').catch(() => '')).includes(a.peer.ipv4))
    expect((await readFile(file, 'utf8')).split('\n').slice(0, -1)).toEqual([
      a.peer.ipv4,
      '2222',
      'connect',
      'blocked',
      'tcp',
      '4',
      'block',
      `${a.peer.ipv4}; touch ${dir}/pwned1`,
      `$(touch ${dir}/pwned2)`,
      `\`touch ${dir}/pwned3\``,
      `${a.sensor.ipv4}|touch`,
    ])
    for (const f of ['pwned1', 'pwned2', 'pwned3']) expect(existsSync(join(dir, f))).toBe(false)
  })
})
