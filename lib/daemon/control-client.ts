/**
 * The client end of the control socket (control.ts owns the protocol): one
 * request, one response line, bounded in time and size. The CLI's management
 * commands use it to reach a running daemon and fall back to the kernel table only
 * when no daemon answers (ENOENT: no socket; ECONNREFUSED: a stale one) — a socket
 * they may not use (EACCES) is an error, never a reason to act behind the daemon's
 * back. Runs on the main thread.
 */
import { createConnection } from 'node:net'
import { PortanoiaError } from '../errors.js'
import type { ControlErrorBody, ControlOp, ControlRequest, ControlResults } from './control.js'

/** Longest response accepted, bytes (a list of many blocks is long, but not this long). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024

/** An error the daemon answered with: its code (a PORTANOIA_* code or an errno name), message and hint. */
export class ControlError extends Error {
  readonly code: string
  readonly hint: string | undefined
  constructor(body: ControlErrorBody) {
    super(body.message)
    this.name = 'ControlError'
    this.code = body.code
    this.hint = body.hint
  }
}

/**
 * Sends one request to the daemon at `path` and resolves with its payload. Rejects
 * with PORTANOIA_NO_DAEMON when nobody answers there, PORTANOIA_CONTROL_FAILED when
 * the socket cannot be used or the answer is unreadable, and ControlError with the
 * daemon's own error when it refused the request.
 */
export function controlRequest<Op extends ControlOp>(
  path: string,
  request: Extract<ControlRequest, { op: Op }>,
  timeoutMs = 30_000,
): Promise<ControlResults[Op]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path })
    let buffered = ''
    let settled = false
    const finish = (err: Error | null, value?: ControlResults[Op]): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (err !== null) reject(err)
      else resolve(value as ControlResults[Op])
    }
    const timer = setTimeout(
      () => finish(new PortanoiaError('PORTANOIA_CONTROL_FAILED', `the daemon on ${path} did not answer within ${timeoutMs / 1000} s`, { hint: 'it may be stuck: check its log' })),
      timeoutMs,
    )
    socket.setEncoding('utf8')
    socket.once('connect', () => socket.write(`${JSON.stringify(request)}\n`))
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        finish(new PortanoiaError('PORTANOIA_NO_DAEMON', `no daemon answers on ${path}`, { hint: 'is it running? (systemctl status portanoia)', cause: e }))
      } else if (e.code === 'EACCES' || e.code === 'EPERM') {
        finish(new PortanoiaError('PORTANOIA_CONTROL_FAILED', `may not use the control socket ${path} (${e.code})`, { hint: "run as root or as the daemon's user", cause: e }))
      } else {
        finish(new PortanoiaError('PORTANOIA_CONTROL_FAILED', `control socket ${path}: ${e.code ?? e.message}`, { hint: 'check the path and the daemon', cause: e }))
      }
    })
    socket.on('data', (chunk: string) => {
      buffered += chunk
      if (buffered.length > MAX_RESPONSE_BYTES) {
        finish(new PortanoiaError('PORTANOIA_CONTROL_FAILED', `the answer on ${path} is longer than ${MAX_RESPONSE_BYTES} bytes`, { hint: 'this is not a portanoia daemon, or a bug' }))
        return
      }
      const nl = buffered.indexOf('\n')
      if (nl < 0) return
      let doc: unknown
      try {
        doc = JSON.parse(buffered.slice(0, nl))
      } catch {
        finish(new PortanoiaError('PORTANOIA_CONTROL_FAILED', `the answer on ${path} is not JSON`, { hint: 'is a portanoia daemon listening there?' }))
        return
      }
      if (typeof doc !== 'object' || doc === null || typeof (doc as { ok?: unknown }).ok !== 'boolean') {
        finish(new PortanoiaError('PORTANOIA_CONTROL_FAILED', `the answer on ${path} is not a control response`, { hint: 'is a portanoia daemon listening there?' }))
        return
      }
      const r = doc as { ok: boolean; error?: Partial<ControlErrorBody> }
      if (!r.ok) {
        const e = r.error ?? {}
        finish(new ControlError({ code: String(e.code ?? 'PORTANOIA_CONTROL_FAILED'), message: String(e.message ?? 'refused'), ...(typeof e.hint === 'string' && { hint: e.hint }) }))
        return
      }
      finish(null, doc as ControlResults[Op])
    })
    socket.once('end', () => finish(new PortanoiaError('PORTANOIA_CONTROL_FAILED', `the daemon on ${path} closed the connection without an answer`, { hint: 'check its log' })))
  })
}
