/**
 * The live admin check over a whole prefix, right before a prefix ban: does any
 * address of the network hold a TCP connection or SCTP association with this host
 * now? Asked of the kernel through `ss` (iproute2), whose `dst PREFIX` filter
 * becomes an inet_diag bytecode condition with the prefix length, so the kernel
 * returns only matching sockets (an IPv4 prefix also matches IPv4-mapped peers of
 * AF_INET6 sockets). States: every one of a connection in progress or alive
 * (`connected` less `time-wait`), as the native single-address check. Sockets whose
 * local port is a tripwire listener's do not count: a forged SYN to one leaves a
 * SYN_RECV request socket for the forged address. A prefix ban is rare, so one
 * process per question is cheap enough, and it keeps the native peer check (one
 * address, on every block) as it is. Fails closed: when `ss` cannot answer, the
 * answer is "a peer may be there" and the prefix is not banned. Runs on the main
 * thread through an injected RunFn (netnsRun for a namespace).
 */
import { type Cidr, formatCidr } from '../policy/addr.js'
import type { RunFn } from '../responders/types.js'

export type PrefixPeerAnswer = { peer: false } | { peer: true; line: string } | { peer: null; error: string }

/** The local port of an `ss -H -n` socket line ('ESTAB 0 0 198.18.0.1:22 198.18.0.2:5000'), or null. */
export function localPort(line: string): number | null {
  const cols = line.trim().split(/\s+/)
  // SCTP lists an association's further paths on lines that start with '`-'.
  if (cols[0]?.startsWith('`') === true) cols.shift()
  // State, Recv-Q, Send-Q, Local, Peer.
  const local = cols.length >= 5 ? cols[3] : undefined
  if (local === undefined) return null
  const m = /:(\d{1,5})$/.exec(local)
  return m === null ? null : Number(m[1])
}

/**
 * Asks the kernel whether any address of `cidr` is the far end of a live TCP
 * connection or SCTP association, leaving out sockets whose local port `ignoreLocalPort` names.
 */
export async function prefixPeer(run: RunFn, cidr: Cidr, ignoreLocalPort: (port: number) => boolean): Promise<PrefixPeerAnswer> {
  const prefix = formatCidr(cidr)
  const answers: string[] = []
  for (const proto of ['-t', '-S'] as const) {
    const r = await run('ss', ['-H', '-n', proto, 'state', 'connected', 'exclude', 'time-wait', 'dst', prefix])
    if (r.code !== 0) {
      // SCTP may be missing (no sctp_diag): then only TCP is asked, as the native check does.
      if (proto === '-S') continue
      return { peer: null, error: `ss exited with ${r.code}: ${r.stderr.trim().split('\n')[0] ?? ''}`.trim() }
    }
    answers.push(...r.stdout.split('\n'))
  }
  for (const line of answers) {
    if (line.trim() === '') continue
    const port = localPort(line)
    // A line that does not parse counts as a peer: fail closed.
    if (port === null || !ignoreLocalPort(port)) return { peer: true, line: line.trim() }
  }
  return { peer: false }
}
