// LinkFactsWrap and the test entries: see link_wrap.h.
#include "link_wrap.h"

#include <cstdio>
#include <string>

#include "capture_wrap.h"
#include "netns.h"

namespace portanoia {

namespace {

std::string FormatMac(const uint8_t* mac, size_t len) {
  std::string out;
  char part[4];
  for (size_t i = 0; i < len; i++) {
    std::snprintf(part, sizeof(part), i == 0 ? "%02x" : ":%02x", mac[i]);
    out += part;
  }
  return out;
}

bool ParseMac(const std::string& text, uint8_t out[6]) {
  unsigned v[6];
  char tail = 0;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6) return false;
  for (int i = 0; i < 6; i++) out[i] = static_cast<uint8_t>(v[i]);
  return true;
}

IpAddr GetIp(Napi::Env env, Napi::Value v, const char* usage) {
  IpAddr a;
  if (!v.IsString() || !ParseIp(v.As<Napi::String>().Utf8Value(), &a)) throw Napi::TypeError::New(env, usage);
  return a;
}

uint32_t GetIndex(Napi::Env env, Napi::Value v, const char* usage) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, usage);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    throw Napi::RangeError::New(env, usage);
  }
  return static_cast<uint32_t>(d);
}

Napi::Object RouteObject(Napi::Env env, const RouteInfo& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Napi::Number::New(env, r.type));
  o.Set("oif", Napi::Number::New(env, r.oif));
  o.Set("table", Napi::Number::New(env, r.table));
  if (r.gateway.family != 0) o.Set("gateway", Napi::String::New(env, FormatIp(r.gateway)));
  if (r.prefsrc.family != 0) o.Set("prefsrc", Napi::String::New(env, FormatIp(r.prefsrc)));
  return o;
}

Napi::Object NeighObject(Napi::Env env, const NeighEntry& n) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", Napi::String::New(env, FormatIp(n.addr)));
  o.Set("ifindex", Napi::Number::New(env, n.ifindex));
  o.Set("state", Napi::Number::New(env, n.state));
  o.Set("flags", Napi::Number::New(env, n.flags));
  if (n.lladdr_len > 0) o.Set("mac", Napi::String::New(env, FormatMac(n.lladdr, n.lladdr_len)));
  return o;
}

Napi::Object LinkObject(Napi::Env env, const LinkEntry& l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", Napi::Number::New(env, l.ifindex));
  o.Set("name", Napi::String::New(env, l.name));
  o.Set("type", Napi::Number::New(env, l.type));
  o.Set("flags", Napi::Number::New(env, l.flags));
  o.Set("master", Napi::Number::New(env, l.master));
  o.Set("link", Napi::Number::New(env, l.link));
  o.Set("kind", Napi::String::New(env, l.kind));
  if (l.has_vlan) o.Set("vlan", Napi::Number::New(env, l.vlan_id));
  if (l.mac_len > 0) o.Set("mac", Napi::String::New(env, FormatMac(l.mac, l.mac_len)));
  return o;
}

Napi::Object AnswerObject(Napi::Env env, const ProbeAnswer& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", Napi::String::New(env, FormatIp(a.addr)));
  o.Set("mac", Napi::String::New(env, FormatMac(a.mac, 6)));
  o.Set("ifindex", Napi::Number::New(env, a.ifindex));
  return o;
}

constexpr size_t kMaxAnswers = 4096;

}  // namespace

Napi::Function LinkFactsWrap::Define(Napi::Env env) {
  return DefineClass(env, "LinkFacts",
                     {
                         InstanceMethod<&LinkFactsWrap::Route>("route"),
                         InstanceMethod<&LinkFactsWrap::Neighbour>("neighbour"),
                         InstanceMethod<&LinkFactsWrap::Links>("links"),
                         InstanceMethod<&LinkFactsWrap::Probe>("probe"),
                         InstanceMethod<&LinkFactsWrap::Answers>("answers"),
                         InstanceMethod<&LinkFactsWrap::Close>("close"),
                     });
}

LinkFactsWrap::LinkFactsWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LinkFactsWrap>(info) {
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
  {
    NetnsScope scope(netns);
    if (!scope.ok()) throw MakeSysError(env, SysError{scope.err_no(), scope.syscall(), netns});
    rtnl_ = std::make_unique<NetlinkSocket>();
    if (!rtnl_->Open(NETLINK_ROUTE, 0, &err)) throw MakeSysError(env, err);
  }
  probe_ = LinkProbe::Open(netns, &err);
  if (!probe_) throw MakeSysError(env, err);
}

void LinkFactsWrap::CheckOpen(Napi::Env env) const {
  if (!rtnl_) throw Napi::Error::New(env, "link facts are closed");
}

Napi::Value LinkFactsWrap::Route(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  const IpAddr a = GetIp(env, info[0], "route(address, from?): address must be an IP address literal");
  IpAddr from;
  if (!info[1].IsUndefined()) from = GetIp(env, info[1], "route(address, from?): from must be an IP address literal");
  if (from.family != 0 && from.family != a.family) throw Napi::TypeError::New(env, "route(address, from?): one family");
  RouteInfo r;
  SysError err;
  if (!LookupRoute(rtnl_.get(), a, from, &r, &err)) throw MakeSysError(env, err);
  return RouteObject(env, r);
}

Napi::Value LinkFactsWrap::Neighbour(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  const IpAddr a = GetIp(env, info[0], "neighbour(address, ifindex): address must be an IP address literal");
  const uint32_t ifindex = GetIndex(env, info[1], "neighbour(address, ifindex): ifindex must be an interface index");
  NeighEntry n;
  SysError err;
  const int r = LookupNeigh(rtnl_.get(), a, ifindex, &n, &err);
  if (r < 0) throw MakeSysError(env, err);
  return r == 0 ? env.Null() : NeighObject(env, n).As<Napi::Value>();
}

Napi::Value LinkFactsWrap::Links(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  std::vector<LinkEntry> links;
  SysError err;
  if (!DumpLinks(rtnl_.get(), &links, &err)) throw MakeSysError(env, err);
  Napi::Array out = Napi::Array::New(env, links.size());
  for (uint32_t i = 0; i < links.size(); i++) out.Set(i, LinkObject(env, links[i]));
  return out;
}

Napi::Value LinkFactsWrap::Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  const IpAddr a = GetIp(env, info[0], "probe(address, ifindex, mac): address must be an IP address literal");
  const uint32_t ifindex = GetIndex(env, info[1], "probe(address, ifindex, mac): ifindex must be an interface index");
  uint8_t mac[6];
  if (!info[2].IsString() || !ParseMac(info[2].As<Napi::String>().Utf8Value(), mac)) {
    throw Napi::TypeError::New(env, "probe(address, ifindex, mac): mac must be aa:bb:cc:dd:ee:ff");
  }
  SysError err;
  if (!probe_->Send(a, ifindex, mac, &err)) throw MakeSysError(env, err);
  return env.Undefined();
}

Napi::Value LinkFactsWrap::Answers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  std::vector<ProbeAnswer> answers;
  probe_->Collect(&answers, kMaxAnswers);
  Napi::Array out = Napi::Array::New(env, answers.size());
  for (uint32_t i = 0; i < answers.size(); i++) out.Set(i, AnswerObject(env, answers[i]));
  return out;
}

Napi::Value LinkFactsWrap::Close(const Napi::CallbackInfo& info) {
  rtnl_.reset();
  probe_.reset();
  return info.Env().Undefined();
}

Napi::Value ParseRtnlObjects(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "parseRtnlObjects(messages: Buffer)");
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  RtnlObjects objects;
  CollectObjects(buf.Data(), buf.Length(), &objects);
  Napi::Object o = Napi::Object::New(env);
  Napi::Array routes = Napi::Array::New(env, objects.routes.size());
  for (uint32_t i = 0; i < objects.routes.size(); i++) routes.Set(i, RouteObject(env, objects.routes[i]));
  Napi::Array neighbours = Napi::Array::New(env, objects.neighbours.size());
  for (uint32_t i = 0; i < objects.neighbours.size(); i++) neighbours.Set(i, NeighObject(env, objects.neighbours[i]));
  Napi::Array links = Napi::Array::New(env, objects.links.size());
  for (uint32_t i = 0; i < objects.links.size(); i++) links.Set(i, LinkObject(env, objects.links[i]));
  o.Set("routes", routes);
  o.Set("neighbours", neighbours);
  o.Set("links", links);
  return o;
}

Napi::Object ProbePackets(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  auto mac_ip = [](const Napi::CallbackInfo& info, uint8_t mac[6], IpAddr* ip, uint8_t family) {
    Napi::Env e = info.Env();
    if (!info[0].IsString() || !ParseMac(info[0].As<Napi::String>().Utf8Value(), mac)) throw Napi::TypeError::New(e, "(mac, ip)");
    *ip = GetIp(e, info[1], "(mac, ip)");
    if (ip->family != family) throw Napi::TypeError::New(e, "wrong address family");
  };
  o.Set("arpProbe", Napi::Function::New(env, [mac_ip](const Napi::CallbackInfo& info) {
          uint8_t mac[6];
          IpAddr ip;
          mac_ip(info, mac, &ip, 4);
          uint8_t out[kArpProbeSize];
          BuildArpProbe(mac, ip, out);
          return Napi::Buffer<uint8_t>::Copy(info.Env(), out, sizeof(out));
        }));
  o.Set("neighSolicit", Napi::Function::New(env, [mac_ip](const Napi::CallbackInfo& info) {
          uint8_t mac[6];
          IpAddr ip;
          mac_ip(info, mac, &ip, 6);
          uint8_t out[kNeighSolicitSize];
          BuildNeighSolicit(ip, mac, out);
          return Napi::Buffer<uint8_t>::Copy(info.Env(), out, sizeof(out));
        }));
  auto parser = [](bool (*parse)(const uint8_t*, size_t, ProbeAnswer*)) {
    return [parse](const Napi::CallbackInfo& info) -> Napi::Value {
      Napi::Env e = info.Env();
      if (!info[0].IsBuffer()) throw Napi::TypeError::New(e, "(packet: Buffer)");
      auto b = info[0].As<Napi::Buffer<uint8_t>>();
      ProbeAnswer a;
      if (!parse(b.Data(), b.Length(), &a)) return e.Null();
      return AnswerObject(e, a);
    };
  };
  o.Set("parseArp", Napi::Function::New(env, parser(ParseArpAnswer)));
  o.Set("parseNa", Napi::Function::New(env, parser(ParseNeighAdvert)));
  return o;
}

}  // namespace portanoia
