/**
 * Which scanning tool sent a probe, from the fingerprint its hand-built packets carry.
 * Pure and allocation-free: scan tracking (scans.ts) asks it per hit and keeps votes.
 * A guess, never evidence: any tool can be told to send other values, and a probe that
 * matches nothing is simply not guessed.
 *
 * The fingerprints were read from the packets of the tools installed here (nmap 7.93,
 * masscan 1.3.2, zmap 2.1.1, captured with tcpdump between namespaces) and checked
 * against their public sources:
 * - nmap's raw TCP probes (-sS -sF -sN -sX -sA -sM): window 1024, a TTL drawn per packet
 *   from 37..59, a random IP ID; the SYN carries exactly one option, MSS 1460, the other
 *   kinds none. nmap -sT goes through the OS stack and has no fingerprint.
 * - masscan: SYN, window 1024, TTL 255, no options (later versions add MSS 1460); its IP ID
 *   is (destination address ^ destination port ^ sequence number) & 0xffff, but the
 *   HitRecord does not carry the sequence number, so that relation is not checked.
 * - zmap: SYN, IP ID 54321, TTL 255 (2.1.1: window 65535, no options).
 * The TTL arrives reduced by the hops on the way: an initial 255 is told from nmap's
 * ≤ 59 and from the common OS defaults (64, 128) by arriving above 128.
 */

import { type ScanKind, TCP_OPTIONS } from '../types.js'

export const SCAN_TOOLS = ['nmap', 'masscan', 'zmap'] as const
export type ScanTool = (typeof SCAN_TOOLS)[number]

/** Tool codes: index into SCAN_TOOLS + 1; 0 is "no guess". */
export const TOOL_NONE = 0
export const TOOL_NMAP = 1
export const TOOL_MASSCAN = 2
export const TOOL_ZMAP = 3


const ZMAP_IP_ID = 54321
const NMAP_MAX_TTL = 59
const HIGH_TTL = 128
const WINDOW_1024 = 1024

/**
 * The tool code of one probe. `tcpShape`: the hit's
 * TCP_SHAPE (window + 65,536 × options class, 0 when not TCP); `ttl` as it arrived.
 */
export function toolOf(kind: ScanKind, tcpShape: number, ttl: number, ipId: number): number {
  if (tcpShape === 0) return TOOL_NONE
  const window = tcpShape & 0xffff
  const options = tcpShape >>> 16
  if (kind === 'syn') {
    if (ttl > HIGH_TTL) {
      if (ipId === ZMAP_IP_ID) return TOOL_ZMAP
      if (window === WINDOW_1024 && (options === TCP_OPTIONS.none || options === TCP_OPTIONS.mss1460)) return TOOL_MASSCAN
      return TOOL_NONE
    }
    return window === WINDOW_1024 && options === TCP_OPTIONS.mss1460 && ttl <= NMAP_MAX_TTL ? TOOL_NMAP : TOOL_NONE
  }
  // nmap's other raw probes: -sF -sN -sX -sA/-sW -sM.
  if (kind === 'fin' || kind === 'null' || kind === 'xmas' || kind === 'ack' || kind === 'maimon') return window === WINDOW_1024 && options === TCP_OPTIONS.none && ttl <= NMAP_MAX_TTL ? TOOL_NMAP : TOOL_NONE
  return TOOL_NONE
}

/** The name of a tool code, undefined for none. */
export function toolName(code: number): ScanTool | undefined {
  return code > 0 && code <= SCAN_TOOLS.length ? SCAN_TOOLS[code - 1] : undefined
}
