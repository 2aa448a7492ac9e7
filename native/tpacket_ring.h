// The TPACKET_V3 receive ring of one AF_PACKET socket: setup (PACKET_VERSION,
// PACKET_RX_RING), the mmap, and the block hand-over protocol. Used only by the
// capture thread after Setup() (which runs on the JS thread before the thread
// starts). Kernel contract relied upon: a block belongs to user space from the
// moment its block_status has TP_STATUS_USER until we store TP_STATUS_KERNEL back;
// the kernel fills blocks strictly in order, so user space walks them in order too.
#pragma once

#include <linux/if_packet.h>

#include <cstddef>
#include <cstdint>

namespace portanoia {

struct RingGeometry {
  uint32_t block_size = 1u << 20;  // bytes, a multiple of the page size
  uint32_t block_count = 8;
  uint32_t retire_ms = 2;          // a partly filled block is handed over after this long
};

class TpacketRing {
 public:
  TpacketRing() = default;
  ~TpacketRing();
  TpacketRing(const TpacketRing&) = delete;
  TpacketRing& operator=(const TpacketRing&) = delete;

  // Configures and maps the ring on `fd`. Returns 0, or an errno with *syscall set.
  int Setup(int fd, const RingGeometry& geometry, const char** syscall);

  // The block at the cursor when user space owns it, else nullptr.
  tpacket_block_desc* CurrentBlock();
  // Returns the current block to the kernel and advances the cursor.
  void ReleaseCurrentBlock();

  uint32_t block_size() const { return geometry_.block_size; }
  uint32_t block_count() const { return geometry_.block_count; }

 private:
  uint8_t* map_ = nullptr;
  size_t map_len_ = 0;
  RingGeometry geometry_;
  uint32_t cursor_ = 0;
};

}  // namespace portanoia
