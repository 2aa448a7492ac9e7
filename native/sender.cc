// Sender: see sender.h. PACKET_QDISC_BYPASS skips the egress qdisc, which is what
// lets one core offer the sensor side more packets than it could otherwise; pacing
// sleeps between batches against CLOCK_MONOTONIC so long runs do not drift.
#include "sender.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "netns.h"

namespace portanoia {

namespace {

uint64_t MonoNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

}  // namespace

std::unique_ptr<Sender> Sender::Open(const std::string& interface, const std::string& netns,
                                     SysError* err) {
  std::unique_ptr<Sender> sender(new Sender());
  NetnsScope scope(netns);
  if (!scope.ok()) {
    *err = SysError{scope.err_no(), scope.syscall(), netns};
    return nullptr;
  }
  const unsigned ifindex = if_nametoindex(interface.c_str());
  if (ifindex == 0) {
    *err = SysError{ENODEV, "if_nametoindex", interface};
    return nullptr;
  }
  // Protocol 0: a send-only socket never receives, so it costs nothing on RX.
  sender->fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (sender->fd_ < 0) {
    *err = SysError{errno, "socket", interface};
    return nullptr;
  }
  int one = 1;
  setsockopt(sender->fd_, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = static_cast<int>(ifindex);
  sll.sll_protocol = 0;
  if (bind(sender->fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
    *err = SysError{errno, "bind", interface};
    return nullptr;
  }
  sender->ifindex_ = static_cast<int>(ifindex);
  return sender;
}

Sender::~Sender() {
  if (fd_ >= 0) close(fd_);
}

SendResult Sender::Send(const std::vector<std::pair<const uint8_t*, size_t>>& frames,
                        uint64_t total, uint64_t pps) {
  SendResult result;
  if (frames.empty() || total == 0) return result;
  constexpr unsigned kBatch = 64;
  mmsghdr msgs[kBatch];
  iovec iovs[kBatch];
  const uint64_t start = MonoNs();
  uint64_t next_frame = 0;
  while (result.sent + result.failed < total) {
    const uint64_t left = total - result.sent - result.failed;
    unsigned batch = left < kBatch ? static_cast<unsigned>(left) : kBatch;
    if (pps > 0) {
      // Frames due by now; never more than one batch ahead of schedule.
      const uint64_t done = result.sent + result.failed;
      const uint64_t due_ns = start + done * 1'000'000'000u / pps;
      const uint64_t now = MonoNs();
      if (due_ns > now) {
        const uint64_t wait = due_ns - now;
        timespec ts{static_cast<time_t>(wait / 1'000'000'000u), static_cast<long>(wait % 1'000'000'000u)};
        nanosleep(&ts, nullptr);
      }
      const uint64_t allowed = (MonoNs() - start) * pps / 1'000'000'000u + 1;
      if (allowed > done && allowed - done < batch) batch = static_cast<unsigned>(allowed - done);
    }
    for (unsigned i = 0; i < batch; i++) {
      const auto& f = frames[(next_frame + i) % frames.size()];
      iovs[i].iov_base = const_cast<uint8_t*>(f.first);
      iovs[i].iov_len = f.second;
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = sendmmsg(fd_, msgs, batch, 0);
    if (n < 0) {
      result.last_errno = errno;
      if (errno == ENOBUFS || errno == EAGAIN) {
        // The device queue is full: count the first frame as lost and go on, so an
        // overloaded run still terminates with an honest count.
        result.failed++;
        next_frame++;
        continue;
      }
      result.failed += batch;
      next_frame += batch;
      continue;
    }
    result.sent += unsigned(n);
    next_frame += unsigned(n);
  }
  result.elapsed_ns = MonoNs() - start;
  return result;
}

}  // namespace portanoia
