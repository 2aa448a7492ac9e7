// The JS face of the native core: argument checks, errno → Node-style errors, the
// doorbell thread-safe function, and the ObjectWraps for Capture and Sender. This
// and addon.cc are the only files that include napi.h. Everything here runs on the
// JS thread except the doorbell lambda, which only schedules a call.
#pragma once

#include <napi.h>

#include <memory>
#include <optional>

#include "capture.h"
#include "sender.h"

namespace portanoia {

// Per-environment state (Napi::Addon data): constructors for this env only.
struct AddonData {
  Napi::FunctionReference capture_ctor;
  Napi::FunctionReference sender_ctor;
  Napi::FunctionReference host_ctor;
  Napi::FunctionReference link_ctor;
  Napi::FunctionReference nft_ctor;
};

Napi::Error MakeSysError(Napi::Env env, const SysError& err);

// The JS side of a thread-safe function's call, for every glue file: a raw call that
// cannot throw a C++ exception out of the C callback (see capture_wrap.cc).
void RingJs(Napi::Env env, Napi::Function callback);

class CaptureWrap : public Napi::ObjectWrap<CaptureWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit CaptureWrap(const Napi::CallbackInfo& info);
  ~CaptureWrap() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Drain(const Napi::CallbackInfo& info);
  Napi::Value Arm(const Napi::CallbackInfo& info);
  Napi::Value Disarm(const Napi::CallbackInfo& info);
  Napi::Value Ended(const Napi::CallbackInfo& info);
  Napi::Value Error(const Napi::CallbackInfo& info);
  Napi::Value SetFilter(const Napi::CallbackInfo& info);
  Napi::Value AddListener(const Napi::CallbackInfo& info);
  Napi::Value RemoveListener(const Napi::CallbackInfo& info);
  Napi::Value ListenerPorts(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value InterfaceName(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void Shutdown();
  void OnEnvCleanup();

  std::unique_ptr<Capture> capture_;
  // The totals at the moment the thread was joined: stats() after close() reports
  // them, so a final stats event is not all zeros.
  CaptureStats final_stats_{};
  Napi::ThreadSafeFunction doorbell_;
  bool has_doorbell_ = false;
  bool refed_ = false;
  std::optional<Napi::Env::CleanupHook<std::function<void()>>> cleanup_;
  Napi::Env env_;
};

class SenderWrap : public Napi::ObjectWrap<SenderWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit SenderWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  std::unique_ptr<Sender> sender_;
};

// Test entry: parses one Ethernet frame (or an L3 packet) with the capture thread's
// parser and returns { result, record } so unit tests and fuzz seeds can check it.
Napi::Value ParseFrame(const Napi::CallbackInfo& info);

// Test entry: the `code` an errno gets in the errors this addon throws.
Napi::Value ErrnoCodeOf(const Napi::CallbackInfo& info);

}  // namespace portanoia
