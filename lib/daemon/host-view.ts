/**
 * Where the daemon learns about the host it protects: guard facts (own addresses,
 * gateways, resolvers, established peers) and the listening-socket table. The local
 * view reads this process's namespace (readHostFacts, /proc/net/*); the namespace
 * view reads another network namespace (a container's, or selftest's) by running
 * `ip -n NS -j addr` and `ip netns exec NS cat /proc/net/FILE`, because /proc/net
 * always shows the reader's own namespace. Both feed the same pure parsers, and
 * neither throws on a missing file: a refresh that finds less still succeeds.
 */
import { readFile } from 'node:fs/promises'
import { endianness } from 'node:os'
import type { ListeningPorts, SocketTables } from '../listening.js'
import { listeningPorts } from '../listening.js'
import {
  type InterfaceAddress,
  parseEstablishedPeers,
  parseIfInet6,
  parseIpAddrJson,
  parseProcNetIpv6Route,
  parseProcNetRoute,
  parseResolvConf,
} from '../policy/guards.js'
import { type HostFacts, readHostFacts } from './host-facts.js'
import { defaultRun } from '../responders/run.js'
import type { RunFn } from '../responders/types.js'

export interface HostView {
  /** Human-readable: 'this host' or 'namespace NAME'. */
  readonly label: string
  facts(): Promise<HostFacts>
  listening(): Promise<ListeningPorts>
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
  return {
    label: 'this host',
    facts: () => readHostFacts(),
    listening: async () => listeningPorts(await readTables(read), endianness()),
  }
}

/** Another network namespace, by name (`ip netns list`). */
export function netnsHostView(ns: string, run: RunFn = defaultRun): HostView {
  const read = async (path: string): Promise<string | null> => {
    const r = await run('ip', ['netns', 'exec', ns, 'cat', path])
    return r.code === 0 ? r.stdout : null
  }
  const order = endianness()
  return {
    label: `namespace ${ns}`,
    listening: async () => listeningPorts(await readTables(read), order),
    facts: async () => {
      const warnings: string[] = []
      const need = async (path: string): Promise<string | null> => {
        const text = await read(path)
        if (text === null) warnings.push(`${path} in ${ns}: unreadable`)
        return text
      }
      // `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf when
      // it exists, so `cat` in the namespace reads the resolver list that applies there.
      const [addrJson, route, route6, tcp, tcp6, ifInet6, resolv] = await Promise.all([
        run('ip', ['-n', ns, '-j', 'addr', 'show']),
        need('/proc/net/route'),
        need('/proc/net/ipv6_route'),
        need('/proc/net/tcp'),
        need('/proc/net/tcp6'),
        read('/proc/net/if_inet6'),
        read('/etc/resolv.conf'),
      ])
      let interfaces: InterfaceAddress[] = []
      if (addrJson.code === 0) {
        try {
          interfaces = parseIpAddrJson(addrJson.stdout)
        } catch (e) {
          warnings.push(`ip -n ${ns} -j addr: ${(e as Error).message}`)
        }
      } else {
        warnings.push(`ip -n ${ns} -j addr: exit ${addrJson.code}`)
      }
      if (ifInet6 !== null) interfaces.push(...parseIfInet6(ifInet6))
      return {
        snapshot: {
          interfaces,
          gateways: [...(route === null ? [] : parseProcNetRoute(route, order)), ...(route6 === null ? [] : parseProcNetIpv6Route(route6))],
          resolvers: resolv === null ? [] : parseResolvConf(resolv),
          peers: [
            ...new Set([...(tcp === null ? [] : parseEstablishedPeers(tcp, order)), ...(tcp6 === null ? [] : parseEstablishedPeers(tcp6, order))]),
          ],
        },
        warnings,
      }
    },
  }
}
