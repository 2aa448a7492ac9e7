/**
 * Runs in every test worker before each test file: points the state file's default
 * directory ($STATE_DIRECTORY, lib/daemon/state-file.ts) at a scratch path of its
 * own, so a daemon started without --state — in this process or a child it spawns
 * with process.env — never writes the host's /var/lib/portanoia. The path is only
 * named here (a state file makes its directory when it first writes), so a file
 * whose daemons keep no state leaves nothing behind; it is removed after the file's
 * tests.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll } from 'vitest'
import { removeScratch, SCRATCH_ROOT } from '../lib/lab/scratch.js'

const dir = join(SCRATCH_ROOT, `state-${process.pid}-${randomBytes(4).toString('hex')}`)
process.env.STATE_DIRECTORY = dir

afterAll(async () => {
  await removeScratch(dir)
})
