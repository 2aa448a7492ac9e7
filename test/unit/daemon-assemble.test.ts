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
