/**
 * The errno names in the addon's errors (`code: 'EPERM'`) come from its own table
 * (native/errno_name.cc), not glibc's strerrorname_np, which needs glibc 2.32 and does
 * not exist on musl. The spec is Node's own table (os.constants.errno) and Linux's
 * errno numbering (asm-generic/errno-base.h and errno.h: 1–133, 41 and 58 unused):
 * every errno Node names gets a name that Node maps back to the same number, a number
 * with aliases gets the canonical one, and a number no errno has keeps the 'E<n>'
 * fallback. Needs the built addon, not root.
 */
import { constants } from 'node:os'
import { describe, expect, test } from 'vitest'
import { loadBinding } from '../../lib/binding.js'

describe('errno names in native errors', () => {
  const binding = loadBinding()
  const byName = constants.errno as Record<string, number>

  test('every errno Node knows is named, with a name Node maps to the same number', () => {
    const wrong = Object.entries(byName)
      .map(([name, errno]) => ({ name, errno, code: binding.errnoCode(errno) }))
      .filter(({ errno, code }) => byName[code] !== errno)
    expect(wrong).toEqual([])
  })

  test('every Linux errno number has a name', () => {
    for (let errno = 1; errno <= 133; errno++) {
      if (errno === 41 || errno === 58) continue
      expect(binding.errnoCode(errno), `errno ${errno}`).toMatch(/^E[A-Z0-9]+$/)
      expect(binding.errnoCode(errno), `errno ${errno}`).not.toMatch(/^E[0-9]+$/)
    }
  })

  test('names are the canonical ones, as strerrorname_np gives them', () => {
    expect(binding.errnoCode(1)).toBe('EPERM')
    expect(binding.errnoCode(11)).toBe('EAGAIN')
    expect(binding.errnoCode(19)).toBe('ENODEV')
    expect(binding.errnoCode(35)).toBe('EDEADLK')
    expect(binding.errnoCode(95)).toBe('EOPNOTSUPP')
    expect(binding.errnoCode(98)).toBe('EADDRINUSE')
    expect(binding.errnoCode(133)).toBe('EHWPOISON')
  })

  test('a number that is no errno keeps the numeric fallback', () => {
    expect(binding.errnoCode(41)).toBe('E41')
    expect(binding.errnoCode(4000)).toBe('E4000')
  })
})
