// CaptureWrap, SenderWrap and the parse test entry: see capture_wrap.h. Validation
// of meaning (port specs, filter semantics) happens in TypeScript; this file
// re-checks only what would be memory-unsafe (buffer sizes, bitmap lengths,
// instruction counts) and never crashes on bad input: it throws TypeError/RangeError.
#include "capture_wrap.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "errno_name.h"
#include "packet_parse.h"

namespace portanoia {

namespace {

constexpr size_t kMaxInstructions = 4096;  // BPF_MAXINSNS
constexpr size_t kBitmapBytes = 65536 / 8;

std::string ErrnoCode(int err_no) {
  const char* name = ErrnoName(err_no);
  return name != nullptr ? name : "E" + std::to_string(err_no);
}

[[noreturn]] void ThrowType(Napi::Env env, const char* message) {
  throw Napi::TypeError::New(env, message);
}

std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsString()) ThrowType(o.Env(), (std::string(key) + " must be a string").c_str());
  return v.As<Napi::String>().Utf8Value();
}

uint32_t GetUint(const Napi::Object& o, const char* key, uint32_t fallback, uint32_t min,
                 uint32_t max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) ThrowType(o.Env(), (std::string(key) + " must be a number").c_str());
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    throw Napi::RangeError::New(o.Env(), std::string(key) + " is out of range");
  }
  return static_cast<uint32_t>(d);
}

std::vector<sock_filter> GetFilter(Napi::Env env, Napi::Value v) {
  if (!v.IsBuffer()) ThrowType(env, "filter must be a Buffer of struct sock_filter");
  auto buf = v.As<Napi::Buffer<uint8_t>>();
  const size_t len = buf.Length();
  if (len == 0 || len % sizeof(sock_filter) != 0 || len / sizeof(sock_filter) > kMaxInstructions) {
    throw Napi::RangeError::New(env, "filter must hold 1..4096 instructions of 8 bytes");
  }
  std::vector<sock_filter> filter(len / sizeof(sock_filter));
  std::memcpy(filter.data(), buf.Data(), len);
  return filter;
}

void GetBitmap(Napi::Env env, const Napi::Object& ports, const char* key, std::vector<uint64_t>* out) {
  Napi::Value v = ports.Get(key);
  if (!v.IsBuffer()) ThrowType(env, "ports.tcp/udp/sctp must be 8192-byte Buffers");
  auto buf = v.As<Napi::Buffer<uint8_t>>();
  if (buf.Length() != kBitmapBytes) throw Napi::RangeError::New(env, "port bitmaps must be 8192 bytes");
  // Bit p of byte p/8 (little-endian bit order), read into 64-bit words.
  out->assign(1024, 0);
  for (size_t i = 0; i < kBitmapBytes; i++) {
    (*out)[i / 8] |= uint64_t(buf.Data()[i]) << ((i % 8) * 8);
  }
}

PortSet GetPorts(Napi::Env env, Napi::Value v) {
  if (!v.IsObject()) ThrowType(env, "ports must be an object of bitmaps");
  PortSet set;
  auto o = v.As<Napi::Object>();
  GetBitmap(env, o, "tcp", &set.tcp);
  GetBitmap(env, o, "udp", &set.udp);
  GetBitmap(env, o, "sctp", &set.sctp);
  // IP protocol tripwires: 256 bits. Optional, so a caller that has none may leave it out.
  Napi::Value ip = o.Get("ip");
  if (!ip.IsUndefined()) {
    if (!ip.IsBuffer()) ThrowType(env, "ports.ip must be a 32-byte Buffer");
    auto buf = ip.As<Napi::Buffer<uint8_t>>();
    if (buf.Length() != 32) throw Napi::RangeError::New(env, "the IP protocol bitmap must be 32 bytes");
    for (size_t i = 0; i < 32; i++) set.ip[i / 8] |= uint64_t(buf.Data()[i]) << ((i % 8) * 8);
  }
  return set;
}


}  // namespace

// Runs the doorbell's JS callback on the JS thread. The default thread-safe-function
// call goes through Napi::Function::Call, which throws a C++ exception when the env
// refuses to run JS (a worker being terminated) and rethrows it out of a C callback:
// std::terminate for the whole process. A raw call cannot throw; an exception from the
// callback itself stays pending and Node reports it as uncaught, as for any callback.
void RingJs(Napi::Env env, Napi::Function callback) {
  if (env == nullptr || callback.IsEmpty()) return;
  napi_value undefined = nullptr;
  if (napi_get_undefined(env, &undefined) != napi_ok) return;
  napi_value ignored = nullptr;
  (void)napi_call_function(env, undefined, callback, 0, nullptr, &ignored);
}

Napi::Error MakeSysError(Napi::Env env, const SysError& err) {
  const std::string code = ErrnoCode(err.err_no);
  std::string message = std::string(err.syscall) + " " + code + " (" + std::strerror(err.err_no) + ")";
  if (!err.detail.empty()) message += " " + err.detail;
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  // Node reports errno negated (libuv convention), as fs and net errors do.
  e.Set("errno", Napi::Number::New(env, -err.err_no));
  e.Set("syscall", Napi::String::New(env, err.syscall));
  if (!err.detail.empty()) e.Set("detail", Napi::String::New(env, err.detail));
  return e;
}

// ---------------------------------------------------------------- CaptureWrap

Napi::Function CaptureWrap::Define(Napi::Env env) {
  return DefineClass(env, "Capture",
                     {
                         InstanceMethod<&CaptureWrap::Start>("start"),
                         InstanceMethod<&CaptureWrap::Drain>("drain"),
                         InstanceMethod<&CaptureWrap::Arm>("arm"),
                         InstanceMethod<&CaptureWrap::Disarm>("disarm"),
                         InstanceMethod<&CaptureWrap::Ended>("ended"),
                         InstanceMethod<&CaptureWrap::Error>("error"),
                         InstanceMethod<&CaptureWrap::SetFilter>("setFilter"),
                         InstanceMethod<&CaptureWrap::AddListener>("addListener"),
                         InstanceMethod<&CaptureWrap::RemoveListener>("removeListener"),
                         InstanceMethod<&CaptureWrap::ListenerPorts>("listenerPorts"),
                         InstanceMethod<&CaptureWrap::Stats>("stats"),
                         InstanceMethod<&CaptureWrap::InterfaceName>("interfaceName"),
                         InstanceMethod<&CaptureWrap::Ref>("ref"),
                         InstanceMethod<&CaptureWrap::Unref>("unref"),
                         InstanceMethod<&CaptureWrap::Close>("close"),
                     });
}

CaptureWrap::CaptureWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<CaptureWrap>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowType(env, "new Capture(options): options must be an object");
  auto o = info[0].As<Napi::Object>();
  CaptureOptions options;
  options.interface = GetString(o, "interface", "");
  options.netns = GetString(o, "netns", "");
  options.filter = GetFilter(env, o.Get("filter"));
  options.ports = GetPorts(env, o.Get("ports"));
  options.ring_records = GetUint(o, "ringRecords", 1u << 16, 64, 1u << 24);
  // Many small blocks rather than a few big ones, for the same 8 MiB: under sparse
  // traffic every block retires after retireMs holding a handful of frames, so the
  // ring rides out a capture-thread stall of blockCount x retireMs (64 ms here, where
  // 8 x 1 MiB and 2 ms gave 16 ms and dropped probes on a busy host); under a flood the
  // bytes buffered are the same.
  options.geometry.block_size = GetUint(o, "blockSize", 128u << 10, 4096, 1u << 28);
  options.geometry.block_count = GetUint(o, "blockCount", 64, 2, 4096);
  // 1 ms: since Linux 6.18 the retire timer is exact, and a lone probe's wait in the
  // kernel is the floor of packet -> JS at a trickle (p99 2.00 -> 1.35 ms at 100 hits/s,
  // BENCHMARKS.md); before 6.18 it is counted in whole jiffies, one at least.
  options.geometry.retire_ms = GetUint(o, "retireMs", 1, 1, 1000);
  // 2 ms: at a sustained rate the JS thread wakes at most ~500 times a second instead of
  // once per 1 ms retire, for at most 2 ms more of delay (packet -> JS p99 stays within
  // issue 9's 5 ms at 300k hits/s); a probe after a quiet spell is never held, only a
  // hand-over within coalesceMs + 2 x retireMs of the one before starts a hold
  // (Capture::HoldUntil).
  options.coalesce_ms = GetUint(o, "coalesceMs", 2, 0, 100);
  if (options.geometry.block_size % 4096 != 0) {
    throw Napi::RangeError::New(env, "blockSize must be a multiple of 4096");
  }
  Napi::Value dedup = o.Get("dedup");
  options.dedup = dedup.IsUndefined() ? true : dedup.ToBoolean().Value();
  Napi::Value express = o.Get("express");
  options.express = !express.IsUndefined() && express.ToBoolean().Value();
  SysError err;
  capture_ = Capture::Open(options, &err);
  if (!capture_) throw MakeSysError(env, err);
}

CaptureWrap::~CaptureWrap() {
  // Safety net only: close() is the contract. The thread must not outlive us.
  if (capture_) capture_->Stop();
  if (has_doorbell_) doorbell_.Release();
  if (cleanup_) cleanup_->Remove(env_);
}

void CaptureWrap::OnEnvCleanup() {
  Shutdown();
  // The env is going away with this object unclosed (process exit, worker termination).
  // node-addon-api's hook wrapper frees the hook's data once we return, and Node
  // finalizes the thread-safe function itself in its own (later) hook; the finalizer
  // that runs after both must touch neither: Remove() would free the data a second
  // time and Release() would use a freed function.
  cleanup_.reset();
  has_doorbell_ = false;
}

void CaptureWrap::Shutdown() {
  if (capture_) {
    capture_->Stop();
    final_stats_ = capture_->Stats();
    capture_.reset();
  }
}

Napi::Value CaptureWrap::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!capture_) throw Napi::Error::New(env, "capture is closed");
  if (!info[0].IsFunction()) ThrowType(env, "start(onReady): onReady must be a function");
  if (has_doorbell_) return env.Undefined();
  doorbell_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "portanoia-doorbell", 0, 1);
  doorbell_.Unref(env);
  has_doorbell_ = true;
  // Registered after the thread-safe function, so it runs before the function's own
  // teardown (hooks run in reverse order): the thread is joined before the function
  // it calls goes away, at process exit and at worker termination alike.
  cleanup_.emplace(env.AddCleanupHook(std::function<void()>([this] { OnEnvCleanup(); })));
  Napi::ThreadSafeFunction tsfn = doorbell_;
  SysError err;
  // NonBlockingCall with an unlimited queue never blocks the capture thread; it
  // fails only while the function is closing, when nobody is waiting anyway.
  if (!capture_->Start([tsfn]() mutable { tsfn.NonBlockingCall(RingJs); }, &err)) {
    throw MakeSysError(env, err);
  }
  return env.Undefined();
}

Napi::Value CaptureWrap::Drain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) ThrowType(env, "drain(buffer): buffer must be a Buffer");
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  if (!capture_) return Napi::Number::New(env, 0);
  const uint32_t max = static_cast<uint32_t>(buf.Length() / sizeof(HitRecord));
  return Napi::Number::New(env, capture_->Drain(buf.Data(), max));
}

Napi::Value CaptureWrap::Arm(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), capture_ ? capture_->ArmDoorbell() : false);
}

Napi::Value CaptureWrap::Disarm(const Napi::CallbackInfo& info) {
  if (capture_) capture_->DisarmDoorbell();
  return info.Env().Undefined();
}

Napi::Value CaptureWrap::Ended(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), capture_ ? capture_->Ended() : true);
}

Napi::Value CaptureWrap::Error(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!capture_) return env.Null();
  const SysError err = capture_->Error();
  if (err.err_no == 0) return env.Null();
  return MakeSysError(env, err).Value();
}

Napi::Value CaptureWrap::SetFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!capture_) throw Napi::Error::New(env, "capture is closed");
  std::vector<sock_filter> filter = GetFilter(env, info[0]);
  PortSet ports = GetPorts(env, info[1]);
  SysError err;
  if (!capture_->SetFilter(filter, ports, &err)) throw MakeSysError(env, err);
  return env.Undefined();
}

Napi::Value CaptureWrap::AddListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!capture_) throw Napi::Error::New(env, "capture is closed");
  if (!info[0].IsNumber()) ThrowType(env, "addListener(port): port must be a number");
  const double port = info[0].As<Napi::Number>().DoubleValue();
  if (!(port >= 1 && port <= 65535) || port != static_cast<double>(static_cast<uint16_t>(port))) {
    throw Napi::RangeError::New(env, "port must be an integer in 1..65535");
  }
  SysError err;
  if (!capture_->AddListener(static_cast<uint16_t>(port), &err)) throw MakeSysError(env, err);
  return env.Undefined();
}

Napi::Value CaptureWrap::RemoveListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowType(env, "removeListener(port): port must be a number");
  const double port = info[0].As<Napi::Number>().DoubleValue();
  if (capture_ && port >= 1 && port <= 65535) capture_->RemoveListener(static_cast<uint16_t>(port));
  return env.Undefined();
}

Napi::Value CaptureWrap::ListenerPorts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  if (!capture_) return out;
  uint32_t i = 0;
  for (uint16_t p : capture_->ListenerPorts()) out.Set(i++, Napi::Number::New(env, p));
  return out;
}

Napi::Value CaptureWrap::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const CaptureStats s = capture_ ? capture_->Stats() : final_stats_;
  auto set = [&](const char* key, uint64_t v) { o.Set(key, Napi::Number::New(env, static_cast<double>(v))); };
  set("kernelPackets", s.kernel_packets);
  set("kernelDrops", s.kernel_drops);
  set("kernelFreezes", s.kernel_freezes);
  set("frames", s.frames);
  set("hits", s.hits);
  set("ringDrops", s.ring_drops);
  set("notTripwire", s.not_tripwire);
  set("malformed", s.malformed);
  set("duplicates", s.duplicates);
  set("connects", s.connects);
  set("blocks", s.blocks);
  set("expressHits", s.express_hits);
  set("expressCopies", s.express_copies);
  set("expressSwitches", s.express_switches);
  set("wakeups", s.wakeups);
  set("expressActive", s.express_active ? 1 : 0);
  return o;
}

Napi::Value CaptureWrap::InterfaceName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowType(env, "interfaceName(ifindex): ifindex must be a number");
  const double index = info[0].As<Napi::Number>().DoubleValue();
  if (!capture_ || !(index >= 1 && index <= 0x7fffffff)) return Napi::String::New(env, "");
  return Napi::String::New(env, capture_->InterfaceName(static_cast<uint32_t>(index)));
}

Napi::Value CaptureWrap::Ref(const Napi::CallbackInfo& info) {
  if (has_doorbell_ && !refed_) {
    doorbell_.Ref(info.Env());
    refed_ = true;
  }
  return info.Env().Undefined();
}

Napi::Value CaptureWrap::Unref(const Napi::CallbackInfo& info) {
  if (has_doorbell_ && refed_) {
    doorbell_.Unref(info.Env());
    refed_ = false;
  }
  return info.Env().Undefined();
}

Napi::Value CaptureWrap::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Shutdown();
  if (cleanup_) {
    cleanup_->Remove(env);
    cleanup_.reset();
  }
  if (has_doorbell_) {
    doorbell_.Release();
    has_doorbell_ = false;
  }
  return env.Undefined();
}

// ---------------------------------------------------------------- SenderWrap

Napi::Function SenderWrap::Define(Napi::Env env) {
  return DefineClass(env, "Sender",
                     {
                         InstanceMethod<&SenderWrap::Send>("send"),
                         InstanceMethod<&SenderWrap::Close>("close"),
                     });
}

SenderWrap::SenderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SenderWrap>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowType(env, "new Sender(options): options must be an object");
  auto o = info[0].As<Napi::Object>();
  const std::string interface = GetString(o, "interface", "");
  if (interface.empty()) ThrowType(env, "Sender needs an interface name");
  SysError err;
  sender_ = Sender::Open(interface, GetString(o, "netns", ""), &err);
  if (!sender_) throw MakeSysError(env, err);
}

Napi::Value SenderWrap::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!sender_) throw Napi::Error::New(env, "sender is closed");
  if (!info[0].IsBuffer() || !info[1].IsTypedArray() || !info[2].IsNumber()) {
    ThrowType(env, "send(frames: Buffer, lengths: Uint32Array, total: number, pps?: number)");
  }
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  auto lengths_value = info[1].As<Napi::TypedArray>();
  if (lengths_value.TypedArrayType() != napi_uint32_array) ThrowType(env, "lengths must be a Uint32Array");
  auto lengths = lengths_value.As<Napi::Uint32Array>();
  std::vector<std::pair<const uint8_t*, size_t>> frames;
  size_t offset = 0;
  for (size_t i = 0; i < lengths.ElementLength(); i++) {
    const size_t len = lengths[i];
    if (len < 14 || len > 65535 || offset + len > buf.Length()) {
      throw Napi::RangeError::New(env, "frame lengths do not fit the frames buffer");
    }
    frames.emplace_back(buf.Data() + offset, len);
    offset += len;
  }
  const double total = info[2].As<Napi::Number>().DoubleValue();
  const double pps = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : 0;
  if (!(total >= 0 && total <= 9e15) || !(pps >= 0 && pps <= 1e9)) {
    throw Napi::RangeError::New(env, "total and pps must be non-negative");
  }
  const SendResult r = sender_->Send(frames, static_cast<uint64_t>(total), static_cast<uint64_t>(pps));
  Napi::Object o = Napi::Object::New(env);
  o.Set("sent", Napi::Number::New(env, static_cast<double>(r.sent)));
  o.Set("failed", Napi::Number::New(env, static_cast<double>(r.failed)));
  o.Set("elapsedNs", Napi::Number::New(env, static_cast<double>(r.elapsed_ns)));
  o.Set("lastError", r.last_errno != 0 ? Napi::String::New(env, ErrnoCode(r.last_errno)) : env.Null());
  return o;
}

Napi::Value SenderWrap::Close(const Napi::CallbackInfo& info) {
  sender_.reset();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------- test entries

Napi::Value ErrnoCodeOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowType(env, "errnoCode(errno: number)");
  const double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 65535) || d != static_cast<double>(static_cast<int>(d))) {
    throw Napi::RangeError::New(env, "errno must be an integer in 0..65535");
  }
  return Napi::String::New(env, ErrnoCode(static_cast<int>(d)));
}

Napi::Value ParseFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) ThrowType(env, "parseFrame(frame: Buffer, meta?: object)");
  auto frame = info[0].As<Napi::Buffer<uint8_t>>();
  FrameMeta meta;
  meta.wire_len = static_cast<uint32_t>(frame.Length());
  int32_t l3_ethertype = -1;
  if (info[1].IsObject()) {
    auto o = info[1].As<Napi::Object>();
    meta.ifindex = GetUint(o, "ifindex", 0, 0, 0xffffffffu);
    meta.wire_len = GetUint(o, "wireLen", meta.wire_len, 0, 0xffffffffu);
    meta.vlan_tci = static_cast<uint16_t>(GetUint(o, "vlanTci", 0, 0, 0xffff));
    meta.vlan_valid = o.Get("vlanTci").IsNumber();
    meta.ts_ns = GetUint(o, "tsSec", 0, 0, 0xffffffffu) * 1'000'000'000ull;
    if (o.Get("ethertype").IsNumber()) l3_ethertype = static_cast<int32_t>(GetUint(o, "ethertype", 0, 0, 0xffff));
  }
  HitRecord record{};
  const ParseResult r = l3_ethertype >= 0
                            ? ParseNetwork(frame.Data(), frame.Length(), static_cast<uint16_t>(l3_ethertype), meta, &record)
                            : ParseEthernet(frame.Data(), frame.Length(), meta, &record);
  Napi::Object o = Napi::Object::New(env);
  o.Set("result", Napi::Number::New(env, static_cast<double>(r)));
  o.Set("record", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(&record), sizeof(record)));
  return o;
}

}  // namespace portanoia
