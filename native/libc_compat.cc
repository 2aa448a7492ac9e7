// Keeps the addon within the prebuild's glibc baseline (2.28; docs/architecture.md,
// "Packaging"). libstdc++'s headers (GCC >= 11) read glibc 2.32's
// __libc_single_threaded to skip the atomics in std::shared_ptr reference counts.
// binding.gyp renames that variable, in every file of the addon, to the one defined
// here, which says "not single-threaded", as glibc itself would in a Node process
// (Node runs its own threads before any addon loads): the counts always use atomics.
// Nothing writes it. Where the header does not exist (musl, older glibc) libstdc++
// does not read it and this file is empty.
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>

// The rename makes this portanoia_libc_single_threaded, with the header's C linkage.
char __libc_single_threaded = 0;
#endif
