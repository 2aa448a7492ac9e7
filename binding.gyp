# One native target: the AF_PACKET sniffer and the host-facts reader (rtnetlink,
# sock_diag). Sources are listed explicitly so a stray
# file never changes what ships. node-addon-api is used with C++ exceptions
# (its `node_addon_api_except` target sets the define and the flags); NAPI_VERSION is
# pinned so one prebuild serves every Node >= 20. node-addon-api's headers are
# included as system headers so our warning flags apply to our code only.
{
  "targets": [
    {
      "target_name": "portanoia",
      "sources": [
        "native/addon.cc",
        "native/capture_wrap.cc",
        "native/capture.cc",
        "native/tpacket_ring.cc",
        "native/packet_parse.cc",
        "native/sender.cc",
        "native/netns.cc",
        "native/netlink.cc",
        "native/sock_diag.cc",
        "native/host_wrap.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": [
        "NAPI_VERSION=8"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-isystem <!(node -p \"require('path').dirname(require.resolve('node-addon-api/package.json'))\")",
        "-Wall",
        "-Wextra",
        "-Wshadow",
        "-Wconversion",
        "-O2",
        "-fvisibility=hidden"
      ],
      "cflags_cc!": [
        "-std=gnu++17",
        "-fno-exceptions"
      ],
      "ldflags": [
        "-Wl,--as-needed"
      ]
    }
  ]
}
