/**
 * The package's version, read once from its own package.json (never a second copy
 * in code): `portanoia --version` prints it and `portanoia status` reports the
 * running daemon's, so an operator sees whether a restart is due after an upgrade.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PACKAGE_ROOT } from './binding.js'

export const VERSION: string = (() => {
  const pkg: unknown = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8'))
  const v = typeof pkg === 'object' && pkg !== null ? (pkg as { version?: unknown }).version : undefined
  return typeof v === 'string' ? v : 'unknown'
})()
