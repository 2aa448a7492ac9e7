// NftLib: nftables transactions without a process — libnftables, loaded at the first
// use (so the addon still loads, and the sensor still runs, on a host without it),
// runs a script the way `nft -f -` does: the whole script is one batch, committed
// atomically by the kernel or not at all, with nft's own error text. The script is
// handed over as a file (a memfd), not a buffer: nft locates errors in a buffer on its
// first line whatever line failed, and names a file's line and column as the command
// does; the memfd's name in the text is put back to the command's /dev/stdin.
// One NftSession per namespace owns one nft context; Run() may be called from any
// thread (the glue calls it from libuv's pool) and takes one process-wide lock, so a
// context is used by one thread at a time and no two contexts run at once: libnftables
// keeps some state in globals, and the kernel serialises nftables transactions anyway. Every call enters the session's namespace
// on the calling thread for its whole duration: the context's netlink socket is
// opened (and, after some errors, reopened by libnftables) in it, never in the
// namespace the pool thread happens to be in.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "sys_error.h"

struct nft_ctx;

namespace portanoia {

// The output flags of the nft command's -j and -t (libnftables.h NFT_CTX_OUTPUT_JSON and
// NFT_CTX_OUTPUT_TERSE; the header is not needed to build, the library is loaded at run time).
constexpr unsigned kNftOutputJson = 1u << 4;
constexpr unsigned kNftOutputTerse = 1u << 11;

struct NftResult {
  int code = 0;  // 0: committed; 1: nft refused or the kernel failed the batch
  std::string out;
  std::string err;
};

class NftSession {
 public:
  // `netns`: a namespace path (/run/netns/NAME), empty for the caller's own.
  explicit NftSession(std::string netns);
  ~NftSession();
  NftSession(const NftSession&) = delete;
  NftSession& operator=(const NftSession&) = delete;

  // True when libnftables can be loaded; `why` says what failed otherwise.
  static bool Available(std::string* why);

  // Runs `script` as one transaction, its output (a list's) written as `output_flags`
  // ask (kNftOutput*, as nft -j / -t; 0 for plain text). False (with `err`) when it could
  // not be run at all (no library, no namespace); then nothing was sent to the kernel.
  bool Run(const std::string& script, unsigned output_flags, NftResult* result, SysError* err);

  // Later Run() calls fail; frees the context now, or as soon as the transaction in
  // progress ends. Never blocks. Idempotent.
  void Close();

 private:
  // With the run gate held.
  void FreeContext();

  std::string netns_;
  nft_ctx* ctx_ = nullptr;
  std::atomic<bool> closed_{false};
};

}  // namespace portanoia
