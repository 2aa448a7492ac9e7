// ExpressLane and InterfacePackets: see express_lane.h. The frame status word is the only
// synchronisation with the kernel, accessed with acquire / release atomics as the main
// ring's block status is (tpacket_ring.cc).
#include "express_lane.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

namespace portanoia {

namespace {

// `ret #0`: drop everything, in one instruction.
const std::vector<sock_filter> kDropAll = {sock_filter{static_cast<uint16_t>(BPF_RET | BPF_K), 0, 0, 0}};

}  // namespace

ExpressLane::~ExpressLane() {
  if (map_ != nullptr) munmap(map_, map_len_);
  if (fd_ >= 0) close(fd_);
}

int ExpressLane::Open(unsigned ifindex, const std::vector<sock_filter>& filter, const char** syscall) {
  // Protocol 0 until bind(), as for the main socket: nothing unfiltered is queued.
  const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *syscall = "socket";
    return errno;
  }
  fd_ = fd;
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
  program_ = filter;
  if (int e = Attach(program_); e != 0) {
    *syscall = "setsockopt";
    return e;
  }
  active_.store(true, std::memory_order_relaxed);
  int version = TPACKET_V2;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0) {
    *syscall = "setsockopt";
    return errno;
  }
  tpacket_req req{};
  req.tp_block_size = kFrameSize * kFrameCount;
  req.tp_block_nr = 1;
  req.tp_frame_size = kFrameSize;
  req.tp_frame_nr = kFrameCount;
  if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0) {
    *syscall = "setsockopt";
    return errno;
  }
  map_len_ = size_t{kFrameSize} * kFrameCount;
  void* map = mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    map_len_ = 0;
    *syscall = "mmap";
    return errno;
  }
  map_ = static_cast<uint8_t*>(map);
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(ifindex);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
    *syscall = "bind";
    return errno;
  }
  return 0;
}

int ExpressLane::Attach(const std::vector<sock_filter>& program) {
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program.size());
  prog.filter = const_cast<sock_filter*>(program.data());
  return setsockopt(fd_, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) == 0 ? 0 : errno;
}

int ExpressLane::SetActive(bool active) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (active == active_.load(std::memory_order_relaxed)) return 0;
  const int e = Attach(active ? program_ : kDropAll);
  if (e == 0) active_.store(active, std::memory_order_relaxed);
  return e;
}

int ExpressLane::SetFilter(const std::vector<sock_filter>& filter) {
  std::lock_guard<std::mutex> lock(mutex_);
  program_ = filter;
  return active_.load(std::memory_order_relaxed) ? Attach(program_) : 0;
}

const tpacket2_hdr* ExpressLane::Current() const {
  auto* hdr = reinterpret_cast<tpacket2_hdr*>(map_ + size_t{cursor_} * kFrameSize);
  // Pairs with the kernel's smp_wmb() + store of TP_STATUS_USER once the frame is copied.
  const uint32_t status = __atomic_load_n(&hdr->tp_status, __ATOMIC_ACQUIRE);
  return (status & TP_STATUS_USER) != 0 ? hdr : nullptr;
}

void ExpressLane::Release() {
  auto* hdr = reinterpret_cast<tpacket2_hdr*>(map_ + size_t{cursor_} * kFrameSize);
  // Pairs with the kernel's read of tp_status before it reuses the frame.
  __atomic_store_n(&hdr->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
  cursor_ = (cursor_ + 1) % kFrameCount;
}

// ---------------------------------------------------------------- InterfacePackets

InterfacePackets::~InterfacePackets() {
  if (fd_ >= 0) close(fd_);
}

bool InterfacePackets::Open(const std::string& name) {
  name_ = name == "any" ? "" : name;
  // thread-self: the namespace of this thread (NetnsScope switched it), not the process's.
  fd_ = open("/proc/thread-self/net/dev", O_RDONLY | O_CLOEXEC);
  return fd_ >= 0;
}

int64_t InterfacePackets::Read() const {
  if (fd_ < 0) return -1;
  // Enough for a few hundred interfaces; a longer file is read in part and so undercounts
  // for "any", which only makes the lane more willing to run.
  char buf[32768];
  const ssize_t n = pread(fd_, buf, sizeof(buf), 0);
  if (n <= 0) return -1;
  return ParseNetDevRx(buf, static_cast<size_t>(n), name_);
}

int64_t ParseNetDevRx(const char* text, size_t len, const std::string& name) {
  // Two header lines, then "  NAME: rx_bytes rx_packets ...", one interface per line.
  int64_t total = 0;
  bool found = false;
  size_t i = 0;
  int line = 0;
  while (i < len) {
    size_t end = i;
    while (end < len && text[end] != '\n') end++;
    if (line >= 2) {
      size_t colon = i;
      while (colon < end && text[colon] != ':') colon++;
      if (colon < end) {
        size_t start = i;
        while (start < colon && text[start] == ' ') start++;
        const std::string ifname(text + start, colon - start);
        if (name.empty() || ifname == name) {
          // Field 1 is rx_bytes, field 2 rx_packets.
          size_t p = colon + 1;
          uint64_t fields[2] = {0, 0};
          int got = 0;
          for (int f = 0; f < 2 && p < end; f++) {
            while (p < end && text[p] == ' ') p++;
            if (p >= end || text[p] < '0' || text[p] > '9') break;
            uint64_t v = 0;
            while (p < end && text[p] >= '0' && text[p] <= '9') v = v * 10 + uint64_t(text[p++] - '0');
            fields[f] = v;
            got++;
          }
          if (got == 2) {
            total += static_cast<int64_t>(fields[1]);
            found = true;
          }
        }
      }
    }
    line++;
    i = end + 1;
  }
  return found ? total : -1;
}

}  // namespace portanoia
