/*
 * What the benchmark's C receivers share (raw_receiver.c, afpacket_receiver.c,
 * tpacket_receiver.c): decoding the cBPF program the harness passes as hex, and the
 * line-oriented control channel on stdin (one command per line, answered on stdout by
 * the receiver). Header-only, so each receiver still compiles from one file with
 * `cc -O2 receiver.c` (bench/e2e.ts). Single-threaded, like the receivers.
 */
#ifndef PORTANOIA_BENCH_RECEIVER_COMMON_H
#define PORTANOIA_BENCH_RECEIVER_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes the program: struct sock_filter in host byte order, as Buffer.toString('hex') gave it. */
static inline int parse_filter(const char *hex, struct sock_fprog *prog) {
  size_t len = strlen(hex);
  if (len == 0 || len % 16 != 0 || len / 16 > BPF_MAXINSNS) return -1;
  unsigned char *bytes = malloc(len / 2);
  if (bytes == NULL) return -1;
  for (size_t i = 0; i < len / 2; i++) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) { free(bytes); return -1; }
    bytes[i] = (unsigned char)(hi << 4 | lo);
  }
  prog->filter = (struct sock_filter *)bytes;
  prog->len = (unsigned short)(len / 16);
  return 0;
}

/*
 * An AF_PACKET SOCK_RAW socket with the harness's program attached, not yet bound: protocol
 * 0 until then, because a socket opened with ETH_P_ALL would queue every frame before the
 * filter exists, and those would count as hits. Exits the process (status 1, or 2 for a
 * bad program) with the reason on stderr when it cannot.
 */
static inline int filtered_packet_socket(const char *filter_hex) {
  struct sock_fprog prog;
  if (parse_filter(filter_hex, &prog) != 0) {
    fprintf(stderr, "FILTER_HEX must be 1..4096 struct sock_filter in hex\n");
    exit(2);
  }
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "socket(AF_PACKET, SOCK_RAW): %s\n", strerror(errno));
    exit(1);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) {
    fprintf(stderr, "SO_ATTACH_FILTER: %s\n", strerror(errno));
    exit(1);
  }
  free(prog.filter);
  return fd;
}

/* Binds `fd` to every protocol on interface `ifname`: capture starts here. Exits on failure. */
static inline void bind_packet_socket(int fd, const char *ifname) {
  const unsigned ifindex = if_nametoindex(ifname);
  if (ifindex == 0) {
    fprintf(stderr, "if_nametoindex(%s): %s\n", ifname, strerror(errno));
    exit(1);
  }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = (int)ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
    fprintf(stderr, "bind(%s): %s\n", ifname, strerror(errno));
    exit(1);
  }
}

struct line_reader {
  char buf[256];
  size_t len;
};

/*
 * Reads what stdin has (call it when poll says so) and calls `handle` once per complete
 * line, without the newline. Returns 0 at end of input (the harness closed the pipe: the
 * receiver should exit), 1 otherwise. An over-long line is dropped.
 */
static inline int read_commands(struct line_reader *r, void (*handle)(const char *line, void *ctx), void *ctx) {
  ssize_t n = read(0, r->buf + r->len, sizeof r->buf - r->len);
  if (n <= 0) return 0;
  r->len += (size_t)n;
  char *nl;
  while ((nl = memchr(r->buf, '\n', r->len)) != NULL) {
    *nl = '\0';
    handle(r->buf, ctx);
    size_t used = (size_t)(nl - r->buf) + 1;
    memmove(r->buf, nl + 1, r->len - used);
    r->len -= used;
  }
  if (r->len == sizeof r->buf) r->len = 0;
  return 1;
}

#endif
