/**
 * One config, one assembly: builds the whole daemon from a validated DaemonConfig —
 * the host view (this namespace or `netns`), the default tripwires minus ports in
 * use, the allow file, the firewall responder the backend names, the notifiers
 * (exec, webhook), the fleet link (its secrets read here, never printed), and the
 * metrics endpoint — then composes the Daemon. The CLI and an embedding service
 * call the same function, so both get the same pipeline. Order matters for safety:
 * everything that can fail on bad input (files, secrets, the metrics port) runs
 * before the sensor opens and the firewall is touched, and a failure undoes what
 * was made. Runs on the main thread.
 */
import { parsePorts, portsToString } from '../bpf/ports.js'
import { PortanoiaError } from '../errors.js'
import { type ResolvedFleet, resolveFleetConfig } from '../fleet/config.js'
import { DEFAULT_TRIPWIRES, withoutListening } from '../listening.js'
import { ExecResponder } from '../responders/exec.js'
import { IpsetResponder } from '../responders/ipset.js'
import { NftablesResponder } from '../responders/nftables.js'
import { createRun, defaultRun, netnsRun } from '../responders/run.js'
import type { Responder, RunFn } from '../responders/types.js'
import { WebhookResponder } from '../responders/webhook.js'
import { type DaemonConfig, readAllowFile } from './config.js'
import { Daemon, type DaemonOptions } from './daemon.js'
import type { PortanoiaEvent } from './events.js'
import { type HostView, localHostView, netnsHostView } from './host-view.js'
import type { Metrics } from './metrics.js'

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

/** The firewall responder a backend names, running its commands through `run`. */
export function firewallFor(config: Pick<DaemonConfig, 'backend' | 'dryRun' | 'forward'>, run: RunFn): Responder | null {
  if (config.backend === 'nftables') return new NftablesResponder({ run, dryRun: config.dryRun, forward: config.forward })
  if (config.backend === 'ipset') return new IpsetResponder({ run, dryRun: config.dryRun })
  return null
}

/** How firewall and exec commands run: here, or inside the watched namespace. */
export function commandRunner(netns: string | undefined): RunFn {
  return netns === undefined ? defaultRun : netnsRun(netns)
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
  const allow = [...config.allow]
  if (config.allowFile !== undefined) {
    const entries = await readAllowFile(config.allowFile)
    allow.push(...entries)
    log('info', `allowlist: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} from ${config.allowFile}`)
  }
  const firewall = options.firewall !== undefined ? options.firewall : firewallFor(config, run)
  const notifiers: Responder[] = []
  if (config.exec !== undefined) {
    const execRun = config.netns === undefined ? undefined : netnsRun(config.netns, createRun({ timeoutMs: 10_000, killGroup: true }))
    notifiers.push(new ExecResponder({ command: config.exec.command, shell: config.exec.shell, ...(execRun !== undefined && { run: execRun }) }))
    if (config.exec.shell) log('info', 'the -c command uses shell syntax: it runs through /bin/sh, with tokens replaced only by validated address and port literals')
  }
  if (config.webhook !== undefined) notifiers.push(new WebhookResponder({ url: config.webhook }))
  notifiers.push(...(options.notifiers ?? []))

  let fleet: ResolvedFleet | undefined
  if (config.crowdsec !== undefined) {
    const resolved = await resolveFleetConfig({ crowdsec: config.crowdsec })
    if (resolved !== null) {
      for (const w of resolved.warnings) log('warn', w)
      fleet = resolved
    }
  }

  let ports = config.ports
  if (config.useDefaults) {
    const sel = withoutListening(parsePorts(DEFAULT_TRIPWIRES), await host.listening())
    for (const r of sel.skipped) log('info', `not a tripwire: ${portsToString([r])} (a local service uses it)`)
    ports = sel.ports
    if (ports.length === 0) {
      throw new PortanoiaError('PORTANOIA_NO_PORTS', 'every default tripwire is in use by a local service', { hint: 'name tripwires with tcp/udp' })
    }
  }

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

  // 3. The pipeline.
  try {
    return await Daemon.compose({
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
      host,
      ...(fleet !== undefined && { fleet }),
      ...(metrics !== undefined && { metrics }),
      ...(metricsServer !== undefined && { onClosed: () => metricsServer.close() }),
      ...(internals.sensor !== undefined && { sensor: internals.sensor }),
      ...(internals.now !== undefined && { now: internals.now }),
      ...(options.onEvent !== undefined && { onEvent: options.onEvent }),
      ...(options.onLog !== undefined && { onLog: options.onLog }),
      ...(options.onScript !== undefined && { onScript: options.onScript }),
    })
  } catch (e) {
    await metricsServer?.close()
    throw e
  }
}
