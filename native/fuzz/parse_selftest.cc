// Standalone self-test for packet_parse, built with -fsanitize=address,undefined and linked
// with parse_fuzz.cc (for its invariant checker and entry point) but not with libFuzzer: the
// fallback where libFuzzer is missing, and the source of the fuzzer's seed corpus.
// It runs known-answer tests (the TCP classifier, hand-built frames for every path the
// contract names), then a seeded mutation loop over those frames through
// LLVMFuzzerTestOneInput. Usage:
//   parse_selftest [iterations=200000] [seed=1] [--corpus DIR]
// Exit status 0 means every check passed; a failed invariant aborts with its line.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../packet_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace portanoia::fuzz {
void CheckParse(ParseResult result, const HitRecord& rec, const uint8_t* frame, size_t len,
                size_t frame_len, const FrameMeta& meta);
}  // namespace portanoia::fuzz

namespace portanoia {
namespace {

using Bytes = std::vector<uint8_t>;

int g_failures = 0;

void Expect(bool ok, const char* test, const char* what, int line) {
  if (ok) return;
  ++g_failures;
  std::fprintf(stderr, "FAIL %s (parse_selftest.cc:%d): %s\n", test, line, what);
}
#define EXPECT(cond) Expect((cond), test, #cond, __LINE__)

// ---- frame builders: just enough of each header to exercise the parser ----

void Put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v & 0xff);
}
void Append(Bytes& b, const Bytes& tail) { b.insert(b.end(), tail.begin(), tail.end()); }

Bytes Ethernet(uint16_t ethertype) {
  Bytes b = {0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0, 0};
  Put16(b, 12, ethertype);
  return b;
}
Bytes Tag(uint16_t tci, uint16_t next) {
  Bytes b(4);
  Put16(b, 0, tci);
  Put16(b, 2, next);
  return b;
}
// An Ethernet header with `tags` (tpid, tci) pairs, then `inner`.
Bytes Tagged(const std::vector<std::pair<uint16_t, uint16_t>>& tags, uint16_t inner) {
  Bytes b = Ethernet(tags.empty() ? inner : tags[0].first);
  for (size_t i = 0; i < tags.size(); ++i) {
    Append(b, Tag(tags[i].second, i + 1 < tags.size() ? tags[i + 1].first : inner));
  }
  return b;
}

struct Ip4Opts {
  uint8_t proto = 6;
  uint8_t ttl = 64;
  uint16_t id = 0x1234;
  uint16_t frag = 0;        // flags + offset field as on the wire
  size_t option_words = 0;  // IHL - 5
  int total_delta = 0;      // added to the correct total length
};
Bytes Ipv4(const Ip4Opts& o, const Bytes& payload) {
  const size_t header = 20 + 4 * o.option_words;
  Bytes b(header, 0);
  b[0] = static_cast<uint8_t>(0x40 | (header / 4));
  Put16(b, 2, static_cast<uint16_t>(static_cast<int>(header + payload.size()) + o.total_delta));
  Put16(b, 4, o.id);
  Put16(b, 6, o.frag);
  b[8] = o.ttl;
  b[9] = o.proto;
  const uint8_t addrs[8] = {198, 18, 0, 1, 198, 19, 0, 2};
  std::memcpy(&b[12], addrs, 8);
  for (size_t i = 20; i < header; ++i) b[i] = 1;  // NOP options
  Append(b, payload);
  return b;
}

Bytes Ipv6(uint8_t next, const Bytes& payload, uint8_t hop_limit = 255) {
  Bytes b(40, 0);
  b[0] = 0x60;
  Put16(b, 4, static_cast<uint16_t>(payload.size()));
  b[6] = next;
  b[7] = hop_limit;
  const uint8_t src[16] = {0xfd, 0x52, 0x43, 0xdd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const uint8_t dst[16] = {0xfd, 0x52, 0x43, 0xdd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  std::memcpy(&b[8], src, 16);
  std::memcpy(&b[24], dst, 16);
  Append(b, payload);
  return b;
}
// A generic extension header of (units + 1) * 8 bytes, or AH when `ah`.
Bytes Ext6(uint8_t next, uint8_t units, const Bytes& rest, bool ah = false) {
  Bytes b(ah ? (units + 2u) * 4u : (units + 1u) * 8u, 0);
  b[0] = next;
  b[1] = units;
  Append(b, rest);
  return b;
}
Bytes Frag6(uint8_t next, uint16_t offset_units, bool more, uint32_t id, const Bytes& rest) {
  Bytes b(8, 0);
  b[0] = next;
  Put16(b, 2, static_cast<uint16_t>((offset_units << 3) | (more ? 1 : 0)));
  Put16(b, 4, static_cast<uint16_t>(id >> 16));
  Put16(b, 6, static_cast<uint16_t>(id & 0xffff));
  Append(b, rest);
  return b;
}

Bytes Tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint8_t data_offset_words = 5) {
  Bytes b(data_offset_words >= 5 ? data_offset_words * 4u : 20u, 0);
  Put16(b, 0, sport);
  Put16(b, 2, dport);
  b[12] = static_cast<uint8_t>(data_offset_words << 4);
  b[13] = flags;
  Put16(b, 14, 1024);
  return b;
}
Bytes Udp(uint16_t sport, uint16_t dport, size_t payload = 4) {
  Bytes b(8 + payload, 0x55);
  Put16(b, 0, sport);
  Put16(b, 2, dport);
  Put16(b, 4, static_cast<uint16_t>(8 + payload));
  Put16(b, 6, 0);
  return b;
}
// SCTP common header, then one chunk of `chunk_type` unless it is negative.
Bytes Sctp(uint16_t sport, uint16_t dport, int chunk_type) {
  Bytes b(12, 0);
  Put16(b, 0, sport);
  Put16(b, 2, dport);
  if (chunk_type >= 0) {
    Bytes chunk(20, 0);
    chunk[0] = static_cast<uint8_t>(chunk_type);
    Put16(chunk, 2, 20);
    Append(b, chunk);
  }
  return b;
}
Bytes Head(const Bytes& b, size_t n) { return Bytes(b.begin(), b.begin() + static_cast<long>(n)); }

FrameMeta Meta(size_t wire_len = 0) {
  FrameMeta m;
  m.ts_ns = 1700000000123456789ull;
  m.ifindex = 3;
  m.wire_len = static_cast<uint32_t>(wire_len);
  return m;
}

// Parses from an exactly-sized heap copy (so ASan sees overreads) and runs the shared
// invariant checker on the way.
ParseResult Eth(const Bytes& frame, const FrameMeta& meta, HitRecord* rec) {
  Bytes copy(frame);
  copy.shrink_to_fit();
  const ParseResult r = ParseEthernet(copy.data(), copy.size(), meta, rec);
  fuzz::CheckParse(r, *rec, copy.data(), copy.size(), copy.size(), meta);
  return r;
}
ParseResult Net(const Bytes& data, uint16_t ethertype, const FrameMeta& meta, HitRecord* rec) {
  Bytes copy(data);
  copy.shrink_to_fit();
  const ParseResult r = ParseNetwork(copy.data(), copy.size(), ethertype, meta, rec);
  fuzz::CheckParse(r, *rec, copy.data(), copy.size(), copy.size() + meta.link_len, meta);
  return r;
}

uint8_t K(ScanKind k) { return static_cast<uint8_t>(k); }

// ---- known-answer tests ----

void TestClassifier() {
  const char* test = "ClassifyTcp";
  struct Case {
    uint8_t flags;
    ScanKind kind;
  };
  const Case cases[] = {
      {0x02, ScanKind::kSyn},     {0xc2, ScanKind::kSyn},      {0x42, ScanKind::kSyn},
      {0x00, ScanKind::kNull},    {0xc0, ScanKind::kNull},     {0x01, ScanKind::kFin},
      {0x29, ScanKind::kXmas},    {0xe9, ScanKind::kXmas},     {0x10, ScanKind::kAck},
      {0x11, ScanKind::kMaimon},  {0x04, ScanKind::kRst},      {0x14, ScanKind::kRst},
      {0x12, ScanKind::kOddFlags}, {0x18, ScanKind::kOddFlags}, {0x3f, ScanKind::kOddFlags},
      {0x03, ScanKind::kOddFlags}, {0x08, ScanKind::kOddFlags}, {0x20, ScanKind::kOddFlags},
      {0x2b, ScanKind::kOddFlags}, {0x15, ScanKind::kOddFlags}, {0xff, ScanKind::kOddFlags},
  };
  for (const Case& c : cases) EXPECT(ClassifyTcp(c.flags) == c.kind);
  for (unsigned f = 0; f < 256; ++f) {
    const ScanKind kind = ClassifyTcp(static_cast<uint8_t>(f));
    EXPECT(kind == ClassifyTcp(static_cast<uint8_t>(f & 0x3f)));
    EXPECT(kind != ScanKind::kNone && kind != ScanKind::kConnect && kind != ScanKind::kFragment);
  }
}

void TestSynIpv4() {
  const char* test = "SYN/IPv4";
  const Bytes frame = [] {
    Bytes f = Ethernet(0x0800);
    Append(f, Ipv4({}, Tcp(40000, 23, 0x02)));
    f.resize(60, 0);  // Ethernet minimum: padding past the IP total length is ignored
    return f;
  }();
  HitRecord rec;
  EXPECT(Eth(frame, Meta(60), &rec) == ParseResult::kHit);
  const uint8_t src[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1};
  const uint8_t dst[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 19, 0, 2};
  EXPECT(std::memcmp(rec.src, src, 16) == 0);
  EXPECT(std::memcmp(rec.dst, dst, 16) == 0);
  EXPECT(rec.family == 4 && rec.proto == 6);
  EXPECT(rec.src_port == 40000 && rec.dst_port == 23);
  EXPECT(rec.kind == K(ScanKind::kSyn) && rec.tcp_flags == 0x02);
  EXPECT(rec.ttl == 64 && rec.ip_id == 0x1234);
  EXPECT(rec.flags == (kFlagIpv4 | kFlagSrcMac));  // ParseEthernet: the frame's own source MAC
  EXPECT(rec.ts_ns == 1700000000123456789ull && rec.ifindex == 3 && rec.wire_len == 60);
  EXPECT(rec.vlan == 0 && rec.sctp_chunk == 0);

  // The same packet from the network header, as the capture thread sees it.
  HitRecord net;
  EXPECT(Net(Bytes(frame.begin() + 14, frame.end()), 0x0800, Meta(46), &net) ==
         ParseResult::kHit);
  EXPECT(net.dst_port == 23 && net.kind == K(ScanKind::kSyn) && net.wire_len == 46);

  // ECN-setup SYN (SYN|ECE|CWR) is still a SYN; the raw byte is kept.
  Bytes ecn = Ethernet(0x0800);
  Append(ecn, Ipv4({}, Tcp(1, 2, 0xc2)));
  EXPECT(Eth(ecn, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kSyn) && rec.tcp_flags == 0xc2);

  // Unknown wire length: recorded as the captured length.
  EXPECT(Eth(ecn, Meta(0), &rec) == ParseResult::kHit && rec.wire_len == ecn.size());
}

void TestIpv4Headers() {
  const char* test = "IPv4 headers";
  HitRecord rec;
  Ip4Opts opts;
  opts.option_words = 3;
  Bytes f = Ethernet(0x0800);
  Append(f, Ipv4(opts, Tcp(1000, 8080, 0x29)));
  EXPECT(Eth(f, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.flags == (kFlagIpv4 | kFlagIpOptions | kFlagSrcMac) && rec.kind == K(ScanKind::kXmas));
  EXPECT(rec.dst_port == 8080);

  Bytes bad_version = Ethernet(0x0800);
  Append(bad_version, Ipv4({}, Tcp(1, 2, 2)));
  bad_version[14] = 0x65;
  EXPECT(Eth(bad_version, Meta(), &rec) == ParseResult::kMalformed);

  Bytes short_ihl = Ethernet(0x0800);
  Append(short_ihl, Ipv4({}, Tcp(1, 2, 2)));
  short_ihl[14] = 0x44;
  EXPECT(Eth(short_ihl, Meta(), &rec) == ParseResult::kMalformed);

  Ip4Opts tiny_total;
  tiny_total.total_delta = -21;  // total length 19 < header
  Bytes t = Ethernet(0x0800);
  Append(t, Ipv4(tiny_total, Tcp(1, 2, 2)));
  EXPECT(Eth(t, Meta(), &rec) == ParseResult::kMalformed);

  Ip4Opts icmp;
  icmp.proto = 1;
  Bytes i = Ethernet(0x0800);
  Append(i, Ipv4(icmp, Bytes(8, 0)));
  // Any other IP protocol is a hit of kind kIpProto (the capture keeps the watched ones).
  EXPECT(Eth(i, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == static_cast<uint8_t>(ScanKind::kIpProto) && rec.proto == 1 && rec.dst_port == 1 &&
         rec.src_port == 0 && rec.family == 4);

  // TCP data offset below the fixed header, or past the segment.
  Bytes doff_low = Ethernet(0x0800);
  Append(doff_low, Ipv4({}, Tcp(1, 2, 2, 4)));
  EXPECT(Eth(doff_low, Meta(), &rec) == ParseResult::kMalformed);
  Bytes doff_high = Ethernet(0x0800);
  Bytes seg = Tcp(1, 2, 2);
  seg[12] = 0xf0;
  Append(doff_high, Ipv4({}, seg));
  EXPECT(Eth(doff_high, Meta(), &rec) == ParseResult::kMalformed);

  // A segment shorter than the fixed TCP header in an unfragmented packet.
  Bytes short_tcp = Ethernet(0x0800);
  Append(short_tcp, Ipv4({}, Head(Tcp(1, 2, 2), 16)));
  EXPECT(Eth(short_tcp, Meta(), &rec) == ParseResult::kMalformed);
}

void TestTruncation() {
  const char* test = "truncation";
  HitRecord rec;
  Bytes full = Ethernet(0x0800);
  Append(full, Ipv4({}, Tcp(5555, 22, 0x01)));
  // Snapped after the TCP flags: still classifiable, marked truncated.
  const Bytes snapped = Head(full, 14 + 20 + 14);
  EXPECT(Eth(snapped, Meta(full.size()), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kFin) && (rec.flags & kFlagTruncated));
  EXPECT(rec.wire_len == full.size());
  // The same bytes with no evidence of a longer wire frame: the IP header lies.
  EXPECT(Eth(snapped, Meta(snapped.size()), &rec) == ParseResult::kMalformed);
  EXPECT(Eth(snapped, Meta(0), &rec) == ParseResult::kMalformed);
  // Snapped before the flags: the probe cannot be classified.
  EXPECT(Eth(Head(full, 14 + 20 + 10), Meta(full.size()), &rec) == ParseResult::kMalformed);
  // Snapped inside the IP header, or the Ethernet header.
  EXPECT(Eth(Head(full, 14 + 12), Meta(full.size()), &rec) == ParseResult::kMalformed);
  EXPECT(Eth(Head(full, 10), Meta(full.size()), &rec) == ParseResult::kMalformed);
  EXPECT(Eth(Bytes(), Meta(), &rec) == ParseResult::kMalformed);
  // From the network header of a SOCK_RAW ring: wire_len counts the link header too.
  FrameMeta raw = Meta(full.size());
  raw.link_len = 14;
  const Bytes net_snapped(snapped.begin() + 14, snapped.end());
  EXPECT(Net(net_snapped, 0x0800, raw, &rec) == ParseResult::kHit);
  EXPECT((rec.flags & kFlagTruncated) && rec.wire_len == full.size());
  // A complete capture whose IP total length claims 10 bytes the wire never carried: the
  // link header must not be mistaken for missing network bytes.
  Bytes liar(full.begin() + 14, full.end());
  Put16(liar, 2, static_cast<uint16_t>(liar.size() + 10));
  EXPECT(Net(liar, 0x0800, raw, &rec) == ParseResult::kMalformed);
  EXPECT(Net(Bytes(full.begin() + 14, full.end()), 0x0800, raw, &rec) == ParseResult::kHit);
  EXPECT(rec.flags == kFlagIpv4 && rec.wire_len == full.size());
  // A wire length past 64 KiB saturates.
  EXPECT(Eth(snapped, Meta(70000), &rec) == ParseResult::kHit && rec.wire_len == 0xffff);
}

void TestIpv4Fragments() {
  const char* test = "IPv4 fragments";
  HitRecord rec;
  const Bytes syn = Tcp(33000, 3389, 0x02);
  auto frag = [](uint16_t field, const Bytes& payload) {
    Ip4Opts o;
    o.frag = field;
    o.id = 0xbeef;
    Bytes f = Ethernet(0x0800);
    Append(f, Ipv4(o, payload));
    return f;
  };
  // First fragment carrying the whole TCP header: classified, flagged.
  Bytes whole = syn;
  whole.resize(24, 0);
  EXPECT(Eth(frag(0x2000, whole), Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kSyn) && rec.flags == (kFlagIpv4 | kFlagFragment | kFlagSrcMac));
  EXPECT(rec.ip_id == 0xbeef);
  // nmap -f: 8 bytes of TCP, flags in the next fragment.
  EXPECT(Eth(frag(0x2000, Head(syn, 8)), Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kFragment) && rec.dst_port == 3389 && rec.tcp_flags == 0);
  // 16 bytes: the flag byte is there and kept, the kind stays fragment.
  EXPECT(Eth(frag(0x2000, Head(syn, 16)), Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kFragment) && rec.tcp_flags == 0x02);
  // Options continuing into the next fragment.
  Bytes long_opts = Tcp(33000, 3389, 0x02, 10);
  EXPECT(Eth(frag(0x2000, Head(long_opts, 24)), Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kFragment) && rec.tcp_flags == 0x02);
  // Fewer than 4 bytes: no ports, no hit.
  EXPECT(Eth(frag(0x2000, Head(syn, 2)), Meta(), &rec) == ParseResult::kNonFirstFragment);
  EXPECT(Eth(frag(0x2000, Bytes()), Meta(), &rec) == ParseResult::kNonFirstFragment);
  // Non-first fragments, whatever they carry.
  EXPECT(Eth(frag(0x0003, syn), Meta(), &rec) == ParseResult::kNonFirstFragment);
  EXPECT(Eth(frag(0x2001, syn), Meta(), &rec) == ParseResult::kNonFirstFragment);
  // UDP: 8 bytes is the whole header; 4 is a tiny fragment.
  Ip4Opts o;
  o.proto = 17;
  o.frag = 0x2000;
  Bytes u8 = Ethernet(0x0800);
  Append(u8, Ipv4(o, Head(Udp(53, 161), 8)));
  EXPECT(Eth(u8, Meta(), &rec) == ParseResult::kHit && rec.kind == K(ScanKind::kUdp));
  Bytes u4 = Ethernet(0x0800);
  Append(u4, Ipv4(o, Head(Udp(53, 161), 4)));
  EXPECT(Eth(u4, Meta(), &rec) == ParseResult::kHit && rec.kind == K(ScanKind::kFragment));
  EXPECT(rec.dst_port == 161 && rec.proto == 17);
  // DF alone is not a fragment.
  EXPECT(Eth(frag(0x4000, syn), Meta(), &rec) == ParseResult::kHit && rec.flags == (kFlagIpv4 | kFlagSrcMac));
}

void TestIpv6() {
  const char* test = "IPv6";
  HitRecord rec;
  // UDP behind hop-by-hop, destination options, routing, an atomic fragment and AH.
  const Bytes chain =
      Ext6(60, 0,
           Ext6(43, 1,
                Ext6(44, 0, Frag6(51, 0, false, 0xcafef00d, Ext6(17, 4, Udp(5353, 1900), true)))));
  Bytes f = Ethernet(0x86dd);
  Append(f, Ipv6(0, chain, 33));
  EXPECT(Eth(f, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.family == 6 && rec.proto == 17 && rec.kind == K(ScanKind::kUdp));
  EXPECT(rec.src_port == 5353 && rec.dst_port == 1900 && rec.ttl == 33);
  EXPECT(rec.flags == (kFlagExtHeaders | kFlagFragment | kFlagSrcMac) && rec.ip_id == 0xcafef00d);
  EXPECT(rec.src[0] == 0xfd && rec.src[15] == 1 && rec.dst[15] == 2);

  Bytes plain = Ethernet(0x86dd);
  Append(plain, Ipv6(6, Tcp(1, 443, 0x10)));
  EXPECT(Eth(plain, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kAck) && rec.flags == kFlagSrcMac && rec.ip_id == 0);

  // First fragment with 8 bytes of TCP; a non-first fragment.
  Bytes tiny = Ethernet(0x86dd);
  Append(tiny, Ipv6(44, Frag6(6, 0, true, 77, Head(Tcp(9, 10, 2), 8))));
  EXPECT(Eth(tiny, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kFragment) && rec.ip_id == 77 && rec.dst_port == 10);
  Bytes later = Ethernet(0x86dd);
  Append(later, Ipv6(44, Frag6(6, 1, true, 77, Tcp(9, 10, 2))));
  EXPECT(Eth(later, Meta(), &rec) == ParseResult::kNonFirstFragment);
  // A first fragment that ends inside the extension chain (RFC 7112 forbids it).
  Bytes split = Ethernet(0x86dd);
  Append(split, Ipv6(44, Frag6(60, 0, true, 5, Head(Ext6(6, 1, Tcp(1, 2, 2)), 8))));
  EXPECT(Eth(split, Meta(), &rec) == ParseResult::kNonFirstFragment);

  // Chains that end without a transport header: IP protocol hits of their last next header.
  Bytes esp = Ethernet(0x86dd);
  Append(esp, Ipv6(0, Ext6(50, 0, Bytes(16, 0))));
  EXPECT(Eth(esp, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == static_cast<uint8_t>(ScanKind::kIpProto) && rec.proto == 50 && rec.dst_port == 50 &&
         (rec.flags & kFlagExtHeaders) != 0);
  Bytes none = Ethernet(0x86dd);
  Append(none, Ipv6(59, Bytes()));
  EXPECT(Eth(none, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == static_cast<uint8_t>(ScanKind::kIpProto) && rec.proto == 59);
  Bytes icmp6 = Ethernet(0x86dd);
  Append(icmp6, Ipv6(58, Bytes(8, 0)));
  EXPECT(Eth(icmp6, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == static_cast<uint8_t>(ScanKind::kIpProto) && rec.proto == 58 && rec.family == 6);
  Bytes gre = Ethernet(0x0800);
  Ip4Opts gre4;
  gre4.proto = 47;
  Append(gre, Ipv4(gre4, Bytes(4, 0)));
  EXPECT(Eth(gre, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == static_cast<uint8_t>(ScanKind::kIpProto) && rec.proto == 47 && rec.dst_port == 47);

  // Sixteen extension headers are walked, seventeen are refused.
  Bytes sixteen = Tcp(1, 2, 2);
  for (int i = 0; i < 16; ++i) sixteen = Ext6(i == 0 ? 6 : 60, 0, sixteen);
  Bytes ok = Ethernet(0x86dd);
  Append(ok, Ipv6(60, sixteen));
  EXPECT(Eth(ok, Meta(), &rec) == ParseResult::kHit);
  Bytes too_many = Ethernet(0x86dd);
  Append(too_many, Ipv6(60, Ext6(60, 0, sixteen)));
  EXPECT(Eth(too_many, Meta(), &rec) == ParseResult::kMalformed);

  // An extension header longer than the payload, and a payload longer than the frame.
  Bytes overlong = Ethernet(0x86dd);
  Append(overlong, Ipv6(0, Ext6(6, 0, Tcp(1, 2, 2))));
  overlong[14 + 41] = 9;
  EXPECT(Eth(overlong, Meta(), &rec) == ParseResult::kMalformed);
  Bytes liar = Ethernet(0x86dd);
  Append(liar, Ipv6(6, Tcp(1, 2, 2)));
  Put16(liar, 14 + 4, 200);
  EXPECT(Eth(liar, Meta(), &rec) == ParseResult::kMalformed);

  Bytes wrong_version = Ethernet(0x86dd);
  Append(wrong_version, Ipv4({}, Tcp(1, 2, 2)));
  wrong_version.resize(80, 0);
  EXPECT(Eth(wrong_version, Meta(), &rec) == ParseResult::kMalformed);
}

void TestSctp() {
  const char* test = "SCTP";
  HitRecord rec;
  auto probe = [&rec](const Bytes& sctp) {
    Ip4Opts o;
    o.proto = 132;
    Bytes f = Ethernet(0x0800);
    Append(f, Ipv4(o, sctp));
    return Eth(f, Meta(), &rec);
  };
  EXPECT(probe(Sctp(7, 2905, 1)) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kSctpInit) && rec.sctp_chunk == 1 && rec.proto == 132);
  EXPECT(rec.dst_port == 2905 && rec.tcp_flags == 0);
  EXPECT(probe(Sctp(7, 2905, 10)) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kSctpCookieEcho) && rec.sctp_chunk == 10);
  EXPECT(probe(Sctp(7, 2905, 6)) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kSctpOther) && rec.sctp_chunk == 6);
  EXPECT(probe(Sctp(7, 2905, -1)) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kSctpOther) && rec.sctp_chunk == 0);
  EXPECT(probe(Head(Sctp(7, 2905, 1), 8)) == ParseResult::kMalformed);

  Bytes v6 = Ethernet(0x86dd);
  Append(v6, Ipv6(44, Frag6(132, 0, true, 9, Head(Sctp(7, 2905, 1), 8))));
  EXPECT(Eth(v6, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.kind == K(ScanKind::kFragment) && rec.sctp_chunk == 0 && rec.proto == 132);
}

void TestVlan() {
  const char* test = "VLAN";
  HitRecord rec;
  const Bytes l3 = Ipv4({}, Tcp(1, 2, 0x00));

  Bytes one = Tagged({{0x8100, 0x2064}}, 0x0800);
  Append(one, l3);
  EXPECT(Eth(one, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.vlan == 100 && (rec.flags & kFlagVlan) && rec.kind == K(ScanKind::kNull));

  Bytes qinq = Tagged({{0x88a8, 200}, {0x8100, 300}}, 0x0800);
  Append(qinq, l3);
  EXPECT(Eth(qinq, Meta(), &rec) == ParseResult::kHit);
  EXPECT(rec.vlan == 200 && (rec.flags & kFlagVlan));

  Bytes legacy = Tagged({{0x9100, 10}, {0x9100, 20}, {0x8100, 30}, {0x8100, 40}}, 0x0800);
  Append(legacy, l3);
  EXPECT(Eth(legacy, Meta(), &rec) == ParseResult::kHit && rec.vlan == 10);

  Bytes five = Tagged({{0x8100, 1}, {0x8100, 2}, {0x8100, 3}, {0x8100, 4}, {0x8100, 5}}, 0x0800);
  Append(five, l3);
  EXPECT(Eth(five, Meta(), &rec) == ParseResult::kNotIp);

  Bytes cut = Tagged({{0x8100, 1}}, 0x0800);
  cut.resize(16);
  EXPECT(Eth(cut, Meta(), &rec) == ParseResult::kMalformed);

  // The kernel stripped the outer tag: its id wins over the inner one still in the data.
  FrameMeta stripped = Meta();
  stripped.vlan_valid = true;
  stripped.vlan_tci = 0xe123;
  EXPECT(Eth(one, stripped, &rec) == ParseResult::kHit && rec.vlan == 0x123);
  // ... and from the network header, where the inner tag leads the data.
  Bytes inner = Tag(300, 0x0800);
  Append(inner, l3);
  EXPECT(Net(inner, 0x8100, stripped, &rec) == ParseResult::kHit);
  EXPECT(rec.vlan == 0x123 && (rec.flags & kFlagVlan) && rec.dst_port == 2);
  // A stripped priority tag (VID 0) is still a tag.
  stripped.vlan_tci = 0xa000;
  EXPECT(Net(l3, 0x0800, stripped, &rec) == ParseResult::kHit);
  EXPECT(rec.vlan == 0 && (rec.flags & kFlagVlan));

  Bytes arp = Ethernet(0x0806);
  arp.resize(60, 0);
  EXPECT(Eth(arp, Meta(), &rec) == ParseResult::kNotIp);
  Bytes llc = Ethernet(0x0040);  // an 802.3 length, not an ethertype
  llc.resize(60, 0);
  EXPECT(Eth(llc, Meta(), &rec) == ParseResult::kNotIp);
}

// ---- seeded mutation loop ----

// splitmix64: tiny, seedable, good enough to spread mutations.
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
  uint8_t Byte() { return static_cast<uint8_t>(Next() & 0xff); }
};

std::vector<Bytes> SeedFrames() {
  std::vector<Bytes> seeds;
  auto eth = [&seeds](uint16_t type, const Bytes& l3) {
    Bytes f = Ethernet(type);
    Append(f, l3);
    seeds.push_back(f);
  };
  Ip4Opts udp4;
  udp4.proto = 17;
  Ip4Opts sctp4;
  sctp4.proto = 132;
  Ip4Opts frag4;
  frag4.frag = 0x2000;
  Ip4Opts opts4;
  opts4.option_words = 2;
  eth(0x0800, Ipv4({}, Tcp(40000, 22, 0x02)));
  eth(0x0800, Ipv4(opts4, Tcp(40000, 22, 0x29)));
  eth(0x0800, Ipv4(udp4, Udp(5000, 161)));
  eth(0x0800, Ipv4(sctp4, Sctp(1, 2905, 1)));
  eth(0x0800, Ipv4(sctp4, Sctp(1, 2905, -1)));
  eth(0x0800, Ipv4(frag4, Head(Tcp(1, 445, 0x02), 8)));
  eth(0x0800, Ipv4(frag4, Head(Tcp(1, 445, 0x02), 16)));
  eth(0x86dd, Ipv6(6, Tcp(1, 443, 0x11)));
  eth(0x86dd, Ipv6(0, Ext6(60, 0, Ext6(43, 1, Frag6(17, 0, false, 1, Udp(1, 2))))));
  eth(0x86dd, Ipv6(51, Ext6(132, 1, Sctp(1, 2, 10), true)));
  eth(0x86dd, Ipv6(44, Frag6(6, 0, true, 2, Head(Tcp(1, 2, 2), 8))));
  eth(0x86dd, Ipv6(44, Frag6(6, 3, false, 2, Tcp(1, 2, 2))));
  eth(0x86dd, Ipv6(0, Ext6(50, 0, Bytes(8, 0))));
  Bytes q = Tagged({{0x88a8, 5}, {0x8100, 6}}, 0x86dd);
  Append(q, Ipv6(17, Udp(1, 2)));
  seeds.push_back(q);
  Bytes v = Tagged({{0x8100, 7}}, 0x0800);
  Append(v, Ipv4({}, Tcp(1, 2, 0x14)));
  seeds.push_back(v);
  // A Linux-style SYN: MSS, SACK permitted, timestamps, NOP, window scale (data offset 10).
  Bytes opts = Tcp(40000, 22, 0x02, 10);
  const uint8_t kOptions[20] = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7};
  for (size_t i = 0; i < sizeof kOptions; ++i) opts[20 + i] = kOptions[i];
  eth(0x0800, Ipv4({}, opts));
  eth(0x86dd, Ipv6(6, opts));
  return seeds;
}

void Mutate(Rng& rng, Bytes& b) {
  static const uint8_t kInteresting[] = {0x00, 0x01, 0x05, 0x06, 0x08, 0x11, 0x2c, 0x3b,
                                         0x3c, 0x40, 0x45, 0x60, 0x81, 0x84, 0x86, 0x88,
                                         0x91, 0xa8, 0xdd, 0xf0, 0xff, 0x32, 0x33, 0x87};
  const size_t rounds = 1 + rng.Below(6);
  for (size_t r = 0; r < rounds; ++r) {
    switch (rng.Below(8)) {
      case 0:
        if (!b.empty()) b[rng.Below(b.size())] ^= static_cast<uint8_t>(1u << rng.Below(8));
        break;
      case 1:
        if (!b.empty()) b[rng.Below(b.size())] = rng.Byte();
        break;
      case 2:
        if (!b.empty()) {
          b[rng.Below(b.size())] = kInteresting[rng.Below(sizeof kInteresting)];
        }
        break;
      case 3:  // truncate: what a short snap length does
        b.resize(rng.Below(b.size() + 1));
        break;
      case 4:  // grow with noise: padding, trailers
        for (size_t n = rng.Below(32); n > 0; --n) b.push_back(rng.Byte());
        break;
      case 5: {  // small value into a 16-bit field: lengths, ethertypes, offsets
        if (b.size() >= 2) {
          const size_t at = rng.Below(b.size() - 1);
          Put16(b, at, static_cast<uint16_t>(rng.Below(128)));
        }
        break;
      }
      case 6: {  // insert a VLAN tag after the MACs
        if (b.size() >= 12) {
          const uint8_t tag[4] = {0x81, 0x00, rng.Byte(), rng.Byte()};
          b.insert(b.begin() + 12, tag, tag + 4);
        }
        break;
      }
      default: {  // duplicate a span: repeated headers
        if (!b.empty()) {
          const size_t from = rng.Below(b.size());
          const size_t n = rng.Below(b.size() - from + 1);
          const Bytes span(b.begin() + static_cast<long>(from),
                           b.begin() + static_cast<long>(from + n));
          b.insert(b.begin() + static_cast<long>(rng.Below(b.size() + 1)), span.begin(),
                   span.end());
        }
        break;
      }
    }
  }
}

void RunMutations(uint64_t iterations, uint64_t seed) {
  const std::vector<Bytes> seeds = SeedFrames();
  Rng rng{seed};
  for (uint64_t i = 0; i < iterations; ++i) {
    Bytes input = {rng.Byte(), rng.Byte()};  // the selector: entry and meta
    Bytes frame = seeds[rng.Below(seeds.size())];
    Mutate(rng, frame);
    // ParseNetwork starts past the MACs; feed it the network part of the frame.
    if ((input[0] & 1) && frame.size() >= 14) frame.erase(frame.begin(), frame.begin() + 14);
    Append(input, frame);
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
}

// One file per seed and per entry, named so a failing seed is easy to find.
bool WriteCorpus(const std::string& dir) {
  const std::vector<Bytes> seeds = SeedFrames();
  for (size_t i = 0; i < seeds.size(); ++i) {
    for (int entry = 0; entry < 2; ++entry) {
      // Wire length = captured; the network entry also says a 14-byte link header came first.
      Bytes input = {static_cast<uint8_t>(entry == 0 ? 0x10 : 0x11),
                     static_cast<uint8_t>(entry == 0 ? 0 : 1)};
      const size_t skip = entry == 0 ? 0 : 14;
      input.insert(input.end(), seeds[i].begin() + static_cast<long>(skip), seeds[i].end());
      const std::string path =
          dir + "/seed-" + std::to_string(i) + (entry == 0 ? "-eth" : "-net");
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (f == nullptr) return false;
      const bool ok = std::fwrite(input.data(), 1, input.size(), f) == input.size();
      if (std::fclose(f) != 0 || !ok) return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace portanoia

int main(int argc, char** argv) {
  using namespace portanoia;
  uint64_t iterations = 200000;
  uint64_t seed = 1;
  std::string corpus;
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--corpus" && i + 1 < argc) {
      corpus = argv[++i];
    } else if (positional == 0) {
      iterations = std::strtoull(argv[i], nullptr, 10);
      ++positional;
    } else {
      seed = std::strtoull(argv[i], nullptr, 10);
      ++positional;
    }
  }

  TestClassifier();
  TestSynIpv4();
  TestIpv4Headers();
  TestTruncation();
  TestIpv4Fragments();
  TestIpv6();
  TestSctp();
  TestVlan();
  if (g_failures > 0) {
    std::fprintf(stderr, "parse_selftest: %d known-answer checks failed\n", g_failures);
    return 1;
  }
  std::printf("parse_selftest: known-answer tests passed\n");

  if (!corpus.empty() && !WriteCorpus(corpus)) {
    std::fprintf(stderr, "parse_selftest: cannot write corpus to %s\n", corpus.c_str());
    return 1;
  }
  RunMutations(iterations, seed);
  std::printf("parse_selftest: %llu mutations (seed %llu) passed\n",
              static_cast<unsigned long long>(iterations), static_cast<unsigned long long>(seed));
  return 0;
}
