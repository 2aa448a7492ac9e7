/**
 * Runs in every test worker before each test file: points the state file's default
 * directory ($STATE_DIRECTORY, lib/daemon/state-file.ts) at a scratch folder of its
 * own, so a daemon started without --state — in this process or a child it spawns
 * with process.env — never writes the host's /var/lib/portanoia. The folder is
 * removed after the file's tests.
 */
import { afterAll } from 'vitest'
import { removeScratch, scratchDir } from '../lib/lab/scratch.js'

const dir = await scratchDir('state-')
process.env.STATE_DIRECTORY = dir

afterAll(async () => {
  await removeScratch(dir)
})
