/**
 * The test network itself: namespaces come up linked and addressed, reach each other
 * over IPv4 and IPv6, and are gone after destroy(). Every privileged test relies on it.
 */
import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { pathToFileURL } from 'node:url'
import { join } from 'node:path'
import { runChild, PACKAGE_ROOT } from '../helpers/child.js'
import { createTestNet, IS_ROOT, warnIfNotRoot } from '../helpers/netns.js'

warnIfNotRoot('test/privileged/netns.test.ts')

describe.skipIf(!IS_ROOT)('test network', () => {
  it('links the sensor to its peers and tears everything down', async () => {
    const net = await createTestNet({ peers: 2 })
    try {
      const [a, b] = net.links
      const ping4 = await a!.peer.exec('ping', ['-c', '1', '-W', '2', a!.sensor.ipv4])
      expect(ping4.code).toBe(0)
      const ping6 = await b!.peer.exec('ping', ['-6', '-c', '1', '-W', '2', b!.sensor.ipv6])
      expect(ping6.code).toBe(0)
      // Peers are on separate links: peer 1 cannot reach peer 0's subnet address directly.
      const cross = await b!.peer.exec('ping', ['-c', '1', '-W', '1', a!.peer.ipv4])
      expect(cross.code).not.toBe(0)
    } finally {
      await net.destroy()
    }
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    expect(left).not.toContain(net.id)
  })

  it.each(['SIGTERM', 'SIGINT'] as const)('a process ended by %s removes its namespaces and still dies of the signal', async (sig) => {
    const lab = pathToFileURL(join(PACKAGE_ROOT, 'dist/lib/lab/netns.js')).href
    const child = runChild(`
      const { createNetnsNet } = await import(${JSON.stringify(lab)})
      const net = await createNetnsNet({ prefix: 'pnt-' })
      console.log('ready ' + net.namespaces.join(' '))
      setInterval(() => {}, 1000)
    `)
    const line = await child.line(/^ready /, 30_000)
    const names = line.slice('ready '.length).trim().split(' ')
    expect(names.length).toBeGreaterThan(1)
    const before = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    for (const n of names) expect(before).toContain(n)
    const exit = await child.stop(sig)
    const after = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    const left = names.filter((n) => after.includes(n))
    // A red run must not leave the child's namespaces behind either.
    for (const n of left) execFileSync('ip', ['netns', 'del', n])
    expect(exit.signal).toBe(sig)
    expect(left).toEqual([])
  })
})
