/**
 * Is a program installed? For tests that run outside tools (nmap, tcpdump, crowdsec,
 * ipset, iperf3) and skip loudly when one is missing. `name` is a fixed word from the
 * test, never input, and is checked to be one before it reaches `sh -c`.
 */
import { execFileSync } from 'node:child_process'

/** True when `command -v name` finds it on PATH. */
export function hasCommand(name: string): boolean {
  if (!/^[A-Za-z0-9._+-]+$/.test(name)) throw new RangeError(`not a program name: ${name}`)
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
