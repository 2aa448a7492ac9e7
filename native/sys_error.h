// SysError: how every napi-free core reports a failed system call (errno, the call's
// name, and what it was about); the glue turns it into a Node-style error. Plain data,
// no thread affinity.
#pragma once

#include <string>

namespace portanoia {

struct SysError {
  int err_no = 0;
  const char* syscall = "";
  std::string detail;  // e.g. the port or interface involved
};

}  // namespace portanoia
