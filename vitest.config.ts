// Test runner configuration: every layer (unit, native, privileged, lifecycle) runs
// under one `npm test`. Privileged tests create their own namespaces with unique
// names, so files may run in parallel; forks keep a crashing addon from taking the
// runner with it.
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The state file's default directory is a scratch folder per test file (test/setup.ts).
    setupFiles: ['test/setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
})
