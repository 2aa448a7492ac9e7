/**
 * The control socket: how `portanoia status|list|block|unblock|reload` reach a
 * running daemon. A Unix stream socket speaking newline-delimited JSON — one
 * request object a line (`{"op":"status"}`), one response line each
 * (`{"ok":true,...}` or `{"ok":false,"error":{code,message,hint}}`). This file owns
 * the protocol (request schema, bounds), where the socket lives (one per network
 * namespace under /run/portanoia/), and the server; control-client.ts is the other
 * end. Runs on the main thread.
 *
 * Invariants. Access is the file system's: the socket is 0600 (made under a
 * umask, so it is never wider, even for a moment) in a directory the daemon
 * creates 0700, so only its user and root can connect. Nothing in a request is
 * trusted: it is parsed against a strict schema, bounded in size (64 KiB a line),
 * in time (5 s to send a complete line) and in connections (16), and addresses and
 * TTLs are validated by the daemon's own methods, as for the CLI. A live socket at
 * the path means another daemon: start-up is refused; a stale one (nobody answers)
 * is replaced; anything that is not a socket is never removed. close() removes
 * the socket (libuv unlinks a server's path when it closes).
 */
import { lstat, mkdir, readdir, stat, chmod, unlink } from 'node:fs/promises'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { dirname } from 'node:path'
import { z } from 'zod'
import { PortanoiaError } from '../errors.js'
import type { ResponderResult } from '../responders/types.js'
import type { BlockInfo } from './blocks.js'
import type { DaemonStatus, ReloadRecord } from './status.js'

/** Where control sockets live unless the config names another path. */
export const CONTROL_DIR = '/run/portanoia'
/** Longest request line, bytes. */
export const MAX_REQUEST_BYTES = 64 * 1024
/** Time to send a complete request line, ms. */
export const REQUEST_TIMEOUT_MS = 5000
/** Connections served at once; more are refused by the kernel's backlog. */
export const MAX_CONNECTIONS = 16

const addresses = z.array(z.string().max(64)).min(1).max(4096)
const base = { id: z.union([z.string().max(64), z.number().int()]).optional(), v: z.literal(1).optional() }

/** Every request the daemon understands. Unknown fields are refused, not ignored. */
export const controlRequestSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('status'), ...base }),
  z.strictObject({ op: z.literal('list'), ...base }),
  z.strictObject({ op: z.literal('block'), addresses, ttl: z.string().max(32).optional(), ...base }),
  z.strictObject({ op: z.literal('unblock'), addresses, ...base }),
  z.strictObject({ op: z.literal('reload'), ...base }),
])

export type ControlRequest = z.infer<typeof controlRequestSchema>
export type ControlOp = ControlRequest['op']

/** An operator's block through the daemon: what was applied, kept, refused, failed. */
export interface BlockOutcome {
  /** Blocked now (or, in dry-run, would have been). */
  applied: string[]
  /** Already blocked for at least as long: left alone (timeouts only grow). */
  kept: Array<{ address: string; expiresInMs?: number }>
  /** Refused by a guard: never blocked. */
  refused: Array<{ address: string; reason: string }>
  failed: Array<{ address: string; error: string }>
  ttlMs: number
  dryRun?: boolean
}

/** The daemon side of the protocol (Daemon implements it). */
export interface ControlHandler {
  status(): Promise<DaemonStatus>
  list(): Promise<BlockInfo[]>
  block(addresses: readonly string[], options?: { ttl?: string }): Promise<BlockOutcome>
  unblock(addresses: readonly string[]): Promise<ResponderResult | null>
  reload(): Promise<ReloadRecord>
}

export interface ControlErrorBody {
  code: string
  message: string
  hint?: string
}

/** One response line's payload, by op. */
export interface ControlResults {
  status: { status: DaemonStatus }
  list: { blocks: BlockInfo[] }
  block: { result: BlockOutcome }
  unblock: { result: ResponderResult | null }
  reload: { reload: ReloadRecord }
}

export type ControlResponse =
  | ({ ok: true; v: 1; id?: string | number } & Partial<ControlResults[ControlOp]>)
  | { ok: false; v: 1; id?: string | number; error: ControlErrorBody }

function controlError(message: string, hint: string, cause?: unknown): PortanoiaError {
  return new PortanoiaError('PORTANOIA_CONTROL_FAILED', message, { hint, ...(cause !== undefined && { cause }) })
}

/** The name `ip netns` knows this process's network namespace by, or null (none, or not named). */
export async function ownNetnsName(): Promise<string | null> {
  try {
    const self = await stat('/proc/self/ns/net')
    for (const name of await readdir('/run/netns')) {
      const s = await stat(`/run/netns/${name}`).catch(() => null)
      if (s !== null && s.ino === self.ino && s.dev === self.dev) return name
    }
  } catch {
    // No /run/netns: no named namespaces, so this one is not named either.
  }
  return null
}

/**
 * The default socket path: one per network namespace, so the privileged tests,
 * `selftest` and a container's watcher never share one. With `netns` (the daemon
 * watches that namespace) or when this process runs inside a named namespace
 * (`ip netns exec NAME portanoia …`) the name is part of the file name; both ways
 * of watching one namespace lead to the same socket, so the second is refused.
 */
export async function defaultControlPath(netns?: string): Promise<string> {
  const name = netns ?? (await ownNetnsName())
  const path = name === null ? `${CONTROL_DIR}/portanoia.sock` : `${CONTROL_DIR}/portanoia-${name}.sock`
  if (Buffer.byteLength(path) > 107) {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `the namespace name ${JSON.stringify(name)} makes the control socket path too long (${path})`, {
      hint: 'name a shorter path with --control (config: "control")',
    })
  }
  return path
}

/** Whether something answers on `path`: true, false (nobody: stale or absent), or the connect error. */
export function probeSocket(path: string, timeoutMs = 1000): Promise<true | NodeJS.ErrnoException> {
  return new Promise((resolve) => {
    const s = createConnection({ path })
    const done = (r: true | NodeJS.ErrnoException): void => {
      clearTimeout(timer)
      s.destroy()
      resolve(r)
    }
    const timer = setTimeout(() => done(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeoutMs)
    s.once('connect', () => done(true))
    s.once('error', (e: NodeJS.ErrnoException) => done(e))
  })
}

/**
 * Makes the path ready for a new socket: the directory (0700 when it is made here),
 * and no other daemon behind the path; a stale socket is removed.
 */
async function clearPath(path: string): Promise<void> {
  const dir = dirname(path)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e)
    throw controlError(
      `control socket ${path}: cannot make ${dir} (${code})`,
      code === 'EACCES' || code === 'EPERM'
        ? 'as a service, let systemd make it (RuntimeDirectory=portanoia); or name a writable path with --control PATH, or turn it off with --no-control'
        : 'name another path with --control PATH, or turn the socket off with --no-control',
      e,
    )
  }
  let st
  try {
    st = await lstat(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw controlError(`control socket ${path}: cannot inspect it (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 'check the directory permissions', e)
  }
  if (!st.isSocket()) {
    throw controlError(`control socket ${path}: something that is not a socket is in the way`, 'remove it, or name another path with --control PATH')
  }
  const probe = await probeSocket(path)
  if (probe === true) {
    throw new PortanoiaError('PORTANOIA_CONTROL_IN_USE', `another portanoia daemon answers on ${path}`, {
      hint: 'one daemon per namespace: stop the other (portanoia status shows it), or give this one another --control path',
    })
  }
  if (probe.code !== 'ECONNREFUSED') {
    throw controlError(`control socket ${path}: cannot tell whether a daemon answers (${probe.code ?? probe.message})`, 'check its owner and permissions')
  }
  // Nobody listens: a daemon that died without cleaning up.
  await unlink(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw controlError(`control socket ${path}: cannot remove the stale socket (${e.code ?? e.message})`, 'remove it by hand', e)
  })
}

/** A response's error body for anything a handler threw. */
export function errorBody(e: unknown): ControlErrorBody {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code
    const hint = (e as { hint?: unknown }).hint
    return {
      code: typeof code === 'string' ? code : 'PORTANOIA_CONTROL_FAILED',
      message: e.message,
      ...(typeof hint === 'string' && { hint }),
    }
  }
  return { code: 'PORTANOIA_CONTROL_FAILED', message: String(e) }
}

/** A request line parsed and checked, or the error body that says what is wrong with it. */
export function parseRequest(line: string): ControlRequest | ControlErrorBody {
  let doc: unknown
  try {
    doc = JSON.parse(line)
  } catch {
    return { code: 'PORTANOIA_BAD_REQUEST', message: 'the request is not JSON', hint: 'send one JSON object a line, e.g. {"op":"status"}' }
  }
  const r = controlRequestSchema.safeParse(doc)
  if (!r.success) {
    const issue = r.error.issues[0]
    const where = issue === undefined || issue.path.length === 0 ? 'request' : issue.path.map(String).join('.')
    return {
      code: 'PORTANOIA_BAD_REQUEST',
      message: `${where}: ${issue?.message ?? 'invalid'}`,
      hint: 'ops: status, list, block {addresses, ttl?}, unblock {addresses}, reload',
    }
  }
  return r.data
}

async function dispatch(h: ControlHandler, req: ControlRequest): Promise<Partial<ControlResults[ControlOp]>> {
  switch (req.op) {
    case 'status':
      return { status: await h.status() }
    case 'list':
      return { blocks: await h.list() }
    case 'block':
      return { result: await h.block(req.addresses, req.ttl === undefined ? {} : { ttl: req.ttl }) }
    case 'unblock':
      return { result: await h.unblock(req.addresses) }
    case 'reload':
      return { reload: await h.reload() }
  }
}

export class ControlServer {
  readonly path: string
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  readonly #ino: number
  readonly #dev: number
  #handler: ControlHandler | null = null
  #closing: Promise<void> | undefined

  private constructor(path: string, server: Server, id: { ino: number; dev: number }) {
    this.path = path
    this.#server = server
    this.#ino = id.ino
    this.#dev = id.dev
  }

  /**
   * Binds the socket at `path` (refusing when another daemon answers there) and
   * serves requests once a handler is attached; until then each gets an error.
   */
  static async listen(path: string): Promise<ControlServer> {
    await clearPath(path)
    let self: ControlServer | null = null
    const server = createServer((socket) => {
      if (self === null) socket.destroy()
      else self.#serve(socket)
    })
    server.maxConnections = MAX_CONNECTIONS
    // The socket file is made by bind() with the process umask: narrow it around the
    // (synchronous) bind so the file is never wider than 0600. Worker threads cannot
    // set the umask; there the chmod below closes the gap, inside a 0700 directory.
    let umask: number | undefined
    try {
      umask = process.umask(0o177)
    } catch {
      umask = undefined
    }
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ path, exclusive: true }, () => {
          server.off('error', reject)
          resolve()
        })
        if (umask !== undefined) process.umask(umask)
        umask = undefined
      })
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EADDRINUSE') {
        throw new PortanoiaError('PORTANOIA_CONTROL_IN_USE', `another portanoia daemon took ${path} while this one started`, {
          hint: 'one daemon per namespace: stop the other, or give this one another --control path',
        })
      }
      throw controlError(`control socket ${path}: cannot listen (${code ?? String(e)})`, 'name another path with --control PATH, or turn it off with --no-control', e)
    } finally {
      if (umask !== undefined) process.umask(umask)
    }
    let id: { ino: number; dev: number }
    try {
      await chmod(path, 0o600)
      id = await lstat(path)
    } catch (e) {
      server.close()
      throw controlError(`control socket ${path}: cannot restrict it to 0600 (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 'check the directory', e)
    }
    self = new ControlServer(path, server, { ino: id.ino, dev: id.dev })
    return self
  }

  attach(handler: ControlHandler): void {
    this.#handler = handler
  }

  #serve(socket: Socket): void {
    if (this.#closing !== undefined) {
      socket.destroy()
      return
    }
    this.#sockets.add(socket)
    socket.once('close', () => this.#sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    socket.setTimeout(REQUEST_TIMEOUT_MS)
    let buffered = ''
    let chain = Promise.resolve()
    const reply = (r: ControlResponse): void => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(r)}\n`)
    }
    const fail = (error: ControlErrorBody): void => {
      reply({ ok: false, v: 1, error })
      socket.end()
      socket.destroySoon()
    }
    socket.on('timeout', () => fail({ code: 'PORTANOIA_BAD_REQUEST', message: `no complete request within ${REQUEST_TIMEOUT_MS / 1000} s`, hint: 'end each request with a newline' }))
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      buffered += chunk
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        if (line.trim() === '') continue
        chain = chain.then(() => this.#answer(socket, line, reply))
      }
      if (Buffer.byteLength(buffered) > MAX_REQUEST_BYTES) {
        buffered = ''
        fail({ code: 'PORTANOIA_BAD_REQUEST', message: `request longer than ${MAX_REQUEST_BYTES} bytes`, hint: 'send fewer addresses per request' })
      }
    })
  }

  async #answer(socket: Socket, line: string, reply: (r: ControlResponse) => void): Promise<void> {
    const req = parseRequest(line)
    if (!('op' in req)) {
      reply({ ok: false, v: 1, error: req })
      return
    }
    const id = req.id === undefined ? {} : { id: req.id }
    const h = this.#handler
    if (h === null) {
      reply({ ok: false, v: 1, ...id, error: { code: 'PORTANOIA_CONTROL_FAILED', message: 'the daemon is still starting', hint: 'try again in a moment' } })
      return
    }
    // A reload may take longer than the request timeout: that bounds sending, not work.
    socket.setTimeout(0)
    try {
      reply({ ok: true, v: 1, ...id, ...(await dispatch(h, req)) })
    } catch (e) {
      reply({ ok: false, v: 1, ...id, error: errorBody(e) })
    } finally {
      if (!socket.destroyed) socket.setTimeout(REQUEST_TIMEOUT_MS)
    }
  }

  /** Stops serving, ends open connections, removes the socket. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
      for (const s of this.#sockets) s.destroy()
      await closed
      // libuv has unlinked the path; should it not have, remove it while it is still ours.
      const st = await lstat(this.path).catch(() => null)
      if (st !== null && st.ino === this.#ino && st.dev === this.#dev) await unlink(this.path).catch(() => {})
    })()
    return this.#closing
  }
}
