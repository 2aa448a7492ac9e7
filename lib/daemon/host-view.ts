/**
 * Where the daemon learns about the host it protects, behind one interface
 * (HostView): guard facts from the kernel, watched (HostWatch: rtnetlink, sock_diag,
 * resolv.conf), the live checks, the ephemeral port range, and the listening-socket
 * table for `--unused`. The local view is this process's namespace; the namespace
 * view is another one (a container's, or selftest's): its kernel facts come from
 * sockets opened inside it, and its socket table from `ip netns exec NS cat
 * /proc/net/FILE`, because /proc/net always shows the reader's own namespace. A
 * missing /proc file is not an error: the table is read as empty for it.
 */
import { readFile } from 'node:fs/promises'
import { endianness } from 'node:os'
import type { ListeningPorts, SocketTables } from '../listening.js'
import { listeningPorts } from '../listening.js'
import { defaultRun } from '../responders/run.js'
import type { RunFn } from '../responders/types.js'
import { type GuardFactsInForce, type HostFacts, HostWatch, type HostWatchStats, type LiveChecks } from './host-watch.js'

export interface HostView {
  /** Human-readable: 'this host' or 'namespace NAME'. */
  readonly label: string
  /** Starts watching (idempotent) and resolves with the facts in force. */
  start(): Promise<HostFacts>
  /** The facts in force now. */
  current(): HostFacts
  /** `fn` runs after every change of the facts, once current() returns the new ones. */
  subscribe(fn: () => void): void
  /** Synchronous kernel checks; null where the view has none (the snapshot guards still apply). */
  readonly live: LiveChecks | null
  listening(): Promise<ListeningPorts>
  /** The namespace's ephemeral port range (net.ipv4.ip_local_port_range); null when unknown. */
  localPortRange(): [number, number] | null
  /** The guard facts in force, for the control socket. */
  inForce(): GuardFactsInForce
  stats(): HostWatchStats | null
  /** Where warnings go (a live check that failed, an unreadable resolver file). */
  setWarn(fn: (message: string) => void): void
  /**
   * The local ports whose TCP sockets make no peer: the tripwire listeners'. A forged
   * SYN to one leaves a SYN_RECV socket for the forged address, and a scanner's
   * parallel connects sit there too; neither is a session to protect.
   */
  ignorePeersOn(ports: () => readonly number[]): void
  /** Stops watching. Idempotent. */
  close(): void
}

const SOCKET_FILES = {
  tcp: '/proc/net/tcp',
  tcp6: '/proc/net/tcp6',
  udp: '/proc/net/udp',
  udp6: '/proc/net/udp6',
  sctp: '/proc/net/sctp/eps',
} as const

async function readTables(read: (path: string) => Promise<string | null>): Promise<SocketTables> {
  const [tcp, tcp6, udp, udp6, sctp] = await Promise.all(Object.values(SOCKET_FILES).map(read))
  return { tcp: tcp ?? null, tcp6: tcp6 ?? null, udp: udp ?? null, udp6: udp6 ?? null, sctp: sctp ?? null }
}

/** This process's own network namespace. */
export function localHostView(): HostView {
  const read = async (path: string): Promise<string | null> => {
    try {
      return await readFile(path, 'utf8')
    } catch {
      return null
    }
  }
  return new HostWatch({ label: 'this host', listening: async () => listeningPorts(await readTables(read), endianness()) })
}

/** Another network namespace, by name (`ip netns list`). */
export function netnsHostView(ns: string, run: RunFn = defaultRun): HostView {
  const read = async (path: string): Promise<string | null> => {
    const r = await run('ip', ['netns', 'exec', ns, 'cat', path])
    return r.code === 0 ? r.stdout : null
  }
  return new HostWatch({ netns: ns, label: `namespace ${ns}`, listening: async () => listeningPorts(await readTables(read), endianness()) })
}
