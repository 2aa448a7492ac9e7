// Errno → its symbolic name ("EPERM"), for the `code` of Node-style errors. A table
// of our own instead of glibc's strerrorname_np: that call exists only in glibc
// ≥ 2.32, so it would raise the prebuild's glibc baseline and does not exist on
// musl at all. Pure, napi-free, callable from any thread.
#pragma once

namespace portanoia {

// The canonical name of a Linux errno (EAGAIN, not EWOULDBLOCK; EOPNOTSUPP, not
// ENOTSUP; as strerrorname_np names them), or nullptr when the number is not one.
const char* ErrnoName(int err_no);

}  // namespace portanoia
