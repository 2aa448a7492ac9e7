/**
 * The daemon's state file: a journal of what the kernel loses on a reboot — the
 * escalation ladder's history (how often each address was blocked, and when last)
 * and the blocks in force with their expiry and origin — never a second source of
 * truth while the table exists (the daemon restores blocks from it only when its
 * table was gone at start). Runs on the main thread; every write is asynchronous
 * and serialised. Invariants:
 * - A write is atomic: a temporary file in the same directory, fsync, rename over
 *   the old file, fsync of the directory; a crash leaves the old file or the new one.
 * - The file is bounded: the offences by their LRU (lib/policy/offences.ts), the
 *   blocks by `maxBlocks` (the longest-lasting kept).
 * - A corrupt or unreadable file, or one that cannot be written, never stops the
 *   daemon: a corrupt file is moved aside (`.corrupt`) and the daemon starts from
 *   nothing; each failure is said once (with its errno), and its recovery once.
 * Writes are coalesced: at most one a second, plus one at close.
 */
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { z } from 'zod'
import { PortanoiaError } from '../errors.js'
import { formatCidr, isValidAddress, parseCidr } from '../policy/addr.js'
import type { Offence } from '../policy/offences.js'
import { ownNetnsName } from './control.js'

/** Where state files live unless the config names another path (systemd's StateDirectory=portanoia). */
export const STATE_DIR = '/var/lib/portanoia'

/** Blocks kept in the file at most. */
export const MAX_STATE_BLOCKS = 100_000

const STATE_VERSION = 1

/** A block as the journal keeps it. */
export interface JournalBlock {
  address: string
  family: 4 | 6
  /** Which set it belongs in: verified or spoofable evidence (operator blocks are verified). */
  evidence: 'verified' | 'spoofable'
  /** Who made it: the policy, or an operator. */
  origin: 'local' | 'operator'
  /** ms since the epoch. */
  expiresAt: number
}

/** A prefix ban as the journal keeps it. */
export interface JournalPrefix {
  /** Canonical CIDR text. */
  prefix: string
  family: 4 | 6
  /** ms since the epoch. */
  expiresAt: number
}

export interface StateContent {
  offences: Offence[]
  blocks: JournalBlock[]
  /** Prefix bans in force (`--aggregate`); absent in files of earlier versions. */
  prefixes?: JournalPrefix[]
}

const address = z.string().max(64).refine((a) => isValidAddress(a), 'not a canonical address')
const fileSchema = z.object({
  v: z.literal(STATE_VERSION),
  savedAt: z.number(),
  offences: z.array(z.object({ address, count: z.number().int().min(1), last: z.number() })),
  blocks: z.array(
    z.object({
      address,
      family: z.union([z.literal(4), z.literal(6)]),
      evidence: z.enum(['verified', 'spoofable']),
      origin: z.enum(['local', 'operator']),
      expiresAt: z.number(),
    }),
  ),
  prefixes: z
    .array(
      z.object({
        prefix: z.string().max(64).refine((p) => isCanonicalCidr(p), 'not a canonical network'),
        family: z.union([z.literal(4), z.literal(6)]),
        expiresAt: z.number(),
      }),
    )
    .optional(),
})

function isCanonicalCidr(text: string): boolean {
  try {
    return formatCidr(parseCidr(text)) === text
  } catch {
    return false
  }
}

/**
 * The directory of the default path: `$STATE_DIRECTORY` when systemd set it
 * (StateDirectory=; the first of a colon-separated list, absolute only), else
 * STATE_DIR. Test runs point it at a scratch folder (test/setup.ts), so no test
 * writes the host's own /var/lib/portanoia.
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  const first = env.STATE_DIRECTORY?.split(':')[0]
  return first !== undefined && first.startsWith('/') && !first.includes('\0') ? first.replace(/\/+$/, '') || '/' : STATE_DIR
}

/**
 * The default path: one per network namespace, as the control socket
 * (`state.json`, or `state-NETNS.json` with `netns` or inside a named namespace).
 */
export async function defaultStatePath(netns?: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const name = netns ?? (await ownNetnsName())
  const dir = stateDir(env)
  return name === null ? `${dir}/state.json` : `${dir}/state-${name}.json`
}

type Log = (level: 'info' | 'warn', message: string) => void

export interface StateFileOptions {
  log?: Log
  /** Shortest gap between two writes, ms. Default 1000. */
  minIntervalMs?: number
  maxBlocks?: number
  now?: () => number
}

export class StateFile {
  readonly path: string
  readonly #log: Log
  readonly #minIntervalMs: number
  readonly #maxBlocks: number
  readonly #now: () => number
  #source: (() => StateContent) | null = null
  #timer: NodeJS.Timeout | undefined
  #writing: Promise<void> = Promise.resolve()
  #lastWrite = -Infinity
  #failing: string | null = null
  #closed = false
  #counts = { writes: 0, failures: 0 }

  constructor(path: string, options: StateFileOptions = {}) {
    if (!path.startsWith('/')) throw new PortanoiaError('PORTANOIA_BAD_CONFIG', `state file ${JSON.stringify(path)} is not an absolute path`, { hint: 'e.g. /var/lib/portanoia/state.json' })
    this.path = path
    this.#log = options.log ?? ((): void => {})
    this.#minIntervalMs = options.minIntervalMs ?? 1000
    this.#maxBlocks = options.maxBlocks ?? MAX_STATE_BLOCKS
    this.#now = options.now ?? Date.now
  }

  /**
   * The saved state; null when there is none. A file that cannot be parsed is moved
   * to `PATH.corrupt` (so the next write does not destroy it) and reported once; an
   * unreadable one is reported and left alone. Never rejects.
   */
  async load(): Promise<StateContent | null> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e)
      if (code !== 'ENOENT') this.#log('warn', `state file ${this.path}: cannot read it (${code}); starting without the ladder's history or blocks to restore`)
      return null
    }
    let parsed: z.infer<typeof fileSchema>
    try {
      parsed = fileSchema.parse(JSON.parse(text))
    } catch (e) {
      const why = e instanceof z.ZodError ? (e.issues[0]?.message ?? 'bad shape') : (e as Error).message
      const aside = `${this.path}.corrupt`
      const moved = await rename(this.path, aside).then(
        () => true,
        () => false,
      )
      this.#log('warn', `state file ${this.path} is corrupt (${why}); ${moved ? `moved to ${aside}, ` : ''}starting without the ladder's history or blocks to restore`)
      return null
    }
    return { offences: parsed.offences, blocks: parsed.blocks, ...(parsed.prefixes !== undefined && { prefixes: parsed.prefixes }) }
  }

  /** Where write() and schedule() read the state from. */
  attach(source: () => StateContent): void {
    this.#source = source
  }

  /** Asks for a write soon (coalesced: at most one every `minIntervalMs`). */
  schedule(): void {
    if (this.#closed || this.#source === null || this.#timer !== undefined) return
    const wait = Math.max(0, this.#lastWrite + this.#minIntervalMs - this.#now())
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.write()
    }, wait)
    this.#timer.unref()
  }

  /** Writes the current state now (after a write in progress). Never rejects. */
  write(): Promise<void> {
    const source = this.#source
    if (source === null) return this.#writing
    const run = this.#writing.then(async () => {
      this.#lastWrite = this.#now()
      let content: StateContent
      try {
        content = source()
      } catch (e) {
        this.#fail(`cannot gather it (${(e as Error).message})`)
        return
      }
      await this.#atomicWrite(this.#serialise(content))
    })
    this.#writing = run
    return run
  }

  #serialise(content: StateContent): string {
    const now = this.#now()
    const blocks = content.blocks.filter((b) => b.expiresAt > now)
    if (blocks.length > this.#maxBlocks) blocks.sort((a, b) => b.expiresAt - a.expiresAt).splice(this.#maxBlocks)
    const prefixes = (content.prefixes ?? []).filter((p) => p.expiresAt > now)
    if (prefixes.length > this.#maxBlocks) prefixes.sort((a, b) => b.expiresAt - a.expiresAt).splice(this.#maxBlocks)
    return `${JSON.stringify({ v: STATE_VERSION, savedAt: now, offences: content.offences, blocks, ...(prefixes.length > 0 && { prefixes }) })}\n`
  }

  async #atomicWrite(text: string): Promise<void> {
    const dir = dirname(this.path)
    const tmp = `${this.path}.tmp-${process.pid}`
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      const fh = await open(tmp, 'w', 0o600)
      try {
        await fh.writeFile(text)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, this.path)
      // The rename is durable only once the directory is.
      const d = await open(dir, 'r')
      try {
        await d.sync()
      } finally {
        await d.close()
      }
      this.#counts.writes++
      if (this.#failing !== null) {
        this.#failing = null
        this.#log('info', `state file ${this.path}: written again`)
      }
    } catch (e) {
      await unlink(tmp).catch(() => {})
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message
      this.#fail(`cannot write it (${code})`)
    }
  }

  #fail(why: string): void {
    this.#counts.failures++
    if (this.#failing === why) return
    this.#failing = why
    this.#log('warn', `state file ${this.path}: ${why}; the ladder's history and blocks will not survive a restart until it can be written (portanoia goes on)`)
  }

  stats(): Record<string, number> {
    return { ...this.#counts, failing: this.#failing === null ? 0 : 1 }
  }

  /** A last write of the current state, then no more. Idempotent. */
  async close(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    if (!this.#closed && this.#source !== null) {
      this.#closed = true
      await this.write()
    }
    this.#closed = true
    await this.#writing
  }
}
