// Live socket queries through sock_diag (inet_diag), free of napi, run synchronously
// on the JS thread right before a block: "is this address the far end of a TCP
// connection or an SCTP association of this host, now?" and "is there a connected
// socket for this exact reply tuple?". The peer query carries an inet_diag bytecode
// filter on the remote address, so the kernel returns only the matching sockets; a
// remote IPv4 address also matches the IPv4-mapped peers of AF_INET6 sockets (the
// kernel's D_COND compares those). The tuple query is an exact lookup. SCTP
// dumps take no bytecode: associations are few and their peer lists are compared
// here. A TCP dump walks every bucket of the kernel's established hash whatever it
// holds (262,144 buckets on a 24 GiB host: about 1 ms), so both address families are
// asked in one walk where the kernel allows it. sctp_diag may be absent (a module that is not loaded, or not built): that is
// remembered and reported, never an error. The sockets are created in the target
// namespace at Open(); one thread (the JS thread) uses them.
#pragma once

#include <cstdint>
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

// The inet_diag bytecode for "the remote address is `remote`, any port". Pure.
std::vector<uint8_t> BuildPeerBytecode(const IpAddr& remote);

class SockDiag {
 public:
  static std::unique_ptr<SockDiag> Open(const std::string& netns, SysError* err);

  // Bits of PeerBits for the kinds of live association `addr` has with this host;
  // -1 with *err when the TCP query itself failed. TCP sockets whose local port is
  // in `ignore_local` do not count: the tripwire listeners' own connections (a forged
  // SYN to one leaves a SYN_RECV request socket for the forged address).
  int Peer(const IpAddr& addr, const std::vector<uint16_t>& ignore_local, SysError* err);
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
  // Counts sockets of `af`/`proto` in `states` that match `bytecode`.
  int CountMatches(uint8_t af, uint8_t proto, uint32_t states, const std::vector<uint8_t>& bytecode,
                   const std::vector<uint16_t>& ignore_local, SysError* err);
  // TCP sockets of both families in one walk of the table, through the original
  // TCPDIAG_GETSOCK request (whose dump has no family filter); -1 when the kernel
  // refuses it, and then the two-request form is used from then on.
  int CountTcpBothFamilies(uint32_t states, const std::vector<uint8_t>& bytecode,
                           const std::vector<uint16_t>& ignore_local, SysError* err);
  int CountTcp(uint8_t family, uint32_t states, const std::vector<uint8_t>& bytecode,
               const std::vector<uint16_t>& ignore_local, SysError* err);
  int SctpPeer(const IpAddr& addr, SysError* err);

  // Reopens diag_ after a dump left early (see NetlinkSocket::StopDump).
  bool Reopen(SysError* err);
  // A count query's result, reopening the socket when the dump did not end cleanly.
  int Settle(bool ok, int count, SysError* err);

  std::string netns_;
  NetlinkSocket diag_;
  NetlinkSocket rtnl_;
  bool sctp_available_ = true;
  bool tcp_compat_ = true;
  SysError sctp_error_;
};

}  // namespace portanoia
