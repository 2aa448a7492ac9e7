/**
 * The ban-rate benchmark's worker, run as its own process inside a bench namespace
 * and pinned to a core by bench/blocking.ts. Running inside the namespace lets both
 * methods start nft directly (the library's defaultRun), as a daemon on the host
 * would, instead of paying `ip netns exec` per process — which would penalise the
 * one-process-per-address method most. Each command is one JSON line on stdin and
 * one JSON line back:
 *   {"cmd":"batched","count":N,"batch":B}  NftablesResponder.block() in calls of B
 *   {"cmd":"perproc","count":N}            one `nft add element` process per address
 * Both start from an absent table (uninstall, then start() creates it), time only the
 * adding, then read the set back, report how many of the addresses are in it, and
 * delete the table. The addresses are bench/addresses.ts's first N, so both methods
 * ban the same ones. `quit` exits.
 */
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import { NFT_SETS, NFT_TABLE, NftablesResponder } from '../lib/responders/nftables.js'
import { defaultRun } from '../lib/responders/run.js'
import type { BlockRequest } from '../lib/responders/types.js'
import { ipv4Bans } from './addresses.js'

const TTL_MS = 3_600_000

interface Command {
  cmd: string
  count?: number
  batch?: number
}

async function trial(c: Command): Promise<Record<string, unknown>> {
  const count = c.count ?? 0
  const addresses = ipv4Bans(count)
  const responder = new NftablesResponder()
  await responder.uninstall()
  await responder.start()
  let applied = 0
  let failed = 0
  let firstError: string | undefined
  let processes = 0
  const t0 = performance.now()
  if (c.cmd === 'batched') {
    const size = c.batch ?? 256
    for (let i = 0; i < addresses.length; i += size) {
      const requests: BlockRequest[] = addresses.slice(i, i + size).map((address) => ({ address, family: 4, ttlMs: TTL_MS }))
      const r = await responder.block(requests)
      processes++
      applied += r.applied.length
      failed += r.failed.length
      firstError ??= r.failed[0]?.error
    }
  } else {
    // The peers' way: one nft process per address, each its own transaction.
    const [family, table] = NFT_TABLE.split(' ') as [string, string]
    for (const address of addresses) {
      const r = await defaultRun('nft', ['add', 'element', family, table, NFT_SETS.verified[4], '{', address, 'timeout', `${TTL_MS / 1000}s`, '}'])
      processes++
      if (r.code === 0) applied++
      else {
        failed++
        firstError ??= r.stderr.trim()
      }
    }
  }
  const seconds = (performance.now() - t0) / 1000
  const want = new Set(addresses)
  const inSet = (await responder.list()).filter((b) => want.has(b.address)).length
  await responder.uninstall()
  return { seconds, count, applied, failed, processes, inSet, ...(firstError !== undefined && { firstError }) }
}

const lines = createInterface({ input: process.stdin })
const reply = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`)
reply({ ready: true, pid: process.pid })
for await (const line of lines) {
  const text = line.trim()
  if (text === 'quit') break
  if (text === '') continue
  try {
    reply(await trial(JSON.parse(text) as Command))
  } catch (err) {
    reply({ error: (err as Error).message })
  }
}
lines.close()
