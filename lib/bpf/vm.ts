/**
 * A classic-BPF interpreter with the kernel's socket-filter semantics, for tests:
 * it runs an assembled program against a packet as AF_PACKET's filter would see it
 * and returns the accept length (0 = drop). It owns the emulation of what the kernel
 * does to a received Ethernet frame before the packet taps run (contextFromFrame):
 * the skb data starts at the MAC header, one VLAN tag is moved out of band, and the
 * network header sits right after the (untagged) Ethernet header. Semantics kept:
 * loads at k ≥ 0 are from the MAC header, SKF_NET_OFF / SKF_LL_OFF loads are
 * relative to the network / link-layer header, ancillary loads read the context,
 * any out-of-bounds load or division by zero ends the program with 0, A and X start
 * at 0. Pure and synchronous.
 */

import {
  BPF_A,
  BPF_ABS,
  BPF_ADD,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_DIV,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_LSH,
  BPF_MEM,
  BPF_MEMWORDS,
  BPF_MISC,
  BPF_MOD,
  BPF_MSH,
  BPF_MUL,
  BPF_NEG,
  BPF_OR,
  BPF_RET,
  BPF_RSH,
  BPF_ST,
  BPF_STX,
  BPF_SUB,
  BPF_TXA,
  BPF_W,
  BPF_X,
  BPF_XOR,
  SKF_AD_HATYPE,
  SKF_AD_IFINDEX,
  SKF_AD_OFF,
  SKF_AD_PKTTYPE,
  SKF_AD_PROTOCOL,
  SKF_AD_VLAN_TAG,
  SKF_AD_VLAN_TAG_PRESENT,
  SKF_AD_VLAN_TPID,
  SKF_LL_OFF,
  SKF_NET_OFF,
  decode,
} from './asm.js'
import type { SockFilter } from './asm.js'

/** PACKET_* packet types, as SKF_AD_PKTTYPE reports them. */
export const PACKET_HOST = 0
export const PACKET_BROADCAST = 1
export const PACKET_MULTICAST = 2
export const PACKET_OTHERHOST = 3
export const PACKET_OUTGOING = 4

export const ARPHRD_ETHER = 1

/** The skb as a socket filter sees it. */
export interface FilterContext {
  /** Bytes from the MAC header on. */
  data: Uint8Array
  /** Offset of the network header in `data`. */
  netOffset: number
  /** skb->protocol in host order, e.g. 0x0800. */
  protocol: number
  /** 0 host, 1 broadcast, 2 multicast, 3 otherhost, 4 outgoing. */
  pktType: number
  vlanPresent?: boolean
  vlanTci?: number
  vlanTpid?: number
  ifindex?: number
  hatype?: number
}

export interface FrameContextOptions {
  pktType?: number
  ifindex?: number
  hatype?: number
}

/**
 * What a packet tap sees for an Ethernet frame received on a device without VLAN
 * offload: __netif_receive_skb_core() runs skb_vlan_untag() on an 802.1Q/802.1ad
 * frame before the taps, which moves exactly one tag out of band and resets the
 * network header to just after the remaining Ethernet header. A QinQ inner tag
 * therefore stays in the data, skb->protocol becomes 0x8100 and the network header
 * points at the inner tag's TCI.
 */
export function contextFromFrame(frame: Uint8Array, opts: FrameContextOptions = {}): FilterContext {
  if (frame.length < 14) throw new RangeError(`an Ethernet frame is at least 14 bytes, got ${frame.length}`)
  const type = (b: Uint8Array, at: number): number => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0)
  let data = frame
  let vlan: Pick<FilterContext, 'vlanPresent' | 'vlanTci' | 'vlanTpid'> = { vlanPresent: false }
  const outer = type(frame, 12)
  if ((outer === 0x8100 || outer === 0x88a8) && frame.length >= 18) {
    vlan = { vlanPresent: true, vlanTci: type(frame, 14), vlanTpid: outer }
    data = new Uint8Array(frame.length - 4)
    data.set(frame.subarray(0, 12), 0)
    data.set(frame.subarray(16), 12)
  }
  const ethertype = type(data, 12)
  return {
    data,
    netOffset: 14,
    // eth_type_trans(): values below 0x0600 are 802.3 lengths, not types.
    protocol: ethertype >= 0x0600 ? ethertype : 0x0004,
    pktType: opts.pktType ?? PACKET_HOST,
    ifindex: opts.ifindex ?? 1,
    hatype: opts.hatype ?? ARPHRD_ETHER,
    ...vlan,
  }
}

/** A filter context for a bare IP packet, as on a tun device or cooked `any` capture. */
export function contextFromPacket(packet: Uint8Array, opts: FrameContextOptions = {}): FilterContext {
  const version = (packet[0] ?? 0) >> 4
  return {
    data: packet,
    netOffset: 0,
    protocol: version === 6 ? 0x86dd : 0x0800,
    pktType: opts.pktType ?? PACKET_HOST,
    ifindex: opts.ifindex ?? 1,
    hatype: opts.hatype ?? 0xfffe, // ARPHRD_NONE, as tun reports
    vlanPresent: false,
  }
}

class Drop extends Error {}

function ancillary(ctx: FilterContext, x: number): number {
  switch (x) {
    case SKF_AD_PROTOCOL:
      return ctx.protocol
    case SKF_AD_PKTTYPE:
      return ctx.pktType
    case SKF_AD_IFINDEX:
      return ctx.ifindex ?? 0
    case SKF_AD_HATYPE:
      return ctx.hatype ?? 0
    case SKF_AD_VLAN_TAG:
      return ctx.vlanPresent ? (ctx.vlanTci ?? 0) : 0
    case SKF_AD_VLAN_TAG_PRESENT:
      return ctx.vlanPresent ? 1 : 0
    case SKF_AD_VLAN_TPID:
      return ctx.vlanPresent ? (ctx.vlanTpid ?? 0x8100) : 0
    default:
      throw new RangeError(`the VM does not emulate ancillary load SKF_AD_OFF+${x}`)
  }
}

/** bpf_internal_load_pointer_neg_helper() and the k ≥ 0 path, as one bounds-checked read. */
function load(ctx: FilterContext, offset: number, size: number): number {
  let at: number
  if (offset >= 0) at = offset
  else if (offset >= SKF_NET_OFF) at = ctx.netOffset + offset - SKF_NET_OFF
  else if (offset >= SKF_LL_OFF) at = offset - SKF_LL_OFF
  else throw new Drop()
  if (at < 0 || at + size > ctx.data.length) throw new Drop()
  let v = 0
  for (let i = 0; i < size; i++) v = v * 256 + (ctx.data[at + i] ?? 0)
  return v >>> 0
}

const SIZE_BYTES: Readonly<Record<number, number>> = { [BPF_W]: 4, [BPF_H]: 2, [BPF_B]: 1 }

export interface RunResult {
  /** Accept length: 0 drops. */
  result: number
  /** Instructions executed, for tests that want to see O(log n). */
  steps: number
}

/** Runs the program; returns the full result with the instruction count. */
export function runFilterTrace(prog: Uint8Array | readonly SockFilter[], ctx: FilterContext): RunResult {
  const p = prog instanceof Uint8Array ? decode(prog) : prog
  let a = 0
  let x = 0
  const mem = new Uint32Array(BPF_MEMWORDS)
  let steps = 0
  try {
    for (let pc = 0; pc < p.length; pc++) {
      const f = p[pc]
      if (f === undefined) break
      steps++
      const cls = f.code & 0x07
      const k = f.k >>> 0
      switch (cls) {
        case BPF_LD: {
          const mode = f.code & 0xe0
          const size = SIZE_BYTES[f.code & 0x18] ?? 4
          if (mode === BPF_ABS) {
            const off = k | 0
            a = off >= SKF_AD_OFF && off < 0 ? ancillary(ctx, off - SKF_AD_OFF) >>> 0 : load(ctx, off, size)
          } else if (mode === BPF_IND) a = load(ctx, (x + k) | 0, size)
          else if (mode === BPF_IMM) a = k
          else if (mode === BPF_MEM) a = mem[k] ?? 0
          else if (mode === BPF_LEN) a = ctx.data.length
          else throw new RangeError(`bad load at ${pc}`)
          break
        }
        case BPF_LDX: {
          const mode = f.code & 0xe0
          if (mode === BPF_IMM) x = k
          else if (mode === BPF_MEM) x = mem[k] ?? 0
          else if (mode === BPF_LEN) x = ctx.data.length
          else if (mode === BPF_MSH) x = (load(ctx, k | 0, 1) & 0xf) * 4
          else throw new RangeError(`bad ldx at ${pc}`)
          break
        }
        case BPF_ST:
          mem[k] = a
          break
        case BPF_STX:
          mem[k] = x
          break
        case BPF_ALU: {
          const op = f.code & 0xf0
          const v = f.code & BPF_X ? x : k
          switch (op) {
            case BPF_ADD:
              a = (a + v) >>> 0
              break
            case BPF_SUB:
              a = (a - v) >>> 0
              break
            case BPF_MUL:
              a = Math.imul(a, v) >>> 0
              break
            case BPF_DIV:
              if (v === 0) return { result: 0, steps }
              a = Math.floor(a / v) >>> 0
              break
            case BPF_MOD:
              if (v === 0) return { result: 0, steps }
              a = a % v >>> 0
              break
            case BPF_AND:
              a = (a & v) >>> 0
              break
            case BPF_OR:
              a = (a | v) >>> 0
              break
            case BPF_XOR:
              a = (a ^ v) >>> 0
              break
            case BPF_LSH:
              a = (a << (v & 31)) >>> 0
              break
            case BPF_RSH:
              a = a >>> (v & 31)
              break
            case BPF_NEG:
              a = -a >>> 0
              break
            default:
              throw new RangeError(`bad alu op at ${pc}`)
          }
          break
        }
        case BPF_JMP: {
          const op = f.code & 0xf0
          if (op === BPF_JA) {
            pc += k
            break
          }
          const v = f.code & BPF_X ? x : k
          let taken: boolean
          if (op === BPF_JEQ) taken = a === v
          else if (op === BPF_JGT) taken = a > v
          else if (op === BPF_JGE) taken = a >= v
          else if (op === BPF_JSET) taken = (a & v) !== 0
          else throw new RangeError(`bad jump at ${pc}`)
          pc += taken ? f.jt : f.jf
          break
        }
        case BPF_RET:
          return { result: (f.code & 0x18) === BPF_A ? a : k, steps }
        case BPF_MISC:
          if ((f.code & 0xf8) === BPF_TXA) a = x
          else x = a
          break
        default:
          throw new RangeError(`bad instruction class at ${pc}`)
      }
    }
  } catch (e) {
    if (e instanceof Drop) return { result: 0, steps }
    throw e
  }
  throw new RangeError('program ran off its end without a ret (the kernel would refuse to load it)')
}

/** Runs the program; returns the accept length (0 = drop). */
export function runFilter(prog: Uint8Array | readonly SockFilter[], ctx: FilterContext): number {
  return runFilterTrace(prog, ctx).result
}
