// Frame parsing and scan classification (see packet_parse.h for the contract). Runs on
// the capture thread for every frame the kernel filter passed, and in tests and fuzzers.
// Everything here is a pure function of (bytes, length, meta): no allocation, no I/O, no
// statics beyond constants. Safety rests on one discipline: every read is preceded by a
// length check against the *captured* bytes, while consistency checks use the lengths the
// headers *declare*; the two differ only when the capture was truncated. Any non-hit
// result re-zeroes *out on the way out, so partial writes can never leak to a caller.
//
// Decisions the header leaves open, recorded here and in packet_parse.h:
//  - A first fragment (IPv4 MF, IPv6 M) with fewer than 4 bytes of transport header has no
//    ports, so it cannot be matched against the tripwire set: it is kNonFirstFragment
//    ("carries no transport ports"), never a hit with an invented port.
//  - A first fragment with ports but without the rest of the fixed transport header (TCP
//    < 20 bytes or data offset past the fragment, UDP < 8, SCTP < 13) is a kFragment hit;
//    the TCP flag byte is kept when the fragment reaches it (14+ bytes), but the kind stays
//    kFragment because the flags of a tiny fragment are the evasion, not the probe.
//  - An unfragmented SCTP packet with a bare 12-byte common header (no chunk) is
//    kSctpOther with sctp_chunk 0, which collides with DATA (type 0); such packets are
//    invalid (RFC 9260 requires a chunk) but are still a touch on the port.
//  - Non-first fragments are kNonFirstFragment whatever their protocol: for IPv6 the
//    fragment header's next header may name an extension header, not the transport.
#include "packet_parse.h"

namespace portanoia {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86dd;
constexpr uint16_t kEther8021Q = 0x8100;
constexpr uint16_t kEther8021ad = 0x88a8;
constexpr uint16_t kEtherQinQLegacy = 0x9100;  // pre-802.1ad vendor QinQ, still seen

constexpr size_t kEthernetHeader = 14;
constexpr size_t kVlanTag = 4;
// Real networks stack at most two or three tags; the cap bounds the loop against a frame
// made of nothing but tags.
constexpr int kMaxInBandTags = 4;
// Bounds the IPv6 chain walk. RFC 8200 order allows about eight headers; anything longer
// is an evasion attempt or garbage, and either way not worth unbounded work per frame.
constexpr int kMaxExtHeaders = 16;

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoSctp = 132;

constexpr uint8_t kIp6HopByHop = 0;
constexpr uint8_t kIp6Routing = 43;
constexpr uint8_t kIp6Fragment = 44;
constexpr uint8_t kIp6Auth = 51;
constexpr uint8_t kIp6DestOpts = 60;
constexpr uint8_t kIp6Mobility = 135;
constexpr uint8_t kIp6Hip = 139;
constexpr uint8_t kIp6Shim6 = 140;

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpAck = 0x10;
constexpr uint8_t kTcpUrg = 0x20;
constexpr uint8_t kTcpClassified = 0x3f;  // ECE (0x40) and CWR (0x80) say nothing about intent

constexpr uint8_t kTcpOptEol = 0;
constexpr uint8_t kTcpOptNop = 1;
constexpr uint8_t kTcpOptMss = 2;
constexpr uint8_t kTcpOptWscale = 3;
constexpr uint8_t kTcpOptTimestamp = 8;

constexpr uint8_t kSctpChunkInit = 1;
constexpr uint8_t kSctpChunkCookieEcho = 10;

// Byte-wise loads: frames are not aligned for us, and shifts keep UBSan quiet.
inline uint16_t Load16(const uint8_t* p) {
  return static_cast<uint16_t>((static_cast<unsigned>(p[0]) << 8) | p[1]);
}
inline uint32_t Load32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

inline bool IsTagType(uint16_t ethertype) {
  return ethertype == kEther8021Q || ethertype == kEther8021ad ||
         ethertype == kEtherQinQLegacy;
}

inline bool IsTransport(uint8_t proto) {
  return proto == kProtoTcp || proto == kProtoUdp || proto == kProtoSctp;
}

// The transport span of one IP packet. `avail` bounds reads; `declared` is what the IP
// header says the packet carries, which is what validity is judged against.
struct L4Span {
  const uint8_t* p;
  size_t avail;
  size_t declared;
  bool more_fragments;  // a first fragment: the rest of the datagram comes later
};

// The IP layer's verdict on bytes that run out: past the declared end of a first
// fragment they simply live in a later fragment; anywhere else they contradict the
// headers or the capture.
inline ParseResult RanOut(bool more_fragments) {
  return more_fragments ? ParseResult::kNonFirstFragment : ParseResult::kMalformed;
}

// The TCP option list between the fixed header and `end` (data offset, capped at the
// captured bytes): kinds in wire order, the MSS, window scale and TSval values. The options
// are read for attribution only, so a malformed list is recorded (kFlagTcpOptsBad) rather
// than making the probe malformed: the port was touched either way.
void SummarizeTcpOptions(const uint8_t* tcp, size_t end, HitRecord* out) {
  size_t i = 20;
  unsigned count = 0;
  uint16_t flags = out->flags;
  while (i < end) {
    const uint8_t kind = tcp[i];
    if (count < kTcpOptKinds) {
      out->tcp_opts[count] = kind;
    } else {
      flags |= kFlagTcpOptsMore;
    }
    if (count < 255) count++;
    if (kind == kTcpOptEol) break;
    if (kind == kTcpOptNop) {
      i++;
      continue;
    }
    if (i + 1 >= end) {
      flags |= kFlagTcpOptsBad;
      break;
    }
    const size_t len = tcp[i + 1];
    if (len < 2 || i + len > end) {
      flags |= kFlagTcpOptsBad;
      break;
    }
    if (kind == kTcpOptMss && len == 4) out->tcp_mss = Load16(tcp + i + 2);
    if (kind == kTcpOptWscale && len == 3) out->tcp_wscale = tcp[i + 2];
    if (kind == kTcpOptTimestamp && len == 10) out->tcp_ts_val = Load32(tcp + i + 2);
    i += len;
  }
  out->tcp_opt_count = static_cast<uint8_t>(count);
  out->flags = flags;
}

ParseResult ParseTransport(uint8_t proto, const L4Span& l4, HitRecord* out) {
  // Without both ports there is nothing the tripwire set could match.
  if (l4.declared < 4) return RanOut(l4.more_fragments);
  if (l4.avail < 4) return ParseResult::kMalformed;  // snap length shorter than any header

  size_t full_header = 0;
  switch (proto) {
    case kProtoTcp: full_header = 20; break;
    case kProtoUdp: full_header = 8; break;
    // In a fragment the first chunk's type is what makes the header useful; a whole
    // packet may legitimately (if invalidly) end after the common header.
    default: full_header = l4.more_fragments ? 13 : 12; break;
  }

  out->proto = proto;
  out->src_port = Load16(l4.p);
  out->dst_port = Load16(l4.p + 2);

  if (l4.declared < full_header) {
    if (!l4.more_fragments) return ParseResult::kMalformed;
    if (proto == kProtoTcp && l4.avail >= 14) out->tcp_flags = l4.p[13];
    out->kind = static_cast<uint8_t>(ScanKind::kFragment);
    return ParseResult::kHit;
  }

  switch (proto) {
    case kProtoTcp: {
      if (l4.avail < 14) return ParseResult::kMalformed;
      const size_t data_offset = static_cast<size_t>(l4.p[12] >> 4) * 4;
      out->tcp_flags = l4.p[13];
      if (data_offset < 20) return ParseResult::kMalformed;
      if (data_offset > l4.declared) {
        // Options spilling into the next fragment: the header is incomplete, which is
        // exactly what the fragment kind reports.
        if (!l4.more_fragments) return ParseResult::kMalformed;
        out->kind = static_cast<uint8_t>(ScanKind::kFragment);
        return ParseResult::kHit;
      }
      out->kind = static_cast<uint8_t>(ClassifyTcp(l4.p[13]));
      // The fixed header is complete (declared >= 20); the snap may still cut it.
      if (l4.avail >= 16) out->tcp_window = Load16(l4.p + 14);
      if (data_offset > 20) SummarizeTcpOptions(l4.p, data_offset < l4.avail ? data_offset : l4.avail, out);
      return ParseResult::kHit;
    }
    case kProtoUdp:
      // The UDP length field is not checked: the kernel would drop a mismatched datagram,
      // but the probe still touched the port and is worth reporting.
      out->kind = static_cast<uint8_t>(ScanKind::kUdp);
      return ParseResult::kHit;
    default: {
      if (l4.declared > 12) {
        if (l4.avail < 13) return ParseResult::kMalformed;
        out->sctp_chunk = l4.p[12];
      }
      ScanKind kind = ScanKind::kSctpOther;
      if (l4.declared > 12 && out->sctp_chunk == kSctpChunkInit) kind = ScanKind::kSctpInit;
      if (l4.declared > 12 && out->sctp_chunk == kSctpChunkCookieEcho) {
        kind = ScanKind::kSctpCookieEcho;
      }
      out->kind = static_cast<uint8_t>(kind);
      return ParseResult::kHit;
    }
  }
}

// A packet of any other IP protocol: a hit of kind kIpProto whose proto and dst_port are
// the protocol number (no ports). Whether that protocol is a tripwire is the caller's
// exact-set check, as for ports.
ParseResult IpProtoHit(uint8_t proto, HitRecord* out) {
  out->proto = proto;
  out->dst_port = proto;
  out->kind = static_cast<uint8_t>(ScanKind::kIpProto);
  return ParseResult::kHit;
}

// `wire` is how many network-layer bytes were on the wire (>= cap); it separates a
// truncated capture (wire > cap) from a header that lies about its length.
ParseResult ParseIpv4(const uint8_t* p, size_t cap, size_t wire, HitRecord* out) {
  if (cap < 20) return ParseResult::kMalformed;
  if ((p[0] >> 4) != 4) return ParseResult::kMalformed;
  const size_t header = static_cast<size_t>(p[0] & 0x0f) * 4;
  const size_t total = Load16(p + 2);
  if (header < 20 || total < header || total > wire) return ParseResult::kMalformed;
  if (header > cap) return ParseResult::kMalformed;  // the snap cut the options

  const uint16_t frag = Load16(p + 6);
  const bool more_fragments = (frag & 0x2000) != 0;
  if ((frag & 0x1fff) != 0) return ParseResult::kNonFirstFragment;
  const uint8_t proto = p[9];

  out->family = 4;
  out->ttl = p[8];
  out->ip_id = Load16(p + 4);
  uint16_t flags = kFlagIpv4;
  if (header > 20) flags |= kFlagIpOptions;
  if (more_fragments) flags |= kFlagFragment;
  if (total > cap) flags |= kFlagTruncated;
  out->flags = flags;
  out->src[10] = 0xff;
  out->src[11] = 0xff;
  out->dst[10] = 0xff;
  out->dst[11] = 0xff;
  for (size_t i = 0; i < 4; ++i) {
    out->src[12 + i] = p[12 + i];
    out->dst[12 + i] = p[16 + i];
  }

  if (!IsTransport(proto)) return IpProtoHit(proto, out);
  const size_t end = total < cap ? total : cap;
  return ParseTransport(proto, L4Span{p + header, end - header, total - header, more_fragments},
                        out);
}

ParseResult ParseIpv6(const uint8_t* p, size_t cap, size_t wire, HitRecord* out) {
  if (cap < 40) return ParseResult::kMalformed;
  if ((p[0] >> 4) != 6) return ParseResult::kMalformed;
  // A zero payload length would mean a jumbogram (RFC 2675); those need links with a
  // 64 KiB MTU and never carry a port probe, so they fall out below as malformed.
  const size_t total = 40 + static_cast<size_t>(Load16(p + 4));
  if (total > wire) return ParseResult::kMalformed;
  const size_t end = total < cap ? total : cap;

  uint16_t flags = 0;
  uint32_t ip_id = 0;
  bool more_fragments = false;
  uint8_t next = p[6];
  size_t off = 40;
  for (int seen = 0;; ++seen) {
    // The chain ends at a transport, or at any other protocol (ESP and No Next Header
    // included: what follows them cannot be read): an IP protocol hit below.
    const bool generic = next == kIp6HopByHop || next == kIp6Routing || next == kIp6DestOpts ||
                         next == kIp6Mobility || next == kIp6Hip || next == kIp6Shim6;
    if (!generic && next != kIp6Auth && next != kIp6Fragment) break;
    if (seen == kMaxExtHeaders) return ParseResult::kMalformed;

    // Every extension header starts with (next header, length); the fragment header's
    // second byte is reserved and its size fixed.
    if (off + 2 > total) return RanOut(more_fragments);
    if (off + 2 > end) return ParseResult::kMalformed;
    size_t size = 8;
    if (generic) size = (static_cast<size_t>(p[off + 1]) + 1) * 8;
    if (next == kIp6Auth) size = (static_cast<size_t>(p[off + 1]) + 2) * 4;
    if (off + size > total) return RanOut(more_fragments);
    if (off + size > end) return ParseResult::kMalformed;

    if (next == kIp6Fragment) {
      const uint16_t offset_flags = Load16(p + off + 2);
      flags |= kFlagFragment;
      ip_id = Load32(p + off + 4);
      if ((offset_flags >> 3) != 0) return ParseResult::kNonFirstFragment;
      // An atomic fragment (offset 0, M clear; RFC 6946) is a whole packet.
      more_fragments = more_fragments || (offset_flags & 1) != 0;
    }
    flags |= kFlagExtHeaders;
    next = p[off];
    off += size;
  }

  out->family = 6;
  out->ttl = p[7];
  out->ip_id = ip_id;
  if (total > cap) flags |= kFlagTruncated;
  out->flags = flags;
  for (size_t i = 0; i < 16; ++i) {
    out->src[i] = p[8 + i];
    out->dst[i] = p[24 + i];
  }
  if (!IsTransport(next)) return IpProtoHit(next, out);
  return ParseTransport(next, L4Span{p + off, end - off, total - off, more_fragments}, out);
}

// Shared tail of both entries. `wire` counts the on-the-wire bytes from `data` onwards
// (0 when the caller does not know), `frame_len` is the captured length of the whole frame
// the record describes.
ParseResult ParseFrom(const uint8_t* data, size_t len, uint16_t ethertype, size_t wire,
                      size_t frame_len, const FrameMeta& meta, const uint8_t* src_mac,
                      HitRecord* out) {
  // The kernel strips the outermost tag into the tpacket header when the NIC or the
  // stack untags; inner QinQ tags stay in the data and are walked below.
  bool has_vlan = meta.vlan_valid;
  uint16_t vlan = static_cast<uint16_t>(meta.vlan_tci & 0x0fff);
  size_t off = 0;
  for (int tags = 0; IsTagType(ethertype); ++tags) {
    if (tags == kMaxInBandTags) return ParseResult::kNotIp;
    if (len - off < kVlanTag) return ParseResult::kMalformed;
    if (!has_vlan) {
      has_vlan = true;
      vlan = static_cast<uint16_t>(Load16(data + off) & 0x0fff);
    }
    ethertype = Load16(data + off + 2);
    off += kVlanTag;
  }

  const size_t cap = len - off;
  size_t net_wire = wire > off ? wire - off : 0;
  if (net_wire < cap) net_wire = cap;  // tp_len never undercounts the capture

  ParseResult result = ParseResult::kNotIp;
  if (ethertype == kEtherIpv4) result = ParseIpv4(data + off, cap, net_wire, out);
  if (ethertype == kEtherIpv6) result = ParseIpv6(data + off, cap, net_wire, out);
  if (result != ParseResult::kHit) return result;

  out->ts_ns = meta.ts_ns;
  out->ifindex = meta.ifindex;
  if (src_mac != nullptr) {
    for (size_t i = 0; i < 6; ++i) out->src_mac[i] = src_mac[i];
    out->flags = static_cast<uint16_t>(out->flags | kFlagSrcMac);
  }
  if (has_vlan) {
    out->vlan = vlan;
    out->flags = static_cast<uint16_t>(out->flags | kFlagVlan);
  }
  size_t wire_len = meta.wire_len;
  if (wire_len < frame_len) wire_len = frame_len;
  out->wire_len = static_cast<uint16_t>(wire_len > 0xffff ? 0xffff : wire_len);
  return ParseResult::kHit;
}

// Enforces the header's promise that a non-hit leaves nothing behind.
inline ParseResult Finish(ParseResult result, HitRecord* out) {
  if (result != ParseResult::kHit) *out = HitRecord{};
  return result;
}

}  // namespace

ParseResult ParseNetwork(const uint8_t* data, size_t len, uint16_t ethertype,
                         const FrameMeta& meta, HitRecord* out) {
  *out = HitRecord{};
  const size_t wire = meta.wire_len > meta.link_len ? meta.wire_len - meta.link_len : 0;
  return Finish(ParseFrom(data, len, ethertype, wire, len + meta.link_len, meta, meta.src_mac, out), out);
}

ParseResult ParseEthernet(const uint8_t* frame, size_t len, const FrameMeta& meta,
                          HitRecord* out) {
  *out = HitRecord{};
  if (len < kEthernetHeader) return ParseResult::kMalformed;
  const size_t wire = meta.wire_len > kEthernetHeader ? meta.wire_len - kEthernetHeader : 0;
  return Finish(ParseFrom(frame + kEthernetHeader, len - kEthernetHeader, Load16(frame + 12),
                          wire, len, meta, frame + 6, out),
                out);
}

ScanKind ClassifyTcp(uint8_t flags) {
  switch (flags & kTcpClassified) {
    case kTcpSyn: return ScanKind::kSyn;
    case 0: return ScanKind::kNull;
    case kTcpFin: return ScanKind::kFin;
    case kTcpFin | kTcpPsh | kTcpUrg: return ScanKind::kXmas;
    case kTcpAck: return ScanKind::kAck;
    case kTcpFin | kTcpAck: return ScanKind::kMaimon;
    case kTcpRst:
    case kTcpRst | kTcpAck: return ScanKind::kRst;
    default: return ScanKind::kOddFlags;
  }
}

}  // namespace portanoia
