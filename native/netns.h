// Entering a network namespace for the duration of a scope, on the calling thread
// only (setns(2) with CLONE_NEWNET affects just this thread). Used while the JS
// thread creates sockets that must live in another namespace: an AF_PACKET socket
// and its listeners stay bound to the namespace they were created in, whatever
// thread later uses them.
#pragma once

#include <string>

namespace portanoia {

class NetnsScope {
 public:
  // Enters `path` (e.g. /run/netns/NAME) when non-empty. On failure, ok() is false
  // and err_no()/syscall() say why; the thread stays where it was.
  explicit NetnsScope(const std::string& path);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

  bool ok() const { return err_no_ == 0; }
  int err_no() const { return err_no_; }
  const char* syscall() const { return syscall_; }

 private:
  int saved_fd_ = -1;
  int err_no_ = 0;
  const char* syscall_ = "";
};

}  // namespace portanoia
