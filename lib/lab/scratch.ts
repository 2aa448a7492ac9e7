/**
 * Scratch folders for programs that tests and benchmarks build or write and then run
 * (sanitizer and baseline builds, a script an exec responder starts, the npm `cap`
 * receiver): under `node_modules/.cache/portanoia-scratch/` of the package, on the
 * file system the addon itself is loaded from, so a /tmp mounted noexec does not
 * stop them. Each call makes a fresh folder; the caller removes it (removeScratch)
 * on every path out. Runs on the calling thread; touches nothing else.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { PACKAGE_ROOT } from '../binding.js'

/** Where scratch folders live: beside the build, never under the OS temp folder. */
export const SCRATCH_ROOT = join(PACKAGE_ROOT, 'node_modules', '.cache', 'portanoia-scratch')

/** A new, empty folder `<SCRATCH_ROOT>/<prefix>XXXXXX` whose files may be executed. */
export async function scratchDir(prefix: string): Promise<string> {
  await mkdir(SCRATCH_ROOT, { recursive: true })
  return await mkdtemp(join(SCRATCH_ROOT, prefix))
}

/** Removes a folder scratchDir made (and whatever is in it); fine if it is gone. */
export async function removeScratch(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 5 })
}
