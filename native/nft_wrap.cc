// Nft: see nft_wrap.h.
#include "nft_wrap.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "capture_wrap.h"

namespace portanoia {

namespace {

class NftWorker : public Napi::AsyncWorker {
 public:
  NftWorker(Napi::Env env, std::shared_ptr<NftSession> session, std::string script, unsigned output_flags)
      : Napi::AsyncWorker(env, "portanoia-nft"),
        session_(std::move(session)),
        script_(std::move(script)),
        output_flags_(output_flags),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  // On a libuv pool thread; NftSession's lock keeps a context to one thread.
  void Execute() override { ok_ = session_->Run(script_, output_flags_, &result_, &err_); }

  void OnOK() override {
    Napi::Env env = Env();
    try {
      if (!ok_) {
        deferred_.Reject(MakeSysError(env, err_).Value());
        return;
      }
      Napi::Object o = Napi::Object::New(env);
      o.Set("code", Napi::Number::New(env, result_.code));
      o.Set("stdout", Napi::String::New(env, result_.out));
      o.Set("stderr", Napi::String::New(env, result_.err));
      deferred_.Resolve(o);
    } catch (const Napi::Error&) {
      // JS cannot run any more (the environment is being torn down): nobody hears it.
    }
  }

 private:
  std::shared_ptr<NftSession> session_;
  std::string script_;
  unsigned output_flags_;
  Napi::Promise::Deferred deferred_;
  NftResult result_;
  SysError err_;
  bool ok_ = false;
};

}  // namespace

Napi::Function NftWrap::Define(Napi::Env env) {
  return DefineClass(env, "Nft",
                     {
                         StaticMethod<&NftWrap::Available>("available"),
                         InstanceMethod<&NftWrap::Run>("run"),
                         InstanceMethod<&NftWrap::Close>("close"),
                     });
}

NftWrap::NftWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftWrap>(info) {
  Napi::Env env = info.Env();
  std::string netns;
  if (info[0].IsObject()) {
    Napi::Value v = info[0].As<Napi::Object>().Get("netns");
    if (!v.IsUndefined()) {
      if (!v.IsString()) throw Napi::TypeError::New(env, "netns must be a string");
      netns = v.As<Napi::String>().Utf8Value();
    }
  }
  if (!netns.empty()) {
    // A namespace that cannot be opened now is a bad option, not a failed transaction later.
    const int fd = open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw MakeSysError(env, SysError{errno, "open", netns});
    close(fd);
  }
  session_ = std::make_shared<NftSession>(netns);
}

Napi::Value NftWrap::Available(const Napi::CallbackInfo& info) {
  std::string why;
  if (NftSession::Available(&why)) return info.Env().Null();
  return Napi::String::New(info.Env(), why);
}

Napi::Value NftWrap::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "run(script): script must be a string");
  std::string script = info[0].As<Napi::String>().Utf8Value();
  // A NUL would end the script early in the C string libnftables takes.
  if (script.find('\0') != std::string::npos) throw Napi::TypeError::New(env, "run(script): script contains a NUL byte");
  // run(script, { json, terse }): a list's output as nft -j / -t write it.
  unsigned flags = 0;
  if (info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (o.Get("json").ToBoolean().Value()) flags |= kNftOutputJson;
    if (o.Get("terse").ToBoolean().Value()) flags |= kNftOutputTerse;
  } else if (!info[1].IsUndefined()) {
    throw Napi::TypeError::New(env, "run(script, options): options must be an object");
  }
  auto* worker = new NftWorker(env, session_, std::move(script), flags);
  Napi::Promise promise = worker->Promise();
  // Queue() hands the worker to Node, which deletes it after OnOK.
  worker->Queue();
  return promise;
}

Napi::Value NftWrap::Close(const Napi::CallbackInfo& info) {
  session_->Close();
  return info.Env().Undefined();
}

}  // namespace portanoia
