// Stress test for the SPSC HitRing (native/hit_ring.h) and the doorbell protocol of
// Capture::ArmDoorbell / Capture::RingDoorbell, built by test/native/ring.test.ts under
// ThreadSanitizer and, separately, AddressSanitizer + UBSan. Not part of the addon.
//
// One producer thread publishes sequenced records in random batch sizes exactly as
// Capture::Publish does (Reserve, fill, one Publish, drop-newest and count the rest),
// pausing at random so the ring alternately overflows and runs dry. Randomness alone
// leaves coverage to the scheduler (a loaded 2-core machine once gave 7 drop ranges),
// so two phases follow that make it certain: forced overflows, in which the consumer
// holds off draining on purpose until the producer has dropped, then drains before the
// next one (each is a drop range of its own); and forced sleeps, in which the producer
// waits until the consumer is asleep before it publishes (each is a sleep, a ring and a
// wake). The random phase also runs on past its time until a floor of records has gone
// through. The consumer (the
// main thread, standing in for the JS thread) drains with random buffer sizes and, when
// the ring is empty, sleeps only when ArmDoorbell says so; the producer wakes it only
// when it claims the armed flag. The consumer's sleep models the JS event loop: the
// wake callback cannot run between arm() and the start of the wait (the lock is held
// across both, as run-to-completion holds the JS thread), and a wake that arrives while
// nobody waits is dropped, as a doorbell callback with no pending next() does nothing.
// Every wait is bounded; a wait that times out while records (or the end) are there is
// a lost wake-up.
//
// Checks, all exact: every record arrives once, in order, intact (its payload is a
// function of its sequence number); the gaps in the sequence are exactly the ranges the
// producer dropped, and always the newest records of a batch; the ring's drop counter
// equals the producer's own count; no lost wake-up. Prints one line of counts and exits
// non-zero on any violation.
//
// Usage: ring_stress SECONDS SEED [CAPACITY]
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "../doorbell.h"
#include "../hit_ring.h"

// Deliberately broken variants, built only by the test's self-check to prove that the
// checks below catch a broken doorbell: 2 arms without looking at the ring again, 3
// reads the flag before publishing instead of after. (Dropping the fences is the third
// classic mistake, but on x86 the store-load window it opens is too narrow to hit
// reliably in a bounded run, so it has no variant here.)
#ifndef RING_STRESS_MUTANT
#define RING_STRESS_MUTANT 0
#endif

namespace {

using portanoia::HitRecord;
using portanoia::HitRing;
using Clock = std::chrono::steady_clock;

// How long a sleeping consumer waits before declaring the wake-up lost. Far longer than
// any producer pause, so a timeout with data present is never just slowness.
constexpr auto kWaitLimit = std::chrono::milliseconds(1000);
constexpr uint32_t kMaxDrain = 300;
constexpr uint32_t kMaxBatch = 200;
// Coverage made certain by the phases after the random one.
constexpr int kForcedOverflows = 32;
constexpr int kForcedSleeps = 200;
constexpr uint64_t kMinPublished = 20000;
// How long the producer waits for the consumer to fall asleep in a forced sleep before
// counting it missed: far longer than any scheduling delay, short of a hang.
constexpr auto kAsleepLimit = std::chrono::milliseconds(5000);

// The payload of record `seq`: every field the consumer can check without shared state.
void Fill(HitRecord* r, uint64_t seq) {
  *r = HitRecord{};
  r->ts_ns = seq;
  for (int i = 0; i < 16; i++) {
    r->src[i] = static_cast<uint8_t>(seq >> ((i % 8) * 8)) ^ static_cast<uint8_t>(i);
    r->dst[i] = static_cast<uint8_t>(~r->src[i]);
  }
  r->src_port = static_cast<uint16_t>(seq);
  r->dst_port = static_cast<uint16_t>(seq >> 16);
  r->ifindex = static_cast<uint32_t>(seq * 2654435761u);
  r->family = 4;
  r->proto = 6;
  r->kind = static_cast<uint8_t>(seq % 15);
  r->tcp_flags = static_cast<uint8_t>(seq >> 3);
  r->ttl = static_cast<uint8_t>(seq >> 5);
  r->sctp_chunk = static_cast<uint8_t>(seq >> 7);
  r->vlan = static_cast<uint16_t>(seq >> 9);
  r->flags = static_cast<uint16_t>(seq >> 11);
  r->wire_len = static_cast<uint16_t>(seq >> 13);
  r->ip_id = static_cast<uint32_t>(~seq);
  for (int i = 0; i < 6; i++) r->src_mac[i] = static_cast<uint8_t>(seq >> (i * 5));
  r->tcp_window = static_cast<uint16_t>(seq >> 17);
  r->tcp_ts_val = static_cast<uint32_t>(seq * 40503u);
}

bool Intact(const HitRecord& got) {
  HitRecord want{};
  Fill(&want, got.ts_ns);
  return std::memcmp(&got, &want, sizeof(HitRecord)) == 0;
}

// Capture's doorbell (native/doorbell.h) wired as Capture wires it: Arm looks at the
// ring and the end flag, Ring notifies; the notify hook stands in for the thread-safe
// function.
class Doorbell {
 public:
  explicit Doorbell(HitRing* ring) : ring_(ring) {}

  // Capture::ArmDoorbell.
  bool Arm() {
    return bell_.Arm([this] {
#if RING_STRESS_MUTANT == 2
      return ended_.load(std::memory_order_acquire);
#else
      return !ring_->EmptyForConsumer() || ended_.load(std::memory_order_acquire);
#endif
    });
  }

  // Capture::RingDoorbell; returns true when this call claimed the flag and notified.
  template <typename Notify>
  bool Ring(Notify&& notify) {
    return bell_.Ring(std::forward<Notify>(notify));
  }

  void End() { ended_.store(true, std::memory_order_release); }  // pairs with Arm()/Ended()
  bool Ended() const { return ended_.load(std::memory_order_acquire); }

 private:
  HitRing* ring_;
  portanoia::Doorbell bell_;
  std::atomic<bool> ended_{false};
};

// The consumer's sleep: one waiter, wake-ups dropped when nobody waits.
struct Sleeper {
  std::mutex mutex;
  std::condition_variable cv;
  bool waiting = false;
  bool woken = false;
  uint64_t dropped_wakes = 0;

  void Wake() {
    std::lock_guard<std::mutex> lock(mutex);
    if (!waiting) {
      dropped_wakes++;
      return;
    }
    woken = true;
    cv.notify_one();
  }
};

struct DropRange {
  uint64_t from;  // first dropped sequence number
  uint64_t count;
};

struct ProducerResult {
  uint64_t produced = 0;
  uint64_t published = 0;
  uint64_t dropped = 0;
  uint64_t rings = 0;     // doorbell calls that claimed the flag
  uint64_t watches = 0;   // stranded-consumer checks made during pauses
  uint64_t stranded = 0;  // checks that found the consumer asleep beside queued records
  uint64_t forced_overflows = 0;
  uint64_t forced_sleeps = 0;
  uint64_t missed_sleeps = 0;  // forced sleeps the consumer never fell into in time
  std::vector<DropRange> drops;
};

// Set by the producer during a forced overflow: the consumer stops draining until it is
// cleared. Pairs with the consumer's acquire load; the ring's own indices order the data.
std::atomic<bool> g_hold{false};

// Whether the consumer is blocked in its wait right now (under the sleeper's lock).
bool Asleep(Sleeper* sleeper) {
  std::lock_guard<std::mutex> lock(sleeper->mutex);
  return sleeper->waiting && !sleeper->woken;
}

// Run by the producer while it pauses, after every ring it owed has been made (its
// rings call Wake synchronously). Under the sleeper's lock, `waiting && !woken` means
// the consumer is blocked in its wait; if records are queued at that moment, no wake
// is coming for them: a lost wake-up, caught exactly instead of by a timeout.
void Watch(HitRing* ring, Sleeper* sleeper, ProducerResult* out) {
  std::lock_guard<std::mutex> lock(sleeper->mutex);
  out->watches++;
  // Reserve(capacity) is producer-side: it refreshes the producer's view of tail_.
  if (sleeper->waiting && !sleeper->woken && ring->Reserve(ring->Capacity()) < ring->Capacity()) {
    out->stranded++;
  }
}

void Produce(HitRing* ring, Doorbell* bell, Sleeper* sleeper, Clock::time_point until,
             uint32_t seed, ProducerResult* out) {
  std::mt19937 rng(seed);
  uint64_t seq = 0;
  int mode = 0;  // 0: flat out, 1: bursty with pauses, 2 and 3: slow trickle
  uint32_t mode_left = 0;
  auto ring_bell = [&] {
    if (bell->Ring([&] { sleeper->Wake(); })) out->rings++;
  };
  // One batch of `want` records as Capture::Publish makes it, then the doorbell;
  // returns how many were dropped.
  auto publish = [&](uint32_t want) -> uint32_t {
#if RING_STRESS_MUTANT == 3
    ring_bell();
#endif
    const uint32_t room = ring->Reserve(want);
    for (uint32_t i = 0; i < room; i++) Fill(ring->Slot(i), seq + i);
    ring->Publish(room);
    if (room < want) {
      ring->CountDropped(want - room);
      if (!out->drops.empty() && out->drops.back().from + out->drops.back().count == seq + room) {
        out->drops.back().count += want - room;
      } else {
        out->drops.push_back(DropRange{seq + room, want - room});
      }
      out->dropped += want - room;
    }
    out->published += room;
    seq += want;
#if RING_STRESS_MUTANT != 3
    ring_bell();
#endif
    return want - room;
  };

  // Random phase: for its time, and on until the floor of records has gone through.
  while (Clock::now() < until || out->published < kMinPublished) {
    if (mode_left-- == 0) {
      mode = static_cast<int>(rng() % 4);
      mode_left = 200 + static_cast<uint32_t>(rng() % 5000);
    }
    publish(1 + static_cast<uint32_t>(rng() % (mode >= 2 ? 4 : kMaxBatch)));
    if ((mode == 1 && rng() % 8 == 0) || mode >= 2) {
      const uint32_t max_us = mode == 1 ? 300 : 50;
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_us));
      Watch(ring, sleeper, out);
    }
  }

  // Forced overflows. Before each, the consumer has made room (so the cycle publishes
  // before it drops, and its drops are a range of their own); then it holds off while
  // the ring fills.
  for (int cycle = 0; cycle < kForcedOverflows; cycle++) {
    while (ring->Reserve(1) == 0) std::this_thread::yield();
    g_hold.store(true, std::memory_order_release);  // pairs with the consumer's acquire load
    uint32_t dropped = 0;
    while (dropped == 0) dropped = publish(1 + static_cast<uint32_t>(rng() % 64));
    g_hold.store(false, std::memory_order_release);
    out->forced_overflows++;
  }

  // Forced sleeps: publish only once the consumer is blocked in its wait, so the ring
  // must wake it. Watch first: it must find the consumer asleep beside an empty ring.
  for (int i = 0; i < kForcedSleeps; i++) {
    const auto give_up = Clock::now() + kAsleepLimit;
    while (!Asleep(sleeper) && Clock::now() < give_up) std::this_thread::sleep_for(std::chrono::microseconds(20));
    if (!Asleep(sleeper)) {
      out->missed_sleeps++;
      continue;
    }
    Watch(ring, sleeper, out);
    publish(1 + static_cast<uint32_t>(rng() % 4));
    out->forced_sleeps++;
  }
  out->produced = seq;
  // Capture::Run's exit: everything is published, then the end, then one last ring.
  bell->End();
  ring_bell();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: ring_stress SECONDS SEED [CAPACITY]\n");
    return 2;
  }
  const double seconds = std::atof(argv[1]);
  const uint32_t seed = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  const uint32_t capacity = argc > 3 ? static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)) : 256;

  HitRing ring(capacity);
  Doorbell bell(&ring);
  Sleeper sleeper;
  ProducerResult produced;
  const auto until = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
  std::thread producer(Produce, &ring, &bell, &sleeper, until, seed, &produced);

  std::mt19937 rng(seed ^ 0x9e3779b9u);
  std::vector<uint8_t> buffer(size_t{kMaxDrain} * sizeof(HitRecord));
  uint64_t expected = 0;  // next sequence number if nothing was dropped
  uint64_t received = 0, corrupt = 0, reordered = 0, gaps = 0, gap_records = 0;
  uint64_t sleeps = 0, wakes = 0, empty_wakes = 0, idle_timeouts = 0, lost_wakeups = 0;
  uint64_t drains = 0;
  std::vector<DropRange> seen_gaps;
  int mode = 0;  // 0: eager, 1: lazy (lets the ring fill so the producer drops)
  uint32_t mode_left = 0;

  for (;;) {
    // A forced overflow: hold off draining (awake, not asleep) until the producer has dropped.
    while (g_hold.load(std::memory_order_acquire)) std::this_thread::yield();
    if (mode_left-- == 0) {
      mode = static_cast<int>(rng() % 2);
      mode_left = 100 + static_cast<uint32_t>(rng() % 3000);
    }
    const uint32_t max = 1 + static_cast<uint32_t>(rng() % kMaxDrain);
    const uint32_t n = ring.Drain(buffer.data(), max);
    drains++;
    for (uint32_t i = 0; i < n; i++) {
      HitRecord r;
      std::memcpy(&r, buffer.data() + size_t{i} * sizeof(HitRecord), sizeof(r));
      if (!Intact(r)) corrupt++;
      if (r.ts_ns < expected) {
        reordered++;
      } else if (r.ts_ns > expected) {
        gaps++;
        gap_records += r.ts_ns - expected;
        seen_gaps.push_back(DropRange{expected, r.ts_ns - expected});
      }
      expected = r.ts_ns + 1;
      received++;
    }
    if (n > 0) {
      if (mode == 1 && rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
      continue;
    }
    if (bell.Ended()) {
      // Ended is published after the last record: one more drain finds any stragglers.
      if (ring.EmptyForConsumer()) break;
      continue;
    }
    // The JS thread can stall between an empty drain() and arm() (GC, other callbacks):
    // widen that window at random, since a publish landing in it is what arming must see.
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20));
    // Empty: the Sensor's path — arm, and sleep only when arm() says so.
    std::unique_lock<std::mutex> lock(sleeper.mutex);
    sleeper.waiting = true;
    sleeper.woken = false;
    if (!bell.Arm()) {
      sleeper.waiting = false;
      continue;
    }
    sleeps++;
    while (!sleeper.woken) {
      if (sleeper.cv.wait_for(lock, kWaitLimit) == std::cv_status::timeout && !sleeper.woken) {
        if (!ring.EmptyForConsumer() || bell.Ended()) {
          lost_wakeups++;  // records or the end were there, and nobody rang
          break;
        }
        idle_timeouts++;  // nothing to read: a long producer pause, not a lost wake-up
      }
    }
    if (sleeper.woken) {
      wakes++;
      if (ring.EmptyForConsumer() && !bell.Ended()) empty_wakes++;
    }
    sleeper.waiting = false;
  }
  producer.join();

  // Trailing drops (after the last record received) are gaps the consumer cannot see.
  if (produced.produced > expected) seen_gaps.push_back(DropRange{expected, produced.produced - expected});
  uint64_t seen_dropped = 0;
  for (const DropRange& g : seen_gaps) seen_dropped += g.count;

  bool ok = true;
  auto fail = [&](const char* what) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ok = false;
  };
  if (corrupt != 0) fail("corrupt records");
  if (reordered != 0) fail("reordered or duplicated records");
  if (received != produced.published) fail("received != published");
  if (received + produced.dropped != produced.produced) fail("received + dropped != produced");
  if (ring.Dropped() != produced.dropped) fail("ring drop counter != producer's count");
  if (seen_dropped != produced.dropped) fail("sequence gaps != dropped records");
  // Gaps merge adjacent batches' drops; the producer merged them the same way only when
  // nothing was published in between, so compare as coverage of the same sequence numbers.
  {
    size_t a = 0, b = 0;
    uint64_t a_at = seen_gaps.empty() ? 0 : seen_gaps[0].from, b_at = produced.drops.empty() ? 0 : produced.drops[0].from;
    uint64_t a_left = seen_gaps.empty() ? 0 : seen_gaps[0].count, b_left = produced.drops.empty() ? 0 : produced.drops[0].count;
    while (a < seen_gaps.size() && b < produced.drops.size()) {
      if (a_at != b_at) {
        fail("a gap is not where the producer dropped (drop-newest violated)");
        break;
      }
      const uint64_t step = a_left < b_left ? a_left : b_left;
      a_at += step;
      b_at += step;
      a_left -= step;
      b_left -= step;
      if (a_left == 0 && ++a < seen_gaps.size()) {
        a_at = seen_gaps[a].from;
        a_left = seen_gaps[a].count;
      }
      if (b_left == 0 && ++b < produced.drops.size()) {
        b_at = produced.drops[b].from;
        b_left = produced.drops[b].count;
      }
    }
    if (ok && (a != seen_gaps.size() || b != produced.drops.size())) fail("gap and drop lists differ in length");
  }
  if (lost_wakeups != 0) fail("lost wake-ups (a bounded wait timed out beside queued records)");
  if (produced.stranded != 0) fail("lost wake-ups (the consumer slept beside queued records)");
  if (produced.missed_sleeps != 0) fail("the consumer did not fall asleep on an empty ring");

  std::printf(
      "{\"ok\":%s,\"produced\":%llu,\"published\":%llu,\"received\":%llu,\"dropped\":%llu,"
      "\"ringDropped\":%llu,\"dropRanges\":%zu,\"gaps\":%llu,\"gapRecords\":%llu,\"drains\":%llu,"
      "\"sleeps\":%llu,\"wakes\":%llu,\"emptyWakes\":%llu,\"rings\":%llu,\"droppedWakes\":%llu,"
      "\"idleTimeouts\":%llu,\"lostWakeups\":%llu,\"watches\":%llu,\"stranded\":%llu,\"corrupt\":%llu,\"reordered\":%llu,"
      "\"forcedOverflows\":%llu,\"forcedSleeps\":%llu,\"missedSleeps\":%llu}\n",
      ok ? "true" : "false", static_cast<unsigned long long>(produced.produced),
      static_cast<unsigned long long>(produced.published), static_cast<unsigned long long>(received),
      static_cast<unsigned long long>(produced.dropped), static_cast<unsigned long long>(ring.Dropped()),
      produced.drops.size(), static_cast<unsigned long long>(gaps),
      static_cast<unsigned long long>(gap_records), static_cast<unsigned long long>(drains),
      static_cast<unsigned long long>(sleeps), static_cast<unsigned long long>(wakes),
      static_cast<unsigned long long>(empty_wakes), static_cast<unsigned long long>(produced.rings),
      static_cast<unsigned long long>(sleeper.dropped_wakes), static_cast<unsigned long long>(idle_timeouts),
      static_cast<unsigned long long>(lost_wakeups), static_cast<unsigned long long>(produced.watches),
      static_cast<unsigned long long>(produced.stranded), static_cast<unsigned long long>(corrupt),
      static_cast<unsigned long long>(reordered), static_cast<unsigned long long>(produced.forced_overflows),
      static_cast<unsigned long long>(produced.forced_sleeps), static_cast<unsigned long long>(produced.missed_sleeps));
  return ok ? 0 : 1;
}
