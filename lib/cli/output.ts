/**
 * BoundedWriter: the CLI's stdout under back-pressure. A pipe to a slow reader
 * buffers every write in the process (stdout is asynchronous on Linux pipes), so a
 * forged flood grew the daemon by hundreds of MB; a reader that went away (`| head
 * -1`) made the next write fail with EPIPE and crashed it. This writer keeps at most
 * `maxBufferedBytes` queued in the stream: past that a line is dropped and counted,
 * and once the stream drains, one summary line (the caller renders it) says how many
 * were lost. A closed reader (EPIPE, or any write error) ends output for good: every
 * later line is dropped silently and `onClosed` is called once, so the daemon can stop
 * and exit 0 — a reader that has seen enough is not a failure. Runs on the JS thread;
 * write() never throws and never blocks.
 */
import type { Writable } from 'node:stream'

export interface BoundedWriterOptions {
  /** Bytes the stream may hold unwritten before lines are dropped. Default 1 MiB. */
  maxBufferedBytes?: number
  /** The line to write once the stream drained after `dropped` lines were lost. */
  summary(dropped: number, totalDropped: number): string
  /** Called once when the reader is gone (EPIPE or another write error). */
  onClosed?(error: NodeJS.ErrnoException): void
}

export interface BoundedWriterStats {
  written: number
  dropped: number
}

const DEFAULT_MAX_BUFFERED = 1024 * 1024

export class BoundedWriter {
  readonly #stream: Writable
  readonly #max: number
  readonly #opts: BoundedWriterOptions
  #closed = false
  #pending = 0
  #waiting = false
  readonly #counts: BoundedWriterStats = { written: 0, dropped: 0 }

  constructor(stream: Writable, options: BoundedWriterOptions) {
    this.#stream = stream
    this.#max = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED
    if (!Number.isInteger(this.#max) || this.#max < 1) throw new RangeError('maxBufferedBytes must be a positive integer')
    this.#opts = options
    stream.on('error', (e: NodeJS.ErrnoException) => this.#close(e))
  }

  /** True once the reader is gone. */
  get closed(): boolean {
    return this.#closed
  }

  /** Writes `text` unless the stream is too far behind or closed; false when dropped. */
  write(text: string): boolean {
    if (this.#closed || this.#stream.destroyed) {
      this.#counts.dropped++
      return false
    }
    if (this.#stream.writableLength + Buffer.byteLength(text) > this.#max) {
      this.#counts.dropped++
      this.#pending++
      this.#awaitDrain()
      return false
    }
    this.#counts.written++
    try {
      this.#stream.write(text)
    } catch (e) {
      this.#close(e as NodeJS.ErrnoException)
      return false
    }
    return true
  }

  stats(): BoundedWriterStats {
    return { ...this.#counts }
  }

  #awaitDrain(): void {
    if (this.#waiting) return
    this.#waiting = true
    this.#stream.once('drain', () => {
      this.#waiting = false
      if (this.#closed || this.#pending === 0) return
      const n = this.#pending
      this.#pending = 0
      this.write(this.#opts.summary(n, this.#counts.dropped))
    })
  }

  #close(e: NodeJS.ErrnoException): void {
    if (this.#closed) return
    this.#closed = true
    this.#opts.onClosed?.(e)
  }
}
