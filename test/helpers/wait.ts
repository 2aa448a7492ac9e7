/**
 * Polling for a condition in a test: `waitFor` resolves with the first value `fn`
 * returns other than undefined (a decision found, an element present) and throws,
 * naming what it waited for, when none came in time. The time limit is a timeout,
 * not a claim about speed: generous, because a loaded machine is slow.
 */
export async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
