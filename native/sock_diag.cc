// SockDiag: see sock_diag.h. The bytecode follows the kernel's inet_diag_bc_run():
// each op says how far to jump on a match (`yes`, a u8) and on a miss (`no`, a u16);
// a JMP always takes `no`; the socket matches when the program ends exactly at its
// last byte, so a refusal jumps 4 bytes past the end. inet_diag_bc_audit() refuses
// any other shape (every op reached by `yes` steps, each `no` landing on one of them
// or at the end or 4 past it), so a mistake here shows up as EINVAL, not as a wrong
// answer; test/native/sock-diag.test.ts runs the built programs through a model of
// both functions.
#include "sock_diag.h"

#include <linux/inet_diag.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
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

}  // namespace

std::vector<PortRange> PortRanges(std::vector<uint16_t> ports) {
  std::sort(ports.begin(), ports.end());
  std::vector<PortRange> out;
  for (const uint16_t p : ports) {
    if (!out.empty() && (p == out.back().hi || p == out.back().hi + 1)) {
      out.back().hi = p;
    } else {
      out.push_back(PortRange{p, p});
    }
  }
  return out;
}

namespace {

constexpr size_t kOp = sizeof(inet_diag_bc_op);
// Sockets of already answered peers a walk reads before it is left and asked again
// without them: about two receive buffers. A few connections per peer (the usual
// case) never reach it, so a batch with peers in it still costs one walk; a peer with
// 100,000 connections costs these and one more walk.
constexpr size_t kWastedSockets = 1024;
// One ignored range: S_GE + its port, S_LE + its port, the JMP that refuses.
constexpr size_t kRangeBytes = 5 * kOp;

size_t CondBytes(const PeerQuery& q) { return kOp + sizeof(inet_diag_hostcond) + (q.addr.family == 4 ? 4 : 16); }

void PutOp(uint8_t* at, uint8_t code, size_t yes, size_t no) {
  inet_diag_bc_op op{};
  op.code = code;
  op.yes = static_cast<unsigned char>(yes);
  op.no = static_cast<unsigned short>(no);
  std::memcpy(at, &op, sizeof(op));
}

// Whether the first `bits` bits of a and b agree (the kernel's bitstring_match).
bool PrefixEqual(const uint8_t* a, const uint8_t* b, unsigned bits) {
  const unsigned full = bits / 8;
  if (std::memcmp(a, b, full) != 0) return false;
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xffu << (8 - rest));
  return ((a[full] ^ b[full]) & mask) == 0;
}

const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

size_t PeerCondSize(const PeerQuery& q) { return CondBytes(q) + kOp; }

size_t PortRangesSize(const std::vector<PortRange>& ignore) { return ignore.size() * kRangeBytes; }

// Layout, for conditions c1..cn and ranges r1..rm:
//   c1: D_COND yes→J1   no→c2        (the last: yes→r1 or the end, no→refuse)
//   J1: JMP           no→r1 or the end (accept, unless a range says otherwise)
//   c2 ...
//   r1: S_GE lo yes→·  no→r2 ; S_LE hi yes→J  no→r2 ; J: JMP no→refuse
// Every `yes` is a step to the next op (at most 28 bytes: the u8 holds it); the long
// jumps are all `no` (a u16), which is why a match leaves through a JMP. The ranges
// come last so that a socket matching no address, nearly all of them, is refused
// after the address conditions alone.
std::vector<uint8_t> BuildPeersBytecode(const std::vector<PeerQuery>& queries, const std::vector<PortRange>& ignore) {
  if (queries.empty()) return {};
  size_t total = PortRangesSize(ignore);
  for (const PeerQuery& q : queries) total += PeerCondSize(q);
  total -= kOp;
  if (total > kMaxBytecode) return {};
  std::vector<uint8_t> bc(total, 0);
  const size_t ports_at = total - PortRangesSize(ignore);
  size_t at = 0;
  for (size_t i = 0; i < queries.size(); i++) {
    const PeerQuery& q = queries[i];
    const size_t cs = CondBytes(q);
    const bool last = i + 1 == queries.size();
    PutOp(bc.data() + at, INET_DIAG_BC_D_COND, cs, last ? total - at + 4 : cs + kOp);
    inet_diag_hostcond cond{};
    cond.family = q.addr.family == 4 ? AF_INET : AF_INET6;
    cond.prefix_len = q.prefix_len;
    cond.port = -1;
    std::memcpy(bc.data() + at + kOp, &cond, sizeof(cond));
    std::memcpy(bc.data() + at + kOp + sizeof(cond), q.addr.bytes, q.addr.family == 4 ? 4 : 16);
    at += cs;
    if (!last) {
      PutOp(bc.data() + at, INET_DIAG_BC_JMP, kOp, ports_at - at);
      at += kOp;
    }
  }
  for (const PortRange& r : ignore) {
    PutOp(bc.data() + at, INET_DIAG_BC_S_GE, 2 * kOp, kRangeBytes);
    PutOp(bc.data() + at + kOp, 0, 0, r.lo);
    PutOp(bc.data() + at + 2 * kOp, INET_DIAG_BC_S_LE, 2 * kOp, 3 * kOp);
    PutOp(bc.data() + at + 3 * kOp, 0, 0, r.hi);
    PutOp(bc.data() + at + 4 * kOp, INET_DIAG_BC_JMP, kOp, total - (at + 4 * kOp) + 4);
    at += kRangeBytes;
  }
  return bc;
}

std::vector<size_t> SplitPeerPrograms(const std::vector<PeerQuery>& queries, const std::vector<PortRange>& ignore) {
  std::vector<size_t> ends;
  // A program holds its conditions, one JMP fewer, and the ranges.
  const size_t budget = kMaxBytecode + kOp - PortRangesSize(ignore);
  size_t used = 0;
  for (size_t i = 0; i < queries.size(); i++) {
    const size_t need = PeerCondSize(queries[i]);
    if (used > 0 && used + need > budget) {
      ends.push_back(i);
      used = 0;
    }
    used += need;
  }
  if (!queries.empty()) ends.push_back(queries.size());
  return ends;
}

std::vector<PortRange> ProgramRanges(const std::vector<uint16_t>& ignore_local) {
  std::vector<PortRange> ranges = PortRanges(ignore_local);
  if (PortRangesSize(ranges) > kMaxPortBytecode) ranges.clear();
  return ranges;
}

std::vector<std::vector<uint8_t>> PeerPrograms(const std::vector<PeerQuery>& queries,
                                               const std::vector<uint16_t>& ignore_local) {
  const std::vector<PortRange> ranges = ProgramRanges(ignore_local);
  std::vector<std::vector<uint8_t>> out;
  size_t begin = 0;
  for (const size_t end : SplitPeerPrograms(queries, ranges)) {
    const std::vector<PeerQuery> part(queries.begin() + static_cast<std::ptrdiff_t>(begin),
                                      queries.begin() + static_cast<std::ptrdiff_t>(end));
    out.push_back(BuildPeersBytecode(part, ranges));
    begin = end;
  }
  return out;
}

bool PeerMatches(const PeerQuery& q, uint8_t family, const uint8_t* dst) {
  if (q.addr.family == 4) {
    if (family == AF_INET) return PrefixEqual(dst, q.addr.bytes, q.prefix_len);
    return family == AF_INET6 && std::memcmp(dst, kMapped, 12) == 0 && PrefixEqual(dst + 12, q.addr.bytes, q.prefix_len);
  }
  return q.addr.family == 6 && family == AF_INET6 && PrefixEqual(dst, q.addr.bytes, q.prefix_len);
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

// Whether a reply counts: its local port is not one of `ignore` (network order in the
// id). The program filters these already unless their ranges were too many for it.
bool Counts(const inet_diag_msg& msg, const std::vector<uint16_t>& ignore) {
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

bool SockDiag::DumpTcp(uint8_t af, const std::vector<uint8_t>& bytecode, const std::vector<uint16_t>& ignore_local,
                       const std::function<bool(uint8_t, const uint8_t*)>& on_socket, bool* stopped, SysError* err) {
  walks_++;
  const bool compat = af == 0;
  const size_t fixed = compat ? sizeof(inet_diag_req) : sizeof(inet_diag_req_v2);
  const size_t attr_len = NLA_HDRLEN + bytecode.size();
  std::vector<uint8_t> req(NLMSG_LENGTH(fixed) + NLA_ALIGN(attr_len), 0);
  auto* h = reinterpret_cast<nlmsghdr*>(req.data());
  h->nlmsg_len = static_cast<uint32_t>(req.size());
  const uint16_t type = compat ? TCPDIAG_GETSOCK : SOCK_DIAG_BY_FAMILY;
  h->nlmsg_type = type;
  if (compat) {
    inet_diag_req r{};
    r.idiag_family = AF_INET;  // ignored by the dump, which takes both
    r.idiag_states = kTcpPeerStates;
    std::memcpy(req.data() + NLMSG_HDRLEN, &r, sizeof(r));
  } else {
    inet_diag_req_v2 r{};
    r.sdiag_family = af;
    r.sdiag_protocol = IPPROTO_TCP;
    r.idiag_states = kTcpPeerStates;
    std::memcpy(req.data() + NLMSG_HDRLEN, &r, sizeof(r));
  }
  nlattr a{};
  a.nla_len = static_cast<uint16_t>(attr_len);
  a.nla_type = INET_DIAG_REQ_BYTECODE;
  uint8_t* at = req.data() + NLMSG_LENGTH(fixed);
  std::memcpy(at, &a, sizeof(a));
  std::memcpy(at + NLA_HDRLEN, bytecode.data(), bytecode.size());
  const bool ok = diag_.Request(
      req.data(), req.size(), true,
      [&](const nlmsghdr* m) {
        if (m->nlmsg_type != type || m->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return;
        const inet_diag_msg msg = Load<inet_diag_msg>(reinterpret_cast<const uint8_t*>(m) + NLMSG_HDRLEN);
        sockets_++;
        if (!Counts(msg, ignore_local)) return;
        uint8_t dst[16];
        std::memcpy(dst, msg.id.idiag_dst, sizeof(dst));
        // The answer is known: a peer with 100,000 connections need not send them all.
        if (on_socket(msg.idiag_family, dst)) diag_.StopDump();
      },
      compat ? "TCPDIAG_GETSOCK" : "SOCK_DIAG_BY_FAMILY", err);
  *stopped = ok && diag_.abandoned();
  if (!ok || diag_.abandoned()) {
    SysError reopen_err;
    if (!Reopen(&reopen_err) && ok) {
      *err = reopen_err;
      return false;
    }
  }
  return ok;
}

bool SockDiag::TcpPeers(uint8_t af, const std::vector<PeerQuery>& queries, const std::vector<bool>& asked,
                        const std::vector<PortRange>& ranges, const std::vector<uint16_t>& ignore_local,
                        std::vector<int>* bits, SysError* err) {
  // Settled: not asked here, a TCP peer already, or missed by a walk that completed.
  std::vector<bool> settled(queries.size());
  for (size_t i = 0; i < queries.size(); i++) settled[i] = !asked[i] || ((*bits)[i] & kPeerTcp) != 0;
  for (;;) {
    std::vector<size_t> open;
    std::vector<PeerQuery> sub;
    for (size_t i = 0; i < queries.size(); i++) {
      if (settled[i]) continue;
      open.push_back(i);
      sub.push_back(queries[i]);
    }
    if (open.empty()) return true;
    bool restart = false;
    size_t begin = 0;
    for (const size_t end : SplitPeerPrograms(sub, ranges)) {
      const std::vector<PeerQuery> part(sub.begin() + static_cast<std::ptrdiff_t>(begin),
                                        sub.begin() + static_cast<std::ptrdiff_t>(end));
      bool stopped = false;
      size_t unanswered = end - begin;
      size_t wasted = 0;
      bool progress = false;
      const bool ok = DumpTcp(
          af, BuildPeersBytecode(part, ranges), ignore_local,
          [&](uint8_t family, const uint8_t* dst) {
            bool answered = false;
            for (size_t k = begin; k < end; k++) {
              const size_t i = open[k];
              if (settled[i] || !PeerMatches(queries[i], family, dst)) continue;
              (*bits)[i] |= kPeerTcp;
              settled[i] = true;
              unanswered--;
              answered = true;
            }
            // Leave once nothing is left to learn, or once the sockets of answered
            // peers have cost more than a fresh walk for the rest is likely to. Only
            // after an answer: a walk that is asked again has fewer targets, so the
            // loop ends even if the kernel returned sockets no target matches here.
            if (answered) progress = true;
            else wasted++;
            return unanswered == 0 || (progress && wasted > kWastedSockets);
          },
          &stopped, err);
      if (!ok) return false;
      if (stopped) {
        // Left at a match: the walk did not see everything. Ask again without the answered.
        restart = true;
        break;
      }
      for (size_t k = begin; k < end; k++) settled[open[k]] = true;
      begin = end;
    }
    if (!restart) return true;
  }
}

int SockDiag::Peer(const IpAddr& addr, const std::vector<uint16_t>& ignore_local, SysError* err) {
  std::vector<int> bits;
  PeerQuery q;
  q.addr = addr;
  q.prefix_len = static_cast<uint8_t>(addr.family == 4 ? 32 : 128);
  if (!Peers({q}, ignore_local, &bits, err)) return -1;
  return bits[0];
}

bool SockDiag::Peers(const std::vector<PeerQuery>& queries, const std::vector<uint16_t>& ignore_local,
                     std::vector<int>* bits, SysError* err) {
  bits->assign(queries.size(), 0);
  bool any4 = false;
  bool any6 = false;
  for (const PeerQuery& q : queries) {
    if ((q.addr.family != 4 && q.addr.family != 6) || q.prefix_len > (q.addr.family == 4 ? 32 : 128)) {
      *err = SysError{q.addr.family == 4 || q.addr.family == 6 ? EINVAL : EAFNOSUPPORT, "SOCK_DIAG_BY_FAMILY", ""};
      return false;
    }
    (q.addr.family == 4 ? any4 : any6) = true;
  }
  if (queries.empty()) return true;
  const std::vector<PortRange> ranges = ProgramRanges(ignore_local);
  const std::vector<bool> all(queries.size(), true);
  bool done = false;
  if (tcp_compat_) {
    SysError compat_err;
    std::vector<int> trial = *bits;
    done = TcpPeers(0, queries, all, ranges, ignore_local, &trial, &compat_err);
    if (done) {
      *bits = std::move(trial);
    } else {
      tcp_compat_ = false;
    }
  }
  if (!done) {
    std::vector<bool> v4(queries.size());
    for (size_t i = 0; i < queries.size(); i++) v4[i] = queries[i].addr.family == 4;
    if (any4 && !TcpPeers(AF_INET, queries, v4, ranges, ignore_local, bits, err)) return false;
    // IPv4 peers of dual-stack sockets are IPv4-mapped in the AF_INET6 table.
    SysError e6;
    // A host without IPv6 has no AF_INET6 table: nothing to find there.
    if (!TcpPeers(AF_INET6, queries, all, ranges, ignore_local, bits, &e6) && any6) {
      *err = e6;
      return false;
    }
  }
  if (sctp_available_) {
    SysError es;
    if (SctpPeers(queries, bits, &es) < 0) {
      sctp_available_ = false;
      sctp_error_ = es;
    }
  }
  return true;
}

int SockDiag::SctpPeers(const std::vector<PeerQuery>& queries, std::vector<int>* bits, SysError* err) {
  // Associations only: LISTEN would dump the endpoints, which have no peer.
  const uint32_t states = ~kTcpListen;
  const auto mark = [&](uint16_t af, const uint8_t* addr) {
    if (af != AF_INET && af != AF_INET6) return;
    for (size_t i = 0; i < queries.size(); i++) {
      if (PeerMatches(queries[i], static_cast<uint8_t>(af), addr)) (*bits)[i] |= kPeerSctp;
    }
  };
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
          uint8_t dst[16];
          std::memcpy(dst, msg.id.idiag_dst, sizeof(dst));
          mark(msg.idiag_family, dst);
          const size_t fixed = NLMSG_ALIGN(sizeof(inet_diag_msg));
          const size_t body_len = m->nlmsg_len - NLMSG_HDRLEN;
          const uint8_t* p = body + fixed;
          size_t len = body_len > fixed ? body_len - fixed : 0;
          while (len >= NLA_HDRLEN) {
            const nlattr a = Load<nlattr>(p);
            if (a.nla_len < NLA_HDRLEN || a.nla_len > len) break;
            if ((a.nla_type & NLA_TYPE_MASK) == INET_DIAG_PEERS) {
              // 128-byte sockaddr slots: sin_addr at 4, sin6_addr at 8.
              for (size_t off = NLA_HDRLEN; off + kSockaddrStorage <= a.nla_len; off += kSockaddrStorage) {
                const uint16_t slot_af = Load<uint16_t>(p + off);
                mark(slot_af, p + off + (slot_af == AF_INET ? 4 : 8));
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
  return 0;
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
