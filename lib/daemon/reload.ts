/**
 * Reload: a running daemon takes a new DaemonConfig without losing a hit or a
 * block. planReload compares the two configs field by field (pure): fields that
 * need a restart refuse the whole reload; the others are changes. prepareReload
 * then does everything that can fail, before anything changes — reads the allow
 * file, computes the tripwire set (the default set and `unused` ranges against the
 * socket table), checks the allowlist, builds and starts new notifiers — and hands
 * the daemon parts it applies with calls that cannot refuse bad input (the sensor's
 * port swap may still fail on a port in use: it goes first, and is atomic). Runs
 * on the main thread.
 *
 * Why these need a restart: `interface` and `netns` (the capture socket and the
 * host view are bound to them), `backend` and `forward` (the firewall table and its
 * chains were made at start; a switch would orphan the blocks in the old one),
 * `dryRun` and a change to or from `block: off` (the firewall responder is made for
 * one mode: a live switch could apply would-be blocks or drop real ones), `metrics`
 * (its port was bound before the firewall was touched, so a port in use never
 * leaves a half-started daemon), `crowdsec` (secrets are read and the LAPI session
 * made at start), `json` (the format of a stream other programs parse),
 * `control` (the socket a reload may have come through), `state` (the journal
 * was loaded into the engine at start; a new path would start from nothing),
 * `aggregate` (the prefix sets are part of the table's shape), and `attribution`,
 * `reversePath` and `linkProbe` (the attribution validators are built with the
 * sensor at start), `scans` (the tracker is wired into the capture loop at start), and
 * `ringRecords` (the capture's ring is allocated when it opens; a new one would be a new capture).
 */
import { Guards } from '../policy/guards.js'
import type { PolicyConfig } from '../policy/config.js'
import type { Responder } from '../responders/types.js'
import type { PortRange } from '../types.js'
import type { DaemonConfig } from './config.js'
import type { HostView } from './host-view.js'
import { allowlistFor, captureSet, notifiersFor, tripwiresFor } from './parts.js'

type Log = (level: 'info' | 'warn', message: string) => void

/** Config fields a reload cannot apply, with the config file's names. */
const RESTART_FIELDS = ['interface', 'netns', 'backend', 'forward', 'enforce', 'metrics', 'crowdsec', 'json', 'control', 'state', 'aggregate', 'attribution', 'reversePath', 'linkProbe', 'scans', 'ringRecords'] as const

/** Policy keys as the config file names them. */
const POLICY_NAMES: Partial<Record<keyof PolicyConfig, string>> = {
  blockTtlMs: 'blockTtl',
  blockTtlLadderMs: 'blockTtl',
  forgetAfterMs: 'forgetAfter',
  spoofableTtlMs: 'spoofableTtl',
  windowMs: 'window',
}

export interface ReloadPlan {
  /** Fields that changed and will be applied live. */
  changed: string[]
  /** Fields that changed and need a restart: the reload is refused when any does. */
  restart: string[]
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** What differs between the running config and the new one, and whether it can be applied live. */
export function planReload(current: DaemonConfig, next: DaemonConfig): ReloadPlan {
  const restart: string[] = RESTART_FIELDS.filter((k) => !same(current[k], next[k]))
  const wasOff = current.policy.block === 'off'
  const isOff = next.policy.block === 'off'
  if (wasOff !== isOff) restart.push('block (to or from off)')
  else if (current.dryRun !== next.dryRun) restart.push('dryRun')

  const changed: string[] = []
  if (!same(current.ports, next.ports) || current.useDefaults !== next.useDefaults) changed.push('tcp/udp/sctp')
  if (!same(current.unused, next.unused)) changed.push('unused')
  for (const k of Object.keys(next.policy) as Array<keyof PolicyConfig>) {
    if (k === 'dryRun' || (k === 'block' && wasOff !== isOff)) continue
    const name = POLICY_NAMES[k] ?? k
    if (!same(current.policy[k], next.policy[k]) && !changed.includes(name)) changed.push(name)
  }
  if (!same(current.allow, next.allow) || current.allowFile !== next.allowFile) changed.push('allow')
  for (const k of ['exec', 'webhook', 'hits', 'statsIntervalMs'] as const) {
    if (!same(current[k], next[k])) changed.push(k === 'statsIntervalMs' ? 'statsInterval' : k)
  }
  return { changed, restart }
}

/** What the daemon installs; every part already validated, new notifiers started. */
export interface PreparedReload {
  changed: string[]
  explicit: PortRange[]
  unused: PortRange[]
  ports: PortRange[]
  listen: true | PortRange[]
  allowlist: string[]
  /** The config's new notifiers (started), or null to keep the current ones. */
  notifiers: Responder[] | null
}

/**
 * Does every step of a reload that can fail, changing nothing in the running
 * daemon. `allowlist` is the one in force now: the allow file is re-read, and a
 * change in its contents is a change even when the config's fields are the same.
 * Throws (after closing any notifier it started) on the first failure.
 */
export async function prepareReload(
  next: DaemonConfig,
  plan: ReloadPlan,
  now: { allowlist: readonly string[]; host: HostView; log: Log },
): Promise<PreparedReload> {
  const changed = [...plan.changed]
  const allowlist = await allowlistFor(next, now.log)
  if (!same([...allowlist].sort(), [...now.allowlist].sort()) && !changed.includes('allow')) changed.push('allow (file contents)')
  // Guards build every set before installing any: the same check, thrown away.
  new Guards({ allowlist })
  const explicit = await tripwiresFor(next, now.host, now.log)
  const { ports, listen } = await captureSet(explicit, next.unused, now.host)
  let notifiers: Responder[] | null = null
  if (changed.includes('exec') || changed.includes('webhook')) {
    const made = notifiersFor(next, now.log)
    const started: Responder[] = []
    try {
      for (const n of made) {
        await n.start()
        started.push(n)
      }
    } catch (e) {
      for (const n of started) await n.close().catch(() => {})
      throw e
    }
    notifiers = made
  }
  return { changed, explicit, unused: next.unused, ports, listen, allowlist, notifiers }
}
