// NftLib: see nft_lib.h. The handful of libnftables calls used here are declared by
// hand (its header is not installed without the -dev package); they are the library's
// stable public API since nftables 0.9. The library is opened once (a function-local
// static); one that is missing stays missing for the life of the process. It is opened through
// libuv's uv_dlopen, which Node exports, not dlopen(3) itself: glibc 2.34 moved dlopen
// into libc under a new symbol version, and an addon built on a newer glibc that
// called it directly would not load on the prebuild's 2.28 baseline.
#include "nft_lib.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <mutex>
#include <cstdint>
#include <string>

#include "netns.h"

namespace portanoia {

namespace {

struct Api {
  nft_ctx* (*ctx_new)(uint32_t flags) = nullptr;
  void (*ctx_free)(nft_ctx* ctx) = nullptr;
  int (*buffer_output)(nft_ctx* ctx) = nullptr;
  int (*buffer_error)(nft_ctx* ctx) = nullptr;
  const char* (*get_output)(nft_ctx* ctx) = nullptr;
  const char* (*get_error)(nft_ctx* ctx) = nullptr;
  int (*run_file)(nft_ctx* ctx, const char* filename) = nullptr;
  void (*set_output_flags)(nft_ctx* ctx, unsigned flags) = nullptr;
  bool ok = false;
  std::string why;
};

template <typename F>
bool Bind(uv_lib_t* lib, const char* name, F* fn, std::string* why) {
  void* sym = nullptr;
  if (uv_dlsym(lib, name, &sym) != 0 || sym == nullptr) {
    *why = std::string("libnftables: no symbol ") + name;
    return false;
  }
  *fn = reinterpret_cast<F>(sym);
  return true;
}

// A function-local static, not std::call_once: its guard is libstdc++'s own, while
// call_once needs glibc 2.34's pthread_once, above the prebuild's baseline.
Api Open() {
  Api api;
  // The soname, not the -dev symlink: the runtime package alone must be enough. Never
  // closed: contexts of other sessions may still use it.
  static uv_lib_t lib;
  if (uv_dlopen("libnftables.so.1", &lib) != 0) {
    const char* e = uv_dlerror(&lib);
    api.why = e != nullptr ? e : "libnftables.so.1: cannot be loaded";
    return api;
  }
  api.ok = Bind(&lib, "nft_ctx_new", &api.ctx_new, &api.why) && Bind(&lib, "nft_ctx_free", &api.ctx_free, &api.why) &&
           Bind(&lib, "nft_ctx_buffer_output", &api.buffer_output, &api.why) &&
           Bind(&lib, "nft_ctx_buffer_error", &api.buffer_error, &api.why) &&
           Bind(&lib, "nft_ctx_get_output_buffer", &api.get_output, &api.why) &&
           Bind(&lib, "nft_ctx_get_error_buffer", &api.get_error, &api.why) &&
           Bind(&lib, "nft_run_cmd_from_filename", &api.run_file, &api.why) &&
           Bind(&lib, "nft_ctx_output_set_flags", &api.set_output_flags, &api.why);
  return api;
}

// The script in an anonymous file, or -1 with errno set.
int ScriptFile(const std::string& script) {
  const int fd = memfd_create("portanoia-nft", MFD_CLOEXEC);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < script.size()) {
    const ssize_t n = write(fd, script.data() + done, script.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : EIO;
      close(fd);
      errno = e;
      return -1;
    }
    done += static_cast<size_t>(n);
  }
  return fd;
}

// `text` with every "PATH:" (nft's prefix of a located error) as "/dev/stdin:".
std::string AsStdin(std::string text, const std::string& path) {
  const std::string from = path + ":";
  const std::string to = "/dev/stdin:";
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
  return text;
}

// Every session's runs and frees, one at a time (nft_lib.h). A gate on pthreads directly,
// because Close() must be able to try without waiting, and both std::mutex::try_lock
// (pthread_mutex_trylock) and std::condition_variable::wait bind symbols above the
// prebuild's baseline (glibc 2.34, GLIBCXX 3.4.30); pthread_mutex_lock and the
// pthread_cond calls are old. The mutex is held only to flip `held_`, never for a run.
class RunGate {
 public:
  void Enter() {
    pthread_mutex_lock(&mu_);
    while (held_) pthread_cond_wait(&free_, &mu_);
    held_ = true;
    pthread_mutex_unlock(&mu_);
  }
  bool TryEnter() {
    pthread_mutex_lock(&mu_);
    const bool got = !held_;
    held_ = true;
    pthread_mutex_unlock(&mu_);
    return got;
  }
  void Leave() {
    pthread_mutex_lock(&mu_);
    held_ = false;
    pthread_mutex_unlock(&mu_);
    pthread_cond_signal(&free_);
  }

 private:
  pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t free_ = PTHREAD_COND_INITIALIZER;
  bool held_ = false;
};

RunGate& Gate() {
  static RunGate gate;
  return gate;
}

// Holds the gate for a scope; `entered` false when a try found it taken.
class GateScope {
 public:
  GateScope() { Gate().Enter(); }
  explicit GateScope(std::try_to_lock_t) : entered_(Gate().TryEnter()) {}
  ~GateScope() {
    if (entered_) Gate().Leave();
  }
  GateScope(const GateScope&) = delete;
  GateScope& operator=(const GateScope&) = delete;
  bool entered() const { return entered_; }

 private:
  bool entered_ = true;
};

const Api& Load() {
  static const Api api = Open();
  return api;
}

}  // namespace

NftSession::NftSession(std::string netns) : netns_(std::move(netns)) {}

NftSession::~NftSession() { Close(); }

bool NftSession::Available(std::string* why) {
  const Api& api = Load();
  if (!api.ok && why != nullptr) *why = api.why;
  return api.ok;
}

bool NftSession::Run(const std::string& script, unsigned output_flags, NftResult* result, SysError* err) {
  const Api& api = Load();
  if (!api.ok) {
    *err = SysError{ENOENT, "uv_dlopen", api.why};
    return false;
  }
  GateScope gate;
  if (closed_.load()) {
    FreeContext();
    *err = SysError{EBADF, "nft_run_cmd_from_filename", "the nft session is closed"};
    return false;
  }
  NetnsScope scope(netns_);
  if (!scope.ok()) {
    *err = SysError{scope.err_no(), scope.syscall(), netns_};
    return false;
  }
  if (ctx_ == nullptr) {
    ctx_ = api.ctx_new(0);
    if (ctx_ == nullptr) {
      *err = SysError{ENOMEM, "nft_ctx_new", ""};
      return false;
    }
    // Output and errors to memory, never to the process's stdout/stderr.
    if (api.buffer_output(ctx_) != 0 || api.buffer_error(ctx_) != 0) {
      api.ctx_free(ctx_);
      ctx_ = nullptr;
      *err = SysError{ENOMEM, "nft_ctx_buffer_output", ""};
      return false;
    }
  }
  // Every run says its own: a list's JSON must not carry over to the next transaction.
  api.set_output_flags(ctx_, output_flags);
  const int fd = ScriptFile(script);
  if (fd < 0) {
    *err = SysError{errno, "memfd_create", ""};
    return false;
  }
  // Opening the fd's /proc link gives nft a description of its own, read from the start.
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const int rc = api.run_file(ctx_, path.c_str());
  close(fd);
  // Each getter hands back what accumulated and rewinds its buffer for the next run.
  const char* out = api.get_output(ctx_);
  const char* e = api.get_error(ctx_);
  result->code = rc == 0 ? 0 : 1;
  result->out = out != nullptr ? out : "";
  result->err = AsStdin(e != nullptr ? e : "", path);
  // Closed while this ran: the close left the context to this run.
  if (closed_.load()) FreeContext();
  return true;
}

void NftSession::Close() {
  closed_.store(true);
  // Never wait here (the JS thread, or a destructor on it): a transaction in progress,
  // this session's or another's, holds the lock. This session's frees the context when
  // it ends; otherwise it is freed at the next Close() or Run() that finds the lock free,
  // or left to the process's exit.
  GateScope gate(std::try_to_lock);
  if (gate.entered()) FreeContext();
}

void NftSession::FreeContext() {
  if (ctx_ == nullptr) return;
  Load().ctx_free(ctx_);
  ctx_ = nullptr;
}

}  // namespace portanoia
