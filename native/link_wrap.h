// The JS face of attribution's kernel questions (netlink.h one-object lookups and
// link_probe.h): LinkFacts, one object per watched namespace. Its constructor opens an
// rtnetlink request socket and the probe sockets in the namespace; every method is a
// synchronous call on the JS thread that never waits for the network: route() and
// neighbour() are single netlink round trips, links() one dump, probe() sends and
// returns, answers() reads what has arrived. Addresses cross as text and are
// re-checked here only so far as a socket needs; TypeScript validates them first.
// Also the parseRtnlObjects and probe-packet test entries. Per-object state only.
#pragma once

#include <napi.h>

#include <memory>

#include "link_probe.h"
#include "netlink.h"

namespace portanoia {

class LinkFactsWrap : public Napi::ObjectWrap<LinkFactsWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit LinkFactsWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Route(const Napi::CallbackInfo& info);
  Napi::Value Neighbour(const Napi::CallbackInfo& info);
  Napi::Value Links(const Napi::CallbackInfo& info);
  Napi::Value Probe(const Napi::CallbackInfo& info);
  Napi::Value Answers(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void CheckOpen(Napi::Env env) const;

  std::unique_ptr<NetlinkSocket> rtnl_;
  std::unique_ptr<LinkProbe> probe_;
};

// Test entry: rtnetlink messages (a Buffer of whole messages) to the routes,
// neighbour entries and links they describe.
Napi::Value ParseRtnlObjects(const Napi::CallbackInfo& info);
// Test entry: { arpProbe(mac, ip), neighSolicit(mac, ip), parseArp(buf), parseNa(buf) }.
Napi::Object ProbePackets(Napi::Env env);

}  // namespace portanoia
