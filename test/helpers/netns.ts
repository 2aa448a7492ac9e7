/**
 * Test networks: a thin wrapper over lib/lab/netns.ts that keeps the tests' names
 * (createTestNet, Host, TestNet, stop) and their namespace prefix `pnt-`. The core —
 * unique names, 198.18.0.0/15 + fd52:43dd::/32 addressing, teardown on destroy()
 * and on exit — lives in the library because `portanoia selftest` needs it too.
 */
import { createNetnsNet, type ExecResult, type NetnsHost, type NetnsLink, type NetnsNet, stopChild } from '../../lib/lab/netns.js'

export const IS_ROOT = process.getuid?.() === 0

/** Call at the top of a privileged test file: says loudly why its tests are skipped. */
export function warnIfNotRoot(file: string): void {
  if (!IS_ROOT) {
    console.warn(`\n*** SKIPPED: ${file} needs root (network namespaces, AF_PACKET). Run \`sudo npm test\` to run it. ***\n`)
  }
}

export type { ExecResult }
export type Host = NetnsHost
export type Link = NetnsLink
export type TestNet = NetnsNet

/**
 * Creates the sensor namespace and `peers` peer namespaces, each linked to the
 * sensor by its own veth pair. With `defaultRoute`, the sensor routes everything
 * via peer 0 (which then is its gateway, for guard tests). `prefix` (default 'pnt-')
 * names the namespaces, e.g. 'pnperf-' for benchmarks.
 */
export function createTestNet(options: { peers?: number; defaultRoute?: boolean; prefix?: string } = {}): Promise<TestNet> {
  return createNetnsNet({ ...options, prefix: options.prefix ?? 'pnt-' })
}

/** Ends a process this test started, by PID, and waits for it. */
export const stop = stopChild
