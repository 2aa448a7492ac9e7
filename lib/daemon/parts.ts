/**
 * The parts a DaemonConfig names, each built by one function: the firewall
 * responder of a backend, how commands run (here or in the watched namespace), the
 * notifiers (exec, webhook), the allowlist (with the allow file read), the
 * tripwires (explicit, or the default set minus ports in use) and which of them get
 * listeners. The assembly (assemble.ts) builds a daemon from them, and a reload
 * (reload.ts) builds the changed ones again from the new config, so both read a
 * config the same way. Runs on the main thread; only allowlistFor and tripwiresFor
 * read anything (the allow file, the socket table), and every function throws a
 * PortanoiaError on bad input before anything is started.
 */
import { parsePorts, portsToString } from '../bpf/ports.js'
import { PortanoiaError } from '../errors.js'
import { DEFAULT_TRIPWIRES, unusedTripwires, withoutListening } from '../listening.js'
import { ExecResponder } from '../responders/exec.js'
import { IpsetResponder } from '../responders/ipset.js'
import { NftablesResponder } from '../responders/nftables.js'
import { nftLibRun } from '../responders/nft-lib.js'
import { createRun, defaultRun, defaultStream, netnsRun, netnsStream, type StreamFn } from '../responders/run.js'
import type { Responder, RunFn } from '../responders/types.js'
import { WebhookResponder } from '../responders/webhook.js'
import type { PortRange } from '../types.js'
import { type DaemonConfig, readAllowFile } from './config.js'
import type { HostView } from './host-view.js'

type Log = (level: 'info' | 'warn', message: string) => void

/**
 * The firewall responder a backend names, running its commands through `run`; with
 * `monitor`, nftables follows deletions in the kernel through it (it must run where
 * `run` runs: netnsStream for a namespace). The policy's spoofable TTL sorts the
 * elements of an earlier version's sets when the table is migrated. `enforce`
 * ingress or both binds the netdev chain to the capture `interface` (checked by
 * the config); `log` hears when that chain cannot be there.
 */
export function firewallFor(
  config: Pick<DaemonConfig, 'backend' | 'dryRun' | 'forward'> & Partial<Pick<DaemonConfig, 'enforce' | 'interface'>> & { aggregate?: DaemonConfig['aggregate'] } & { policy?: Pick<DaemonConfig['policy'], 'spoofableTtlMs'> },
  run: RunFn,
  monitor?: StreamFn,
  log?: Log,
): Responder | null {
  if (config.backend === 'nftables') {
    return new NftablesResponder({
      run,
      dryRun: config.dryRun,
      forward: config.forward,
      // Undefined (a command without a config): the inet table, and a netdev table kept in step when one is there.
      ...(config.enforce !== undefined && { enforce: config.enforce }),
      ...(config.interface !== undefined && config.enforce !== undefined && config.enforce !== 'input' && { devices: [config.interface] }),
      ...(log !== undefined && { warn: (m: string) => log('warn', m) }),
      prefixes: config.aggregate !== undefined,
      ...(monitor !== undefined && { monitor }),
      ...(config.policy !== undefined && { legacySpoofableTtlMs: config.policy.spoofableTtlMs }),
    })
  }
  if (config.backend === 'ipset') return new IpsetResponder({ run, dryRun: config.dryRun })
  return null
}

/** Where the firewall's monitor runs: here, or inside the watched namespace (as commandRunner). */
export function monitorRunner(netns: string | undefined): StreamFn {
  return netns === undefined ? defaultStream : netnsStream(netns)
}

/**
 * How firewall commands run: here, or inside the watched namespace; nft transactions
 * (`nft -f -`) in this process through libnftables when it loads (nftLibRun: no
 * fork of the daemon per block), everything else as a child.
 */
export function commandRunner(netns: string | undefined): RunFn {
  const base = netns === undefined ? defaultRun : netnsRun(netns)
  return nftLibRun(base, netns === undefined ? {} : { netns })
}

/** The notifiers the config names (exec, webhook), not yet started. */
export function notifiersFor(config: Pick<DaemonConfig, 'exec' | 'webhook' | 'netns'>, log: Log): Responder[] {
  const out: Responder[] = []
  if (config.exec !== undefined) {
    const execRun = config.netns === undefined ? undefined : netnsRun(config.netns, createRun({ timeoutMs: 10_000, killGroup: true }))
    out.push(new ExecResponder({ command: config.exec.command, shell: config.exec.shell, ...(execRun !== undefined && { run: execRun }) }))
    if (config.exec.shell) log('info', 'the -c command uses shell syntax: it runs through /bin/sh, with tokens replaced only by validated address and port literals')
  }
  if (config.webhook !== undefined) out.push(new WebhookResponder({ url: config.webhook }))
  return out
}

/** `allow` entries, then those of the allow file, read now. */
export async function allowlistFor(config: Pick<DaemonConfig, 'allow' | 'allowFile'>, log: Log): Promise<string[]> {
  const allow = [...config.allow]
  if (config.allowFile !== undefined) {
    const entries = await readAllowFile(config.allowFile)
    allow.push(...entries)
    log('info', `allowlist: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} from ${config.allowFile}`)
  }
  return allow
}

/**
 * The explicit tripwires: the config's, or with `useDefaults` the default set minus
 * the ports a local service uses (each skipped port is logged).
 */
export async function tripwiresFor(config: Pick<DaemonConfig, 'ports' | 'useDefaults'>, host: HostView, log: Log): Promise<PortRange[]> {
  if (!config.useDefaults) return config.ports
  const sel = withoutListening(parsePorts(DEFAULT_TRIPWIRES), await host.listening())
  for (const r of sel.skipped) log('info', `not a tripwire: ${portsToString([r])} (a local service uses it)`)
  if (sel.ports.length === 0) {
    throw new PortanoiaError('PORTANOIA_NO_PORTS', 'every default tripwire is in use by a local service', { hint: 'name tripwires with tcp/udp' })
  }
  // IP protocol tripwires (ipProto) come on top of the default ports.
  return parsePorts([...sel.ports, ...config.ports])
}

/**
 * The ports to capture now and which TCP ones get listeners: every TCP tripwire
 * without `unused`; with it, only the explicit TCP ports — a listener on an
 * unused-range port would hold a port a service may want to bind later. Unused
 * ranges leave out ports in use and the ephemeral range, as the daemon's sync does.
 */
export async function captureSet(
  explicit: readonly PortRange[],
  unused: readonly PortRange[],
  host: HostView,
): Promise<{ ports: PortRange[]; listen: true | PortRange[] }> {
  if (unused.length === 0) return { ports: [...explicit], listen: true }
  const ports = unusedTripwires(explicit, unused, await host.listening(), host.localPortRange())
  if (ports.length === 0) {
    throw new PortanoiaError('PORTANOIA_NO_PORTS', 'every port of the unused ranges is in use or ephemeral: no tripwire left', {
      hint: 'widen the --unused range or add explicit tripwires',
    })
  }
  return { ports, listen: explicit.filter((r) => r.proto === 'tcp') }
}
