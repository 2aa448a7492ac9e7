/**
 * Rtnetlink messages crafted byte by byte from the layouts in rtnetlink(7) and the uapi
 * headers, for the native parser tests (never from the parsers under test): attribute
 * and message framing, the fixed headers the tests need, address literals as bytes.
 */

export function pad4(b: Buffer): Buffer {
  const n = (4 - (b.length % 4)) % 4
  return n === 0 ? b : Buffer.concat([b, Buffer.alloc(n)])
}

export function attr(type: number, data: Buffer): Buffer {
  const h = Buffer.alloc(4)
  h.writeUInt16LE(4 + data.length, 0)
  h.writeUInt16LE(type, 2)
  return pad4(Buffer.concat([h, data]))
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(v, 0)
  return b
}

export function v4(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number))
}

export function v6(text: string): Buffer {
  const [head = '', tail = ''] = text.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === '' ? [] : tail.split(':')
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  const b = Buffer.alloc(16)
  groups.forEach((g, i) => b.writeUInt16BE(Number.parseInt(g, 16), i * 2))
  return b
}

export function message(type: number, fixed: Buffer, attrs: Buffer[]): Buffer {
  const body = Buffer.concat([pad4(fixed), ...attrs])
  const h = Buffer.alloc(16)
  h.writeUInt32LE(16 + body.length, 0)
  h.writeUInt16LE(type, 4)
  h.writeUInt16LE(0x2, 6) // NLM_F_MULTI, as in a dump
  return Buffer.concat([h, body])
}

export function rtmsg(family: number, table: number, type = 1): Buffer {
  const b = Buffer.alloc(12)
  b.writeUInt8(family, 0)
  b.writeUInt8(table, 4)
  b.writeUInt8(type, 7)
  return b
}

