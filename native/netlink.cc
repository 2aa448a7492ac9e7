// Rtnetlink facts, the request helper and the watcher thread: see netlink.h. Every
// length read from a message is checked against the bytes received before it is
// used; a malformed attribute ends the walk of its list, never the process.
#include "netlink.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "netns.h"

// Older uapi headers lack the nexthop API (Linux 5.3) and RTA_VIA (4.1); the values
// are kernel ABI.
#ifndef RTM_NEWNEXTHOP
#define RTM_NEWNEXTHOP 104
#define RTM_GETNEXTHOP 106
#endif
#ifndef RTNLGRP_NEXTHOP
#define RTNLGRP_NEXTHOP 32
#endif
#ifndef RTA_VIA
#define RTA_VIA 18
#endif
#ifndef RTA_NH_ID
#define RTA_NH_ID 30
#endif
#ifndef IFA_FLAGS
#define IFA_FLAGS 8
#endif

namespace portanoia {

namespace {

constexpr uint16_t kNhaId = 1;       // NHA_ID
constexpr uint16_t kNhaGroup = 2;    // NHA_GROUP: struct nexthop_grp[]
constexpr uint16_t kNhaGateway = 6;  // NHA_GATEWAY
constexpr size_t kNexthopGrpSize = 8;
constexpr size_t kNhmsgSize = 8;
constexpr size_t kRecvBuffer = 64 * 1024;
constexpr int kDumpAttempts = 3;
// Coalescing: a change is usually a burst (`ip addr add` sends an address and two
// routes); wait until the burst is quiet, but never longer than kMaxWaitNs.
constexpr int64_t kQuietNs = 2'000'000;
constexpr int64_t kMaxWaitNs = 20'000'000;
constexpr int64_t kRetryNs = 100'000'000;

int64_t ClockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

size_t Align4(size_t n) { return (n + 3u) & ~size_t(3); }

// Calls f(type, data, len) for each attribute of a list; stops at the first one whose
// length is impossible. rtattr and nlattr share this layout.
template <typename F>
void ForEachAttr(const uint8_t* p, size_t len, F f) {
  while (len >= 4) {
    const uint16_t alen = Load<uint16_t>(p);
    const uint16_t type = Load<uint16_t>(p + 2);
    if (alen < 4 || alen > len) return;
    f(static_cast<uint16_t>(type & NLA_TYPE_MASK), p + 4, size_t(alen) - 4);
    const size_t step = Align4(alen);
    if (step >= len) return;
    p += step;
    len -= step;
  }
}

uint8_t FamilyOf(uint8_t af) { return af == AF_INET ? 4 : af == AF_INET6 ? 6 : 0; }

// An address attribute of an address family's length.
bool ReadAddr(uint8_t af, const uint8_t* data, size_t len, IpAddr* out) {
  const uint8_t family = FamilyOf(af);
  const size_t want = family == 4 ? 4 : family == 6 ? 16 : 0;
  if (want == 0 || len < want) return false;
  out->family = family;
  std::memset(out->bytes, 0, sizeof(out->bytes));
  std::memcpy(out->bytes, data, want);
  return true;
}

// An address whose family is given only by its length (NHA_GATEWAY of a group-less
// nexthop, RTA_GATEWAY inside an IPv4 route that uses an IPv6 next hop).
bool ReadAddrByLength(const uint8_t* data, size_t len, IpAddr* out) {
  if (len == 4) return ReadAddr(AF_INET, data, len, out);
  if (len == 16) return ReadAddr(AF_INET6, data, len, out);
  return false;
}

// struct rtvia: a 16-bit family, then the address.
bool ReadVia(const uint8_t* data, size_t len, IpAddr* out) {
  if (len < 2) return false;
  const uint16_t af = Load<uint16_t>(data);
  if (af > 255) return false;
  return ReadAddr(static_cast<uint8_t>(af), data + 2, len - 2, out);
}

// The payload after the message header and a family header of `fixed` bytes.
bool Payload(const uint8_t* msg, size_t len, uint16_t type, size_t fixed, const uint8_t** body, size_t* body_len) {
  if (len < sizeof(nlmsghdr)) return false;
  const nlmsghdr h = Load<nlmsghdr>(msg);
  if (h.nlmsg_type != type || h.nlmsg_len < NLMSG_LENGTH(fixed) || h.nlmsg_len > len) return false;
  *body = msg + NLMSG_HDRLEN;
  *body_len = size_t(h.nlmsg_len) - NLMSG_HDRLEN;
  return true;
}

void AddGateway(std::vector<GatewayFact>* out, const IpAddr& a, uint32_t table, uint32_t ifindex) {
  GatewayFact g;
  g.addr = a;
  g.table = table;
  g.ifindex = ifindex;
  out->push_back(g);
}

// A multipath list: struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex; } + attrs.
void ParseMultipath(uint8_t af, const uint8_t* p, size_t len, uint32_t table, RouteHops* out) {
  while (len >= 8) {
    const uint16_t nh_len = Load<uint16_t>(p);
    if (nh_len < 8 || nh_len > len) return;
    const uint32_t ifindex = Load<uint32_t>(p + 4);
    ForEachAttr(p + 8, size_t(nh_len) - 8, [&](uint16_t type, const uint8_t* data, size_t alen) {
      IpAddr a;
      if (type == RTA_GATEWAY && ReadAddr(af, data, alen, &a)) AddGateway(&out->gateways, a, table, ifindex);
      if (type == RTA_VIA && ReadVia(data, alen, &a)) AddGateway(&out->gateways, a, table, ifindex);
    });
    const size_t step = Align4(nh_len);
    if (step >= len) return;
    p += step;
    len -= step;
  }
}

}  // namespace

bool IpEqual(const IpAddr& a, const IpAddr& b) {
  return a.family == b.family && std::memcmp(a.bytes, b.bytes, a.family == 4 ? 4 : 16) == 0;
}

std::string FormatIp(const IpAddr& a) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.family == 4) inet_ntop(AF_INET, a.bytes, text, sizeof(text));
  else if (a.family == 6) inet_ntop(AF_INET6, a.bytes, text, sizeof(text));
  return text;
}

bool ParseIp(const std::string& text, IpAddr* out) {
  IpAddr a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes) == 1) {
    a.family = 4;
  } else if (inet_pton(AF_INET6, text.c_str(), a.bytes) == 1) {
    a.family = 6;
  } else {
    return false;
  }
  *out = a;
  return true;
}

bool ParseAddrMessage(const uint8_t* msg, size_t len, AddrFact* out) {
  const uint8_t* body = nullptr;
  size_t body_len = 0;
  if (!Payload(msg, len, RTM_NEWADDR, sizeof(ifaddrmsg), &body, &body_len)) return false;
  const ifaddrmsg ifa = Load<ifaddrmsg>(body);
  AddrFact f;
  f.prefix_len = ifa.ifa_prefixlen;
  f.scope = ifa.ifa_scope;
  f.flags = ifa.ifa_flags;
  f.ifindex = ifa.ifa_index;
  IpAddr address;
  IpAddr local;
  const size_t fixed = NLMSG_ALIGN(sizeof(ifaddrmsg));
  if (body_len < fixed) return false;
  ForEachAttr(body + fixed, body_len - fixed, [&](uint16_t type, const uint8_t* data, size_t alen) {
    switch (type) {
      case IFA_ADDRESS: ReadAddr(ifa.ifa_family, data, alen, &address); break;
      case IFA_LOCAL: ReadAddr(ifa.ifa_family, data, alen, &local); break;
      case IFA_BROADCAST: ReadAddr(ifa.ifa_family, data, alen, &f.broadcast); break;
      case IFA_FLAGS:
        if (alen >= 4) f.flags = Load<uint32_t>(data);
        break;
      default: break;
    }
  });
  // IFA_LOCAL is the host's own address; IFA_ADDRESS is the same, or on a
  // point-to-point link the far end (rtnetlink(7)). IPv6 usually sends only IFA_ADDRESS.
  if (local.family != 0) {
    f.local = local;
    if (address.family != 0 && !IpEqual(address, local)) f.peer = address;
  } else if (address.family != 0) {
    f.local = address;
  } else {
    return false;
  }
  *out = f;
  return true;
}

bool ParseRouteMessage(const uint8_t* msg, size_t len, RouteHops* out) {
  const uint8_t* body = nullptr;
  size_t body_len = 0;
  if (!Payload(msg, len, RTM_NEWROUTE, sizeof(rtmsg), &body, &body_len)) return false;
  const rtmsg rt = Load<rtmsg>(body);
  const size_t fixed = NLMSG_ALIGN(sizeof(rtmsg));
  if (body_len < fixed) return false;
  RouteHops r;
  r.table = rt.rtm_table;
  uint32_t oif = 0;
  // First pass: the table and output interface, which the next hops are tagged with.
  ForEachAttr(body + fixed, body_len - fixed, [&](uint16_t type, const uint8_t* data, size_t alen) {
    if (type == RTA_TABLE && alen >= 4) r.table = Load<uint32_t>(data);
    if (type == RTA_OIF && alen >= 4) oif = Load<uint32_t>(data);
  });
  ForEachAttr(body + fixed, body_len - fixed, [&](uint16_t type, const uint8_t* data, size_t alen) {
    IpAddr a;
    switch (type) {
      case RTA_GATEWAY:
        if (ReadAddr(rt.rtm_family, data, alen, &a)) AddGateway(&r.gateways, a, r.table, oif);
        break;
      case RTA_VIA:
        if (ReadVia(data, alen, &a)) AddGateway(&r.gateways, a, r.table, oif);
        break;
      case RTA_MULTIPATH: ParseMultipath(rt.rtm_family, data, alen, r.table, &r); break;
      case RTA_NH_ID:
        if (alen >= 4) r.nh_ids.push_back(Load<uint32_t>(data));
        break;
      default: break;
    }
  });
  *out = std::move(r);
  return true;
}

bool ParseNexthopMessage(const uint8_t* msg, size_t len, NexthopObj* out) {
  const uint8_t* body = nullptr;
  size_t body_len = 0;
  if (!Payload(msg, len, RTM_NEWNEXTHOP, kNhmsgSize, &body, &body_len)) return false;
  NexthopObj nh;
  bool has_id = false;
  ForEachAttr(body + kNhmsgSize, body_len - kNhmsgSize, [&](uint16_t type, const uint8_t* data, size_t alen) {
    if (type == kNhaId && alen >= 4) {
      nh.id = Load<uint32_t>(data);
      has_id = true;
    } else if (type == kNhaGateway) {
      ReadAddrByLength(data, alen, &nh.gateway);
    } else if (type == kNhaGroup) {
      for (size_t off = 0; off + kNexthopGrpSize <= alen; off += kNexthopGrpSize) {
        nh.group.push_back(Load<uint32_t>(data + off));
      }
    }
  });
  if (!has_id) return false;
  *out = std::move(nh);
  return true;
}

void CollectMessages(const uint8_t* buf, size_t len, FactsParts* parts) {
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= len) {
    const nlmsghdr h = Load<nlmsghdr>(buf + off);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > len - off) return;
    const uint8_t* msg = buf + off;
    if (h.nlmsg_type == RTM_NEWADDR) {
      AddrFact f;
      if (ParseAddrMessage(msg, h.nlmsg_len, &f)) parts->addresses.push_back(f);
    } else if (h.nlmsg_type == RTM_NEWROUTE) {
      RouteHops r;
      if (ParseRouteMessage(msg, h.nlmsg_len, &r) && (!r.gateways.empty() || !r.nh_ids.empty())) {
        parts->routes.push_back(std::move(r));
      }
    } else if (h.nlmsg_type == RTM_NEWNEXTHOP) {
      NexthopObj nh;
      if (ParseNexthopMessage(msg, h.nlmsg_len, &nh)) parts->nexthops.push_back(std::move(nh));
    }
    const size_t step = NLMSG_ALIGN(h.nlmsg_len);
    if (step >= len - off) return;
    off += step;
  }
}

HostFacts BuildFacts(const FactsParts& parts) {
  HostFacts facts;
  facts.addresses = parts.addresses;
  std::unordered_map<uint32_t, const NexthopObj*> by_id;
  for (const NexthopObj& nh : parts.nexthops) by_id[nh.id] = &nh;
  std::vector<GatewayFact> all;
  for (const RouteHops& r : parts.routes) {
    all.insert(all.end(), r.gateways.begin(), r.gateways.end());
    for (uint32_t id : r.nh_ids) {
      auto it = by_id.find(id);
      if (it == by_id.end()) continue;
      const NexthopObj* nh = it->second;
      if (nh->gateway.family != 0) AddGateway(&all, nh->gateway, r.table, 0);
      // The kernel refuses nested groups, so one level is all there is.
      for (uint32_t member : nh->group) {
        auto m = by_id.find(member);
        if (m != by_id.end() && m->second->gateway.family != 0) AddGateway(&all, m->second->gateway, r.table, 0);
      }
    }
  }
  for (const GatewayFact& g : all) {
    const bool seen = std::any_of(facts.gateways.begin(), facts.gateways.end(), [&](const GatewayFact& x) {
      return x.table == g.table && IpEqual(x.addr, g.addr);
    });
    if (!seen) facts.gateways.push_back(g);
  }
  return facts;
}

// ---------------------------------------------------------------- NetlinkSocket

NetlinkSocket::~NetlinkSocket() { Close(); }

void NetlinkSocket::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool NetlinkSocket::Open(int protocol, uint32_t groups, SysError* err) {
  Close();
  abandoned_ = false;
  fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd_ < 0) {
    *err = SysError{errno, "socket", "netlink"};
    return false;
  }
  // Room for a burst of notifications (ENOBUFS is survived, but costs a re-dump).
  int rcvbuf = 1 << 20;
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0) {
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  if (groups == 0) {
    // Request sockets are used synchronously on the JS thread: never hang it.
    timeval tv{2, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = groups;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    *err = SysError{errno, "bind", "netlink"};
    return false;
  }
  buf_.resize(kRecvBuffer);
  return true;
}

bool NetlinkSocket::Request(void* req, size_t len, bool dump, const std::function<void(const nlmsghdr*)>& on_message,
                            const char* syscall, SysError* err, bool* interrupted) {
  auto* nlh = static_cast<nlmsghdr*>(req);
  const uint32_t seq = ++seq_;
  nlh->nlmsg_seq = seq;
  nlh->nlmsg_pid = 0;
  nlh->nlmsg_flags = static_cast<uint16_t>(nlh->nlmsg_flags | NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0));
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    const ssize_t sent = sendto(fd_, req, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
    if (sent >= 0) break;
    if (errno == EINTR) continue;
    *err = SysError{errno, "sendto", syscall};
    return false;
  }
  if (interrupted != nullptr) *interrupted = false;
  stop_ = false;
  for (;;) {
    const ssize_t n = recv(fd_, buf_.data(), buf_.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = SysError{errno == EAGAIN ? ETIMEDOUT : errno, "recv", syscall};
      return false;
    }
    const size_t got = static_cast<size_t>(n);
    size_t off = 0;
    bool done = false;
    bool failed = false;
    while (off + sizeof(nlmsghdr) <= got) {
      auto* h = reinterpret_cast<const nlmsghdr*>(buf_.data() + off);
      if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > got - off) break;
      if (h->nlmsg_seq == seq) {
        if (h->nlmsg_type == NLMSG_DONE) {
          // Since 4.x a failed dump says why in NLMSG_DONE's payload.
          if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
            const int e = Load<int>(buf_.data() + off + NLMSG_HDRLEN);
            if (e < 0) {
              *err = SysError{-e, syscall, ""};
              failed = true;
            }
          }
          done = true;
        } else if (h->nlmsg_type == NLMSG_ERROR) {
          if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr))) {
            const int e = Load<nlmsgerr>(buf_.data() + off + NLMSG_HDRLEN).error;
            if (e != 0) {
              *err = SysError{-e, syscall, ""};
              failed = true;
            }
          }
          done = true;
        } else {
          if (interrupted != nullptr && (h->nlmsg_flags & NLM_F_DUMP_INTR) != 0) *interrupted = true;
          on_message(h);
          if (!dump) done = true;
        }
      }
      const size_t step = NLMSG_ALIGN(h->nlmsg_len);
      if (step >= got - off) break;
      off += step;
    }
    if (done) return !failed;
    // Left after the whole buffer: every message already received was handed over.
    if (stop_) {
      abandoned_ = true;
      return true;
    }
  }
}

namespace {

// One dump request: header + a zeroed family header of `fixed` bytes.
bool DumpOne(NetlinkSocket* sock, uint16_t type, uint8_t family, size_t fixed, const char* what, FactsParts* parts,
             SysError* err, bool* interrupted) {
  struct {
    nlmsghdr h;
    uint8_t body[16];
  } req{};
  req.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(fixed));
  req.h.nlmsg_type = type;
  req.body[0] = family;  // ifa_family, rtm_family and nh_family all come first
  bool intr = false;
  const bool ok = sock->Request(
      &req, req.h.nlmsg_len, true,
      [parts](const nlmsghdr* h) { CollectMessages(reinterpret_cast<const uint8_t*>(h), h->nlmsg_len, parts); }, what, err,
      &intr);
  if (intr) *interrupted = true;
  return ok;
}

}  // namespace

bool DumpFacts(NetlinkSocket* sock, HostFacts* out, SysError* err) {
  for (int attempt = 1;; attempt++) {
    FactsParts parts;
    bool interrupted = false;
    if (!DumpOne(sock, RTM_GETADDR, AF_UNSPEC, sizeof(ifaddrmsg), "RTM_GETADDR", &parts, err, &interrupted)) return false;
    if (!DumpOne(sock, RTM_GETROUTE, AF_INET, sizeof(rtmsg), "RTM_GETROUTE", &parts, err, &interrupted)) return false;
    if (!DumpOne(sock, RTM_GETROUTE, AF_INET6, sizeof(rtmsg), "RTM_GETROUTE", &parts, err, &interrupted)) return false;
    // Nexthop objects exist since Linux 5.3; before that no route can name one.
    SysError nh_err;
    const bool nexthops = DumpOne(sock, RTM_GETNEXTHOP, AF_UNSPEC, kNhmsgSize, "RTM_GETNEXTHOP", &parts, &nh_err, &interrupted);
    // A change during the dump can make it inconsistent: take a fresh one.
    if (interrupted && attempt < kDumpAttempts) continue;
    *out = BuildFacts(parts);
    out->nexthops_supported = nexthops;
    return true;
  }
}

int LookupRouteType(NetlinkSocket* sock, const IpAddr& addr, SysError* err) {
  if (addr.family != 4 && addr.family != 6) {
    *err = SysError{EAFNOSUPPORT, "RTM_GETROUTE", ""};
    return -1;
  }
  const size_t alen = addr.family == 4 ? 4 : 16;
  struct {
    nlmsghdr h;
    rtmsg rt;
    rtattr dst;
    uint8_t bytes[16];
  } req{};
  req.h.nlmsg_type = RTM_GETROUTE;
  req.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(rtmsg)) + RTA_LENGTH(alen));
  req.rt.rtm_family = addr.family == 4 ? AF_INET : AF_INET6;
  req.rt.rtm_dst_len = static_cast<uint8_t>(alen * 8);
  req.dst.rta_type = RTA_DST;
  req.dst.rta_len = static_cast<uint16_t>(RTA_LENGTH(alen));
  std::memcpy(req.bytes, addr.bytes, alen);
  int type = -1;
  const bool ok = sock->Request(
      &req, req.h.nlmsg_len, false,
      [&type](const nlmsghdr* h) {
        if (h->nlmsg_type == RTM_NEWROUTE && h->nlmsg_len >= NLMSG_LENGTH(sizeof(rtmsg))) {
          type = Load<rtmsg>(reinterpret_cast<const uint8_t*>(h) + NLMSG_HDRLEN).rtm_type;
        }
      },
      "RTM_GETROUTE", err);
  if (!ok) {
    if (err->err_no == ENETUNREACH || err->err_no == EHOSTUNREACH) return RTN_UNREACHABLE;
    return -1;
  }
  return type < 0 ? RTN_UNSPEC : type;
}

// ------------------------------------------------------- one-object answers

bool ParseRouteInfo(const uint8_t* msg, size_t len, RouteInfo* out) {
  const uint8_t* body = nullptr;
  size_t body_len = 0;
  if (!Payload(msg, len, RTM_NEWROUTE, sizeof(rtmsg), &body, &body_len)) return false;
  const rtmsg rt = Load<rtmsg>(body);
  const size_t fixed = NLMSG_ALIGN(sizeof(rtmsg));
  if (body_len < fixed) return false;
  RouteInfo r;
  r.type = rt.rtm_type;
  r.table = rt.rtm_table;
  ForEachAttr(body + fixed, body_len - fixed, [&](uint16_t type, const uint8_t* data, size_t alen) {
    switch (type) {
      case RTA_OIF:
        if (alen >= 4) r.oif = Load<uint32_t>(data);
        break;
      case RTA_TABLE:
        if (alen >= 4) r.table = Load<uint32_t>(data);
        break;
      case RTA_GATEWAY: ReadAddr(rt.rtm_family, data, alen, &r.gateway); break;
      case RTA_VIA: ReadVia(data, alen, &r.gateway); break;
      case RTA_PREFSRC: ReadAddr(rt.rtm_family, data, alen, &r.prefsrc); break;
      default: break;
    }
  });
  *out = r;
  return true;
}

bool ParseNeighMessage(const uint8_t* msg, size_t len, NeighEntry* out) {
  const uint8_t* body = nullptr;
  size_t body_len = 0;
  if (!Payload(msg, len, RTM_NEWNEIGH, sizeof(ndmsg), &body, &body_len)) return false;
  const ndmsg nd = Load<ndmsg>(body);
  const size_t fixed = NLMSG_ALIGN(sizeof(ndmsg));
  if (body_len < fixed) return false;
  NeighEntry n;
  n.ifindex = static_cast<uint32_t>(nd.ndm_ifindex);
  n.state = nd.ndm_state;
  n.flags = nd.ndm_flags;
  ForEachAttr(body + fixed, body_len - fixed, [&](uint16_t type, const uint8_t* data, size_t alen) {
    if (type == NDA_DST) ReadAddr(nd.ndm_family, data, alen, &n.addr);
    if (type == NDA_LLADDR && alen <= sizeof(n.lladdr)) {
      n.lladdr_len = static_cast<uint8_t>(alen);
      std::memcpy(n.lladdr, data, alen);
    }
  });
  if (n.addr.family == 0) return false;
  *out = n;
  return true;
}

bool ParseLinkMessage(const uint8_t* msg, size_t len, LinkEntry* out) {
  const uint8_t* body = nullptr;
  size_t body_len = 0;
  if (!Payload(msg, len, RTM_NEWLINK, sizeof(ifinfomsg), &body, &body_len)) return false;
  const ifinfomsg ifi = Load<ifinfomsg>(body);
  const size_t fixed = NLMSG_ALIGN(sizeof(ifinfomsg));
  if (body_len < fixed) return false;
  LinkEntry l;
  l.ifindex = static_cast<uint32_t>(ifi.ifi_index);
  l.type = ifi.ifi_type;
  l.flags = ifi.ifi_flags;
  auto text = [](const uint8_t* data, size_t alen) {
    size_t n = 0;
    while (n < alen && data[n] != 0) n++;
    return std::string(reinterpret_cast<const char*>(data), n);
  };
  ForEachAttr(body + fixed, body_len - fixed, [&](uint16_t type, const uint8_t* data, size_t alen) {
    switch (type) {
      case IFLA_IFNAME: l.name = text(data, alen); break;
      case IFLA_MASTER:
        if (alen >= 4) l.master = Load<uint32_t>(data);
        break;
      case IFLA_LINK:
        if (alen >= 4) l.link = Load<uint32_t>(data);
        break;
      case IFLA_ADDRESS:
        if (alen <= sizeof(l.mac)) {
          l.mac_len = static_cast<uint8_t>(alen);
          std::memcpy(l.mac, data, alen);
        }
        break;
      case IFLA_LINKINFO:
        ForEachAttr(data, alen, [&](uint16_t itype, const uint8_t* idata, size_t ilen) {
          if (itype == IFLA_INFO_KIND) l.kind = text(idata, ilen);
          if (itype == IFLA_INFO_DATA) {
            // Attribute 1 of the data is the VLAN id only for kind "vlan"; the kind is
            // checked once the walk is over, whatever order the attributes came in.
            ForEachAttr(idata, ilen, [&](uint16_t dtype, const uint8_t* ddata, size_t dlen) {
              if (dtype == IFLA_VLAN_ID && dlen >= 2) {
                l.vlan_id = Load<uint16_t>(ddata);
                l.has_vlan = true;
              }
            });
          }
        });
        break;
      default: break;
    }
  });
  if (l.kind != "vlan") {
    l.has_vlan = false;
    l.vlan_id = 0;
  }
  *out = std::move(l);
  return true;
}

void CollectObjects(const uint8_t* buf, size_t len, RtnlObjects* out) {
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= len) {
    const nlmsghdr h = Load<nlmsghdr>(buf + off);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > len - off) return;
    const uint8_t* msg = buf + off;
    if (h.nlmsg_type == RTM_NEWROUTE) {
      RouteInfo r;
      if (ParseRouteInfo(msg, h.nlmsg_len, &r)) out->routes.push_back(r);
    } else if (h.nlmsg_type == RTM_NEWNEIGH) {
      NeighEntry n;
      if (ParseNeighMessage(msg, h.nlmsg_len, &n)) out->neighbours.push_back(n);
    } else if (h.nlmsg_type == RTM_NEWLINK) {
      LinkEntry l;
      if (ParseLinkMessage(msg, h.nlmsg_len, &l)) out->links.push_back(std::move(l));
    }
    const size_t step = NLMSG_ALIGN(h.nlmsg_len);
    if (step >= len - off) return;
    off += step;
  }
}

bool LookupRoute(NetlinkSocket* sock, const IpAddr& addr, const IpAddr& from, RouteInfo* out, SysError* err) {
  if ((addr.family != 4 && addr.family != 6) || (from.family != 0 && from.family != addr.family)) {
    *err = SysError{EAFNOSUPPORT, "RTM_GETROUTE", ""};
    return false;
  }
  const size_t alen = addr.family == 4 ? 4 : 16;
  // RTA_LENGTH(4) and RTA_LENGTH(16) are multiples of 4: the attributes pack without padding.
  struct {
    nlmsghdr h;
    rtmsg rt;
    uint8_t attrs[2 * (sizeof(rtattr) + 16)];
  } req{};
  req.h.nlmsg_type = RTM_GETROUTE;
  req.rt.rtm_family = addr.family == 4 ? AF_INET : AF_INET6;
  req.rt.rtm_dst_len = static_cast<uint8_t>(alen * 8);
  uint8_t* p = req.attrs;
  rtattr a{static_cast<uint16_t>(RTA_LENGTH(alen)), RTA_DST};
  std::memcpy(p, &a, sizeof(a));
  std::memcpy(p + sizeof(a), addr.bytes, alen);
  size_t len = NLMSG_LENGTH(sizeof(rtmsg)) + RTA_LENGTH(alen);
  if (from.family != 0) {
    req.rt.rtm_src_len = static_cast<uint8_t>(alen * 8);
    a.rta_type = RTA_SRC;
    std::memcpy(p + RTA_LENGTH(alen), &a, sizeof(a));
    std::memcpy(p + RTA_LENGTH(alen) + sizeof(a), from.bytes, alen);
    len += RTA_LENGTH(alen);
  }
  req.h.nlmsg_len = static_cast<uint32_t>(len);
  RouteInfo r;
  bool got = false;
  const bool ok = sock->Request(
      &req, req.h.nlmsg_len, false,
      [&](const nlmsghdr* h) { got = ParseRouteInfo(reinterpret_cast<const uint8_t*>(h), h->nlmsg_len, &r) || got; },
      "RTM_GETROUTE", err);
  if (!ok) {
    if (err->err_no != ENETUNREACH && err->err_no != EHOSTUNREACH) return false;
    r = RouteInfo{};
    r.type = RTN_UNREACHABLE;
    *err = SysError{};
  } else if (!got) {
    r.type = RTN_UNSPEC;
  }
  *out = r;
  return true;
}

int LookupNeigh(NetlinkSocket* sock, const IpAddr& addr, uint32_t ifindex, NeighEntry* out, SysError* err) {
  if (addr.family != 4 && addr.family != 6) {
    *err = SysError{EAFNOSUPPORT, "RTM_GETNEIGH", ""};
    return -1;
  }
  const size_t alen = addr.family == 4 ? 4 : 16;
  const uint8_t af = addr.family == 4 ? AF_INET : AF_INET6;
  struct {
    nlmsghdr h;
    ndmsg nd;
    rtattr dst;
    uint8_t bytes[16];
  } req{};
  req.h.nlmsg_type = RTM_GETNEIGH;
  req.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(ndmsg)) + RTA_LENGTH(alen));
  req.nd.ndm_family = af;
  req.nd.ndm_ifindex = static_cast<int>(ifindex);
  req.dst.rta_type = NDA_DST;
  req.dst.rta_len = static_cast<uint16_t>(RTA_LENGTH(alen));
  std::memcpy(req.bytes, addr.bytes, alen);
  NeighEntry found;
  bool got = false;
  const auto take = [&](const nlmsghdr* h) {
    NeighEntry n;
    if (!ParseNeighMessage(reinterpret_cast<const uint8_t*>(h), h->nlmsg_len, &n)) return;
    if (!IpEqual(n.addr, addr) || (ifindex != 0 && n.ifindex != ifindex)) return;
    found = n;
    got = true;
  };
  if (sock->Request(&req, req.h.nlmsg_len, false, take, "RTM_GETNEIGH", err)) {
    if (got) *out = found;
    return got ? 1 : 0;
  }
  if (err->err_no == ENOENT) {
    *err = SysError{};
    return 0;
  }
  // Before Linux 5.0 RTM_GETNEIGH only dumps: walk the family's table.
  if (err->err_no != EOPNOTSUPP && err->err_no != EINVAL) return -1;
  struct {
    nlmsghdr h;
    ndmsg nd;
  } dump{};
  dump.h.nlmsg_type = RTM_GETNEIGH;
  dump.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(ndmsg)));
  dump.nd.ndm_family = af;
  *err = SysError{};
  if (!sock->Request(&dump, dump.h.nlmsg_len, true, take, "RTM_GETNEIGH", err)) return -1;
  if (got) *out = found;
  return got ? 1 : 0;
}

bool DumpLinks(NetlinkSocket* sock, std::vector<LinkEntry>* out, SysError* err) {
  struct {
    nlmsghdr h;
    ifinfomsg ifi;
  } req{};
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(ifinfomsg)));
  req.ifi.ifi_family = AF_UNSPEC;
  std::vector<LinkEntry> links;
  const bool ok = sock->Request(
      &req, req.h.nlmsg_len, true,
      [&](const nlmsghdr* h) {
        LinkEntry l;
        if (ParseLinkMessage(reinterpret_cast<const uint8_t*>(h), h->nlmsg_len, &l)) links.push_back(std::move(l));
      },
      "RTM_GETLINK", err);
  if (!ok) return false;
  *out = std::move(links);
  return true;
}

// ---------------------------------------------------------------- NetlinkWatcher

std::unique_ptr<NetlinkWatcher> NetlinkWatcher::Open(const std::string& netns, SysError* err) {
  std::unique_ptr<NetlinkWatcher> w(new NetlinkWatcher());
  NetnsScope scope(netns);
  if (!scope.ok()) {
    *err = SysError{scope.err_no(), scope.syscall(), netns};
    return nullptr;
  }
  // Subscribe before the first dump, so no change between the two is missed.
  const uint32_t groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
  if (!w->events_.Open(NETLINK_ROUTE, groups, err)) return nullptr;
  // Groups above 32 need the membership option; a kernel without nexthops refuses it.
  int nexthop_group = RTNLGRP_NEXTHOP;
  setsockopt(w->events_.fd(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &nexthop_group, sizeof(nexthop_group));
  if (!w->dump_.Open(NETLINK_ROUTE, 0, err)) return nullptr;
  w->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->stop_fd_ < 0) {
    *err = SysError{errno, "eventfd", ""};
    return nullptr;
  }
  auto facts = std::make_shared<HostFacts>();
  const int64_t start = ClockNs(CLOCK_MONOTONIC);
  if (!DumpFacts(&w->dump_, facts.get(), err)) return nullptr;
  w->last_dump_ns_.store(static_cast<uint64_t>(ClockNs(CLOCK_MONOTONIC) - start), std::memory_order_relaxed);
  w->dumps_.store(1, std::memory_order_relaxed);
  facts->dumped_at_ns = ClockNs(CLOCK_REALTIME);
  facts->generation = w->generation_ = 1;
  w->facts_ = std::move(facts);
  return w;
}

NetlinkWatcher::~NetlinkWatcher() {
  Stop();
  if (stop_fd_ >= 0) close(stop_fd_);
}

bool NetlinkWatcher::Start(Notify notify, SysError* err) {
  if (thread_.joinable()) return true;
  notify_ = std::move(notify);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    *err = SysError{e.code().value(), "pthread_create", "netlink watcher"};
    return false;
  }
  return true;
}

void NetlinkWatcher::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  // The eventfd wakes the thread's poll; it exits without touching notify_ again.
  (void)!write(stop_fd_, &one, sizeof(one));
  thread_.join();
}

std::shared_ptr<const HostFacts> NetlinkWatcher::Facts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return facts_;
}

WatcherStats NetlinkWatcher::Stats() const {
  WatcherStats s;
  s.dumps = dumps_.load(std::memory_order_relaxed);
  s.notifications = notifications_.load(std::memory_order_relaxed);
  s.overruns = overruns_.load(std::memory_order_relaxed);
  s.dump_errors = dump_errors_.load(std::memory_order_relaxed);
  s.last_dump_ns = last_dump_ns_.load(std::memory_order_relaxed);
  return s;
}

SysError NetlinkWatcher::LastError() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

bool NetlinkWatcher::Redump(int64_t noticed_at_ns) {
  auto facts = std::make_shared<HostFacts>();
  SysError err;
  const int64_t start = ClockNs(CLOCK_MONOTONIC);
  const bool ok = DumpFacts(&dump_, facts.get(), &err);
  dumps_.fetch_add(1, std::memory_order_relaxed);
  last_dump_ns_.store(static_cast<uint64_t>(ClockNs(CLOCK_MONOTONIC) - start), std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mu_);
  if (!ok) {
    dump_errors_.fetch_add(1, std::memory_order_relaxed);
    error_ = err;
    return false;
  }
  facts->dumped_at_ns = ClockNs(CLOCK_REALTIME);
  facts->noticed_at_ns = noticed_at_ns;
  facts->generation = ++generation_;
  facts_ = std::move(facts);
  error_ = SysError{};
  return true;
}

void NetlinkWatcher::Run() {
  std::vector<uint8_t> buf(kRecvBuffer);
  bool pending = false;
  int64_t noticed_real = 0;
  int64_t first = 0;     // CLOCK_MONOTONIC of the burst's first message
  int64_t last = 0;      // and of its latest
  int64_t not_before = 0;  // after a failed dump: when to try again
  for (;;) {
    int timeout_ms = -1;
    if (pending) {
      const int64_t due = std::max(std::min(last + kQuietNs, first + kMaxWaitNs), not_before);
      const int64_t wait = due - ClockNs(CLOCK_MONOTONIC);
      timeout_ms = wait <= 0 ? 0 : static_cast<int>((wait + 999'999) / 1'000'000);
    }
    pollfd fds[2] = {{events_.fd(), POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    const int r = poll(fds, 2, timeout_ms);
    if (r < 0 && errno != EINTR) return;
    if (r > 0 && (fds[1].revents & POLLIN) != 0) return;
    if (r > 0 && (fds[0].revents & (POLLIN | POLLERR)) != 0) {
      for (;;) {
        const ssize_t n = recv(events_.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
        bool changed = false;
        if (n < 0) {
          if (errno == EINTR) continue;
          // ENOBUFS: the kernel dropped notifications. Only a full dump is the truth now.
          if (errno != ENOBUFS) break;
          overruns_.fetch_add(1, std::memory_order_relaxed);
          changed = true;
        } else {
          size_t count = 0;
          for (size_t off = 0; off + sizeof(nlmsghdr) <= static_cast<size_t>(n);) {
            const nlmsghdr h = Load<nlmsghdr>(buf.data() + off);
            if (h.nlmsg_len < sizeof(nlmsghdr)) break;
            count++;
            off += NLMSG_ALIGN(h.nlmsg_len);
          }
          notifications_.fetch_add(count, std::memory_order_relaxed);
          changed = count > 0;
        }
        if (changed) {
          const int64_t now = ClockNs(CLOCK_MONOTONIC);
          if (!pending) {
            pending = true;
            noticed_real = ClockNs(CLOCK_REALTIME);
            first = now;
          }
          last = now;
        }
      }
    }
    if (pending && ClockNs(CLOCK_MONOTONIC) >= std::max(std::min(last + kQuietNs, first + kMaxWaitNs), not_before)) {
      if (Redump(noticed_real)) {
        pending = false;
        not_before = 0;
        notify_();
      } else {
        not_before = ClockNs(CLOCK_MONOTONIC) + kRetryNs;
      }
    }
  }
}

}  // namespace portanoia
