// libFuzzer target for packet_parse: both entries, under ASan and UBSan, with the
// record's invariants checked on every input. The same file is linked into
// parse_selftest (without libFuzzer), whose seeded mutation loop calls
// LLVMFuzzerTestOneInput directly, so the invariants live in exactly one place.
//
// Input layout: bytes 0-1 pick the entry and the FrameMeta; the rest is the frame, copied
// into an allocation of exactly its size so ASan flags a read one byte past the capture
// (libFuzzer's own buffer would hide it behind the selector bytes in front).
//   byte 0 bit 0     0 = ParseEthernet, 1 = ParseNetwork
//   byte 0 bit 1     meta.vlan_valid
//   byte 0 bits 2-3  ParseNetwork's ethertype: IPv4, IPv6, 802.1Q, 802.1ad
//   byte 0 bits 4-5  meta.wire_len: unknown (0), = captured, captured + 1000, 70000
//   byte 0 bits 6-7  meta.vlan_tci: 0, 0xefff (PCP/DEI set), 0x0064, 0xffff
//   byte 1 bits 0-1  meta.link_len: 0, 14, 18, 4 ("captured" above includes it)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "../packet_parse.h"

namespace portanoia::fuzz {

[[noreturn]] void Fail(const char* what, int line) {
  std::fprintf(stderr, "parse_fuzz: invariant violated (parse_fuzz.cc:%d): %s\n", line, what);
  std::abort();
}

#define PN_CHECK(cond)                         \
  do {                                         \
    if (!(cond)) ::portanoia::fuzz::Fail(#cond, __LINE__); \
  } while (0)

namespace {

constexpr uint16_t kParserFlags = kFlagFragment | kFlagIpOptions | kFlagVlan |
                                  kFlagTruncated | kFlagExtHeaders | kFlagIpv4 | kFlagSrcMac |
                                  kFlagTcpOptsMore | kFlagTcpOptsBad;
constexpr uint8_t kFuzzMac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

bool Contains(const uint8_t* hay, size_t hay_len, const uint8_t* needle, size_t needle_len) {
  if (needle_len > hay_len) return false;
  for (size_t i = 0; i + needle_len <= hay_len; ++i) {
    if (std::memcmp(hay + i, needle, needle_len) == 0) return true;
  }
  return false;
}

bool KindFitsProto(uint8_t proto, uint8_t kind_byte) {
  const auto kind = static_cast<ScanKind>(kind_byte);
  const bool transport = proto == 6 || proto == 17 || proto == 132;
  if (kind == ScanKind::kIpProto) return !transport;
  if (kind == ScanKind::kFragment) return transport;
  switch (proto) {
    case 6:
      return kind == ScanKind::kSyn || kind == ScanKind::kFin || kind == ScanKind::kNull ||
             kind == ScanKind::kXmas || kind == ScanKind::kAck || kind == ScanKind::kMaimon ||
             kind == ScanKind::kRst || kind == ScanKind::kOddFlags;
    case 17:
      return kind == ScanKind::kUdp;
    case 132:
      return kind == ScanKind::kSctpInit || kind == ScanKind::kSctpCookieEcho ||
             kind == ScanKind::kSctpOther;
    default:
      return false;
  }
}

}  // namespace

// Checks one parse result against everything the contract promises. `frame` is what the
// entry saw, so "read from the frame" can be checked by looking for the bytes in it;
// `frame_len` is the captured length the record describes (len, plus meta.link_len for
// ParseNetwork).
void CheckParse(ParseResult result, const HitRecord& rec, const uint8_t* frame, size_t len,
                size_t frame_len, const FrameMeta& meta) {
  PN_CHECK(static_cast<uint8_t>(result) <= static_cast<uint8_t>(ParseResult::kMalformed));
  if (result != ParseResult::kHit) {
    static const HitRecord kZero{};
    PN_CHECK(std::memcmp(&rec, &kZero, sizeof rec) == 0);
    return;
  }

  PN_CHECK(rec.family == 4 || rec.family == 6);
  PN_CHECK((rec.family == 4) == ((rec.flags & kFlagIpv4) != 0));
  PN_CHECK((rec.flags & ~kParserFlags) == 0);  // kFlagVerified is the listener's to set
  PN_CHECK(!(rec.flags & kFlagIpOptions) || rec.family == 4);
  PN_CHECK(!(rec.flags & kFlagExtHeaders) || rec.family == 6);
  PN_CHECK(KindFitsProto(rec.proto, rec.kind));
  const bool ip_proto = rec.kind == static_cast<uint8_t>(ScanKind::kIpProto);
  // An IP protocol hit has no ports: dst_port repeats the protocol number.
  PN_CHECK(!ip_proto || (rec.src_port == 0 && rec.dst_port == rec.proto));
  PN_CHECK(rec.kind != static_cast<uint8_t>(ScanKind::kFragment) || (rec.flags & kFlagFragment));
  PN_CHECK(rec.proto == 6 || rec.tcp_flags == 0);
  PN_CHECK(rec.proto == 132 || rec.sctp_chunk == 0);
  if (rec.proto == 6 && rec.kind != static_cast<uint8_t>(ScanKind::kFragment)) {
    PN_CHECK(rec.kind == static_cast<uint8_t>(ClassifyTcp(rec.tcp_flags)));
  }
  if (rec.kind == static_cast<uint8_t>(ScanKind::kSctpInit)) PN_CHECK(rec.sctp_chunk == 1);
  if (rec.kind == static_cast<uint8_t>(ScanKind::kSctpCookieEcho)) PN_CHECK(rec.sctp_chunk == 10);
  if (rec.kind == static_cast<uint8_t>(ScanKind::kSctpOther)) {
    PN_CHECK(rec.sctp_chunk != 1 && rec.sctp_chunk != 10);
  }

  PN_CHECK(rec.vlan <= 4095);
  PN_CHECK(rec.vlan == 0 || (rec.flags & kFlagVlan));
  if (meta.vlan_valid) {
    PN_CHECK(rec.flags & kFlagVlan);
    PN_CHECK(rec.vlan == (meta.vlan_tci & 0x0fff));
  }
  PN_CHECK(rec.ts_ns == meta.ts_ns);
  PN_CHECK(rec.ifindex == meta.ifindex);
  size_t wire = meta.wire_len < frame_len ? frame_len : meta.wire_len;
  PN_CHECK(rec.wire_len == (wire > 0xffff ? 0xffff : wire));
  PN_CHECK(!(rec.flags & kFlagTruncated) || meta.wire_len > frame_len);

  // Provenance: the addresses and the port pair must be bytes of this frame.
  if (rec.family == 4) {
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    PN_CHECK(std::memcmp(rec.src, kMapped, 12) == 0);
    PN_CHECK(std::memcmp(rec.dst, kMapped, 12) == 0);
    PN_CHECK(rec.ip_id <= 0xffff);
    PN_CHECK(Contains(frame, len, rec.src + 12, 4));
    PN_CHECK(Contains(frame, len, rec.dst + 12, 4));
    PN_CHECK(len >= (ip_proto ? 20u : 24u));
  } else {
    PN_CHECK(rec.ip_id == 0 || (rec.flags & kFlagFragment));
    PN_CHECK(Contains(frame, len, rec.src, 16));
    PN_CHECK(Contains(frame, len, rec.dst, 16));
    PN_CHECK(len >= (ip_proto ? 40u : 44u));
  }
  const uint8_t ports[4] = {static_cast<uint8_t>(rec.src_port >> 8),
                            static_cast<uint8_t>(rec.src_port & 0xff),
                            static_cast<uint8_t>(rec.dst_port >> 8),
                            static_cast<uint8_t>(rec.dst_port & 0xff)};
  PN_CHECK(ip_proto || Contains(frame, len, ports, 4));

  // TCP fields only on a classified TCP hit; option kinds past the count stay zero.
  const bool tcp = rec.proto == 6 && rec.kind != static_cast<uint8_t>(ScanKind::kFragment);
  if (!tcp) {
    PN_CHECK(rec.tcp_window == 0 && rec.tcp_mss == 0 && rec.tcp_wscale == 0 && rec.tcp_ts_val == 0);
    PN_CHECK(rec.tcp_opt_count == 0);
    PN_CHECK((rec.flags & (kFlagTcpOptsMore | kFlagTcpOptsBad)) == 0);
  }
  for (size_t i = rec.tcp_opt_count; i < kTcpOptKinds; i++) PN_CHECK(rec.tcp_opts[i] == 0);
  PN_CHECK(((rec.flags & kFlagTcpOptsMore) != 0) == (rec.tcp_opt_count > kTcpOptKinds));
  // An option list fits in 40 bytes, so at most 40 kinds (all NOP, or NOPs and one EOL).
  PN_CHECK(rec.tcp_opt_count <= 40);
  for (uint8_t b : rec.reserved) PN_CHECK(b == 0);
}

// Runs one entry twice, once into a record pre-filled with garbage, and demands the same
// answer: zero-initialisation must not depend on what the caller's memory held.
ParseResult RunAndCheck(bool network, const uint8_t* frame, size_t len, uint16_t ethertype,
                        const FrameMeta& meta, HitRecord* out) {
  HitRecord dirty;
  std::memset(&dirty, 0xa5, sizeof dirty);
  HitRecord clean{};
  const ParseResult first = network ? ParseNetwork(frame, len, ethertype, meta, &dirty)
                                    : ParseEthernet(frame, len, meta, &dirty);
  const ParseResult second = network ? ParseNetwork(frame, len, ethertype, meta, &clean)
                                     : ParseEthernet(frame, len, meta, &clean);
  PN_CHECK(first == second);
  PN_CHECK(std::memcmp(&dirty, &clean, sizeof clean) == 0);
  CheckParse(first, clean, frame, len, network ? len + meta.link_len : len, meta);
  if (first == ParseResult::kHit) {
    // The source MAC is the Ethernet frame's own, or the one the link layer gave.
    static const uint8_t kNoMac[6] = {0, 0, 0, 0, 0, 0};
    const uint8_t* mac = network ? meta.src_mac : frame + 6;
    PN_CHECK(((clean.flags & kFlagSrcMac) != 0) == (mac != nullptr));
    PN_CHECK(std::memcmp(clean.src_mac, mac != nullptr ? mac : kNoMac, 6) == 0);
  }
  *out = clean;
  return first;
}

}  // namespace portanoia::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace portanoia;
  if (size < 2) return 0;
  const uint8_t selector = data[0];
  const bool network = (selector & 1) != 0;
  const size_t len = size - 2;

  static const uint16_t kEthertypes[4] = {0x0800, 0x86dd, 0x8100, 0x88a8};
  static const uint16_t kTcis[4] = {0x0000, 0xefff, 0x0064, 0xffff};
  static const uint32_t kLinkLens[4] = {0, 14, 18, 4};
  FrameMeta meta;
  meta.link_len = kLinkLens[data[1] & 3];
  if ((data[1] & 4) != 0) meta.src_mac = fuzz::kFuzzMac;
  const size_t captured = network ? len + meta.link_len : len;
  meta.ts_ns = 0x1122334455667788ull;
  meta.ifindex = 7;
  meta.vlan_valid = (selector & 0x02) != 0;
  meta.vlan_tci = kTcis[(selector >> 6) & 3];
  switch ((selector >> 4) & 3) {
    case 0: meta.wire_len = 0; break;
    case 1: meta.wire_len = static_cast<uint32_t>(captured); break;
    case 2: meta.wire_len = static_cast<uint32_t>(captured + 1000); break;
    default: meta.wire_len = 70000; break;
  }

  // Exactly-sized copy: new[] of zero bytes is still a distinct allocation ASan guards.
  std::unique_ptr<uint8_t[]> frame(new uint8_t[len]);
  if (len > 0) std::memcpy(frame.get(), data + 2, len);
  HitRecord rec;
  fuzz::RunAndCheck(network, frame.get(), len, kEthertypes[(selector >> 2) & 3], meta, &rec);
  return 0;
}
