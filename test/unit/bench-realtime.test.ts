/**
 * bench/realtime.ts's RealtimeClock on scripted clocks: a true time that advances by
 * 100 ns per clock read, a whole-millisecond wall clock and a monotonic clock derived
 * from it, and a preemption (the process descheduled for 0.9 ms) placed right after a
 * read near a millisecond edge — what a loaded machine does to the anchor. The
 * expected error bounds come from that script, not from the clock under test.
 */
import { describe, expect, it } from 'vitest'
import { RealtimeClock } from '../../bench/realtime.js'

const EPOCH = 1_000_000
// Small enough that 100 ns steps are exact in a double (at 1.7e12 ms they would round away).
const STEP = 0.0001 // ms per clock read

/** True time in ms since the epoch; `preempt` adds a delay right after a read of `after` that lands within `within` ms before an edge. */
function scriptedClocks(preempt?: { after: 'wall' | 'mono'; within: number; delay: number; times: number }) {
  const s = { t: EPOCH + 0.3, left: preempt?.times ?? 0, lastRead: 0 }
  const read = (kind: 'wall' | 'mono'): number => {
    s.t += STEP
    const at = s.t
    s.lastRead = at
    if (preempt !== undefined && s.left > 0 && preempt.after === kind && Math.ceil(at) - at < preempt.within) {
      s.left--
      s.t += preempt.delay
    }
    return at
  }
  return {
    state: s,
    clocks: { wall: () => Math.floor(read('wall')), mono: () => read('mono') - EPOCH + 1000 },
    /** The clock's error: what it says minus the true time of the read it made. */
    error: (clock: RealtimeClock): number => clock.now() - s.lastRead,
  }
}

describe('RealtimeClock', () => {
  it('places the wall clock on the monotonic one to within a microsecond when nothing interferes', () => {
    const c = scriptedClocks()
    const clock = new RealtimeClock(c.clocks)
    expect(Math.abs(c.error(clock))).toBeLessThan(0.001)
    expect(clock.uncertaintyMs).toBeLessThan(0.001)
  })

  for (const after of ['wall', 'mono'] as const) {
    it(`a preemption right after a ${after} read near the edge costs a retry, not most of a millisecond`, () => {
      const c = scriptedClocks({ after, within: 0.005, delay: 0.9, times: 1 })
      const clock = new RealtimeClock(c.clocks)
      expect(c.state.left, 'the script did preempt the anchor').toBe(0)
      expect(Math.abs(c.error(clock))).toBeLessThan(0.001)
      expect(clock.uncertaintyMs).toBeLessThan(0.001)
    })
  }

  it('when every attempt is preempted, the error stays within the uncertainty it reports', () => {
    const c = scriptedClocks({ after: 'wall', within: 0.005, delay: 0.9, times: Number.POSITIVE_INFINITY })
    const clock = new RealtimeClock(c.clocks)
    expect(clock.uncertaintyMs).toBeGreaterThan(0.4)
    expect(Math.abs(c.error(clock))).toBeLessThanOrEqual(clock.uncertaintyMs)
  })
})
