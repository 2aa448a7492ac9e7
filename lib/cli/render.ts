/**
 * The terminal rendering of the event stream: one line per event, coloured with
 * picocolors when the stream is a terminal — a rendering of exactly the JSON-lines
 * events, never a separate source of truth. Also the table printers of `list` and
 * `selftest`. Pure: strings in, strings out; colour is a parameter so tests can
 * pin the plain text.
 */
import pc from 'picocolors'
import type { DecisionEvent, DecoyEvent, ErrorEvent, FirewallEvent, FleetDecisionEvent, FleetEvent, ForgeryEvent, HitEvent, OperatorEvent, PortanoiaEvent, PrefixEvent, ScanEvent, StatsEvent } from '../daemon/events.js'
import { formatDuration } from '../daemon/config.js'
import type { DaemonStatus } from '../daemon/status.js'

export interface Colors {
  red(s: string): string
  yellow(s: string): string
  green(s: string): string
  cyan(s: string): string
  magenta(s: string): string
  dim(s: string): string
  bold(s: string): string
}

export const NO_COLOR: Colors = { red: String, yellow: String, green: String, cyan: String, magenta: String, dim: String, bold: String }

export function colors(enabled: boolean): Colors {
  if (!enabled) return NO_COLOR
  const c = pc.createColors(true)
  return { red: c.red, yellow: c.yellow, green: c.green, cyan: c.cyan, magenta: c.magenta, dim: c.dim, bold: c.bold }
}

function clock(iso: string): string {
  // HH:MM:SS.mmm in local time: an operator reads the terminal, not UTC.
  const d = new Date(iso)
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
}

function label(text: string, paint: (s: string) => string): string {
  return paint(text.padEnd(7))
}

function decisionLine(e: DecisionEvent, c: Colors): string {
  const evidence = e.verified ? c.bold('verified') : e.attribution === 'forged' ? c.magenta('forged') : 'spoofable'
  const what = `${e.kinds.join(',')} → ${e.ports.join(',')}${e.portsTruncated ? ',…' : ''}`
  const hits = e.count === 1 ? '1 hit' : `${e.count} hits`
  let tag: string
  let detail: string = e.reason
  if (e.breaker === 'open') {
    tag = label('CAPPED', c.red)
    detail =
      e.reason === 'report-capped'
        ? `${e.reason}: too many spoofable sources, counted instead of reported one by one until the rate falls`
        : `${e.reason}: spoofable blocking suspended, report-only until the rate falls`
  } else if (e.breaker === 'closed') {
    tag = label('RESUMED', c.green)
    const s = e.suppressed
    detail = `${e.reason} breaker closed${s === undefined ? '' : ` after ${s.sources} source(s), ${s.hits} hit(s) report-only`}`
    return `${c.dim(clock(e.time))} ${tag} ${detail}`
  } else if (e.action === 'unblock') {
    tag = label('LIFTED', c.green)
    return `${c.dim(clock(e.time))} ${tag} ${c.bold(e.src)} ${e.reason}: a guard now covers it, block removed`
  } else if (e.reason === 'reapplied') {
    tag = label('BLOCK', c.red)
    detail = `reapplied: the block was missing from the kernel (a handshake completed), put back for ${formatDuration(e.ttlMs ?? 0)}`
  } else if (e.action === 'block') {
    tag = label('BLOCK', c.red)
    detail = `${e.reason}${e.ttlMs === undefined ? '' : ` for ${formatDuration(e.ttlMs)}`}${e.upgrade === true ? ' (upgrade)' : ''}`
  } else if (e.reason === 'dry-run') {
    tag = label('WOULD', c.yellow)
    detail = `block for ${formatDuration(e.ttlMs ?? 0)} (dry-run)`
  } else if (e.reason.startsWith('guard:')) {
    tag = label('GUARD', c.cyan)
    detail = `${e.reason} (never blocked)`
  } else if (e.reason === 'forged') {
    tag = label('FORGED', c.magenta)
    detail = `forged (${e.evidence.join(', ')}): reported, never blocked`
  } else if (e.reason === 'peer-check-failed') {
    tag = label('REPORT', c.yellow)
    detail = 'peer-check-failed: not blocked, the live peer check could not answer (see the error)'
  } else if (e.reason === 'reset-only') {
    tag = label('REPORT', c.yellow)
    detail = 'reset-only: only resets from it (answers to this host, never probes): not blocked'
  } else if (e.reason === 'transit') {
    tag = label('TRANSIT', c.dim)
    detail = `to ${e.trigger?.dst ?? '?'} (not this host: never blocked)`
  } else if (e.action === 'report') {
    tag = label('REPORT', c.yellow)
  } else {
    tag = label('SEEN', c.dim)
  }
  const summary = e.final ? c.dim(' (window summary)') : ''
  return `${c.dim(clock(e.time))} ${tag} ${c.bold(e.src)} ${evidence} ${what} ${c.dim(hits)} ${detail}${summary}`
}

/** A fleet ban (CrowdSec LAPI) applied here, or refused because a local guard protects the address. */
function fleetDecisionLine(e: FleetDecisionEvent, c: Colors): string {
  const from = c.dim(`from fleet (${e.origin}, ${e.scenario}${e.fleetId === undefined ? '' : `, #${e.fleetId}`})`)
  if (e.action === 'block') {
    const ttl = e.ttlMs === undefined ? '' : ` for ${formatDuration(Math.round(e.ttlMs / 1000) * 1000)}`
    return `${c.dim(clock(e.time))} ${label('FLEET', c.red)} ${c.bold(e.src)} blocked${ttl} ${from}`
  }
  return `${c.dim(clock(e.time))} ${label('GUARD', c.cyan)} ${c.bold(e.src)} ${e.reason} (fleet ban refused) ${from}`
}

/** Everything else the fleet link reports: lifted bans, skips, LAPI outages and recoveries, queue drops. */
function fleetLine(e: FleetEvent, c: Colors): string {
  const bad = e.op === 'push-failed' || e.op === 'pull-failed' || e.op === 'apply-failed' || e.op === 'dropped' || e.op === 'abandoned'
  const parts: string[] = [e.op]
  if (e.src !== undefined) parts.push(c.bold(e.src))
  if (e.why !== undefined) parts.push(`(${e.why}${e.detail === undefined ? '' : `: ${e.detail}`})`)
  if (e.code !== undefined) parts.push(`${e.code}${e.status === undefined ? '' : ` ${e.status}`}:`)
  if (e.message !== undefined) parts.push(e.message)
  if (e.count !== undefined) parts.push(c.dim(`[${e.count}]`))
  if (e.hint !== undefined) parts.push(c.dim(`— ${e.hint}`))
  return `${c.dim(clock(e.time))} ${label('FLEET', bad ? c.yellow : c.dim)} ${parts.join(' ')}`
}

function hitLine(e: HitEvent, c: Colors): string {
  const src = e.family === 6 ? `[${e.src}]:${e.srcPort}` : `${e.src}:${e.srcPort}`
  const dst = e.family === 6 ? `[${e.dst}]:${e.dstPort}` : `${e.dst}:${e.dstPort}`
  return `${c.dim(clock(e.time))} ${label('HIT', c.dim)} ${src} → ${dst}/${e.proto} ${e.kind}${e.verified ? ' verified' : ''}${e.interface === '' ? '' : c.dim(` on ${e.interface}`)}`
}

function statsLine(e: StatsEvent, c: Colors): string {
  const p = e.policy
  const s = e.sensor
  const parts = [
    `hits ${p.hits}`,
    `blocks ${p.activeBlocks.verified} verified / ${p.activeBlocks.spoofable} spoofable`,
    `breaker ${p.breaker}${p.breakerCause === undefined ? '' : ` (${p.breakerCause})`}`,
    ...(p.reportBreaker === 'open' ? ['reports capped'] : []),
    ...(p.suppressedSources > 0 ? [`${p.suppressedSources} source(s) counted only`] : []),
  ]
  if (s !== undefined) parts.push(`kernel drops ${(s.kernelDrops ?? 0) + (s.ringDrops ?? 0)}`)
  return `${c.dim(clock(e.time))} ${label('STATS', c.dim)} ${c.dim(parts.join(', '))}`
}

function errorLine(e: ErrorEvent, c: Colors): string {
  const who = e.src ?? (e.addresses !== undefined && e.addresses.length > 0 ? `${e.addresses.length} address(es)` : '')
  return `${c.dim(clock(e.time))} ${label('ERROR', c.red)} ${e.responder} ${e.code}: ${e.message}${who === '' ? '' : ` [${who}]`}${e.hint === undefined ? '' : c.dim(` — ${e.hint}`)}`
}

/** A reload, block or unblock an operator asked of the running daemon. */
function operatorLine(e: OperatorEvent, c: Colors): string {
  const parts: string[] = [e.op, e.outcome]
  if (e.changed !== undefined) parts.push(`changed: ${e.changed.join(', ')}`)
  if (e.restart !== undefined) parts.push(`needs a restart: ${e.restart.join(', ')}`)
  if (e.addresses !== undefined) parts.push(c.bold(e.addresses.join(' ')))
  if (e.ttlMs !== undefined && e.addresses !== undefined) parts.push(`for ${formatDuration(e.ttlMs)}`)
  if (e.kept !== undefined) parts.push(`kept (blocked longer already): ${e.kept.join(' ')}`)
  if (e.refused !== undefined) parts.push(`refused: ${e.refused.map((r) => `${r.address} (${r.reason})`).join(', ')}`)
  if (e.failed !== undefined) parts.push(`failed: ${e.failed.join(' ')}`)
  if (e.message !== undefined) parts.push(`${e.code ?? ''}: ${e.message}`)
  if (e.hint !== undefined) parts.push(c.dim(`— ${e.hint}`))
  return `${c.dim(clock(e.time))} ${label('OPERATOR', e.outcome === 'applied' ? c.green : c.yellow)} ${parts.join(' ')}`
}

/** The kernel's firewall differed from what the daemon believed; the daemon followed the kernel. */
function firewallLine(e: FirewallEvent, c: Colors): string {
  const who = e.addresses === undefined ? '' : ` ${e.addresses.join(' ')}${e.count > e.addresses.length ? ` … (${e.count})` : ''}`
  const what: Record<FirewallEvent['op'], string> = {
    restored: `${e.missing === undefined ? '' : `${e.missing.join(', ')} missing: `}put back, ${e.count} block(s) restored`,
    forgotten: `${e.count} block(s) removed from the kernel by someone else: forgotten`,
    adopted: `${e.count} block(s) found in the kernel: adopted`,
    migrated: `${e.count} block(s) moved from the sets of an earlier version`,
  }
  const paint = e.op === 'restored' || e.op === 'forgotten' ? c.yellow : c.dim
  return `${c.dim(clock(e.time))} ${label('FIREWALL', paint)} ${e.responder} ${what[e.op]}${c.dim(who)}`
}

/** A prefix ban was made, refused or put back. */
function prefixLine(e: PrefixEvent, c: Colors): string {
  const who = e.members === undefined ? '' : ` ${e.members.join(' ')}${e.count > e.members.length ? ` … (${e.count})` : ''}`
  const what: Record<PrefixEvent['op'], string> = {
    blocked: `${e.prefix} blocked for ${formatDuration(Math.round((e.ttlMs ?? 0) / 1000) * 1000)} (${e.count} verified blocks in it; ${e.retired ?? 0} single block(s) retired)`,
    refused: `${e.prefix} not blocked: ${e.reason ?? 'refused'} (${e.count} verified blocks in it)`,
    restored: `${e.prefix} put back for ${formatDuration(Math.round((e.ttlMs ?? 0) / 1000) * 1000)}`,
  }
  const paint = e.op === 'blocked' ? c.red : c.yellow
  return `${c.dim(clock(e.time))} ${label('PREFIX', paint)} ${what[e.op]}${e.op === 'restored' ? '' : c.dim(who)}`
}

/** Someone forges an address portanoia guards. */
function forgeryLine(e: ForgeryEvent, c: Colors): string {
  const where = `${e.interface === '' ? '' : ` on ${e.interface}`}${e.bridge === undefined ? '' : ` (port of ${e.bridge})`}`
  const who = e.srcMac === undefined ? 'someone' : `station ${e.srcMac}`
  const holder = e.holder === undefined ? '' : c.dim(` — held by ${e.holder}`)
  return `${c.dim(clock(e.time))} ${label('FORGERY', c.magenta)} ${who}${where} forges ${c.bold(e.src)} (${e.guard}): ${e.evidence.join(', ')}, ${e.count} packet(s) to ${e.trigger.dstPort}/${e.trigger.proto}${holder}`
}

/** Hits grouped into a scan: its shape, who, what, and the tool guess. */
function scanLine(e: ScanEvent, c: Colors): string {
  const who = e.src !== undefined ? `${c.bold(e.src)}${e.sourceCount > 1 ? ` (+${e.sourceCount - 1} decoys)` : ''}` : `${e.sourceCount} sources${e.sources.length > 0 ? ` ${e.sources.slice(0, 4).join(' ')}${e.sourceCount > 4 ? ' …' : ''}` : ''}`
  const ports = `${e.ports.slice(0, 8).join(',')}${e.portCount > 8 ? ` … (${e.portCount})` : ''}`
  const tool = e.tool === undefined ? '' : ` [${e.tool}]`
  const verb = e.phase === 'start' ? 'scanning' : 'ended scanning'
  return `${c.dim(clock(e.time))} ${label('SCAN', e.phase === 'start' ? c.yellow : c.dim)} ${e.shape} #${e.id}: ${who} ${verb} ${e.dsts.join(' ')} ports ${ports}/${e.proto} (${e.kinds.join(', ')}; ${e.hits} packets)${tool}`
}

/** A decoy group and its likely sender. */
function decoyLine(e: DecoyEvent, c: Colors): string {
  const sender = e.sender === undefined ? 'no single plausible sender' : `sender ${c.bold(e.sender)}`
  const members = e.members.map((m) => `${m.src}${m.attribution === 'forged' ? ' (forged)' : ''}`).join(' ')
  return `${c.dim(clock(e.time))} ${label('DECOY', c.magenta)} group #${e.id} of ${e.memberCount}: ${sender}; ${e.probes} probe(s) to ${e.dst} ports ${e.ports.join(',')}/${e.proto}${c.dim(` — ${members}`)}`
}

/** One line (no newline) for an event. */
export function renderEvent(e: PortanoiaEvent, c: Colors = NO_COLOR): string {
  switch (e.type) {
    case 'decision':
      return 'source' in e ? fleetDecisionLine(e, c) : decisionLine(e, c)
    case 'fleet':
      return fleetLine(e, c)
    case 'hit':
      return hitLine(e, c)
    case 'stats':
      return statsLine(e, c)
    case 'error':
      return errorLine(e, c)
    case 'operator':
      return operatorLine(e, c)
    case 'firewall':
      return firewallLine(e, c)
    case 'prefix':
      return prefixLine(e, c)
    case 'block-bypassed':
      return `${c.dim(clock(e.time))} ${label('BYPASSED', c.red)} ${e.src}${e.prefix === undefined ? '' : ` (in ${e.prefix})`} is blocked yet reached [${e.dst}]:${e.dstPort}/${e.proto} on ${e.interface} by the ${e.path} path${e.path === 'forward' ? ': the drop rules cover input only (--forward)' : ''}`
    case 'forgery':
      return forgeryLine(e, c)
    case 'scan':
      return scanLine(e, c)
    case 'decoy':
      return decoyLine(e, c)
  }
}

/** A plain text table: columns padded to the widest cell. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (r: readonly string[]): string => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

/** A duration for people: whole seconds, shortest exact form ('2h13m5s'). */
function ago(ms: number): string {
  return formatDuration(Math.max(0, Math.round(ms / 1000)) * 1000)
}

function nonZero(counts: Record<string, number>): string {
  const parts = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
  return parts.length === 0 ? 'none' : parts.join(', ')
}

/** `portanoia status` for a terminal: one labelled line per part of the status document. */
export function renderStatus(st: DaemonStatus, c: Colors = NO_COLOR, now = Date.now()): string {
  const p = st.policy
  const k = st.counters
  const b = st.blocks
  const rows: Array<[string, string]> = []
  rows.push(['daemon', `portanoia ${st.version}, pid ${st.pid}, up ${ago(st.uptimeMs)}${st.control === null ? '' : `, control ${st.control}`}`])
  const t = st.tripwires
  rows.push([
    'tripwires',
    `${t.ports} (${t.count} port${t.count === 1 ? '' : 's'}, ${t.listeners} listener${t.listeners === 1 ? '' : 's'}) on ${t.interface}, ${t.host}${t.unused === null ? '' : `; unused ${t.unused}`}`,
  ])
  rows.push([
    'policy',
    `block ${p.block}${p.dryRun ? ' (dry-run)' : ''}, ttl ${formatDuration(p.blockTtlMs)} verified / ${formatDuration(p.spoofableTtlMs)} spoofable, threshold ${p.threshold} in ${formatDuration(p.windowMs)}, caps ${p.maxBlocksPerMinute}/min and ${p.maxActiveBlocks} active`,
  ])
  const br = st.breaker
  rows.push([
    'breaker',
    `${br.state === 'open' ? c.red(`open (${br.cause ?? '?'})`) : 'closed'}, ${br.trips} trip${br.trips === 1 ? '' : 's'}, ${br.spoofableBlocksLastMinute} spoofable block(s) in the last minute, ${br.suppressedHits} hit(s) report-only`,
  ])
  const s = k.sensor
  rows.push([
    'counters',
    `${k.hits} hits, ${k.trackedSources} sources tracked, kernel drops ${s.kernelDrops ?? 0}, ring drops ${s.ringDrops ?? 0}; firewall ${k.firewall.batches} batch(es), ${k.firewall.applied} applied, ${k.firewall.failed} failed${k.droppedEvents > 0 ? `; ${k.droppedEvents} event(s) dropped` : ''}`,
  ])
  rows.push(['decisions', nonZero(k.decisions)])
  let blocks: string
  if (b.error !== undefined) blocks = c.yellow(`kernel unreadable: ${b.error.code}: ${b.error.message}`)
  else if (b.kernel === null) blocks = 'no firewall backend'
  else blocks = `${b.kernel.total} in the kernel: by origin ${nonZero(b.kernel.byOrigin)}; by reason ${nonZero(b.kernel.byReason)}`
  rows.push(['blocks', `${blocks} (policy: ${b.policy.verified} verified, ${b.policy.spoofable} spoofable)`])
  const g = st.guards
  const list = (xs: readonly string[]): string => (xs.length === 0 ? 'none' : xs.join(' '))
  rows.push(['guards', `${Object.entries(g.counts).map(([r, n]) => `${r} ${n}`).join(', ')}; facts from the kernel ${ago(now - Date.parse(g.factsAt))} ago`])
  rows.push(['  gateways', list(g.gateways)])
  rows.push(['  resolvers', list(g.resolvers)])
  rows.push(['  allowlist', list(g.allowlist)])
  const f = st.fleet
  if (f === null) rows.push(['fleet', 'off'])
  else {
    const parts = [f.url]
    if (f.push !== null) parts.push(`push ${f.push.pushes} ok, ${f.push.pushFailures} failed, ${f.push.queued} queued`)
    if (f.pull !== null) parts.push(`pull ${f.pull.pulls} ok, ${f.pull.pullFailures} failed, ${f.pull.active} ban(s) applied`)
    rows.push(['fleet', parts.join('; ')])
  }
  const r = st.reload
  const last = r.last
  let reload = `${r.applied} applied, ${r.refused} refused`
  if (last !== null) {
    reload += `; last ${ago(now - Date.parse(last.at))} ago ${last.outcome === 'applied' ? 'applied' : c.yellow('refused')}`
    if (last.changed.length > 0) reload += ` (${last.changed.join(', ')})`
    if (last.error !== undefined) reload += `: ${last.error.message}`
  }
  rows.push(['reload', reload])
  const width = Math.max(...rows.map(([label]) => label.length))
  return rows.map(([label, text]) => `${c.bold(label.padEnd(width))}  ${text}`).join('\n')
}
