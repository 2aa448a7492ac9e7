/**
 * The one file in lib/policy that does I/O: it reads what the host says about
 * itself (/proc/net/*, /etc/resolv.conf, systemd-resolved's upstream list,
 * os.networkInterfaces()) and hands the text to the pure parsers in guards.ts,
 * returning a GuardSnapshot for `Guards.update()`. Missing files are normal (no IPv6,
 * no systemd-resolved) and become warnings, never exceptions: a refresh that finds
 * less must still succeed. Runs on the main thread; each read is small.
 */

import { readFile } from 'node:fs/promises'
import { endianness, networkInterfaces } from 'node:os'
import { join } from 'node:path'
import {
  type Endianness,
  type GuardSnapshot,
  type InterfaceAddress,
  parseEstablishedPeers,
  parseIfInet6,
  parseNetworkInterfaces,
  parseProcNetIpv6Route,
  parseProcNetRoute,
  parseResolvConf,
} from '../policy/guards.js'

export interface HostFactsOptions {
  /** Prefix for every path read (a fixture tree in tests); default '/'. */
  root?: string
  /** resolv.conf files to read; default /etc/resolv.conf and systemd-resolved's upstream list. */
  resolvConf?: readonly string[]
  /** Replaces os.networkInterfaces() (tests). */
  interfaces?: () => ReturnType<typeof networkInterfaces>
}

export interface HostFacts {
  /** Every category except `allowlist`, which is the operator's, not the host's. */
  snapshot: Required<Omit<GuardSnapshot, 'allowlist' | 'self'>>
  /** Files that could not be read, with the reason. */
  warnings: string[]
}

// systemd-resolved puts its stub (127.0.0.53) in /etc/resolv.conf; the real
// upstreams, which the host talks to and must not block, are in this file.
const RESOLVED_UPSTREAMS = '/run/systemd/resolve/resolv.conf'

export async function readHostFacts(options: HostFactsOptions = {}): Promise<HostFacts> {
  const root = options.root ?? '/'
  const order: Endianness = endianness()
  const warnings: string[] = []
  const read = async (path: string): Promise<string | null> => {
    try {
      return await readFile(join(root, path), 'utf8')
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'error'
      // A missing upstream list just means systemd-resolved is not in use.
      if (!(code === 'ENOENT' && path === RESOLVED_UPSTREAMS)) warnings.push(`${path}: ${code}`)
      return null
    }
  }
  const resolvFiles = options.resolvConf ?? ['/etc/resolv.conf', RESOLVED_UPSTREAMS]
  const [route, route6, tcp, tcp6, ifInet6, ...resolv] = await Promise.all([
    read('/proc/net/route'),
    read('/proc/net/ipv6_route'),
    read('/proc/net/tcp'),
    read('/proc/net/tcp6'),
    read('/proc/net/if_inet6'),
    ...resolvFiles.map(read),
  ])

  const interfaces: InterfaceAddress[] = parseNetworkInterfaces((options.interfaces ?? networkInterfaces)())
  // if_inet6 also lists tentative and deprecated addresses, which Node leaves out.
  if (ifInet6 !== null) interfaces.push(...parseIfInet6(ifInet6))

  return {
    snapshot: {
      interfaces,
      gateways: [
        ...(route === null ? [] : parseProcNetRoute(route, order)),
        ...(route6 === null ? [] : parseProcNetIpv6Route(route6)),
      ],
      resolvers: [...new Set(resolv.flatMap((t) => (t === null ? [] : parseResolvConf(t))))],
      peers: [
        ...new Set([
          ...(tcp === null ? [] : parseEstablishedPeers(tcp, order)),
          ...(tcp6 === null ? [] : parseEstablishedPeers(tcp6, order)),
        ]),
      ],
    },
    warnings,
  }
}
