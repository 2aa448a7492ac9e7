// The JS face of the host-facts core (netlink.h, sock_diag.h): HostWatch, one object
// per watched namespace. Its constructor opens the rtnetlink and sock_diag sockets in
// the namespace and dumps the facts once; start(onChange) starts the watcher thread,
// whose thread-safe function is unref'd (it never keeps the process alive) and only
// tells JS to call facts(). The live checks (peer, connected, routeType) and
// localPortRange() are synchronous calls on the JS thread. Per-object state only; an
// env cleanup hook joins the thread before the thread-safe function goes away, as for
// CaptureWrap. Also the parseRtnl test entry. Runs on the JS thread except the
// thread-safe function's trigger.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <optional>

#include "netlink.h"
#include "sock_diag.h"

namespace portanoia {

class HostWatchWrap : public Napi::ObjectWrap<HostWatchWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit HostWatchWrap(const Napi::CallbackInfo& info);
  ~HostWatchWrap() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Facts(const Napi::CallbackInfo& info);
  Napi::Value Peer(const Napi::CallbackInfo& info);
  Napi::Value Connected(const Napi::CallbackInfo& info);
  Napi::Value RouteType(const Napi::CallbackInfo& info);
  Napi::Value LocalPortRange(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value LastError(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void Shutdown();
  IpAddr GetAddr(const Napi::CallbackInfo& info, size_t index, const char* usage);

  std::unique_ptr<NetlinkWatcher> watcher_;
  std::unique_ptr<SockDiag> diag_;
  int port_range_fd_ = -1;  // ip_local_port_range, opened in the namespace
  Napi::ThreadSafeFunction on_change_;
  bool has_tsfn_ = false;
  std::optional<Napi::Env::CleanupHook<std::function<void()>>> cleanup_;
  Napi::Env env_;
};

// Test entry: rtnetlink messages (a Buffer of whole messages) to the facts object
// facts() returns.
Napi::Value ParseRtnl(const Napi::CallbackInfo& info);

}  // namespace portanoia
