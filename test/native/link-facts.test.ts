/**
 * Attribution's kernel questions, parsed and built without a kernel: the one-object
 * rtnetlink answers of native/netlink.cc (a route to one address with its type, output
 * interface, next hop and preferred source; a neighbour entry with its state, flags
 * and link-layer address; a link with its master, lower device, kind, VLAN id and
 * hardware address) fed with messages crafted here from rtnetlink(7) and the uapi
 * headers, and the link probes of native/link_probe.cc (an ARP request in RFC 5227's
 * probe form, a neighbour solicitation with its source link-layer option, and the
 * replies to them) checked byte by byte against RFC 826, RFC 5227 and RFC 4861.
 * Malformed input is skipped, never trusted.
 */
import { describe, expect, it } from 'vitest'
import { loadBinding } from '../../lib/binding.js'
import { attr, message, rtmsg, u32, v4, v6 } from '../helpers/rtnl.js'

const binding = loadBinding()

const AF_INET = 2
const AF_INET6 = 10
const AF_BRIDGE = 7
const RTM_NEWLINK = 16
const RTM_NEWROUTE = 24
const RTM_NEWNEIGH = 28
const RTA_OIF = 4
const RTA_GATEWAY = 5
const RTA_PREFSRC = 7
const RTA_TABLE = 15
const NDA_DST = 1
const NDA_LLADDR = 2
const IFLA_ADDRESS = 1
const IFLA_IFNAME = 3
const IFLA_LINK = 5
const IFLA_MASTER = 10
const IFLA_LINKINFO = 18
const IFLA_INFO_KIND = 1
const IFLA_INFO_DATA = 2
const IFLA_VLAN_ID = 1
const NUD_REACHABLE = 0x02
const NUD_STALE = 0x04
const NUD_FAILED = 0x20
const NTF_ROUTER = 0x80

function ndmsg(family: number, ifindex: number, state: number, flags = 0): Buffer {
  const b = Buffer.alloc(12)
  b.writeUInt8(family, 0)
  b.writeInt32LE(ifindex, 4)
  b.writeUInt16LE(state, 8)
  b.writeUInt8(flags, 10)
  return b
}

function ifinfomsg(ifindex: number, type = 1, flags = 0x1043): Buffer {
  const b = Buffer.alloc(16)
  b.writeUInt16LE(type, 2)
  b.writeInt32LE(ifindex, 4)
  b.writeUInt32LE(flags, 8)
  return b
}

const mac = (text: string): Buffer => Buffer.from(text.split(':').map((h) => Number.parseInt(h, 16)))
const cstr = (text: string): Buffer => Buffer.from(`${text}\0`)
const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(v, 0)
  return b
}

describe('one-object rtnetlink answers (native)', () => {
  it('a route: type, output interface, gateway, preferred source, RTA_TABLE over rtm_table', () => {
    const onLink = message(RTM_NEWROUTE, rtmsg(AF_INET, 254), [attr(RTA_OIF, u32(7)), attr(RTA_PREFSRC, v4('198.18.0.1'))])
    const viaGw = message(RTM_NEWROUTE, rtmsg(AF_INET6, 252), [
      attr(RTA_TABLE, u32(1000)),
      attr(RTA_OIF, u32(9)),
      attr(RTA_GATEWAY, v6('fd52:43dd::1')),
    ])
    const local = message(RTM_NEWROUTE, rtmsg(AF_INET, 255, 2), [attr(RTA_OIF, u32(1))])
    const { routes } = binding.parseRtnlObjects(Buffer.concat([onLink, viaGw, local]))
    expect(routes).toEqual([
      { type: 1, oif: 7, table: 254, prefsrc: '198.18.0.1' },
      { type: 1, oif: 9, table: 1000, gateway: 'fd52:43dd::1' },
      { type: 2, oif: 1, table: 255 },
    ])
  })

  it('a neighbour entry: address, interface, NUD state, flags, link-layer address when it has one', () => {
    const reachable = message(RTM_NEWNEIGH, ndmsg(AF_INET, 4, NUD_REACHABLE), [attr(NDA_DST, v4('198.18.0.2')), attr(NDA_LLADDR, mac('02:52:00:00:00:02'))])
    const router = message(RTM_NEWNEIGH, ndmsg(AF_INET6, 5, NUD_STALE, NTF_ROUTER), [attr(NDA_DST, v6('fd52:43dd::1')), attr(NDA_LLADDR, mac('02:52:00:00:01:01'))])
    const failed = message(RTM_NEWNEIGH, ndmsg(AF_INET, 4, NUD_FAILED), [attr(NDA_DST, v4('198.18.0.9'))])
    // A bridge FDB entry has no NDA_DST: not a neighbour of an address.
    const fdb = message(RTM_NEWNEIGH, ndmsg(AF_BRIDGE, 6, NUD_REACHABLE), [attr(NDA_LLADDR, mac('02:52:00:00:00:07'))])
    const { neighbours } = binding.parseRtnlObjects(Buffer.concat([reachable, router, failed, fdb]))
    expect(neighbours).toEqual([
      { address: '198.18.0.2', ifindex: 4, state: NUD_REACHABLE, flags: 0, mac: '02:52:00:00:00:02' },
      { address: 'fd52:43dd::1', ifindex: 5, state: NUD_STALE, flags: NTF_ROUTER, mac: '02:52:00:00:01:01' },
      { address: '198.18.0.9', ifindex: 4, state: NUD_FAILED, flags: 0 },
    ])
  })

  it('a link: name, master, lower device, kind, VLAN id only for kind vlan, hardware address', () => {
    const vlan = message(RTM_NEWLINK, ifinfomsg(12), [
      attr(IFLA_IFNAME, cstr('eth0.100')),
      attr(IFLA_LINK, u32(2)),
      attr(IFLA_ADDRESS, mac('02:52:00:00:00:01')),
      attr(IFLA_LINKINFO, Buffer.concat([attr(IFLA_INFO_KIND, cstr('vlan')), attr(IFLA_INFO_DATA, attr(IFLA_VLAN_ID, u16(100)))])),
    ])
    // Attribute 1 of a bridge's data is IFLA_BR_FORWARD_DELAY, not a VLAN id.
    const bridge = message(RTM_NEWLINK, ifinfomsg(3), [
      attr(IFLA_IFNAME, cstr('br0')),
      attr(IFLA_LINKINFO, Buffer.concat([attr(IFLA_INFO_KIND, cstr('bridge')), attr(IFLA_INFO_DATA, attr(1, u32(1500)))])),
    ])
    const port = message(RTM_NEWLINK, ifinfomsg(4), [attr(IFLA_IFNAME, cstr('veth7')), attr(IFLA_MASTER, u32(3))])
    const { links } = binding.parseRtnlObjects(Buffer.concat([vlan, bridge, port]))
    expect(links).toEqual([
      { ifindex: 12, name: 'eth0.100', type: 1, flags: 0x1043, master: 0, link: 2, kind: 'vlan', vlan: 100, mac: '02:52:00:00:00:01' },
      { ifindex: 3, name: 'br0', type: 1, flags: 0x1043, master: 0, link: 0, kind: 'bridge' },
      { ifindex: 4, name: 'veth7', type: 1, flags: 0x1043, master: 3, link: 0, kind: '' },
    ])
  })

  it('skips what is malformed: a truncated header, an attribute running past its message, random bytes', () => {
    const good = message(RTM_NEWNEIGH, ndmsg(AF_INET, 4, NUD_REACHABLE), [attr(NDA_DST, v4('198.18.0.2'))])
    const short = good.subarray(0, 20)
    const lying = Buffer.from(good)
    lying.writeUInt16LE(200, 16 + 12) // NDA_DST claims 200 bytes
    expect(binding.parseRtnlObjects(short).neighbours).toEqual([])
    expect(binding.parseRtnlObjects(lying).neighbours).toEqual([])
    for (let i = 0; i < 200; i++) {
      const junk = Buffer.from(Array.from({ length: 64 + (i % 64) }, (_, j) => (j * 131 + i * 7) & 0xff))
      expect(() => binding.parseRtnlObjects(junk)).not.toThrow()
    }
  })
})

describe('link probes (native)', () => {
  const p = binding.probePackets

  it('an ARP request in the probe form: Ethernet/IPv4, op 1, our MAC, sender address 0.0.0.0, target IP (RFC 826, RFC 5227)', () => {
    expect(p.arpProbe('02:52:00:00:00:01', '198.18.0.7').toString('hex')).toBe(
      ['0001', '0800', '06', '04', '0001', '025200000001', '00000000', '000000000000', 'c6120007'].join(''),
    )
  })

  it('a neighbour solicitation: type 135, the target, a source link-layer option (RFC 4861 4.3)', () => {
    expect(p.neighSolicit('02:52:00:00:00:01', 'fd52:43dd::7').toString('hex')).toBe(
      ['87', '00', '0000', '00000000', 'fd5243dd000000000000000000000007', '01', '01', '025200000001'].join(''),
    )
  })

  it('reads an ARP reply and a neighbour advertisement with its target link-layer option', () => {
    const reply = Buffer.from(['0001', '0800', '06', '04', '0002', '025200000002', 'c6120002', '025200000001', '00000000'].join(''), 'hex')
    expect(p.parseArp(reply)).toEqual({ address: '198.18.0.2', mac: '02:52:00:00:00:02', ifindex: 0 })
    const request = Buffer.from(reply)
    request.writeUInt16BE(1, 6)
    expect(p.parseArp(request)).toBeNull()
    const na = Buffer.from(['88', '00', '0000', '60000000', 'fd5243dd000000000000000000000002', '02', '01', '025200000002'].join(''), 'hex')
    expect(p.parseNa(na)).toEqual({ address: 'fd52:43dd::2', mac: '02:52:00:00:00:02', ifindex: 0 })
    expect(p.parseNa(na.subarray(0, 24))).toBeNull()
    const zeroLength = Buffer.from(na)
    zeroLength.writeUInt8(0, 25)
    expect(p.parseNa(zeroLength)).toBeNull()
    expect(p.parseArp(reply.subarray(0, 27))).toBeNull()
  })
})
