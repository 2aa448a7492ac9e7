/**
 * A small client for CrowdSec's Local API (LAPI): watcher login (machine id +
 * password → JWT, renewed before it expires and again on a 401), pushing alerts,
 * deleting decisions by address, and the bouncer's decision stream. Owns the
 * HTTP exchange only: every request has a deadline (AbortSignal.timeout), every
 * failure becomes a LapiError with the HTTP status (if any), whether retrying can
 * help, and a hint. Secrets (password, JWT, bouncer key) are held in Secret
 * wrappers and scrubbed from every message, so an error or a log line can never
 * carry one. Also the Go duration codec LAPI speaks (`4h`, `3h59m58.123s`).
 * Runs on the JS thread; it keeps no state but the token.
 */

import { inspect } from 'node:util'
import { PortanoiaError } from '../errors.js'

// ---------------------------------------------------------------------------
// Secrets

const REDACTED = '[redacted]'

/**
 * A string that refuses to be printed: String(), JSON.stringify and
 * util.inspect all show `[redacted]`. Only `reveal()` gives the value, and only
 * the code that puts it on the wire calls it.
 */
export class Secret {
  readonly #value: string

  constructor(value: string) {
    this.#value = value
  }

  reveal(): string {
    return this.#value
  }

  toString(): string {
    return REDACTED
  }

  toJSON(): string {
    return REDACTED
  }

  [inspect.custom](): string {
    return REDACTED
  }
}

function asSecret(v: Secret | string): Secret {
  return v instanceof Secret ? v : new Secret(v)
}

// ---------------------------------------------------------------------------
// Go durations

const GO_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
}

/**
 * Parses a Go duration (time.ParseDuration syntax: optional sign, then one or
 * more decimal numbers each with a unit ns/us/µs/ms/s/m/h, e.g. `3h59m58.123s`,
 * `-1.5s`, `0`) into milliseconds. Returns null for anything else: LAPI sends the
 * time remaining this way, and a value we cannot read must be skipped, not guessed.
 */
export function parseGoDuration(text: string): number | null {
  if (typeof text !== 'string') return null
  let s = text.trim()
  let sign = 1
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1
    s = s.slice(1)
  }
  if (s === '0') return 0
  if (s === '') return null
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y
  let total = 0
  let at = 0
  while (at < s.length) {
    part.lastIndex = at
    const m = part.exec(s)
    if (m === null) return null
    total += Number(m[1]) * (GO_UNITS_MS[m[2] as string] as number)
    at = part.lastIndex
  }
  return sign * total
}

/**
 * Milliseconds as a Go duration LAPI accepts, rounded up to whole seconds (a ban
 * must not end before the local one): 3_600_000 → `1h`, 5_400_500 → `1h30m1s`.
 */
export function formatGoDuration(ms: number): string {
  let s = Math.max(1, Math.ceil(ms / 1000))
  const h = Math.floor(s / 3600)
  s -= h * 3600
  const m = Math.floor(s / 60)
  s -= m * 60
  let out = ''
  if (h > 0) out += `${h}h`
  if (m > 0) out += `${m}m`
  if (s > 0) out += `${s}s`
  return out
}

// ---------------------------------------------------------------------------
// Wire types (the subset of LAPI's swagger portanoia sends and reads)

export interface LapiSource {
  scope: string
  value: string
  ip?: string
}

export interface LapiAlertDecision {
  origin: string
  type: string
  scope: string
  value: string
  /** A Go duration. */
  duration: string
  scenario: string
}

export interface LapiEventMeta {
  key: string
  value: string
}

export interface LapiEvent {
  timestamp: string
  meta: LapiEventMeta[]
}

/** One alert as POST /v1/alerts wants it: every field here is required by LAPI's validator. */
export interface LapiAlert {
  scenario: string
  scenario_hash: string
  scenario_version: string
  message: string
  events_count: number
  start_at: string
  stop_at: string
  capacity: number
  leakspeed: string
  simulated: boolean
  events: LapiEvent[]
  source: LapiSource
  decisions: LapiAlertDecision[]
  labels?: string[]
}

/** A decision as the stream returns it. */
export interface LapiDecision {
  id?: number
  origin: string
  type: string
  scope: string
  value: string
  /** Time remaining, as a Go duration. */
  duration: string
  scenario: string
  until?: string
}

/** The stream's answer with LAPI's `null` lists turned into empty ones. */
export interface DecisionStream {
  new: LapiDecision[]
  deleted: LapiDecision[]
}

// ---------------------------------------------------------------------------
// Errors

export type LapiErrorCode =
  | 'PORTANOIA_LAPI_UNREACHABLE'
  | 'PORTANOIA_LAPI_AUTH'
  | 'PORTANOIA_LAPI_HTTP'
  | 'PORTANOIA_LAPI_BAD_RESPONSE'
  | 'PORTANOIA_LAPI_NOT_CONFIGURED'

/** A failed LAPI call. `retryable` says whether the same request may succeed later. */
export class LapiError extends PortanoiaError {
  readonly status: number | undefined
  readonly retryable: boolean

  constructor(
    code: LapiErrorCode,
    message: string,
    options: { status?: number; retryable: boolean; hint: string; cause?: unknown },
  ) {
    super(code, message, { hint: options.hint, cause: options.cause })
    this.name = 'LapiError'
    this.status = options.status
    this.retryable = options.retryable
  }
}

// ---------------------------------------------------------------------------
// Client

export type FetchFn = (input: string, init: RequestInit) => Promise<Response>

export interface LapiClientOptions {
  /** Base URL, e.g. `http://10.0.0.5:8080` (http or https). */
  url: string
  /** Watcher machine id (push, delete). */
  machine?: string
  password?: Secret | string
  /** Bouncer API key (stream). */
  bouncerKey?: Secret | string
  /** Deadline per request, ms. Default 5000. */
  timeoutMs?: number
  /** Log in again this long before the token's announced expiry, ms. Default 60 s. */
  renewBeforeMs?: number
  /** Injected for tests; default global fetch. */
  fetch?: FetchFn
  /** Milliseconds; default Date.now. */
  now?: () => number
  /**
   * `name/version`, exactly one slash: LAPI 1.4 records the part after the slash
   * as the machine's version and refuses a login ("incorrect Username or
   * Password") when the header has another shape. Default `portanoia/0.1.0`.
   */
  userAgent?: string
}

export const DEFAULT_USER_AGENT = 'portanoia/0.1.0'

const DEFAULT_TIMEOUT_MS = 5000
const DEFAULT_RENEW_BEFORE_MS = 60_000
// LAPI's tokens last an hour; used only when `expire` cannot be read.
const FALLBACK_TOKEN_LIFE_MS = 50 * 60_000

interface Token {
  jwt: Secret
  expiresAt: number
}

/**
 * One client per LAPI. Push and delete need `machine` + `password`; `stream`
 * needs `bouncerKey`. Methods reject with LapiError only.
 */
export class LapiClient {
  readonly url: string
  readonly #base: URL
  readonly #machine: string | undefined
  readonly #password: Secret | undefined
  readonly #bouncerKey: Secret | undefined
  readonly #timeoutMs: number
  readonly #renewBeforeMs: number
  readonly #fetch: FetchFn
  readonly #now: () => number
  readonly #userAgent: string
  #token: Token | null = null
  #login: Promise<Token> | null = null
  #logins = 0

  constructor(options: LapiClientOptions) {
    const base = parseLapiUrl(options.url)
    this.#base = base
    this.url = base.href
    this.#machine = options.machine
    this.#password = options.password === undefined ? undefined : asSecret(options.password)
    this.#bouncerKey = options.bouncerKey === undefined ? undefined : asSecret(options.bouncerKey)
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    this.#renewBeforeMs = options.renewBeforeMs ?? DEFAULT_RENEW_BEFORE_MS
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init))
    this.#now = options.now ?? Date.now
    this.#userAgent = options.userAgent ?? DEFAULT_USER_AGENT
    if (!/^[^/\s]+\/[^/\s]+$/.test(this.#userAgent)) {
      throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `LAPI user agent ${JSON.stringify(this.#userAgent)} is not name/version`, {
        hint: 'LAPI refuses logins from any other shape; use e.g. portanoia/1.0.0',
      })
    }
  }

  /** True when push and delete can work (machine and password given). */
  get canWatch(): boolean {
    return this.#machine !== undefined && this.#password !== undefined
  }

  /** True when the stream can work (bouncer key given). */
  get canBounce(): boolean {
    return this.#bouncerKey !== undefined
  }

  /** Successful logins so far (tests and stats). */
  get logins(): number {
    return this.#logins
  }

  /** Logs in now (normally done lazily); resolves when a token is held. */
  async login(): Promise<void> {
    this.#token = null
    await this.#jwt()
  }

  /** POST /v1/alerts; resolves to the ids LAPI assigned. */
  async pushAlerts(alerts: readonly LapiAlert[]): Promise<string[]> {
    if (alerts.length === 0) return []
    const body = await this.#asWatcher('POST', '/v1/alerts', JSON.stringify(alerts))
    if (!Array.isArray(body)) throw badResponse('POST /v1/alerts', 'expected a JSON array of ids')
    return body.map((id) => String(id))
  }

  /** DELETE /v1/decisions?ip=ADDR; resolves to the number of decisions deleted. */
  async deleteDecisions(ip: string): Promise<number> {
    const body = await this.#asWatcher('DELETE', `/v1/decisions?ip=${encodeURIComponent(ip)}`)
    const n = isRecord(body) ? Number(body.nbDeleted) : Number.NaN
    return Number.isFinite(n) ? n : 0
  }

  /**
   * GET /v1/decisions/stream as a bouncer. `startup` asks for every active
   * decision (the first call); later calls return changes since this key's
   * previous call, a cursor LAPI keeps per key.
   */
  async stream(startup: boolean): Promise<DecisionStream> {
    if (this.#bouncerKey === undefined) throw notConfigured('a bouncer key')
    const path = `/v1/decisions/stream${startup ? '?startup=true' : ''}`
    const res = await this.#request('GET', path, { 'X-Api-Key': this.#bouncerKey.reveal() })
    if (!res.ok) throw await httpError('GET /v1/decisions/stream', res, this.#secrets(), 'bouncer key')
    const body = await readJson('GET /v1/decisions/stream', res, this.#secrets())
    if (!isRecord(body)) throw badResponse('GET /v1/decisions/stream', 'expected an object')
    return { new: decisionList(body.new), deleted: decisionList(body.deleted) }
  }

  // -------------------------------------------------------------------------

  async #asWatcher(method: string, path: string, body?: string): Promise<unknown> {
    const what = `${method} ${path.split('?')[0]}`
    for (let attempt = 0; ; attempt++) {
      const jwt = await this.#jwt()
      const res = await this.#request(method, path, { Authorization: `Bearer ${jwt.reveal()}` }, body)
      // A 401 means the token is no longer accepted (expired early, LAPI restarted
      // with a new secret): log in once more and repeat, no more than once.
      if (res.status === 401 && attempt === 0) {
        await res.body?.cancel()
        if (this.#token?.jwt === jwt) this.#token = null
        continue
      }
      if (!res.ok) throw await httpError(what, res, this.#secrets(), 'machine password')
      return await readJson(what, res, this.#secrets())
    }
  }

  async #jwt(): Promise<Secret> {
    const t = this.#token
    if (t !== null && this.#now() < t.expiresAt - this.#renewBeforeMs) return t.jwt
    // Concurrent callers share one login.
    if (this.#login === null) {
      this.#login = this.#doLogin().finally(() => {
        this.#login = null
      })
    }
    return (await this.#login).jwt
  }

  async #doLogin(): Promise<Token> {
    if (this.#machine === undefined || this.#password === undefined) throw notConfigured('a machine id and password')
    const payload = JSON.stringify({ machine_id: this.#machine, password: this.#password.reveal() })
    const res = await this.#request('POST', '/v1/watchers/login', {}, payload)
    if (!res.ok) throw await httpError('POST /v1/watchers/login', res, this.#secrets(), 'machine password')
    const body = await readJson('POST /v1/watchers/login', res, this.#secrets())
    if (!isRecord(body) || typeof body.token !== 'string' || body.token === '') {
      throw badResponse('POST /v1/watchers/login', 'no token in the answer')
    }
    const announced = typeof body.expire === 'string' ? Date.parse(body.expire) : Number.NaN
    const expiresAt = Number.isFinite(announced) ? announced : this.#now() + FALLBACK_TOKEN_LIFE_MS
    const token: Token = { jwt: new Secret(body.token), expiresAt }
    this.#token = token
    this.#logins++
    return token
  }

  async #request(method: string, path: string, headers: Record<string, string>, body?: string): Promise<Response> {
    const url = new URL(path.replace(/^\//, ''), this.#base).href
    const init: RequestInit = {
      method,
      headers: {
        Accept: 'application/json',
        'User-Agent': this.#userAgent,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...headers,
      },
      signal: AbortSignal.timeout(this.#timeoutMs),
      redirect: 'error',
    }
    if (body !== undefined) init.body = body
    try {
      return await this.#fetch(url, init)
    } catch (e) {
      const timedOut = e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')
      const cause = describeCause(e, this.#secrets())
      throw new LapiError(
        'PORTANOIA_LAPI_UNREACHABLE',
        `${method} ${path.split('?')[0]}: ${timedOut ? `no answer within ${this.#timeoutMs} ms` : cause}`,
        {
          retryable: true,
          hint: `check that LAPI is running and reachable at ${this.#base.origin} (crowdsec -no-cs, api.server.listen_uri)`,
        },
      )
    }
  }

  #secrets(): string[] {
    const out: string[] = []
    if (this.#password !== undefined) out.push(this.#password.reveal())
    if (this.#bouncerKey !== undefined) out.push(this.#bouncerKey.reveal())
    if (this.#token !== null) out.push(this.#token.jwt.reveal())
    return out
  }
}

/** Validates a LAPI base URL: http or https, no credentials in it; path kept as prefix. */
export function parseLapiUrl(text: string): URL {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `crowdsec.url: ${JSON.stringify(text)} is not a URL`, {
      hint: 'give the LAPI base URL, e.g. http://127.0.0.1:8080',
    })
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `crowdsec.url: scheme ${u.protocol} is not supported`, {
      hint: 'use http:// or https://',
    })
  }
  if (u.username !== '' || u.password !== '') {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', 'crowdsec.url must not carry credentials', {
      hint: 'put the machine password and bouncer key in their files or environment variables',
    })
  }
  if (u.search !== '' || u.hash !== '') {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', 'crowdsec.url must not have a query or fragment', {
      hint: 'give only scheme, host, port and an optional path prefix',
    })
  }
  if (!u.pathname.endsWith('/')) u.pathname += '/'
  return u
}

// ---------------------------------------------------------------------------
// Helpers

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function scrub(text: string, secrets: readonly string[]): string {
  let out = text
  for (const s of secrets) if (s.length > 0) out = out.split(s).join(REDACTED)
  return out
}

function describeCause(e: unknown, secrets: readonly string[]): string {
  // undici hides the useful part (ECONNREFUSED, ENOTFOUND) in `cause`.
  const parts: string[] = []
  let cur: unknown = e
  for (let i = 0; i < 3 && cur instanceof Error; i++) {
    const code = (cur as { code?: unknown }).code
    parts.push(typeof code === 'string' ? `${cur.message} (${code})` : cur.message)
    cur = (cur as { cause?: unknown }).cause
  }
  return scrub(parts.length > 0 ? parts.join(': ') : String(e), secrets)
}

function notConfigured(what: string): LapiError {
  return new LapiError('PORTANOIA_LAPI_NOT_CONFIGURED', `LAPI client has no ${what}`, {
    retryable: false,
    hint: 'pass --crowdsec-machine with --crowdsec-password-file for pushing, --crowdsec-bouncer-key-file for pulling',
  })
}

function badResponse(what: string, detail: string): LapiError {
  return new LapiError('PORTANOIA_LAPI_BAD_RESPONSE', `${what}: ${detail}`, {
    retryable: true,
    hint: 'is the URL pointing at a CrowdSec Local API (v1)?',
  })
}

async function readJson(what: string, res: Response, secrets: readonly string[]): Promise<unknown> {
  let text: string
  try {
    text = await res.text()
  } catch (e) {
    throw new LapiError('PORTANOIA_LAPI_UNREACHABLE', `${what}: reading the answer failed: ${describeCause(e, secrets)}`, {
      retryable: true,
      hint: 'LAPI closed the connection or did not finish in time',
    })
  }
  if (text.trim() === '') return null
  try {
    return JSON.parse(text) as unknown
  } catch {
    throw badResponse(what, 'the answer is not JSON')
  }
}

async function httpError(what: string, res: Response, secrets: readonly string[], credential: string): Promise<LapiError> {
  let detail = ''
  try {
    const text = await res.text()
    try {
      const body: unknown = JSON.parse(text)
      if (isRecord(body) && typeof body.message === 'string') detail = body.message
    } catch {
      detail = text
    }
  } catch {
    // the status alone will do
  }
  detail = scrub(detail.replace(/\s+/g, ' ').trim(), secrets).slice(0, 200)
  const status = res.status
  const message = `${what}: HTTP ${status}${detail === '' ? '' : ` (${detail})`}`
  if (status === 401 || status === 403) {
    return new LapiError('PORTANOIA_LAPI_AUTH', message, {
      status,
      retryable: false,
      hint: `LAPI refused the ${credential}: check it with \`cscli machines list\` / \`cscli bouncers list\` on the LAPI host`,
    })
  }
  // LAPI answers 500 for a malformed duration or address as well as for its own
  // trouble: retry (bounded by the caller), since our input is validated first.
  const retryable = status >= 500 || status === 429 || status === 408
  return new LapiError('PORTANOIA_LAPI_HTTP', message, {
    status,
    retryable,
    hint: retryable ? 'LAPI is in trouble; the request is retried with backoff' : 'LAPI rejected the request; see its log',
  })
}

function decisionList(v: unknown): LapiDecision[] {
  // LAPI sends `null` rather than [] for an empty list.
  if (!Array.isArray(v)) return []
  const out: LapiDecision[] = []
  for (const d of v) {
    if (!isRecord(d)) continue
    const str = (k: string): string => (typeof d[k] === 'string' ? (d[k] as string) : '')
    const dec: LapiDecision = {
      origin: str('origin'),
      type: str('type'),
      scope: str('scope'),
      value: str('value'),
      duration: str('duration'),
      scenario: str('scenario'),
    }
    if (typeof d.id === 'number') dec.id = d.id
    if (typeof d.until === 'string') dec.until = d.until
    out.push(dec)
  }
  return out
}
