/**
 * Fleet mode and metrics at the CLI, without root: the --crowdsec-* flags and the
 * config file's `crowdsec` section merge field by field and are checked with the
 * fleet's schema (errors name the flag or field); --metrics addresses; the fleet
 * events in the stream's schema (eventSchema, parseEventLine) and in the pretty
 * rendering; and the built CLI refusing an unreadable secret file with exit 2
 * before anything is opened, without printing any secret.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { resolveWatch } from '../../lib/cli/options.js'
import { parseConfig, parseMetricsListen } from '../../lib/daemon/config.js'
import { parseCommandLine } from '../../lib/cli/program.js'
import { renderEvent } from '../../lib/cli/render.js'
import { eventSchema, parseEventLine } from '../../lib/daemon/events.js'
import { fleetDecisionEvent, fleetEvent } from '../../lib/fleet/events.js'

function watchInputOf(argv: string[]) {
  const p = parseCommandLine(argv)
  if (p.command !== 'watch') throw new Error(`not watch: ${p.command}`)
  return p.input
}

describe('--crowdsec-* flags and the crowdsec config section', () => {
  it('maps the flags (FLEET_FLAGS) and fills the defaults', () => {
    const input = watchInputOf([
      'watch', '--tcp', '2222',
      '--crowdsec-url', 'http://198.18.0.9:8080',
      '--crowdsec-machine', 'web-1',
      '--crowdsec-password-file', '/etc/portanoia/crowdsec.password',
      '--crowdsec-bouncer-key-file', '/etc/portanoia/crowdsec.key',
    ])
    expect(input.crowdsec).toEqual({
      url: 'http://198.18.0.9:8080',
      machine: 'web-1',
      passwordFile: '/etc/portanoia/crowdsec.password',
      bouncerKeyFile: '/etc/portanoia/crowdsec.key',
    })
    expect(resolveWatch(input).crowdsec).toEqual({
      url: 'http://198.18.0.9:8080',
      machine: 'web-1',
      passwordFile: '/etc/portanoia/crowdsec.password',
      bouncerKeyFile: '/etc/portanoia/crowdsec.key',
      pushIntervalMs: 1000,
      pushSpoofable: false,
      pullIntervalMs: 2000,
      queueLimit: 1000,
      timeoutMs: 5000,
    })
    expect(resolveWatch(watchInputOf(['watch', '--tcp', '2222'])).crowdsec).toBeUndefined()
  })

  it('flags override the config section field by field', () => {
    const config = parseConfig(
      JSON.stringify({ tcp: [2222], crowdsec: { url: 'http://198.18.0.9:8080', machine: 'old', pullIntervalMs: 500 } }),
      'c.json',
    )
    const plan = resolveWatch(watchInputOf(['watch', '--crowdsec-machine', 'web-2', '--crowdsec-password-file', '/p']), config)
    expect(plan.crowdsec).toMatchObject({ url: 'http://198.18.0.9:8080', machine: 'web-2', passwordFile: '/p', pullIntervalMs: 500 })
  })

  it('names the flag or the field that is wrong', () => {
    const cases: Array<[string[], object | undefined, RegExp]> = [
      [['--crowdsec-machine', 'web-1'], undefined, /--crowdsec-machine: fleet mode needs the Local API's URL/],
      [['--crowdsec-url', 'ftp://198.18.0.9'], undefined, /^--crowdsec-url: must be an http/],
      [['--crowdsec-url', 'http://user:pw@198.18.0.9'], undefined, /^--crowdsec-url: /],
      [['--crowdsec-url', 'nope'], { crowdsec: { url: 'http://198.18.0.9:8080' } }, /^--crowdsec-url: /],
    ]
    for (const [flags, config, re] of cases) {
      const input = watchInputOf(['watch', '--tcp', '2222', ...flags])
      const cfg = config === undefined ? undefined : parseConfig(JSON.stringify(config), 'c.json')
      expect(() => resolveWatch(input, cfg), flags.join(' ')).toThrow(re)
    }
    expect(() => parseConfig(JSON.stringify({ crowdsec: { url: 'nope' } }), 'c.json')).toThrow(/^c\.json:1:20: field crowdsec\.url: /)
    expect(() => parseConfig(JSON.stringify({ crowdsec: { url: 'http://198.18.0.9:8080', pullIntervalMs: 10 } }), 'c.json')).toThrow(
      /^c\.json:1:\d+: field crowdsec\.pullIntervalMs/,
    )
    expect(() => parseConfig(JSON.stringify({ crowdsec: { url: 'http://198.18.0.9:8080', password: 'x' } }), 'c.json')).toThrow(
      /unknown field "crowdsec\.password" \(did you mean "passwordFile"\?\)/,
    )
  })

  it('the built CLI: an unreadable secret file is a configuration error (exit 2), and no secret is printed', async () => {
    const main = join(import.meta.dirname, '../../dist/lib/cli/main.js')
    if (!existsSync(main)) throw new Error('dist/ is missing: run npm run build:ts')
    const dir = await mkdtemp(join(tmpdir(), 'portanoia-fleet-cli-'))
    try {
      const key = join(dir, 'key')
      await writeFile(key, 'very-secret-bouncer-key\n', { mode: 0o600 })
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile(
          process.execPath,
          [main, 'watch', '--tcp', '2222', '--crowdsec-url', 'http://127.0.0.1:9', '--crowdsec-machine', 'web-1',
            '--crowdsec-password-file', join(dir, 'missing'), '--crowdsec-bouncer-key-file', key],
          { env: { ...process.env, PORTANOIA_CROWDSEC_PASSWORD: 'env-secret-password' }, timeout: 30_000 },
          (err, stdout, stderr) => resolve({ code: (err as { code?: number } | null)?.code ?? 0, out: `${stdout}${stderr}` }),
        )
      })
      expect(r.code).toBe(2)
      expect(r.out).toMatch(/crowdsec machine password file .*missing: ENOENT/)
      expect(r.out).not.toContain('very-secret-bouncer-key')
      expect(r.out).not.toContain('env-secret-password')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('--metrics', () => {
  it('takes HOST:PORT, :PORT for loopback, [v6]:PORT; refuses a bare port', () => {
    expect(parseMetricsListen('127.0.0.1:9464')).toEqual({ host: '127.0.0.1', port: 9464 })
    expect(parseMetricsListen(':9464')).toEqual({ host: '127.0.0.1', port: 9464 })
    expect(parseMetricsListen('[::1]:9464')).toEqual({ host: '::1', port: 9464 })
    expect(parseMetricsListen('0.0.0.0:9464')).toEqual({ host: '0.0.0.0', port: 9464 })
    expect(parseMetricsListen('localhost:0')).toEqual({ host: 'localhost', port: 0 })
    for (const bad of ['9464', '127.0.0.1', '127.0.0.1:70000', '[nope]:9464', 'a b:1', '::1:9464']) {
      expect(() => parseMetricsListen(bad), bad).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_CONFIG' }))
    }
    expect(() => parseMetricsListen('9464')).toThrow(/bare port/)
  })

  it('flag and config key', () => {
    expect(resolveWatch(watchInputOf(['watch', '--tcp', '2222', '--metrics', ':9464'])).metrics).toEqual({ host: '127.0.0.1', port: 9464 })
    const config = parseConfig(JSON.stringify({ metrics: '[::1]:9100' }), 'c.json')
    expect(resolveWatch(watchInputOf(['watch', '--tcp', '2222']), config).metrics).toEqual({ host: '::1', port: 9100 })
    expect(() => resolveWatch(watchInputOf(['watch', '--tcp', '2222']), parseConfig('{"metrics":"9100"}', 'c.json'))).toThrow(
      /^c\.json:1:2 \(field metrics\): /,
    )
    expect(resolveWatch(watchInputOf(['watch', '--tcp', '2222'])).metrics).toBeUndefined()
  })
})

describe('fleet events in the stream', () => {
  const applied = fleetDecisionEvent(
    { action: 'block', reason: 'fleet', src: '198.18.7.7', family: 4, ttlMs: 3_599_000, expiresAt: '2030-01-01T00:00:00.000Z', origin: 'portanoia', scenario: 'portanoia/verified-connect', fleetId: 42 },
    Date.UTC(2030, 0, 1),
  )
  const refused = fleetDecisionEvent({ action: 'none', reason: 'guard:gateway', src: '198.18.0.1', family: 4, origin: 'cscli', scenario: 'manual' })
  const lifted = fleetEvent({ op: 'unblocked', src: '198.18.7.7' })
  const failed = fleetEvent({ op: 'push-failed', code: 'PORTANOIA_LAPI_UNREACHABLE', message: 'connect ECONNREFUSED', count: 3, hint: 'is LAPI running?' })

  it('are events: the schema accepts them and parseEventLine returns them', () => {
    for (const e of [applied, refused, lifted, failed]) {
      expect(eventSchema.parse(e)).toEqual(e)
      expect(parseEventLine(JSON.stringify(e))).toEqual(e)
    }
  })

  it('a bad fleet decision names its field', () => {
    expect(() => parseEventLine(JSON.stringify({ ...refused, reason: 'because' }))).toThrow(/^reason: /)
    expect(() => parseEventLine(JSON.stringify({ ...lifted, op: 'gossip' }))).toThrow(/^op: /)
  })

  it('render as lines of their own', () => {
    const plain = (e: Parameters<typeof renderEvent>[0]): string => renderEvent(e).replace(/^\S+ /, '')
    expect(plain(applied)).toBe('FLEET   198.18.7.7 blocked for 59m59s from fleet (portanoia, portanoia/verified-connect, #42)')
    expect(plain(refused)).toBe('GUARD   198.18.0.1 guard:gateway (fleet ban refused) from fleet (cscli, manual)')
    expect(plain(lifted)).toBe('FLEET   unblocked 198.18.7.7')
    expect(plain(failed)).toBe('FLEET   push-failed PORTANOIA_LAPI_UNREACHABLE: connect ECONNREFUSED [3] — is LAPI running?')
  })
})
