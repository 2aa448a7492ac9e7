/**
 * The HitRecord layout contract between the compiled addon and the TypeScript decoder:
 * the size and every field offset the real addon exports (from the static_asserted
 * struct in native/hit_record.h) must equal lib/decode.ts's table, field for field, with
 * no field missing on either side. loadBinding() already refuses a mismatching binary;
 * this test says which side drifted when someone edits one of them. Needs the built
 * addon (npm run build:native), not root.
 */
import { describe, expect, test } from 'vitest'
import { checkLayout, loadBinding } from '../../lib/binding.js'
import { HIT_RECORD_LAYOUT, HIT_RECORD_SIZE } from '../../lib/decode.js'

describe('native HitRecord layout', () => {
  const binding = loadBinding()

  test('record size matches the decoder', () => {
    expect(binding.hitRecordSize).toBe(HIT_RECORD_SIZE)
    expect(binding.hitRecordSize).toBe(96)
  })

  test('every field offset matches, and no field is missing on either side', () => {
    expect({ ...binding.hitRecordLayout }).toEqual({ ...HIT_RECORD_LAYOUT })
    expect(Object.keys(binding.hitRecordLayout).sort()).toEqual(Object.keys(HIT_RECORD_LAYOUT).sort())
  })

  test('fields are in declaration order, non-overlapping and inside the record', () => {
    // Field widths come from the C++ struct comments (native/hit_record.h), not from code.
    const widths: Record<keyof typeof HIT_RECORD_LAYOUT, number> = {
      tsNs: 8, src: 16, dst: 16, srcPort: 2, dstPort: 2, ifindex: 4, family: 1, proto: 1,
      kind: 1, tcpFlags: 1, ttl: 1, sctpChunk: 1, vlan: 2, flags: 2, wireLen: 2, ipId: 4,
      srcMac: 6, tcpWindow: 2, tcpMss: 2, tcpWscale: 1, tcpOptCount: 1, tcpOpts: 12, tcpTsVal: 4, reserved: 4,
    }
    const BYTE_ARRAYS = new Set(['src', 'dst', 'srcMac', 'tcpOpts', 'reserved'])
    const fields = Object.entries(binding.hitRecordLayout).sort((a, b) => a[1] - b[1])
    let end = 0
    for (const [name, offset] of fields) {
      const width = widths[name as keyof typeof widths]
      expect(width, `width of ${name}`).toBeDefined()
      expect(offset, `${name} overlaps the previous field`).toBeGreaterThanOrEqual(end)
      // Byte arrays (addresses, the MAC, option kinds, reserved bytes) need no alignment.
      const align = BYTE_ARRAYS.has(name) ? 1 : Math.min(width ?? 1, 8)
      expect(offset % align, `${name} is naturally aligned`).toBe(0)
      end = offset + (width ?? 0)
    }
    expect(end).toBe(binding.hitRecordSize)
  })

  test('checkLayout accepts the real addon', () => {
    expect(() => checkLayout(binding)).not.toThrow()
  })
})
