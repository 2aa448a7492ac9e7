/**
 * Fleet configuration: the zod fragment for the `crowdsec` section of the config
 * file, the CLI flag names that map onto it, and the one place secrets are read
 * (a file named in the config, or an environment variable). Secrets come back
 * wrapped in Secret, so the resolved config can be logged or printed without
 * leaking them; the config itself only ever holds file paths. Reads files only
 * in resolveFleetConfig; the schema is pure.
 */

import { readFile, stat } from 'node:fs/promises'
import { z } from 'zod'
import { PortanoiaError } from '../errors.js'
import { parseLapiUrl, Secret } from './lapi.js'

export const ENV_PASSWORD = 'PORTANOIA_CROWDSEC_PASSWORD'
export const ENV_BOUNCER_KEY = 'PORTANOIA_CROWDSEC_BOUNCER_KEY'

const lapiUrl = z.string().refine((s) => {
  try {
    parseLapiUrl(s)
    return true
  } catch {
    return false
  }
}, 'must be an http:// or https:// URL without credentials, query or fragment')

/** `{ crowdsec: {...} }`: merge into the daemon's config schema (`baseSchema.extend(fleetConfigSchema.shape)`). */
export const fleetConfigSchema = z.object({
  crowdsec: z
    .strictObject({
      /** LAPI base URL. */
      url: lapiUrl,
      /** Watcher machine id: enables pushing local blocks. */
      machine: z.string().min(1).max(255).optional(),
      /** File holding the machine password (else $PORTANOIA_CROWDSEC_PASSWORD). */
      passwordFile: z.string().min(1).optional(),
      /** File holding this host's bouncer key: enables pulling fleet bans (else $PORTANOIA_CROWDSEC_BOUNCER_KEY). */
      bouncerKeyFile: z.string().min(1).optional(),
      pushIntervalMs: z.number().int().min(50).max(600_000).default(1000),
      pullIntervalMs: z.number().int().min(200).max(3_600_000).default(2000),
      queueLimit: z.number().int().min(1).max(1_000_000).default(1000),
      /** Also push blocks from spoofable evidence (`block: all`). Off: a forged packet must not become a fleet-wide ban. */
      pushSpoofable: z.boolean().default(false),
      /** Deadline per LAPI request. */
      timeoutMs: z.number().int().min(100).max(120_000).default(5000),
    })
    .optional(),
})

export type FleetConfigInput = z.input<typeof fleetConfigSchema>
export type CrowdsecConfig = NonNullable<z.output<typeof fleetConfigSchema>['crowdsec']>

/** CLI flags (commander long names) → config keys, for the CLI to map. */
export const FLEET_FLAGS = {
  '--crowdsec-url <url>': 'url',
  '--crowdsec-machine <name>': 'machine',
  '--crowdsec-password-file <file>': 'passwordFile',
  '--crowdsec-bouncer-key-file <file>': 'bouncerKeyFile',
} as const satisfies Record<string, keyof CrowdsecConfig>

/** What the daemon needs to build the LapiClient, FleetPush and FleetPull. */
export interface ResolvedFleet {
  url: string
  machine?: string
  password?: Secret
  bouncerKey?: Secret
  /** Push enabled: machine and password present. */
  push: boolean
  /** Pull enabled: bouncer key present. */
  pull: boolean
  pushIntervalMs: number
  pullIntervalMs: number
  queueLimit: number
  timeoutMs: number
  /** Push blocks from spoofable evidence too (default false). */
  pushSpoofable: boolean
  /** Things worth one line at startup (e.g. a secret file others can read). Never contains a secret. */
  warnings: string[]
}

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv
  readSecretFile?: (path: string) => Promise<{ text: string; mode?: number }>
}

async function defaultReadSecretFile(path: string): Promise<{ text: string; mode: number }> {
  const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path)])
  return { text, mode: st.mode }
}

async function secretFrom(
  what: string,
  file: string | undefined,
  envName: string,
  options: Required<ResolveOptions>,
  warnings: string[],
): Promise<Secret | undefined> {
  let text: string | undefined
  if (file !== undefined) {
    let got: { text: string; mode?: number }
    try {
      got = await options.readSecretFile(file)
    } catch (e) {
      const code = (e as { code?: unknown }).code
      throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `crowdsec ${what} file ${file}: ${typeof code === 'string' ? code : 'unreadable'}`, {
        hint: `create it (mode 0600) with the ${what} on one line, or set $${envName}`,
        cause: e,
      })
    }
    if (got.mode !== undefined && (got.mode & 0o077) !== 0) {
      warnings.push(`crowdsec ${what} file ${file} is readable by others (mode ${(got.mode & 0o777).toString(8)}): chmod 600 it`)
    }
    text = got.text
  } else {
    text = options.env[envName]
  }
  if (text === undefined) return undefined
  // One line; a trailing newline from `echo KEY > file` is not part of it.
  const value = text.replace(/\r?\n$/, '')
  if (value.trim() === '' || /[\r\n]/.test(value)) {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `crowdsec ${what} ${file === undefined ? `in $${envName}` : `file ${file}`} must hold one non-empty line`, {
      hint: `write only the ${what}`,
    })
  }
  return new Secret(value)
}

/**
 * Reads the secrets and decides what is enabled. Returns null without a
 * `crowdsec` section. A file named in the config wins over the environment.
 * Throws PortanoiaError (PORTANOIA_BAD_CONFIG) when the section cannot work:
 * a machine without a password, or neither a machine nor a bouncer key.
 */
export async function resolveFleetConfig(
  config: z.output<typeof fleetConfigSchema>,
  options: ResolveOptions = {},
): Promise<ResolvedFleet | null> {
  const cs = config.crowdsec
  if (cs === undefined) return null
  const opts: Required<ResolveOptions> = {
    env: options.env ?? process.env,
    readSecretFile: options.readSecretFile ?? defaultReadSecretFile,
  }
  const warnings: string[] = []
  const url = parseLapiUrl(cs.url).href
  const password = cs.machine === undefined && cs.passwordFile === undefined
    ? undefined
    : await secretFrom('machine password', cs.passwordFile, ENV_PASSWORD, opts, warnings)
  const bouncerKey = await secretFrom('bouncer key', cs.bouncerKeyFile, ENV_BOUNCER_KEY, opts, warnings)
  if (cs.machine !== undefined && password === undefined) {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `crowdsec machine ${cs.machine} has no password`, {
      hint: `pass --crowdsec-password-file FILE or set $${ENV_PASSWORD}`,
    })
  }
  if (cs.machine === undefined && cs.passwordFile !== undefined) {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', 'a crowdsec password was given without a machine id', {
      hint: 'pass --crowdsec-machine NAME (the name registered with `cscli machines add`)',
    })
  }
  const push = cs.machine !== undefined && password !== undefined
  const pull = bouncerKey !== undefined
  if (!push && !pull) {
    throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `crowdsec url ${url} given, but neither pushing nor pulling is configured`, {
      hint: 'add --crowdsec-machine + --crowdsec-password-file to push, --crowdsec-bouncer-key-file to pull',
    })
  }
  const out: ResolvedFleet = {
    url,
    push,
    pull,
    pushIntervalMs: cs.pushIntervalMs,
    pullIntervalMs: cs.pullIntervalMs,
    queueLimit: cs.queueLimit,
    timeoutMs: cs.timeoutMs,
    pushSpoofable: cs.pushSpoofable,
    warnings,
  }
  if (cs.machine !== undefined) out.machine = cs.machine
  if (password !== undefined) out.password = password
  if (bouncerKey !== undefined) out.bouncerKey = bouncerKey
  return out
}
