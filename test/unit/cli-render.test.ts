/**
 * The terminal rendering: one line per event, carrying what an operator needs
 * (who, verified or spoofable, what they touched, what was done and why), without
 * colour when colour is off.
 */
import { describe, expect, it } from 'vitest'
import { NO_COLOR, renderEvent, renderStatus, table } from '../../lib/cli/render.js'
import { decisionEvent, errorEvent, operatorEvent, type DecisionEvent } from '../../lib/daemon/events.js'
import { DEFAULT_POLICY } from '../../lib/policy/config.js'
import { type Decision, REASON_CODES, type ReasonCode } from '../../lib/policy/decision.js'

const base: Decision = {
  action: 'block',
  reason: 'blocked',
  src: '198.18.0.2',
  family: 4,
  verified: true,
  attribution: 'verified',
  evidence: [],
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

describe('status and operator events', () => {
  it('renders a status document as labelled lines an operator can scan', () => {
    const now = Date.UTC(2025, 0, 1, 12, 0, 30)
    const text = renderStatus(
      {
        version: '1.2.3',
        pid: 4242,
        startedAt: '2025-01-01T10:00:00.000Z',
        uptimeMs: 7_230_000,
        control: '/run/portanoia/portanoia.sock',
        tripwires: { ports: '2222/tcp,1900/udp', count: 2, listeners: 1, unused: null, interface: 'any', host: 'this host' },
        policy: { ...DEFAULT_POLICY },
        breaker: { state: 'open', cause: 'rate-capped', trips: 1, spoofableBlocksLastMinute: 60, suppressedHits: 7 },
        counters: {
          hits: 99,
          trackedSources: 5,
          evictions: 0,
          decisions: { ...Object.fromEntries(REASON_CODES.map((r) => [r, 0])), blocked: 3, 'guard:peer': 1 } as Record<ReasonCode, number>,
          sensor: { kernelDrops: 2, ringDrops: 0 },
          firewall: { requested: 3, batches: 2, applied: 3, failed: 0 },
          droppedEvents: 0,
        },
        blocks: {
          kernel: { total: 4, byOrigin: { local: 3, operator: 1, fleet: 0, adopted: 0, unknown: 0 }, byReason: { verified: 3, operator: 1 } },
          policy: { verified: 4, spoofable: 0 },
        },
        guards: {
          counts: { special: 1, self: 2, gateway: 1, resolver: 1, peer: 3, allowlist: 1 },
          factsAt: '2025-01-01T12:00:00.000Z',
          generation: 7,
          self: ['198.18.0.1/24'],
          gateways: ['198.18.0.254'],
          resolvers: ['198.18.0.53'],
          allowlist: ['10.0.0.0/8'],
        },
        fleet: null,
        reload: { applied: 1, refused: 0, last: { at: '2025-01-01T12:00:00.000Z', outcome: 'applied', changed: ['blockTtl'] } },
      },
      NO_COLOR,
      now,
    )
    expect(text.split('\n')).toEqual([
      'daemon       portanoia 1.2.3, pid 4242, up 2h30s, control /run/portanoia/portanoia.sock',
      'tripwires    2222/tcp,1900/udp (2 ports, 1 listener) on any, this host',
      'policy       block verified, ttl 1h verified / 5m spoofable, threshold 1 in 1m, caps 60/min and 1000 active',
      'breaker      open (rate-capped), 1 trip, 60 spoofable block(s) in the last minute, 7 hit(s) report-only',
      'counters     99 hits, 5 sources tracked, kernel drops 2, ring drops 0; firewall 2 batch(es), 3 applied, 0 failed',
      'decisions    blocked 3, guard:peer 1',
      'blocks       4 in the kernel: by origin local 3, operator 1; by reason verified 3, operator 1 (policy: 4 verified, 0 spoofable)',
      'guards       special 1, self 2, gateway 1, resolver 1, peer 3, allowlist 1; facts from the kernel 30s ago',
      '  gateways   198.18.0.254',
      '  resolvers  198.18.0.53',
      '  allowlist  10.0.0.0/8',
      'fleet        off',
      'reload       1 applied, 0 refused; last 30s ago applied (blockTtl)',
    ])
  })

  it('renders a refused reload with what needs a restart', () => {
    const e = operatorEvent({ op: 'reload', outcome: 'refused', changed: ['blockTtl'], restart: ['backend'], code: 'PORTANOIA_RELOAD_REFUSED', message: 'changed fields that need a restart: backend', at: Date.UTC(2025, 0, 1, 12) })
    expect(renderEvent(e)).toMatch(/OPERATOR reload refused changed: blockTtl needs a restart: backend PORTANOIA_RELOAD_REFUSED: changed fields that need a restart: backend$/)
  })
})
