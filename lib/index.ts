/**
 * The public surface of portanoia, curated: what a user needs, nothing else (undici's
 * index.js is the model). The sensor (`open`, and the Sensor class, whose instances
 * come from open() only), the daemon built from one config object,
 * the events schema (types, zod schemas, the line parser; not the internal event
 * builders), the policy layer, the responders (for a `firewall` or `notifiers` of
 * your own), metrics, and the errors with every code they can carry. Anything not
 * exported here may change without notice.
 */

// The sensor.
export { open, Sensor } from './sensor.js'
export type { SensorOptions, SensorStats } from './sensor.js'
export type { Attribution, Hit, Proto, ScanKind, PortRange, PortSpec, TransportProto } from './types.js'
export { SCAN_KINDS } from './types.js'
export { parsePorts, parsePortList, portsToString } from './bpf/ports.js'
export { DEFAULT_TRIPWIRES } from './listening.js'

// Attribution: is a packet's source plausibly its sender, or forged?
export { Attributor } from './attribution/attributor.js'
export type { AttributorOptions, AttributorStats } from './attribution/attributor.js'
export { attachAttributor } from './attribution/attach.js'
export type { AttachOptions } from './attribution/attach.js'
export { ATTRIBUTIONS, EVIDENCE } from './attribution/types.js'
export type { Attributed, EvidenceName, ValidationContext, Validator, ValidatorResult, Verdict } from './attribution/types.js'

// Errors.
export { PortanoiaError, isPortanoiaError } from './errors.js'
export type { PortanoiaErrorCode, PortanoiaErrorOptions } from './errors.js'

// The daemon and its configuration.
export { Daemon } from './daemon/daemon.js'
export type { DaemonStats } from './daemon/daemon.js'
export type { DaemonStatus, ReloadRecord } from './daemon/status.js'
export type { BlockInfo, BlockOrigin } from './daemon/blocks.js'
export type { BlockOutcome } from './daemon/control.js'
export type { DaemonHooks, StartOptions } from './daemon/assemble.js'
export { configSchema, DEFAULT_CONFIG_FILE, parseConfig, readConfig, resolveConfig, formatDuration, parseDuration } from './daemon/config.js'
export type { Backend, ConfigFile, ConfigInput, DaemonConfig, MetricsListen } from './daemon/config.js'

// Events.
export {
  EVENT_SCHEMA_VERSION,
  eventSchema,
  hitEventSchema,
  decisionEventSchema,
  statsEventSchema,
  errorEventSchema,
  operatorEventSchema,
  scanEventSchema,
  decoyEventSchema,
  parseEventLine,
  toJsonLine,
} from './daemon/events.js'
export type {
  EventType,
  PortanoiaEvent,
  HitEvent,
  DecisionEvent,
  StatsEvent,
  ErrorEvent,
  FleetDecisionEvent,
  FleetEvent,
  OperatorEvent,
  ForgeryEvent,
  ScanEvent,
  DecoyEvent,
} from './daemon/events.js'
export type { ScanShape } from './daemon/scans.js'
export type { ScanTool } from './daemon/scan-tools.js'
export { forgeryEventSchema } from './attribution/events.js'

// Policy.
export { PolicyEngine } from './policy/engine.js'
export type { ActiveBlock, AdoptedBlock, PolicyEngineOptions, PolicyStats } from './policy/engine.js'
export { DEFAULT_POLICY, resolvePolicyConfig } from './policy/config.js'
export type { BlockMode, PolicyConfig } from './policy/config.js'
export { Guards } from './policy/guards.js'
export type { GuardReason, GuardSnapshot } from './policy/guards.js'
export { ACTIONS, REASON_CODES } from './policy/decision.js'
export type { Action, Decision, ReasonCode, Trigger } from './policy/decision.js'
export { parseAddress, normalizeAddress, isValidAddress, parseCidr, CidrSet } from './policy/addr.js'

// Responders.
export { NftablesResponder, IpsetResponder, ExecResponder, WebhookResponder, JsonlResponder } from './responders/index.js'
export type {
  ActiveBlockEntry,
  BlockRequest,
  Enforce,
  ExecOptions,
  IpsetOptions,
  JsonlOptions,
  NftablesOptions,
  Responder,
  ResponderResult,
  RunFn,
  RunResult,
  WebhookOptions,
} from './responders/index.js'

// Metrics (the daemon serves them itself with the `metrics` config field).
export { Metrics, serveMetrics } from './daemon/metrics.js'
export type { MetricsOptions, MetricsServer, MetricsSources } from './daemon/metrics.js'
