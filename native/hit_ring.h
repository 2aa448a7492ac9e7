// The lock-free single-producer / single-consumer ring of HitRecords between the
// capture thread (producer) and the JS thread (consumer). Indices are free-running
// u32s masked by a power-of-two capacity; each side owns one index on its own cache
// line and keeps a cached copy of the other side's, so the common case touches no
// shared line. The producer publishes a whole batch with one release store (as
// liburing advances its CQ tail); when the ring is full the newest records are
// dropped and counted, never the ones already queued.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "hit_record.h"

namespace portanoia {

inline constexpr size_t kCacheLine = 64;

class HitRing {
 public:
  // capacity is rounded up to a power of two (minimum 64).
  explicit HitRing(uint32_t capacity) {
    uint32_t cap = 64;
    while (cap < capacity && cap < (1u << 24)) cap <<= 1;
    mask_ = cap - 1;
    // Value-initialised: every page is touched here, on the JS thread at open, not by the
    // capture thread's first lap (a page fault per 4 KiB of records during a flood).
    slots_.reset(new HitRecord[cap]());
  }

  uint32_t Capacity() const { return mask_ + 1; }

  // ---- producer side (capture thread) ----

  // Reserves room for up to `want` records; returns how many fit. The producer
  // writes them with Slot(i) and publishes with Publish(n).
  uint32_t Reserve(uint32_t want) {
    const uint32_t head = head_.load(std::memory_order_relaxed);
    uint32_t free_slots = Capacity() - (head - cached_tail_);
    if (free_slots < want) {
      // Pairs with the release store of tail_ in Consume(): the consumer is done
      // reading the slots it handed back.
      cached_tail_ = tail_.load(std::memory_order_acquire);
      free_slots = Capacity() - (head - cached_tail_);
    }
    return free_slots < want ? free_slots : want;
  }

  HitRecord* Slot(uint32_t i) {
    return &slots_[(head_.load(std::memory_order_relaxed) + i) & mask_];
  }

  void Publish(uint32_t n) {
    if (n == 0) return;
    // Pairs with the acquire load of head_ in Drain(): records are visible first.
    head_.store(head_.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }

  void CountDropped(uint64_t n) { dropped_.fetch_add(n, std::memory_order_relaxed); }

  // ---- consumer side (JS thread) ----

  // Copies up to `max` records into `out` and hands the slots back.
  // `out` needs no alignment: records are copied bytewise into a JS-owned buffer.
  uint32_t Drain(uint8_t* out, uint32_t max) {
    const uint32_t tail = tail_.load(std::memory_order_relaxed);
    uint32_t avail = cached_head_ - tail;
    if (avail == 0) {
      // Pairs with the release store of head_ in Publish().
      cached_head_ = head_.load(std::memory_order_acquire);
      avail = cached_head_ - tail;
    }
    const uint32_t n = avail < max ? avail : max;
    const uint32_t first = tail & mask_;
    const uint32_t until_wrap = Capacity() - first;
    const uint32_t a = n < until_wrap ? n : until_wrap;
    std::memcpy(out, &slots_[first], size_t{a} * sizeof(HitRecord));
    if (n > a) std::memcpy(out + size_t{a} * sizeof(HitRecord), &slots_[0], size_t{n - a} * sizeof(HitRecord));
    // Pairs with the acquire load of tail_ in Reserve(): the slots are free again.
    tail_.store(tail + n, std::memory_order_release);
    return n;
  }

  // True when the consumer would find nothing. Called by the consumer after it
  // armed the doorbell, behind a full fence (see Capture::ArmDoorbell).
  bool EmptyForConsumer() {
    cached_head_ = head_.load(std::memory_order_acquire);
    return cached_head_ == tail_.load(std::memory_order_relaxed);
  }

  uint64_t Dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  alignas(kCacheLine) std::atomic<uint32_t> head_{0};  // written by the producer
  uint32_t cached_tail_ = 0;                            // producer's copy of tail_
  alignas(kCacheLine) std::atomic<uint32_t> tail_{0};  // written by the consumer
  uint32_t cached_head_ = 0;                            // consumer's copy of head_
  alignas(kCacheLine) std::atomic<uint64_t> dropped_{0};
  uint32_t mask_ = 0;
  std::unique_ptr<HitRecord[]> slots_;
};

}  // namespace portanoia
