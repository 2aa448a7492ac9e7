/**
 * The rtnetlink parsers of native/netlink.cc, fed with messages crafted here from the
 * layouts in rtnetlink(7) and linux/{rtnetlink,if_addr,nexthop}.h (not from the
 * parser): addresses with and without IFA_LOCAL, point-to-point peers, IFA_FLAGS over
 * ifa_flags, gateways from RTA_GATEWAY, RTA_VIA, every RTA_MULTIPATH hop, RTA_TABLE
 * over rtm_table, nexthop objects and groups named by RTA_NH_ID, deduplication per
 * table; and malformed input (truncated attributes, lengths past the buffer, random
 * bytes), which must be skipped, never crash.
 */
import { describe, expect, it } from 'vitest'
import { loadBinding } from '../../lib/binding.js'
import { attr, message, pad4, rtmsg, u32, v4, v6 } from '../helpers/rtnl.js'

const binding = loadBinding()

const AF_INET = 2
const AF_INET6 = 10
const RTM_NEWLINK = 16
const RTM_NEWADDR = 20
const RTM_NEWROUTE = 24
const RTM_NEWNEXTHOP = 104
const IFA_ADDRESS = 1
const IFA_LOCAL = 2
const IFA_BROADCAST = 4
const IFA_FLAGS = 8
const RTA_DST = 1
const RTA_OIF = 4
const RTA_GATEWAY = 5
const RTA_MULTIPATH = 9
const RTA_TABLE = 15
const RTA_VIA = 18
const RTA_NH_ID = 30
const NHA_ID = 1
const NHA_GROUP = 2
const NHA_GATEWAY = 6

function ifaddrmsg(family: number, prefix: number, flags: number, scope: number, ifindex: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeUInt8(family, 0)
  b.writeUInt8(prefix, 1)
  b.writeUInt8(flags, 2)
  b.writeUInt8(scope, 3)
  b.writeUInt32LE(ifindex, 4)
  return b
}

function rtnexthop(ifindex: number, attrs: Buffer[]): Buffer {
  const body = Buffer.concat(attrs)
  const h = Buffer.alloc(8)
  h.writeUInt16LE(8 + body.length, 0)
  h.writeInt32LE(ifindex, 4)
  return Buffer.concat([h, body])
}

function via(family: number, addr: Buffer): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(family, 0)
  return Buffer.concat([b, addr])
}

function nhmsg(family: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeUInt8(family, 0)
  return b
}

function group(ids: number[]): Buffer {
  return Buffer.concat(ids.map((id) => Buffer.concat([u32(id), Buffer.alloc(4)])))
}

describe('rtnetlink parsing (native)', () => {
  it('reads addresses: IFA_LOCAL first, point-to-point peers, IFA_FLAGS, broadcast, IPv6 with IFA_ADDRESS only', () => {
    const msgs = Buffer.concat([
      message(RTM_NEWADDR, ifaddrmsg(AF_INET, 24, 0x80, 0, 3), [
        attr(IFA_ADDRESS, v4('198.18.0.1')),
        attr(IFA_LOCAL, v4('198.18.0.1')),
        attr(IFA_BROADCAST, v4('198.18.0.255')),
      ]),
      message(RTM_NEWADDR, ifaddrmsg(AF_INET, 32, 0x80, 0, 4), [attr(IFA_ADDRESS, v4('198.18.5.2')), attr(IFA_LOCAL, v4('198.18.5.1'))]),
      // ifa_flags is 8 bits; IFA_FLAGS carries the full 32 (0x40 tentative, 0x200 noprefixroute).
      message(RTM_NEWADDR, ifaddrmsg(AF_INET6, 64, 0x00, 0, 5), [attr(IFA_ADDRESS, v6('fd52:43dd:7::1')), attr(IFA_FLAGS, u32(0x240))]),
      message(RTM_NEWLINK, Buffer.alloc(16), [attr(3, Buffer.from('eth0\0'))]),
    ])
    const f = binding.parseRtnl(msgs)
    expect(f.addresses).toEqual([
      { address: '198.18.0.1', prefixLength: 24, ifindex: 3, flags: 0x80, scope: 0, broadcast: '198.18.0.255' },
      { address: '198.18.5.1', prefixLength: 32, ifindex: 4, flags: 0x80, scope: 0, peer: '198.18.5.2' },
      { address: 'fd52:43dd:7::1', prefixLength: 64, ifindex: 5, flags: 0x240, scope: 0 },
    ])
    expect(f.gateways).toEqual([])
  })

  it('reads every next hop: RTA_GATEWAY, RTA_TABLE over rtm_table, RTA_VIA, each multipath hop', () => {
    const msgs = Buffer.concat([
      // default via 198.18.0.2 dev 3 (main table)
      message(RTM_NEWROUTE, rtmsg(AF_INET, 254), [attr(RTA_GATEWAY, v4('198.18.0.2')), attr(RTA_OIF, u32(3))]),
      // table 1000 does not fit rtm_table: it says RT_TABLE_COMPAT (252) and RTA_TABLE has the id
      message(RTM_NEWROUTE, rtmsg(AF_INET, 252), [attr(RTA_TABLE, u32(1000)), attr(RTA_GATEWAY, v4('198.18.9.2'))]),
      // 198.18.64.0/24 nexthop via 198.18.1.2 dev 4 nexthop via 198.18.2.2 dev 5
      message(RTM_NEWROUTE, rtmsg(AF_INET, 254), [
        attr(RTA_DST, v4('198.18.64.0')),
        attr(
          RTA_MULTIPATH,
          Buffer.concat([rtnexthop(4, [attr(RTA_GATEWAY, v4('198.18.1.2'))]), rtnexthop(5, [attr(RTA_GATEWAY, v4('198.18.2.2'))])]),
        ),
      ]),
      // an IPv4 route through an IPv6 next hop (RFC 5549)
      message(RTM_NEWROUTE, rtmsg(AF_INET, 100), [attr(RTA_VIA, via(AF_INET6, v6('fd52:43dd:3::2')))]),
      // IPv6 default route
      message(RTM_NEWROUTE, rtmsg(AF_INET6, 254), [attr(RTA_GATEWAY, v6('fd52:43dd::2')), attr(RTA_OIF, u32(3))]),
      // a route without a gateway (a connected prefix) gives nothing
      message(RTM_NEWROUTE, rtmsg(AF_INET, 254), [attr(RTA_DST, v4('198.18.0.0')), attr(RTA_OIF, u32(3))]),
    ])
    expect(binding.parseRtnl(msgs).gateways).toEqual([
      { address: '198.18.0.2', table: 254, ifindex: 3 },
      { address: '198.18.9.2', table: 1000, ifindex: 0 },
      { address: '198.18.1.2', table: 254, ifindex: 4 },
      { address: '198.18.2.2', table: 254, ifindex: 5 },
      { address: 'fd52:43dd:3::2', table: 100, ifindex: 0 },
      { address: 'fd52:43dd::2', table: 254, ifindex: 3 },
    ])
  })

  it('resolves nexthop objects and groups named by RTA_NH_ID, in any message order', () => {
    const msgs = Buffer.concat([
      message(RTM_NEWROUTE, rtmsg(AF_INET, 254), [attr(RTA_NH_ID, u32(10))]),
      message(RTM_NEWROUTE, rtmsg(AF_INET, 200), [attr(RTA_NH_ID, u32(13))]),
      message(RTM_NEWNEXTHOP, nhmsg(0), [attr(NHA_ID, u32(10)), attr(NHA_GROUP, group([11, 12]))]),
      message(RTM_NEWNEXTHOP, nhmsg(AF_INET), [attr(NHA_ID, u32(11)), attr(NHA_GATEWAY, v4('198.18.3.2'))]),
      message(RTM_NEWNEXTHOP, nhmsg(AF_INET), [attr(NHA_ID, u32(12)), attr(NHA_GATEWAY, v4('198.18.4.2'))]),
      message(RTM_NEWNEXTHOP, nhmsg(AF_INET6), [attr(NHA_ID, u32(13)), attr(NHA_GATEWAY, v6('fd52:43dd:4::2'))]),
      // a route naming an object the dump did not hold: nothing, no crash
      message(RTM_NEWROUTE, rtmsg(AF_INET, 254), [attr(RTA_NH_ID, u32(99))]),
    ])
    expect(binding.parseRtnl(msgs).gateways).toEqual([
      { address: '198.18.3.2', table: 254, ifindex: 0 },
      { address: '198.18.4.2', table: 254, ifindex: 0 },
      { address: 'fd52:43dd:4::2', table: 200, ifindex: 0 },
    ])
  })

  it('lists a gateway once per table', () => {
    const gw = (table: number): Buffer => message(RTM_NEWROUTE, rtmsg(AF_INET, table), [attr(RTA_GATEWAY, v4('198.18.0.2'))])
    expect(binding.parseRtnl(Buffer.concat([gw(254), gw(254), gw(100)])).gateways).toEqual([
      { address: '198.18.0.2', table: 254, ifindex: 0 },
      { address: '198.18.0.2', table: 100, ifindex: 0 },
    ])
  })

  it('skips what it cannot trust: short attributes, lengths past the end, a wrong family length', () => {
    const good = message(RTM_NEWADDR, ifaddrmsg(AF_INET, 24, 0, 0, 1), [attr(IFA_LOCAL, v4('198.18.0.1'))])
    // An IPv4 address attribute of 2 bytes: ignored, and the message has no address left.
    const short = message(RTM_NEWADDR, ifaddrmsg(AF_INET, 24, 0, 0, 1), [attr(IFA_LOCAL, Buffer.from([198, 18]))])
    // An attribute claiming 200 bytes in a 12-byte list ends the walk.
    const lying = message(RTM_NEWROUTE, rtmsg(AF_INET, 254), [Buffer.from([200, 0, RTA_GATEWAY, 0, 198, 18, 0, 2])])
    // A message header claiming more than the buffer holds.
    const cut = good.subarray(0, good.length - 4)
    expect(binding.parseRtnl(Buffer.concat([short, lying, good])).addresses.map((a) => a.address)).toEqual(['198.18.0.1'])
    expect(binding.parseRtnl(Buffer.concat([short, lying])).gateways).toEqual([])
    expect(binding.parseRtnl(cut).addresses).toEqual([])
    expect(binding.parseRtnl(Buffer.alloc(0)).addresses).toEqual([])
  })

  it('survives random bytes and random mutations of valid messages', () => {
    const valid = Buffer.concat([
      message(RTM_NEWADDR, ifaddrmsg(AF_INET6, 64, 0, 0, 2), [attr(IFA_ADDRESS, v6('fd52:43dd::1')), attr(IFA_FLAGS, u32(0x80))]),
      message(RTM_NEWROUTE, rtmsg(AF_INET, 254), [
        attr(RTA_MULTIPATH, Buffer.concat([rtnexthop(4, [attr(RTA_GATEWAY, v4('198.18.1.2'))]), rtnexthop(5, [attr(RTA_VIA, via(AF_INET, v4('198.18.2.2')))])])),
        attr(RTA_NH_ID, u32(1)),
      ]),
      message(RTM_NEWNEXTHOP, nhmsg(0), [attr(NHA_ID, u32(1)), attr(NHA_GROUP, group([2, 3, 4]))]),
    ])
    let seed = 12345
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0
      return seed % n
    }
    for (let i = 0; i < 20_000; i++) {
      const b = i % 2 === 0 ? Buffer.from(valid) : Buffer.alloc(rand(300))
      const flips = 1 + rand(8)
      for (let k = 0; k < flips && b.length > 0; k++) b[rand(b.length)] = rand(256)
      const f = binding.parseRtnl(b)
      expect(Array.isArray(f.addresses) && Array.isArray(f.gateways)).toBe(true)
    }
  })
})
