/**
 * The CLI's side of configuration: the flags are merged over the config file field
 * by field (a flag that is set replaces the field, lists included, so the effective
 * value is always visible in one place), then validated by the daemon's own
 * resolveConfig (lib/daemon/config.ts), with every message naming the flag or the
 * file position the value came from. UsageError is a mistake in the command line
 * itself (exit 2, nothing done); asUsageError maps the library's configuration
 * errors onto it. Pure.
 */
import { PortanoiaError } from '../errors.js'
import type { CrowdsecConfig } from '../fleet/config.js'
import { FLEET_FLAGS } from '../fleet/config.js'
import { type ConfigFile, type ConfigInput, type DaemonConfig, resolveConfig } from '../daemon/config.js'

/** A mistake in the command line or the config file: exit code 2, nothing done. */
export class UsageError extends Error {
  readonly hint: string | undefined
  constructor(message: string, hint?: string) {
    super(message)
    this.name = 'UsageError'
    this.hint = hint
  }
}

const FLAG_NAMES: Record<keyof ConfigInput, string> = {
  tcp: '--tcp',
  udp: '--udp',
  sctp: '--sctp',
  ipProto: '--ip-proto',
  unused: '--unused',
  interface: '--interface',
  netns: '--netns',
  block: '--block',
  blockTtl: '--block-ttl',
  forgetAfter: '--forget-after',
  aggregate: '--aggregate',
  aggregatePrefix4: '--aggregate-prefix4',
  aggregatePrefix6: '--aggregate-prefix6',
  state: '--state',
  spoofableTtl: '--spoofable-ttl',
  maxBlocksPerMinute: '--max-blocks-per-minute',
  maxActiveBlocks: '--max-active-blocks',
  maxReportsPerMinute: '--max-reports-per-minute',
  allow: '--allow',
  allowFile: '--allow-file',
  threshold: '--threshold',
  window: '--window',
  backend: '--backend',
  exec: '--exec',
  command: '-c',
  webhook: '--webhook',
  json: '--json',
  dryRun: '--dry-run',
  hits: '--hits',
  forward: '--forward',
  enforce: '--enforce',
  statsInterval: '--stats-interval',
  crowdsec: '--crowdsec-*',
  metrics: '--metrics',
  control: '--control',
  attribution: '--no-attribution',
  reversePath: '--reverse-path',
  linkProbe: '--no-link-probe',
  scans: '--no-scans',
  ringRecords: '--ring-records',
}

/** Config key → its flag ('url' → '--crowdsec-url'), from the fleet's own table. */
const CROWDSEC_FLAG_NAMES: Partial<Record<keyof CrowdsecConfig, string>> = Object.fromEntries(
  Object.entries(FLEET_FLAGS).map(([flag, key]) => [key, flag.split(' ')[0] as string]),
)

/**
 * Flags over the config file, validated into the daemon's config. `file` is the
 * parsed config file, when there is one; without it, fields are named as flags.
 */
export function resolveWatch(flags: ConfigInput, file?: ConfigFile): DaemonConfig {
  const base = file?.input ?? {}
  const merged: ConfigInput = { ...base }
  for (const [k, v] of Object.entries(flags)) if (v !== undefined && k !== 'crowdsec') (merged as Record<string, unknown>)[k] = v
  if (flags.crowdsec !== undefined || base.crowdsec !== undefined) {
    const c: Partial<CrowdsecConfig> = { ...base.crowdsec }
    for (const [k, v] of Object.entries(flags.crowdsec ?? {})) if (v !== undefined) (c as Record<string, unknown>)[k] = v
    merged.crowdsec = c
  }
  const name = (field: string): string => {
    if (field.startsWith('crowdsec.')) {
      const key = field.slice('crowdsec.'.length) as keyof CrowdsecConfig
      const flag = CROWDSEC_FLAG_NAMES[key]
      if (flags.crowdsec?.[key] !== undefined && flag !== undefined) return flag
      return file === undefined || base.crowdsec?.[key] === undefined ? (flag ?? field) : file.where(field)
    }
    const k = field as keyof ConfigInput
    if (flags[k] !== undefined || file === undefined || base[k] === undefined) return FLAG_NAMES[k] ?? field
    return file.where(k)
  }
  return resolveConfig(merged, name)
}

/** Wraps library errors that are the user's fault as usage errors. */
export function asUsageError(e: unknown): UsageError | null {
  if (e instanceof UsageError) return e
  if (e instanceof PortanoiaError && /^PORTANOIA_BAD_|^PORTANOIA_NO_PORTS|^PORTANOIA_DUPLICATE_PORT/.test(e.code)) return new UsageError(e.message, e.hint)
  return null
}
