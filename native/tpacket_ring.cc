// TpacketRing: see tpacket_ring.h. The status word of each block is the only
// synchronisation with the kernel, so it is accessed with acquire / release atomics
// (as libpcap does) and never with plain loads or stores.
#include "tpacket_ring.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace portanoia {

namespace {

uint32_t LoadStatus(tpacket_block_desc* block) {
  // Pairs with the kernel's smp_wmb() + store of TP_STATUS_USER when it retires the
  // block: the packets in it are visible once we see the status.
  return __atomic_load_n(&block->hdr.bh1.block_status, __ATOMIC_ACQUIRE);
}

void StoreKernel(tpacket_block_desc* block) {
  // Pairs with the kernel's read of block_status before it reuses the block: all our
  // reads of the block happen before the kernel may overwrite it.
  __atomic_store_n(&block->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
}

}  // namespace

TpacketRing::~TpacketRing() {
  if (map_ != nullptr) munmap(map_, map_len_);
}

int TpacketRing::Setup(int fd, const RingGeometry& geometry, const char** syscall) {
  geometry_ = geometry;
  int version = TPACKET_V3;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0) {
    *syscall = "setsockopt";
    return errno;
  }
  tpacket_req3 req{};
  req.tp_block_size = geometry.block_size;
  req.tp_block_nr = geometry.block_count;
  // In V3 frames are packed at variable size inside a block; frame_size only has to
  // divide the block and frame_nr must match, as the kernel checks.
  req.tp_frame_size = 2048;
  req.tp_frame_nr = (geometry.block_size / req.tp_frame_size) * geometry.block_count;
  req.tp_retire_blk_tov = geometry.retire_ms;
  req.tp_sizeof_priv = 0;
  req.tp_feature_req_word = TP_FT_REQ_FILL_RXHASH;
  if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0) {
    *syscall = "setsockopt";
    return errno;
  }
  map_len_ = size_t{geometry.block_size} * geometry.block_count;
  void* map = mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
  if (map == MAP_FAILED) {
    // MAP_LOCKED can fail under RLIMIT_MEMLOCK; the ring still works unlocked.
    map = mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  if (map == MAP_FAILED) {
    map_len_ = 0;
    *syscall = "mmap";
    return errno;
  }
  map_ = static_cast<uint8_t*>(map);
  return 0;
}

tpacket_block_desc* TpacketRing::CurrentBlock() {
  auto* block = reinterpret_cast<tpacket_block_desc*>(map_ + size_t{cursor_} * geometry_.block_size);
  return (LoadStatus(block) & TP_STATUS_USER) != 0 ? block : nullptr;
}

void TpacketRing::ReleaseCurrentBlock() {
  auto* block = reinterpret_cast<tpacket_block_desc*>(map_ + size_t{cursor_} * geometry_.block_size);
  StoreKernel(block);
  cursor_ = (cursor_ + 1) % geometry_.block_count;
}

}  // namespace portanoia
