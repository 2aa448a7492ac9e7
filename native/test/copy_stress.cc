// Stress test for CopyMatcher (native/copy_matcher.h) wired as the capture thread wires it
// (Capture::TakeFrame, Capture::Run): every frame the kernel filter passes is written to
// the main TPACKET_V3 ring and, while the express lane is on, to the lane's TPACKET_V2
// ring too; the thread reads the two in whatever order the kernel hands them over, and
// must report each frame exactly once. Built by test/native/copy.test.ts under
// AddressSanitizer + UBSan. Not part of the addon.
//
// The simulation, one event queue in time order:
//  - frames arrive at random gaps, from a small key space so that the same probe is often
//    on the wire twice (a real duplicate: two reports);
//  - the lane goes on and off at random (as TuneExpress and the burst rule switch it);
//    while it is on a frame gets an express copy, unless the small V2 ring overflowed (a
//    random express drop), read a little after the frame arrived;
//  - every frame gets a main-ring copy, read when its block retires: usually after the
//    express copy, sometimes before it (a block that filled while the thread was busy);
//  - the thread tracks main-ring copies while the lane is on and for the grace period
//    after it went off, and expires old balances now and then, as Capture does.
// The contract checked, exactly: for every key, the number of reports equals the number
// of frames with that key (every frame has its main-ring copy: the main ring keeps
// everything while the lane is on), and exactly one copy of every frame that had two is
// not reported. Two deliberately broken wirings must be caught: main-ring copies never
// tracked (a ring copy read first is reported again when the express copy comes), and
// express copies never tracked (every main-ring copy reported again).
//
// Usage: copy_stress EVENTS SEED [MUTANT]   (MUTANT 1: ring untracked, 2: express untracked)
// Prints one JSON line of counts; exits 1 when a check fails.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <queue>
#include <random>
#include <vector>

#include "../copy_matcher.h"

namespace {

using portanoia::CopyMatcher;

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kGraceNs = 20 * kMs;        // Capture's kExpressGraceNs
constexpr uint64_t kExpressReadMaxNs = 5 * kMs;  // the lane is drained every lap, well inside the grace
constexpr uint64_t kHorizonNs = 1000 * kMs;    // CopyMatcher's default

struct Event {
  uint64_t at;
  uint64_t seq;  // tie-break: insertion order
  uint64_t key;
  CopyMatcher::Path path;
  bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: copy_stress EVENTS SEED [MUTANT]\n");
    return 2;
  }
  const uint64_t frames_wanted = std::strtoull(argv[1], nullptr, 10);
  std::mt19937_64 rng(std::strtoull(argv[2], nullptr, 10));
  const int mutant = argc > 3 ? std::atoi(argv[3]) : 0;
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto between = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };

  // Lane state changes: (time, on). It starts on, as a new sensor does.
  std::vector<std::pair<uint64_t, bool>> switches = {{0, true}};
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue;
  std::map<uint64_t, uint64_t> frames_per_key;
  uint64_t t = 0, seq = 0, express_copies = 0, express_drops = 0, ring_first = 0;
  bool on = true;
  for (uint64_t f = 0; f < frames_wanted; f++) {
    t += between(0, 2 * kMs);
    if (chance(0.01)) {
      on = !on;
      switches.push_back({t, on});
    }
    const uint64_t key = between(1, 200);  // small: many real duplicates
    frames_per_key[key]++;
    // The main ring: read when the block retires, 0..40 ms later.
    const uint64_t ring_at = t + between(0, 40 * kMs);
    queue.push(Event{ring_at, seq++, key, CopyMatcher::Path::kRing});
    if (on) {
      if (chance(0.05)) {
        express_drops++;  // the V2 ring was full
      } else {
        const uint64_t express_at = t + between(0, kExpressReadMaxNs);
        if (ring_at < express_at) ring_first++;
        queue.push(Event{express_at, seq++, key, CopyMatcher::Path::kExpress});
        express_copies++;
      }
    }
  }

  CopyMatcher matcher(kHorizonNs);
  std::map<uint64_t, uint64_t> reports_per_key;
  uint64_t reported = 0, cancelled = 0, max_pending = 0, next_expire = 0;
  size_t sw = 0;
  bool lane_on = true;
  uint64_t track_until = 0;
  while (!queue.empty()) {
    const Event e = queue.top();
    queue.pop();
    while (sw + 1 < switches.size() && switches[sw + 1].first <= e.at) {
      sw++;
      if (lane_on && !switches[sw].second) track_until = switches[sw].first + kGraceNs;
      lane_on = switches[sw].second;
    }
    bool track = e.path == CopyMatcher::Path::kExpress || lane_on || e.at < track_until;
    if (mutant == 1 && e.path == CopyMatcher::Path::kRing) track = false;
    if (mutant == 2 && e.path == CopyMatcher::Path::kExpress) track = false;
    if (matcher.FirstCopy(e.path, e.key, e.at, track)) {
      reported++;
      reports_per_key[e.key]++;
    } else {
      cancelled++;
    }
    if (e.at >= next_expire) {
      matcher.Expire(e.at);
      next_expire = e.at + 50 * kMs;
    }
    max_pending = std::max<uint64_t>(max_pending, matcher.Pending());
  }

  uint64_t wrong_keys = 0, extra = 0, missing = 0;
  for (const auto& [key, n] : frames_per_key) {
    const uint64_t got = reports_per_key.count(key) ? reports_per_key[key] : 0;
    if (got != n) wrong_keys++;
    if (got > n) extra += got - n;
    if (got < n) missing += n - got;
  }
  const bool ok = wrong_keys == 0 && cancelled == express_copies;
  std::printf(
      "{\"ok\":%s,\"frames\":%llu,\"reported\":%llu,\"cancelled\":%llu,\"expressCopies\":%llu,"
      "\"expressDrops\":%llu,\"ringFirst\":%llu,\"switches\":%zu,\"wrongKeys\":%llu,\"extra\":%llu,"
      "\"missing\":%llu,\"maxPending\":%llu}\n",
      ok ? "true" : "false", static_cast<unsigned long long>(frames_wanted),
      static_cast<unsigned long long>(reported), static_cast<unsigned long long>(cancelled),
      static_cast<unsigned long long>(express_copies), static_cast<unsigned long long>(express_drops),
      static_cast<unsigned long long>(ring_first), switches.size(),
      static_cast<unsigned long long>(wrong_keys), static_cast<unsigned long long>(extra),
      static_cast<unsigned long long>(missing), static_cast<unsigned long long>(max_pending));
  return ok ? 0 : 1;
}
