/**
 * The terminal rendering: one line per event, carrying what an operator needs
 * (who, verified or spoofable, what they touched, what was done and why), without
 * colour when colour is off.
 */
import { describe, expect, it } from 'vitest'
import { renderEvent, table } from '../../lib/cli/render.js'
import { decisionEvent, errorEvent, type DecisionEvent } from '../../lib/daemon/events.js'
import type { Decision } from '../../lib/policy/decision.js'

const base: Decision = {
  action: 'block',
  reason: 'blocked',
  src: '198.18.0.2',
  family: 4,
  verified: true,
  ttlMs: 3_600_000,
  expiresAt: Date.UTC(2025, 0, 1, 13),
  ports: ['2222/tcp', '2323/tcp'],
  portsTruncated: false,
  kinds: ['connect'],
  count: 3,
  verifiedCount: 3,
  firstSeen: Date.UTC(2025, 0, 1, 12),
  lastSeen: Date.UTC(2025, 0, 1, 12),
  windowStart: Date.UTC(2025, 0, 1, 12),
  windowMs: 60_000,
  time: Date.UTC(2025, 0, 1, 12),
  final: false,
  trigger: { dst: '198.18.0.1', dstPort: 2222, srcPort: 40000, proto: 'tcp', kind: 'connect', interface: 'pns0' },
}

function line(d: Partial<Decision>): string {
  // Strip the local-time clock so the test does not depend on the time zone.
  return renderEvent(decisionEvent({ ...base, ...d })).replace(/^\d\d:\d\d:\d\d\.\d{3} /, '')
}

describe('pretty lines', () => {
  it('renders a block', () => {
    expect(line({})).toBe('BLOCK   198.18.0.2 verified connect → 2222/tcp,2323/tcp 3 hits blocked for 1h')
  })
  it('renders guards, reports, dry-run and the breaker', () => {
    expect(line({ action: 'none', reason: 'guard:gateway', verified: false, kinds: ['syn'], count: 1 })).toBe(
      'GUARD   198.18.0.2 spoofable syn → 2222/tcp,2323/tcp 1 hit guard:gateway (never blocked)',
    )
    expect(line({ action: 'report', reason: 'spoofable-report-only', verified: false, kinds: ['syn', 'fin'] })).toBe(
      'REPORT  198.18.0.2 spoofable syn,fin → 2222/tcp,2323/tcp 3 hits spoofable-report-only',
    )
    expect(line({ action: 'report', reason: 'dry-run' })).toMatch(/^WOULD {3}198.18.0.2 verified .* block for 1h \(dry-run\)$/)
    expect(line({ action: 'report', reason: 'rate-capped', breaker: 'open', verified: false })).toMatch(/^CAPPED .*report-only until the rate falls$/)
    expect(line({ action: 'none', reason: 'rate-capped', breaker: 'closed', suppressed: { sources: 9000, hits: 9500 } })).toBe(
      'RESUMED rate-capped breaker closed after 9000 source(s), 9500 hit(s) report-only',
    )
    expect(line({ action: 'none', reason: 'already-blocked', final: true })).toMatch(/already-blocked \(window summary\)$/)
  })
  it('renders errors with their hint', () => {
    const e = errorEvent({ responder: 'nftables', error: Object.assign(new Error('nft exited with 1'), { code: 'PORTANOIA_NFT_FAILED' }), addresses: ['198.18.0.2', '198.18.0.3'] })
    expect(renderEvent(e).replace(/^\S+ /, '')).toBe('ERROR   nftables PORTANOIA_NFT_FAILED: nft exited with 1 [2 address(es)]')
  })
  it('a decision line is one line', () => {
    const e: DecisionEvent = decisionEvent(base)
    expect(renderEvent(e)).not.toContain('\n')
  })
  it('pads tables', () => {
    expect(table(['A', 'BB'], [['xxx', 'y']])).toBe('A    BB\nxxx  y')
  })
})
