/*
 * The benchmark's "AF_PACKET without a ring" receiver: what a sniffer looks like when
 * it has the kernel filter but not the mmap ring. An AF_PACKET SOCK_RAW socket bound
 * to one interface, with the same classic-BPF port filter portanoia attaches (the
 * harness compiles it with lib/bpf/filter.ts and passes the program's bytes as hex),
 * read with recvmmsg(2) in batches of 64 after poll, Ethernet/IPv4/TCP destination
 * port checked in user space. Compiled by bench/e2e.ts with `cc -O2` into a temporary
 * directory and run pinned to a core in the sensor namespace; single-threaded.
 *
 * Control, line-oriented like bench/e2e-receiver.ts: it prints {"ready":true,"pid":N}
 * once the socket is bound; on `stats` it prints {"hits","other","socketDrops"}; on
 * `quit` or end of stdin it exits. Drops come from PACKET_STATISTICS, which resets on
 * every read, so they are kept as a running total.
 *
 * Usage: afpacket_receiver IFNAME PORT FILTER_HEX [RCVBUF_BYTES]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "receiver_common.h"

#define BATCH 64
#define SNAP 2048

/* The counters a command reports, and whether it asked to quit. */
struct control {
  int fd;
  unsigned long long hits, other, *drops;
  int quit;
};

static void on_command(const char *line, void *ctx) {
  struct control *c = ctx;
  if (strcmp(line, "stats") == 0) {
    /* PACKET_STATISTICS resets on read: add to the running total. */
    struct tpacket_stats st;
    socklen_t sl = sizeof st;
    if (getsockopt(c->fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0) *c->drops += st.tp_drops;
    printf("{\"hits\":%llu,\"other\":%llu,\"socketDrops\":%llu}\n", c->hits, c->other, *c->drops);
    fflush(stdout);
  } else if (strcmp(line, "quit") == 0) {
    c->quit = 1;
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: afpacket_receiver IFNAME PORT FILTER_HEX [RCVBUF_BYTES]\n");
    return 2;
  }
  const unsigned port = (unsigned)strtoul(argv[2], NULL, 10);
  int fd = filtered_packet_socket(argv[3]);
  if (argc > 4) {
    int rcvbuf = atoi(argv[4]);
    /* SO_RCVBUFFORCE: the benchmark runs as root and may exceed rmem_max. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
      fprintf(stderr, "SO_RCVBUFFORCE: %s\n", strerror(errno));
    }
  }
  bind_packet_socket(fd, argv[1]);
  printf("{\"ready\":true,\"pid\":%d}\n", (int)getpid());
  fflush(stdout);

  static unsigned char bufs[BATCH][SNAP];
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = SNAP;
  }
  unsigned long long hits = 0, other = 0, drops = 0;
  struct line_reader input = {{0}, 0};
  struct pollfd fds[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};

  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("poll");
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      for (;;) {
        memset(msgs, 0, sizeof msgs);
        for (int i = 0; i < BATCH; i++) {
          msgs[i].msg_hdr.msg_iov = &iov[i];
          msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) break; /* EAGAIN: back to poll */
        for (int i = 0; i < n; i++) {
          const unsigned char *p = bufs[i];
          const size_t len = msgs[i].msg_len;
          /* Ethernet, IPv4 only (the benchmark's traffic); anything else is `other`. */
          if (len < 14 + 20 || p[12] != 0x08 || p[13] != 0x00) { other++; continue; }
          const size_t ihl = (size_t)(p[14] & 0x0f) * 4;
          if (p[14 + 9] != 6 || ihl < 20 || len < 14 + ihl + 4) { other++; continue; }
          const unsigned dport = ((unsigned)p[14 + ihl + 2] << 8) | p[14 + ihl + 3];
          if (dport == port) hits++;
          else other++;
        }
        if (n < BATCH) break;
      }
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      struct control c = {fd, hits, other, &drops, 0};
      if (!read_commands(&input, on_command, &c) || c.quit) return 0;
    }
  }
}
