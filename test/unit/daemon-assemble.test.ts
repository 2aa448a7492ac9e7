/**
 * The assembly (startDaemon: config → pipeline) on the fake addon, without root:
 * what the config says is what the firewall sees. `block: 'off'` is documented as
 * `verified` in dry-run, so the nftables responder must print its scripts and run
 * none of them — it used to create the table and add a real element for the first
 * verified connect.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { startDaemon } from '../../lib/daemon/assemble.js'
import { resolveConfig } from '../../lib/daemon/config.js'
import type { PortanoiaEvent } from '../../lib/daemon/events.js'
import type { RunFn } from '../../lib/responders/types.js'
import { waitFor } from '../helpers/cli.js'
import { fakeBinding, fakeHost } from '../helpers/fake-binding.js'

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c()
})

describe('block off', () => {
  it('runs no nft command that changes anything, and prints the script it would run', async () => {
    const runs: string[] = []
    // Answers like nft on a host without the table: listing fails with ENOENT's text.
    const run: RunFn = async (cmd, args, input) => {
      runs.push(`${cmd} ${args.join(' ')}${input === undefined ? '' : `\n${input}`}`)
      return args.includes('list') ? { code: 1, stdout: '', stderr: 'Error: No such file or directory' } : { code: 0, stdout: '', stderr: '' }
    }
    const binding = fakeBinding()
    const scripts: string[] = []
    const daemon = await startDaemon(
      resolveConfig({ tcp: [2222], block: 'off', statsInterval: '0s', control: false, state: false }),
      { onScript: (s) => scripts.push(s) },
      { host: fakeHost(), sensor: { binding }, run },
    )
    closers.push(() => daemon.close())
    binding.captures[0]!.hit({ src: '198.18.0.2', dstPort: 2222, kind: 'connect' })
    await waitFor('the would-be block script', () => scripts.some((s) => s.includes('198.18.0.2')))
    expect(scripts.find((s) => s.includes('198.18.0.2'))).toContain('create element inet portanoia verified4 { 198.18.0.2 timeout 3600s }')
    // Reading the kernel is fine; nothing is ever written to it.
    expect(runs.filter((r) => r.startsWith('nft -f'))).toEqual([])
  })
})

describe('scan tracking on and off (config "scans", --no-scans)', () => {
  for (const scans of [true, false]) {
    it(`scans: ${scans}`, async () => {
      const binding = fakeBinding()
      const events: PortanoiaEvent[] = []
      const config = resolveConfig({ tcp: [2222, 2223, 2224, 2225], block: 'off', statsInterval: '1s', control: false, state: false, scans })
      expect(config.scans).toBe(scans)
      const daemon = await startDaemon(config, { onEvent: (e) => events.push(e) }, { host: fakeHost(), sensor: { binding }, run: async () => ({ code: 0, stdout: '', stderr: '' }) })
      closers.push(() => daemon.close())
      // One source, four ports: a vertical scan.
      for (const dstPort of [2222, 2223, 2224, 2225]) binding.captures[0]!.hit({ src: '198.18.0.9', dstPort, kind: 'syn' })
      // A stats event comes after several sweeps (250 ms each): the scan has been announced by then, if tracked.
      const statsAfterHits = (): PortanoiaEvent | undefined => events.find((e) => e.type === 'stats' && e.policy.hits >= 4)
      await waitFor('a stats event after the hits', () => statsAfterHits() !== undefined)
      const stats = statsAfterHits()
      const announced = events.filter((e) => e.type === 'scan')
      if (scans) {
        expect(stats).toHaveProperty('scans')
        expect(announced).toMatchObject([{ phase: 'start', shape: 'vertical', src: '198.18.0.9' }])
      } else {
        expect(stats).not.toHaveProperty('scans')
        expect(announced).toEqual([])
      }
    })
  }
})
