// Capture: see capture.h. Open() and the listener / filter calls run on the JS
// thread; Run() and everything it calls run on the capture thread, which owns the
// ring walk, the listener accepts and the running totals. The thread processes at
// most one lap of the ring between polls, then does maintenance (listener changes,
// kernel statistics, the stop flag), as Suricata's AF_PACKET source does. An accepted
// connect is held until the frame of its handshake's final ACK has been walked, so
// JS sees a connection's hits in wire order (syn, ack, then the verified connect).
#include "capture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "netns.h"
#include "packet_parse.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

namespace portanoia {

namespace {

constexpr uint32_t kBatch = 64;
constexpr size_t kSeenSlots = 4096;           // dedup table, power of two
constexpr uint64_t kDuplicateWindowNs = 5'000'000;  // 5 ms: one frame crossing a bridge
constexpr uint64_t kStatsIntervalNs = 50'000'000;
// How long a verified connect waits for its handshake's ACK frame before it is sent
// anyway; far above a retire timeout, so it only matters when that frame is lost.
constexpr uint64_t kConnectHoldNs = 50'000'000;
constexpr size_t kMaxPendingConnects = 1024;
constexpr uint8_t kTcpAckFlag = 0x10;
// The express lane runs while, over the last interval, the interface received fewer
// packets a second than this (each costs the kernel one more filter run on the receiving
// core: ~100k/s × tens of ns is well under 1 % of a core) and the sensor saw fewer hits
// (each wakes the capture thread on its own). It goes off at once when either is
// exceeded and comes back after two quiet intervals.
constexpr uint64_t kTuneIntervalNs = 50'000'000;
constexpr uint64_t kExpressMaxInterfacePps = 100'000;
constexpr uint64_t kExpressMaxHitsPps = 2'000;
constexpr uint64_t kExpressQuietIntervals = 2;
// More frames than this in one drain of the lane is a burst: off now, not at the next tune.
constexpr uint32_t kExpressBurst = 32;
// After the lane goes off, main-ring copies are still matched for this long: the filter
// swap is RCU, so a frame may pass the old program a moment after the call returned, and
// its express copy is read in the next lap.
constexpr uint64_t kExpressGraceNs = 20'000'000;

uint64_t NowNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

// The exact set: 1024 words per transport (TCP, UDP, SCTP), then 4 for IP protocols.
constexpr size_t kPortBitWords = 3 * 1024 + 4;

int ProtoIndex(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return 0;
    case IPPROTO_UDP: return 1;
    case IPPROTO_SCTP: return 2;
    default: return -1;
  }
}

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

uint64_t FrameKey(const HitRecord& r) {
  uint64_t a, b, c, d;
  std::memcpy(&a, r.src, 8);
  std::memcpy(&b, r.src + 8, 8);
  std::memcpy(&c, r.dst, 8);
  std::memcpy(&d, r.dst + 8, 8);
  uint64_t h = Mix(Mix(Mix(Mix(0, a), b), c), d);
  h = Mix(h, uint64_t(r.src_port) << 48 | uint64_t(r.dst_port) << 32 | uint64_t(r.proto) << 24 |
                 uint64_t(r.tcp_flags) << 16 | uint64_t(r.sctp_chunk) << 8 | r.kind);
  return Mix(h, uint64_t(r.ip_id) << 16 | r.wire_len);
}

// The connection a record belongs to, as seen from the sensor: both records (the ACK
// frame and the accepted socket) carry IPv4 as mapped IPv6, so the key is family-blind.
uint64_t TupleKey(const HitRecord& r) {
  uint64_t a, b, c, d;
  std::memcpy(&a, r.src, 8);
  std::memcpy(&b, r.src + 8, 8);
  std::memcpy(&c, r.dst, 8);
  std::memcpy(&d, r.dst + 8, 8);
  const uint64_t h = Mix(Mix(Mix(Mix(0, a), b), c), d);
  return Mix(h, uint64_t(r.src_port) << 16 | r.dst_port) | 1;  // never 0: 0 marks an empty slot
}

// Everything in a record but its timestamp, which the express lane and the main ring
// take separately: the key CopyMatcher pairs the two copies of a frame by.
uint64_t RecordKey(const HitRecord& r) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(&r);
  uint64_t h = 0;
  for (size_t at = sizeof(r.ts_ns); at < sizeof(HitRecord); at += 8) {
    uint64_t w;
    std::memcpy(&w, bytes + at, 8);
    h = Mix(h, w);
  }
  return h;
}

void SetAddress(const sockaddr_storage& ss, uint8_t out[16], uint16_t* port, bool* v4) {
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    std::memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out + 12, &sin.sin_addr, 4);
    *port = ntohs(sin.sin_port);
    *v4 = true;
    return;
  }
  const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
  std::memcpy(out, &sin6.sin6_addr, 16);
  *port = ntohs(sin6.sin6_port);
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  *v4 = std::memcmp(out, kMapped, 12) == 0;
}

}  // namespace

Capture::Capture(const CaptureOptions& options)
    : options_(options),
      ring_(options.ring_records),
      port_bits_(new std::atomic<uint64_t>[kPortBitWords]()),
      // Only a socket on every interface can see one frame twice (a bridge port and the
      // bridge, a VLAN device and its parent); a socket bound to one ifindex cannot.
      seen_(options.dedup && (options.interface.empty() || options.interface == "any") ? kSeenSlots : 0,
            SeenFrame{0, 0, 0}) {
  ApplyPortSet(options.ports, false);
}

std::unique_ptr<Capture> Capture::Open(const CaptureOptions& options, SysError* err) {
  std::unique_ptr<Capture> capture(new Capture(options));
  NetnsScope netns(options.netns);
  if (!netns.ok()) {
    *err = SysError{netns.err_no(), netns.syscall(), options.netns};
    return nullptr;
  }
  unsigned ifindex = 0;
  if (!options.interface.empty() && options.interface != "any") {
    ifindex = if_nametoindex(options.interface.c_str());
    if (ifindex == 0) {
      *err = SysError{ENODEV, "if_nametoindex", options.interface};
      return nullptr;
    }
  }
  // Protocol 0 receives nothing until bind(), so no unfiltered frame can reach the
  // ring between socket() and SO_ATTACH_FILTER.
  const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = SysError{errno, "socket", ""};
    return nullptr;
  }
  capture->fd_ = fd;
  int one = 1;
  // Our own replies (SYN/ACK, RST) never matter; dropping them before the filter
  // also saves the filter run. Old kernels lack it; the filter drops them too.
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(options.filter.size());
  prog.filter = const_cast<sock_filter*>(options.filter.data());
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
    *err = SysError{errno, "setsockopt", "SO_ATTACH_FILTER"};
    return nullptr;
  }
  const char* syscall = "";
  if (int e = capture->tpacket_.Setup(fd, options.geometry, &syscall); e != 0) {
    *err = SysError{e, syscall, "PACKET_RX_RING"};
    return nullptr;
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(ifindex);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
    *err = SysError{errno, "bind", options.interface};
    return nullptr;
  }
  if (options.express) {
    // Best effort: without the lane the capture is complete, only slower to hand over a
    // lone probe. Both are opened here, inside the capture's namespace.
    const char* lane_syscall = "";
    capture->has_express_ = capture->express_.Open(ifindex, options.filter, &lane_syscall) == 0;
    if (capture->has_express_) capture->iface_packets_.Open(options.interface);
  }
  capture->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (capture->wake_fd_ < 0) {
    *err = SysError{errno, "eventfd", ""};
    return nullptr;
  }
  return capture;
}

Capture::~Capture() {
  Stop();
  for (const Listener& l : listeners_) close(l.fd);
  for (int fd : retired_fds_) close(fd);
  if (wake_fd_ >= 0) close(wake_fd_);
  if (fd_ >= 0) close(fd_);
}

bool Capture::Start(Notify notify, SysError* err) {
  if (started_) return true;
  notify_ = std::move(notify);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    *err = SysError{e.code().value(), "pthread_create", ""};
    return false;
  }
  started_ = true;
  return true;
}

void Capture::Stop() {
  if (!started_) {
    ended_.store(true, std::memory_order_release);
    return;
  }
  stop_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
  if (thread_.joinable()) thread_.join();
}

bool Capture::ArmDoorbell() {
  // Pairs with the release store of ended_ at the end of Run().
  return doorbell_.Arm([this] { return !ring_.EmptyForConsumer() || ended_.load(std::memory_order_acquire); });
}

void Capture::RingDoorbell() {
  unrung_ = 0;
  const bool woke = doorbell_.Ring([this] {
    if (notify_) notify_();
  });
  if (woke) wakeups_.fetch_add(1, std::memory_order_relaxed);
}

SysError Capture::Error() const {
  std::lock_guard<std::mutex> lock(error_mutex_);
  return error_;
}

void Capture::Fail(int err_no, const char* syscall) {
  std::lock_guard<std::mutex> lock(error_mutex_);
  if (error_.err_no == 0) error_ = SysError{err_no, syscall, options_.interface};
}

void Capture::ApplyPortSet(const PortSet& ports, bool widen_only) {
  const std::vector<uint64_t>* sets[4] = {&ports.tcp, &ports.udp, &ports.sctp, &ports.ip};
  for (int p = 0; p < 4; p++) {
    const size_t words = p == 3 ? 4 : 1024;
    for (size_t w = 0; w < words; w++) {
      const uint64_t bits = w < sets[p]->size() ? (*sets[p])[w] : 0;
      std::atomic<uint64_t>& word = port_bits_[size_t(p) * 1024 + w];
      if (widen_only) {
        word.fetch_or(bits, std::memory_order_relaxed);
      } else {
        word.store(bits, std::memory_order_relaxed);
      }
    }
  }
}

bool Capture::InPortSet(uint8_t proto, uint16_t port) const {
  int p = ProtoIndex(proto);
  // Any other protocol is an IP protocol tripwire: its bit is the protocol number.
  if (p < 0) {
    p = 3;
    port = proto;
  }
  const uint64_t word = port_bits_[size_t(p) * 1024 + (port >> 6)].load(std::memory_order_relaxed);
  return ((word >> (port & 63)) & 1) != 0;
}

bool Capture::SetFilter(const std::vector<sock_filter>& filter, const PortSet& ports,
                        SysError* err) {
  // The set before widening, restored when the kernel refuses the program: a failed
  // call must leave the exact set as it was, not the union of old and new.
  std::vector<uint64_t> before(kPortBitWords);
  for (size_t i = 0; i < before.size(); i++) before[i] = port_bits_[i].load(std::memory_order_relaxed);
  ApplyPortSet(ports, true);
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(filter.size());
  prog.filter = const_cast<sock_filter*>(filter.data());
  // SO_ATTACH_FILTER swaps the program under RCU: every frame sees the old or the new
  // one, so ports present in both are never missed.
  if (setsockopt(fd_, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
    *err = SysError{errno, "setsockopt", "SO_ATTACH_FILTER"};
    for (size_t i = 0; i < before.size(); i++) port_bits_[i].store(before[i], std::memory_order_relaxed);
    return false;
  }
  ApplyPortSet(ports, false);
  // The lane only ever reports frames the main ring also has, so its program may change
  // a moment later than the main one.
  if (has_express_) express_.SetFilter(filter);
  return true;
}

bool Capture::AddListener(uint16_t port, SysError* err) {
  {
    std::lock_guard<std::mutex> lock(listeners_mutex_);
    for (const Listener& l : listeners_) {
      if (l.port == port) return true;
    }
  }
  NetnsScope netns(options_.netns);
  if (!netns.ok()) {
    *err = SysError{netns.err_no(), netns.syscall(), options_.netns};
    return false;
  }
  const std::string what = std::to_string(port) + "/tcp";
  int family = AF_INET6;
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && errno == EAFNOSUPPORT) {
    family = AF_INET;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) {
    *err = SysError{errno, "socket", what};
    return false;
  }
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET6) {
    // One dual-stack socket serves IPv4 (as mapped addresses) and IPv6.
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_any;
    sin6.sin6_port = htons(port);
    len = sizeof(sin6);
  } else {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
    sin.sin_port = htons(port);
    len = sizeof(sin);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, SOMAXCONN) != 0) {
    const int e = errno;
    close(fd);
    *err = SysError{e, "bind", what};
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(listeners_mutex_);
    listeners_.push_back(Listener{port, fd});
  }
  listeners_dirty_.store(true, std::memory_order_release);
  const uint64_t wake = 1;
  ssize_t ignored = write(wake_fd_, &wake, sizeof(wake));
  (void)ignored;
  return true;
}

void Capture::RemoveListener(uint16_t port) {
  {
    std::lock_guard<std::mutex> lock(listeners_mutex_);
    auto it = std::find_if(listeners_.begin(), listeners_.end(),
                           [port](const Listener& l) { return l.port == port; });
    if (it == listeners_.end()) return;
    if (started_ && !ended_.load(std::memory_order_acquire)) {
      retired_fds_.push_back(it->fd);  // the capture thread closes it
    } else {
      close(it->fd);
    }
    listeners_.erase(it);
  }
  listeners_dirty_.store(true, std::memory_order_release);
  const uint64_t wake = 1;
  ssize_t ignored = write(wake_fd_, &wake, sizeof(wake));
  (void)ignored;
}

std::vector<uint16_t> Capture::ListenerPorts() const {
  std::lock_guard<std::mutex> lock(listeners_mutex_);
  std::vector<uint16_t> ports;
  for (const Listener& l : listeners_) ports.push_back(l.port);
  return ports;
}

CaptureStats Capture::Stats() const {
  CaptureStats s;
  s.kernel_packets = kernel_packets_.load(std::memory_order_relaxed);
  s.kernel_drops = kernel_drops_.load(std::memory_order_relaxed);
  s.kernel_freezes = kernel_freezes_.load(std::memory_order_relaxed);
  s.frames = frames_.load(std::memory_order_relaxed);
  s.hits = hits_.load(std::memory_order_relaxed);
  s.ring_drops = ring_.Dropped();
  s.not_tripwire = not_tripwire_.load(std::memory_order_relaxed);
  s.malformed = malformed_.load(std::memory_order_relaxed);
  s.duplicates = duplicates_.load(std::memory_order_relaxed);
  s.connects = connects_.load(std::memory_order_relaxed);
  s.blocks = blocks_.load(std::memory_order_relaxed);
  s.express_hits = express_hits_.load(std::memory_order_relaxed);
  s.express_copies = express_copies_.load(std::memory_order_relaxed);
  s.express_switches = express_switches_.load(std::memory_order_relaxed);
  s.wakeups = wakeups_.load(std::memory_order_relaxed);
  s.express_active = has_express_ && express_.active();
  return s;
}

std::string Capture::InterfaceName(uint32_t ifindex) const {
  NetnsScope netns(options_.netns);
  char name[IF_NAMESIZE] = {0};
  if (!netns.ok() || if_indextoname(ifindex, name) == nullptr) return "";
  return name;
}

void Capture::FoldKernelStats() {
  // PACKET_STATISTICS resets the kernel's counters on every read, so we keep running
  // totals (as gopacket's afpacket does).
  tpacket_stats_v3 st{};
  socklen_t len = sizeof(st);
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &len) != 0) return;
  kernel_packets_.fetch_add(st.tp_packets, std::memory_order_relaxed);
  kernel_drops_.fetch_add(st.tp_drops, std::memory_order_relaxed);
  kernel_freezes_.fetch_add(st.tp_freeze_q_cnt, std::memory_order_relaxed);
}

void Capture::Publish(const HitRecord* records, uint32_t n) {
  if (n == 0) return;
  const uint32_t room = ring_.Reserve(n);
  for (uint32_t i = 0; i < room; i++) *ring_.Slot(i) = records[i];
  ring_.Publish(room);
  if (room < n) ring_.CountDropped(n - room);  // drop-newest: queued hits are kept
  hits_.fetch_add(room, std::memory_order_relaxed);
  // The doorbell rings once a pass of Run's loop, after everything the pass publishes
  // (RingPending), not per 64-record batch: a consumer faster than the walk otherwise
  // caught up, slept and was woken again within one hand-over (at the generator's ceiling
  // 530-740 JS wake-ups a second, up to ~1,200 with a faster decoder, against ~460 passes;
  // ~17 us of the JS thread's CPU each). A quarter of the ring unrung wakes it anyway, so a
  // long lap cannot fill the ring behind a sleeping consumer.
  unrung_ += room;
  if (unrung_ >= ring_.Capacity() / 4) RingDoorbell();
}

void Capture::RingPending() {
  if (unrung_ > 0) RingDoorbell();
}

bool Capture::IsDuplicate(const HitRecord& record) {
  if (seen_.empty()) return false;
  const uint64_t key = FrameKey(record);
  SeenFrame& slot = seen_[key & (kSeenSlots - 1)];
  if (slot.key == key && slot.ifindex != record.ifindex &&
      record.ts_ns - slot.ts_ns < kDuplicateWindowNs) {
    return true;
  }
  slot = SeenFrame{key, record.ts_ns, record.ifindex};
  return false;
}

void Capture::TakeFrame(const uint8_t* net, size_t len, uint16_t ethertype, const FrameMeta& meta,
                        CopyMatcher::Path path, Batch* batch, FrameCounts* counts) {
  // A frame is counted once, by the path that reports it: the main ring counts every frame
  // it walks (WalkBlock) and takes back the copies the lane reported first; the lane
  // counts only the frames it reports. Frames the lane passes that are no hit (a superset
  // filter) are counted by the main ring when it walks them.
  const bool express = path == CopyMatcher::Path::kExpress;
  HitRecord& rec = batch->records[batch->n];
  const ParseResult r = ParseNetwork(net, len, ethertype, meta, &rec);
  if (r != ParseResult::kHit) {
    if (express) return;
    if (r == ParseResult::kMalformed) {
      counts->malformed++;
    } else {
      counts->not_tripwire++;
    }
    return;
  }
  if (!InPortSet(rec.proto, rec.dst_port)) {
    if (!express) counts->not_tripwire++;
    return;
  }
  if (has_express_) {
    // Express copies always wait for their main-ring partner; main-ring copies are
    // matched only while the lane may have reported them.
    const bool track = express || track_ring_;
    if ((track || matcher_.Pending() > 0) && !matcher_.FirstCopy(path, RecordKey(rec), rec.ts_ns, track)) {
      counts->express_copies++;
      if (!express) counts->frames--;  // the lane reported (and counted) this frame
      return;
    }
    if (express) counts->frames++;
  }
  if (IsDuplicate(rec)) {
    counts->duplicates++;
    return;
  }
  if (express) counts->express_hits++;
  const bool ack = rec.proto == IPPROTO_TCP && (rec.tcp_flags & kTcpAckFlag) != 0;
  const uint64_t key = ack ? NoteAck(rec) : 0;
  if (++batch->n == kBatch) Flush(batch, counts);
  // A held connect goes right behind the ACK that completed its handshake.
  for (size_t k = 0; key != 0 && k < pending_connects_.size();) {
    if (pending_connects_[k].key != key) {
      k++;
      continue;
    }
    batch->records[batch->n] = pending_connects_[k].record;
    pending_connects_.erase(pending_connects_.begin() + static_cast<std::ptrdiff_t>(k));
    if (++batch->n == kBatch) Flush(batch, counts);
  }
}

void Capture::Flush(Batch* batch, FrameCounts* counts) {
  // Counters first, on every path that publishes (a full batch in the middle of a block,
  // the end of a block, the express lane): a consumer that has a hit then sees the counts
  // of every frame up to it (stats() right after reading a sentinel). The ring's release
  // store in Publish orders these relaxed adds before the records.
  frames_.fetch_add(counts->frames, std::memory_order_relaxed);
  not_tripwire_.fetch_add(counts->not_tripwire, std::memory_order_relaxed);
  malformed_.fetch_add(counts->malformed, std::memory_order_relaxed);
  duplicates_.fetch_add(counts->duplicates, std::memory_order_relaxed);
  express_copies_.fetch_add(counts->express_copies, std::memory_order_relaxed);
  express_hits_.fetch_add(counts->express_hits, std::memory_order_relaxed);
  *counts = FrameCounts{};
  Publish(batch->records, batch->n);
  batch->n = 0;
}

bool Capture::WalkBlock(tpacket_block_desc* block) {
  const uint32_t block_size = tpacket_.block_size();
  const uint32_t count = block->hdr.bh1.num_pkts;
  uint32_t offset = block->hdr.bh1.offset_to_first_pkt;
  Batch batch;
  FrameCounts counts;
  uint64_t walked = 0;
  const auto* base = reinterpret_cast<const uint8_t*>(block);
  constexpr uint32_t kHdrLen = TPACKET_ALIGN(sizeof(tpacket3_hdr));
  for (uint32_t i = 0; i < count; i++) {
    if (offset < sizeof(tpacket_block_desc) || offset > block_size - kHdrLen - sizeof(sockaddr_ll)) break;
    const auto* hdr = reinterpret_cast<const tpacket3_hdr*>(base + offset);
    const auto* sll = reinterpret_cast<const sockaddr_ll*>(base + offset + kHdrLen);
    counts.frames++;
    walked++;
    const uint32_t mac = hdr->tp_mac, net = hdr->tp_net, snap = hdr->tp_snaplen;
    if (sll->sll_pkttype != PACKET_OUTGOING) {
      if (net < mac || net - mac > snap || uint64_t(offset) + mac + snap > block_size) {
        counts.malformed++;
      } else {
        FrameMeta meta;
        meta.ts_ns = uint64_t(hdr->tp_sec) * 1'000'000'000u + hdr->tp_nsec;
        meta.ifindex = static_cast<uint32_t>(sll->sll_ifindex);
        meta.wire_len = hdr->tp_len;
        meta.link_len = net - mac;  // tp_len counts the link header; the parser starts after it
        meta.vlan_valid = (hdr->tp_status & TP_STATUS_VLAN_VALID) != 0;
        meta.vlan_tci = static_cast<uint16_t>(hdr->hv1.tp_vlan_tci);
        // The kernel parsed the link header into sll_addr (dev_parse_header): the source.
        if (sll->sll_halen == 6) meta.src_mac = sll->sll_addr;
        TakeFrame(base + offset + net, snap - (net - mac), ntohs(sll->sll_protocol), meta,
                  CopyMatcher::Path::kRing, &batch, &counts);
      }
    }
    if (hdr->tp_next_offset == 0) break;
    offset += hdr->tp_next_offset;
  }
  ring_frames_ += walked;
  Flush(&batch, &counts);
  return true;
}

uint32_t Capture::DrainExpress() {
  Batch batch;
  FrameCounts counts;
  const uint32_t frame_size = express_.frame_size();
  uint32_t drained = 0;
  for (; drained < express_.frame_count(); drained++) {
    const tpacket2_hdr* hdr = express_.Current();
    if (hdr == nullptr) break;
    const auto* frame = reinterpret_cast<const uint8_t*>(hdr);
    const auto* sll = reinterpret_cast<const sockaddr_ll*>(frame + ExpressLane::kHdrLen);
    const uint32_t mac = hdr->tp_mac, net = hdr->tp_net, snap = hdr->tp_snaplen;
    if (sll->sll_pkttype != PACKET_OUTGOING && net >= mac && net - mac <= snap &&
        uint64_t(mac) + snap <= frame_size) {
      FrameMeta meta;
      meta.ts_ns = uint64_t(hdr->tp_sec) * 1'000'000'000u + hdr->tp_nsec;
      meta.ifindex = static_cast<uint32_t>(sll->sll_ifindex);
      meta.wire_len = hdr->tp_len;
      meta.link_len = net - mac;
      meta.vlan_valid = (hdr->tp_status & TP_STATUS_VLAN_VALID) != 0;
      meta.vlan_tci = hdr->tp_vlan_tci;
      if (sll->sll_halen == 6) meta.src_mac = sll->sll_addr;
      TakeFrame(frame + net, snap - (net - mac), ntohs(sll->sll_protocol), meta,
                CopyMatcher::Path::kExpress, &batch, &counts);
    }
    express_.Release();
  }
  Flush(&batch, &counts);
  if (drained > kExpressBurst && express_.active() && express_.SetActive(false) == 0) {
    express_switches_.fetch_add(1, std::memory_order_relaxed);
    quiet_intervals_ = 0;
    track_until_ns_ = NowNs(CLOCK_MONOTONIC) + kExpressGraceNs;
  }
  return drained;
}

void Capture::TuneExpress(uint64_t now_ns) {
  if (!has_express_ || now_ns - last_tune_ns_ < kTuneIntervalNs) return;
  const uint64_t interval = now_ns - last_tune_ns_;
  last_tune_ns_ = now_ns;
  const int64_t packets = iface_packets_.Read();
  const uint64_t hits = hits_.load(std::memory_order_relaxed);
  // An unreadable counter (no /proc/thread-self) leaves only the hit rate to judge by.
  const uint64_t iface_pps = packets >= 0 && last_iface_packets_ >= 0 && packets >= last_iface_packets_
                                 ? uint64_t(packets - last_iface_packets_) * 1'000'000'000u / interval
                                 : 0;
  const uint64_t hits_pps = (hits - last_hits_) * 1'000'000'000u / interval;
  last_iface_packets_ = packets;
  last_hits_ = hits;
  const bool quiet = iface_pps < kExpressMaxInterfacePps && hits_pps < kExpressMaxHitsPps;
  quiet_intervals_ = quiet ? quiet_intervals_ + 1 : 0;
  const bool want = quiet_intervals_ >= kExpressQuietIntervals;
  if (want != express_.active() && express_.SetActive(want) == 0) {
    express_switches_.fetch_add(1, std::memory_order_relaxed);
    if (!want) track_until_ns_ = now_ns + kExpressGraceNs;
  }
  matcher_.Expire(NowNs(CLOCK_REALTIME));
}

uint64_t Capture::NoteAck(const HitRecord& record) {
  const uint64_t key = TupleKey(record);
  recent_acks_[recent_ack_next_] = key;
  recent_ack_next_ = (recent_ack_next_ + 1) % recent_acks_.size();
  return key;
}

void Capture::FlushConnects(uint64_t now_ns, bool all) {
  if (pending_connects_.empty()) return;
  HitRecord batch[kBatch];
  uint32_t n = 0;
  size_t kept = 0;
  for (size_t i = 0; i < pending_connects_.size(); i++) {
    PendingConnect& p = pending_connects_[i];
    if (all || now_ns >= p.due_ns) {
      batch[n] = p.record;
      if (++n == kBatch) {
        Publish(batch, n);
        n = 0;
      }
    } else {
      pending_connects_[kept++] = p;
    }
  }
  Publish(batch, n);
  pending_connects_.resize(kept);
}

int Capture::PollTimeoutMs(bool busy, uint64_t now_ns) const {
  if (busy) return 0;
  int timeout = 100;
  for (const PendingConnect& p : pending_connects_) {
    const uint64_t left_ms = p.due_ns > now_ns ? (p.due_ns - now_ns + 999'999) / 1'000'000 : 0;
    if (left_ms < uint64_t(timeout)) timeout = static_cast<int>(left_ms);
  }
  return timeout;
}

uint64_t Capture::HoldUntil(bool busy, bool published, uint64_t now_ns) {
  // Each hand-over costs a wake-up on both threads (poll, eventfd, an event-loop turn and
  // a promise: ~13 + ~17 us of CPU here), whatever it carries. At a sustained 10k hits/s every
  // 1 ms retire carries ten hits, so the wake-ups, not the hits, were ~90 % of the
  // daemon's CPU (BENCHMARKS.md). While hits keep coming (the last walk published and so
  // did one within a hold and two retire periods before it), the packet socket is left out of
  // the next poll for coalesce_ms: the blocks retired meanwhile are walked, published and
  // rung for in one go. A lone probe after a quiet spell is never held, nor a busy ring
  // (a full lap walked: it must be drained), nor while the express lane is on (it is for
  // a quiet interface, and its hits are the ones a consumer waits for).
  const uint64_t previous = last_published_ns_;
  if (published) last_published_ns_ = now_ns;
  if (options_.coalesce_ms == 0 || busy || !published || express_.active()) return 0;
  // Within a hold and two retire periods: after a hold the last hand-over is a hold ago.
  const uint64_t sustained_ns =
      (uint64_t(options_.coalesce_ms) + uint64_t(options_.geometry.retire_ms) * 2u) * 1'000'000u;
  if (previous == 0 || now_ns - previous > sustained_ns) return 0;
  return now_ns + uint64_t(options_.coalesce_ms) * 1'000'000u;
}

void Capture::AcceptAll(int listen_fd) {
  const uint64_t due = NowNs(CLOCK_MONOTONIC) + kConnectHoldNs;
  for (;;) {
    sockaddr_storage peer{}, local{};
    socklen_t peer_len = sizeof(peer), local_len = sizeof(local);
    const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &peer_len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;  // EAGAIN, or a transient error (EMFILE, ECONNABORTED): poll again
    const bool named = getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) == 0;
    // Linger 0: close() sends RST and frees the socket at once, with no TIME_WAIT.
    linger lg{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    if (!named) continue;
    HitRecord rec{};
    rec.ts_ns = NowNs(CLOCK_REALTIME);
    bool v4 = false, local_v4 = false;
    SetAddress(peer, rec.src, &rec.src_port, &v4);
    SetAddress(local, rec.dst, &rec.dst_port, &local_v4);
    rec.family = v4 ? 4 : 6;
    rec.proto = IPPROTO_TCP;
    rec.kind = static_cast<uint8_t>(ScanKind::kConnect);
    rec.tcp_flags = 0x10;  // the handshake's final ACK
    rec.flags = static_cast<uint16_t>(kFlagVerified | (v4 ? kFlagIpv4 : 0));
    connects_.fetch_add(1, std::memory_order_relaxed);
    // Bounded: under a connect flood the oldest waiting connect goes out unordered.
    if (pending_connects_.size() >= kMaxPendingConnects) {
      Publish(&pending_connects_.front().record, 1);
      pending_connects_.erase(pending_connects_.begin());
    }
    const uint64_t key = TupleKey(rec);
    if (std::find(recent_acks_.begin(), recent_acks_.end(), key) != recent_acks_.end()) {
      Publish(&rec, 1);  // its ACK was walked already: wire order holds as it is
    } else {
      pending_connects_.push_back(PendingConnect{rec, key, due});
    }
  }
}

void Capture::AwaitLastBlock() {
  // The socket failed (its interface went away, typically), but frames the kernel took
  // just before may sit in the block it was filling, and that block is handed over only
  // when its retire timer fires: the timer belongs to the ring, not the device, so it
  // still does. Wait for it, bounded, so those frames reach JS before the error does.
  // tp_packets counts drops too, so accepted frames are packets - drops.
  const uint64_t deadline =
      NowNs(CLOCK_MONOTONIC) + uint64_t(options_.geometry.retire_ms) * 2'000'000u + 20'000'000u;
  for (;;) {
    for (uint32_t walked = 0; walked < tpacket_.block_count(); walked++) {
      tpacket_block_desc* block = tpacket_.CurrentBlock();
      if (block == nullptr) break;
      WalkBlock(block);
      tpacket_.ReleaseCurrentBlock();
      blocks_.fetch_add(1, std::memory_order_relaxed);
    }
    FoldKernelStats();
    const uint64_t accepted = kernel_packets_.load(std::memory_order_relaxed) -
                              kernel_drops_.load(std::memory_order_relaxed);
    if (accepted <= ring_frames_) return;
    if (NowNs(CLOCK_MONOTONIC) >= deadline || stop_.load(std::memory_order_acquire)) return;
    timespec pause{0, 1'000'000};
    nanosleep(&pause, nullptr);
  }
}

void Capture::Run() {
  // prctl names the calling thread and exists in every libc; pthread_setname_np needs
  // glibc 2.34 as linked here, above the prebuild's glibc baseline.
  prctl(PR_SET_NAME, "portanoia-cap", 0, 0, 0);
  std::vector<pollfd> fds;
  std::vector<int> retired;
  // fds: the packet socket, the wake eventfd, the express lane (when there is one), then
  // one per tripwire listener.
  const size_t first_listener = has_express_ ? 3 : 2;
  auto rebuild = [&] {
    fds.clear();
    fds.push_back(pollfd{fd_, POLLIN, 0});
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    if (has_express_) fds.push_back(pollfd{express_.fd(), POLLIN, 0});
    std::lock_guard<std::mutex> lock(listeners_mutex_);
    for (const Listener& l : listeners_) fds.push_back(pollfd{l.fd, POLLIN, 0});
    retired.swap(retired_fds_);
  };
  listeners_dirty_.store(false, std::memory_order_relaxed);
  rebuild();
  uint64_t last_stats = NowNs(CLOCK_MONOTONIC);
  last_tune_ns_ = last_stats;
  last_hits_ = hits_.load(std::memory_order_relaxed);
  last_iface_packets_ = iface_packets_.Read();
  // The lane starts on (Open attached the tripwire program): a sensor starts quiet.
  quiet_intervals_ = kExpressQuietIntervals;
  bool busy = false;
  uint64_t hold_until = 0;
  while (!stop_.load(std::memory_order_acquire)) {
    if (listeners_dirty_.exchange(false, std::memory_order_acq_rel)) {
      rebuild();
      // Retired listeners are out of the poll set now; closing them is safe.
      for (int fd : retired) close(fd);
      retired.clear();
    }
    // A hold leaves the packet socket (and the lane) out of this poll until it ends; the
    // wake eventfd and the listeners stay in, so stop and handshakes are not delayed.
    const uint64_t before_poll = NowNs(CLOCK_MONOTONIC);
    // The lane coming on (traffic just stopped) ends a hold: its frames are never held.
    const bool holding = hold_until > before_poll && !express_.active();
    fds[0].events = holding ? 0 : POLLIN;
    if (has_express_) fds[2].events = holding ? 0 : POLLIN;
    int timeout = PollTimeoutMs(busy, before_poll);
    if (holding) {
      const int left_ms = int((hold_until - before_poll + 999'999) / 1'000'000);
      if (timeout > left_ms) timeout = left_ms;
    }
    const int ready = poll(fds.data(), fds.size(), timeout);
    if (ready < 0 && errno != EINTR) {
      Fail(errno, "poll");
      break;
    }
    // Still holding (woken early by the eventfd or a listener): the ring waits.
    const bool held = holding && NowNs(CLOCK_MONOTONIC) < hold_until;
    if (ready > 0 && (fds[0].revents & (POLLERR | POLLNVAL)) != 0) {
      int so_error = 0;
      socklen_t len = sizeof(so_error);
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so_error, &len);
      Fail(so_error != 0 ? so_error : EIO, "poll");
      AwaitLastBlock();
      break;
    }
    if (ready > 0 && (fds[1].revents & POLLIN) != 0) {
      uint64_t value = 0;
      ssize_t ignored = read(wake_fd_, &value, sizeof(value));
      (void)ignored;
    }
    for (size_t i = first_listener; ready > 0 && i < fds.size(); i++) {
      if ((fds[i].revents & POLLIN) != 0) AcceptAll(fds[i].fd);
    }
    // The express lane first: its frames are the ones a consumer is waiting for, and its
    // copies are then already known when the main ring's arrive.
    if (has_express_ && !held) {
      track_ring_ = express_.active() || NowNs(CLOCK_MONOTONIC) < track_until_ns_;
      DrainExpress();
      track_ring_ = track_ring_ || express_.active();
    }
    // At most one lap of the ring, then maintenance.
    const uint64_t hits_before = hits_.load(std::memory_order_relaxed);
    uint32_t walked = 0;
    for (; !held && walked < tpacket_.block_count(); walked++) {
      tpacket_block_desc* block = tpacket_.CurrentBlock();
      if (block == nullptr) break;
      WalkBlock(block);
      tpacket_.ReleaseCurrentBlock();
    }
    blocks_.fetch_add(walked, std::memory_order_relaxed);
    busy = walked == tpacket_.block_count();
    const uint64_t now = NowNs(CLOCK_MONOTONIC);
    if (!held) hold_until = HoldUntil(busy, hits_.load(std::memory_order_relaxed) != hits_before, now);
    FlushConnects(now, false);
    RingPending();
    TuneExpress(now);
    if (now - last_stats >= kStatsIntervalNs) {
      FoldKernelStats();
      last_stats = now;
    }
  }
  // Frames retired before stop are still handed to JS; then the final totals. Copies the
  // express lane reported are still matched here.
  track_ring_ = false;
  for (uint32_t walked = 0; walked < tpacket_.block_count(); walked++) {
    tpacket_block_desc* block = tpacket_.CurrentBlock();
    if (block == nullptr) break;
    WalkBlock(block);
    tpacket_.ReleaseCurrentBlock();
    blocks_.fetch_add(1, std::memory_order_relaxed);
  }
  FlushConnects(0, true);
  FoldKernelStats();
  for (int fd : retired) close(fd);
  // Pairs with the acquire loads of ended_ in ArmDoorbell() and Ended().
  ended_.store(true, std::memory_order_release);
  RingDoorbell();
}

}  // namespace portanoia
