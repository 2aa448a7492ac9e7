/**
 * The library's own error type. Every error portanoia raises itself (as opposed to
 * a system error passed through from the addon) is a PortanoiaError with a stable
 * `code` from PortanoiaErrorCode and a `hint` that tells the caller what to do
 * about it. Codes are part of the public contract: add, never rename. Pure, no I/O.
 */

export type PortanoiaErrorCode =
  | 'PORTANOIA_BAD_PORT'
  | 'PORTANOIA_NO_PORTS'
  | 'PORTANOIA_DUPLICATE_PORT'
  | 'PORTANOIA_BAD_FILTER'
  | (string & {})

export interface PortanoiaErrorOptions {
  /** What the caller should do about it, one sentence. */
  hint?: string
  cause?: unknown
  /** For wrapped system errors: errno name kept, as Node does. */
  errno?: number
  syscall?: string
}

export class PortanoiaError extends Error {
  readonly code: PortanoiaErrorCode
  readonly hint: string | undefined
  readonly errno: number | undefined
  readonly syscall: string | undefined

  constructor(code: PortanoiaErrorCode, message: string, options: PortanoiaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'PortanoiaError'
    this.code = code
    this.hint = options.hint
    this.errno = options.errno
    this.syscall = options.syscall
  }
}

export function isPortanoiaError(e: unknown, code?: PortanoiaErrorCode): e is PortanoiaError {
  return e instanceof PortanoiaError && (code === undefined || e.code === code)
}
