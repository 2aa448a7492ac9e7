/**
 * Scan shapes, decoy groups and tool guesses with the real tools, against a daemon in a
 * namespace. The sensor has two links (198.18.0.0/24 to peer 0, 198.18.1.0/24 to peer 1),
 * a second address on each (198.18.0.100, 198.18.1.100: the horizontal scans' second
 * target) and no default route, so random decoys (no route back) are `forged`. Each
 * scenario scans from a source address of its own (extra addresses on the peers), since
 * scans are tracked per source:
 * - nmap -D RND:4 (from 198.18.0.2) and nmap -D with on-link decoys nobody holds (from
 *   198.18.0.3): one `decoy` event each, naming the real sender, and one `decoy` scan; a
 *   later probe of the sender is still `plausible` and carries `decoy:sender`;
 * - nmap -sS over many ports: a `vertical` scan with tool `nmap`;
 * - nmap -sS to one port of both sensor addresses on link 0: `horizontal`, tool `nmap`;
 * - masscan (its own --adapter-ip) over several ports: `vertical`, tool `masscan`;
 * - zmap to one port of both sensor addresses on link 1: `horizontal`, tool `zmap`;
 * - two sources splitting four ports with nmap: one `distributed` scan.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Daemon } from '../../lib/daemon/daemon.js'
import type { DecoyEvent, HitEvent, PortanoiaEvent, ScanEvent } from '../../lib/daemon/events.js'
import { removeScratch, scratchDir } from '../../lib/lab/scratch.js'
import { createTestNet, IS_ROOT, type Link, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { waitFor } from '../helpers/wait.js'

warnIfNotRoot('test/privileged/scans.test.ts')

const NMAP = ['-n', '-Pn', '--max-retries', '0', '-T5', '--initial-rtt-timeout', '50ms', '--max-rtt-timeout', '100ms']
const PORTS = '3001-3060/tcp'

async function run(link: Link, cmd: string, args: readonly string[]): Promise<void> {
  const r = await link.peer.exec(cmd, args, { timeoutMs: 60_000 })
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
}

describe.skipIf(!IS_ROOT)('scan shapes and decoy groups with real tools', () => {
  let net: TestNet
  let a: Link
  let b: Link
  let daemon: Daemon
  let scratch: string
  const events: PortanoiaEvent[] = []
  const scans = (): ScanEvent[] => events.filter((e): e is ScanEvent => e.type === 'scan')
  const decoys = (): DecoyEvent[] => events.filter((e): e is DecoyEvent => e.type === 'decoy')
  const scanFrom = (src: string, shape: ScanEvent['shape']): Promise<ScanEvent> =>
    waitFor(`a ${shape} scan from ${src}`, () => scans().find((s) => s.phase === 'start' && s.shape === shape && s.sources.includes(src)), 30_000)

  beforeAll(async () => {
    net = await createTestNet({ peers: 2 })
    ;[a, b] = net.links as [Link, Link]
    scratch = await scratchDir('scans-')
    await net.sensorExec('ip', ['addr', 'add', '198.18.0.100/24', 'dev', a.sensor.ifname])
    await net.sensorExec('ip', ['addr', 'add', '198.18.1.100/24', 'dev', b.sensor.ifname])
    for (const ip of ['198.18.0.3', '198.18.0.4', '198.18.0.5']) await run(a, 'ip', ['addr', 'add', `${ip}/24`, 'dev', a.peer.ifname])
    for (const ip of ['198.18.1.5', '198.18.1.60']) await run(b, 'ip', ['addr', 'add', `${ip}/24`, 'dev', b.peer.ifname])
    daemon = await Daemon.compose({
      ports: [PORTS],
      netns: net.sensorNs,
      firewall: null,
      hits: true,
      statsIntervalMs: 0,
      scans: { idleMs: 120_000 },
      onEvent: (e) => events.push(e),
      onLog: () => {},
    })
  }, 60_000)

  afterAll(async () => {
    await daemon?.close()
    await net?.destroy()
    if (scratch !== undefined) await removeScratch(scratch)
  })

  it('nmap -D RND:4: one decoy group naming the real sender, one decoy scan; the sender stays plausible', async () => {
    await run(a, 'nmap', [...NMAP, '-sS', '-D', 'RND:4', '-p', '3001-3004', a.sensor.ipv4])
    const group = await waitFor('the decoy group', () => decoys().find((d) => d.members.some((m) => m.src === a.peer.ipv4)), 30_000)
    expect(group.sender).toBe(a.peer.ipv4)
    expect(group.memberCount).toBe(5)
    expect(group.members.filter((m) => m.src !== a.peer.ipv4).every((m) => m.attribution === 'forged')).toBe(true)
    expect(group.members.find((m) => m.src === a.peer.ipv4)!.attribution).toBe('plausible')
    const scan = await scanFrom(a.peer.ipv4, 'decoy')
    expect(scan).toMatchObject({ src: a.peer.ipv4, decoy: group.id, sourceCount: 5, tool: 'nmap', attribution: 'plausible' })
    expect(decoys().filter((d) => d.members.some((m) => m.src === a.peer.ipv4))).toHaveLength(1)
    // No member got a scan of its own.
    expect(scans().filter((s) => s.phase === 'start' && s.shape !== 'decoy' && s.sources.some((x) => group.members.some((m) => m.src === x)))).toEqual([])
    // Grouping adds evidence, never a verdict: the sender's next probe is plausible and named.
    await run(a, 'nmap', [...NMAP, '-sS', '-p', '3005', a.sensor.ipv4])
    const next = await waitFor('the sender’s next hit', () => events.find((e): e is HitEvent => e.type === 'hit' && e.src === a.peer.ipv4 && e.dstPort === 3005))
    expect(next.attribution).toBe('plausible')
    expect(next.evidence).toEqual(expect.arrayContaining(['decoy', 'decoy:sender']))
  }, 120_000)

  it('nmap -D with on-link decoys nobody holds: the link layer finds them out, the group names the sender', async () => {
    await run(a, 'nmap', [...NMAP, '-sS', '-S', '198.18.0.3', '-e', a.peer.ifname, '-D', '198.18.0.77,198.18.0.78,ME,198.18.0.79', '-p', '3011-3013', a.sensor.ipv4])
    const group = await waitFor('the on-link decoy group', () => decoys().find((d) => d.members.some((m) => m.src === '198.18.0.3')), 30_000)
    expect(group.members.map((m) => m.src).sort()).toEqual(['198.18.0.3', '198.18.0.77', '198.18.0.78', '198.18.0.79'])
    expect(group.sender).toBe('198.18.0.3')
    for (const m of group.members) expect(m.attribution).toBe(m.src === '198.18.0.3' ? 'plausible' : 'forged')
    expect(await scanFrom('198.18.0.3', 'decoy')).toMatchObject({ src: '198.18.0.3', decoy: group.id })
  }, 120_000)

  it('nmap -sS over many ports: a vertical scan, tool nmap', async () => {
    await run(b, 'nmap', [...NMAP, '-sS', '-p', '3021-3030', b.sensor.ipv4])
    const scan = await scanFrom(b.peer.ipv4, 'vertical')
    // The kinds include the resets its kernel sends the tripwire listeners' SYN/ACKs.
    expect(scan).toMatchObject({ src: b.peer.ipv4, tool: 'nmap', dsts: [b.sensor.ipv4], attribution: 'plausible' })
    expect(scan.kinds).toContain('syn')
    expect(scan.portCount).toBeGreaterThanOrEqual(3)
    expect(scan.ports.every((p) => p >= 3021 && p <= 3030)).toBe(true)
  }, 120_000)

  it('nmap -sS to one port of two addresses of the host: horizontal, tool nmap', async () => {
    await run(a, 'nmap', [...NMAP, '-sS', '-S', '198.18.0.4', '-e', a.peer.ifname, '-p', '3031', a.sensor.ipv4, '198.18.0.100'])
    const scan = await scanFrom('198.18.0.4', 'horizontal')
    expect(scan).toMatchObject({ src: '198.18.0.4', ports: [3031], tool: 'nmap' })
    expect([...scan.dsts].sort()).toEqual([a.sensor.ipv4, '198.18.0.100'].sort())
  }, 120_000)

  it('masscan: a vertical scan, tool masscan', async () => {
    await run(b, 'masscan', ['-p3041-3045', b.sensor.ipv4, '--rate', '200', '--wait', '0', '--adapter-ip', '198.18.1.50', '-e', b.peer.ifname, '--router-mac', b.sensor.mac])
    const scan = await scanFrom('198.18.1.50', 'vertical')
    expect(scan).toMatchObject({ src: '198.18.1.50', tool: 'masscan' })
    expect(scan.kinds).toContain('syn')
  }, 120_000)

  it('zmap: one port of two addresses of the host, horizontal, tool zmap', async () => {
    // zmap's default blacklist excludes private and reserved space, 198.18.0.0/15 among it.
    const blacklist = join(scratch, 'zmap-blacklist.conf')
    await writeFile(blacklist, '')
    await run(b, 'zmap', ['-q', '-p', '3050', '-S', '198.18.1.60', '-i', b.peer.ifname, '-G', b.sensor.mac, '-b', blacklist, '-r', '200', '-c', '1', `${b.sensor.ipv4}/32`, '198.18.1.100/32'])
    const scan = await scanFrom('198.18.1.60', 'horizontal')
    expect(scan).toMatchObject({ src: '198.18.1.60', tool: 'zmap', ports: [3050] })
    expect([...scan.dsts].sort()).toEqual([b.sensor.ipv4, '198.18.1.100'].sort())
  }, 120_000)

  it('two sources splitting a port set with nmap: one distributed scan', async () => {
    await Promise.all([
      run(a, 'nmap', [...NMAP, '-sS', '-S', '198.18.0.5', '-e', a.peer.ifname, '-p', '3055,3057', a.sensor.ipv4]),
      run(b, 'nmap', [...NMAP, '-sS', '-S', '198.18.1.5', '-e', b.peer.ifname, '-p', '3056,3058', b.sensor.ipv4]),
    ])
    const scan = await scanFrom('198.18.0.5', 'distributed')
    expect([...scan.sources].sort()).toEqual(['198.18.0.5', '198.18.1.5'])
    expect([...scan.ports].sort()).toEqual([3055, 3056, 3057, 3058])
    expect(scan.tool).toBe('nmap')
  }, 120_000)
})
