/**
 * The control socket without root, against a recording handler: the protocol (one
 * JSON request a line, one response line each, errors as {ok:false,error:{code,
 * message,hint}}), its bounds (64 KiB a line, 5 s to send one, strict schema), the
 * file's access (0600 in a 0700 directory it makes), and its lifetime (a live
 * socket refuses a second server, a stale one is replaced, anything else in the way
 * is left alone and refused, close() removes it). The client's answers for no
 * daemon, a stale socket and a refusal are checked here too.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ControlServer, type ControlHandler, MAX_REQUEST_BYTES, parseRequest } from '../../lib/daemon/control.js'
import { ControlError, controlRequest } from '../../lib/daemon/control-client.js'
import { PortanoiaError } from '../../lib/errors.js'
import type { DaemonStatus } from '../../lib/daemon/status.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pnctl-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A handler that records calls and answers with fixed values. */
function recorder(): ControlHandler & { calls: unknown[][] } {
  const calls: unknown[][] = []
  return {
    calls,
    status: async () => {
      calls.push(['status'])
      return { version: 'test', pid: 1 } as unknown as DaemonStatus
    },
    list: async () => {
      calls.push(['list'])
      return [{ address: '198.18.0.2', family: 4, origin: 'operator', reason: 'operator', expiresInMs: 1000, timeoutMs: 2000 }]
    },
    block: async (addresses, options) => {
      calls.push(['block', addresses, options])
      if (addresses.includes('198.18.0.66')) throw new PortanoiaError('PORTANOIA_GUARDED', 'guarded', { hint: 'it is yours' })
      return { applied: [...addresses], kept: [], refused: [], failed: [], ttlMs: 60_000 }
    },
    unblock: async (addresses) => {
      calls.push(['unblock', addresses])
      return { responder: 'fake', ok: true, applied: [...addresses], failed: [] }
    },
    reload: async () => {
      calls.push(['reload'])
      return { at: '2026-01-01T00:00:00.000Z', outcome: 'applied', changed: ['blockTtl'] }
    },
  }
}

async function serve(path: string, handler: ControlHandler = recorder()): Promise<ControlServer> {
  const server = await ControlServer.listen(path)
  server.attach(handler)
  cleanups.push(() => server.close())
  return server
}

/** Sends raw bytes, collects what comes back until the server ends the connection or `lines` arrive. */
function raw(path: string, data: string, lines = 1): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path })
    let got = ''
    const done = (): void => {
      s.destroy()
      resolve(got.split('\n').filter((l) => l !== ''))
    }
    s.setEncoding('utf8')
    s.on('data', (c: string) => {
      got += c
      if (got.split('\n').length - 1 >= lines) done()
    })
    s.on('end', done)
    s.on('close', done)
    s.on('error', reject)
    s.write(data)
  })
}

describe('protocol', () => {
  it('answers each op with its payload, echoing the id', async () => {
    const path = join(await tempDir(), 'c.sock')
    const h = recorder()
    await serve(path, h)
    expect(await controlRequest(path, { op: 'status' })).toMatchObject({ ok: true, status: { version: 'test' } })
    expect((await controlRequest(path, { op: 'list' })).blocks).toEqual([
      { address: '198.18.0.2', family: 4, origin: 'operator', reason: 'operator', expiresInMs: 1000, timeoutMs: 2000 },
    ])
    expect((await controlRequest(path, { op: 'block', addresses: ['198.18.0.3'], ttl: '1m' })).result.applied).toEqual(['198.18.0.3'])
    expect((await controlRequest(path, { op: 'unblock', addresses: ['198.18.0.3'] })).result?.applied).toEqual(['198.18.0.3'])
    expect((await controlRequest(path, { op: 'reload' })).reload).toMatchObject({ outcome: 'applied', changed: ['blockTtl'] })
    expect(h.calls).toEqual([['status'], ['list'], ['block', ['198.18.0.3'], { ttl: '1m' }], ['unblock', ['198.18.0.3']], ['reload']])
    const [line] = await raw(path, '{"op":"status","id":"q7","v":1}\n')
    expect(JSON.parse(line as string)).toMatchObject({ ok: true, v: 1, id: 'q7' })
  })

  it('several requests on one connection are answered in order', async () => {
    const path = join(await tempDir(), 'c.sock')
    await serve(path)
    const lines = await raw(path, '{"op":"status","id":1}\n{"op":"list","id":2}\n\n{"op":"reload","id":3}\n', 3)
    expect(lines.map((l) => (JSON.parse(l) as { id: number }).id)).toEqual([1, 2, 3])
  })

  it('a handler error becomes {ok:false,error:{code,message,hint}}, and the client raises it as ControlError', async () => {
    const path = join(await tempDir(), 'c.sock')
    await serve(path)
    const [line] = await raw(path, '{"op":"block","addresses":["198.18.0.66"]}\n')
    expect(JSON.parse(line as string)).toEqual({ ok: false, v: 1, error: { code: 'PORTANOIA_GUARDED', message: 'guarded', hint: 'it is yours' } })
    const e = await controlRequest(path, { op: 'block', addresses: ['198.18.0.66'] }).catch((err: unknown) => err)
    expect(e).toBeInstanceOf(ControlError)
    expect(e).toMatchObject({ code: 'PORTANOIA_GUARDED', message: 'guarded', hint: 'it is yours' })
  })

  it('refuses what is not a request: not JSON, no or unknown op, unknown or mistyped fields, empty or long address lists', () => {
    const bad = [
      'nope',
      '[]',
      '{}',
      '{"op":"shutdown"}',
      '{"op":"status","extra":1}',
      '{"op":"block"}',
      '{"op":"block","addresses":[]}',
      '{"op":"block","addresses":"198.18.0.2"}',
      '{"op":"block","addresses":[7]}',
      '{"op":"block","addresses":["198.18.0.2"],"ttl":3600}',
      `{"op":"unblock","addresses":${JSON.stringify(Array.from({ length: 4097 }, () => '198.18.0.2'))}}`,
      '{"op":"status","v":2}',
    ]
    for (const line of bad) {
      const r = parseRequest(line)
      expect('op' in r, line).toBe(false)
      expect(r, line).toMatchObject({ code: 'PORTANOIA_BAD_REQUEST', message: expect.any(String), hint: expect.any(String) })
    }
    // Address text is not judged here: the daemon's own checks do that (as for the CLI).
    expect(parseRequest('{"op":"block","addresses":["not-an-ip"],"ttl":"1h"}')).toEqual({ op: 'block', addresses: ['not-an-ip'], ttl: '1h' })
  })

  it('over the socket, a bad request gets an error line and the connection stays usable', async () => {
    const path = join(await tempDir(), 'c.sock')
    await serve(path)
    const lines = await raw(path, '{"op":"frobnicate"}\n{"op":"status"}\n', 2)
    expect(JSON.parse(lines[0] as string)).toMatchObject({ ok: false, error: { code: 'PORTANOIA_BAD_REQUEST' } })
    expect(JSON.parse(lines[1] as string)).toMatchObject({ ok: true })
  })

  it('a line longer than the bound is refused and the connection closed, without reading it all', async () => {
    const path = join(await tempDir(), 'c.sock')
    const h = recorder()
    await serve(path, h)
    const lines = await raw(path, `{"op":"block","addresses":["${'1'.repeat(MAX_REQUEST_BYTES + 10)}`)
    expect(JSON.parse(lines[0] as string)).toMatchObject({ ok: false, error: { code: 'PORTANOIA_BAD_REQUEST', message: expect.stringMatching(/longer than 65536 bytes/) } })
    expect(h.calls).toEqual([])
  })

  it('a request that never ends is cut off after 5 s', async () => {
    const path = join(await tempDir(), 'c.sock')
    await serve(path)
    const started = Date.now()
    const lines = await raw(path, '{"op":"sta')
    expect(JSON.parse(lines[0] as string)).toMatchObject({ ok: false, error: { code: 'PORTANOIA_BAD_REQUEST', message: 'no complete request within 5 s' } })
    expect(Date.now() - started).toBeGreaterThanOrEqual(4500)
  }, 15_000)

  it('before a handler is attached, requests are answered "still starting"', async () => {
    const path = join(await tempDir(), 'c.sock')
    const server = await ControlServer.listen(path)
    cleanups.push(() => server.close())
    await expect(controlRequest(path, { op: 'status' })).rejects.toMatchObject({ code: 'PORTANOIA_CONTROL_FAILED', message: 'the daemon is still starting' })
  })
})

describe('the socket file', () => {
  it('is 0600 in a directory made 0700; close() removes it', async () => {
    const dir = join(await tempDir(), 'run', 'portanoia')
    const path = join(dir, 'p.sock')
    const server = await serve(path)
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    const st = await stat(path)
    expect(st.isSocket()).toBe(true)
    expect(st.mode & 0o777).toBe(0o600)
    await server.close()
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' })
    await server.close() // idempotent
  })

  it('a live socket refuses a second server; a stale one is replaced; a file in the way is refused and kept', async () => {
    const dir = await tempDir()
    const path = join(dir, 'p.sock')
    await serve(path)
    await expect(ControlServer.listen(path)).rejects.toMatchObject({ code: 'PORTANOIA_CONTROL_IN_USE', hint: expect.stringMatching(/one daemon per namespace/) })
    // The first one still answers.
    expect(await controlRequest(path, { op: 'status' })).toMatchObject({ ok: true })

    // A stale socket: bound by a process that is gone without removing it (as one
    // killed by SIGKILL leaves it).
    const stalePath = join(dir, 'stale.sock')
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stalePath])
    await expect(controlRequest(stalePath, { op: 'status' })).rejects.toMatchObject({ code: 'PORTANOIA_NO_DAEMON' })
    expect((await stat(stalePath)).isSocket()).toBe(true)
    await serve(stalePath)
    expect(await controlRequest(stalePath, { op: 'status' })).toMatchObject({ ok: true })

    const filePath = join(dir, 'file.sock')
    await writeFile(filePath, 'not a socket')
    await expect(ControlServer.listen(filePath)).rejects.toMatchObject({ code: 'PORTANOIA_CONTROL_FAILED', message: expect.stringMatching(/not a socket/) })
    expect((await stat(filePath)).isFile()).toBe(true)
  })

  it('the client says PORTANOIA_NO_DAEMON when nothing is there', async () => {
    const path = join(await tempDir(), 'absent.sock')
    await expect(controlRequest(path, { op: 'status' })).rejects.toMatchObject({ code: 'PORTANOIA_NO_DAEMON', message: `no daemon answers on ${path}` })
  })
})
