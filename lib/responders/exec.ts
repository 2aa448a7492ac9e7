/**
 * The command responder: runs an operator-supplied command for each decision whose
 * action it is configured for (default: block). The template is split into argv
 * once, at construction, by a small quote-aware splitter; per decision only the
 * tokens are replaced — `{src} {dst} {dstPort} {srcPort} {proto} {kind} {ttl}
 * {reason} {family} {action}` and the original portanoia's `[SRC_IP] [DEST_IP]
 * [DEST_PORT] [SRC_PORT] [LISTEN_PORT]` — and only by values that passed validation
 * (a canonical address, an integer port, a word from a fixed vocabulary), so packet
 * data can become an address or a port and nothing else. With the explicit
 * `shell: true` opt-in, the legacy form `-c "iptables ... [SRC_IP] ..."` runs through
 * /bin/sh -c: the string comes from the operator, and substituted values contain no
 * shell-special character. Commands run with a timeout (the process group is killed
 * by its PID), a concurrency limit and a bounded queue whose overflow is counted;
 * failures are reported in results, never thrown.
 */
import { PortanoiaError } from '../errors.js'
import { isValidAddress } from '../policy/addr.js'
import { ACTIONS, type Action, type Decision, REASON_CODES } from '../policy/decision.js'
import { SCAN_KINDS } from '../types.js'
import { firstLine, Notifier, result } from './common.js'
import { createRun } from './run.js'
import type { ResponderResult, RunFn, RunResult } from './types.js'

export interface ExecOptions {
  /** The command template: a string (split once, quote-aware) or an argv array. */
  command: string | readonly string[]
  /** Run the (string) template through /bin/sh -c. Opt-in, for legacy `-c "..."` commands. */
  shell?: boolean
  /** Decision actions that trigger the command. Default ['block']. */
  actions?: readonly Action[]
  /** Kill a command after this many ms. Default 10 s. */
  timeoutMs?: number
  /** Commands running at once. Default 4. */
  concurrency?: number
  /** Commands waiting for a slot; beyond this, decisions are dropped and counted. Default 1000. */
  maxQueue?: number
  /** For tests: replaces the default runner (which enforces timeoutMs). */
  run?: RunFn
  /** Responder name in results and events. Default 'exec'. */
  name?: string
}

const BRACE_TOKENS = ['src', 'dst', 'dstPort', 'srcPort', 'proto', 'kind', 'ttl', 'reason', 'family', 'action'] as const
type TokenName = (typeof BRACE_TOKENS)[number]
const LEGACY_TOKENS: Record<string, TokenName> = {
  SRC_IP: 'src',
  DEST_IP: 'dst',
  DEST_PORT: 'dstPort',
  SRC_PORT: 'srcPort',
  LISTEN_PORT: 'dstPort',
}
const TOKEN_RE = new RegExp(`\\{(${BRACE_TOKENS.join('|')})\\}|\\[(${Object.keys(LEGACY_TOKENS).join('|')})\\]`, 'g')
// Every substituted value must match this: no space, quote, '$', ';', '|', '&', '`', '\\', glob or
// redirection character, so a value is one word even to a shell.
const SAFE_VALUE = /^[0-9A-Za-z.:_-]+$/
const PROTOS = new Set(['tcp', 'udp', 'sctp', 'ip'])
const KINDS = new Set<string>(SCAN_KINDS)
const REASONS = new Set<string>(REASON_CODES)

function badCommand(message: string, hint: string): PortanoiaError {
  return new PortanoiaError('PORTANOIA_BAD_COMMAND', message, { hint })
}

function badOption(message: string, hint: string): PortanoiaError {
  return new PortanoiaError('PORTANOIA_BAD_OPTION', message, { hint })
}

// Anything shaped like a token: `{word}` (not a shell's `${word}`) or `[UPPER_WORD]`.
const TOKEN_LIKE = /(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}|\[([A-Z][A-Z0-9_]*)\]/g
const TOKEN_HELP = `tokens: ${BRACE_TOKENS.map((t) => `{${t}}`).join(' ')} ${Object.keys(LEGACY_TOKENS).map((t) => `[${t}]`).join(' ')}`

/**
 * Refuses token-shaped text that is not a token: a mistyped `{scr}` would otherwise
 * reach the command as the literal text "{scr}" on every block.
 */
function checkTokens(text: string): void {
  for (const m of text.matchAll(TOKEN_LIKE)) {
    const brace = m[1]
    const legacy = m[2]
    if (brace !== undefined && !(BRACE_TOKENS as readonly string[]).includes(brace)) {
      throw badCommand(`unknown token {${brace}} in command`, TOKEN_HELP)
    }
    if (legacy !== undefined && LEGACY_TOKENS[legacy] === undefined) {
      throw badCommand(`unknown token [${legacy}] in command`, TOKEN_HELP)
    }
  }
}

/**
 * Splits a command line into argv the way a POSIX shell would for plain words and
 * quotes, and nothing more: whitespace separates words, '...' is literal, "..."
 * allows \" \\ \$ \` escapes, a backslash outside quotes escapes the next character.
 * Expansions, globs, pipes and redirections are not interpreted: '$HOME' or '|'
 * stay literal characters of a word.
 */
export function splitCommand(text: string): string[] {
  const argv: string[] = []
  let word = ''
  let inWord = false
  let quote: '' | "'" | '"' = ''
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string
    if (quote === "'") {
      if (c === "'") quote = ''
      else word += c
      continue
    }
    if (quote === '"') {
      if (c === '"') quote = ''
      else if (c === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1] as string)) word += text[++i]
      else word += c
      continue
    }
    if (c === "'" || c === '"') {
      quote = c
      inWord = true
    } else if (c === '\\') {
      if (i + 1 >= text.length) throw badCommand('command ends with a lone backslash', 'remove it or quote it')
      word += text[++i]
      inWord = true
    } else if (/\s/.test(c)) {
      if (inWord) argv.push(word)
      word = ''
      inWord = false
    } else {
      word += c
      inWord = true
    }
  }
  if (quote !== '') throw badCommand(`unterminated ${quote} quote in command`, 'close the quote')
  if (inWord) argv.push(word)
  return argv
}

/** The token value for a decision, or a string saying why it cannot be produced. */
function tokenValue(name: TokenName, d: Decision): { value: string } | { error: string } {
  const port = (p: unknown): { value: string } | { error: string } =>
    typeof p === 'number' && Number.isInteger(p) && p >= 0 && p <= 65535 ? { value: String(p) } : { error: `bad port ${String(p)}` }
  switch (name) {
    case 'src':
      return isValidAddress(d.src) ? { value: d.src } : { error: 'source is not a canonical address' }
    case 'dst':
      return d.trigger !== undefined && isValidAddress(d.trigger.dst) ? { value: d.trigger.dst } : { error: 'destination is not a canonical address' }
    case 'dstPort':
      return port(d.trigger?.dstPort)
    case 'srcPort':
      return port(d.trigger?.srcPort)
    case 'proto':
      return d.trigger !== undefined && PROTOS.has(d.trigger.proto) ? { value: d.trigger.proto } : { error: 'unknown protocol' }
    case 'kind':
      return d.trigger !== undefined && KINDS.has(d.trigger.kind) ? { value: d.trigger.kind } : { error: 'unknown scan kind' }
    case 'ttl':
      return {
        value: String(typeof d.ttlMs === 'number' && Number.isFinite(d.ttlMs) && d.ttlMs > 0 ? Math.ceil(d.ttlMs / 1000) : 0),
      }
    case 'reason':
      return REASONS.has(d.reason) ? { value: d.reason } : { error: 'unknown reason code' }
    case 'family':
      return d.family === 4 || d.family === 6 ? { value: String(d.family) } : { error: 'bad family' }
    case 'action':
      return (ACTIONS as readonly string[]).includes(d.action) ? { value: d.action } : { error: 'unknown action' }
  }
}

/** Replaces the tokens of one template word; throws a string when a needed value is invalid. */
function expandWord(word: string, d: Decision): string {
  return word.replace(TOKEN_RE, (_m, brace: string | undefined, legacy: string | undefined) => {
    const name = (brace as TokenName | undefined) ?? (LEGACY_TOKENS[legacy as string] as TokenName)
    const v = tokenValue(name, d)
    if ('error' in v) throw new Error(`{${name}}: ${v.error}`)
    // Defence in depth: every validator above already guarantees this.
    if (!SAFE_VALUE.test(v.value)) throw new Error(`{${name}}: unsafe value refused`)
    return v.value
  })
}

/** The argv for a decision from a split template (argv[0] is never templated). */
export function expandArgv(template: readonly string[], d: Decision): string[] {
  return template.map((w, i) => (i === 0 ? w : expandWord(w, d)))
}

interface Job {
  argv: string[]
  src: string
  done: (outcome: { ok: boolean; error?: string }) => void
}

export class ExecResponder extends Notifier {
  readonly name: string
  readonly #template: readonly string[]
  readonly #shellCommand: string | null
  readonly #actions: ReadonlySet<Action>
  readonly #concurrency: number
  readonly #maxQueue: number
  readonly #run: RunFn
  readonly #queue: Job[] = []
  readonly #inFlight = new Set<Promise<void>>()
  #closed = false
  #counts = { started: 0, succeeded: 0, failed: 0, timedOut: 0, dropped: 0, refused: 0 }

  constructor(options: ExecOptions) {
    super()
    this.name = options.name ?? 'exec'
    const timeoutMs = options.timeoutMs ?? 10_000
    this.#concurrency = options.concurrency ?? 4
    this.#maxQueue = options.maxQueue ?? 1000
    if (!Number.isInteger(this.#concurrency) || this.#concurrency < 1) {
      throw badOption(`exec concurrency must be an integer ≥ 1, got ${String(this.#concurrency)}`, 'e.g. concurrency: 4')
    }
    if (!Number.isInteger(this.#maxQueue) || this.#maxQueue < 0) {
      throw badOption(`exec maxQueue must be an integer ≥ 0, got ${String(this.#maxQueue)}`, 'e.g. maxQueue: 1000')
    }
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw badOption(`exec timeoutMs must be a positive number of milliseconds, got ${String(timeoutMs)}`, 'e.g. timeoutMs: 10000')
    }
    this.#actions = new Set(options.actions ?? ['block'])
    for (const a of this.#actions) {
      if (!(ACTIONS as readonly string[]).includes(a)) throw badCommand(`unknown action ${JSON.stringify(a)}`, `use ${ACTIONS.join(', ')}`)
    }
    this.#run = options.run ?? createRun({ timeoutMs, killGroup: true, maxBuffer: 1024 * 1024 })
    if (options.shell === true) {
      if (typeof options.command !== 'string' || options.command.trim() === '') {
        throw badCommand('shell mode needs the command as one string', 'pass e.g. "iptables -I INPUT -s [SRC_IP] -j DROP"')
      }
      checkTokens(options.command)
      this.#shellCommand = options.command
      this.#template = ['/bin/sh', '-c', options.command]
    } else {
      this.#shellCommand = null
      const argv = typeof options.command === 'string' ? splitCommand(options.command) : [...options.command]
      if (argv.length === 0 || argv[0] === '') throw badCommand('empty command', 'give the program and its arguments')
      if (argv.some((w) => typeof w !== 'string')) throw badCommand('command words must be strings', 'pass an array of strings')
      for (const w of argv) checkTokens(w)
      TOKEN_RE.lastIndex = 0
      if (new RegExp(TOKEN_RE.source).test(argv[0] as string)) {
        throw badCommand('the program name cannot contain a token', 'put tokens in the arguments')
      }
      this.#template = argv
    }
  }

  /** The argv the template was split into (for `--dry-run` and config echo). */
  get argv(): readonly string[] {
    return this.#template
  }

  /** The argv a decision would run, or throws an Error saying which token was invalid. */
  argvFor(d: Decision): string[] {
    if (this.#shellCommand !== null) return ['/bin/sh', '-c', expandWord(this.#shellCommand, d)]
    return expandArgv(this.#template, d)
  }

  async notify(decisions: readonly Decision[]): Promise<ResponderResult> {
    const applied: string[] = []
    const failed: Array<{ address: string; error: string }> = []
    const scripts: string[] = []
    const waits: Array<Promise<void>> = []
    let dropped = 0
    for (const d of decisions) {
      if (!this.#actions.has(d.action)) continue
      const src = typeof d.src === 'string' ? d.src : String(d.src)
      let argv: string[]
      try {
        argv = this.argvFor(d)
      } catch (e) {
        this.#counts.refused++
        failed.push({ address: src, error: `refused: ${(e as Error).message}` })
        continue
      }
      scripts.push(JSON.stringify(argv))
      if (this.#closed || (this.#running() >= this.#concurrency && this.#queue.length >= this.#maxQueue)) {
        this.#counts.dropped++
        dropped++
        failed.push({ address: src, error: this.#closed ? 'responder closed' : 'queue full, dropped' })
        continue
      }
      waits.push(
        new Promise<void>((resolve) => {
          this.#enqueue({
            argv,
            src,
            done: (o) => {
              if (o.ok) applied.push(src)
              else failed.push({ address: src, error: o.error ?? 'failed' })
              resolve()
            },
          })
        }),
      )
    }
    await Promise.all(waits)
    const r = result(this.name, { applied, failed })
    if (scripts.length > 0) r.script = `${scripts.join('\n')}\n`
    if (dropped > 0) r.dropped = dropped
    return r
  }

  #running(): number {
    return this.#inFlight.size
  }

  #enqueue(job: Job): void {
    if (this.#running() < this.#concurrency) this.#launch(job)
    else this.#queue.push(job)
  }

  #launch(job: Job): void {
    this.#counts.started++
    const [cmd, ...args] = job.argv as [string, ...string[]]
    const p = this.#run(cmd, args)
      .then(
        (r: RunResult) => this.#finish(job, r),
        (e: unknown) => this.#finish(job, { code: 127, stdout: '', stderr: String(e) }),
      )
      .finally(() => {
        this.#inFlight.delete(p)
        const next = this.#queue.shift()
        if (next !== undefined && !this.#closed) this.#launch(next)
      })
    this.#inFlight.add(p)
  }

  #finish(job: Job, r: RunResult): void {
    if (r.code === 0) {
      this.#counts.succeeded++
      job.done({ ok: true })
      return
    }
    if (r.timedOut === true) this.#counts.timedOut++
    this.#counts.failed++
    const why = r.timedOut === true ? 'timed out, killed' : `exited with ${r.code}`
    const msg = firstLine(r.stderr)
    job.done({ ok: false, error: `${job.argv[0]} ${why}${msg === '' ? '' : `: ${msg}`}` })
  }

  stats(): Record<string, number> {
    return { ...this.#counts, queued: this.#queue.length, running: this.#running() }
  }

  async close(): Promise<void> {
    this.#closed = true
    for (const job of this.#queue.splice(0)) {
      this.#counts.dropped++
      job.done({ ok: false, error: 'responder closed' })
    }
    await Promise.all([...this.#inFlight])
  }
}
