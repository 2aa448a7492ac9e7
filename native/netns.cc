// NetnsScope: see netns.h. Restoring the original namespace cannot fail for a
// namespace fd we hold open; if the kernel says otherwise the thread would run JS in
// the wrong namespace, which is worse than stopping, so that one case aborts.
#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace portanoia {

NetnsScope::NetnsScope(const std::string& path) {
  if (path.empty()) return;
  saved_fd_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (saved_fd_ < 0) {
    err_no_ = errno;
    syscall_ = "open";
    return;
  }
  const int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    err_no_ = errno;
    syscall_ = "open";
    close(saved_fd_);
    saved_fd_ = -1;
    return;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    err_no_ = errno;
    syscall_ = "setns";
    close(saved_fd_);
    saved_fd_ = -1;
  }
  close(target);
}

NetnsScope::~NetnsScope() {
  if (saved_fd_ < 0) return;
  if (setns(saved_fd_, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "portanoia: cannot return to the original network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
  close(saved_fd_);
}

}  // namespace portanoia
