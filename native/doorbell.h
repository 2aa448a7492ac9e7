// The doorbell between the capture thread (producer) and the JS thread (consumer):
// the consumer arms it before it sleeps, the producer rings it after publishing and
// notifies only when it claims the armed flag, so there is at most one wake-up call
// per sleep and none is lost. Header-only so that Capture and the ring stress test
// (native/test/ring_stress.cc) run the same code.
#pragma once

#include <atomic>

namespace portanoia {

class Doorbell {
 public:
  // Consumer. `ready()` looks at the ring (and the end flag) again after arming;
  // when it finds something the doorbell is disarmed and Arm returns false: the
  // consumer must drain instead of sleeping.
  template <typename Ready>
  bool Arm(Ready&& ready) {
    sleeping_.store(true, std::memory_order_relaxed);
    // Full fence between arming and looking at the ring; pairs with the fence in
    // Ring() between publishing and reading the flag (the lost-wake-up rule of
    // liburing's sq_ring_needs_enter): one side always sees the other's store.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
      sleeping_.store(false, std::memory_order_relaxed);
      return false;
    }
    return true;
  }

  void Disarm() { sleeping_.store(false, std::memory_order_relaxed); }

  // Producer, after publishing. Returns true when this call claimed the flag and
  // notified.
  template <typename Notify>
  bool Ring(Notify&& notify) {
    // Pairs with the fence in Arm().
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_relaxed) &&
        sleeping_.exchange(false, std::memory_order_acq_rel)) {
      notify();
      return true;
    }
    return false;
  }

 private:
  std::atomic<bool> sleeping_{false};
};

}  // namespace portanoia
