/**
 * The built CLI against defects found while making the kernel the truth (issue 8),
 * each reproduced as an operator would meet it, in test namespaces with real nft:
 * a TTL no backend can hold is a usage error before any table exists (it used to
 * pass, then every block failed after a `blocked` decision was emitted); a
 * spoofable TTL above the verified one is refused; `--exec` children never see the
 * fleet secrets of the daemon's environment.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { cli, startWatch, stopWatches, waitFor } from '../helpers/cli.js'
import { createTestNet, IS_ROOT, type TestNet, warnIfNotRoot } from '../helpers/netns.js'
import { nftHasTable } from '../helpers/nft.js'
import { tcpConnect } from '../helpers/tcp.js'

warnIfNotRoot('test/privileged/cli-hardening.test.ts')

let net: TestNet | undefined
const dirs: string[] = []

afterEach(async () => {
  await stopWatches()
  await net?.destroy()
  net = undefined
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

/** The table's presence, read with nft; a failing nft fails the test (test/helpers/nft.ts). */
const tableExists = (n: TestNet): Promise<boolean> => nftHasTable(n.sensorExec)

describe.skipIf(!IS_ROOT)('CLI hardening', () => {
  it('a TTL longer than the backend holds, or a spoofable TTL above the verified one: exit 2, no table', async () => {
    net = await createTestNet()
    const ns = net.sensorNs
    const cases: Array<[string[], RegExp]> = [
      [['watch', '--netns', ns, '--tcp', '2222', '--block-ttl', '25000d'], /--block-ttl: 25000d is longer than nftables allows/],
      [['watch', '--netns', ns, '--tcp', '2222', '--backend', 'ipset', '--block-ttl', '30d'], /--block-ttl: 30d is longer than ipset allows/],
      [['watch', '--netns', ns, '--tcp', '2222', '--spoofable-ttl', '2h'], /--spoofable-ttl: 2h is longer than the verified TTL/],
    ]
    for (const [args, message] of cases) {
      // Before the fix the first case ran (and was killed here): exit 2 must come at once.
      const r = await cli(args, 15_000)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toMatch(message)
      expect(r.stdout).toBe('')
    }
    expect(await tableExists(net)).toBe(false)
  })

  it('--exec children do not inherit PORTANOIA_CROWDSEC_* secrets', async () => {
    net = await createTestNet()
    const [a] = net.links as [TestNet['links'][0]]
    const dir = await mkdtemp(join(tmpdir(), 'pnexec-'))
    dirs.push(dir)
    const out = join(dir, 'env.txt')
    const w = await startWatch(
      ['watch', '--netns', net.sensorNs, '--tcp', '2222', '--json', '--exec', `sh -c 'env > ${out}'`],
      { env: { PORTANOIA_CROWDSEC_PASSWORD: 'hunter2-secret', PORTANOIA_CROWDSEC_BOUNCER_KEY: 'bouncer-secret', PORTANOIA_TEST_MARK: 'visible' } },
    )
    await tcpConnect(a.peer, a.sensor.ipv4, 2222)
    await waitFor('the exec command', async () => (await readFile(out, 'utf8').catch(() => '')).includes('PORTANOIA_TEST_MARK'))
    const env = await readFile(out, 'utf8')
    // The control: the child got the environment, minus the secrets.
    expect(env).toContain('PORTANOIA_TEST_MARK=visible')
    expect(env).not.toContain('PORTANOIA_CROWDSEC_')
    expect(env).not.toContain('hunter2-secret')
    expect(w.out()).toContain('"reason":"blocked"')
  })
})
