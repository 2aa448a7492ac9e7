/**
 * nftLibRun: a RunFn that commits `nft -f -` scripts in this process, through
 * libnftables (native/nft_lib.h), instead of starting an nft process for each. A
 * process per transaction costs the JS thread a fork of the whole daemon (its page
 * tables copied while the loop waits: milliseconds for a large heap) and the host an
 * exec, a dynamic link and nft's own start; under a flood of new sources that is
 * most of the packet → block delay. The library is what the nft command itself runs,
 * so a script is the same one atomic transaction, with the same exit status and the
 * same error text (the responders' EXISTS/MISSING checks read it). `nft -j [-t] list
 * WORDS…` (the firewall's reads: the sync's check every few seconds forked the daemon as
 * well) runs in-process too, its JSON the command's. Everything else — monitors, other
 * flags, another program, a custom nft path — goes to `fallback`, and so does every call
 * when libnftables cannot be loaded (the addon never links it: the sensor
 * runs without it). A run cannot be killed on a timeout as a child can: one that
 * has not returned after `timeoutMs` is reported as timed out (code 124, outcome
 * unknown, as a killed child's would be) and from then on every transaction starts
 * an nft process, so a wedged netlink socket costs one pool thread, never the
 * firewall. The context lives in the namespace `netns` names, so it writes exactly
 * where `netnsRun(netns)` would. Runs on the JS thread; the transaction runs on
 * libuv's pool.
 */
import { loadBinding, type NativeBinding, type NativeNft } from '../binding.js'
import { PortanoiaError } from '../errors.js'
import { NETNS_NAME } from './run.js'
import type { RunFn, RunResult } from './types.js'

export interface NftLibRunOptions {
  /** Network namespace name (`ip netns` name); absent: this process's own. */
  netns?: string
  /** A transaction not back after this many ms is reported as timed out (code 124). Default 30 s, as a child's. */
  timeoutMs?: number
  /** For tests: the addon to use. */
  binding?: Pick<NativeBinding, 'Nft'>
}

/** Why in-process nft is not used here, or null when it is. */
export function nftLibUnavailable(binding?: Pick<NativeBinding, 'Nft'>): string | null {
  try {
    return (binding ?? loadBinding()).Nft.available()
  } catch (e) {
    return (e as Error).message
  }
}

/**
 * `fallback`, except that `nft -f -` with a script runs through libnftables in
 * `options.netns`. Returns `fallback` itself when libnftables is not there.
 */
export function nftLibRun(fallback: RunFn, options: NftLibRunOptions = {}): RunFn {
  const ns = options.netns
  if (ns !== undefined && !NETNS_NAME.test(ns)) {
    throw new PortanoiaError('PORTANOIA_BAD_NETNS', `${JSON.stringify(ns)} is not a network namespace name`, { hint: 'use the name `ip netns list` shows' })
  }
  let binding: Pick<NativeBinding, 'Nft'>
  try {
    binding = options.binding ?? loadBinding()
  } catch {
    return fallback
  }
  if (binding.Nft.available() !== null) return fallback
  const timeoutMs = options.timeoutMs ?? 30_000
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new PortanoiaError('PORTANOIA_BAD_OPTION', `timeoutMs must be a positive number, got ${String(timeoutMs)}`, { hint: 'e.g. timeoutMs: 10000' })
  let nft: NativeNft | undefined
  let wedged = false
  return async (cmd, args, input): Promise<RunResult> => {
    if (wedged || cmd !== 'nft') return await fallback(cmd, args, input)
    const job = inProcess(args, input)
    if (job === null) return await fallback(cmd, args, input)
    let timer: NodeJS.Timeout | undefined
    try {
      nft ??= new binding.Nft(ns === undefined ? {} : { netns: `/run/netns/${ns}` })
      const late = new Promise<RunResult>((resolve) => {
        timer = setTimeout(() => {
          wedged = true
          resolve({ code: 124, stdout: '', stderr: `nft: the in-process transaction has not returned after ${timeoutMs} ms; its outcome is unknown, and later transactions start an nft process`, timedOut: true })
        }, timeoutMs)
      })
      const r = await Promise.race([nft.run(job.script, job.output), late])
      // The command names no place for a command given as arguments: neither does this.
      return job.read ? { ...r, stderr: r.stderr.replace(/^\/dev\/stdin:\d+:\d+(?:-\d+)?: /gm, '') } : r
    } catch (e) {
      // Not run at all (no namespace, no context): as a program that could not start.
      return { code: 127, stdout: '', stderr: `nft: ${(e as Error).message}` }
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * Words a list command names (table families and names, set names): nothing nft would read as
 * syntax, and no option (`-a` after `list` is an option to the command, a syntax error in a script).
 */
const LIST_WORD = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/

/**
 * What runs in-process for an nft argv: `-f -` with a script (a transaction), or `-j`
 * [`-t`] `list` with plain words (a read, its output as JSON). Null for anything else.
 */
function inProcess(args: readonly string[], input: string | undefined): { script: string; output: { json?: boolean; terse?: boolean }; read: boolean } | null {
  if (args.length === 2 && args[0] === '-f' && args[1] === '-' && input !== undefined) return { script: input, output: {}, read: false }
  if (input !== undefined || args[0] !== '-j') return null
  const terse = args[1] === '-t'
  const words = args.slice(terse ? 2 : 1)
  if (words[0] !== 'list' || words.length < 2 || !words.every((w) => LIST_WORD.test(w))) return null
  return { script: `${words.join(' ')}\n`, output: { json: true, ...(terse && { terse: true }) }, read: true }
}
