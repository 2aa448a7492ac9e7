// The JS face of NftLib (nft_lib.h): Nft, one object per namespace. run(script)
// commits the script as one nftables transaction off the JS thread — an N-API
// AsyncWorker on libuv's pool — and settles a promise with { code, stdout, stderr },
// as `nft -f -` would exit and print; it rejects only when the script could not be
// run at all (no libnftables, no namespace). Nft.available() says whether
// libnftables loads (null) or why not. close() frees the context once the run in
// progress (if any) has finished; the session is shared with the workers, so a run
// may outlive the object. Runs on the JS thread except the workers' Execute().
#pragma once

#include <napi.h>

#include <memory>

#include "nft_lib.h"

namespace portanoia {

class NftWrap : public Napi::ObjectWrap<NftWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NftWrap(const Napi::CallbackInfo& info);

 private:
  static Napi::Value Available(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::shared_ptr<NftSession> session_;
};

}  // namespace portanoia
