/**
 * The notifier responders and ResponderSet without privileges: exec token
 * substitution (hostile values never reach argv), the splitter, timeout kill,
 * concurrency and queue bounds; the webhook against a local node:http server on
 * 127.0.0.1 (500-then-200 retries, timeouts, 4xx final, queue bounds, the token
 * never in results); JSON lines with backpressure; failure isolation in the set.
 */
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { parseEventLine } from '../../lib/daemon/events.js'
import type { Decision } from '../../lib/policy/decision.js'
import { ExecResponder, splitCommand } from '../../lib/responders/exec.js'
import { blockRequests, childEnv, createRun, ResponderSet } from '../../lib/responders/index.js'
import { IpsetResponder, parseIpsetSave } from '../../lib/responders/ipset.js'
import { NftablesResponder } from '../../lib/responders/nftables.js'
import { JsonlResponder } from '../../lib/responders/jsonl.js'
import type { Responder, RunFn, RunResult } from '../../lib/responders/types.js'
import { WebhookResponder } from '../../lib/responders/webhook.js'

function decision(over: Partial<Decision> = {}): Decision {
  return {
    action: 'block', reason: 'blocked', src: '198.18.0.2', family: 4, verified: true, attribution: 'verified', evidence: [], ttlMs: 3_600_000,
    expiresAt: 1_700_003_600_000, ports: ['2222/tcp'], portsTruncated: false, kinds: ['connect'], count: 1,
    verifiedCount: 1, firstSeen: 1_700_000_000_000, lastSeen: 1_700_000_000_000, windowStart: 1_700_000_000_000,
    windowMs: 60_000, time: 1_700_000_000_000, final: false,
    trigger: { dst: '198.18.0.1', dstPort: 2222, srcPort: 40000, proto: 'tcp', kind: 'connect', interface: 'pns0' },
    ...over,
  }
}

function recorder(answer: (argv: string[]) => Partial<RunResult> | Promise<Partial<RunResult>> = () => ({})): { run: RunFn; calls: string[][] } {
  const calls: string[][] = []
  const run: RunFn = async (cmd, args) => {
    calls.push([cmd, ...args])
    const a = await answer([cmd, ...args])
    return { code: a.code ?? 0, stdout: a.stdout ?? '', stderr: a.stderr ?? '', ...(a.timedOut ? { timedOut: true } : {}) }
  }
  return { run, calls }
}

describe('splitCommand', () => {
  it('splits words and honours quotes and escapes, interpreting nothing else', () => {
    expect(splitCommand(`iptables -I INPUT -s {src} -m comment --comment 'port scan from {src}' -j DROP`)).toEqual([
      'iptables', '-I', 'INPUT', '-s', '{src}', '-m', 'comment', '--comment', 'port scan from {src}', '-j', 'DROP',
    ])
    expect(splitCommand(`a "b \\"c\\" $HOME" d\\ e '' "x"y`)).toEqual(['a', 'b "c" $HOME', 'd e', '', 'xy'])
    expect(splitCommand('echo a|b; c > d')).toEqual(['echo', 'a|b;', 'c', '>', 'd'])
    expect(() => splitCommand(`echo 'open`)).toThrow(/unterminated/)
  })
})

describe('child environment', () => {
  it('children never inherit PORTANOIA_CROWDSEC_* variables; everything else passes', async () => {
    expect(childEnv({ PATH: '/bin', PORTANOIA_CROWDSEC_PASSWORD: 'p', PORTANOIA_CROWDSEC_BOUNCER_KEY: 'k', PORTANOIA_X: 'x' })).toEqual({
      PATH: '/bin',
      PORTANOIA_X: 'x',
    })
    process.env.PORTANOIA_CROWDSEC_PASSWORD = 'hunter2'
    try {
      const r = await createRun()('/usr/bin/env', [])
      expect(r.code).toBe(0)
      expect(r.stdout).toContain('PATH=')
      expect(r.stdout).not.toContain('PORTANOIA_CROWDSEC_')
    } finally {
      delete process.env.PORTANOIA_CROWDSEC_PASSWORD
    }
  })
})

describe('exec responder', () => {
  it('substitutes every token with validated literals, one argv element each', async () => {
    const { run, calls } = recorder()
    const ex = new ExecResponder({ command: 'notify-scan {src} {dst} {dstPort} {srcPort} {proto} {kind} {ttl} {reason} [SRC_IP] [DEST_IP] [DEST_PORT] [SRC_PORT] [LISTEN_PORT] --from={src}', run })
    const r = await ex.notify([decision(), decision({ action: 'report', reason: 'spoofable-report-only' })])
    expect(r).toMatchObject({ ok: true, applied: ['198.18.0.2'] })
    expect(calls).toEqual([[
      'notify-scan', '198.18.0.2', '198.18.0.1', '2222', '40000', 'tcp', 'connect', '3600', 'blocked',
      '198.18.0.2', '198.18.0.1', '2222', '40000', '2222', '--from=198.18.0.2',
    ]])
  })

  it('refuses token-shaped text that is not a token, at construction, and bad limits with PORTANOIA_BAD_OPTION', () => {
    const { run } = recorder()
    for (const command of ['logger {nope}', 'logger [BOGUS]', 'logger --from={scr}', ['logger', 'x[SRC_PORTS]']]) {
      expect(() => new ExecResponder({ command, run })).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_COMMAND', hint: expect.stringMatching(/\{src\}/) }))
    }
    expect(() => new ExecResponder({ command: 'echo "[x] ${HOME} {src}"; [ -n "$1" ]', shell: true, run })).not.toThrow()
    expect(() => new ExecResponder({ command: 'echo {nope}', shell: true, run })).toThrow(/unknown token \{nope\}/)
    expect(() => new ExecResponder({ command: 'logger {src}', concurrency: 0, run })).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_OPTION' }))
    expect(() => new ExecResponder({ command: 'logger {src}', timeoutMs: -1, run })).toThrow(expect.objectContaining({ code: 'PORTANOIA_BAD_OPTION' }))
  })

  it('never lets a hostile value reach argv', async () => {
    const { run, calls } = recorder()
    const ex = new ExecResponder({ command: ['logger', '{src}', '{dst}', '{proto}', '{dstPort}'], actions: ['block', 'report', 'none'], run })
    const hostile = [
      decision({ src: '1.2.3.4;rm -rf /' }),
      decision({ src: '$(reboot)' }),
      decision({ trigger: { ...decision().trigger!, dst: '198.18.0.1 && id' } }),
      decision({ trigger: { ...decision().trigger!, proto: 'tcp;id' as 'tcp' } }),
      decision({ trigger: { ...decision().trigger!, dstPort: 70000 } }),
      decision({ trigger: { ...decision().trigger!, dstPort: 22.5 } }),
    ]
    const r = await ex.notify(hostile)
    expect(r.ok).toBe(false)
    expect(r.failed).toHaveLength(hostile.length)
    expect(r.failed.every((f) => f.error.startsWith('refused'))).toBe(true)
    expect(calls).toEqual([])
    expect(ex.stats().refused).toBe(6)
  })

  it('shell mode is opt-in and still only substitutes validated literals', async () => {
    const { run, calls } = recorder()
    const ex = new ExecResponder({ command: 'iptables -A INPUT -s [SRC_IP] -j DROP', shell: true, run })
    await ex.notify([decision(), decision({ src: '1.2.3.4;rm -rf /' })])
    expect(calls).toEqual([['/bin/sh', '-c', 'iptables -A INPUT -s 198.18.0.2 -j DROP']])
    expect(() => new ExecResponder({ command: ['a'], shell: true })).toThrow(/one string/)
    expect(() => new ExecResponder({ command: '{src} x' })).toThrow(/program name/)
    expect(() => new ExecResponder({ command: '   ' })).toThrow(/empty/)
  })

  it('runs a real command through argv, no shell involved', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pnt-exec-'))
    try {
      const out = join(dir, 'out')
      const ex = new ExecResponder({ command: ['node', '-e', 'require("fs").writeFileSync(process.argv[1], process.argv.slice(2).join("|"))', out, '{src}', '$(id)'] })
      const r = await ex.notify([decision()])
      expect(r.ok).toBe(true)
      expect(await readFile(out, 'utf8')).toBe('198.18.0.2|$(id)')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('kills a command that outlives its timeout and reports it', async () => {
    // Commands far longer than the test's own timeout: notify() resolves only if they are killed.
    const ex = new ExecResponder({ command: ['sleep', '300'], timeoutMs: 200 })
    const r = await ex.notify([decision()])
    expect(r.ok).toBe(false)
    expect(r.failed[0]!.error).toMatch(/timed out, killed/)
    expect(ex.stats().timedOut).toBe(1)
    // A shell's children die with it: the whole process group is killed, so the
    // background sleep (which holds the output pipe) is gone too.
    const dir = await mkdtemp(join(tmpdir(), 'pnt-exec-'))
    try {
      const pidFile = join(dir, 'pid')
      const sh = new ExecResponder({ command: `sleep 300 & echo $! > ${pidFile}; wait`, shell: true, timeoutMs: 200 })
      expect((await sh.notify([decision()])).failed[0]!.error).toMatch(/timed out/)
      const pid = Number(await readFile(pidFile, 'utf8'))
      expect(pid).toBeGreaterThan(0)
      // Gone, or a zombie waiting for its new parent to reap it.
      const state = await readFile(`/proc/${pid}/stat`, 'utf8').then((s) => s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3), () => 'gone')
      expect(['gone', 'Z', 'X']).toContain(state)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('reports a failing or missing program without throwing', async () => {
    const r = await new ExecResponder({ command: ['false'] }).notify([decision()])
    expect(r.failed[0]!.error).toMatch(/exited with 1/)
    const m = await new ExecResponder({ command: ['/nonexistent/portanoia-cmd'] }).notify([decision()])
    expect(m.failed[0]!.error).toMatch(/exited with 127/)
  })

  it('bounds concurrency and the queue, counting drops', async () => {
    let running = 0
    let peak = 0
    const gates: Array<() => void> = []
    const { run } = recorder(async () => {
      running++
      peak = Math.max(peak, running)
      await new Promise<void>((resolve) => gates.push(resolve))
      running--
      return {}
    })
    const ex = new ExecResponder({ command: ['x', '{src}'], run, concurrency: 2, maxQueue: 3 })
    const ds = Array.from({ length: 8 }, (_, i) => decision({ src: `198.18.0.${i + 2}` }))
    const p = ex.notify(ds)
    await new Promise((r) => setImmediate(r))
    expect(ex.stats()).toMatchObject({ running: 2, queued: 3, dropped: 3 })
    while (running > 0 || Number(ex.stats().queued) > 0) {
      gates.shift()?.()
      await new Promise((r) => setImmediate(r))
    }
    const r = await p
    expect(peak).toBe(2)
    expect(r.applied).toHaveLength(5)
    expect(r.dropped).toBe(3)
    expect(r.failed.filter((f) => /queue full/.test(f.error))).toHaveLength(3)
  })

  it('close() drops what is queued and waits for what runs', async () => {
    const gates: Array<() => void> = []
    const { run } = recorder(async () => {
      await new Promise<void>((resolve) => gates.push(resolve))
      return {}
    })
    const ex = new ExecResponder({ command: ['x'], run, concurrency: 1 })
    const p = ex.notify([decision(), decision({ src: '198.18.0.3' })])
    await new Promise((r) => setImmediate(r))
    const closing = ex.close()
    gates.shift()?.()
    await closing
    const r = await p
    expect(r.applied).toEqual(['198.18.0.2'])
    expect(r.failed).toEqual([{ address: '198.18.0.3', error: 'responder closed' }])
  })
})

describe('webhook responder', () => {
  let server: ReturnType<typeof createServer> | undefined
  afterEach(async () => {
    if (server !== undefined) {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server!.close(() => resolve()))
      server = undefined
    }
  })

  async function listen(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<string> {
    server = createServer((req, res) => {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (c: string) => (body += c))
      req.on('end', () => handler(req, res, body))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook?secret=q`
  }

  it('retries a 500 and delivers the decision event on the 200, with the bearer token', async () => {
    const seen: Array<{ status: number; auth: string | undefined; body: string }> = []
    const url = await listen((req, res, body) => {
      const status = seen.length === 0 ? 500 : 200
      seen.push({ status, auth: req.headers.authorization, body })
      res.writeHead(status).end()
    })
    const dir = await mkdtemp(join(tmpdir(), 'pnt-hook-'))
    try {
      await writeFile(join(dir, 'token'), 's3cr3t-token\n', { mode: 0o600 })
      const hook = new WebhookResponder({ url, bearerTokenFile: join(dir, 'token'), backoffMs: 10 })
      await hook.start()
      const r = await hook.notify([decision(), decision({ action: 'none', reason: 'guard:self' })])
      expect(r).toMatchObject({ ok: true, applied: ['198.18.0.2'] })
      expect(seen.map((s) => s.status)).toEqual([500, 200])
      expect(seen[1]!.auth).toBe('Bearer s3cr3t-token')
      const event = parseEventLine(seen[1]!.body)
      expect(event).toMatchObject({ type: 'decision', src: '198.18.0.2', action: 'block', reason: 'blocked' })
      expect(hook.stats()).toMatchObject({ delivered: 1, retries: 1, failed: 0 })
      await hook.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('gives up after the bounded retries; 4xx is final; the token never shows', async () => {
    let hits = 0
    const url = await listen((req, res) => {
      hits++
      res.writeHead(req.url === '/hook?secret=q' && hits <= 3 ? 503 : 400).end()
    })
    const hook = new WebhookResponder({ url, retries: 2, backoffMs: 5, bearerToken: 'tok-xyz' })
    const r = await hook.notify([decision()])
    expect(hits).toBe(3)
    expect(r.ok).toBe(false)
    expect(r.failed[0]!.error).toMatch(/answered 503 \(3 attempts\)/)
    const r2 = await hook.notify([decision()])
    expect(hits).toBe(4)
    expect(r2.failed[0]!.error).toMatch(/answered 400 \(1 attempt\)/)
    const text = JSON.stringify([r, r2, hook.stats()])
    expect(text).not.toContain('tok-xyz')
    expect(text).not.toContain('secret=q')
  })

  it('times out a hanging endpoint per attempt', async () => {
    const url = await listen(() => {
      // never answers
    })
    const hook = new WebhookResponder({ url, timeoutMs: 150, retries: 1, backoffMs: 5 })
    // The endpoint never answers: notify() resolves only because each attempt timed out.
    const r = await hook.notify([decision()])
    expect(r.failed[0]!.error).toMatch(/timed out after 150 ms \(2 attempts\)/)
  })

  it('retries a refused connection (network error)', async () => {
    const url = await listen((_q, res) => res.end())
    server!.closeAllConnections()
    await new Promise<void>((resolve) => server!.close(() => resolve()))
    server = undefined
    const r = await new WebhookResponder({ url, retries: 1, backoffMs: 5 }).notify([decision()])
    expect(r.failed[0]!.error).toMatch(/ECONNREFUSED \(2 attempts\)/)
  })

  it('bounds the queue and counts drops; close() cuts it short', async () => {
    const pending: ServerResponse[] = []
    const url = await listen((_q, res) => pending.push(res))
    const hook = new WebhookResponder({ url, concurrency: 1, maxQueue: 2, timeoutMs: 10_000 })
    const p = hook.notify(Array.from({ length: 6 }, (_, i) => decision({ src: `198.18.0.${i + 2}` })))
    // The one request in flight has reached the server, which holds it.
    await expect.poll(() => pending.length, { timeout: 10_000 }).toBe(1)
    expect(hook.stats()).toMatchObject({ inFlight: 1, queued: 2, dropped: 3 })
    await hook.close()
    const r = await p
    expect(r.dropped).toBe(3)
    expect(r.applied).toEqual([])
    expect(hook.stats().dropped).toBe(5)
  })

  it('retries leave no listener behind: thousands of failed attempts, no MaxListenersExceededWarning', async () => {
    // Net abort listeners per target, counted at the EventTarget level (what a leak grows).
    const live = new Map<EventTarget, number>()
    let peak = 0
    const add = EventTarget.prototype.addEventListener
    const remove = EventTarget.prototype.removeEventListener
    const warnings: string[] = []
    const onWarning = (w: Error): void => void warnings.push(w.name)
    process.on('warning', onWarning)
    EventTarget.prototype.addEventListener = function (this: EventTarget, type: string, ...rest: unknown[]) {
      if (type === 'abort') {
        live.set(this, (live.get(this) ?? 0) + 1)
        peak = Math.max(peak, live.get(this) ?? 0)
      }
      return (add as (...a: unknown[]) => void).call(this, type, ...rest)
    } as typeof add
    EventTarget.prototype.removeEventListener = function (this: EventTarget, type: string, ...rest: unknown[]) {
      if (type === 'abort' && (live.get(this) ?? 0) > 0) live.set(this, (live.get(this) ?? 0) - 1)
      return (remove as (...a: unknown[]) => void).call(this, type, ...rest)
    } as typeof remove
    try {
      let calls = 0
      const refused = (async () => {
        calls++
        throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } })
      }) as unknown as typeof fetch
      const hook = new WebhookResponder({ url: 'http://127.0.0.1:9/hook', fetch: refused, retries: 20, backoffMs: 0, concurrency: 2, maxQueue: 1000, random: () => 0 })
      const r = await hook.notify(Array.from({ length: 200 }, (_, i) => decision({ src: `198.18.${i >> 8}.${(i & 255) + 1}` })))
      await hook.close()
      expect(calls).toBe(200 * 21)
      expect(r.failed).toHaveLength(200)
      // At most one attempt and one backoff per delivery in flight hold a listener.
      expect(peak).toBeLessThanOrEqual(4)
      expect([...live.values()].reduce((a, b) => a + b, 0)).toBe(0)
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings).not.toContain('MaxListenersExceededWarning')
    } finally {
      EventTarget.prototype.addEventListener = add
      EventTarget.prototype.removeEventListener = remove
      process.off('warning', onWarning)
    }
  })

  it('refuses bad URLs and unreadable token files with hints', async () => {
    expect(() => new WebhookResponder({ url: 'file:///etc/passwd' })).toThrow(/not http/)
    expect(() => new WebhookResponder({ url: 'not a url' })).toThrow(/not a URL/)
    await expect(new WebhookResponder({ url: 'http://127.0.0.1:9/', bearerTokenFile: '/nonexistent/token' }).start()).rejects.toMatchObject({ code: 'PORTANOIA_WEBHOOK_TOKEN' })
  })
})

describe('jsonl responder', () => {
  it('appends decision events as schema-valid lines to a file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pnt-jsonl-'))
    try {
      const path = join(dir, 'events.jsonl')
      await writeFile(path, '')
      const j = new JsonlResponder({ path })
      await j.notify([decision(), decision({ action: 'none', reason: 'guard:peer', src: '198.18.0.9' })])
      await j.close()
      const lines = (await readFile(path, 'utf8')).trim().split('\n')
      expect(lines.map((l) => parseEventLine(l))).toMatchObject([{ src: '198.18.0.2' }, { reason: 'guard:peer' }])
      const j2 = new JsonlResponder({ path })
      await j2.notify([decision({ src: '198.18.0.3' })])
      await j2.close()
      expect((await readFile(path, 'utf8')).trim().split('\n')).toHaveLength(3)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('buffers under backpressure up to its bound, drops the rest, flushes on drain', async () => {
    const written: string[] = []
    let release: (() => void) | undefined
    const slow = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _enc, cb) {
        written.push(chunk.toString())
        release = () => cb()
      },
    })
    const j = new JsonlResponder({ stream: slow, maxBufferBytes: 2500 })
    const r = await j.notify(Array.from({ length: 10 }, (_, i) => decision({ src: `198.18.0.${i + 2}` })))
    const lineBytes = Buffer.byteLength(written[0]!)
    const fit = Math.floor(2500 / lineBytes)
    expect(r.applied).toHaveLength(1 + fit)
    expect(r.dropped).toBe(10 - 1 - fit)
    expect(j.stats()).toMatchObject({ written: 1, buffered: fit })
    while (written.length < 1 + fit) {
      release?.()
      await new Promise((res) => setImmediate(res))
    }
    release?.()
    expect(written).toHaveLength(1 + fit)
    await j.close()
  })

  it('a failing stream is recorded, never thrown', async () => {
    const bad = new Writable({
      write(_c, _e, cb) {
        cb(new Error('EPIPE-ish'))
      },
    })
    const j = new JsonlResponder({ stream: bad })
    await j.notify([decision()])
    await new Promise((r) => setImmediate(r))
    const r = await j.notify([decision()])
    expect(r.ok).toBe(false)
    expect(r.failed[0]!.error).toMatch(/EPIPE-ish/)
    await j.close()
  })
})

describe('ipset responder (fake run)', () => {
  it('creates the missing sets in one restore (fleet ones with comments), adds each rule only when the chain lacks it', async () => {
    const { run, calls } = recorder((argv) =>
      argv[1] === 'list' && argv[2] === '-n'
        ? { stdout: 'portanoia4\nportanoia6\nother\n' }
        : argv.includes('-S') && argv[0] === 'iptables'
          ? { stdout: '-P INPUT ACCEPT\n-A INPUT -m set --match-set portanoia4 src -j DROP\n' }
          : argv[1] === 'list' && argv[2] === 'portanoia4'
            ? { stdout: 'add portanoia4 198.18.0.2 timeout 59\n' }
            : {},
    )
    const ips = new IpsetResponder({ run })
    expect(await ips.start()).toEqual([{ address: '198.18.0.2', family: 4, expiresInMs: 59_000, evidence: 'verified' }])
    const inserts = calls.filter((c) => c.includes('-I')).map((c) => `${c[0]} ${c[7]}`)
    expect(calls[0]).toEqual(['ipset', 'list', '-n'])
    expect(calls[1]).toEqual(['ipset', 'restore', '-exist'])
    expect(inserts).toEqual([
      'iptables portanoia-s4',
      'iptables portanoia-f4',
      'ip6tables portanoia6',
      'ip6tables portanoia-s6',
      'ip6tables portanoia-f6',
    ])
    expect(ips.lastSetupScript).toContain('create portanoia-f4 hash:ip family inet timeout 0 comment maxelem 262144\n')
  })

  it('refuses a TTL above ipset\'s 2147483 s per address instead of failing the restore half-way', async () => {
    // Like ipset 7.17: "Syntax error: '2592000' is out of range 0-2147483" stops the restore at that line.
    const inputs: string[] = []
    const run: RunFn = async (_c, args, input) => {
      if (args[0] === 'list') return { code: 0, stdout: '', stderr: '' }
      inputs.push(input ?? '')
      return [...(input ?? '').matchAll(/timeout (\d+)/g)].some((m) => Number(m[1]) > 2_147_483)
        ? { code: 1, stdout: '', stderr: "ipset v7.17: Syntax error: '2592000' is out of range 0-2147483" }
        : { code: 0, stdout: '', stderr: '' }
    }
    const ips = new IpsetResponder({ run })
    const r = await ips.block([
      { address: '198.18.0.2', family: 4, ttlMs: 3_600_000 },
      { address: '198.18.0.3', family: 4, ttlMs: 30 * 86_400_000 },
    ])
    expect(r.applied).toEqual(['198.18.0.2'])
    expect(r.failed).toEqual([{ address: '198.18.0.3', error: expect.stringMatching(/exceeds ipset's 2147483 s/) }])
    expect(inputs).toEqual(['add portanoia4 198.18.0.2 timeout 3600\n'])
  })

  it('batches blocks into one restore, each origin into its set, never shorter than the kernel holds', async () => {
    const inputs: string[] = []
    const run: RunFn = async (_c, args, input) => {
      if (args[0] === 'list' && args[1] === 'portanoia4') return { code: 0, stdout: 'add portanoia4 198.18.0.5 timeout 3500\nadd portanoia4 198.18.0.6 timeout 10\n', stderr: '' }
      if (args[0] === 'list') return { code: 0, stdout: '', stderr: '' }
      inputs.push(input ?? '')
      return { code: 0, stdout: '', stderr: '' }
    }
    const ips = new IpsetResponder({ run })
    const r = await ips.block([
      { address: '198.18.0.2', family: 4, ttlMs: 2000 },
      { address: 'fd52:43dd::2', family: 6, ttlMs: 60_000, upgrade: true },
      { address: '1.2.3.4\nflush', family: 4, ttlMs: 2000 },
      { address: '198.18.0.3', family: 4, ttlMs: 300_000, evidence: 'spoofable' },
      { address: '198.18.0.4', family: 4, ttlMs: 600_000, evidence: 'fleet', fleet: { id: 3, origin: 'cscli', scenario: 'manual' } },
      { address: '198.18.0.5', family: 4, ttlMs: 60_000 },
      { address: '198.18.0.6', family: 4, ttlMs: 60_000 },
    ])
    expect(r.applied).toEqual(['198.18.0.2', 'fd52:43dd::2', '198.18.0.3', '198.18.0.4', '198.18.0.5', '198.18.0.6'])
    expect(r).toMatchObject({ kept: ['198.18.0.5'], extended: ['198.18.0.6'] })
    expect(r.failed.map((f) => f.address)).toEqual(['1.2.3.4\nflush'])
    expect(inputs).toEqual([
      'add portanoia4 198.18.0.2 timeout 2\nadd portanoia6 fd52:43dd::2 timeout 60\nadd portanoia-s4 198.18.0.3 timeout 300\n' +
        'add portanoia-f4 198.18.0.4 timeout 600 comment "fleet id=3 origin=cscli scenario=manual"\nadd portanoia4 198.18.0.6 timeout 60\n',
    ])
  })

  it('parses save output; timeout 0 means no expiry; fleet comments are read', () => {
    expect(parseIpsetSave('create portanoia6 hash:ip family inet6 timeout 0\nadd portanoia6 fd52:43dd::2 timeout 4\nadd portanoia6 fd52:43dd::3 timeout 0\nadd portanoia4 1.2.3.4\n', 6)).toEqual([
      { address: 'fd52:43dd::2', family: 6, expiresInMs: 4000, evidence: 'verified' },
      { address: 'fd52:43dd::3', family: 6, evidence: 'verified' },
    ])
    expect(parseIpsetSave('add portanoia-f4 198.18.0.4 timeout 59 comment "fleet id=3 origin=cscli scenario=manual"\n', 4, 'fleet')).toEqual([
      { address: '198.18.0.4', family: 4, expiresInMs: 59_000, evidence: 'fleet', fleet: { id: 3, origin: 'cscli', scenario: 'manual' } },
    ])
  })
})

describe('ResponderSet', () => {
  const base = (name: string, over: Partial<Responder>): Responder => ({
    name,
    start: async () => [],
    block: async () => ({ responder: name, ok: true, applied: [], failed: [] }),
    unblock: async () => ({ responder: name, ok: true, applied: [], failed: [] }),
    list: async () => [],
    notify: async () => ({ responder: name, ok: true, applied: [], failed: [] }),
    close: async () => {},
    ...over,
  })

  it('isolates a throwing or rejecting responder from the others', async () => {
    const seen: string[] = []
    const set = new ResponderSet([
      base('boom', { block: () => { throw new Error('sync boom') }, start: async () => { throw new Error('no nft') } }),
      base('reject', { block: async () => { throw new Error('async boom') } }),
      base('good', { block: async (reqs) => { seen.push(...reqs.map((q) => q.address)); return { responder: 'good', ok: true, applied: reqs.map((q) => q.address), failed: [] } } }),
    ])
    const rs = await set.block([{ address: '198.18.0.2', family: 4, ttlMs: 1000 }])
    expect(rs.map((r) => [r.responder, r.ok])).toEqual([['boom', false], ['reject', false], ['good', true]])
    expect(rs[0]!.failed[0]!.error).toMatch(/sync boom/)
    expect(seen).toEqual(['198.18.0.2'])
    const st = await set.start()
    expect(st.map((s) => s.ok)).toEqual([false, true, true])
  })

  it('handle() blocks block decisions and notifies all, concurrently', async () => {
    const order: string[] = []
    // Each side waits for the other to have started: run one after the other, they would never finish.
    let blockStarted!: () => void
    let notifyStarted!: () => void
    const blockGate = new Promise<void>((r) => (blockStarted = r))
    const notifyGate = new Promise<void>((r) => (notifyStarted = r))
    const set = new ResponderSet([
      base('fw', { block: async (reqs) => { blockStarted(); await notifyGate; order.push(`block ${reqs.length}`); return { responder: 'fw', ok: true, applied: reqs.map((q) => q.address), failed: [] } } }),
      base('note', { notify: async (ds) => { notifyStarted(); await blockGate; order.push(`notify ${ds.length}`); return { responder: 'note', ok: true, applied: ds.map((d) => d.src), failed: [] } } }),
    ])
    const handled = set.handle([decision({ upgrade: true }), decision({ action: 'report', reason: 'spoofable-report-only', src: '198.18.0.7' })])
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('handle() ran the responders one after the other')), 2000))
    const rs = await Promise.race([handled, timeout])
    expect(rs.map((r) => r.responder)).toEqual(['fw', 'note'])
    expect(order.sort()).toEqual(['block 1', 'notify 2'])
    expect(blockRequests([decision({ upgrade: true })])).toEqual([{ address: '198.18.0.2', family: 4, ttlMs: 3_600_000, evidence: 'verified', upgrade: true }])
    expect(blockRequests([decision({ verified: false, ttlMs: 300_000 })])).toEqual([{ address: '198.18.0.2', family: 4, ttlMs: 300_000, evidence: 'spoofable' }])
    expect(() => new ResponderSet([base('a', {}), base('a', {})])).toThrow(/distinct/)
  })
})

describe('responder options', () => {
  it('a bad option is PORTANOIA_BAD_OPTION with a hint, never a bare RangeError', () => {
    const badOption = expect.objectContaining({ code: 'PORTANOIA_BAD_OPTION', hint: expect.any(String) })
    expect(() => new WebhookResponder({ url: 'http://127.0.0.1:9/x', retries: 99 })).toThrow(badOption)
    expect(() => new WebhookResponder({ url: 'http://127.0.0.1:9/x', concurrency: 0 })).toThrow(badOption)
    expect(() => new JsonlResponder({})).toThrow(badOption)
    expect(() => new NftablesResponder({ chunk: 0 })).toThrow(badOption)
    const named = (name: string): Responder => new JsonlResponder({ stream: new Writable({ write: (_c, _e, cb) => cb() }), name })
    expect(() => new ResponderSet([named('a'), named('a')])).toThrow(badOption)
  })
})
