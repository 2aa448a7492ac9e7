# One native target: the AF_PACKET sniffer and the host-facts reader (rtnetlink,
# sock_diag). Sources are listed explicitly so a stray
# file never changes what ships. node-addon-api is used with C++ exceptions
# (its `node_addon_api_except` target sets the define and the flags); NAPI_VERSION is
# pinned so one prebuild serves every Node >= 20. NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS:
# an error raised while a worker's environment is torn down (an AsyncWorker completing,
# a callback after terminate()) cannot be thrown into JS; without it node-addon-api
# rethrows it as a C++ exception nobody catches, and the process aborts. node-addon-api's
# headers are included as system headers so our warning flags apply to our code only.
#
# The binary must load on glibc >= 2.28 with GCC 8's libstdc++ (RHEL 8: GLIBCXX_3.4.25,
# CXXABI_1.3.11), whatever newer toolchain builds it (test/native/pack.test.ts reads
# the symbol versions). libstdc++ stays dynamic: a static one drags in pthread_create
# and friends at glibc 2.34's symbol versions. GCC >= 11's allocator calls
# std::__throw_bad_array_new_length (GLIBCXX_3.4.29) for an impossible element count;
# the define routes that to std::__throw_bad_alloc (GLIBCXX_3.4), which throws the
# base class of the same exception, as GCC < 11 did. std::shared_ptr adds two more:
# its reference counts read glibc 2.32's __libc_single_threaded (renamed to the
# constant in native/libc_compat.cc), and make_shared's control block calls
# _Sp_make_shared_tag::_S_eq (GLIBCXX_3.4.26) unless RTTI is on, hence -frtti.
{
  "targets": [
    {
      "target_name": "portanoia",
      "sources": [
        "native/addon.cc",
        "native/capture_wrap.cc",
        "native/capture.cc",
        "native/express_lane.cc",
        "native/tpacket_ring.cc",
        "native/packet_parse.cc",
        "native/sender.cc",
        "native/netns.cc",
        "native/netlink.cc",
        "native/sock_diag.cc",
        "native/host_wrap.cc",
        "native/link_probe.cc",
        "native/link_wrap.cc",
        "native/nft_lib.cc",
        "native/nft_wrap.cc",
        "native/errno_name.cc",
        "native/libc_compat.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "__throw_bad_array_new_length=__throw_bad_alloc",
        "__libc_single_threaded=portanoia_libc_single_threaded"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-isystem <!(node -p \"require('path').dirname(require.resolve('node-addon-api/package.json'))\")",
        "-Wall",
        "-Wextra",
        "-Wshadow",
        "-Wconversion",
        "-O2",
        "-fvisibility=hidden",
        "-frtti"
      ],
      "cflags_cc!": [
        "-std=gnu++17",
        "-fno-exceptions",
        "-fno-rtti"
      ],
      "ldflags": [
        "-Wl,--as-needed"
      ]
    }
  ]
}
