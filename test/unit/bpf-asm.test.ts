/**
 * Unit tests for lib/bpf/asm.ts and lib/bpf/vm.ts: opcode encodings against the
 * values the kernel headers define (as `tcpdump -dd` prints them), label
 * resolution, trampolines for far branches (checked by running the VM down the far
 * path), the assemble → decompile → assemble round trip, every refusal the kernel
 * would otherwise answer with EINVAL, and the VM's load/ALU semantics.
 */

import { describe, expect, test } from 'vitest'
import {
  BPF_MAXINSNS,
  SKF_AD_HATYPE,
  SKF_AD_IFINDEX,
  SKF_AD_OFF,
  SKF_AD_PKTTYPE,
  SKF_AD_PROTOCOL,
  SKF_AD_VLAN_TAG,
  SKF_AD_VLAN_TAG_PRESENT,
  SKF_LL_OFF,
  SKF_NET_OFF,
  ad,
  assemble,
  decode,
  decompile,
  disasm,
  ll,
  net,
} from '../../lib/bpf/asm.js'
import type { Insn } from '../../lib/bpf/asm.js'
import { contextFromFrame, contextFromPacket, runFilter } from '../../lib/bpf/vm.js'
import type { FilterContext } from '../../lib/bpf/vm.js'
import { isPortanoiaError } from '../../lib/errors.js'

const ctx = (data: number[], extra: Partial<FilterContext> = {}): FilterContext => ({
  data: Uint8Array.from(data),
  netOffset: 0,
  protocol: 0x0800,
  pktType: 0,
  ...extra,
})

function badFilter(f: () => unknown, message: RegExp): void {
  try {
    f()
  } catch (e) {
    expect(isPortanoiaError(e, 'PORTANOIA_BAD_FILTER')).toBe(true)
    expect((e as Error).message).toMatch(message)
    return
  }
  throw new Error('expected PORTANOIA_BAD_FILTER')
}

describe('encoding', () => {
  test('constants', () => {
    expect(SKF_AD_OFF >>> 0).toBe(0xfffff000)
    expect(SKF_NET_OFF >>> 0).toBe(0xfff00000)
    expect(SKF_LL_OFF >>> 0).toBe(0xffe00000)
    expect([SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX, SKF_AD_HATYPE, SKF_AD_VLAN_TAG, SKF_AD_VLAN_TAG_PRESENT]).toEqual([0, 4, 8, 28, 44, 48])
    expect(BPF_MAXINSNS).toBe(4096)
  })

  test('opcodes match the kernel encodings, little-endian sock_filter', () => {
    const prog = assemble([
      { op: 'ldh', k: 12 }, // 0x28
      { op: 'jeq', k: 0x800, jf: 'out' }, // 0x15
      { op: 'ldb', k: 23 }, // 0x30
      { op: 'ld', k: ad(SKF_AD_PROTOCOL) }, // 0x20
      { op: 'ldh', k: 14, ind: true }, // 0x48
      { op: 'ldb', k: 14, ind: true }, // 0x50
      { op: 'ld', k: 14, ind: true }, // 0x40
      { op: 'ldxmsh', k: 14 }, // 0xb1
      { op: 'ldi', k: 7 }, // 0x00
      { op: 'ldxi', k: 7 }, // 0x01
      { op: 'st', k: 3 }, // 0x02
      { op: 'stx', k: 4 }, // 0x03
      { op: 'ldm', k: 3 }, // 0x60
      { op: 'ldxm', k: 4 }, // 0x61
      { op: 'ldlen' }, // 0x80
      { op: 'ldxlen' }, // 0x81
      { op: 'add', k: 1 }, // 0x04
      { op: 'add', x: true }, // 0x0c
      { op: 'sub', k: 1 }, // 0x14
      { op: 'mul', k: 3 }, // 0x24
      { op: 'div', k: 3 }, // 0x34
      { op: 'or', k: 1 }, // 0x44
      { op: 'and', k: 0xff }, // 0x54
      { op: 'lsh', k: 2 }, // 0x64
      { op: 'rsh', k: 2 }, // 0x74
      { op: 'neg' }, // 0x84
      { op: 'mod', x: true }, // 0x9c
      { op: 'xor', k: 5 }, // 0xa4
      { op: 'tax' }, // 0x07
      { op: 'txa' }, // 0x87
      { op: 'jgt', k: 1 }, // 0x25
      { op: 'jge', x: true }, // 0x3d
      { op: 'jset', k: 0x1fff }, // 0x45
      { op: 'ja', to: 'out' }, // 0x05
      { op: 'ret', a: true }, // 0x16
      { op: 'label', name: 'out' },
      { op: 'ret', k: 0xffff }, // 0x06
    ])
    const codes = decode(prog).map((f) => f.code)
    expect(codes).toEqual([
      0x28, 0x15, 0x30, 0x20, 0x48, 0x50, 0x40, 0xb1, 0x00, 0x01, 0x02, 0x03, 0x60, 0x61, 0x80, 0x81, 0x04, 0x0c, 0x14, 0x24, 0x34,
      0x44, 0x54, 0x64, 0x74, 0x84, 0x9c, 0xa4, 0x07, 0x87, 0x25, 0x3d, 0x45, 0x05, 0x16, 0x06,
    ])
    // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; } in host (little-endian) order
    expect(prog.subarray(8, 16).toString('hex')).toBe('1500' + '00' + '21' + '00080000')
    expect(prog.readUInt32LE(3 * 8 + 4)).toBe(0xfffff000)
    expect(prog.length).toBe(36 * 8)
  })

  test('labels: several on one instruction, omitted branches fall through', () => {
    const prog = assemble([
      { op: 'ldb', k: 0 },
      { op: 'jeq', k: 1, jt: 'one' },
      { op: 'jeq', k: 2, jt: 'two', jf: 'other' },
      { op: 'label', name: 'one' },
      { op: 'label', name: 'uno' },
      { op: 'ret', k: 1 },
      { op: 'label', name: 'two' },
      { op: 'ret', k: 2 },
      { op: 'label', name: 'other' },
      { op: 'ret', k: 3 },
    ])
    expect(decode(prog).map(({ jt, jf }) => [jt, jf])).toEqual([
      [0, 0],
      [1, 0],
      [1, 2],
      [0, 0],
      [0, 0],
      [0, 0],
    ])
    expect(runFilter(prog, ctx([1]))).toBe(1)
    expect(runFilter(prog, ctx([2]))).toBe(2)
    expect(runFilter(prog, ctx([9]))).toBe(3)
  })

  test('disasm', () => {
    const text = disasm(
      assemble([
        { op: 'ld', k: ad(SKF_AD_PKTTYPE) },
        { op: 'ldh', k: net(2), ind: true },
        { op: 'ldxmsh', k: net(0) },
        { op: 'ldb', k: ll(12) },
        { op: 'jeq', k: 0x800, jt: 'a', jf: 'b' },
        { op: 'label', name: 'a' },
        { op: 'ret', k: 512 },
        { op: 'label', name: 'b' },
        { op: 'ret', a: true },
      ]),
    )
    expect(text.split('\n')).toEqual([
      '(000) ld       [#type]',
      '(001) ldh      [x + net+2]',
      '(002) ldxb     4*([net+0]&0xf)',
      '(003) ldb      [ll+12]',
      '(004) jeq      #0x800       jt 5\tjf 6',
      '(005) ret      #0x200',
      '(006) ret      a',
    ])
  })
})

describe('trampolines', () => {
  /** A jump over `gap` filler instructions to `far`, with a near fall-through. */
  function farProgram(gap: number): Insn[] {
    const filler: Insn[] = []
    for (let i = 0; i < gap; i++) filler.push({ op: 'add', k: 1 })
    return [
      { op: 'ldb', k: 0 },
      { op: 'jeq', k: 7, jt: 'far' },
      { op: 'jeq', k: 8, jt: 'far', jf: 'near' },
      { op: 'label', name: 'near' },
      ...filler,
      { op: 'ret', a: true },
      { op: 'label', name: 'far' },
      { op: 'ret', k: 0xfa },
    ]
  }

  test('within 255: no trampoline', () => {
    const prog = assemble(farProgram(253))
    expect(prog.length / 8).toBe(3 + 253 + 2)
    expect(decode(prog)[1]?.jt).toBe(256 - 1)
  })

  test('beyond 255: a shared ja carries the far branch, both paths still work', () => {
    const prog = assemble(farProgram(600))
    const filters = decode(prog)
    expect(filters.length).toBe(3 + 600 + 2 + 1)
    expect(filters.some((f) => f.code === 0x05)).toBe(true)
    expect(filters.every((f) => f.jt <= 255 && f.jf <= 255)).toBe(true)
    expect(runFilter(prog, ctx([7]))).toBe(0xfa)
    expect(runFilter(prog, ctx([8]))).toBe(0xfa)
    expect(runFilter(prog, ctx([9]))).toBe(9 + 600)
  })

  test('many far branches across a long program', () => {
    // 40 blocks of (jeq → far, 30 fillers): every branch is far, trampolines are spread out.
    const src: Insn[] = [{ op: 'ldb', k: 0 }]
    for (let b = 0; b < 40; b++) {
      src.push({ op: 'jeq', k: b, jt: 'far', jf: `b${b}` }, { op: 'label', name: `b${b}` })
      for (let i = 0; i < 30; i++) src.push({ op: 'add', k: 0 })
    }
    src.push({ op: 'ret', k: 1 }, { op: 'label', name: 'far' }, { op: 'ret', k: 2 })
    const prog = assemble(src)
    const filters = decode(prog)
    const trampolines = filters.filter((f) => f.code === 0x05).length
    expect(trampolines).toBeGreaterThan(0)
    expect(trampolines).toBeLessThan(20)
    for (let b = 0; b < 40; b++) expect(runFilter(prog, ctx([b]))).toBe(2)
    expect(runFilter(prog, ctx([200]))).toBe(1)
  })

  test('round trip: decompile then assemble gives the same bytes', () => {
    for (const src of [farProgram(10), farProgram(700)]) {
      const prog = assemble(src)
      const again = assemble(decompile(prog))
      expect(again.equals(prog)).toBe(true)
      expect(disasm(again)).toBe(disasm(prog))
    }
  })
})

describe('refusals', () => {
  test('undefined label, backward jump, duplicate label, dangling label', () => {
    badFilter(() => assemble([{ op: 'ja', to: 'nowhere' }, { op: 'ret', k: 0 }]), /undefined label nowhere/)
    badFilter(
      () => assemble([{ op: 'label', name: 'top' }, { op: 'ldb', k: 0 }, { op: 'jeq', k: 1, jt: 'top' }, { op: 'ret', k: 0 }]),
      /backward jump/,
    )
    badFilter(() => assemble([{ op: 'label', name: 'x' }, { op: 'label', name: 'x' }, { op: 'ret', k: 0 }]), /defined twice/)
    badFilter(() => assemble([{ op: 'ret', k: 0 }, { op: 'label', name: 'end' }]), /marks no instruction/)
  })

  test('program shape', () => {
    badFilter(() => assemble([]), /empty/)
    badFilter(() => assemble([{ op: 'ldb', k: 0 }]), /last instruction must be a ret/)
    badFilter(() => assemble([{ op: 'ldb', k: 0 }, { op: 'jeq', k: 1 }]), /falls off the end/)
    const long: Insn[] = Array.from({ length: BPF_MAXINSNS }, () => ({ op: 'add', k: 1 }) as const)
    badFilter(() => assemble([...long, { op: 'ret', k: 0 }]), /4097 instructions \(limit 4096\)/)
    expect(assemble([...long.slice(1), { op: 'ret', k: 0 }]).length).toBe(4096 * 8)
    badFilter(() => assemble([{ op: 'ret', k: 0 }, { op: 'ret', k: 0 }], { maxInstructions: 1 }), /limit 1/)
  })

  test('operands', () => {
    badFilter(() => assemble([{ op: 'div', k: 0 }, { op: 'ret', k: 0 }]), /div by constant zero/)
    badFilter(() => assemble([{ op: 'lsh', k: 32 }, { op: 'ret', k: 0 }]), /shift by 32/)
    badFilter(() => assemble([{ op: 'st', k: 16 }, { op: 'ret', k: 0 }]), /scratch index 16/)
    badFilter(() => assemble([{ op: 'ret', k: 2 ** 32 }]), /not a 32-bit integer/)
    badFilter(() => assemble([{ op: 'ret', k: 1.5 }]), /not a 32-bit integer/)
    badFilter(() => assemble([{ op: 'ld', k: ad(64) }, { op: 'ret', k: 0 }]), /unknown ancillary/)
    badFilter(() => assemble([{ op: 'ld', k: ad(2) }, { op: 'ret', k: 0 }]), /unknown ancillary/)
  })

  test('scratch read before write on some path', () => {
    badFilter(() => assemble([{ op: 'ldm', k: 0 }, { op: 'ret', a: true }]), /reads M\[0\]/)
    badFilter(
      () =>
        assemble([
          { op: 'ldb', k: 0 },
          { op: 'jeq', k: 1, jt: 'use' },
          { op: 'st', k: 2 },
          { op: 'label', name: 'use' },
          { op: 'ldxm', k: 2 },
          { op: 'ret', a: true },
        ]),
      /reads M\[2\]/,
    )
    expect(() => assemble([{ op: 'st', k: 2 }, { op: 'ldm', k: 2 }, { op: 'ret', a: true }])).not.toThrow()
  })
})

describe('vm', () => {
  test('loads: absolute, indirect, net- and ll-relative, msh', () => {
    const data = [0xaa, 0xbb, 0xcc, 0xdd, 0x45, 0x11, 0x22, 0x33]
    const c = ctx(data, { netOffset: 4 })
    const run = (src: Insn[]): number => runFilter(assemble([...src, { op: 'ret', a: true }]), c)
    expect(run([{ op: 'ld', k: 0 }])).toBe(0xaabbccdd)
    expect(run([{ op: 'ldh', k: 1 }])).toBe(0xbbcc)
    expect(run([{ op: 'ldb', k: net(1) }])).toBe(0x11)
    expect(run([{ op: 'ldh', k: ll(2) }])).toBe(0xccdd)
    expect(run([{ op: 'ldxi', k: 2 }, { op: 'ldb', k: net(-1), ind: true }])).toBe(0x11)
    expect(run([{ op: 'ldxmsh', k: net(0) }, { op: 'txa' }])).toBe(20)
    expect(run([{ op: 'ldlen' }])).toBe(8)
  })

  test('out-of-bounds loads and division by zero drop', () => {
    const c = ctx([1, 2, 3, 4], { netOffset: 2 })
    const run = (src: Insn[]): number => runFilter(assemble([...src, { op: 'ret', k: 99 }]), c)
    expect(run([{ op: 'ld', k: 1 }])).toBe(0)
    expect(run([{ op: 'ldh', k: 3 }])).toBe(0)
    expect(run([{ op: 'ldh', k: 2 }])).toBe(99)
    expect(run([{ op: 'ldh', k: net(2) }])).toBe(0)
    expect(run([{ op: 'ldb', k: net(1) }])).toBe(99)
    expect(run([{ op: 'ldxi', k: 0xffffffff }, { op: 'ldb', k: 0, ind: true }])).toBe(0)
    expect(run([{ op: 'ldb', k: SKF_LL_OFF - 5 }])).toBe(0)
    expect(run([{ op: 'ldxi', k: 0 }, { op: 'div', x: true }])).toBe(0)
    expect(run([{ op: 'ldxi', k: 0 }, { op: 'mod', x: true }])).toBe(0)
  })

  test('ALU wraps at 32 bits', () => {
    const run = (src: Insn[]): number => runFilter(assemble([...src, { op: 'ret', a: true }]), ctx([]))
    expect(run([{ op: 'ldi', k: 0xffffffff }, { op: 'add', k: 2 }])).toBe(1)
    expect(run([{ op: 'ldi', k: 1 }, { op: 'sub', k: 2 }])).toBe(0xffffffff)
    expect(run([{ op: 'ldi', k: 0x10000 }, { op: 'mul', k: 0x10000 }])).toBe(0)
    expect(run([{ op: 'ldi', k: 7 }, { op: 'div', k: 2 }])).toBe(3)
    expect(run([{ op: 'ldi', k: 7 }, { op: 'mod', k: 4 }])).toBe(3)
    expect(run([{ op: 'ldi', k: 1 }, { op: 'lsh', k: 31 }])).toBe(0x80000000)
    expect(run([{ op: 'ldi', k: 0x80000000 }, { op: 'rsh', k: 31 }])).toBe(1)
    expect(run([{ op: 'ldi', k: 5 }, { op: 'neg' }])).toBe(0xfffffffb)
    expect(run([{ op: 'ldi', k: 0xf0 }, { op: 'xor', k: 0xff }, { op: 'or', k: 0x100 }, { op: 'and', k: 0x10f }])).toBe(0x10f)
  })

  test('ancillary loads and the kernel untagging of contextFromFrame', () => {
    // dst, src, 0x88a8 tag 100, 0x8100 tag 200, IPv4
    const frame = Uint8Array.from([
      ...new Array<number>(12).fill(2),
      0x88, 0xa8, 0x00, 0x64,
      0x81, 0x00, 0x00, 0xc8,
      0x08, 0x00, 0x45, 0,
    ])
    const c = contextFromFrame(frame, { pktType: 3, ifindex: 7 })
    expect(c.data.length).toBe(frame.length - 4)
    expect(c.protocol).toBe(0x8100)
    expect(c.netOffset).toBe(14)
    const ancillaryOf = (x: number): number => runFilter(assemble([{ op: 'ld', k: ad(x) }, { op: 'ret', a: true }]), c)
    expect(ancillaryOf(SKF_AD_PROTOCOL)).toBe(0x8100)
    expect(ancillaryOf(SKF_AD_PKTTYPE)).toBe(3)
    expect(ancillaryOf(SKF_AD_IFINDEX)).toBe(7)
    expect(ancillaryOf(SKF_AD_HATYPE)).toBe(1)
    expect(ancillaryOf(SKF_AD_VLAN_TAG)).toBe(100)
    expect(ancillaryOf(SKF_AD_VLAN_TAG_PRESENT)).toBe(1)
    // NET+0 is the inner TCI, NET+2 the inner ethertype
    expect(runFilter(assemble([{ op: 'ldh', k: net(0) }, { op: 'ret', a: true }]), c)).toBe(200)
    expect(runFilter(assemble([{ op: 'ldh', k: net(2) }, { op: 'ret', a: true }]), c)).toBe(0x0800)

    const plain = contextFromFrame(Uint8Array.from([...new Array<number>(12).fill(2), 0x86, 0xdd, 0x60]))
    expect(plain).toMatchObject({ protocol: 0x86dd, netOffset: 14, vlanPresent: false })
    expect(contextFromPacket(Uint8Array.from([0x60]))).toMatchObject({ protocol: 0x86dd, netOffset: 0 })
  })
})
