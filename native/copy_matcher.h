// CopyMatcher: exactly one report per frame when the capture thread reads every frame
// twice, once from the express lane (a per-frame-wakeup TPACKET_V2 ring, for low latency
// while the host is quiet) and once from the main TPACKET_V3 ring (the complete record,
// late by up to a retire timeout). Pure and header-only, so the capture thread and the
// stress test (native/test/copy_stress.cc) run the same code; capture thread only.
//
// Each frame is keyed by its record without the timestamp (the two paths stamp it
// separately). A key keeps a balance: +n when the express lane reported n copies the main
// ring has not shown yet, -n when the main ring reported n copies the express lane has not
// shown yet. A copy that finds the other path ahead cancels one of its copies and is not
// reported; otherwise it is reported and counted against its own path. Counting (not a
// seen-set) keeps a real duplicate on the wire (the same probe sent twice) as two reports,
// and either order of arrival works: the thread may walk a retired block before the express
// frame of the same packet. A path that dropped its copy leaves a balance nobody cancels;
// entries expire after `horizon_ns`, long past the time the other copy could still come.
#pragma once

#include <cstdint>
#include <unordered_map>

namespace portanoia {

class CopyMatcher {
 public:
  enum class Path : uint8_t { kExpress, kRing };

  explicit CopyMatcher(uint64_t horizon_ns = 1'000'000'000) : horizon_ns_(horizon_ns) {}

  // True when this copy is to be reported (the first of its frame), false when it is the
  // other path's copy of a frame already reported. `track` false means this path's copy
  // needs no partner (the express lane was off when it was captured): it is reported when
  // nothing waits for it, and leaves nothing behind.
  bool FirstCopy(Path path, uint64_t key, uint64_t now_ns, bool track = true) {
    if (table_.empty() && !track) return true;
    const int32_t mine = path == Path::kExpress ? 1 : -1;
    auto it = table_.find(key);
    if (it != table_.end() && it->second.balance * mine < 0) {
      it->second.balance += mine;  // cancels one copy the other path reported
      if (it->second.balance == 0) table_.erase(it);
      return false;
    }
    if (!track) return true;
    Entry& e = it != table_.end() ? it->second : table_[key];
    e.balance += mine;
    e.seen_ns = now_ns;
    return true;
  }

  // Forgets balances older than the horizon (a copy the other path dropped).
  void Expire(uint64_t now_ns) {
    for (auto it = table_.begin(); it != table_.end();) {
      if (now_ns - it->second.seen_ns > horizon_ns_) {
        it = table_.erase(it);
      } else {
        ++it;
      }
    }
  }

  size_t Pending() const { return table_.size(); }

 private:
  struct Entry {
    int32_t balance = 0;
    uint64_t seen_ns = 0;
  };
  uint64_t horizon_ns_;
  std::unordered_map<uint64_t, Entry> table_;
};

}  // namespace portanoia
