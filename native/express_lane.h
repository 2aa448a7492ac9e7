// The express lane: a small TPACKET_V2 ring on a second AF_PACKET socket, bound like the
// main one, that the capture thread reads while the host is quiet. TPACKET_V3 wakes its
// reader only when a block retires (a full block, or the retire timer: up to retireMs, and
// a whole jiffy on kernels before 6.18 that count it in jiffies), and reading a block the
// kernel has not retired is a race; V2 hands over every frame with its own status word
// and wakes the reader per frame. So a lone probe reaches JS in tens of microseconds
// instead of milliseconds. The main ring still receives every frame (it stays the
// complete record: an express frame that overflowed this small ring is still there), and
// CopyMatcher (copy_matcher.h) reports each frame once.
//
// Cost control, the reason the lane can be off: an AF_PACKET socket costs the kernel a
// filter run per packet on its interface, on the receiving core. The lane carries the
// tripwire program only while the capture thread judges the interface quiet (few packets
// per second on it, few hits) and a one-instruction drop-all program otherwise; the swap
// is one SO_ATTACH_FILTER, atomic in the kernel. The interface's packet rate comes from
// /proc/thread-self/net/dev, opened in the capture's namespace.
//
// Threads: Open() and SetFilter() run on the JS thread, everything else on the capture
// thread; the program and its swap are under a mutex.
#pragma once

#include <linux/filter.h>
#include <linux/if_packet.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace portanoia {

class ExpressLane {
 public:
  ExpressLane() = default;
  ~ExpressLane();
  ExpressLane(const ExpressLane&) = delete;
  ExpressLane& operator=(const ExpressLane&) = delete;

  // Opens the socket (in the calling thread's namespace), attaches `filter` (active from
  // the start), maps the ring and binds to `ifindex` (0: every interface). Returns 0, or
  // an errno with *syscall set; the lane is then unusable and the capture runs without it.
  int Open(unsigned ifindex, const std::vector<sock_filter>& filter, const char** syscall);

  int fd() const { return fd_; }
  bool active() const { return active_.load(std::memory_order_relaxed); }

  // Capture thread: the tripwire program (true) or drop-all (false). Returns 0 or errno.
  int SetActive(bool active);
  // JS thread: a new tripwire program, attached at once when the lane is active.
  int SetFilter(const std::vector<sock_filter>& filter);

  // The frame at the cursor when user space owns it, else nullptr; Release() hands it
  // back (release store of TP_STATUS_KERNEL) and advances.
  const tpacket2_hdr* Current() const;
  void Release();
  uint32_t frame_size() const { return kFrameSize; }
  uint32_t frame_count() const { return kFrameCount; }

  // Frame header size as the kernel lays a V2 frame out: header, then the sockaddr_ll.
  static constexpr uint32_t kHdrLen = TPACKET_ALIGN(sizeof(tpacket2_hdr));

 private:
  int Attach(const std::vector<sock_filter>& program);

  // 64 frames of 1 KiB: room for the filter's 512-byte snap, headers and alignment. A
  // burst larger than this overflows the lane, not the capture: the main ring has it all.
  static constexpr uint32_t kFrameSize = 1024;
  static constexpr uint32_t kFrameCount = 64;

  int fd_ = -1;
  uint8_t* map_ = nullptr;
  size_t map_len_ = 0;
  uint32_t cursor_ = 0;
  std::mutex mutex_;
  std::vector<sock_filter> program_;
  std::atomic<bool> active_{false};
};

// Received-packet counter of one interface (or of all, for "any"), from /proc/net/dev of
// the namespace the fd was opened in.
class InterfacePackets {
 public:
  InterfacePackets() = default;
  ~InterfacePackets();
  InterfacePackets(const InterfacePackets&) = delete;
  InterfacePackets& operator=(const InterfacePackets&) = delete;

  // Opens the counters of the calling thread's namespace. `name` "" or "any": every interface.
  bool Open(const std::string& name);
  // Received packets so far, or -1 when unreadable.
  int64_t Read() const;

 private:
  int fd_ = -1;
  std::string name_;
};

// The /proc/net/dev text → received packets of `name` ("" = the sum of every interface);
// -1 when the interface is not listed. Pure, for tests.
int64_t ParseNetDevRx(const char* text, size_t len, const std::string& name);

}  // namespace portanoia
