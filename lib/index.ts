/**
 * Public exports of portanoia, and nothing else: the sensor (open / Sensor), the
 * value types, the port-spec parser, the errors, the policy layer and the events
 * schema, the fleet link (CrowdSec LAPI) and the Prometheus metrics. Everything
 * the CLI uses is reachable from here.
 */
export { open, Sensor } from './sensor.js'
export type { SensorOptions, SensorStats } from './sensor.js'
export type { Hit, Proto, ScanKind, PortRange, PortSpec } from './types.js'
export { SCAN_KINDS } from './types.js'
export { parsePorts, parsePortList, portsToString } from './bpf/ports.js'
export { PortanoiaError, isPortanoiaError } from './errors.js'
export { PolicyEngine } from './policy/engine.js'
export { DEFAULT_POLICY, resolvePolicyConfig } from './policy/config.js'
export type { BlockMode, PolicyConfig } from './policy/config.js'
export { Guards } from './policy/guards.js'
export { readHostFacts } from './daemon/host-facts.js'
export { parseAddress, normalizeAddress, isValidAddress, parseCidr, CidrSet } from './policy/addr.js'
export type { Decision, ReasonCode, Action } from './policy/decision.js'
export * from './daemon/events.js'
export { Daemon } from './daemon/daemon.js'
export type { DaemonOptions, DaemonStats } from './daemon/daemon.js'
export { localHostView, netnsHostView } from './daemon/host-view.js'
export type { HostView } from './daemon/host-view.js'
export { DEFAULT_TRIPWIRES, listeningPorts, unusedTripwires, withoutListening } from './listening.js'
export { Metrics, serveMetrics } from './daemon/metrics.js'
export type { MetricsListen, MetricsOptions, MetricsServer, MetricsSources } from './daemon/metrics.js'
export { fleetConfigSchema, resolveFleetConfig, startFleet } from './fleet/index.js'
export type { Fleet, ResolvedFleet, StartFleetOptions } from './fleet/index.js'
