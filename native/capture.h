// The capture core, free of napi: one AF_PACKET socket with a TPACKET_V3 ring and a
// kernel filter, the tripwire listeners, and the one capture thread that owns them
// after Start(). The JS thread talks to the thread only through atomics, a mutex
// for listener hand-over, and an eventfd that breaks the thread's poll (libpcap's
// breakloop fd). Hits flow out through the SPSC HitRing; the doorbell callback runs
// on the capture thread and must only schedule work (it is a thread-safe function).
#pragma once

#include <linux/filter.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "copy_matcher.h"
#include "doorbell.h"
#include "express_lane.h"
#include "hit_record.h"
#include "hit_ring.h"
#include "packet_parse.h"
#include "sys_error.h"
#include "tpacket_ring.h"

namespace portanoia {

// Membership of the exact tripwire set; the kernel filter may be a superset.
struct PortSet {
  // One bit per port for TCP, UDP and SCTP; one per IP protocol number for the
  // protocol tripwires (hits of kind kIpProto).
  std::vector<uint64_t> tcp = std::vector<uint64_t>(1024, 0);
  std::vector<uint64_t> udp = std::vector<uint64_t>(1024, 0);
  std::vector<uint64_t> sctp = std::vector<uint64_t>(1024, 0);
  std::vector<uint64_t> ip = std::vector<uint64_t>(4, 0);
};

struct CaptureOptions {
  std::string interface;       // "" or "any": every interface
  std::string netns;           // path of a network namespace to open sockets in; "" = current
  std::vector<sock_filter> filter;
  PortSet ports;
  RingGeometry geometry;
  uint32_t ring_records = 1u << 16;
  bool dedup = true;           // drop a frame seen again on another interface (`any` only)
  bool express = false;        // the express lane while the interface is quiet (express_lane.h)
  // While hits keep coming, at most one hand-over to JS per this many ms (0: one per
  // retired block): see Capture::HoldUntil.
  uint32_t coalesce_ms = 2;
};

struct CaptureStats {
  uint64_t kernel_packets = 0;   // PACKET_STATISTICS tp_packets, running total
  uint64_t kernel_drops = 0;     // tp_drops, running total
  uint64_t kernel_freezes = 0;   // tp_freeze_q_cnt, running total
  uint64_t frames = 0;           // frames user space took, each once (either ring)
  uint64_t hits = 0;             // records published to the ring
  uint64_t ring_drops = 0;       // records dropped because the ring was full
  uint64_t not_tripwire = 0;     // passed by a superset kernel filter, not in the exact set
  uint64_t malformed = 0;
  uint64_t duplicates = 0;       // same frame on a second interface
  uint64_t connects = 0;         // handshakes completed with a tripwire listener
  uint64_t blocks = 0;           // ring blocks handed back to the kernel
  uint64_t wakeups = 0;          // times the capture thread woke the JS thread (doorbell notified)
  uint64_t express_hits = 0;     // hits reported first through the express lane
  uint64_t express_copies = 0;   // second copies of a frame (express and ring both had it), not reported
  uint64_t express_switches = 0; // times the express lane was turned on or off
  bool express_active = false;   // the express lane carries the tripwire program now
};

class Capture {
 public:
  using Notify = std::function<void()>;

  // Opens the socket, attaches the filter, binds, maps the ring. Runs on the JS
  // thread; nothing is started. Returns nullptr with *err set on failure.
  static std::unique_ptr<Capture> Open(const CaptureOptions& options, SysError* err);
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  // Starts the capture thread. `notify` is called from it when the doorbell is armed
  // and records (or the end) became available.
  bool Start(Notify notify, SysError* err);
  // Stops and joins the thread; idempotent. Records still queued stay drainable.
  void Stop();

  // ---- JS thread ----
  uint32_t Drain(uint8_t* out, uint32_t max) { return ring_.Drain(out, max); }
  // Arms the doorbell before the consumer sleeps. Returns false when the consumer
  // must not sleep (records are already there, or the thread ended).
  bool ArmDoorbell();
  void DisarmDoorbell() { doorbell_.Disarm(); }
  // The thread ended (error or Stop) and published everything it had.
  bool Ended() const { return ended_.load(std::memory_order_acquire); }
  SysError Error() const;

  // Swaps the kernel filter and the exact port set. Ports in both sets keep being
  // captured throughout: the set is widened before the kernel filter changes and
  // narrowed after (SO_ATTACH_FILTER replaces the filter atomically).
  bool SetFilter(const std::vector<sock_filter>& filter, const PortSet& ports, SysError* err);

  // Adds a TCP tripwire listener (accept + reset = verified connect). Synchronous, so a
  // port already in use fails here with EADDRINUSE and the port named.
  bool AddListener(uint16_t port, SysError* err);
  void RemoveListener(uint16_t port);
  std::vector<uint16_t> ListenerPorts() const;

  CaptureStats Stats() const;

  // Interface name of `ifindex` in the capture's namespace ("" when unknown).
  std::string InterfaceName(uint32_t ifindex) const;

 private:
  explicit Capture(const CaptureOptions& options);
  void Run();
  bool WalkBlock(tpacket_block_desc* block);
  // One batch of records on its way to the ring.
  struct Batch {
    HitRecord records[64];
    uint32_t n = 0;
  };
  struct FrameCounts {
    uint64_t frames = 0, not_tripwire = 0, malformed = 0, duplicates = 0, express_copies = 0, express_hits = 0;
  };
  // Parses one frame (from the network header) and queues its hit; `path` says which ring
  // it came from, for the express lane's copy matching.
  void TakeFrame(const uint8_t* net, size_t len, uint16_t ethertype, const FrameMeta& meta,
                 CopyMatcher::Path path, Batch* batch, FrameCounts* counts);
  // Adds `counts` to the running totals, then publishes the batch; both start again empty.
  void Flush(Batch* batch, FrameCounts* counts);
  // Reads every frame the express lane holds; returns how many.
  uint32_t DrainExpress();
  // Turns the express lane on or off from the last interval's rates (maintenance).
  void TuneExpress(uint64_t now_ns);
  void AcceptAll(int fd);
  void FoldKernelStats();
  void Publish(const HitRecord* records, uint32_t n);
  void RingDoorbell();
  void RingPending();
  bool InPortSet(uint8_t proto, uint16_t port) const;
  bool IsDuplicate(const HitRecord& record);
  void ApplyPortSet(const PortSet& ports, bool widen_only);
  void Fail(int err_no, const char* syscall);
  uint64_t NoteAck(const HitRecord& record);
  void FlushConnects(uint64_t now_ns, bool all);
  int PollTimeoutMs(bool busy, uint64_t now_ns) const;
  uint64_t HoldUntil(bool busy, bool published, uint64_t now_ns);
  void AwaitLastBlock();

  CaptureOptions options_;
  int fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Stop() and listener changes break the poll
  TpacketRing tpacket_;
  HitRing ring_;

  // The express lane and what decides about it; capture thread only after Start().
  ExpressLane express_;
  bool has_express_ = false;
  InterfacePackets iface_packets_;
  CopyMatcher matcher_;
  int64_t last_iface_packets_ = -1;
  uint64_t last_hits_ = 0;
  uint64_t last_tune_ns_ = 0;
  uint64_t quiet_intervals_ = 0;
  uint64_t track_until_ns_ = 0;  // ring frames are matched until then after the lane went off
  bool track_ring_ = false;      // this lap: main-ring frames may have express copies
  uint64_t ring_frames_ = 0;     // frames the main ring handed over, each once
  std::atomic<uint64_t> express_hits_{0}, express_copies_{0}, express_switches_{0};
  std::atomic<uint64_t> wakeups_{0};
  uint64_t last_published_ns_ = 0;  // when a walk of the ring last published hits (capture thread)
  uint32_t unrung_ = 0;  // records published since the doorbell last rang (capture thread)
  std::thread thread_;
  Notify notify_;
  bool started_ = false;

  std::atomic<bool> stop_{false};
  std::atomic<bool> ended_{false};
  Doorbell doorbell_;

  // Exact tripwire set: 3 × 1024 words, read by the capture thread, written by JS.
  std::unique_ptr<std::atomic<uint64_t>[]> port_bits_;

  // Listener hand-over: JS adds and retires under the mutex, the thread picks the
  // list up when `listeners_dirty_` is set and closes retired fds itself, so a fd is
  // never closed while it is in the thread's poll set.
  struct Listener {
    uint16_t port;
    int fd;
  };
  mutable std::mutex listeners_mutex_;
  std::vector<Listener> listeners_;
  std::vector<int> retired_fds_;
  std::atomic<bool> listeners_dirty_{false};

  mutable std::mutex error_mutex_;
  SysError error_;

  // Running totals, written by the capture thread.
  std::atomic<uint64_t> kernel_packets_{0}, kernel_drops_{0}, kernel_freezes_{0};
  std::atomic<uint64_t> frames_{0}, hits_{0}, not_tripwire_{0}, malformed_{0};
  std::atomic<uint64_t> duplicates_{0}, connects_{0}, blocks_{0};

  // Dedup table: capture thread only.
  struct SeenFrame {
    uint64_t key;
    uint64_t ts_ns;
    uint32_t ifindex;
  };
  std::vector<SeenFrame> seen_;

  // Verified connects wait here until the frame of the handshake's final ACK is walked,
  // and are then published right behind it, so JS sees syn, ack, connect in wire order:
  // accept() returns as soon as the kernel processed that ACK, usually before its ring
  // block retires. A connect whose ACK never shows up (dropped, or the port left the
  // set) goes out at `due_ns`. `recent_acks_` remembers the tuples of the last
  // ACK-bearing hits, for a block that retired before accept() ran. Capture thread only.
  struct PendingConnect {
    HitRecord record;
    uint64_t key;     // TupleKey
    uint64_t due_ns;  // CLOCK_MONOTONIC
  };
  std::vector<PendingConnect> pending_connects_;
  std::vector<uint64_t> recent_acks_ = std::vector<uint64_t>(64, 0);
  size_t recent_ack_next_ = 0;
};

}  // namespace portanoia
