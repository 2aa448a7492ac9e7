/**
 * A classic-BPF assembler with labels, and the matching decoder and disassembler.
 * It owns the encoding of `struct sock_filter` (u16 code, u8 jt, u8 jf, u32 k, in
 * host order — little-endian on every platform portanoia supports) and the checks
 * the kernel's bpf_check_classic() would otherwise fail with a bare EINVAL at
 * setsockopt(SO_ATTACH_FILTER) time: forward-only jumps, a final RET, known
 * ancillary offsets, shift counts below 32, no division by a constant zero, no read
 * of a scratch word before it is written, at most BPF_MAXINSNS instructions.
 * Conditional jumps carry 8-bit offsets, so a branch to a label more than 255
 * instructions ahead is routed through a `ja` trampoline (32-bit offset) that sits
 * within reach after a jump or ret, shared by every branch to the same place that
 * can reach it. Pure and synchronous.
 */

import { PortanoiaError } from '../errors.js'

// --- kernel constants (include/uapi/linux/filter.h, bpf_common.h) -------------------

export const BPF_LD = 0x00
export const BPF_LDX = 0x01
export const BPF_ST = 0x02
export const BPF_STX = 0x03
export const BPF_ALU = 0x04
export const BPF_JMP = 0x05
export const BPF_RET = 0x06
export const BPF_MISC = 0x07

export const BPF_W = 0x00
export const BPF_H = 0x08
export const BPF_B = 0x10

export const BPF_IMM = 0x00
export const BPF_ABS = 0x20
export const BPF_IND = 0x40
export const BPF_MEM = 0x60
export const BPF_LEN = 0x80
export const BPF_MSH = 0xa0

export const BPF_ADD = 0x00
export const BPF_SUB = 0x10
export const BPF_MUL = 0x20
export const BPF_DIV = 0x30
export const BPF_OR = 0x40
export const BPF_AND = 0x50
export const BPF_LSH = 0x60
export const BPF_RSH = 0x70
export const BPF_NEG = 0x80
export const BPF_MOD = 0x90
export const BPF_XOR = 0xa0

export const BPF_JA = 0x00
export const BPF_JEQ = 0x10
export const BPF_JGT = 0x20
export const BPF_JGE = 0x30
export const BPF_JSET = 0x40

export const BPF_K = 0x00
export const BPF_X = 0x08
export const BPF_A = 0x10

export const BPF_TAX = 0x00
export const BPF_TXA = 0x80

export const BPF_MEMWORDS = 16
export const BPF_MAXINSNS = 4096
export const SOCK_FILTER_SIZE = 8

export const SKF_AD_OFF = -0x1000
export const SKF_AD_PROTOCOL = 0
export const SKF_AD_PKTTYPE = 4
export const SKF_AD_IFINDEX = 8
export const SKF_AD_NLATTR = 12
export const SKF_AD_NLATTR_NEST = 16
export const SKF_AD_MARK = 20
export const SKF_AD_QUEUE = 24
export const SKF_AD_HATYPE = 28
export const SKF_AD_RXHASH = 32
export const SKF_AD_CPU = 36
export const SKF_AD_ALU_XOR_X = 40
export const SKF_AD_VLAN_TAG = 44
export const SKF_AD_VLAN_TAG_PRESENT = 48
export const SKF_AD_PAY_OFFSET = 52
export const SKF_AD_RANDOM = 56
export const SKF_AD_VLAN_TPID = 60
export const SKF_AD_MAX = 64
export const SKF_NET_OFF = -0x100000
export const SKF_LL_OFF = -0x200000

export const ANCILLARY_NAMES: Readonly<Record<number, string>> = {
  [SKF_AD_PROTOCOL]: 'proto',
  [SKF_AD_PKTTYPE]: 'type',
  [SKF_AD_IFINDEX]: 'ifidx',
  [SKF_AD_NLATTR]: 'nla',
  [SKF_AD_NLATTR_NEST]: 'nlan',
  [SKF_AD_MARK]: 'mark',
  [SKF_AD_QUEUE]: 'queue',
  [SKF_AD_HATYPE]: 'hatype',
  [SKF_AD_RXHASH]: 'rxhash',
  [SKF_AD_CPU]: 'cpu',
  [SKF_AD_ALU_XOR_X]: 'xor_x',
  [SKF_AD_VLAN_TAG]: 'vlan_tci',
  [SKF_AD_VLAN_TAG_PRESENT]: 'vlan_avail',
  [SKF_AD_PAY_OFFSET]: 'poff',
  [SKF_AD_RANDOM]: 'rand',
  [SKF_AD_VLAN_TPID]: 'vlan_tpid',
}

// --- instructions ---------------------------------------------------------------------

export type AluOp = 'add' | 'sub' | 'mul' | 'div' | 'mod' | 'and' | 'or' | 'xor' | 'lsh' | 'rsh'
export type JmpCond = 'jeq' | 'jgt' | 'jge' | 'jset'

/**
 * One source line. Offsets `k` are signed or unsigned 32-bit (negatives such as
 * SKF_NET_OFF + 9 are stored as two's complement). A conditional jump whose jt or
 * jf is omitted continues with the next instruction.
 */
export type Insn =
  | { op: 'label'; name: string }
  /** A = P[k] (word, half, byte); with `ind`, A = P[X + k]. */
  | { op: 'ld' | 'ldh' | 'ldb'; k: number; ind?: boolean }
  /** A = k */
  | { op: 'ldi'; k: number }
  /** A = packet length */
  | { op: 'ldlen' }
  /** A = M[k] */
  | { op: 'ldm'; k: number }
  /** X = k */
  | { op: 'ldxi'; k: number }
  /** X = M[k] */
  | { op: 'ldxm'; k: number }
  /** X = packet length */
  | { op: 'ldxlen' }
  /** X = 4 * (P[k] & 0xf): the IPv4 header length. */
  | { op: 'ldxmsh'; k: number }
  /** M[k] = A */
  | { op: 'st'; k: number }
  /** M[k] = X */
  | { op: 'stx'; k: number }
  | { op: AluOp; k: number }
  | { op: AluOp; x: true }
  | { op: 'neg' }
  | { op: 'ja'; to: string }
  | { op: JmpCond; k: number; jt?: string; jf?: string }
  | { op: JmpCond; x: true; jt?: string; jf?: string }
  | { op: 'ret'; k: number }
  | { op: 'ret'; a: true }
  | { op: 'tax' }
  | { op: 'txa' }

/** struct sock_filter, decoded. */
export interface SockFilter {
  code: number
  jt: number
  jf: number
  /** Unsigned 32-bit. */
  k: number
}

/** An ancillary offset as a load address, e.g. ldAd(SKF_AD_PROTOCOL). */
export function ad(x: number): number {
  return SKF_AD_OFF + x
}

/** A network-header-relative load address. */
export function net(n: number): number {
  return SKF_NET_OFF + n
}

/** A link-layer-relative load address. */
export function ll(n: number): number {
  return SKF_LL_OFF + n
}

const ALU_CODES: Readonly<Record<AluOp, number>> = {
  add: BPF_ADD,
  sub: BPF_SUB,
  mul: BPF_MUL,
  div: BPF_DIV,
  mod: BPF_MOD,
  and: BPF_AND,
  or: BPF_OR,
  xor: BPF_XOR,
  lsh: BPF_LSH,
  rsh: BPF_RSH,
}
const JMP_CODES: Readonly<Record<JmpCond, number>> = { jeq: BPF_JEQ, jgt: BPF_JGT, jge: BPF_JGE, jset: BPF_JSET }
const SIZE_OF: Readonly<Record<'ld' | 'ldh' | 'ldb', number>> = { ld: BPF_W, ldh: BPF_H, ldb: BPF_B }

function fail(message: string, hint = 'this is a bug in the program generator; the instruction list is shown by disasm()'): never {
  throw new PortanoiaError('PORTANOIA_BAD_FILTER', message, { hint })
}

function u32(k: number, where: string): number {
  if (!Number.isInteger(k) || k < -0x80000000 || k > 0xffffffff) fail(`${where}: k=${String(k)} is not a 32-bit integer`)
  return k >>> 0
}

function scratch(k: number, where: string): number {
  if (!Number.isInteger(k) || k < 0 || k >= BPF_MEMWORDS) fail(`${where}: scratch index ${String(k)} outside 0..${BPF_MEMWORDS - 1}`)
  return k
}

function isAlu(op: string): op is AluOp {
  return op in ALU_CODES
}
function isCond(op: string): op is JmpCond {
  return op in JMP_CODES
}

/** Code and k of a non-jump instruction. */
function encodeSimple(insn: Exclude<Insn, { op: 'label' | 'ja' | JmpCond }>, where: string): { code: number; k: number } {
  switch (insn.op) {
    case 'ld':
    case 'ldh':
    case 'ldb': {
      const k = u32(insn.k, where)
      if (!insn.ind && k >= (SKF_AD_OFF >>> 0)) {
        const x = k - (SKF_AD_OFF >>> 0)
        if (x >= SKF_AD_MAX || x % 4 !== 0) fail(`${where}: unknown ancillary offset SKF_AD_OFF+${x}`)
      }
      return { code: BPF_LD | SIZE_OF[insn.op] | (insn.ind ? BPF_IND : BPF_ABS), k }
    }
    case 'ldi':
      return { code: BPF_LD | BPF_W | BPF_IMM, k: u32(insn.k, where) }
    case 'ldlen':
      return { code: BPF_LD | BPF_W | BPF_LEN, k: 0 }
    case 'ldm':
      return { code: BPF_LD | BPF_W | BPF_MEM, k: scratch(insn.k, where) }
    case 'ldxi':
      return { code: BPF_LDX | BPF_W | BPF_IMM, k: u32(insn.k, where) }
    case 'ldxm':
      return { code: BPF_LDX | BPF_W | BPF_MEM, k: scratch(insn.k, where) }
    case 'ldxlen':
      return { code: BPF_LDX | BPF_W | BPF_LEN, k: 0 }
    case 'ldxmsh':
      return { code: BPF_LDX | BPF_B | BPF_MSH, k: u32(insn.k, where) }
    case 'st':
      return { code: BPF_ST, k: scratch(insn.k, where) }
    case 'stx':
      return { code: BPF_STX, k: scratch(insn.k, where) }
    case 'neg':
      return { code: BPF_ALU | BPF_NEG, k: 0 }
    case 'ret':
      return 'a' in insn ? { code: BPF_RET | BPF_A, k: 0 } : { code: BPF_RET | BPF_K, k: u32(insn.k, where) }
    case 'tax':
      return { code: BPF_MISC | BPF_TAX, k: 0 }
    case 'txa':
      return { code: BPF_MISC | BPF_TXA, k: 0 }
    default: {
      const op: string = insn.op
      if (!isAlu(op)) fail(`${where}: unknown instruction ${JSON.stringify(insn)}`)
      if ('x' in insn) return { code: BPF_ALU | ALU_CODES[op] | BPF_X, k: 0 }
      const k = u32(insn.k, where)
      if ((op === 'div' || op === 'mod') && k === 0) fail(`${where}: ${op} by constant zero`)
      if ((op === 'lsh' || op === 'rsh') && k >= 32) fail(`${where}: shift by ${k} (must be < 32)`)
      return { code: BPF_ALU | ALU_CODES[op] | BPF_K, k }
    }
  }
}

interface Node {
  code: number
  k: number
  /** Conditional targets, or the ja target in `jt`. */
  jt?: Node
  jf?: Node
  /** For trampolines: where they finally lead. */
  trampolineTo?: Node
  /** Source position, for messages. */
  where: string
}

function isConditional(n: Node): boolean {
  return (n.code & 0x07) === BPF_JMP && (n.code & 0xf0) !== BPF_JA
}

/**
 * Assembles a program. Labels name the instruction that follows them. Throws
 * PortanoiaError PORTANOIA_BAD_FILTER on anything the kernel would refuse.
 */
export function assemble(insns: readonly Insn[], opts: { maxInstructions?: number } = {}): Buffer {
  const max = opts.maxInstructions ?? BPF_MAXINSNS
  // Pass 1: nodes and label positions.
  const labels = new Map<string, number>()
  const pending: string[] = []
  const real: Array<{ insn: Exclude<Insn, { op: 'label' }>; where: string }> = []
  insns.forEach((insn, i) => {
    if (insn.op === 'label') {
      if (labels.has(insn.name) || pending.includes(insn.name)) fail(`label ${insn.name} defined twice`)
      pending.push(insn.name)
      return
    }
    for (const name of pending) labels.set(name, real.length)
    pending.length = 0
    real.push({ insn, where: `instruction ${real.length} (source line ${i})` })
  })
  if (pending.length > 0) fail(`label ${pending[0] ?? ''} marks no instruction (a label must precede one)`)
  if (real.length === 0) fail('empty program')

  const nodes: Node[] = real.map(({ insn, where }) => {
    if (insn.op === 'ja' || isCond(insn.op)) return { code: 0, k: 0, where }
    return { ...encodeSimple(insn as Exclude<Insn, { op: 'label' | 'ja' | JmpCond }>, where), where }
  })
  const resolve = (from: number, name: string | undefined, where: string): Node => {
    const to = name === undefined ? from + 1 : labels.get(name)
    if (to === undefined) fail(`${where}: undefined label ${name ?? ''}`)
    if (to <= from) fail(`${where}: backward jump to ${name ?? ''} (classic BPF jumps only forward)`)
    const node = nodes[to]
    if (node === undefined) fail(`${where}: falls off the end of the program`)
    return node
  }
  real.forEach(({ insn, where }, i) => {
    const node = nodes[i]
    if (node === undefined) return
    if (insn.op === 'ja') {
      node.code = BPF_JMP | BPF_JA
      node.jt = resolve(i, insn.to, where)
    } else if (isCond(insn.op)) {
      const j = insn as Extract<Insn, { op: JmpCond }>
      node.code = BPF_JMP | JMP_CODES[j.op] | ('x' in j ? BPF_X : BPF_K)
      node.k = 'x' in j ? 0 : u32(j.k, where)
      node.jt = resolve(i, j.jt, where)
      node.jf = resolve(i, j.jf, where)
    }
  })

  const placed = placeTrampolines(nodes, max)

  const last = placed[placed.length - 1]
  if (last === undefined || (last.code & 0x07) !== BPF_RET) fail('the last instruction must be a ret')
  const pos = new Map<Node, number>()
  placed.forEach((n, i) => pos.set(n, i))
  const filters = placed.map((n, i) => encodeNode(n, i, pos))
  checkScratch(filters)
  return encode(filters)
}

/**
 * Routes every conditional branch that cannot reach its target (more than 255
 * instructions ahead) through a `ja`. A trampoline may only sit after an
 * instruction that never falls through implicitly (a jump or a ret), so that no
 * straight-line code runs into it; it is placed as far ahead as reach allows, so
 * that the branches that follow can share it. Inserting moves code, so this
 * repeats until every branch reaches: each round only adds trampolines, and a
 * branch whose trampoline drifted out of reach simply gets another one.
 */
function placeTrampolines(initial: Node[], max: number): Node[] {
  // Room left for trampolines that the same round inserts between a branch and
  // the one it shares; a shortfall is fixed by the next round, only less tightly.
  const slack = 32
  const reach = 255 - slack
  let nodes = initial
  for (;;) {
    if (nodes.length > max) {
      fail(`program needs ${nodes.length} instructions (limit ${max})`, 'use fewer or wider port ranges')
    }
    const pos = new Map<Node, number>()
    nodes.forEach((n, i) => pos.set(n, i))
    // lastSafe[i]: the last index ≤ i after which a trampoline may be inserted.
    const lastSafe = new Int32Array(nodes.length)
    nodes.forEach((n, i) => {
      const cls = n.code & 0x07
      lastSafe[i] = cls === BPF_JMP || cls === BPF_RET ? i : i > 0 ? (lastSafe[i - 1] ?? -1) : -1
    })
    const sharable = new Map<Node, Array<{ t: Node; at: number }>>()
    for (const n of nodes) {
      if (n.trampolineTo) {
        sharable.set(n.trampolineTo, [...(sharable.get(n.trampolineTo) ?? []), { t: n, at: (pos.get(n) ?? 0) - 1 }])
      }
    }
    const inserts = new Map<number, Node[]>()
    nodes.forEach((n, i) => {
      if (!isConditional(n)) return
      for (const branch of ['jt', 'jf'] as const) {
        const target = n[branch]
        if (target === undefined) continue
        if ((pos.get(target) ?? 0) - i - 1 <= 255) continue
        const final = target.trampolineTo ?? target
        const candidates = sharable.get(final) ?? []
        const shared = candidates.find(({ at }) => at >= i && at - i <= reach)
        if (shared) {
          n[branch] = shared.t
          continue
        }
        const finalAt = pos.get(final) ?? 0
        const anchor = Math.max(i, lastSafe[Math.min(i + reach, finalAt - 1)] ?? i)
        const t: Node = { code: BPF_JMP | BPF_JA, k: 0, jt: final, trampolineTo: final, where: `trampoline for ${n.where}` }
        inserts.set(anchor, [...(inserts.get(anchor) ?? []), t])
        candidates.push({ t, at: anchor })
        sharable.set(final, candidates)
        n[branch] = t
      }
    })
    if (inserts.size === 0) return nodes
    nodes = nodes.flatMap((n, i) => [n, ...(inserts.get(i) ?? [])])
  }
}

function encodeNode(n: Node, i: number, pos: ReadonlyMap<Node, number>): SockFilter {
  const at = (t: Node | undefined): number => (t === undefined ? i + 1 : (pos.get(t) ?? -1)) - i - 1
  if ((n.code & 0x07) !== BPF_JMP) return { code: n.code, jt: 0, jf: 0, k: n.k }
  if ((n.code & 0xf0) === BPF_JA) return { code: n.code, jt: 0, jf: 0, k: at(n.jt) }
  const jt = at(n.jt)
  const jf = at(n.jf)
  if (jt < 0 || jf < 0 || jt > 255 || jf > 255) fail(`${n.where}: internal error placing jump (jt=${jt} jf=${jf})`)
  return { code: n.code, jt, jf, k: n.k }
}

/** Mirrors the kernel's check_load_and_stores(): M[k] must be written on every path before it is read. */
function checkScratch(prog: readonly SockFilter[]): void {
  const valid = new Array<number>(prog.length).fill(0xffff)
  valid[0] = 0
  prog.forEach((f, i) => {
    let mem = valid[i] ?? 0
    const cls = f.code & 0x07
    if (f.code === (BPF_ST as number) || f.code === (BPF_STX as number)) mem |= 1 << f.k
    if (f.code === (BPF_LD | BPF_MEM) || f.code === (BPF_LDX | BPF_MEM)) {
      if (!(mem & (1 << f.k))) fail(`instruction ${i}: reads M[${f.k}] before any store on some path`)
    }
    if (cls === BPF_JMP) {
      const targets = (f.code & 0xf0) === BPF_JA ? [i + 1 + f.k] : [i + 1 + f.jt, i + 1 + f.jf]
      for (const t of targets) valid[t] = (valid[t] ?? 0xffff) & mem
    } else if (cls !== BPF_RET && i + 1 < prog.length) {
      valid[i + 1] = (valid[i + 1] ?? 0xffff) & mem
    }
  })
}

// --- binary form ---------------------------------------------------------------------

/** struct sock_filter[] → bytes, little-endian. */
export function encode(prog: readonly SockFilter[]): Buffer {
  const out = Buffer.alloc(prog.length * SOCK_FILTER_SIZE)
  prog.forEach((f, i) => {
    out.writeUInt16LE(f.code, i * 8)
    out.writeUInt8(f.jt, i * 8 + 2)
    out.writeUInt8(f.jf, i * 8 + 3)
    out.writeUInt32LE(f.k >>> 0, i * 8 + 4)
  })
  return out
}

/** bytes → struct sock_filter[]. */
export function decode(prog: Uint8Array): SockFilter[] {
  if (prog.length % SOCK_FILTER_SIZE !== 0) fail(`program is ${prog.length} bytes, not a multiple of ${SOCK_FILTER_SIZE}`)
  const b = Buffer.from(prog.buffer, prog.byteOffset, prog.byteLength)
  const out: SockFilter[] = []
  for (let i = 0; i < b.length; i += 8) {
    out.push({ code: b.readUInt16LE(i), jt: b.readUInt8(i + 2), jf: b.readUInt8(i + 3), k: b.readUInt32LE(i + 4) })
  }
  return out
}

function asFilters(prog: Uint8Array | readonly SockFilter[]): readonly SockFilter[] {
  return prog instanceof Uint8Array ? decode(prog) : prog
}

/** Turns a program back into labelled instructions (labels L<pc>); assemble() of the result gives the same bytes. */
export function decompile(prog: Uint8Array | readonly SockFilter[]): Insn[] {
  const filters = asFilters(prog)
  const targets = new Set<number>()
  const lines: Insn[] = filters.map((f, i) => {
    const cls = f.code & 0x07
    const signed = f.k | 0
    switch (cls) {
      case BPF_LD:
      case BPF_LDX: {
        const mode = f.code & 0xe0
        const size = f.code & 0x18
        if (cls === BPF_LDX) {
          if (mode === BPF_IMM) return { op: 'ldxi', k: f.k }
          if (mode === BPF_MEM) return { op: 'ldxm', k: f.k }
          if (mode === BPF_LEN) return { op: 'ldxlen' }
          if (mode === BPF_MSH) return { op: 'ldxmsh', k: signed }
        } else {
          if (mode === BPF_IMM) return { op: 'ldi', k: f.k }
          if (mode === BPF_MEM) return { op: 'ldm', k: f.k }
          if (mode === BPF_LEN) return { op: 'ldlen' }
          const op = size === BPF_H ? 'ldh' : size === BPF_B ? 'ldb' : 'ld'
          if (mode === BPF_ABS) return { op, k: signed }
          if (mode === BPF_IND) return { op, k: signed, ind: true }
        }
        break
      }
      case BPF_ST:
        return { op: 'st', k: f.k }
      case BPF_STX:
        return { op: 'stx', k: f.k }
      case BPF_ALU: {
        const code = f.code & 0xf0
        if (code === BPF_NEG) return { op: 'neg' }
        const op = (Object.keys(ALU_CODES) as AluOp[]).find((o) => ALU_CODES[o] === code)
        if (op) return f.code & BPF_X ? { op, x: true } : { op, k: f.k }
        break
      }
      case BPF_JMP: {
        const code = f.code & 0xf0
        if (code === BPF_JA) {
          targets.add(i + 1 + f.k)
          return { op: 'ja', to: `L${i + 1 + f.k}` }
        }
        const op = (Object.keys(JMP_CODES) as JmpCond[]).find((o) => JMP_CODES[o] === code)
        if (op) {
          targets.add(i + 1 + f.jt)
          targets.add(i + 1 + f.jf)
          const jt = `L${i + 1 + f.jt}`
          const jf = `L${i + 1 + f.jf}`
          return f.code & BPF_X ? { op, x: true, jt, jf } : { op, k: f.k, jt, jf }
        }
        break
      }
      case BPF_RET:
        return (f.code & 0x18) === BPF_A ? { op: 'ret', a: true } : { op: 'ret', k: f.k }
      case BPF_MISC:
        if ((f.code & 0xf8) === BPF_TAX) return { op: 'tax' }
        if ((f.code & 0xf8) === BPF_TXA) return { op: 'txa' }
        break
    }
    return fail(`instruction ${i}: unknown opcode 0x${f.code.toString(16)}`)
  })
  return lines.flatMap((insn, i) => (targets.has(i) ? [{ op: 'label', name: `L${i}` } as const, insn] : [insn]))
}

function addr(k: number): string {
  const s = k | 0
  if (s >= 0) return `${s}`
  if (s >= SKF_AD_OFF) return `#${ANCILLARY_NAMES[s - SKF_AD_OFF] ?? `ad+${s - SKF_AD_OFF}`}`
  if (s >= SKF_NET_OFF) return `net+${s - SKF_NET_OFF}`
  if (s >= SKF_LL_OFF) return `ll+${s - SKF_LL_OFF}`
  return `${s}`
}

const hex = (k: number): string => `#0x${(k >>> 0).toString(16)}`

/** One line per instruction, in the style of `tcpdump -d`, with absolute jump targets. */
export function disasm(prog: Uint8Array | readonly SockFilter[]): string {
  const filters = asFilters(prog)
  return decompile(filters)
    .filter((insn) => insn.op !== 'label')
    .map((insn, i) => {
      const pc = `(${String(i).padStart(3, '0')})`
      const f = filters[i]
      let text: string
      switch (insn.op) {
        case 'ld':
        case 'ldh':
        case 'ldb':
          text = `${insn.op.padEnd(8)} [${insn.ind ? 'x + ' : ''}${addr(insn.k)}]`
          break
        case 'ldi':
          text = `ld       ${hex(insn.k)}`
          break
        case 'ldlen':
          text = 'ld       len'
          break
        case 'ldm':
          text = `ld       M[${insn.k}]`
          break
        case 'ldxi':
          text = `ldx      ${hex(insn.k)}`
          break
        case 'ldxm':
          text = `ldx      M[${insn.k}]`
          break
        case 'ldxlen':
          text = 'ldx      len'
          break
        case 'ldxmsh':
          text = `ldxb     4*([${addr(insn.k)}]&0xf)`
          break
        case 'st':
        case 'stx':
          text = `${insn.op.padEnd(8)} M[${insn.k}]`
          break
        case 'neg':
        case 'tax':
        case 'txa':
          text = insn.op
          break
        case 'ja':
          text = `ja       ${i + 1 + (f?.k ?? 0)}`
          break
        case 'ret':
          text = 'a' in insn ? 'ret      a' : `ret      ${hex(insn.k)}`
          break
        default:
          if (isCond(insn.op)) {
            const operand = 'x' in insn ? 'x' : hex(insn.k)
            text = `${insn.op.padEnd(8)} ${operand.padEnd(12)} jt ${i + 1 + (f?.jt ?? 0)}\tjf ${i + 1 + (f?.jf ?? 0)}`
          } else {
            text = `${insn.op.padEnd(8)} ${'x' in insn ? 'x' : 'k' in insn ? hex(insn.k) : ''}`
          }
      }
      return `${pc} ${text}`
    })
    .join('\n')
}
