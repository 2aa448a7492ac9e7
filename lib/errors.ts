/**
 * The library's own error type. Every error portanoia raises itself (as opposed to
 * a system error passed through from the addon) is a PortanoiaError with a stable
 * `code` from PortanoiaErrorCode and a `hint` that tells the caller what to do
 * about it. Codes are part of the public contract: add, never rename. Pure, no I/O.
 */

/**
 * Every code portanoia raises itself. Closed on purpose: a new code must be added
 * here (and documented) before the compiler lets it be thrown.
 */
export type PortanoiaErrorCode =
  /** a port spec is malformed or out of range */
  | 'PORTANOIA_BAD_PORT'
  /** no tripwire port is left to watch */
  | 'PORTANOIA_NO_PORTS'
  /** a port is listed twice or ranges overlap */
  | 'PORTANOIA_DUPLICATE_PORT'
  /** the kernel filter cannot be built */
  | 'PORTANOIA_BAD_FILTER'
  /** an option of the library API is invalid */
  | 'PORTANOIA_BAD_OPTION'
  /** a configuration field is invalid (the message names it) */
  | 'PORTANOIA_BAD_CONFIG'
  /** a policy setting is invalid */
  | 'PORTANOIA_BAD_POLICY'
  /** a guard entry is not an address */
  | 'PORTANOIA_BAD_GUARD'
  /** an allowlist entry is not an address or CIDR */
  | 'PORTANOIA_BAD_CIDR'
  /** a network namespace name or path is invalid */
  | 'PORTANOIA_BAD_NETNS'
  /** an interface name is invalid */
  | 'PORTANOIA_BAD_INTERFACE'
  /** an exec command template is invalid */
  | 'PORTANOIA_BAD_COMMAND'
  /** a webhook URL or option is invalid */
  | 'PORTANOIA_BAD_WEBHOOK'
  /** an event line does not match the schema */
  | 'PORTANOIA_BAD_EVENT'
  /** what the host says about itself cannot be read */
  | 'PORTANOIA_BAD_HOST_FACTS'
  /** the sensor or daemon is closed */
  | 'PORTANOIA_CLOSED'
  /** no native binary matches this platform */
  | 'PORTANOIA_NO_BINARY'
  /** the native binary was built for another record layout */
  | 'PORTANOIA_LAYOUT_MISMATCH'
  /** the platform lacks a needed feature */
  | 'PORTANOIA_UNSUPPORTED'
  /** nft refused a command */
  | 'PORTANOIA_NFT_FAILED'
  /** ipset refused a command */
  | 'PORTANOIA_IPSET_FAILED'
  /** iptables refused a command */
  | 'PORTANOIA_IPTABLES_FAILED'
  /** a responder failed an action */
  | 'PORTANOIA_RESPONDER_FAILED'
  /** stdout fell behind its reader: events were dropped (counted) */
  | 'PORTANOIA_OUTPUT_DROPPED'
  /** the webhook token cannot be read */
  | 'PORTANOIA_WEBHOOK_TOKEN'
  /** CrowdSec's Local API cannot be reached */
  | 'PORTANOIA_LAPI_UNREACHABLE'
  /** the Local API refused the credentials */
  | 'PORTANOIA_LAPI_AUTH'
  /** the Local API answered with an HTTP error */
  | 'PORTANOIA_LAPI_HTTP'
  /** the Local API answered something unreadable */
  | 'PORTANOIA_LAPI_BAD_RESPONSE'
  /** fleet mode lacks a setting it needs */
  | 'PORTANOIA_LAPI_NOT_CONFIGURED'
  /** a fleet operation failed */
  | 'PORTANOIA_FLEET_FAILED'
  /** a fleet ban could not be applied */
  | 'PORTANOIA_FLEET_APPLY'
  /** a fleet ban could not be lifted */
  | 'PORTANOIA_FLEET_UNBLOCK'
  /** an address given to block or unblock is not an IP address */
  | 'PORTANOIA_BAD_ADDRESS'
  /** a control-socket request is malformed, too long, too slow or names no known op */
  | 'PORTANOIA_BAD_REQUEST'
  /** another daemon answers on the control socket this one was to use */
  | 'PORTANOIA_CONTROL_IN_USE'
  /** the control socket cannot be created, reached or read */
  | 'PORTANOIA_CONTROL_FAILED'
  /** no daemon answers on the control socket */
  | 'PORTANOIA_NO_DAEMON'
  /** an operator's block was refused: a guard protects the address */
  | 'PORTANOIA_GUARDED'
  /** the live peer check right before a block failed, timed out or had too much waiting: spoofable sources are not blocked meanwhile */
  | 'PORTANOIA_PEER_CHECK_FAILED'
  /** a block was asked of a daemon that has no firewall backend */
  | 'PORTANOIA_NO_FIREWALL'
  /** a reload was refused: the new config is invalid or changes a field that needs a restart */
  | 'PORTANOIA_RELOAD_REFUSED'

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
