// Module init only: registers the Capture, Sender, HostWatch, LinkFacts and Nft classes, the
// test entries (parse a frame, parse rtnetlink messages, build and parse link probes,
// the peer check's programs, name an errno), and the HitRecord layout (size and every
// field offset) that lib/binding.ts checks against its decoder at load time, so a stale
// prebuild fails loudly instead of decoding garbage. All state lives in the
// per-environment AddonData.
#include <napi.h>

#include "capture_wrap.h"
#include "hit_record.h"
#include "host_wrap.h"
#include "link_wrap.h"
#include "nft_wrap.h"
#include "packet_parse.h"

namespace portanoia {

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    env.SetInstanceData(new AddonData());
    AddonData* data = env.GetInstanceData<AddonData>();
    Napi::Function capture = CaptureWrap::Define(env);
    Napi::Function sender = SenderWrap::Define(env);
    data->capture_ctor = Napi::Persistent(capture);
    data->sender_ctor = Napi::Persistent(sender);
    Napi::Function host = HostWatchWrap::Define(env);
    data->host_ctor = Napi::Persistent(host);
    Napi::Function link = LinkFactsWrap::Define(env);
    data->link_ctor = Napi::Persistent(link);
    Napi::Function nft = NftWrap::Define(env);
    data->nft_ctor = Napi::Persistent(nft);

    Napi::Object layout = Napi::Object::New(env);
    for (const FieldOffset& f : kHitRecordFields) {
      layout.Set(f.name, Napi::Number::New(env, static_cast<double>(f.offset)));
    }
    DefineAddon(exports, {
                             InstanceValue("Capture", capture, napi_enumerable),
                             InstanceValue("Sender", sender, napi_enumerable),
                             InstanceValue("HostWatch", host, napi_enumerable),
                             InstanceValue("LinkFacts", link, napi_enumerable),
                             InstanceValue("Nft", nft, napi_enumerable),
                             InstanceValue("probePackets", ProbePackets(env), napi_enumerable),
                             InstanceValue("hitRecordSize", Napi::Number::New(env, kHitRecordSize), napi_enumerable),
                             InstanceValue("hitRecordLayout", layout, napi_enumerable),
                             InstanceMethod<&Addon::ParseFrameEntry>("parseFrame", napi_enumerable),
                             InstanceMethod<&Addon::ParseRtnlEntry>("parseRtnl", napi_enumerable),
                             InstanceMethod<&Addon::ParseRtnlObjectsEntry>("parseRtnlObjects", napi_enumerable),
                             InstanceMethod<&Addon::PeerProgramsEntry>("peerPrograms", napi_enumerable),
                             InstanceMethod<&Addon::ErrnoCodeEntry>("errnoCode", napi_enumerable),
                         });
  }

 private:
  Napi::Value ParseFrameEntry(const Napi::CallbackInfo& info) { return ParseFrame(info); }
  Napi::Value ParseRtnlEntry(const Napi::CallbackInfo& info) { return ParseRtnl(info); }
  Napi::Value ParseRtnlObjectsEntry(const Napi::CallbackInfo& info) { return ParseRtnlObjects(info); }
  Napi::Value PeerProgramsEntry(const Napi::CallbackInfo& info) { return PeerProgramsOf(info); }
  Napi::Value ErrnoCodeEntry(const Napi::CallbackInfo& info) { return ErrnoCodeOf(info); }
};

}  // namespace portanoia

// The macro pastes the class name into an identifier, so it needs an unqualified name.
using PortanoiaAddon = portanoia::Addon;
NODE_API_ADDON(PortanoiaAddon)
