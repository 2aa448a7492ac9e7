// SockDiag: see sock_diag.h. The bytecode follows the kernel's inet_diag_bc_run():
// each op says how far to jump on a match (`yes`) and on a miss (`no`); the socket
// matches when the program ends exactly at its last byte, so a miss jumps 4 bytes past
// the end. inet_diag_bc_audit() refuses any other shape, so a mistake here shows up as
// EINVAL, not as a wrong answer.
#include "sock_diag.h"

#include <linux/inet_diag.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "netns.h"

namespace portanoia {

namespace {

constexpr uint32_t kTcpListen = 1u << 10;
constexpr size_t kSockaddrStorage = sizeof(sockaddr_storage);

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Whether a 128-byte sockaddr slot of INET_DIAG_PEERS (or the id's address) is `addr`;
// an IPv4 query also matches an IPv4-mapped IPv6 peer.
bool SlotMatches(const uint8_t* slot, const IpAddr& addr) {
  const uint16_t af = Load<uint16_t>(slot);
  if (af == AF_INET) return addr.family == 4 && std::memcmp(slot + 4, addr.bytes, 4) == 0;
  if (af != AF_INET6) return false;
  const uint8_t* a6 = slot + 8;
  if (addr.family == 6) return std::memcmp(a6, addr.bytes, 16) == 0;
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a6, kMapped, 12) == 0 && std::memcmp(a6 + 12, addr.bytes, 4) == 0;
}

}  // namespace

std::vector<uint8_t> BuildPeerBytecode(const IpAddr& remote) {
  const size_t alen = remote.family == 4 ? 4 : 16;
  inet_diag_bc_op op{};
  op.code = INET_DIAG_BC_D_COND;
  op.yes = static_cast<unsigned char>(sizeof(op) + sizeof(inet_diag_hostcond) + alen);
  op.no = static_cast<unsigned short>(op.yes + 4);
  inet_diag_hostcond cond{};
  cond.family = remote.family == 4 ? AF_INET : AF_INET6;
  cond.prefix_len = static_cast<uint8_t>(alen * 8);
  cond.port = -1;
  std::vector<uint8_t> bc(op.yes);
  std::memcpy(bc.data(), &op, sizeof(op));
  std::memcpy(bc.data() + sizeof(op), &cond, sizeof(cond));
  std::memcpy(bc.data() + sizeof(op) + sizeof(cond), remote.bytes, alen);
  return bc;
}

std::unique_ptr<SockDiag> SockDiag::Open(const std::string& netns, SysError* err) {
  std::unique_ptr<SockDiag> d(new SockDiag());
  d->netns_ = netns;
  NetnsScope scope(netns);
  if (!scope.ok()) {
    *err = SysError{scope.err_no(), scope.syscall(), netns};
    return nullptr;
  }
  if (!d->diag_.Open(NETLINK_SOCK_DIAG, 0, err)) return nullptr;
  if (!d->rtnl_.Open(NETLINK_ROUTE, 0, err)) return nullptr;
  return d;
}

namespace {

// Whether a reply counts: its local port is not one of `ignore` (network order in the id).
bool Counts(const nlmsghdr* m, const std::vector<uint16_t>& ignore) {
  if (ignore.empty()) return true;
  if (m->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return false;
  const inet_diag_msg msg = Load<inet_diag_msg>(reinterpret_cast<const uint8_t*>(m) + NLMSG_HDRLEN);
  const uint16_t local = ntohs(msg.id.idiag_sport);
  for (uint16_t p : ignore) {
    if (p == local) return false;
  }
  return true;
}

}  // namespace

bool SockDiag::Reopen(SysError* err) {
  NetnsScope scope(netns_);
  if (!scope.ok()) {
    *err = SysError{scope.err_no(), scope.syscall(), netns_};
    return false;
  }
  return diag_.Open(NETLINK_SOCK_DIAG, 0, err);
}

int SockDiag::Settle(bool ok, int count, SysError* err) {
  // A dump left early, or one that failed half-way, leaves the socket unusable.
  if (!ok || diag_.abandoned()) {
    SysError reopen_err;
    if (!Reopen(&reopen_err) && ok) {
      *err = reopen_err;
      return -1;
    }
  }
  return ok ? count : -1;
}

int SockDiag::CountMatches(uint8_t af, uint8_t proto, uint32_t states, const std::vector<uint8_t>& bytecode,
                           const std::vector<uint16_t>& ignore_local, SysError* err) {
  const size_t attr_len = NLA_HDRLEN + bytecode.size();
  std::vector<uint8_t> req(NLMSG_LENGTH(sizeof(inet_diag_req_v2)) + NLA_ALIGN(attr_len), 0);
  auto* h = reinterpret_cast<nlmsghdr*>(req.data());
  h->nlmsg_len = static_cast<uint32_t>(req.size());
  h->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  inet_diag_req_v2 r{};
  r.sdiag_family = af;
  r.sdiag_protocol = proto;
  r.idiag_states = states;
  std::memcpy(req.data() + NLMSG_HDRLEN, &r, sizeof(r));
  if (!bytecode.empty()) {
    nlattr a{};
    a.nla_len = static_cast<uint16_t>(attr_len);
    a.nla_type = INET_DIAG_REQ_BYTECODE;
    uint8_t* at = req.data() + NLMSG_LENGTH(sizeof(inet_diag_req_v2));
    std::memcpy(at, &a, sizeof(a));
    std::memcpy(at + NLA_HDRLEN, bytecode.data(), bytecode.size());
  } else {
    h->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(inet_diag_req_v2)));
  }
  int count = 0;
  const bool ok = diag_.Request(
      req.data(), h->nlmsg_len, true,
      [this, &count, &ignore_local](const nlmsghdr* m) {
        if (m->nlmsg_type == SOCK_DIAG_BY_FAMILY && Counts(m, ignore_local)) {
          count++;
          // One is the answer: a peer with 100,000 connections need not send them all.
          diag_.StopDump();
        }
      },
      "SOCK_DIAG_BY_FAMILY", err);
  return Settle(ok, count, err);
}

int SockDiag::CountTcpBothFamilies(uint32_t states, const std::vector<uint8_t>& bytecode,
                                   const std::vector<uint16_t>& ignore_local, SysError* err) {
  const size_t attr_len = NLA_HDRLEN + bytecode.size();
  std::vector<uint8_t> req(NLMSG_LENGTH(sizeof(inet_diag_req)) + NLA_ALIGN(attr_len), 0);
  auto* h = reinterpret_cast<nlmsghdr*>(req.data());
  h->nlmsg_len = static_cast<uint32_t>(req.size());
  h->nlmsg_type = TCPDIAG_GETSOCK;
  inet_diag_req r{};
  r.idiag_family = AF_INET;  // ignored by the dump, which takes both
  r.idiag_states = states;
  std::memcpy(req.data() + NLMSG_HDRLEN, &r, sizeof(r));
  nlattr a{};
  a.nla_len = static_cast<uint16_t>(attr_len);
  a.nla_type = INET_DIAG_REQ_BYTECODE;
  uint8_t* at = req.data() + NLMSG_LENGTH(sizeof(inet_diag_req));
  std::memcpy(at, &a, sizeof(a));
  std::memcpy(at + NLA_HDRLEN, bytecode.data(), bytecode.size());
  int count = 0;
  const bool ok = diag_.Request(
      req.data(), req.size(), true,
      [this, &count, &ignore_local](const nlmsghdr* m) {
        if (m->nlmsg_type == TCPDIAG_GETSOCK && Counts(m, ignore_local)) {
          count++;
          diag_.StopDump();
        }
      },
      "TCPDIAG_GETSOCK", err);
  return Settle(ok, count, err);
}

int SockDiag::CountTcp(uint8_t family, uint32_t states, const std::vector<uint8_t>& bytecode,
                       const std::vector<uint16_t>& ignore_local, SysError* err) {
  if (tcp_compat_) {
    SysError compat_err;
    const int n = CountTcpBothFamilies(states, bytecode, ignore_local, &compat_err);
    if (n >= 0) return n;
    tcp_compat_ = false;
  }
  const int n = family == 4 ? CountMatches(AF_INET, IPPROTO_TCP, states, bytecode, ignore_local, err) : 0;
  if (n != 0) return n;
  // IPv4 peers of dual-stack sockets are IPv4-mapped in the AF_INET6 table.
  SysError e6;
  const int n6 = CountMatches(AF_INET6, IPPROTO_TCP, states, bytecode, ignore_local, &e6);
  // A host without IPv6 has no AF_INET6 table: nothing to find there.
  if (n6 < 0 && family == 6) {
    *err = e6;
    return -1;
  }
  return n6 < 0 ? 0 : n6;
}

int SockDiag::Peer(const IpAddr& addr, const std::vector<uint16_t>& ignore_local, SysError* err) {
  if (addr.family != 4 && addr.family != 6) {
    *err = SysError{EAFNOSUPPORT, "SOCK_DIAG_BY_FAMILY", ""};
    return -1;
  }
  const std::vector<uint8_t> bc = BuildPeerBytecode(addr);
  const int n = CountTcp(addr.family, kTcpPeerStates, bc, ignore_local, err);
  if (n < 0) return -1;
  int bits = n > 0 ? kPeerTcp : 0;
  if (sctp_available_) {
    SysError es;
    const int s = SctpPeer(addr, &es);
    if (s > 0) bits |= kPeerSctp;
    if (s < 0) {
      sctp_available_ = false;
      sctp_error_ = es;
    }
  }
  return bits;
}

int SockDiag::SctpPeer(const IpAddr& addr, SysError* err) {
  // Associations only: LISTEN would dump the endpoints, which have no peer.
  const uint32_t states = ~kTcpListen;
  int found = 0;
  for (const uint8_t af : {uint8_t(AF_INET), uint8_t(AF_INET6)}) {
    std::vector<uint8_t> req(NLMSG_LENGTH(sizeof(inet_diag_req_v2)), 0);
    auto* h = reinterpret_cast<nlmsghdr*>(req.data());
    h->nlmsg_len = static_cast<uint32_t>(req.size());
    h->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    inet_diag_req_v2 r{};
    r.sdiag_family = af;
    r.sdiag_protocol = IPPROTO_SCTP;
    r.idiag_states = states;
    std::memcpy(req.data() + NLMSG_HDRLEN, &r, sizeof(r));
    const bool ok = diag_.Request(
        req.data(), req.size(), true,
        [&](const nlmsghdr* m) {
          if (m->nlmsg_type != SOCK_DIAG_BY_FAMILY || m->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return;
          const uint8_t* body = reinterpret_cast<const uint8_t*>(m) + NLMSG_HDRLEN;
          const inet_diag_msg msg = Load<inet_diag_msg>(body);
          // The primary peer address is in the id; INET_DIAG_PEERS lists every one.
          uint8_t slot[kSockaddrStorage] = {};
          const uint16_t id_af = msg.idiag_family;
          std::memcpy(slot, &id_af, sizeof(id_af));
          std::memcpy(slot + (id_af == AF_INET ? 4 : 8), msg.id.idiag_dst, id_af == AF_INET ? 4 : 16);
          if (SlotMatches(slot, addr)) found = 1;
          const size_t fixed = NLMSG_ALIGN(sizeof(inet_diag_msg));
          const size_t body_len = m->nlmsg_len - NLMSG_HDRLEN;
          const uint8_t* p = body + fixed;
          size_t len = body_len > fixed ? body_len - fixed : 0;
          while (len >= NLA_HDRLEN) {
            const nlattr a = Load<nlattr>(p);
            if (a.nla_len < NLA_HDRLEN || a.nla_len > len) break;
            if ((a.nla_type & NLA_TYPE_MASK) == INET_DIAG_PEERS) {
              for (size_t off = NLA_HDRLEN; off + kSockaddrStorage <= a.nla_len; off += kSockaddrStorage) {
                if (SlotMatches(p + off, addr)) found = 1;
              }
            }
            const size_t step = NLA_ALIGN(a.nla_len);
            if (step >= len) break;
            p += step;
            len -= step;
          }
        },
        "SOCK_DIAG_BY_FAMILY", err);
    if (!ok) {
      if (af == AF_INET6 && err->err_no == EAFNOSUPPORT) continue;
      return -1;
    }
  }
  return found;
}

int SockDiag::Connected(uint8_t proto, const IpAddr& local, uint16_t local_port, const IpAddr& remote,
                        uint16_t remote_port, SysError* err) {
  if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || (remote.family != 4 && remote.family != 6) ||
      local.family != remote.family) {
    *err = SysError{EINVAL, "SOCK_DIAG_BY_FAMILY", ""};
    return -1;
  }
  const size_t alen = remote.family == 4 ? 4 : 16;
  struct {
    nlmsghdr h;
    inet_diag_req_v2 r;
  } req{};
  req.h.nlmsg_len = sizeof(req);
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.r.sdiag_family = remote.family == 4 ? AF_INET : AF_INET6;
  req.r.sdiag_protocol = proto;
  req.r.idiag_states = ~0u;
  // The exact-lookup request (no NLM_F_DUMP). Which end is "src" differs: TCP's
  // inet_diag_find_one_icsk() takes src as the local end, UDP's udp_dump_one() takes
  // it as the remote end ("swapped for historical reasons", says the kernel).
  const bool tcp = proto == IPPROTO_TCP;
  const IpAddr& src = tcp ? local : remote;
  const IpAddr& dst = tcp ? remote : local;
  std::memcpy(req.r.id.idiag_src, src.bytes, alen);
  std::memcpy(req.r.id.idiag_dst, dst.bytes, alen);
  req.r.id.idiag_sport = htons(tcp ? local_port : remote_port);
  req.r.id.idiag_dport = htons(tcp ? remote_port : local_port);
  req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  int state = -1;
  const bool ok = diag_.Request(
      &req, sizeof(req), false,
      [&state](const nlmsghdr* m) {
        if (m->nlmsg_type == SOCK_DIAG_BY_FAMILY && m->nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
          state = Load<inet_diag_msg>(reinterpret_cast<const uint8_t*>(m) + NLMSG_HDRLEN).idiag_state;
        }
      },
      "SOCK_DIAG_BY_FAMILY", err);
  if (!ok) {
    // ENOENT: no socket has this tuple.
    if (err->err_no == ENOENT) return 0;
    return -1;
  }
  // The TCP lookup falls back to a listener on the port (the tripwire's own), and the
  // UDP one to a bound, unconnected socket: neither is a connection this is a reply to.
  if (state < 0 || state > 31) return 0;
  const uint32_t states = tcp ? kTcpReplyStates : kUdpConnectedStates;
  return (states & (1u << state)) != 0 ? 1 : 0;
}

}  // namespace portanoia
