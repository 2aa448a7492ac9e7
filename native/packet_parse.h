// Frame parsing and scan classification: pure functions over a byte span, no I/O,
// no allocation, no napi. The capture thread calls ParseNetwork for every frame the
// kernel filter passed; the addon's test entry and the fuzz harness call both
// entries. Invariants: never read outside [data, data + len); never produce a hit
// whose fields were not read from the frame (anything absent stays zero); every
// early return leaves *out fully initialised.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hit_record.h"

namespace portanoia {

// What the link layer (the kernel, for AF_PACKET) already told us about the frame.
struct FrameMeta {
  uint64_t ts_ns = 0;
  uint32_t ifindex = 0;
  uint32_t wire_len = 0;      // tp_len: bytes on the wire (may exceed the captured length)
  // ParseNetwork only: link-header bytes before `data` that wire_len counts (tp_net -
  // tp_mac on a SOCK_RAW ring). It keeps truncation detection honest: a network header
  // claiming more than the wire carried is malformed, not a truncated capture.
  uint32_t link_len = 0;
  uint16_t vlan_tci = 0;      // tag the kernel stripped (TP_STATUS_VLAN_VALID)
  bool vlan_valid = false;
  // ParseNetwork only: the frame's 6-byte link-layer source (sockaddr_ll.sll_addr when
  // sll_halen is 6), or nullptr when the link has none. ParseEthernet reads the frame's own.
  const uint8_t* src_mac = nullptr;
};

enum class ParseResult : uint8_t {
  kHit = 0,             // *out holds a classified TCP/UDP/SCTP probe, or a packet of another
                        // IP protocol (kind kIpProto)
  kNotIp,               // not IPv4/IPv6 (after VLAN tags)
  kNotTransport,        // no longer produced (every IP protocol is a hit); kept for the numbering
  kNonFirstFragment,    // a fragment that carries no transport ports: any fragment with a
                        // non-zero offset (whatever its protocol), or a first fragment
                        // holding fewer than 4 transport bytes
  kMalformed,           // lengths that contradict each other or the capture (including a
                        // snap length too short to reach the ports or the TCP flags)
};

// Hit semantics worth knowing on the consumer side:
//  - kind kIpProto: an IPv4 packet whose protocol, or an IPv6 packet whose last next header
//    (after the extension headers the parser walks; ESP and No Next Header end the walk), is
//    not TCP, UDP or SCTP. proto and dst_port hold that protocol number, src_port is 0.
//  - kind kFragment: a first fragment with both ports but an incomplete fixed transport
//    header (TCP < 20 bytes or options past the fragment, UDP < 8, SCTP < 13). tcp_flags
//    is filled when the fragment reaches byte 13, and then only for information.
//  - SCTP without a chunk (a bare 12-byte common header, unfragmented) is kSctpOther with
//    sctp_chunk 0, indistinguishable from a DATA chunk.
//  - TCP hits carry the window field and a summary of the options (MSS, window scale, TSval,
//    the kinds in wire order); a walk that meets an option longer than the header stops
//    there with kFlagTcpOptsBad. Fragment hits carry none of it.
//  - wire_len is max(meta.wire_len, captured length + meta.link_len for ParseNetwork),
//    saturated at 65535; kFlagTruncated means the IP header declared bytes that the
//    capture lacks but the wire carried. kFlagVlan comes from
//    meta.vlan_valid (id = meta.vlan_tci & 0xfff) or else the first in-band tag.

// Parses from the network header. `ethertype` is the protocol the link layer
// announced (sll_protocol, host order); 802.1Q / 802.1ad tags still in the data
// (QinQ inner tags the kernel did not strip) are skipped here.
ParseResult ParseNetwork(const uint8_t* data, size_t len, uint16_t ethertype,
                         const FrameMeta& meta, HitRecord* out);

// Parses a whole Ethernet II frame (destination MAC first), with any number of
// in-band 802.1Q / 802.1ad tags, then continues as ParseNetwork.
ParseResult ParseEthernet(const uint8_t* frame, size_t len, const FrameMeta& meta,
                          HitRecord* out);

// Scan kind of a TCP flag byte (ECE, CWR are ignored: ECN-capable stacks set them on SYNs).
ScanKind ClassifyTcp(uint8_t flags);

}  // namespace portanoia
