/**
 * Test-only access to a Daemon's pipeline parts (its policy engine, sensor and host
 * view). They are TypeScript-private so they stay off the public surface; privileged
 * tests read them to wait for a decision or to check what the sensor watches. One
 * cast, here, instead of one per test; no behaviour.
 */
import type { Daemon } from '../../lib/daemon/daemon.js'
import type { HostView } from '../../lib/daemon/host-view.js'
import type { PolicyEngine } from '../../lib/policy/engine.js'
import type { Sensor } from '../../lib/sensor.js'

export interface DaemonParts {
  engine: PolicyEngine
  sensor: Sensor
  host: HostView
}

export function internals(daemon: Daemon): DaemonParts {
  return daemon as unknown as DaemonParts
}
