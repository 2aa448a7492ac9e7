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
 * Events reach stdout through a BoundedWriter (output.ts): bounded memory under a slow
 * reader, and a closed reader (EPIPE) is a clean stop with exit 0.
 */
import { existsSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { portsToString } from '../bpf/ports.js'
import { commandRunner, firewallFor, startDaemon } from '../daemon/assemble.js'
import { type Backend, type ConfigFile, DEFAULT_CONFIG_FILE, formatDuration, readConfig } from '../daemon/config.js'
import type { Daemon } from '../daemon/daemon.js'
import { errorEvent, type PortanoiaEvent, toJsonLine } from '../daemon/events.js'
import { PortanoiaError } from '../errors.js'
import { normalizeAddress } from '../policy/addr.js'
import type { Responder } from '../responders/types.js'
import { asUsageError, resolveWatch, UsageError } from './options.js'
import { dropPrivileges } from './privileges.js'
import { type ParsedCommand, parseCommandLine } from './program.js'
import { BoundedWriter } from './output.js'
import { colors, renderEvent, table } from './render.js'
import { runSelftest } from './selftest.js'

export interface Io {
  out(s: string): void
  err(s: string): void
  isTTY: boolean
  /** The real stdout, when there is one: `watch` writes its events through a BoundedWriter on it. */
  stdout?: Writable
}

const processIo: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  isTTY: process.stdout.isTTY === true,
  stdout: process.stdout,
}

/** The firewall responder of a management command (list, unblock, uninstall): never dry-run. */
function managedFirewall(backend: Backend, netns: string | undefined): Responder {
  return firewallFor({ backend, dryRun: false, forward: false }, commandRunner(netns)) as Responder
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
  // opens or the firewall is touched. The legacy -p/-c form is the original tool's
  // whole configuration: it reads no config file.
  let file: ConfigFile | undefined
  if (p.config !== undefined) file = await readConfig(p.config)
  else if (!p.legacy && existsSync(DEFAULT_CONFIG_FILE)) file = await readConfig(DEFAULT_CONFIG_FILE)
  const config = resolveWatch(p.input, file)
  const json = config.json ?? !io.isTTY
  const c = colors(!json && io.isTTY && process.env.NO_COLOR === undefined)
  const log = (level: 'info' | 'warn', message: string): void => {
    io.err(`portanoia: ${level === 'warn' ? c.yellow(message) : message}\n`)
  }
  if (file !== undefined && p.config === undefined) log('info', `config ${DEFAULT_CONFIG_FILE}`)

  // Events go out through a bounded writer: a slow reader costs dropped lines (counted,
  // then summarised), never unbounded memory; a reader that is gone (EPIPE) stops the
  // daemon, and that is a clean exit.
  const render = (e: PortanoiaEvent): string => (json ? toJsonLine(e) : `${renderEvent(e, c)}\n`)
  let readerGone = false
  let started: Daemon | undefined
  const writer =
    io.stdout === undefined
      ? null
      : new BoundedWriter(io.stdout, {
          summary: (n, total) =>
            render(
              errorEvent({
                responder: 'output',
                error: new PortanoiaError('PORTANOIA_OUTPUT_DROPPED', `stdout fell behind: ${n} event(s) dropped (${total} since start)`, {
                  hint: 'read the output faster, or write it to a file; --hits adds one event per packet',
                }),
                count: n,
              }),
            ),
          onClosed: () => {
            readerGone = true
            void started?.close()
          },
        })
  const out = (s: string): void => {
    if (writer === null) io.out(s)
    else writer.write(s)
  }
  const daemon = await startDaemon(config, {
    onEvent: (e) => out(render(e)),
    onLog: log,
    onScript: (script, responder) => {
      const text = `# ${responder} (dry-run, not applied):\n${script}`
      if (json) io.err(text)
      else out(text)
    },
  })
  started = daemon
  const p0 = config.policy
  const unusedNote = config.unused.length > 0 ? `, unused ${portsToString(config.unused)}` : ''
  // Without a firewall backend nothing is blocked, whatever --block says: say what really happens.
  const mode =
    config.backend === 'none'
      ? `no firewall (--backend none): decisions are reported${config.exec !== undefined ? ` and the command runs for each ${p0.block} block decision` : ''}, nothing is blocked in the kernel`
      : `block ${p0.block}${p0.dryRun ? ' (dry-run)' : ''}, ttl ${formatDuration(p0.blockTtlMs)} verified / ${formatDuration(p0.spoofableTtlMs)} spoofable, backend ${config.backend}`
  log('info', `${mode}${unusedNote}`)
  const dropped = dropPrivileges(config)
  if (dropped !== null) log('info', dropped)
  if (readerGone) void daemon.close()
  const off = onSignals(() => void daemon.close())
  const failure = await daemon.done
  off()
  const lost = writer?.stats().dropped ?? 0
  if (readerGone) {
    log('info', 'stdout was closed by its reader: stopped')
    return 0
  }
  if (lost > 0) log('warn', `${lost} event(s) were dropped because stdout fell behind`)
  if (failure !== undefined) {
    log('warn', `stopped: ${failure.message}`)
    return 1
  }
  return 0
}

async function listBlocks(p: Extract<ParsedCommand, { command: 'list' }>, io: Io): Promise<number> {
  const fw = managedFirewall(p.backend, p.netns)
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
  const fw = managedFirewall(p.backend, p.netns)
  const r = await fw.unblock(addresses)
  for (const a of r.applied) io.out(`unblocked ${a}\n`)
  for (const a of r.absent ?? []) io.out(`not blocked: ${a}\n`)
  for (const f of r.failed) io.err(`portanoia: could not unblock ${f.address}: ${f.error}\n`)
  return r.ok ? 0 : 1
}

async function uninstall(p: Extract<ParsedCommand, { command: 'uninstall' }>, io: Io): Promise<number> {
  const fw = managedFirewall(p.backend, p.netns)
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

// A reader that closed the pipe (`portanoia list | head -1`) ends the output, not the
// process with an EPIPE crash: `watch` stops through its BoundedWriter, the one-shot
// commands simply finish.
process.stdout.on('error', () => {})
process.stderr.on('error', () => {})

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(`portanoia: ${String(e)}\n`)
    process.exitCode = 1
  },
)
