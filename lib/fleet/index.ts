/**
 * The fleet link's entry point for the daemon: `startFleet()` builds the LAPI
 * client, FleetPush and FleetPull from a resolved config and starts them, so the
 * daemon plugs it in with a few lines (push each local decision, merge stats,
 * close on exit). Owns nothing but the wiring; the parts live in lapi.ts,
 * fleet.ts, config.ts and events.ts and are re-exported here.
 */

import type { Decision } from '../policy/decision.js'
import type { Responder } from '../responders/types.js'
import type { ResolvedFleet } from './config.js'
import type { FleetStreamEvent } from './events.js'
import { FleetPull, FleetPush, type FleetPullStats, type FleetPushStats, type GuardCheck } from './fleet.js'
import { LapiClient, type FetchFn } from './lapi.js'

export * from './config.js'
export * from './events.js'
export * from './fleet.js'
export * from './lapi.js'

export interface StartFleetOptions {
  /** The firewall responder fleet bans are applied through (nftables by default). */
  responder: Pick<Responder, 'name' | 'block' | 'unblock' | 'maxTtlMs'>
  guards: GuardCheck
  /** The engine's own blocks (`(a) => engine.isBlocked(a)`); pushed addresses are added to it. */
  isLocalBlock?: (address: string) => boolean
  onEvent?: (e: FleetStreamEvent) => void
  fetch?: FetchFn
}

export interface Fleet {
  client: LapiClient
  push: FleetPush | null
  pull: FleetPull | null
  /** Hands a local decision to FleetPush (no-op when pushing is off, or the decision is not a block). */
  offer(d: Decision): void
  /** For the stats event's `responders` map: `{ 'fleet-push': {...}, 'fleet-pull': {...} }`. */
  stats(): Record<string, FleetPushStats | FleetPullStats>
  close(): Promise<void>
}

export function startFleet(config: ResolvedFleet, options: StartFleetOptions): Fleet {
  const clientOptions: ConstructorParameters<typeof LapiClient>[0] = { url: config.url, timeoutMs: config.timeoutMs }
  if (config.machine !== undefined) clientOptions.machine = config.machine
  if (config.password !== undefined) clientOptions.password = config.password
  if (config.bouncerKey !== undefined) clientOptions.bouncerKey = config.bouncerKey
  if (options.fetch !== undefined) clientOptions.fetch = options.fetch
  const client = new LapiClient(clientOptions)
  const onEvent = options.onEvent ?? (() => {})
  const push = config.push
    ? new FleetPush({ client, intervalMs: config.pushIntervalMs, queueLimit: config.queueLimit, pushSpoofable: config.pushSpoofable, onEvent }).start()
    : null
  const local = options.isLocalBlock ?? (() => false)
  const pull = config.pull
    ? new FleetPull({
        client,
        responder: options.responder,
        guards: options.guards,
        isLocalBlock: (a) => local(a) || (push?.pushed(a) ?? false),
        intervalMs: config.pullIntervalMs,
        onEvent,
      }).start()
    : null
  let closing: Promise<void> | null = null
  return {
    client,
    push,
    pull,
    offer: (d) => {
      push?.push(d)
    },
    stats: () => {
      const out: Record<string, FleetPushStats | FleetPullStats> = {}
      if (push !== null) out['fleet-push'] = push.stats()
      if (pull !== null) out['fleet-pull'] = pull.stats()
      return out
    },
    close: () => {
      closing ??= Promise.all([push?.close(), pull?.close()]).then(() => undefined)
      return closing
    },
  }
}
