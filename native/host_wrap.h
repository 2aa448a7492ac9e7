// The JS face of the host-facts core (netlink.h, sock_diag.h): HostWatch, one object
// per watched namespace. Its constructor opens the rtnetlink and sock_diag sockets in
// the namespace and dumps the facts once; start(onChange) starts the watcher thread,
// whose thread-safe function is unref'd (it never keeps the process alive) and only
// tells JS to call facts(). The cheap live checks (connected, routeType) and
// localPortRange() are synchronous calls on the JS thread, and so is peer(), the
// single-address peer check kept for tools and benchmarks. peers() answers a batch of
// addresses and networks off the JS thread: an N-API AsyncWorker (libuv's pool) runs
// it on a SockDiag of its own, opened at the first batch, and settles a promise; one
// batch runs at a time, later ones wait in a queue (at most 64: past that peers()
// throws), and only a batch in flight or waiting keeps the process alive (the work
// request does). The queue is shared with
// the worker, so a batch may finish after close() or collection: it still settles,
// and what waits behind it is rejected. Per-object state only; an env cleanup hook
// joins the watcher thread before the thread-safe function goes away, as for
// CaptureWrap. Also the parseRtnl and peerPrograms test entries. Runs on the JS
// thread except the thread-safe function's trigger and the workers' Execute().
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <optional>

#include "netlink.h"
#include "sock_diag.h"

namespace portanoia {

struct PeerQueue;

class HostWatchWrap : public Napi::ObjectWrap<HostWatchWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit HostWatchWrap(const Napi::CallbackInfo& info);
  ~HostWatchWrap() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Facts(const Napi::CallbackInfo& info);
  Napi::Value Peer(const Napi::CallbackInfo& info);
  Napi::Value Peers(const Napi::CallbackInfo& info);
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
  std::shared_ptr<PeerQueue> peers_;
  int port_range_fd_ = -1;  // ip_local_port_range, opened in the namespace
  Napi::ThreadSafeFunction on_change_;
  bool has_tsfn_ = false;
  std::optional<Napi::Env::CleanupHook<std::function<void()>>> cleanup_;
  Napi::Env env_;
};

// Test entry: rtnetlink messages (a Buffer of whole messages) to the facts object
// facts() returns.
Napi::Value ParseRtnl(const Napi::CallbackInfo& info);

// Test entry: the programs (Buffers) a peer batch sends first, for targets and
// ignored local ports as peers() takes them.
Napi::Value PeerProgramsOf(const Napi::CallbackInfo& info);

}  // namespace portanoia
