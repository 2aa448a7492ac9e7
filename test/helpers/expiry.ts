/**
 * Checks a block's time left against what can have elapsed, not against a fixed
 * margin: on a loaded machine seconds pass between a block and the listing that
 * reads it back. `since` is a Date.now() taken before the block was made; the kernel
 * reports whole seconds, hence one second of slack.
 */
import { expect } from 'vitest'

export function expectTimeLeft(leftMs: number | undefined, ttlMs: number, since: number): void {
  expect(leftMs).toBeDefined()
  expect(leftMs!).toBeLessThanOrEqual(ttlMs)
  expect(leftMs!).toBeGreaterThanOrEqual(ttlMs - (Date.now() - since) - 1000)
}
