/**
 * The webhook responder: POSTs each decision, as its `decision` event (the same JSON
 * object a `--json` line holds), to one URL with the global fetch. Each attempt has
 * a timeout (AbortSignal.timeout); 5xx, 429 and network errors are retried a bounded
 * number of times with exponential backoff and full jitter; other 4xx are final. At
 * most `concurrency` deliveries run at once and at most `maxQueue` wait; beyond that
 * decisions are dropped and counted, so a dead endpoint costs bounded memory. An
 * optional bearer token (given, or read from a file or environment variable) is sent
 * as the Authorization header and never appears in results, errors or stats; URLs in
 * messages are shown without credentials or query. Runs on the JS thread.
 */
import { readFile } from 'node:fs/promises'
import { PortanoiaError } from '../errors.js'
import { decisionEvent } from '../daemon/events.js'
import type { Action, Decision } from '../policy/decision.js'
import { Notifier, result } from './common.js'
import type { ResponderResult } from './types.js'


function badOption(message: string, hint: string): PortanoiaError {
  return new PortanoiaError('PORTANOIA_BAD_OPTION', message, { hint })
}
export interface WebhookOptions {
  url: string
  /** Decision actions that are posted. Default ['block', 'report']. */
  actions?: readonly Action[]
  /** Per attempt, ms. Default 5000. */
  timeoutMs?: number
  /** Retries after the first attempt. Default 3. */
  retries?: number
  /** First backoff, ms; doubles per retry, with full jitter. Default 500. */
  backoffMs?: number
  /** Backoff ceiling, ms. Default 30 s. */
  maxBackoffMs?: number
  /** Deliveries in flight at once. Default 2. */
  concurrency?: number
  /** Deliveries waiting; beyond this decisions are dropped and counted. Default 1000. */
  maxQueue?: number
  bearerToken?: string
  /** File whose content (trimmed) is the bearer token; read at start(). */
  bearerTokenFile?: string
  /** Environment variable holding the bearer token. */
  bearerTokenEnv?: string
  /** Extra headers (e.g. a tenant id). Not for secrets: use the bearer token options. */
  headers?: Record<string, string>
  /** For tests. */
  fetch?: typeof fetch
  /** For tests: the jitter source, [0, 1). */
  random?: () => number
  name?: string
}

interface Job {
  body: string
  src: string
  done: (outcome: { ok: boolean; error?: string }) => void
}

/** The URL as it may appear in a message: no userinfo, query or fragment. */
function showUrl(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`
}

export class WebhookResponder extends Notifier {
  readonly name: string
  readonly #url: URL
  readonly #shownUrl: string
  readonly #actions: ReadonlySet<Action>
  readonly #timeoutMs: number
  readonly #retries: number
  readonly #backoffMs: number
  readonly #maxBackoffMs: number
  readonly #concurrency: number
  readonly #maxQueue: number
  readonly #headers: Record<string, string>
  readonly #fetch: typeof fetch
  readonly #random: () => number
  readonly #tokenFile: string | undefined
  #token: string | undefined
  readonly #queue: Job[] = []
  readonly #inFlight = new Set<Promise<void>>()
  // Aborts backoff waits and in-flight requests at close().
  readonly #closing = new AbortController()
  #closed = false
  #counts = { delivered: 0, failed: 0, retries: 0, dropped: 0 }

  constructor(options: WebhookOptions) {
    super()
    this.name = options.name ?? 'webhook'
    let url: URL
    try {
      url = new URL(options.url)
    } catch (e) {
      throw new PortanoiaError('PORTANOIA_BAD_WEBHOOK', 'webhook URL is not a URL', { hint: 'e.g. https://hooks.example/portanoia', cause: e })
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new PortanoiaError('PORTANOIA_BAD_WEBHOOK', `webhook URL scheme ${url.protocol} is not http(s)`, { hint: 'use an http:// or https:// URL' })
    }
    this.#url = url
    this.#shownUrl = showUrl(url)
    this.#actions = new Set(options.actions ?? ['block', 'report'])
    this.#timeoutMs = options.timeoutMs ?? 5000
    this.#retries = options.retries ?? 3
    this.#backoffMs = options.backoffMs ?? 500
    this.#maxBackoffMs = options.maxBackoffMs ?? 30_000
    this.#concurrency = options.concurrency ?? 2
    this.#maxQueue = options.maxQueue ?? 1000
    for (const [k, v] of [
      ['timeoutMs', this.#timeoutMs],
      ['backoffMs', this.#backoffMs],
      ['maxBackoffMs', this.#maxBackoffMs],
    ] as const) {
      if (!Number.isFinite(v) || v < 0) throw badOption(`webhook ${k} must be a non-negative number, got ${String(v)}`, `e.g. ${k}: 1000`)
    }
    if (!Number.isInteger(this.#retries) || this.#retries < 0 || this.#retries > 20) throw badOption(`webhook retries must be an integer 0..20, got ${String(this.#retries)}`, 'e.g. retries: 3')
    if (!Number.isInteger(this.#concurrency) || this.#concurrency < 1) throw badOption(`webhook concurrency must be an integer ≥ 1, got ${String(this.#concurrency)}`, 'e.g. concurrency: 4')
    if (!Number.isInteger(this.#maxQueue) || this.#maxQueue < 0) throw badOption(`webhook maxQueue must be an integer ≥ 0, got ${String(this.#maxQueue)}`, 'e.g. maxQueue: 1000')
    this.#headers = { 'content-type': 'application/json', 'user-agent': 'portanoia', ...(options.headers ?? {}) }
    this.#fetch = options.fetch ?? globalThis.fetch
    this.#random = options.random ?? Math.random
    this.#tokenFile = options.bearerTokenFile
    if (options.bearerToken !== undefined) this.#token = options.bearerToken
    else if (options.bearerTokenEnv !== undefined) {
      const v = process.env[options.bearerTokenEnv]
      if (v === undefined || v.trim() === '') {
        throw new PortanoiaError('PORTANOIA_WEBHOOK_TOKEN', `environment variable ${options.bearerTokenEnv} is not set`, {
          hint: 'export it before starting portanoia, or drop the token option',
        })
      }
      this.#token = v.trim()
    }
    if (this.#token !== undefined) this.#checkToken(this.#token)
  }

  #checkToken(token: string): void {
    // A header value cannot hold CR/LF; refusing them also rules out header injection.
    if (token === '' || /[\r\n\0]/.test(token)) {
      throw new PortanoiaError('PORTANOIA_WEBHOOK_TOKEN', 'bearer token is empty or contains a line break', {
        hint: 'the token file must hold the token on one line',
      })
    }
  }

  override async start(): Promise<[]> {
    if (this.#token === undefined && this.#tokenFile !== undefined) {
      let text: string
      try {
        text = await readFile(this.#tokenFile, 'utf8')
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'EIO'
        throw new PortanoiaError('PORTANOIA_WEBHOOK_TOKEN', `cannot read the bearer token file ${this.#tokenFile} (${code})`, {
          hint: 'check the path and that portanoia may read it',
        })
      }
      const token = text.trim()
      this.#checkToken(token)
      this.#token = token
    }
    return []
  }

  async notify(decisions: readonly Decision[]): Promise<ResponderResult> {
    const applied: string[] = []
    const failed: Array<{ address: string; error: string }> = []
    const waits: Array<Promise<void>> = []
    let dropped = 0
    for (const d of decisions) {
      if (!this.#actions.has(d.action)) continue
      if (this.#closed || (this.#inFlight.size >= this.#concurrency && this.#queue.length >= this.#maxQueue)) {
        this.#counts.dropped++
        dropped++
        failed.push({ address: d.src, error: this.#closed ? 'responder closed' : 'queue full, dropped' })
        continue
      }
      const body = JSON.stringify(decisionEvent(d))
      waits.push(
        new Promise<void>((resolve) => {
          const job: Job = {
            body,
            src: d.src,
            done: (o) => {
              if (o.ok) applied.push(d.src)
              else failed.push({ address: d.src, error: o.error ?? 'failed' })
              resolve()
            },
          }
          if (this.#inFlight.size < this.#concurrency) this.#launch(job)
          else this.#queue.push(job)
        }),
      )
    }
    await Promise.all(waits)
    const r = result(this.name, { applied, failed })
    if (dropped > 0) r.dropped = dropped
    return r
  }

  #launch(job: Job): void {
    const p = this.#deliver(job)
      .then(
        (o) => job.done(o),
        (e: unknown) => job.done({ ok: false, error: String(e) }),
      )
      .finally(() => {
        this.#inFlight.delete(p)
        const next = this.#queue.shift()
        if (next !== undefined) this.#launch(next)
      })
    this.#inFlight.add(p)
  }

  /** One attempt: 'ok', 'retry' with a reason, or 'final' with a reason. */
  async #attempt(body: string): Promise<{ outcome: 'ok' | 'retry' | 'final'; error?: string }> {
    const headers = { ...this.#headers }
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`
    // One controller per attempt, unhooked from the close signal when the attempt ends:
    // AbortSignal.any() and listeners left on the long-lived close signal grow with
    // every retry (a dead endpoint under a flood: MaxListenersExceededWarning, then heap).
    const attempt = new AbortController()
    const closing = this.#closing.signal
    const onClose = (): void => attempt.abort(closing.reason)
    closing.addEventListener('abort', onClose, { once: true })
    const timer = setTimeout(() => attempt.abort(new DOMException(`timed out after ${this.#timeoutMs} ms`, 'TimeoutError')), this.#timeoutMs)
    try {
      const res = await this.#fetch(this.#url, { method: 'POST', headers, body, redirect: 'error', signal: attempt.signal })
      // Drain the body so the connection can be reused; its content is not ours to log.
      await res.arrayBuffer().catch(() => undefined)
      if (res.ok) return { outcome: 'ok' }
      const error = `${this.#shownUrl} answered ${res.status}`
      return { outcome: res.status >= 500 || res.status === 429 ? 'retry' : 'final', error }
    } catch (e) {
      const err = e as Error
      if (closing.aborted) return { outcome: 'final', error: 'responder closed' }
      const why = err.name === 'TimeoutError' ? `timed out after ${this.#timeoutMs} ms` : errorCode(err)
      return { outcome: 'retry', error: `${this.#shownUrl}: ${why}` }
    } finally {
      clearTimeout(timer)
      closing.removeEventListener('abort', onClose)
    }
  }

  async #deliver(job: Job): Promise<{ ok: boolean; error?: string }> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.#attempt(job.body)
      if (r.outcome === 'ok') {
        this.#counts.delivered++
        return { ok: true }
      }
      if (r.outcome === 'final' || attempt >= this.#retries || this.#closed) {
        this.#counts.failed++
        const tries = attempt + 1
        return { ok: false, error: `${r.error ?? 'failed'} (${tries} attempt${tries === 1 ? '' : 's'})` }
      }
      this.#counts.retries++
      // Full jitter: uniform in [0, min(cap, base·2^attempt)], so many senders do not retry in step.
      const ceiling = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** attempt)
      await this.#sleep(Math.floor(this.#random() * ceiling))
    }
  }

  /** A backoff wait that close() cuts short; its listener leaves with it either way. */
  #sleep(ms: number): Promise<void> {
    const closing = this.#closing.signal
    return new Promise((resolve) => {
      if (closing.aborted) return resolve()
      const t = setTimeout(done, ms)
      function done(): void {
        clearTimeout(t)
        closing.removeEventListener('abort', done)
        resolve()
      }
      closing.addEventListener('abort', done, { once: true })
    })
  }

  stats(): Record<string, number> {
    return { ...this.#counts, queued: this.#queue.length, inFlight: this.#inFlight.size }
  }

  /** Drops what is queued, cuts backoff waits and open requests short, and waits for them to settle. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true
      for (const job of this.#queue.splice(0)) {
        this.#counts.dropped++
        job.done({ ok: false, error: 'responder closed' })
      }
      this.#closing.abort()
    }
    await Promise.all([...this.#inFlight])
  }
}

function errorCode(err: Error): string {
  const cause = (err as { cause?: unknown }).cause
  const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined
  return typeof code === 'string' ? code : err.message
}
