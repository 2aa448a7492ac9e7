// The LAPI client against a fake LAPI on 127.0.0.1: lazy login and token reuse,
// re-login on 401 and before expiry, null stream lists, errors that carry status,
// retryability and a hint but never a secret; plus the Go duration codec, the
// Secret wrapper and the fleet config fragment.
import { inspect } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { isPortanoiaError } from '../../lib/errors.js'
import { fleetConfigSchema, resolveFleetConfig } from '../../lib/fleet/config.js'
import { formatGoDuration, LapiClient, LapiError, parseGoDuration, parseLapiUrl, Secret } from '../../lib/fleet/lapi.js'
import { type FakeLapi, startFakeLapi } from '../helpers/fake-lapi.js'

const PASSWORD = 'pw-very-secret-1'
const KEY = 'bouncer-key-secret-2'

let fake: FakeLapi | null = null
afterEach(async () => {
  await fake?.close()
  fake = null
})

async function setup(tokenLifeMs?: number): Promise<FakeLapi> {
  fake = await startFakeLapi({ machine: 'host-a', password: PASSWORD, bouncerKeys: [KEY], ...(tokenLifeMs === undefined ? {} : { tokenLifeMs }) })
  return fake
}

const alert = {
  scenario: 'portanoia/verified-connect', scenario_hash: '', scenario_version: '', message: 'm', events_count: 1,
  start_at: '2026-01-01T00:00:00Z', stop_at: '2026-01-01T00:00:00Z', capacity: 0, leakspeed: '0', simulated: false,
  events: [], source: { scope: 'Ip', value: '198.18.5.5' },
  decisions: [{ origin: 'portanoia', type: 'ban', scope: 'Ip', value: '198.18.5.5', duration: '1h', scenario: 'portanoia/verified-connect' }],
}

function expectNoSecret(e: unknown): void {
  const text = `${String(e)} ${(e as Error).message} ${JSON.stringify(e)} ${inspect(e)}`
  expect(text).not.toContain(PASSWORD)
  expect(text).not.toContain(KEY)
  expect(text).not.toContain('jwt-')
}

describe('Go durations', () => {
  it('parses what LAPI sends', () => {
    expect(parseGoDuration('4h')).toBe(4 * 3_600_000)
    expect(parseGoDuration('3h59m58.123s')).toBeCloseTo(3 * 3_600_000 + 59 * 60_000 + 58_123, 6)
    expect(parseGoDuration('1.5h')).toBe(5_400_000)
    expect(parseGoDuration('90m')).toBe(5_400_000)
    expect(parseGoDuration('300ms')).toBe(300)
    expect(parseGoDuration('1500us')).toBeCloseTo(1.5, 9)
    expect(parseGoDuration('2µs')).toBeCloseTo(0.002, 9)
    expect(parseGoDuration('10ns')).toBeCloseTo(0.00001, 12)
    expect(parseGoDuration('.5s')).toBe(500)
    expect(parseGoDuration('-1.5s')).toBe(-1500)
    expect(parseGoDuration('0')).toBe(0)
    expect(parseGoDuration('1h0m0s')).toBe(3_600_000)
  })

  it('refuses what Go refuses', () => {
    for (const bad of ['', '4', '1h2', 'h', 'abc', '1d', '1 h', '--1s', '1.2.3s', '-']) {
      expect(parseGoDuration(bad), bad).toBeNull()
    }
  })

  it('formats whole seconds, rounding up, never zero', () => {
    expect(formatGoDuration(3_600_000)).toBe('1h')
    expect(formatGoDuration(5_400_500)).toBe('1h30m1s')
    expect(formatGoDuration(59_000)).toBe('59s')
    expect(formatGoDuration(0)).toBe('1s')
    expect(formatGoDuration(86_400_000)).toBe('24h')
    for (const ms of [1000, 61_000, 3_661_000, 7_200_000]) expect(parseGoDuration(formatGoDuration(ms))).toBe(ms)
  })
})

describe('Secret and URL', () => {
  it('never prints its value', () => {
    const s = new Secret('hunter2')
    expect(String(s)).toBe('[redacted]')
    expect(JSON.stringify({ s })).toBe('{"s":"[redacted]"}')
    expect(inspect({ s })).not.toContain('hunter2')
    expect(s.reveal()).toBe('hunter2')
  })

  it('accepts http and https only, without credentials', () => {
    expect(parseLapiUrl('http://127.0.0.1:8080').href).toBe('http://127.0.0.1:8080/')
    expect(parseLapiUrl('https://lapi.example/prefix').href).toBe('https://lapi.example/prefix/')
    for (const bad of ['ftp://x', 'file:///etc/passwd', 'http://u:p@x', 'not a url', 'http://x/?a=1']) {
      expect(() => parseLapiUrl(bad), bad).toThrow(/crowdsec\.url/)
    }
  })
})

describe('LapiClient', () => {
  it('logs in lazily, reuses the token, pushes alerts', async () => {
    const f = await setup()
    const c = new LapiClient({ url: f.url, machine: 'host-a', password: PASSWORD })
    expect(await c.pushAlerts([alert])).toHaveLength(1)
    expect(await c.pushAlerts([alert, alert])).toHaveLength(2)
    expect(f.logins).toBe(1)
    expect(f.alertBatches).toHaveLength(2)
    expect(await c.pushAlerts([])).toEqual([])
    expect(f.alertBatches).toHaveLength(2)
  })

  it('logs in again on 401 and repeats the request once', async () => {
    const f = await setup()
    const c = new LapiClient({ url: f.url, machine: 'host-a', password: PASSWORD })
    await c.pushAlerts([alert])
    f.revokeTokens()
    await c.pushAlerts([alert])
    expect(f.logins).toBe(2)
    expect(f.alertBatches).toHaveLength(2)
    expect(f.requests.filter((r) => r === 'POST /v1/alerts')).toHaveLength(3)
    expect(await c.deleteDecisions('198.18.5.5')).toBe(1)
    expect(f.requests).toContain('DELETE /v1/decisions?ip=198.18.5.5')
  })

  it('logs in again before the token expires', async () => {
    const f = await setup(30_000)
    const c = new LapiClient({ url: f.url, machine: 'host-a', password: PASSWORD, renewBeforeMs: 60_000 })
    await c.pushAlerts([alert])
    await c.pushAlerts([alert])
    expect(f.logins).toBe(2)
  })

  it('a wrong password is an auth error without the password in it', async () => {
    const f = await setup()
    const c = new LapiClient({ url: f.url, machine: 'host-a', password: `${PASSWORD}x` })
    const e = await c.pushAlerts([alert]).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(LapiError)
    expect((e as LapiError).code).toBe('PORTANOIA_LAPI_AUTH')
    expect((e as LapiError).status).toBe(401)
    expect((e as LapiError).retryable).toBe(false)
    expect((e as LapiError).hint).toMatch(/cscli/)
    expectNoSecret(e)
  })

  it('sends a name/version user agent, the only shape LAPI 1.4 lets log in', async () => {
    const f = await setup()
    const bad = new LapiClient({ url: f.url, machine: 'host-a', password: PASSWORD, fetch: (u, init) => {
      const headers = new Headers(init.headers)
      headers.set('User-Agent', 'portanoia')
      return fetch(u, { ...init, headers })
    } })
    await expect(bad.login()).rejects.toMatchObject({ code: 'PORTANOIA_LAPI_AUTH' })
    await new LapiClient({ url: f.url, machine: 'host-a', password: PASSWORD }).login()
    expect(() => new LapiClient({ url: f.url, userAgent: 'portanoia' })).toThrow(/name\/version/)
    expect(() => new LapiClient({ url: f.url, userAgent: 'a/1 b/2' })).toThrow(/name\/version/)
  })

  it('server errors are retryable and carry the status', async () => {
    const f = await setup()
    f.failNext('/v1/alerts', 1, 500)
    const c = new LapiClient({ url: f.url, machine: 'host-a', password: PASSWORD })
    const e = (await c.pushAlerts([alert]).catch((x: unknown) => x)) as LapiError
    expect(e.code).toBe('PORTANOIA_LAPI_HTTP')
    expect(e.status).toBe(500)
    expect(e.retryable).toBe(true)
    expect(e.message).toContain('scripted failure')
  })

  it('reads the stream with the bouncer key, null lists as empty', async () => {
    const f = await setup()
    const c = new LapiClient({ url: f.url, bouncerKey: KEY })
    expect(await c.stream(true)).toEqual({ new: [], deleted: [] })
    f.feed({ new: [{ value: '198.18.7.7', id: 42 }] })
    const s = await c.stream(false)
    expect(s.new).toEqual([
      { id: 42, origin: 'cscli', type: 'ban', scope: 'Ip', value: '198.18.7.7', duration: '3h59m58.123s', scenario: 'manual' },
    ])
    expect(s.deleted).toEqual([])
    expect(f.requests.slice(0, 2)).toEqual(['GET /v1/decisions/stream?startup=true', 'GET /v1/decisions/stream'])
  })

  it('a wrong bouncer key is an auth error without the key in it', async () => {
    const f = await setup()
    const c = new LapiClient({ url: f.url, bouncerKey: `${KEY}-wrong` })
    const e = await c.stream(true).catch((x: unknown) => x)
    expect((e as LapiError).code).toBe('PORTANOIA_LAPI_AUTH')
    expect((e as LapiError).status).toBe(403)
    expectNoSecret(e)
    expect(String((e as Error).message)).not.toContain('wrong')
  })

  it('unreachable and slow LAPIs are retryable errors within the deadline', async () => {
    const f = await setup()
    const url = f.url
    await f.close()
    fake = null
    const down = new LapiClient({ url, bouncerKey: KEY, timeoutMs: 1000 })
    const e1 = (await down.stream(true).catch((x: unknown) => x)) as LapiError
    expect(e1.code).toBe('PORTANOIA_LAPI_UNREACHABLE')
    expect(e1.retryable).toBe(true)
    expect(e1.message).toMatch(/ECONNREFUSED/)
    expectNoSecret(e1)

    const slow = await setup()
    slow.delayMs = 1000
    const c = new LapiClient({ url: slow.url, bouncerKey: KEY, timeoutMs: 100 })
    // The answer comes after 1 s; a timeout error (not an answer) is what shows the client stopped waiting.
    const e2 = (await c.stream(true).catch((x: unknown) => x)) as LapiError
    expect(e2.code).toBe('PORTANOIA_LAPI_UNREACHABLE')
    expect(e2.message).toMatch(/no answer within 100 ms/)
  })

  it('says what is missing when a capability is not configured', async () => {
    const c = new LapiClient({ url: 'http://127.0.0.1:9' })
    await expect(c.stream(true)).rejects.toMatchObject({ code: 'PORTANOIA_LAPI_NOT_CONFIGURED' })
    await expect(c.pushAlerts([alert])).rejects.toMatchObject({ code: 'PORTANOIA_LAPI_NOT_CONFIGURED' })
  })
})

describe('fleet config', () => {
  const files = (map: Record<string, string>, mode = 0o100600) => async (path: string) => {
    const text = map[path]
    if (text === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' })
    return { text, mode }
  }

  it('applies defaults and reads secrets from files, trimming the newline', async () => {
    const cfg = fleetConfigSchema.parse({
      crowdsec: { url: 'http://198.18.0.1:8090', machine: 'a', passwordFile: '/pw', bouncerKeyFile: '/key' },
    })
    expect(cfg.crowdsec).toMatchObject({ pushIntervalMs: 1000, pullIntervalMs: 2000, queueLimit: 1000 })
    const r = await resolveFleetConfig(cfg, { env: {}, readSecretFile: files({ '/pw': `${PASSWORD}\n`, '/key': KEY }) })
    expect(r?.push).toBe(true)
    expect(r?.pull).toBe(true)
    expect(r?.password?.reveal()).toBe(PASSWORD)
    expect(r?.bouncerKey?.reveal()).toBe(KEY)
    expect(r?.warnings).toEqual([])
    const printed = `${JSON.stringify(r)} ${inspect(r)}`
    expect(printed).not.toContain(PASSWORD)
    expect(printed).not.toContain(KEY)
  })

  it('falls back to the environment and warns about readable secret files', async () => {
    const cfg = fleetConfigSchema.parse({ crowdsec: { url: 'https://lapi:8080', machine: 'a', bouncerKeyFile: '/key' } })
    const r = await resolveFleetConfig(cfg, {
      env: { PORTANOIA_CROWDSEC_PASSWORD: PASSWORD },
      readSecretFile: files({ '/key': KEY }, 0o100644),
    })
    expect(r?.password?.reveal()).toBe(PASSWORD)
    expect(r?.warnings[0]).toMatch(/readable by others/)
    const pullOnly = await resolveFleetConfig(fleetConfigSchema.parse({ crowdsec: { url: 'http://x:1' } }), {
      env: { PORTANOIA_CROWDSEC_BOUNCER_KEY: KEY },
    })
    expect(pullOnly).toMatchObject({ push: false, pull: true })
  })

  it('refuses configurations that cannot work', async () => {
    expect(fleetConfigSchema.safeParse({ crowdsec: { url: 'ftp://x' } }).success).toBe(false)
    expect(fleetConfigSchema.safeParse({ crowdsec: { url: 'http://x', bogus: 1 } }).success).toBe(false)
    expect(await resolveFleetConfig(fleetConfigSchema.parse({}))).toBeNull()
    const noPw = fleetConfigSchema.parse({ crowdsec: { url: 'http://x', machine: 'a' } })
    await expect(resolveFleetConfig(noPw, { env: {} })).rejects.toThrow(/has no password/)
    const nothing = fleetConfigSchema.parse({ crowdsec: { url: 'http://x' } })
    await expect(resolveFleetConfig(nothing, { env: {} })).rejects.toThrow(/neither pushing nor pulling/)
    const missing = fleetConfigSchema.parse({ crowdsec: { url: 'http://x', bouncerKeyFile: '/nope' } })
    const e = await resolveFleetConfig(missing, { env: {}, readSecretFile: files({}) }).catch((x: unknown) => x)
    expect(isPortanoiaError(e, 'PORTANOIA_BAD_CONFIG')).toBe(true)
    expect((e as Error).message).toMatch(/ENOENT/)
    const empty = fleetConfigSchema.parse({ crowdsec: { url: 'http://x', bouncerKeyFile: '/k' } })
    await expect(resolveFleetConfig(empty, { env: {}, readSecretFile: files({ '/k': '\n' }) })).rejects.toThrow(/one non-empty line/)
  })
})
