// Live socket queries through sock_diag (inet_diag), free of napi: "which of these
// addresses (or networks) is the far end of a TCP connection or an SCTP association
// of this host, now?" and "is there a connected socket for this exact reply tuple?".
// The peer query carries one inet_diag bytecode program for a whole batch: an OR of
// one D_COND per address or prefix, then the local ports that never count (the
// tripwire listeners'), so the kernel returns only matching sockets and a batch costs
// one walk of the established hash, not one per address. A remote IPv4 address (or
// network) also matches the IPv4-mapped peers of AF_INET6 sockets (the kernel's
// D_COND compares those). The first matching socket answers its addresses: the dump
// is left there and, while others are unanswered, asked again without the answered
// ones, so a peer with 100,000 connections is never read in full. The tuple query is
// an exact lookup. SCTP dumps take no bytecode: associations are few and their peer
// lists are compared here. A TCP dump walks every bucket of the kernel's established
// hash whatever it holds (262,144 buckets on a 24 GiB host: about 1 ms) and every
// socket of the namespace in the asked states, so both address families are asked
// in one walk where the kernel allows it. sctp_diag may be absent (a module that is
// not loaded, or not built): that is remembered and reported, never an error. The
// sockets are created in the target namespace at Open(); one thread at a time uses
// an object (HostWatchWrap keeps two: one for the JS thread's synchronous queries,
// one for the batches its worker runs).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "netlink.h"
#include "sys_error.h"

namespace portanoia {

// TCP states that make the remote end a peer of this host: every state of a
// connection in progress or alive, from either side. Left out: LISTEN and CLOSE (no
// remote) and TIME_WAIT (the connection is over). SYN_SENT is in: the host itself
// chose to reach that address (its outbound connection's server); NEW_SYN_RECV is
// how SYN_RECV request sockets appear in the table.
constexpr uint32_t kTcpPeerStates = (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 8) |
                                    (1u << 9) | (1u << 11) | (1u << 12);
// For reply tuples TIME_WAIT counts too: a late ACK or RST of a closed connection.
// Not LISTEN: the exact lookup falls back to the listener of the port.
constexpr uint32_t kTcpReplyStates = kTcpPeerStates | (1u << 6);
// UDP: a connect()ed socket shows ESTABLISHED.
constexpr uint32_t kUdpConnectedStates = 1u << 1;

enum PeerBits : int { kPeerTcp = 1, kPeerSctp = 2 };

// One question of a peer batch: is any address of `addr`/`prefix_len` a peer? The
// full length (32, 128) asks about one address.
struct PeerQuery {
  IpAddr addr;
  uint8_t prefix_len = 0;
};

// Inclusive local port ranges whose TCP sockets never make a peer.
struct PortRange {
  uint16_t lo = 0;
  uint16_t hi = 0;
};

// Sorted, merged ranges covering exactly `ports`.
std::vector<PortRange> PortRanges(std::vector<uint16_t> ports);

// The longest bytecode one request carries: its attribute's nla_len is a u16 that
// counts its own 4-byte header, and ops are 4-byte aligned.
constexpr size_t kMaxBytecode = 65528;
// The port part of a program gives way to the filter in user space (sockets on those
// ports are returned and skipped) when it would take more than this.
constexpr size_t kMaxPortBytecode = kMaxBytecode / 4;

// Bytes `q` takes in a program (its D_COND, plus the JMP that follows all but the last).
size_t PeerCondSize(const PeerQuery& q);
size_t PortRangesSize(const std::vector<PortRange>& ignore);

// The inet_diag bytecode for "the remote address is in one of `queries` (any port)
// and the local port is in none of `ignore`". Pure. `queries` must be non-empty and
// the program at most kMaxBytecode bytes (see PeerPrograms); else an empty vector.
std::vector<uint8_t> BuildPeersBytecode(const std::vector<PeerQuery>& queries, const std::vector<PortRange>& ignore);

// Splits `queries` into consecutive runs whose programs fit kMaxBytecode: the
// exclusive end index of each run. Pure.
std::vector<size_t> SplitPeerPrograms(const std::vector<PeerQuery>& queries, const std::vector<PortRange>& ignore);

// The ranges a program carries for `ignore_local`: none when they would take more
// than kMaxPortBytecode (the filter in user space then does it alone).
std::vector<PortRange> ProgramRanges(const std::vector<uint16_t>& ignore_local);

// The programs the first walks of a batch send, in order (test entry). Pure.
std::vector<std::vector<uint8_t>> PeerPrograms(const std::vector<PeerQuery>& queries,
                                               const std::vector<uint16_t>& ignore_local);

// Whether the remote address of a socket (`family` AF_INET or AF_INET6, `dst` its
// idiag_dst words as the kernel sends them) is in `q`, by the kernel's D_COND rule.
bool PeerMatches(const PeerQuery& q, uint8_t family, const uint8_t* dst);

class SockDiag {
 public:
  static std::unique_ptr<SockDiag> Open(const std::string& netns, SysError* err);

  // Bits of PeerBits for the kinds of live association `addr` has with this host;
  // -1 with *err when the TCP query itself failed. TCP sockets whose local port is
  // in `ignore_local` do not count: the tripwire listeners' own connections (a forged
  // SYN to one leaves a SYN_RECV request socket for the forged address).
  int Peer(const IpAddr& addr, const std::vector<uint16_t>& ignore_local, SysError* err);
  // The same for a batch: (*bits)[i] answers queries[i] (an address or a network:
  // any peer inside it). One walk of the established hash for the whole batch, a
  // few more only when a program must be split or a match ends a walk early. False
  // with *err when a TCP query failed (then *bits says nothing).
  bool Peers(const std::vector<PeerQuery>& queries, const std::vector<uint16_t>& ignore_local, std::vector<int>* bits,
             SysError* err);
  // Walks (TCP dumps) made by Peers() since Open(), and the sockets they returned,
  // for tests and benchmarks.
  uint64_t walks() const { return walks_; }
  uint64_t sockets() const { return sockets_; }
  // 1 when a socket of `proto` (6 or 17) has exactly this tuple (TCP in
  // kTcpReplyStates, UDP connected); 0 when none; -1 with *err on failure. An exact
  // hash lookup in the kernel (the request without NLM_F_DUMP): microseconds.
  int Connected(uint8_t proto, const IpAddr& local, uint16_t local_port, const IpAddr& remote, uint16_t remote_port,
                SysError* err);
  // The route type for `addr` (see LookupRouteType), on this object's rtnetlink socket.
  int RouteType(const IpAddr& addr, SysError* err) { return LookupRouteType(&rtnl_, addr, err); }
  // False once an SCTP query found no sctp_diag; `sctp_error` says why.
  bool sctp_available() const { return sctp_available_; }
  const SysError& sctp_error() const { return sctp_error_; }

 private:
  SockDiag() = default;
  // One TCP dump in kTcpPeerStates with `bytecode`: `af` AF_INET or AF_INET6 through
  // SOCK_DIAG_BY_FAMILY, or 0 for both families in one walk through the original
  // TCPDIAG_GETSOCK request (whose dump has no family filter). Each socket not on an
  // ignored port goes to `on_socket` (family, idiag_dst), which returns true to
  // leave the dump once the messages already received are handed over.
  // *stopped says whether it did.
  bool DumpTcp(uint8_t af, const std::vector<uint8_t>& bytecode, const std::vector<uint16_t>& ignore_local,
               const std::function<bool(uint8_t, const uint8_t*)>& on_socket, bool* stopped, SysError* err);
  // Answers the TCP part of a batch with the requests of one kind (`af` as for
  // DumpTcp): for each query of `asked` still open, sets kPeerTcp in *bits on a match.
  bool TcpPeers(uint8_t af, const std::vector<PeerQuery>& queries, const std::vector<bool>& asked,
                const std::vector<PortRange>& ranges, const std::vector<uint16_t>& ignore_local, std::vector<int>* bits,
                SysError* err);
  // Sets kPeerSctp for every query with a matching association; -1 with *err when
  // sctp_diag cannot be asked.
  int SctpPeers(const std::vector<PeerQuery>& queries, std::vector<int>* bits, SysError* err);

  // Reopens diag_ after a dump left early (see NetlinkSocket::StopDump) or one that
  // failed half-way: either leaves the socket unusable.
  bool Reopen(SysError* err);

  std::string netns_;
  NetlinkSocket diag_;
  NetlinkSocket rtnl_;
  bool sctp_available_ = true;
  bool tcp_compat_ = true;
  uint64_t walks_ = 0;
  uint64_t sockets_ = 0;
  SysError sctp_error_;
};

}  // namespace portanoia
