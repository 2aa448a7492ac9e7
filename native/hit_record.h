// The HitRecord: one fixed-size, 96-byte record per probe, written by the capture
// thread (or by the parser's test entry) and read by the TypeScript decoder. This
// header is the single source of truth for the layout: the static_asserts pin every
// offset, addon.cc exports them, and lib/binding.ts refuses to load a binary whose
// layout differs from the decoder's. Changing a field means changing all three.
// The first 64 bytes are what a probe is (addresses, ports, kind, flags); bytes 64..95
// are attribution evidence from the same frame (link-layer source, TCP window and a
// summary of the TCP options, enough to tell nmap, masscan and zmap probes apart).
// 96 = 1.5 cache lines: the ring copies records in runs, so a record straddling a line
// costs nothing extra per record, and the TS decoder reads it as 24 aligned 32-bit words.
#pragma once

#include <cstddef>
#include <cstdint>

namespace portanoia {

// Scan kinds, from the wire. The numeric values are part of the JS contract
// (lib/decode.ts maps them to names); append, never renumber.
enum class ScanKind : uint8_t {
  kNone = 0,
  kSyn = 1,
  kConnect = 2,  // a completed handshake, reported by a tripwire listener
  kFin = 3,
  kNull = 4,
  kXmas = 5,     // FIN+PSH+URG
  kAck = 6,      // ACK only: nmap's ACK and Window scans
  kMaimon = 7,   // FIN+ACK
  kRst = 8,
  kOddFlags = 9,
  kUdp = 10,
  kSctpInit = 11,
  kSctpCookieEcho = 12,
  kSctpOther = 13,
  kFragment = 14,  // a first fragment whose transport header is incomplete
  kIpProto = 15,   // any packet of a watched IP protocol: proto = dst_port = the protocol number
};

// Bits of HitRecord::flags.
enum HitFlag : uint16_t {
  kFlagFragment = 1u << 0,    // the packet is an IP fragment (IPv4 MF/offset, IPv6 fragment header)
  kFlagIpOptions = 1u << 1,   // IPv4 options present
  kFlagVlan = 1u << 2,        // at least one 802.1Q/802.1ad tag (vlan holds the outer id)
  kFlagTruncated = 1u << 3,   // the capture holds fewer bytes than the wire frame
  kFlagVerified = 1u << 4,    // the source completed a TCP handshake (kind connect)
  kFlagExtHeaders = 1u << 5,  // IPv6 extension headers before the transport header
  kFlagIpv4 = 1u << 6,        // addresses are IPv4 (stored as ::ffff:a.b.c.d)
  kFlagSrcMac = 1u << 7,      // src_mac holds the frame's 6-byte link-layer source
  kFlagTcpOptsMore = 1u << 8, // the TCP header held more options than tcp_opts records
  kFlagTcpOptsBad = 1u << 9,  // an option's length ran past the TCP header: the walk stopped there
};

// Capacity of HitRecord::tcp_opts.
inline constexpr size_t kTcpOptKinds = 12;

struct HitRecord {
  uint64_t ts_ns;      // capture time, CLOCK_REALTIME nanoseconds (kernel timestamp)
  uint8_t src[16];     // network order; IPv4 as IPv4-mapped IPv6
  uint8_t dst[16];
  uint16_t src_port;   // host order
  uint16_t dst_port;   // host order
  uint32_t ifindex;    // 0 when unknown (verified connects come from accept())
  uint8_t family;      // 4 or 6
  uint8_t proto;       // IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP, or any other (kIpProto)
  uint8_t kind;        // ScanKind
  uint8_t tcp_flags;   // raw TCP flag byte (CWR ECE URG ACK PSH RST SYN FIN)
  uint8_t ttl;         // IPv4 TTL or IPv6 hop limit; 0 when unknown
  uint8_t sctp_chunk;  // first SCTP chunk type
  uint16_t vlan;       // outer VLAN id when kFlagVlan
  uint16_t flags;      // HitFlag bits
  uint16_t wire_len;   // frame length on the wire, saturated at 65535
  uint32_t ip_id;      // IPv4 identification or IPv6 fragment identification
  // ---- attribution evidence (all zero when the frame did not carry it) ----
  uint8_t src_mac[6];  // link-layer source address, when kFlagSrcMac
  uint16_t tcp_window; // TCP window field, host order (unscaled)
  uint16_t tcp_mss;    // MSS option value; 0 when absent
  uint8_t tcp_wscale;  // window scale option shift; 0 when absent (tcp_opts says whether it was there)
  uint8_t tcp_opt_count;  // options walked (NOP and EOL included), saturated at 255
  uint8_t tcp_opts[kTcpOptKinds];  // option kinds in wire order (0 EOL, 1 NOP, 2 MSS, 3 WS, 4 SACK-permitted, 8 TS, ...)
  uint32_t tcp_ts_val; // timestamp option TSval, host order; 0 when absent
  uint8_t reserved[4]; // zero; room for issue 11 without another layout change
};

inline constexpr size_t kHitRecordSize = 96;

static_assert(sizeof(HitRecord) == kHitRecordSize, "HitRecord must stay 96 bytes");
static_assert(offsetof(HitRecord, ts_ns) == 0);
static_assert(offsetof(HitRecord, src) == 8);
static_assert(offsetof(HitRecord, dst) == 24);
static_assert(offsetof(HitRecord, src_port) == 40);
static_assert(offsetof(HitRecord, dst_port) == 42);
static_assert(offsetof(HitRecord, ifindex) == 44);
static_assert(offsetof(HitRecord, family) == 48);
static_assert(offsetof(HitRecord, proto) == 49);
static_assert(offsetof(HitRecord, kind) == 50);
static_assert(offsetof(HitRecord, tcp_flags) == 51);
static_assert(offsetof(HitRecord, ttl) == 52);
static_assert(offsetof(HitRecord, sctp_chunk) == 53);
static_assert(offsetof(HitRecord, vlan) == 54);
static_assert(offsetof(HitRecord, flags) == 56);
static_assert(offsetof(HitRecord, wire_len) == 58);
static_assert(offsetof(HitRecord, ip_id) == 60);
static_assert(offsetof(HitRecord, src_mac) == 64);
static_assert(offsetof(HitRecord, tcp_window) == 70);
static_assert(offsetof(HitRecord, tcp_mss) == 72);
static_assert(offsetof(HitRecord, tcp_wscale) == 74);
static_assert(offsetof(HitRecord, tcp_opt_count) == 75);
static_assert(offsetof(HitRecord, tcp_opts) == 76);
static_assert(offsetof(HitRecord, tcp_ts_val) == 88);
static_assert(offsetof(HitRecord, reserved) == 92);

// The layout as exported to JS: name → offset, in declaration order.
struct FieldOffset {
  const char* name;
  size_t offset;
};
inline constexpr FieldOffset kHitRecordFields[] = {
    {"tsNs", offsetof(HitRecord, ts_ns)},         {"src", offsetof(HitRecord, src)},
    {"dst", offsetof(HitRecord, dst)},            {"srcPort", offsetof(HitRecord, src_port)},
    {"dstPort", offsetof(HitRecord, dst_port)},   {"ifindex", offsetof(HitRecord, ifindex)},
    {"family", offsetof(HitRecord, family)},      {"proto", offsetof(HitRecord, proto)},
    {"kind", offsetof(HitRecord, kind)},          {"tcpFlags", offsetof(HitRecord, tcp_flags)},
    {"ttl", offsetof(HitRecord, ttl)},            {"sctpChunk", offsetof(HitRecord, sctp_chunk)},
    {"vlan", offsetof(HitRecord, vlan)},          {"flags", offsetof(HitRecord, flags)},
    {"wireLen", offsetof(HitRecord, wire_len)},   {"ipId", offsetof(HitRecord, ip_id)},
    {"srcMac", offsetof(HitRecord, src_mac)},     {"tcpWindow", offsetof(HitRecord, tcp_window)},
    {"tcpMss", offsetof(HitRecord, tcp_mss)},     {"tcpWscale", offsetof(HitRecord, tcp_wscale)},
    {"tcpOptCount", offsetof(HitRecord, tcp_opt_count)}, {"tcpOpts", offsetof(HitRecord, tcp_opts)},
    {"tcpTsVal", offsetof(HitRecord, tcp_ts_val)}, {"reserved", offsetof(HitRecord, reserved)},
};

}  // namespace portanoia
