#!/usr/bin/env node
/**
 * The `portanoia` command (the package's bin): a thin frontend over the library.
 * It parses the command line (program.ts), validates the whole configuration
 * (options.ts) before touching anything, runs the Daemon and renders its events —
 * coloured lines on a terminal, JSON lines otherwise — and maps outcomes to exit
 * codes: 0 success, 1 runtime failure (capture died, firewall refused, selftest
 * missed something), 2 usage or configuration error (nothing was changed).
 * SIGINT/SIGTERM stop the daemon gracefully (pending batch flushed, sensor closed).
 * Fleet mode's secrets are read (resolveFleetConfig) and the metrics endpoint is
 * bound before the daemon starts, so a missing secret file or a port in use
 * leaves the firewall untouched; prom-client is loaded only when --metrics is given.
 */
import { parsePorts, portsToString } from '../bpf/ports.js'
import { Daemon } from '../daemon/daemon.js'
import { toJsonLine } from '../daemon/events.js'
import { type ResolvedFleet, resolveFleetConfig } from '../fleet/config.js'
import type { Metrics } from '../daemon/metrics.js'
import { localHostView, netnsHostView } from '../daemon/host-view.js'
import { DEFAULT_TRIPWIRES, withoutListening } from '../listening.js'
import { normalizeAddress } from '../policy/addr.js'
import { ExecResponder } from '../responders/exec.js'
import { IpsetResponder } from '../responders/ipset.js'
import { NftablesResponder } from '../responders/nftables.js'
import { createRun, defaultRun, netnsRun } from '../responders/run.js'
import type { Responder, RunFn } from '../responders/types.js'
import { WebhookResponder } from '../responders/webhook.js'
import { asUsageError, type Backend, formatDuration, readConfig, resolveWatch, UsageError, type WatchPlan } from './options.js'
import { dropPrivileges } from './privileges.js'
import { type ParsedCommand, parseCommandLine } from './program.js'
import { colors, renderEvent, table } from './render.js'
import { runSelftest } from './selftest.js'

export interface Io {
  out(s: string): void
  err(s: string): void
  isTTY: boolean
}

const processIo: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  isTTY: process.stdout.isTTY === true,
}

function firewallFor(backend: Backend, run: RunFn, plan?: WatchPlan): Responder | null {
  if (backend === 'nftables') return new NftablesResponder({ run, dryRun: plan?.dryRun === true, forward: plan?.forward === true })
  if (backend === 'ipset') return new IpsetResponder({ run, dryRun: plan?.dryRun === true })
  return null
}

function runIn(netns: string | undefined): RunFn {
  return netns === undefined ? defaultRun : netnsRun(netns)
}

/** Waits for SIGINT/SIGTERM, then calls stop() once; a second signal exits at once. */
function onSignals(stop: () => void): () => void {
  let stopping = false
  const handler = (sig: NodeJS.Signals): void => {
    if (stopping) process.exit(128 + (sig === 'SIGINT' ? 2 : 15))
    stopping = true
    stop()
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  return () => {
    process.off('SIGINT', handler)
    process.off('SIGTERM', handler)
  }
}

async function watch(p: Extract<ParsedCommand, { command: 'watch' }>, io: Io): Promise<number> {
  // Everything is validated — config, flags, responder options — before the sensor
  // opens or the firewall is touched.
  const config = p.config === undefined ? {} : await readConfig(p.config)
  const plan = resolveWatch(p.input, config, p.config === undefined ? 'config' : `config ${p.config}`)
  const json = plan.json ?? !io.isTTY
  const c = colors(!json && io.isTTY && process.env.NO_COLOR === undefined)
  const log = (level: 'info' | 'warn', message: string): void => {
    io.err(`portanoia: ${level === 'warn' ? c.yellow(message) : message}\n`)
  }
  const run = runIn(plan.netns)
  const firewall = firewallFor(plan.backend, run, plan)
  const notifiers: Responder[] = []
  if (plan.exec !== undefined) {
    const execRun = plan.netns === undefined ? undefined : netnsRun(plan.netns, createRun({ timeoutMs: 10_000, killGroup: true }))
    notifiers.push(new ExecResponder({ command: plan.exec.command, shell: plan.exec.shell, ...(execRun !== undefined && { run: execRun }) }))
    if (plan.exec.shell) log('info', 'the -c command uses shell syntax: it runs through /bin/sh, with tokens replaced only by validated address and port literals')
  }
  if (plan.webhook !== undefined) notifiers.push(new WebhookResponder({ url: plan.webhook }))

  // Fleet secrets: read now (a bad file is a configuration error, exit 2), never printed.
  let fleet: ResolvedFleet | undefined
  if (plan.crowdsec !== undefined) {
    const resolved = await resolveFleetConfig({ crowdsec: plan.crowdsec })
    if (resolved !== null) {
      for (const w of resolved.warnings) log('warn', w)
      fleet = resolved
    }
  }

  const host = plan.netns === undefined ? localHostView() : netnsHostView(plan.netns)
  let ports = plan.ports
  if (plan.useDefaults) {
    const sel = withoutListening(parsePorts(DEFAULT_TRIPWIRES), await host.listening())
    for (const r of sel.skipped) log('info', `not a tripwire: ${portsToString([r])} (a local service uses it)`)
    ports = sel.ports
    if (ports.length === 0) throw new UsageError('every default tripwire is in use by a local service', 'name tripwires with --tcp/--udp')
  }

  // Bound before the daemon starts: a port in use stops us before the firewall is touched.
  // With --netns the endpoint still listens in this process's namespace.
  let metricsServer: { url: string; close(): Promise<void> } | undefined
  let metrics: Metrics | undefined
  if (plan.metrics !== undefined) {
    const m = await import('../daemon/metrics.js')
    metrics = new m.Metrics()
    try {
      metricsServer = await m.serveMetrics(metrics, plan.metrics)
    } catch (e) {
      const code = (e as { code?: unknown }).code
      throw new UsageError(
        `--metrics ${plan.metrics.host}:${plan.metrics.port}: cannot listen (${typeof code === 'string' ? code : String(e)})`,
        code === 'EADDRINUSE' ? 'another program uses that port: pick another one' : 'check the address: it must be one of this host',
      )
    }
    log('info', `metrics on ${metricsServer.url}`)
  }

  let daemon: Daemon
  try {
    daemon = await Daemon.start({
      ports: ports.map((r) => `${r.from}-${r.to}/${r.proto}`),
      unused: plan.unused.map((r) => `${r.from}-${r.to}/${r.proto}`),
      ...(plan.interface !== undefined && { interface: plan.interface }),
      ...(plan.netns !== undefined && { netns: plan.netns }),
      policy: plan.policy,
      allowlist: plan.allow,
      firewall,
      notifiers,
      hits: plan.hits,
      statsIntervalMs: plan.statsIntervalMs,
      host,
      ...(fleet !== undefined && { fleet }),
      ...(metrics !== undefined && { metrics }),
      onEvent: (e) => io.out(json ? toJsonLine(e) : `${renderEvent(e, c)}\n`),
      onLog: log,
      onScript: (script, responder) => {
        const text = `# ${responder} (dry-run, not applied):\n${script}`
        if (json) io.err(text)
        else io.out(text)
      },
    })
  } catch (e) {
    await metricsServer?.close()
    throw e
  }
  const p0 = plan.policy
  const unusedNote = plan.unused.length > 0 ? `, unused ${portsToString(plan.unused)}` : ''
  // Without a firewall backend nothing is blocked, whatever --block says: say what really happens.
  const mode =
    plan.backend === 'none'
      ? `no firewall (--backend none): decisions are reported${plan.exec !== undefined ? ` and the command runs for each ${p0.block} block decision` : ''}, nothing is blocked in the kernel`
      : `block ${p0.block}${p0.dryRun ? ' (dry-run)' : ''}, ttl ${formatDuration(p0.blockTtlMs)} verified / ${formatDuration(p0.spoofableTtlMs)} spoofable, backend ${plan.backend}`
  log('info', `${mode}${unusedNote}`)
  const dropped = dropPrivileges(plan)
  if (dropped !== null) log('info', dropped)
  const off = onSignals(() => void daemon.close())
  const failure = await daemon.done
  off()
  await metricsServer?.close()
  if (failure !== undefined) {
    log('warn', `stopped: ${failure.message}`)
    return 1
  }
  return 0
}

async function listBlocks(p: Extract<ParsedCommand, { command: 'list' }>, io: Io): Promise<number> {
  const fw = firewallFor(p.backend, runIn(p.netns)) as Responder
  const blocks = await fw.list()
  const json = p.json ?? !io.isTTY
  if (json) {
    // One JSON document, so an empty table is `[]` — a valid result a script can
    // parse, rather than no output at all.
    io.out(`${JSON.stringify(blocks)}\n`)
    return 0
  }
  if (blocks.length === 0) {
    io.out('no active blocks\n')
    return 0
  }
  const rows = blocks.map((b) => [
    b.address,
    `IPv${b.family}`,
    b.expiresInMs === undefined ? 'never' : formatDuration(Math.round(b.expiresInMs / 1000) * 1000),
    b.timeoutMs === undefined ? '-' : formatDuration(b.timeoutMs),
  ])
  io.out(`${table(['ADDRESS', 'FAMILY', 'EXPIRES IN', 'TIMEOUT'], rows)}\n`)
  return 0
}

async function unblock(p: Extract<ParsedCommand, { command: 'unblock' }>, io: Io): Promise<number> {
  // Every address is checked before any is removed.
  const addresses: string[] = []
  for (const a of p.addresses) {
    const n = normalizeAddress(a)
    if (n === null) throw new UsageError(`${JSON.stringify(a)} is not an IPv4 or IPv6 address`, 'give addresses like 203.0.113.7 or 2001:db8::7')
    addresses.push(n)
  }
  const fw = firewallFor(p.backend, runIn(p.netns)) as Responder
  const r = await fw.unblock(addresses)
  for (const a of r.applied) io.out(`unblocked ${a}\n`)
  for (const a of r.absent ?? []) io.out(`not blocked: ${a}\n`)
  for (const f of r.failed) io.err(`portanoia: could not unblock ${f.address}: ${f.error}\n`)
  return r.ok ? 0 : 1
}

async function uninstall(p: Extract<ParsedCommand, { command: 'uninstall' }>, io: Io): Promise<number> {
  const fw = firewallFor(p.backend, runIn(p.netns)) as Responder
  if (fw.uninstall === undefined) throw new Error(`${fw.name} cannot uninstall`)
  const r = await fw.uninstall()
  if (!r.ok) {
    for (const f of r.failed) io.err(`portanoia: ${f.address}: ${f.error}\n`)
    return 1
  }
  io.out(r.absent !== undefined && r.absent.length > 0 ? `nothing to remove (${r.absent.join(', ')} not present)\n` : `removed ${p.backend === 'nftables' ? 'table inet portanoia' : 'portanoia ipsets and their iptables rules'}\n`)
  return 0
}

function describeError(e: unknown): { message: string; hint?: string } {
  if (e instanceof Error) {
    const hint = (e as { hint?: unknown }).hint
    return typeof hint === 'string' ? { message: e.message, hint } : { message: e.message }
  }
  return { message: String(e) }
}

/** Runs the command line; resolves with the exit code. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  try {
    const p = parseCommandLine(argv)
    switch (p.command) {
      case 'help':
        ;(p.exitCode === 0 ? io.out : io.err)(p.text)
        return p.exitCode
      case 'watch':
        return await watch(p, io)
      case 'list':
        return await listBlocks(p, io)
      case 'unblock':
        return await unblock(p, io)
      case 'uninstall':
        return await uninstall(p, io)
      case 'selftest':
        return await runSelftest({ json: p.json ?? false, keep: p.keep, io })
    }
  } catch (e) {
    const usage = asUsageError(e)
    const { message, hint } = describeError(usage ?? e)
    // Library errors already carry their hint in the message (withHint); do not repeat it.
    io.err(`portanoia: ${message}\n${hint !== undefined && !message.includes(hint) ? `  hint: ${hint}\n` : ''}`)
    return usage !== null ? 2 : 1
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(`portanoia: ${String(e)}\n`)
    process.exitCode = 1
  },
)
