// Active link-layer checks for attribution, free of napi: who answers for an address
// on a link. For IPv4 an ARP request in RFC 5227's probe form (sender protocol address
// 0.0.0.0, so no cache on the link learns anything from it) goes out on one interface;
// for IPv6 a neighbour solicitation to the target's solicited-node group, carrying our
// link-layer address. Every answer for any address is collected (ARP replies, and
// neighbour advertisements that carry the target's link-layer address); the caller
// matches them to what it asked. Why not only the kernel's neighbour table: a forger's
// own ARP request for this host, sent with the forged address as its sender (nmap -S
// does this when it resolves its target), overwrites the table's entry for that
// address with the forger's MAC (neigh_event_ns overrides), so the table can agree with
// a forged frame; an answer to a fresh question cannot be planted that way.
// Sockets are non-blocking and created in the target namespace at Open(); one thread
// (the JS thread) uses them: Send() never blocks, Collect() reads what has arrived.
// The builders and parsers are pure and unit-tested through the addon's test entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "netlink.h"
#include "sys_error.h"

namespace portanoia {

struct ProbeAnswer {
  IpAddr addr;
  uint8_t mac[6] = {};
  uint32_t ifindex = 0;
};

constexpr size_t kArpProbeSize = 28;
constexpr size_t kNeighSolicitSize = 32;

// An ARP request for `target` (IPv4) from `sender_mac` with sender address 0.0.0.0.
void BuildArpProbe(const uint8_t sender_mac[6], const IpAddr& target, uint8_t out[kArpProbeSize]);
// An ARP reply (Ethernet / IPv4 only) as received on a SOCK_DGRAM packet socket:
// the sender's protocol and hardware addresses. False for anything else.
bool ParseArpAnswer(const uint8_t* p, size_t len, ProbeAnswer* out);
// A neighbour solicitation (ICMPv6 body, checksum left to the kernel) for `target`
// with a source link-layer address option of `sender_mac`.
void BuildNeighSolicit(const IpAddr& target, const uint8_t sender_mac[6], uint8_t out[kNeighSolicitSize]);
// A neighbour advertisement's target and target link-layer address (an Ethernet-size
// option). False when it is not one or carries no such option.
bool ParseNeighAdvert(const uint8_t* p, size_t len, ProbeAnswer* out);
// ff02::1:ffXX:XXXX for `target`.
IpAddr SolicitedNode(const IpAddr& target);

class LinkProbe {
 public:
  // Opens the ARP and ICMPv6 sockets in `netns` ("" = current). nullptr with *err.
  static std::unique_ptr<LinkProbe> Open(const std::string& netns, SysError* err);
  ~LinkProbe();
  LinkProbe(const LinkProbe&) = delete;
  LinkProbe& operator=(const LinkProbe&) = delete;

  // Asks who has `target` on `ifindex`, as `mac` (the interface's own address).
  bool Send(const IpAddr& target, uint32_t ifindex, const uint8_t mac[6], SysError* err);
  // Appends the answers that arrived since the last call, at most `max`.
  void Collect(std::vector<ProbeAnswer>* out, size_t max);

 private:
  LinkProbe() = default;
  int arp_fd_ = -1;
  int nd_fd_ = -1;
};

}  // namespace portanoia
