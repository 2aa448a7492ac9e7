// HostWatchWrap and the parseRtnl test entry: see host_wrap.h. Addresses cross as
// text (inet_ntop / inet_pton); TypeScript validates and canonicalises them, this
// file re-checks only that a string parses before it reaches a socket.
#include "host_wrap.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <deque>
#include <string>
#include <utility>
#include <vector>

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

// At most this many targets a batch, and ignored ports a call: bounds, not policy.
constexpr uint32_t kMaxTargets = 65536;
// Batches waiting behind the one in flight: the daemon keeps one outstanding, so
// more means a caller that does not wait; it is refused rather than queued forever.
constexpr size_t kMaxQueuedBatches = 64;

std::vector<uint16_t> GetPorts(Napi::Env env, Napi::Value v, const char* usage) {
  std::vector<uint16_t> ports;
  if (v.IsUndefined()) return ports;
  if (!v.IsArray()) throw Napi::TypeError::New(env, usage);
  auto list = v.As<Napi::Array>();
  if (list.Length() > 65536) throw Napi::RangeError::New(env, "ignoreLocalPorts: at most 65536 ports");
  for (uint32_t i = 0; i < list.Length(); i++) ports.push_back(GetPort(env, list.Get(i)));
  return ports;
}

// "198.18.0.1" or "198.18.0.0/24": an address, or a network to ask about as a whole.
bool ParseTarget(const std::string& text, PeerQuery* out) {
  const size_t slash = text.find('/');
  if (!ParseIp(text.substr(0, slash), &out->addr)) return false;
  const unsigned max = out->addr.family == 4 ? 32 : 128;
  if (slash == std::string::npos) {
    out->prefix_len = static_cast<uint8_t>(max);
    return true;
  }
  const std::string digits = text.substr(slash + 1);
  if (digits.empty() || digits.size() > 3) return false;
  unsigned len = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return false;
    len = len * 10 + static_cast<unsigned>(c - '0');
  }
  if (len > max) return false;
  out->prefix_len = static_cast<uint8_t>(len);
  return true;
}

std::vector<PeerQuery> GetTargets(Napi::Env env, Napi::Value v, const char* usage) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, usage);
  auto list = v.As<Napi::Array>();
  if (list.Length() > kMaxTargets) throw Napi::RangeError::New(env, "targets: at most 65536 a batch");
  std::vector<PeerQuery> queries(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value t = list.Get(i);
    if (!t.IsString() || !ParseTarget(t.As<Napi::String>().Utf8Value(), &queries[i])) throw Napi::TypeError::New(env, usage);
  }
  return queries;
}

}  // namespace

// A batch waiting for its turn.
struct PeerJob {
  std::vector<PeerQuery> queries;
  std::vector<uint16_t> ignore;
  Napi::Promise::Deferred deferred;
};

// What HostWatchWrap and its workers share; touched on the JS thread only (a
// worker's Execute() uses just its own copy of `diag`, which no one else uses while
// `busy`).
struct PeerQueue {
  std::string netns;
  std::shared_ptr<SockDiag> diag;
  std::deque<PeerJob> pending;
  bool busy = false;
  bool closed = false;
  uint64_t batches = 0;
  uint64_t walks = 0;
  uint64_t sockets = 0;
  bool sctp_available = true;
  SysError sctp_error;
};

namespace {

void StartNextPeerJob(Napi::Env env, const std::shared_ptr<PeerQueue>& q);

class PeerWorker : public Napi::AsyncWorker {
 public:
  PeerWorker(Napi::Env env, std::shared_ptr<PeerQueue> queue, PeerJob job)
      : Napi::AsyncWorker(env, "portanoia-peers"), queue_(std::move(queue)), diag_(queue_->diag), job_(std::move(job)) {}

  // On a libuv pool thread: the sockets' namespace was fixed when they were opened
  // (a reopen after a walk left early enters it on this thread, and leaves it again).
  void Execute() override {
    const uint64_t walks = diag_->walks();
    const uint64_t sockets = diag_->sockets();
    ok_ = diag_->Peers(job_.queries, job_.ignore, &bits_, &err_);
    walks_ = diag_->walks() - walks;
    sockets_ = diag_->sockets() - sockets;
    sctp_available_ = diag_->sctp_available();
    if (!sctp_available_) sctp_error_ = diag_->sctp_error();
  }

  void OnOK() override {
    Napi::Env env = Env();
    PeerQueue& q = *queue_;
    q.busy = false;
    q.walks += walks_;
    q.sockets += sockets_;
    if (!sctp_available_ && q.sctp_available) {
      q.sctp_available = false;
      q.sctp_error = sctp_error_;
    }
    try {
      if (ok_) {
        Napi::Array out = Napi::Array::New(env, bits_.size());
        for (uint32_t i = 0; i < bits_.size(); i++) out.Set(i, Napi::Number::New(env, bits_[i]));
        job_.deferred.Resolve(out);
      } else {
        job_.deferred.Reject(MakeSysError(env, err_).Value());
      }
      StartNextPeerJob(env, queue_);
    } catch (const Napi::Error&) {
      // JS cannot run any more (a worker thread being terminated): nobody is left to
      // hear the answer, and an exception out of here would abort the process.
    }
  }

 private:
  std::shared_ptr<PeerQueue> queue_;
  std::shared_ptr<SockDiag> diag_;
  PeerJob job_;
  std::vector<int> bits_;
  SysError err_;
  bool ok_ = false;
  uint64_t walks_ = 0;
  uint64_t sockets_ = 0;
  bool sctp_available_ = true;
  SysError sctp_error_;
};

void StartNextPeerJob(Napi::Env env, const std::shared_ptr<PeerQueue>& q) {
  if (q->busy) return;
  if (q->closed) {
    while (!q->pending.empty()) {
      q->pending.front().deferred.Reject(Napi::Error::New(env, "host watch is closed").Value());
      q->pending.pop_front();
    }
    return;
  }
  if (q->pending.empty()) return;
  PeerJob job = std::move(q->pending.front());
  q->pending.pop_front();
  q->busy = true;
  q->batches++;
  // Queue() hands the worker to Node, which deletes it after OnOK.
  (new PeerWorker(env, q, std::move(job)))->Queue();
}

}  // namespace

Napi::Function HostWatchWrap::Define(Napi::Env env) {
  return DefineClass(env, "HostWatch",
                     {
                         InstanceMethod<&HostWatchWrap::Start>("start"),
                         InstanceMethod<&HostWatchWrap::Facts>("facts"),
                         InstanceMethod<&HostWatchWrap::Peer>("peer"),
                         InstanceMethod<&HostWatchWrap::Peers>("peers"),
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
  peers_ = std::make_shared<PeerQueue>();
  peers_->netns = netns;
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
  // A batch in flight keeps its own SockDiag; what waits behind it is rejected then.
  if (peers_) {
    peers_->closed = true;
    peers_->diag.reset();
  }
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
  const std::vector<uint16_t> ignore =
      GetPorts(env, info[1], "peer(address, ignoreLocalPorts?): ignoreLocalPorts must be an array of ports");
  SysError err;
  const int bits = diag_->Peer(a, ignore, &err);
  if (bits < 0) throw MakeSysError(env, err);
  return Napi::Number::New(env, bits);
}

Napi::Value HostWatchWrap::Peers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!diag_) throw Napi::Error::New(env, "host watch is closed");
  const char* usage = "peers(targets, ignoreLocalPorts?): targets must be an array of addresses or address/prefix";
  PeerJob job{GetTargets(env, info[0], usage),
              GetPorts(env, info[1], "peers(targets, ignoreLocalPorts?): ignoreLocalPorts must be an array of ports"),
              Napi::Promise::Deferred::New(env)};
  if (peers_->pending.size() >= kMaxQueuedBatches) {
    throw Napi::Error::New(env, "peers(): 64 batches already wait for the one in flight");
  }
  Napi::Promise promise = job.deferred.Promise();
  if (!peers_->diag) {
    SysError err;
    std::unique_ptr<SockDiag> d = SockDiag::Open(peers_->netns, &err);
    if (!d) throw MakeSysError(env, err);
    peers_->diag = std::move(d);
  }
  peers_->pending.push_back(std::move(job));
  StartNextPeerJob(env, peers_);
  return promise;
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
  o.Set("sctp", Napi::Boolean::New(env, diag_ ? diag_->sctp_available() && peers_->sctp_available : false));
  set("peerBatches", peers_ ? peers_->batches : 0);
  set("peerWalks", peers_ ? peers_->walks : 0);
  set("peerSockets", peers_ ? peers_->sockets : 0);
  return o;
}

Napi::Value HostWatchWrap::LastError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (watcher_) {
    const SysError e = watcher_->LastError();
    if (e.err_no != 0) o.Set("dump", MakeSysError(env, e).Value());
  }
  if (diag_ && !diag_->sctp_available()) {
    o.Set("sctp", MakeSysError(env, diag_->sctp_error()).Value());
  } else if (peers_ && !peers_->sctp_available) {
    o.Set("sctp", MakeSysError(env, peers_->sctp_error).Value());
  }
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

Napi::Value PeerProgramsOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::vector<PeerQuery> queries =
      GetTargets(env, info[0], "peerPrograms(targets, ignoreLocalPorts?): targets must be addresses or address/prefix");
  const std::vector<uint16_t> ignore =
      GetPorts(env, info[1], "peerPrograms(targets, ignoreLocalPorts?): ignoreLocalPorts must be an array of ports");
  const std::vector<std::vector<uint8_t>> programs = PeerPrograms(queries, ignore);
  Napi::Array out = Napi::Array::New(env, programs.size());
  for (uint32_t i = 0; i < programs.size(); i++) {
    out.Set(i, Napi::Buffer<uint8_t>::Copy(env, programs[i].data(), programs[i].size()));
  }
  return out;
}

}  // namespace portanoia
