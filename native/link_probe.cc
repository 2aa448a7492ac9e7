// LinkProbe: see link_probe.h. Runs on the JS thread. Every read of a received
// packet is bounded by the length recv() returned; a packet that is not what the
// socket's filter promised is skipped, never trusted.
#include "link_probe.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "netns.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

namespace portanoia {

namespace {

constexpr uint16_t kArpHwEther = 1;
constexpr uint16_t kArpOpReply = 2;
constexpr uint8_t kNdOptSourceLl = 1;
constexpr uint8_t kNdOptTargetLl = 2;
constexpr size_t kNeighAdvertFixed = 24;  // type, code, checksum, flags, target

void Store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

}  // namespace

void BuildArpProbe(const uint8_t sender_mac[6], const IpAddr& target, uint8_t out[kArpProbeSize]) {
  std::memset(out, 0, kArpProbeSize);
  Store16(out, kArpHwEther);
  Store16(out + 2, ETH_P_IP);
  out[4] = 6;
  out[5] = 4;
  Store16(out + 6, 1);  // request
  std::memcpy(out + 8, sender_mac, 6);
  // Sender protocol address 0.0.0.0 (RFC 5227): answered, but learned by nobody.
  std::memcpy(out + 24, target.bytes, 4);
}

bool ParseArpAnswer(const uint8_t* p, size_t len, ProbeAnswer* out) {
  if (len < kArpProbeSize) return false;
  if (Load16(p) != kArpHwEther || Load16(p + 2) != ETH_P_IP || p[4] != 6 || p[5] != 4) return false;
  if (Load16(p + 6) != kArpOpReply) return false;
  ProbeAnswer a;
  a.addr.family = 4;
  std::memcpy(a.addr.bytes, p + 14, 4);
  std::memcpy(a.mac, p + 8, 6);
  *out = a;
  return true;
}

IpAddr SolicitedNode(const IpAddr& target) {
  IpAddr g;
  g.family = 6;
  g.bytes[0] = 0xff;
  g.bytes[1] = 0x02;
  g.bytes[11] = 0x01;
  g.bytes[12] = 0xff;
  g.bytes[13] = target.bytes[13];
  g.bytes[14] = target.bytes[14];
  g.bytes[15] = target.bytes[15];
  return g;
}

void BuildNeighSolicit(const IpAddr& target, const uint8_t sender_mac[6], uint8_t out[kNeighSolicitSize]) {
  std::memset(out, 0, kNeighSolicitSize);
  out[0] = ND_NEIGHBOR_SOLICIT;
  std::memcpy(out + 8, target.bytes, 16);
  out[24] = kNdOptSourceLl;
  out[25] = 1;  // in units of 8 bytes
  std::memcpy(out + 26, sender_mac, 6);
}

bool ParseNeighAdvert(const uint8_t* p, size_t len, ProbeAnswer* out) {
  if (len < kNeighAdvertFixed || p[0] != ND_NEIGHBOR_ADVERT || p[1] != 0) return false;
  ProbeAnswer a;
  a.addr.family = 6;
  std::memcpy(a.addr.bytes, p + 8, 16);
  size_t off = kNeighAdvertFixed;
  while (off + 2 <= len) {
    const size_t size = size_t(p[off + 1]) * 8;
    if (size == 0 || off + size > len) return false;
    if (p[off] == kNdOptTargetLl && size >= 8) {
      std::memcpy(a.mac, p + off + 2, 6);
      *out = a;
      return true;
    }
    off += size;
  }
  return false;
}

std::unique_ptr<LinkProbe> LinkProbe::Open(const std::string& netns, SysError* err) {
  std::unique_ptr<LinkProbe> probe(new LinkProbe());
  NetnsScope scope(netns);
  if (!scope.ok()) {
    *err = SysError{scope.err_no(), scope.syscall(), netns};
    return nullptr;
  }
  // Protocol 0 until the filter is attached, then bind to ARP: nothing unfiltered queues.
  probe->arp_fd_ = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe->arp_fd_ < 0) {
    *err = SysError{errno, "socket", "AF_PACKET (ARP)"};
    return nullptr;
  }
  int one = 1;
  setsockopt(probe->arp_fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
  // ARP replies only: the operation field (bytes 6-7 of the ARP header) is 2.
  sock_filter code[] = {
      {0x28, 0, 0, 6},           // ldh [6]
      {0x15, 0, 1, kArpOpReply},  // jeq #2
      {0x06, 0, 0, 0xffff},      // ret #65535
      {0x06, 0, 0, 0},           // ret #0
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof(code) / sizeof(code[0])), code};
  if (setsockopt(probe->arp_fd_, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
    *err = SysError{errno, "setsockopt", "SO_ATTACH_FILTER (ARP)"};
    return nullptr;
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ARP);
  if (bind(probe->arp_fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
    *err = SysError{errno, "bind", "AF_PACKET (ARP)"};
    return nullptr;
  }

  probe->nd_fd_ = socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (probe->nd_fd_ < 0) {
    // A kernel without IPv6: IPv4 probes still work.
    if (errno == EAFNOSUPPORT) return probe;
    *err = SysError{errno, "socket", "ICMPv6"};
    return nullptr;
  }
  icmp6_filter filter;
  ICMP6_FILTER_SETBLOCKALL(&filter);
  ICMP6_FILTER_SETPASS(ND_NEIGHBOR_ADVERT, &filter);
  setsockopt(probe->nd_fd_, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof(filter));
  // Neighbour discovery is only valid with hop limit 255 (RFC 4861 7.1.1).
  int hops = 255;
  setsockopt(probe->nd_fd_, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops));
  setsockopt(probe->nd_fd_, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops));
  setsockopt(probe->nd_fd_, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
  return probe;
}

LinkProbe::~LinkProbe() {
  if (arp_fd_ >= 0) close(arp_fd_);
  if (nd_fd_ >= 0) close(nd_fd_);
}

bool LinkProbe::Send(const IpAddr& target, uint32_t ifindex, const uint8_t mac[6], SysError* err) {
  if (target.family == 4) {
    uint8_t body[kArpProbeSize];
    BuildArpProbe(mac, target, body);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = static_cast<int>(ifindex);
    to.sll_halen = 6;
    std::memset(to.sll_addr, 0xff, 6);
    if (sendto(arp_fd_, body, sizeof(body), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
      *err = SysError{errno, "sendto", "ARP"};
      return false;
    }
    return true;
  }
  if (target.family != 6 || nd_fd_ < 0) {
    *err = SysError{EAFNOSUPPORT, "sendto", "neighbour solicitation"};
    return false;
  }
  const unsigned int index = ifindex;
  setsockopt(nd_fd_, IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, sizeof(index));
  uint8_t body[kNeighSolicitSize];
  BuildNeighSolicit(target, mac, body);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  const IpAddr group = SolicitedNode(target);
  std::memcpy(&to.sin6_addr, group.bytes, 16);
  to.sin6_scope_id = ifindex;
  if (sendto(nd_fd_, body, sizeof(body), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
    *err = SysError{errno, "sendto", "neighbour solicitation"};
    return false;
  }
  return true;
}

void LinkProbe::Collect(std::vector<ProbeAnswer>* out, size_t max) {
  uint8_t buf[1500];
  size_t taken = 0;
  while (arp_fd_ >= 0 && taken < max) {
    sockaddr_ll from{};
    socklen_t from_len = sizeof(from);
    const ssize_t n = recvfrom(arp_fd_, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    ProbeAnswer a;
    if (!ParseArpAnswer(buf, static_cast<size_t>(n), &a)) continue;
    a.ifindex = static_cast<uint32_t>(from.sll_ifindex);
    out->push_back(a);
    taken++;
  }
  while (nd_fd_ >= 0 && taken < max) {
    alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(in6_pktinfo))];
    sockaddr_in6 from{};
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = recvmsg(nd_fd_, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    ProbeAnswer a;
    if (!ParseNeighAdvert(buf, static_cast<size_t>(n), &a)) continue;
    a.ifindex = from.sin6_scope_id;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo))) {
        in6_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof(info));
        a.ifindex = info.ipi6_ifindex;
      }
    }
    out->push_back(a);
    taken++;
  }
}

}  // namespace portanoia
