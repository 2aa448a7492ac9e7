// The project's own raw frame sender, napi-free: an AF_PACKET socket bound to one
// interface that transmits pre-built frames with sendmmsg(2), paced or as fast as
// the machine allows. It is the traffic source of the privileged tests, the
// benchmarks and `portanoia selftest`; frames are crafted in TypeScript
// (lib/craft/frames.ts), so nothing here interprets packet contents.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "capture.h"

namespace portanoia {

struct SendResult {
  uint64_t sent = 0;
  uint64_t failed = 0;     // frames the kernel refused (ENOBUFS under overload, for example)
  uint64_t elapsed_ns = 0;
  int last_errno = 0;
};

class Sender {
 public:
  static std::unique_ptr<Sender> Open(const std::string& interface, const std::string& netns,
                                      SysError* err);
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Sends `total` frames cycling through `frames` (pointer + length each), at `pps`
  // frames per second (0: unpaced). Blocks the calling thread until done.
  SendResult Send(const std::vector<std::pair<const uint8_t*, size_t>>& frames, uint64_t total,
                  uint64_t pps);

 private:
  Sender() = default;
  int fd_ = -1;
  int ifindex_ = 0;
};

}  // namespace portanoia
