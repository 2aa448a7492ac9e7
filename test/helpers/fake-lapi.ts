/**
 * A fake CrowdSec Local API on 127.0.0.1 (node:http, ephemeral port) for unit
 * tests of the fleet link: watcher login with expiring tokens, POST /v1/alerts
 * (recorded per request), DELETE /v1/decisions, and a per-key decision stream
 * that sends `null` for empty lists as LAPI does. Tests script failures
 * (`failNext`), revoke tokens (a 401 on the next call) and feed the stream
 * directly. Only what the fleet code relies on; no validation beyond the
 * fields the real LAPI checks for presence.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface FakeDecision {
  id: number
  origin: string
  type: string
  scope: string
  value: string
  duration: string
  scenario: string
}

export interface FakeLapi {
  url: string
  /** Each accepted POST /v1/alerts body. */
  alertBatches: unknown[][]
  /** Requests seen, as 'METHOD /path?query'. */
  requests: string[]
  logins: number
  /** Answer the next `n` requests to `path` (prefix match) with `status`. */
  failNext(path: string, n: number, status: number): void
  /** Every token in circulation becomes invalid: the next watcher call gets 401. */
  revokeTokens(): void
  /** Queue stream changes for every bouncer key (next poll sees them). */
  feed(change: { new?: Array<Partial<FakeDecision>>; deleted?: Array<Partial<FakeDecision>> }): void
  /** Hold answers this long, ms. */
  delayMs: number
  close(): Promise<void>
}

const REQUIRED_ALERT = [
  'scenario', 'scenario_hash', 'scenario_version', 'message', 'events_count', 'start_at', 'stop_at',
  'capacity', 'leakspeed', 'simulated', 'events', 'source',
]
const REQUIRED_DECISION = ['origin', 'type', 'scope', 'value', 'duration', 'scenario']

export async function startFakeLapi(options: { machine: string; password: string; bouncerKeys: string[]; tokenLifeMs?: number }): Promise<FakeLapi> {
  const tokens = new Map<string, number>()
  const failures: Array<{ path: string; n: number; status: number }> = []
  const pending = new Map<string, { new: FakeDecision[]; deleted: FakeDecision[] }>()
  for (const k of options.bouncerKeys) pending.set(k, { new: [], deleted: [] })
  let nextId = 1
  let tokenSeq = 0
  const fake: FakeLapi = {
    url: '',
    alertBatches: [],
    requests: [],
    logins: 0,
    delayMs: 0,
    failNext: (path, n, status) => {
      failures.push({ path, n, status })
    },
    revokeTokens: () => tokens.clear(),
    feed: (change) => {
      const full = (d: Partial<FakeDecision>): FakeDecision => ({
        id: d.id ?? nextId++,
        origin: d.origin ?? 'cscli',
        type: d.type ?? 'ban',
        scope: d.scope ?? 'Ip',
        value: d.value ?? '198.18.9.9',
        duration: d.duration ?? '3h59m58.123s',
        scenario: d.scenario ?? 'manual',
      })
      for (const q of pending.values()) {
        q.new.push(...(change.new ?? []).map(full))
        q.deleted.push(...(change.deleted ?? []).map(full))
      }
    },
    close: async () => {},
  }

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
    res.end(text)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const raw = Buffer.concat(chunks).toString('utf8')
    const url = new URL(req.url ?? '/', 'http://x')
    fake.requests.push(`${req.method} ${url.pathname}${url.search}`)
    if (fake.delayMs > 0) await new Promise((r) => setTimeout(r, fake.delayMs))
    const f = failures.find((x) => url.pathname.startsWith(x.path) && x.n > 0)
    if (f !== undefined) {
      f.n--
      send(res, f.status, { message: 'scripted failure' })
      return
    }
    const watcher = (): boolean => {
      const auth = req.headers.authorization ?? ''
      const t = auth.startsWith('Bearer ') ? auth.slice(7) : ''
      const exp = tokens.get(t)
      if (exp === undefined || exp < Date.now()) {
        send(res, 401, { code: 401, message: 'Token is expired' })
        return false
      }
      return true
    }
    if (req.method === 'POST' && url.pathname === '/v1/watchers/login') {
      const body = JSON.parse(raw) as { machine_id?: string; password?: string }
      // LAPI 1.4 wants `name/version` and answers a bad user agent like a bad password.
      const goodAgent = /^[^/\s]+\/[^/\s]+$/.test(req.headers['user-agent'] ?? '')
      if (!goodAgent || body.machine_id !== options.machine || body.password !== options.password) {
        send(res, 401, { code: 401, message: 'incorrect Username or Password' })
        return
      }
      const token = `jwt-${++tokenSeq}-secret`
      const life = options.tokenLifeMs ?? 3_600_000
      tokens.set(token, Date.now() + life)
      fake.logins++
      send(res, 200, { code: 200, expire: new Date(Date.now() + life).toISOString(), token })
      return
    }
    if (req.method === 'POST' && url.pathname === '/v1/alerts') {
      if (!watcher()) return
      const alerts = JSON.parse(raw) as unknown
      if (!Array.isArray(alerts)) {
        send(res, 400, { message: 'expected array' })
        return
      }
      for (const a of alerts as Array<Record<string, unknown>>) {
        const missing = REQUIRED_ALERT.filter((k) => !(k in a))
        const decisions = (a.decisions ?? []) as Array<Record<string, unknown>>
        for (const d of decisions) missing.push(...REQUIRED_DECISION.filter((k) => !(k in d)))
        if (missing.length > 0) {
          send(res, 422, { message: `missing ${missing.join(',')}` })
          return
        }
      }
      fake.alertBatches.push(alerts)
      send(res, 201, alerts.map((_, i) => String(fake.alertBatches.length * 1000 + i)))
      return
    }
    if (req.method === 'DELETE' && url.pathname === '/v1/decisions') {
      if (!watcher()) return
      send(res, 200, { nbDeleted: '1' })
      return
    }
    if (req.method === 'GET' && url.pathname === '/v1/decisions/stream') {
      const key = req.headers['x-api-key']
      const q = typeof key === 'string' ? pending.get(key) : undefined
      if (q === undefined) {
        send(res, 403, { message: 'access forbidden' })
        return
      }
      const out = { new: q.new.length > 0 ? q.new : null, deleted: q.deleted.length > 0 ? q.deleted : null }
      pending.set(key as string, { new: [], deleted: [] })
      send(res, 200, out)
      return
    }
    send(res, 404, { message: 'not found' })
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => send(res, 500, { message: String(e) }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  fake.url = `http://127.0.0.1:${port}`
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return fake
}
