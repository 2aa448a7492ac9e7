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
  uint16_t vlan_tci = 0;      // tag the kernel stripped (TP_STATUS_VLAN_VALID)
  bool vlan_valid = false;
};

enum class ParseResult : uint8_t {
  kHit = 0,             // *out holds a classified TCP/UDP/SCTP probe
  kNotIp,               // not IPv4/IPv6 (after VLAN tags)
  kNotTransport,        // IP, but not TCP/UDP/SCTP (or the chain ends without one)
  kNonFirstFragment,    // a fragment that carries no transport header
  kMalformed,           // lengths that contradict each other or the capture
};

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
