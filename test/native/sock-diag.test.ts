/**
 * The peer check's inet_diag bytecode (native/sock_diag.cc), built by the addon's
 * peerPrograms test entry and run here through a model of the kernel's two functions,
 * written from net/ipv4/inet_diag.c (not from the builder): inet_diag_bc_audit(),
 * which refuses a program with EINVAL unless every op reached by `yes` steps has room
 * for its operands, every `yes` and `no` is a multiple of 4 and at least the op's
 * size, at most 4 past the end, and every `no` that lands inside the program lands on
 * an op of that `yes` chain (valid_cc); and inet_diag_bc_run(), where a socket matches
 * when the program ends exactly at its last byte. The sockets run through it are
 * crafted from the spec of the question ("is the remote address in one of these
 * networks, the local port in none of these ranges?"), with the kernel's D_COND rule
 * that an IPv4 condition also matches an IPv4-mapped peer of an AF_INET6 socket. The
 * model is shown able to fail: broken programs are refused.
 */
import { endianness } from 'node:os'
import { describe, expect, it } from 'vitest'
import { loadBinding } from '../../lib/binding.js'
import { type Cidr, cidrContains, parseAddress, parseCidr } from '../../lib/policy/addr.js'

const binding = loadBinding()
const LE = endianness() === 'LE'

const AF_INET = 2
const AF_INET6 = 10
const BC = { NOP: 0, JMP: 1, S_GE: 2, S_LE: 3, D_GE: 4, D_LE: 5, AUTO: 6, S_COND: 7, D_COND: 8, DEV_COND: 9, MARK_COND: 10, S_EQ: 11, D_EQ: 12 } as const
/** nla_len is a u16 that counts its 4-byte header; ops are 4-byte aligned. */
const MAX_PROGRAM = 65528

const u16 = (b: Buffer, at: number): number => (LE ? b.readUInt16LE(at) : b.readUInt16BE(at))
const i32 = (b: Buffer, at: number): number => (LE ? b.readInt32LE(at) : b.readInt32BE(at))

/** inet_diag_bc_audit(): true when the kernel would take the program. */
function audit(bc: Buffer): boolean {
  const total = bc.length
  if (total < 4) return false
  let off = 0
  let len = total
  while (len > 0) {
    if (len < 4) return false
    const code = bc[off] as number
    const yes = bc[off + 1] as number
    const no = u16(bc, off + 2)
    let minLen = 4
    switch (code) {
      case BC.S_COND:
      case BC.D_COND: {
        minLen += 8
        if (len < minLen) return false
        const family = bc[off + 4] as number
        const addrLen = family === 0 ? 0 : family === AF_INET ? 4 : family === AF_INET6 ? 16 : -1
        if (addrLen < 0) return false
        minLen += addrLen
        if (len < minLen) return false
        if ((bc[off + 5] as number) > 8 * addrLen) return false
        break
      }
      case BC.S_GE:
      case BC.S_LE:
      case BC.D_GE:
      case BC.D_LE:
      case BC.S_EQ:
      case BC.D_EQ:
        minLen += 4
        if (len < minLen) return false
        break
      case BC.JMP:
      case BC.NOP:
      case BC.AUTO:
        break
      default:
        return false
    }
    if (code !== BC.NOP) {
      if (no < minLen || no > len + 4 || (no & 3) !== 0) return false
      if (no < len && !validCc(bc, total, len - no)) return false
    }
    if (yes < minLen || yes > len + 4 || (yes & 3) !== 0) return false
    off += yes
    len -= yes
  }
  return len === 0
}

/** valid_cc(): whether `cc` bytes before the end is the start of an op on the `yes` chain. */
function validCc(bc: Buffer, total: number, cc: number): boolean {
  let len = total
  let off = 0
  while (len >= 0) {
    if (cc > len) return false
    if (cc === len) return true
    const yes = bc[off + 1] as number
    if (yes < 4 || (yes & 3) !== 0) return false
    len -= yes
    off += yes
  }
  return false
}

interface Entry {
  family: typeof AF_INET | typeof AF_INET6
  /** idiag_dst as the kernel keeps it: 4 or 16 bytes, network order. */
  daddr: Buffer
  sport: number
  dport: number
}

function bitsMatch(a: Buffer, b: Buffer, bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3
    const mask = 0x80 >> (i & 7)
    if (((a[byte] as number) & mask) !== ((b[byte] as number) & mask)) return false
  }
  return true
}

const MAPPED = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])

/** inet_diag_bc_run(): true when the socket matches. */
function run(bc: Buffer, e: Entry): boolean {
  let off = 0
  let len = bc.length
  while (len > 0) {
    const code = bc[off] as number
    let yes = true
    switch (code) {
      case BC.JMP:
        yes = false
        break
      case BC.S_GE:
        yes = e.sport >= u16(bc, off + 6)
        break
      case BC.S_LE:
        yes = e.sport <= u16(bc, off + 6)
        break
      case BC.S_EQ:
        yes = e.sport === u16(bc, off + 6)
        break
      case BC.D_COND: {
        const family = bc[off + 4] as number
        const prefix = bc[off + 5] as number
        const port = i32(bc, off + 8)
        const addr = bc.subarray(off + 12)
        if (port !== -1 && port !== e.dport) yes = false
        else if (family !== 0 && family !== e.family) {
          yes = e.family === AF_INET6 && family === AF_INET && e.daddr.subarray(0, 12).equals(MAPPED) && bitsMatch(e.daddr.subarray(12), addr, prefix)
        } else yes = prefix === 0 || bitsMatch(e.daddr, addr, prefix)
        break
      }
      case BC.NOP:
        break
      default:
        throw new Error(`op ${code} is not modelled`)
    }
    const step = yes ? (bc[off + 1] as number) : u16(bc, off + 2)
    off += step
    len -= step
  }
  return len === 0
}

/** A socket whose remote end is `address` (an IPv4 one on AF_INET6 is IPv4-mapped). */
function socket(address: string, sport: number, family?: 'mapped'): Entry {
  const a = parseAddress(address)
  if (a === null) throw new Error(address)
  const bytes = Buffer.from(a.value.toString(16).padStart(a.family === 4 ? 8 : 32, '0'), 'hex')
  if (a.family === 4 && family === 'mapped') return { family: AF_INET6, daddr: Buffer.concat([MAPPED, bytes]), sport, dport: 40000 }
  return { family: a.family === 4 ? AF_INET : AF_INET6, daddr: bytes, sport, dport: 40000 }
}

/** The question itself: the remote address in a target, the local port in no ignored one. */
function expected(targets: readonly string[], ignore: readonly number[], s: { address: string; sport: number }): boolean {
  const a = parseAddress(s.address)
  if (a === null) throw new Error(s.address)
  const nets: Cidr[] = targets.map((t) => parseCidr(t))
  return !ignore.includes(s.sport) && nets.some((n) => cidrContains(n, a))
}

/** Every program audits, and a socket matches some program exactly when the spec says so. */
function check(targets: string[], ignore: number[], sockets: Array<{ address: string; sport: number; mapped?: boolean }>): Buffer[] {
  const programs = binding.peerPrograms(targets, ignore)
  expect(programs.length).toBeGreaterThan(0)
  for (const p of programs) {
    expect(p.length).toBeLessThanOrEqual(MAX_PROGRAM)
    expect(audit(p)).toBe(true)
  }
  for (const s of sockets) {
    const e = socket(s.address, s.sport, s.mapped === true ? 'mapped' : undefined)
    const got = programs.some((p) => run(p, e))
    expect({ ...s, match: got }).toEqual({ ...s, match: expected(targets, ignore, s) })
  }
  return programs
}

describe('peer check bytecode (the kernel rules it relies on)', () => {
  const sockets = [
    { address: '198.18.0.2', sport: 22 },
    { address: '198.18.0.2', sport: 22, mapped: true },
    { address: '198.18.0.3', sport: 22 },
    { address: '198.18.0.3', sport: 22, mapped: true },
    { address: '198.18.5.77', sport: 443 },
    { address: '198.18.5.77', sport: 443, mapped: true },
    { address: '198.18.6.1', sport: 443 },
    { address: '198.19.255.254', sport: 1 },
    { address: 'fd52:43dd::2', sport: 22 },
    { address: 'fd52:43dd:0:1::9', sport: 22 },
    { address: 'fd52:43dd:7::1', sport: 8080 },
    { address: 'fd52:43de::1', sport: 8080 },
    { address: '198.18.0.2', sport: 2222 },
    { address: '198.18.0.2', sport: 2223, mapped: true },
    { address: 'fd52:43dd::2', sport: 2224 },
    { address: '198.18.0.2', sport: 2225 },
  ]

  it('one address: a match ends at the last byte, a miss 4 past it', () => {
    const [p] = check(['198.18.0.2'], [], sockets) as [Buffer]
    // D_COND (4) + hostcond (8) + the address (4); yes to the end, no 4 past it.
    expect(p.length).toBe(16)
    expect([p[0], p[1], u16(p, 2)]).toEqual([BC.D_COND, 16, 20])
  })

  it('an OR of addresses and prefixes of both families, each matching alone, IPv4 ones also on IPv4-mapped peers', () => {
    const targets = ['198.18.0.2', 'fd52:43dd::2', '198.18.5.0/24', 'fd52:43dd:7::/48', '198.19.0.0/16', '0.0.0.0/0']
    check(targets.slice(0, 5), [], sockets)
    for (let i = 0; i < targets.length; i++) check([targets[i] as string], [], sockets)
    check(targets, [], sockets)
  })

  it('ignored local ports (the tripwire listeners) never match, as single ports and ranges', () => {
    check(['198.18.0.2', 'fd52:43dd::2', '198.18.5.0/24'], [2222, 2223, 2224, 2225], sockets)
    check(['198.18.0.2', 'fd52:43dd::/32'], [22, 2222, 8080], sockets)
    check(['198.18.0.0/15'], [1, 443], sockets)
  })

  it('a long `no` leaves through a JMP: every `yes` is a step of at most 28 bytes, so it fits its u8', () => {
    const [p] = check(['198.18.0.2', 'fd52:43dd::2', '198.18.0.3'], [2222], sockets) as [Buffer]
    // cond v4 (16) JMP (4) cond v6 (28) JMP (4) cond v4 (16), then one range (5 ops, 20).
    expect(p.length).toBe(16 + 4 + 28 + 4 + 16 + 20)
    for (let off = 0; off < p.length; ) {
      expect(p[off + 1]).toBeLessThanOrEqual(28)
      off += p[off + 1] as number
    }
    expect([p[16], u16(p, 18)]).toEqual([BC.JMP, 68 - 16])
  })

  it('a batch longer than one program is split where the 64 KiB attribute forces it, and nowhere else', () => {
    const v6 = Array.from({ length: 5000 }, (_, i) => `fd52:43dd:1::${(i + 1).toString(16)}`)
    const programs = check(v6, [], [{ address: 'fd52:43dd:1::1', sport: 22 }, { address: 'fd52:43dd:1::1388', sport: 22 }, { address: 'fd52:43dd:1::1389', sport: 22 }])
    // 32 bytes an IPv6 condition with its JMP, the last without: 2047 fit 65,528 bytes.
    expect(programs.map((p) => p.length)).toEqual([2047 * 32 - 4, 2047 * 32 - 4, 906 * 32 - 4])
    const v4 = Array.from({ length: 3276 }, (_, i) => `198.18.${i >> 8}.${i & 255}`)
    expect(binding.peerPrograms(v4).map((p) => p.length)).toEqual([3276 * 20 - 4])
    expect(binding.peerPrograms([...v4, '198.19.0.1']).map((p) => p.length)).toEqual([3276 * 20 - 4, 16])
    expect(binding.peerPrograms([])).toEqual([])
  })

  it('too many ignored ranges for the program are left to the filter in user space', () => {
    const scattered = (n: number): number[] => Array.from({ length: n }, (_, i) => 1000 + 2 * i)
    const hasPortOps = (p: Buffer): boolean => {
      for (let off = 0; off < p.length; off += p[off + 1] as number) if (p[off] === BC.S_GE) return true
      return false
    }
    // 20 bytes a range; a quarter of the program (16,382 bytes) holds 819.
    const [kept] = binding.peerPrograms(['198.18.0.2'], scattered(819)) as [Buffer]
    expect(kept.length).toBe(16 + 819 * 20)
    expect(audit(kept)).toBe(true)
    expect(hasPortOps(kept)).toBe(true)
    const [dropped] = binding.peerPrograms(['198.18.0.2'], scattered(820)) as [Buffer]
    expect(hasPortOps(dropped)).toBe(false)
    // A contiguous run of ports is one range whatever its length.
    const [run1] = binding.peerPrograms(['198.18.0.2'], Array.from({ length: 30000 }, (_, i) => 30000 + i)) as [Buffer]
    expect(run1.length).toBe(16 + 20)
  })

  it('refuses targets that are not addresses or networks', () => {
    for (const bad of ['198.18.0.1/33', 'fd52::/129', '198.18.0.1/', 'x', '198.18.0.1/2a', '']) {
      expect(() => binding.peerPrograms([bad]), bad).toThrow(TypeError)
    }
    expect(() => binding.peerPrograms(['198.18.0.1'], [65536])).toThrow(RangeError)
  })

  it('the model refuses what the kernel refuses (so a passing audit means something)', () => {
    const [good] = binding.peerPrograms(['198.18.0.2', 'fd52:43dd::2'], [2222]) as [Buffer]
    expect(audit(good)).toBe(true)
    const broken = (edit: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(good)
      edit(b)
      return b
    }
    const setNo = (b: Buffer, at: number, v: number): void => void (LE ? b.writeUInt16LE(v, at + 2) : b.writeUInt16BE(v, at + 2))
    // A `no` that is not a multiple of 4; one landing inside a hostcond; one past end + 4.
    expect(audit(broken((b) => setNo(b, 0, 22)))).toBe(false)
    expect(audit(broken((b) => setNo(b, 0, 8)))).toBe(false)
    expect(audit(broken((b) => setNo(b, 16, b.length - 16 + 8)))).toBe(false)
    // A `yes` shorter than the condition it steps over; a truncated program; an unknown op.
    expect(audit(broken((b) => void (b[1] = 12)))).toBe(false)
    expect(audit(good.subarray(0, good.length - 4))).toBe(false)
    expect(audit(broken((b) => void (b[0] = 42)))).toBe(false)
    // A prefix longer than the address.
    expect(audit(broken((b) => void (b[5] = 33)))).toBe(false)
  })
})
