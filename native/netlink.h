// Host facts from the kernel through rtnetlink, free of napi: the addresses of every
// interface (any state, both families, tentative and deprecated included), the next
// hops of every route in every table (RTA_GATEWAY, RTA_VIA, each RTA_MULTIPATH hop,
// and nexthop objects named by RTA_NH_ID, groups resolved), and change notifications
// (the ifaddr, route and nexthop multicast groups). Three parts:
// - pure parsers that turn rtnetlink messages into facts (unit-tested through the
//   addon's parseRtnl and parseRtnlObjects test entries with crafted messages), also
//   for the one-object answers attribution asks for: the route to one address
//   (type, output interface, next hop), one neighbour entry (state, link-layer
//   address), and the links (master, lower device, VLAN id, hardware address);
// - NetlinkSocket, a blocking request/reply helper shared with sock_diag.cc;
// - NetlinkWatcher, which owns one thread after Start(): it sleeps in poll() on the
//   multicast socket and an eventfd, and on any change (or an ENOBUFS overrun, which
//   means changes were lost) waits for a short quiet period, re-dumps everything and
//   publishes the new facts as one immutable snapshot under a mutex, then calls
//   `notify` (which only schedules work on the JS thread).
// Re-dumping instead of applying each message keeps the snapshot exactly what the
// kernel holds, whatever was lost or reordered; its cost grows with the route count.
// Sockets are created in the target network namespace at Open() and stay bound to it.
#pragma once

#include <linux/netlink.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sys_error.h"

namespace portanoia {

struct IpAddr {
  uint8_t family = 0;  // 4 or 6; 0 = none
  uint8_t bytes[16] = {};
};

bool IpEqual(const IpAddr& a, const IpAddr& b);
// inet_ntop form; "" for family 0.
std::string FormatIp(const IpAddr& a);
// inet_pton of an IPv4 or IPv6 literal (no zone, no prefix).
bool ParseIp(const std::string& text, IpAddr* out);

struct AddrFact {
  IpAddr local;
  IpAddr broadcast;  // IFA_BROADCAST; family 0 when absent
  IpAddr peer;       // the far end of a point-to-point address; family 0 when none
  uint8_t prefix_len = 0;
  uint8_t scope = 0;
  uint32_t flags = 0;  // IFA_F_* (IFA_FLAGS when present, else ifa_flags)
  uint32_t ifindex = 0;
};

struct GatewayFact {
  IpAddr addr;
  uint32_t table = 0;
  uint32_t ifindex = 0;
};

// A nexthop object (RTM_NEWNEXTHOP): a gateway, or a group of other objects.
struct NexthopObj {
  uint32_t id = 0;
  IpAddr gateway;
  std::vector<uint32_t> group;
};

// What one RTM_NEWROUTE says about its next hops.
struct RouteHops {
  uint32_t table = 0;
  std::vector<GatewayFact> gateways;
  std::vector<uint32_t> nh_ids;
};

// Everything one full dump (or a test buffer) contained, before resolution.
struct FactsParts {
  std::vector<AddrFact> addresses;
  std::vector<RouteHops> routes;
  std::vector<NexthopObj> nexthops;
};

struct HostFacts {
  std::vector<AddrFact> addresses;
  // Deduplicated by (address, table).
  std::vector<GatewayFact> gateways;
  uint64_t generation = 0;
  int64_t dumped_at_ns = 0;   // CLOCK_REALTIME when the dump finished
  int64_t noticed_at_ns = 0;  // CLOCK_REALTIME of the first notification it answers; 0 if none
  bool nexthops_supported = true;
};

// Pure parsers. `msg` points at a whole netlink message (header included) of `len`
// bytes as received; they return false for a message of another type or one too
// short to hold its fixed header, and skip attributes they do not know.
bool ParseAddrMessage(const uint8_t* msg, size_t len, AddrFact* out);
bool ParseRouteMessage(const uint8_t* msg, size_t len, RouteHops* out);
bool ParseNexthopMessage(const uint8_t* msg, size_t len, NexthopObj* out);
// Feeds every RTM_NEWADDR / RTM_NEWROUTE / RTM_NEWNEXTHOP in a buffer of messages.
void CollectMessages(const uint8_t* buf, size_t len, FactsParts* parts);
// Resolves nexthop ids (a group's members one level deep, as the kernel allows) and
// deduplicates the gateways.
HostFacts BuildFacts(const FactsParts& parts);

// Blocking netlink request/reply on one socket; used by one thread at a time.
class NetlinkSocket {
 public:
  NetlinkSocket() = default;
  ~NetlinkSocket();
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // Opens a socket of `protocol` (NETLINK_ROUTE, NETLINK_SOCK_DIAG) in the current
  // namespace, bound to the multicast `groups` bitmask (legacy groups 1..32).
  bool Open(int protocol, uint32_t groups, SysError* err);
  int fd() const { return fd_; }
  // Sends `req` (a whole message; its seq and pid are filled in here) and calls
  // `on_message` for every reply until the dump's NLMSG_DONE, or for a plain request
  // until its one answer. An NLMSG_ERROR reply is returned as *err with `syscall`.
  // *interrupted is set when the kernel flagged the dump inconsistent (NLM_F_DUMP_INTR).
  // `on_message` may call StopDump() to leave a dump early (the answer is known): the
  // messages of the buffer already received are still handed over, the rest of the
  // dump stays queued in the kernel, so the socket must be reopened before the next
  // request (abandoned() says so; not when the dump's end was in that buffer).
  bool Request(void* req, size_t len, bool dump, const std::function<void(const nlmsghdr*)>& on_message,
               const char* syscall, SysError* err, bool* interrupted = nullptr);
  void StopDump() { stop_ = true; }
  bool abandoned() const { return abandoned_; }
  void Close();

 private:
  int fd_ = -1;
  uint32_t seq_ = 0;
  bool stop_ = false;
  bool abandoned_ = false;
  std::vector<uint8_t> buf_;
};

// Dumps addresses, routes (both families, every table) and nexthop objects.
bool DumpFacts(NetlinkSocket* sock, HostFacts* out, SysError* err);

// The kernel's answer to RTM_GETROUTE for one address: how this host would send to it.
struct RouteInfo {
  int type = 0;           // RTN_*; RTN_UNREACHABLE also for ENETUNREACH/EHOSTUNREACH
  uint32_t oif = 0;       // RTA_OIF; 0 when the answer names none (unreachable, local)
  IpAddr gateway;         // RTA_GATEWAY / RTA_VIA; family 0 when the address is on-link
  IpAddr prefsrc;         // RTA_PREFSRC: the source address the host would use
  uint32_t table = 0;
};

// One neighbour entry (RTM_NEWNEIGH).
struct NeighEntry {
  IpAddr addr;
  uint32_t ifindex = 0;
  uint16_t state = 0;      // NUD_* bits
  uint8_t flags = 0;       // NTF_* bits (NTF_ROUTER for an IPv6 router)
  uint8_t lladdr_len = 0;  // 0 when the entry holds no link-layer address (INCOMPLETE, FAILED)
  uint8_t lladdr[32] = {};
};

// One link (RTM_NEWLINK), what attribution needs to relate interfaces: a bridge or bond
// port to its master, a VLAN or macvlan device to its lower device.
struct LinkEntry {
  uint32_t ifindex = 0;
  uint32_t master = 0;     // IFLA_MASTER
  uint32_t link = 0;       // IFLA_LINK: the lower device (VLAN, macvlan, veth peer index)
  uint16_t type = 0;       // ARPHRD_*
  uint16_t vlan_id = 0;    // IFLA_INFO_DATA/IFLA_VLAN_ID when kind is "vlan"
  bool has_vlan = false;
  uint32_t flags = 0;      // IFF_*
  std::string name;
  std::string kind;        // IFLA_INFO_KIND: "bridge", "vlan", "bond", "macvlan", "veth", ...
  uint8_t mac_len = 0;
  uint8_t mac[32] = {};
};

bool ParseRouteInfo(const uint8_t* msg, size_t len, RouteInfo* out);
bool ParseNeighMessage(const uint8_t* msg, size_t len, NeighEntry* out);
bool ParseLinkMessage(const uint8_t* msg, size_t len, LinkEntry* out);

// Everything of those three kinds in a buffer of messages (the test entry's view).
struct RtnlObjects {
  std::vector<RouteInfo> routes;
  std::vector<NeighEntry> neighbours;
  std::vector<LinkEntry> links;
};
void CollectObjects(const uint8_t* buf, size_t len, RtnlObjects* out);

// RTM_GETROUTE for one address, from `from` (one of this host's addresses, so that rules
// selecting by source apply) when its family is set. False with *err only when the
// kernel could not be asked or refused the question (a `from` that is not local:
// EINVAL); an unreachable destination is an answer: type RTN_UNREACHABLE.
bool LookupRoute(NetlinkSocket* sock, const IpAddr& addr, const IpAddr& from, RouteInfo* out, SysError* err);
// RTM_GETNEIGH for one address on one interface: 1 found, 0 no entry, -1 with *err.
// Kernels before 5.0 have no single-entry query: the family's table is dumped instead.
int LookupNeigh(NetlinkSocket* sock, const IpAddr& addr, uint32_t ifindex, NeighEntry* out, SysError* err);
// Every link of the namespace.
bool DumpLinks(NetlinkSocket* sock, std::vector<LinkEntry>* out, SysError* err);

// The route type (RTN_LOCAL, RTN_BROADCAST, RTN_UNICAST, RTN_MULTICAST, ...) the
// kernel would use to send to `addr` from this host: RTM_GETROUTE for one address.
// RTN_UNREACHABLE for ENETUNREACH/EHOSTUNREACH; -1 with *err for other failures.
int LookupRouteType(NetlinkSocket* sock, const IpAddr& addr, SysError* err);

struct WatcherStats {
  uint64_t dumps = 0;
  uint64_t notifications = 0;  // multicast messages received
  uint64_t overruns = 0;       // ENOBUFS: notifications lost, a full re-dump followed
  uint64_t dump_errors = 0;
  uint64_t last_dump_ns = 0;   // how long the last dump took
};

class NetlinkWatcher {
 public:
  using Notify = std::function<void()>;

  // Opens the sockets in `netns` ("" = current) and dumps once, so Facts() is
  // valid before Start(). Runs on the JS thread. nullptr with *err on failure.
  static std::unique_ptr<NetlinkWatcher> Open(const std::string& netns, SysError* err);
  ~NetlinkWatcher();
  NetlinkWatcher(const NetlinkWatcher&) = delete;
  NetlinkWatcher& operator=(const NetlinkWatcher&) = delete;

  // Starts the thread; `notify` is called from it after each new snapshot.
  bool Start(Notify notify, SysError* err);
  // Stops and joins the thread; idempotent.
  void Stop();
  std::shared_ptr<const HostFacts> Facts() const;
  WatcherStats Stats() const;
  // The last failed re-dump (the previous facts stay in force); err_no 0 when none.
  SysError LastError() const;

 private:
  NetlinkWatcher() = default;
  void Run();
  bool Redump(int64_t noticed_at_ns);

  NetlinkSocket events_;
  NetlinkSocket dump_;
  int stop_fd_ = -1;
  std::thread thread_;
  Notify notify_;
  mutable std::mutex mu_;  // guards facts_ and error_
  std::shared_ptr<const HostFacts> facts_;
  SysError error_;
  uint64_t generation_ = 0;  // watcher thread only (after Start)
  std::atomic<uint64_t> dumps_{0};
  std::atomic<uint64_t> notifications_{0};
  std::atomic<uint64_t> overruns_{0};
  std::atomic<uint64_t> dump_errors_{0};
  std::atomic<uint64_t> last_dump_ns_{0};
};

}  // namespace portanoia
