#!/usr/bin/env node
/**
 * The `portanoia` command (the package's bin): a thin frontend over the library.
 * It parses the command line (program.ts), validates the whole configuration
 * (options.ts) before touching anything, runs the Daemon and renders its events —
 * coloured lines on a terminal, JSON lines otherwise — and maps outcomes to exit
 * codes: 0 success, 1 runtime failure (capture died, firewall refused, selftest
 * missed something), 2 usage or configuration error (nothing was changed).
 * SIGINT/SIGTERM stop the daemon gracefully (pending batch flushed, sensor closed);
 * SIGHUP reloads its config. Log lines go to stderr, with syslog priority
 * prefixes when stderr is the journal (journal.ts). The management commands
 * (status, reload, list, block, unblock) live in manage.ts.
 * Fleet mode's secrets are read (resolveFleetConfig) and the metrics endpoint is
 * bound before the daemon starts, so a missing secret file or a port in use
 * leaves the firewall untouched; prom-client is loaded only when --metrics is given.
 * Events reach stdout through a BoundedWriter (output.ts): bounded memory under a slow
 * reader, and a closed reader (EPIPE) is a clean stop with exit 0.
 */
import { existsSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { portsToString } from '../bpf/ports.js'
import { startDaemon } from '../daemon/assemble.js'
import { type ConfigFile, DEFAULT_CONFIG_FILE, formatDuration, readConfig } from '../daemon/config.js'
import type { Daemon } from '../daemon/daemon.js'
import { errorEvent, type PortanoiaEvent, toJsonLine } from '../daemon/events.js'
import { PortanoiaError } from '../errors.js'
import { forJournal, isJournalStream, type LogLevel } from './journal.js'
import * as manage from './manage.js'
import { managedFirewall } from './manage.js'
import { asUsageError, resolveWatch } from './options.js'
import { dropPrivileges } from './privileges.js'
import { type ParsedCommand, parseCommandLine } from './program.js'
import { BoundedWriter } from './output.js'
import { colors, renderEvent } from './render.js'
import { runSelftest } from './selftest.js'

export interface Io {
  out(s: string): void
  err(s: string): void
  isTTY: boolean
  /** The real stdout, when there is one: `watch` writes its events through a BoundedWriter on it. */
  stdout?: Writable
  /** stderr is the journal: log lines carry syslog priority prefixes (journal.ts). */
  journal?: boolean
}

const processIo: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  isTTY: process.stdout.isTTY === true,
  stdout: process.stdout,
  journal: process.stderr.isTTY !== true && isJournalStream(),
}

/** Reads the config file a watch uses: --config, else the default one when it exists (never for the legacy form). */
async function watchConfigFile(p: Extract<ParsedCommand, { command: 'watch' }>): Promise<ConfigFile | undefined> {
  if (p.config !== undefined) return await readConfig(p.config)
  if (!p.legacy && existsSync(DEFAULT_CONFIG_FILE)) return await readConfig(DEFAULT_CONFIG_FILE)
  return undefined
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
  const file = await watchConfigFile(p)
  const config = resolveWatch(p.input, file)
  const json = config.json ?? !io.isTTY
  const c = colors(!json && io.isTTY && process.env.NO_COLOR === undefined)
  const log = (level: LogLevel, message: string): void => {
    io.err(forJournal(`portanoia: ${level === 'info' ? message : c.yellow(message)}\n`, level, io.journal === true))
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
  // SIGHUP reloads (systemd's ExecReload sends it); until the daemon runs, it must
  // not end the process (its default action), and there is nothing to reload yet.
  const onHup = (): void => {
    if (started === undefined) {
      log('warn', 'SIGHUP while starting: the config was read just now; send it again to reload')
      return
    }
    started.reload().then(
      (r) => log('info', r.changed.length === 0 ? 'reloaded: nothing changed' : `reloaded: ${r.changed.join(', ')}`),
      (e: unknown) => {
        const { message, hint } = describeError(e)
        log('error', `reload refused, the previous config stays in force: ${message}${hint === undefined ? '' : ` (${hint})`}`)
      },
    )
  }
  process.on('SIGHUP', onHup)
  try {
    const daemon = await startDaemon(config, {
      // A reload reads the same sources again: the config file, then the same flags over it.
      reloadSource: async () => resolveWatch(p.input, await watchConfigFile(p)),
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
  } finally {
    process.off('SIGHUP', onHup)
  }
}

async function uninstall(p: Extract<ParsedCommand, { command: 'uninstall' }>, io: Io): Promise<number> {
  const fw = managedFirewall(p.backend, p.netns)
  if (fw.uninstall === undefined) throw new Error(`${fw.name} cannot uninstall`)
  const r = await fw.uninstall()
  if (!r.ok) {
    for (const f of r.failed) io.err(`portanoia: ${f.address}: ${f.error}\n`)
    return 1
  }
  if (p.backend === 'nftables') {
    // Both of portanoia's tables (inet, and netdev when blocks were enforced at ingress).
    io.out(r.applied.length === 0 ? `nothing to remove (${(r.absent ?? []).map((t) => `table ${t}`).join(', ')} not present)\n` : `removed ${r.applied.map((t) => `table ${t}`).join(', ')}\n`)
  } else {
    io.out(r.absent !== undefined && r.absent.length > 0 ? `nothing to remove (${r.absent.join(', ')} not present)\n` : 'removed portanoia ipsets and their iptables rules\n')
  }
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
        return await manage.list(p, io)
      case 'unblock':
        return await manage.unblock(p, io)
      case 'block':
        return await manage.block(p, io)
      case 'status':
        return await manage.status(p, io)
      case 'reload':
        return await manage.reload(p, io)
      case 'uninstall':
        return await uninstall(p, io)
      case 'selftest':
        return await runSelftest({ json: p.json ?? false, keep: p.keep, io })
    }
  } catch (e) {
    const usage = asUsageError(e)
    const { message, hint } = describeError(usage ?? e)
    // Library errors already carry their hint in the message (withHint); do not repeat it.
    io.err(forJournal(`portanoia: ${message}\n${hint !== undefined && !message.includes(hint) ? `  hint: ${hint}\n` : ''}`, 'error', io.journal === true))
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
