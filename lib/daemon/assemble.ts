/**
 * One config, one assembly: builds the whole daemon from a validated DaemonConfig —
 * the host view (this namespace or `netns`), the default tripwires minus ports in
 * use, the allow file, the firewall responder the backend names, the notifiers
 * (exec, webhook) — each built by parts.ts, which a reload shares — the fleet link
 * (its secrets read here, never printed), the metrics endpoint and the control
 * socket, then composes the Daemon. The CLI and an embedding service call the same
 * function, so both get the same pipeline. Order matters for safety: everything
 * that can fail on bad input (files, secrets, the metrics port, a control socket
 * another daemon answers on) runs before the sensor opens and the firewall is
 * touched, and a failure undoes what was made. Runs on the main thread.
 */
import { PortanoiaError } from '../errors.js'
import { type ResolvedFleet, resolveFleetConfig } from '../fleet/config.js'
import type { Validator } from '../attribution/types.js'
import type { Responder, RunFn } from '../responders/types.js'
import type { DaemonConfig } from './config.js'
import { ControlServer, defaultControlPath } from './control.js'
import { defaultStatePath, StateFile } from './state-file.js'
import { Daemon, type DaemonOptions } from './daemon.js'
import type { PortanoiaEvent } from './events.js'
import { type HostView, localHostView, netnsHostView } from './host-view.js'
import type { Metrics } from './metrics.js'
import { allowlistFor, commandRunner, firewallFor, monitorRunner, notifiersFor, tripwiresFor } from './parts.js'

/** What the embedding program hears from the daemon. */
export interface DaemonHooks {
  /** Every event, synchronously, in order. Exceptions are caught and reported on onLog. */
  onEvent?: (event: PortanoiaEvent) => void
  /** Operational messages that are not events (skipped ports, adopted blocks, ...). */
  onLog?: (level: 'info' | 'warn', message: string) => void
  /** Dry-run: the script a firewall responder would have run. */
  onScript?: (script: string, responder: string) => void
}

export interface StartOptions extends DaemonHooks {
  /**
   * A firewall responder of your own instead of the one `backend` names (null: none).
   * It must implement the Responder interface; see lib/responders/types.ts.
   */
  firewall?: Responder | null
  /** Notifiers in addition to those the config names (exec, webhook). */
  notifiers?: readonly Responder[]
  /**
   * Attribution validators of your own (an inventory lookup, say), run after the
   * built-ins for every new source and packet signature (lib/attribution/types.ts).
   */
  validators?: readonly Validator[]
  /**
   * Where `daemon.reload()` without an argument gets the new config. Default: the
   * config given to Daemon.start, resolved again (so the allow file is re-read).
   */
  reloadSource?: () => Promise<DaemonConfig>
}

/**
 * Test and selftest seams, kept off the public types: where host facts come from,
 * how firewall commands run, sensor overrides (a fake binding).
 * @internal
 */
export interface AssemblyInternals {
  host?: HostView
  run?: RunFn
  sensor?: DaemonOptions['sensor']
  now?: () => number
}

/**
 * Builds and starts the daemon from a validated configuration (Daemon.start is the
 * public way in; the CLI calls this with a config it resolved itself).
 * @internal
 */
export async function startDaemon(config: DaemonConfig, options: StartOptions = {}, internals: AssemblyInternals = {}): Promise<Daemon> {
  const log = options.onLog ?? ((): void => {})
  const run = internals.run ?? commandRunner(config.netns)
  const host = internals.host ?? (config.netns === undefined ? localHostView() : netnsHostView(config.netns))

  // 1. Everything that reads files or can refuse input, before anything is changed.
  const allow = await allowlistFor(config, log)
  // The monitor runs where the firewall commands run; a test's own `run` gets none
  // (its ruleset could not be told apart from the host's).
  const monitor = internals.run !== undefined ? undefined : monitorRunner(config.netns)
  const firewall = options.firewall !== undefined ? options.firewall : firewallFor(config, run, monitor, log)
  const own = notifiersFor(config, log)
  const notifiers: Responder[] = [...own, ...(options.notifiers ?? [])]

  let fleet: ResolvedFleet | undefined
  if (config.crowdsec !== undefined) {
    const resolved = await resolveFleetConfig({ crowdsec: config.crowdsec })
    if (resolved !== null) {
      for (const w of resolved.warnings) log('warn', w)
      fleet = resolved
    }
  }

  const ports = await tripwiresFor(config, host, log)

  // 2. The metrics endpoint: bound now, so a port in use stops us before the firewall
  //    is touched. prom-client is loaded only when metrics are asked for. With a
  //    netns the endpoint still listens in this process's namespace.
  let metrics: Metrics | undefined
  let metricsServer: { url: string; close(): Promise<void> } | undefined
  if (config.metrics !== undefined) {
    const m = await import('./metrics.js')
    metrics = new m.Metrics()
    try {
      metricsServer = await m.serveMetrics(metrics, config.metrics)
    } catch (e) {
      const code = (e as { code?: unknown }).code
      throw new PortanoiaError(
        'PORTANOIA_BAD_CONFIG',
        `metrics ${config.metrics.host}:${config.metrics.port}: cannot listen (${typeof code === 'string' ? code : String(e)})`,
        { hint: code === 'EADDRINUSE' ? 'another program uses that port: pick another one' : 'check the address: it must be one of this host', cause: e },
      )
    }
    log('info', `metrics on ${metricsServer.url}`)
  }

  // 3. The control socket, bound before the sensor and the firewall: a daemon already
  //    answering there watches the same namespace, and must not share its table.
  let control: ControlServer | undefined
  try {
    if (config.control !== false) control = await ControlServer.listen(config.control ?? (await defaultControlPath(config.netns)))
  } catch (e) {
    await metricsServer?.close()
    throw e
  }
  const closeExtras = async (): Promise<void> => {
    await control?.close()
    await metricsServer?.close()
  }

  // 4. The pipeline. The state file is read by the daemon (a bad one is reported
  //    and set aside, never a reason not to start).
  const state = config.state === false ? undefined : new StateFile(config.state ?? (await defaultStatePath(config.netns)), { log })
  try {
    const daemon = await Daemon.compose({
      ports: ports.map((r) => `${r.from}-${r.to}/${r.proto}`),
      unused: config.unused.map((r) => `${r.from}-${r.to}/${r.proto}`),
      ...(config.interface !== undefined && { interface: config.interface }),
      ...(config.netns !== undefined && { netns: config.netns }),
      policy: config.policy,
      allowlist: allow,
      firewall,
      notifiers,
      hits: config.hits,
      statsIntervalMs: config.statsIntervalMs,
      attribution: config.attribution && {
        reversePath: config.reversePath,
        linkProbe: config.linkProbe,
        ...(options.validators !== undefined && { validators: options.validators }),
      },
      host,
      ...(!config.scans && { scans: false as const }),
      ...(fleet !== undefined && { fleet }),
      ...(metrics !== undefined && { metrics }),
      onClosed: closeExtras,
      config,
      configNotifiers: own,
      ...(state !== undefined && { state }),
      ...(config.aggregate !== undefined && { aggregate: config.aggregate }),
      ...(options.reloadSource !== undefined && { reloadSource: options.reloadSource }),
      ...(control !== undefined && { controlPath: control.path }),
      sensor: { ringRecords: config.ringRecords, ...internals.sensor },
      ...(internals.now !== undefined && { now: internals.now }),
      ...(options.onEvent !== undefined && { onEvent: options.onEvent }),
      ...(options.onLog !== undefined && { onLog: options.onLog }),
      ...(options.onScript !== undefined && { onScript: options.onScript }),
    })
    control?.attach(daemon)
    if (control !== undefined) log('info', `control socket ${control.path}`)
    return daemon
  } catch (e) {
    await closeExtras()
    throw e
  }
}
