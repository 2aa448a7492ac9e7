/**
 * The management commands: `status`, `reload`, `list`, `block`, `unblock`. Each
 * first asks the running daemon through its control socket (lib/daemon/control.ts),
 * so the daemon's state and the kernel agree; `list`, `block` and `unblock` fall
 * back to the kernel table only when no daemon answers there (no socket, or a stale
 * one), and every one of them says which way it went (on stderr, so stdout stays
 * parseable). `status` and `reload` need a daemon. The socket is the one `--control`
 * names, else the config file's, else the namespace's default; addresses and TTLs
 * are checked here exactly as the daemon checks them, before anything is sent.
 * Runs on the main thread, once per command.
 */
import { existsSync } from 'node:fs'
import { type Backend, type DaemonConfig, DEFAULT_CONFIG_FILE, formatDuration, maxTtlMs, parseTtl, readConfig } from '../daemon/config.js'
import { type BlockInfo } from '../daemon/blocks.js'
import { defaultControlPath } from '../daemon/control.js'
import { controlRequest } from '../daemon/control-client.js'
import { localHostView, netnsHostView } from '../daemon/host-view.js'
import { operatorBlock } from '../daemon/operator-block.js'
import { allowlistFor, commandRunner, firewallFor } from '../daemon/parts.js'
import { isPortanoiaError, PortanoiaError } from '../errors.js'
import { normalizeAddresses } from '../policy/addr.js'
import { DEFAULT_POLICY } from '../policy/config.js'
import { PolicyEngine } from '../policy/engine.js'
import { Guards } from '../policy/guards.js'
import type { ActiveBlockEntry, Responder, ResponderResult } from '../responders/types.js'
import type { Io } from './main.js'
import { resolveWatch } from './options.js'
import type { ParsedCommand, Target } from './program.js'
import { colors, renderStatus, table } from './render.js'

interface Resolved {
  /** The socket to ask, or null when the config turns it off. */
  control: string | null
  backend: Backend
  netns?: string
  config?: DaemonConfig
}

/**
 * The firewall responder of a management command: never dry-run. With a config that
 * enforces at ingress, its `enforce` and interface, so a block made without the
 * daemon lands in the netdev table too (and keeps its shape). Otherwise enforce is
 * left unset: a netdev table found there (a daemon started with the flag, not the
 * config) is written beside the inet table and never removed by a command.
 */
export function managedFirewall(backend: Backend, netns: string | undefined, config?: DaemonConfig): Responder {
  if (backend === 'none') {
    throw new PortanoiaError('PORTANOIA_NO_FIREWALL', 'the config names no firewall backend (backend none): there is no table', {
      hint: 'pass --backend nftables or ipset',
    })
  }
  const where =
    config?.backend === backend
      ? { forward: config.forward, ...(config.enforce !== 'input' && { enforce: config.enforce }), ...(config.interface !== undefined && { interface: config.interface }) }
      : { forward: false }
  return firewallFor({ backend, dryRun: false, ...where }, commandRunner(netns)) as Responder
}

async function resolveTarget(t: Target): Promise<Resolved> {
  let config: DaemonConfig | undefined
  if (t.config !== undefined) config = resolveWatch({}, await readConfig(t.config))
  else if (existsSync(DEFAULT_CONFIG_FILE)) config = resolveWatch({}, await readConfig(DEFAULT_CONFIG_FILE))
  const netns = t.netns ?? config?.netns
  const control = t.control ?? (config?.control === false ? null : (config?.control ?? (await defaultControlPath(netns))))
  const r: Resolved = { control, backend: t.backend ?? config?.backend ?? 'nftables' }
  if (netns !== undefined) r.netns = netns
  if (config !== undefined) r.config = config
  return r
}

/**
 * Runs `viaDaemon` against the daemon's socket; when no daemon answers (or the
 * socket is off) says so and runs `direct` instead.
 */
async function daemonOrTable<T>(r: Resolved, io: Io, viaDaemon: (path: string) => Promise<T>, direct: () => Promise<T>): Promise<T> {
  if (r.control !== null) {
    try {
      const out = await viaDaemon(r.control)
      io.err(`portanoia: through the running daemon (${r.control})\n`)
      return out
    } catch (e) {
      if (!isPortanoiaError(e, 'PORTANOIA_NO_DAEMON')) throw e
      io.err(`portanoia: no daemon answers on ${r.control}: straight to the kernel table\n`)
    }
  } else {
    io.err('portanoia: the control socket is off in the config: straight to the kernel table\n')
  }
  return await direct()
}

function needDaemon(r: Resolved): string {
  if (r.control === null) {
    throw new PortanoiaError('PORTANOIA_NO_DAEMON', 'the config turns the control socket off: there is no daemon to ask', {
      hint: 'set "control" in the config (or remove "control": false) and restart the daemon',
    })
  }
  return r.control
}

export async function status(p: Extract<ParsedCommand, { command: 'status' }>, io: Io): Promise<number> {
  const r = await resolveTarget(p)
  const { status: st } = await controlRequest(needDaemon(r), { op: 'status' })
  if (p.json ?? !io.isTTY) io.out(`${JSON.stringify(st)}\n`)
  else io.out(`${renderStatus(st, colors(process.env.NO_COLOR === undefined))}\n`)
  return 0
}

export async function reload(p: Extract<ParsedCommand, { command: 'reload' }>, io: Io): Promise<number> {
  const r = await resolveTarget(p)
  const { reload: rec } = await controlRequest(needDaemon(r), { op: 'reload' }, 120_000)
  io.out(rec.changed.length === 0 ? 'reloaded: nothing changed\n' : `reloaded: ${rec.changed.join(', ')}\n`)
  return 0
}

function expires(ms: number | undefined): string {
  return ms === undefined ? 'never' : formatDuration(Math.round(ms / 1000) * 1000)
}

export async function list(p: Extract<ParsedCommand, { command: 'list' }>, io: Io): Promise<number> {
  const r = await resolveTarget(p)
  const blocks: Array<ActiveBlockEntry & Partial<Pick<BlockInfo, 'origin' | 'reason'>>> = await daemonOrTable(
    r,
    io,
    async (path) => (await controlRequest(path, { op: 'list' })).blocks,
    async () => await managedFirewall(r.backend, r.netns, r.config).list(),
  )
  if (p.json ?? !io.isTTY) {
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
    b.origin ?? '-',
    b.reason ?? '-',
    expires(b.expiresInMs),
    b.timeoutMs === undefined ? '-' : formatDuration(b.timeoutMs),
  ])
  io.out(`${table(['ADDRESS', 'FAMILY', 'ORIGIN', 'REASON', 'EXPIRES IN', 'TIMEOUT'], rows)}\n`)
  return 0
}

function printRemoval(res: ResponderResult | null, io: Io): number {
  if (res === null) {
    io.out('the daemon has no firewall backend: nothing was blocked\n')
    return 0
  }
  for (const a of res.applied) io.out(`unblocked ${a}\n`)
  for (const a of res.absent ?? []) io.out(`not blocked: ${a}\n`)
  for (const f of res.failed) io.err(`portanoia: could not unblock ${f.address}: ${f.error}\n`)
  return res.ok ? 0 : 1
}

export async function unblock(p: Extract<ParsedCommand, { command: 'unblock' }>, io: Io): Promise<number> {
  // Every address is checked before any is removed.
  const addresses = normalizeAddresses(p.addresses)
  const r = await resolveTarget(p)
  const res = await daemonOrTable(
    r,
    io,
    async (path) => (await controlRequest(path, { op: 'unblock', addresses })).result,
    async () => await managedFirewall(r.backend, r.netns, r.config).unblock(addresses),
  )
  return printRemoval(res, io)
}

/**
 * Without a daemon, the guards come from the host's facts now (or the namespace's)
 * and the config's allowlist: the same check the daemon makes, from the same sources.
 */
async function blockDirect(r: Resolved, addresses: readonly string[], ttl: string | undefined, io: Io): Promise<Awaited<ReturnType<typeof operatorBlock>>> {
  const fw = managedFirewall(r.backend, r.netns, r.config)
  const ttlMs = ttl !== undefined ? parseTtl(ttl, '--ttl', r.backend) : Math.min(r.config?.policy.blockTtlMs ?? DEFAULT_POLICY.blockTtlMs, maxTtlMs(r.backend))
  const allowlist = r.config === undefined ? [] : await allowlistFor(r.config, () => {})
  const host = r.netns === undefined ? localHostView() : netnsHostView(r.netns)
  try {
    host.setWarn((m) => io.err(`portanoia: guards: ${m}\n`))
    const facts = await host.start()
    for (const w of facts.warnings) io.err(`portanoia: host facts: ${w}\n`)
    // The daemon's guard check: the facts' snapshot, the kernel's route check, then its peer check.
    const live = host.live
    const engine = new PolicyEngine({ guards: new Guards({ ...facts.snapshot, allowlist }), ...(live !== null && { liveGuard: live.route }) })
    // start() makes the table when there is none (and adopts it when there is).
    await fw.start()
    try {
      return await operatorBlock(fw, (a) => engine.guardOf(a), addresses, ttlMs, live === null ? undefined : (a) => live.peers(a))
    } finally {
      await fw.close()
    }
  } finally {
    host.close()
  }
}

export async function block(p: Extract<ParsedCommand, { command: 'block' }>, io: Io): Promise<number> {
  const addresses = normalizeAddresses(p.addresses)
  // The syntax and the 1 s minimum now; the backend's limit where the block is made.
  if (p.ttl !== undefined) parseTtl(p.ttl, '--ttl', 'none')
  const r = await resolveTarget(p)
  const out = await daemonOrTable(
    r,
    io,
    async (path) => (await controlRequest(path, { op: 'block', addresses, ...(p.ttl !== undefined && { ttl: p.ttl }) })).result,
    async () => await blockDirect(r, addresses, p.ttl, io),
  )
  const dry = out.dryRun === true ? ' (dry-run: not applied)' : ''
  for (const a of out.applied) io.out(`blocked ${a} for ${formatDuration(out.ttlMs)}${dry}\n`)
  for (const k of out.kept) io.out(`kept ${k.address}: already blocked for ${expires(k.expiresInMs)}\n`)
  for (const f of out.refused) io.out(`refused ${f.address}: ${f.reason} (never blocked)\n`)
  for (const f of out.failed) io.err(`portanoia: could not block ${f.address}: ${f.error}\n`)
  return out.refused.length + out.failed.length === 0 ? 0 : 1
}
