/**
 * The JSON-lines responder: appends events (`hit`, `decision`, `stats`, `error`, in
 * the schema of lib/daemon/events.ts) to a writable stream or a file opened for append.
 * Writes never wait: when the stream signals backpressure (write() returned false),
 * lines are held in a buffer bounded in bytes and flushed on 'drain'; lines that do
 * not fit are dropped and counted, so a stalled reader (a paused pipe, a full disk)
 * costs bounded memory and never stalls capture. A stream error is recorded, counted
 * and makes later writes fail fast. Runs on the JS thread.
 */
import { PortanoiaError } from '../errors.js'
import { createWriteStream } from 'node:fs'
import type { Writable } from 'node:stream'
import { decisionEvent, type PortanoiaEvent, toJsonLine } from '../daemon/events.js'
import { ACTIONS, type Action, type Decision } from '../policy/decision.js'
import { Notifier, result } from './common.js'
import type { ResponderResult } from './types.js'

export interface JsonlOptions {
  /** Where lines go (e.g. process.stdout). Not ended by close(). */
  stream?: Writable
  /** A file to append to (created 0600 if missing); ended by close(). */
  path?: string
  /** Bytes held while the stream applies backpressure. Default 1 MiB. */
  maxBufferBytes?: number
  /** Decision actions written by notify(). Default all. */
  actions?: readonly Action[]
  name?: string
}

export class JsonlResponder extends Notifier {
  readonly name: string
  readonly #stream: Writable
  readonly #owned: boolean
  readonly #maxBufferBytes: number
  readonly #actions: ReadonlySet<Action>
  #pending: string[] = []
  #pendingBytes = 0
  #waitingDrain = false
  #error: Error | null = null
  #closed: Promise<void> | null = null
  #counts = { written: 0, dropped: 0, failed: 0, buffered: 0 }

  constructor(options: JsonlOptions) {
    super()
    this.name = options.name ?? 'jsonl'
    if ((options.stream === undefined) === (options.path === undefined)) {
      throw new PortanoiaError('PORTANOIA_BAD_OPTION', 'jsonl needs exactly one of stream or path', { hint: 'pass { path: "/var/log/portanoia.jsonl" } or { stream: process.stdout }' })
    }
    this.#maxBufferBytes = options.maxBufferBytes ?? 1024 * 1024
    this.#actions = new Set(options.actions ?? ACTIONS)
    if (options.path !== undefined) {
      this.#stream = createWriteStream(options.path, { flags: 'a', mode: 0o600 })
      this.#owned = true
    } else {
      this.#stream = options.stream as Writable
      this.#owned = false
    }
    // Without a listener an 'error' would be thrown as an uncaught exception.
    this.#stream.on('error', (e: Error) => {
      this.#error ??= e
      this.#counts.failed += this.#pending.length
      this.#pending = []
      this.#pendingBytes = 0
    })
    this.#stream.on('drain', () => this.#flush())
  }

  /** Queues one event; false when it was dropped (buffer full, stream failed or closed). */
  write(event: PortanoiaEvent): boolean {
    return this.#writeLine(toJsonLine(event))
  }

  #writeLine(line: string): boolean {
    if (this.#error !== null || this.#closed !== null) {
      this.#counts.failed++
      return false
    }
    if (this.#waitingDrain) {
      const bytes = Buffer.byteLength(line)
      if (this.#pendingBytes + bytes > this.#maxBufferBytes) {
        this.#counts.dropped++
        return false
      }
      this.#pending.push(line)
      this.#pendingBytes += bytes
      this.#counts.buffered++
      return true
    }
    this.#counts.written++
    if (!this.#stream.write(line)) this.#waitingDrain = true
    return true
  }

  #flush(): void {
    this.#waitingDrain = false
    while (this.#pending.length > 0 && !this.#waitingDrain && this.#error === null) {
      const line = this.#pending.shift() as string
      this.#pendingBytes -= Buffer.byteLength(line)
      this.#counts.written++
      if (!this.#stream.write(line)) this.#waitingDrain = true
    }
    if (this.#pending.length === 0) this.#onIdle?.()
  }

  #onIdle: (() => void) | null = null

  async notify(decisions: readonly Decision[]): Promise<ResponderResult> {
    const applied: string[] = []
    const failed: Array<{ address: string; error: string }> = []
    let dropped = 0
    for (const d of decisions) {
      if (!this.#actions.has(d.action)) continue
      if (this.write(decisionEvent(d))) applied.push(d.src)
      else {
        if (this.#error === null && this.#closed === null) dropped++
        failed.push({ address: d.src, error: this.#error?.message ?? (this.#closed !== null ? 'closed' : 'buffer full, dropped') })
      }
    }
    const r = result(this.name, { applied, failed })
    if (dropped > 0) r.dropped = dropped
    return r
  }

  stats(): Record<string, number> {
    return { ...this.#counts, pendingBytes: this.#pendingBytes }
  }

  /** Flushes what is buffered (if the stream lets it), then ends a file this responder opened. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#pending.length > 0 && this.#error === null) {
        // Bounded: a reader that never drains (a stopped pager) must not hang shutdown.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5000)
          const done = (): void => {
            clearTimeout(timer)
            resolve()
          }
          this.#onIdle = done
          this.#stream.once('error', done)
          this.#stream.once('close', done)
        })
        this.#counts.dropped += this.#pending.length
      }
      if (this.#owned && this.#error === null) {
        await new Promise<void>((resolve) => this.#stream.end(() => resolve()))
      }
    })()
    return this.#closed
  }
}
