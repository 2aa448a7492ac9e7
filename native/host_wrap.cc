// HostWatchWrap and the parseRtnl test entry: see host_wrap.h. Addresses cross as
// text (inet_ntop / inet_pton); TypeScript validates and canonicalises them, this
// file re-checks only that a string parses before it reaches a socket.
#include "host_wrap.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "capture_wrap.h"
#include "netns.h"

namespace portanoia {

namespace {

Napi::Object AddrObject(Napi::Env env, const AddrFact& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", Napi::String::New(env, FormatIp(a.local)));
  o.Set("prefixLength", Napi::Number::New(env, a.prefix_len));
  o.Set("ifindex", Napi::Number::New(env, a.ifindex));
  o.Set("flags", Napi::Number::New(env, a.flags));
  o.Set("scope", Napi::Number::New(env, a.scope));
  if (a.broadcast.family != 0) o.Set("broadcast", Napi::String::New(env, FormatIp(a.broadcast)));
  if (a.peer.family != 0) o.Set("peer", Napi::String::New(env, FormatIp(a.peer)));
  return o;
}

Napi::Object FactsObject(Napi::Env env, const HostFacts& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("generation", Napi::Number::New(env, static_cast<double>(f.generation)));
  o.Set("dumpedAtMs", Napi::Number::New(env, static_cast<double>(f.dumped_at_ns) / 1e6));
  o.Set("noticedAtMs", Napi::Number::New(env, static_cast<double>(f.noticed_at_ns) / 1e6));
  o.Set("nexthops", Napi::Boolean::New(env, f.nexthops_supported));
  Napi::Array addresses = Napi::Array::New(env, f.addresses.size());
  for (uint32_t i = 0; i < f.addresses.size(); i++) addresses.Set(i, AddrObject(env, f.addresses[i]));
  o.Set("addresses", addresses);
  Napi::Array gateways = Napi::Array::New(env, f.gateways.size());
  for (uint32_t i = 0; i < f.gateways.size(); i++) {
    Napi::Object g = Napi::Object::New(env);
    g.Set("address", Napi::String::New(env, FormatIp(f.gateways[i].addr)));
    g.Set("table", Napi::Number::New(env, f.gateways[i].table));
    g.Set("ifindex", Napi::Number::New(env, f.gateways[i].ifindex));
    gateways.Set(i, g);
  }
  o.Set("gateways", gateways);
  return o;
}

uint16_t GetPort(Napi::Env env, Napi::Value v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, "port must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 65535) || d != static_cast<double>(static_cast<uint16_t>(d))) {
    throw Napi::RangeError::New(env, "port must be an integer in 0..65535");
  }
  return static_cast<uint16_t>(d);
}

}  // namespace

Napi::Function HostWatchWrap::Define(Napi::Env env) {
  return DefineClass(env, "HostWatch",
                     {
                         InstanceMethod<&HostWatchWrap::Start>("start"),
                         InstanceMethod<&HostWatchWrap::Facts>("facts"),
                         InstanceMethod<&HostWatchWrap::Peer>("peer"),
                         InstanceMethod<&HostWatchWrap::Connected>("connected"),
                         InstanceMethod<&HostWatchWrap::RouteType>("routeType"),
                         InstanceMethod<&HostWatchWrap::LocalPortRange>("localPortRange"),
                         InstanceMethod<&HostWatchWrap::Stats>("stats"),
                         InstanceMethod<&HostWatchWrap::LastError>("lastError"),
                         InstanceMethod<&HostWatchWrap::Close>("close"),
                     });
}

HostWatchWrap::HostWatchWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<HostWatchWrap>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  std::string netns;
  if (info[0].IsObject()) {
    Napi::Value v = info[0].As<Napi::Object>().Get("netns");
    if (!v.IsUndefined()) {
      if (!v.IsString()) throw Napi::TypeError::New(env, "netns must be a string");
      netns = v.As<Napi::String>().Utf8Value();
    }
  }
  SysError err;
  watcher_ = NetlinkWatcher::Open(netns, &err);
  if (!watcher_) throw MakeSysError(env, err);
  diag_ = SockDiag::Open(netns, &err);
  if (!diag_) throw MakeSysError(env, err);
  // /proc/sys/net shows the namespace of whoever opens it; the fd keeps that one.
  NetnsScope scope(netns);
  if (scope.ok()) port_range_fd_ = open("/proc/sys/net/ipv4/ip_local_port_range", O_RDONLY | O_CLOEXEC);
}

HostWatchWrap::~HostWatchWrap() {
  // Safety net only: close() is the contract. The thread must not outlive us.
  Shutdown();
  if (has_tsfn_) on_change_.Release();
  if (cleanup_) cleanup_->Remove(env_);
}

void HostWatchWrap::Shutdown() {
  if (watcher_) watcher_->Stop();
  watcher_.reset();
  diag_.reset();
  if (port_range_fd_ >= 0) close(port_range_fd_);
  port_range_fd_ = -1;
}

Napi::Value HostWatchWrap::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!watcher_) throw Napi::Error::New(env, "host watch is closed");
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "start(onChange): onChange must be a function");
  if (has_tsfn_) return env.Undefined();
  on_change_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "portanoia-host-facts", 0, 1);
  on_change_.Unref(env);
  has_tsfn_ = true;
  // After the thread-safe function, so it runs first at teardown (reverse order): the
  // thread is joined before the function it calls goes away.
  cleanup_.emplace(env.AddCleanupHook(std::function<void()>([this] {
    Shutdown();
    // As in CaptureWrap::OnEnvCleanup: the hook's data and the function are Node's now.
    cleanup_.reset();
    has_tsfn_ = false;
  })));
  Napi::ThreadSafeFunction tsfn = on_change_;
  SysError err;
  if (!watcher_->Start([tsfn]() mutable { tsfn.NonBlockingCall(RingJs); }, &err)) throw MakeSysError(env, err);
  return env.Undefined();
}

Napi::Value HostWatchWrap::Facts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!watcher_) throw Napi::Error::New(env, "host watch is closed");
  return FactsObject(env, *watcher_->Facts());
}

IpAddr HostWatchWrap::GetAddr(const Napi::CallbackInfo& info, size_t index, const char* usage) {
  Napi::Env env = info.Env();
  if (!diag_) throw Napi::Error::New(env, "host watch is closed");
  IpAddr a;
  if (!info[index].IsString() || !ParseIp(info[index].As<Napi::String>().Utf8Value(), &a)) {
    throw Napi::TypeError::New(env, usage);
  }
  return a;
}

Napi::Value HostWatchWrap::Peer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const IpAddr a = GetAddr(info, 0, "peer(address, ignoreLocalPorts?): address must be an IP address literal");
  std::vector<uint16_t> ignore;
  if (info[1].IsArray()) {
    auto list = info[1].As<Napi::Array>();
    if (list.Length() > 65536) throw Napi::RangeError::New(env, "ignoreLocalPorts: at most 65536 ports");
    for (uint32_t i = 0; i < list.Length(); i++) ignore.push_back(GetPort(env, list.Get(i)));
  } else if (!info[1].IsUndefined()) {
    throw Napi::TypeError::New(env, "peer(address, ignoreLocalPorts?): ignoreLocalPorts must be an array of ports");
  }
  SysError err;
  const int bits = diag_->Peer(a, ignore, &err);
  if (bits < 0) throw MakeSysError(env, err);
  return Napi::Number::New(env, bits);
}

Napi::Value HostWatchWrap::Connected(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "connected(proto, local, localPort, remote, remotePort)");
  const double proto = info[0].As<Napi::Number>().DoubleValue();
  if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) throw Napi::RangeError::New(env, "proto must be 6 or 17");
  const IpAddr local = GetAddr(info, 1, "connected(): local must be an IP address literal");
  const uint16_t local_port = GetPort(env, info[2]);
  const IpAddr remote = GetAddr(info, 3, "connected(): remote must be an IP address literal");
  const uint16_t remote_port = GetPort(env, info[4]);
  if (local.family != remote.family) throw Napi::TypeError::New(env, "connected(): local and remote must be one family");
  SysError err;
  const int r = diag_->Connected(static_cast<uint8_t>(proto), local, local_port, remote, remote_port, &err);
  if (r < 0) throw MakeSysError(env, err);
  return Napi::Boolean::New(env, r > 0);
}

Napi::Value HostWatchWrap::RouteType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const IpAddr a = GetAddr(info, 0, "routeType(address): address must be an IP address literal");
  SysError err;
  const int type = diag_->RouteType(a, &err);
  if (type < 0) throw MakeSysError(env, err);
  return Napi::Number::New(env, type);
}

Napi::Value HostWatchWrap::LocalPortRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (port_range_fd_ < 0) return env.Null();
  char buf[64] = {};
  const ssize_t n = pread(port_range_fd_, buf, sizeof(buf) - 1, 0);
  unsigned lo = 0;
  unsigned hi = 0;
  if (n <= 0 || std::sscanf(buf, "%u %u", &lo, &hi) != 2 || lo > 65535 || hi > 65535 || lo > hi) return env.Null();
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, lo));
  out.Set(1u, Napi::Number::New(env, hi));
  return out;
}

Napi::Value HostWatchWrap::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const WatcherStats s = watcher_ ? watcher_->Stats() : WatcherStats{};
  auto set = [&](const char* key, uint64_t v) { o.Set(key, Napi::Number::New(env, static_cast<double>(v))); };
  set("dumps", s.dumps);
  set("notifications", s.notifications);
  set("overruns", s.overruns);
  set("dumpErrors", s.dump_errors);
  set("lastDumpNs", s.last_dump_ns);
  o.Set("sctp", Napi::Boolean::New(env, diag_ ? diag_->sctp_available() : false));
  return o;
}

Napi::Value HostWatchWrap::LastError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (watcher_) {
    const SysError e = watcher_->LastError();
    if (e.err_no != 0) o.Set("dump", MakeSysError(env, e).Value());
  }
  if (diag_ && !diag_->sctp_available()) o.Set("sctp", MakeSysError(env, diag_->sctp_error()).Value());
  return o;
}

Napi::Value HostWatchWrap::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Shutdown();
  if (cleanup_) {
    cleanup_->Remove(env);
    cleanup_.reset();
  }
  if (has_tsfn_) {
    on_change_.Release();
    has_tsfn_ = false;
  }
  return env.Undefined();
}

Napi::Value ParseRtnl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "parseRtnl(messages: Buffer)");
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  FactsParts parts;
  CollectMessages(buf.Data(), buf.Length(), &parts);
  return FactsObject(env, BuildFacts(parts));
}

}  // namespace portanoia
