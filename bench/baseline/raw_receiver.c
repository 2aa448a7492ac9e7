/*
 * The end-to-end benchmark's baseline receiver: the design of the original Go tool
 * this project replaces, an AF_INET SOCK_RAW IPPROTO_TCP socket that receives every
 * TCP packet for this host, one recvmsg(2) per packet (what Go's IPConn.ReadFrom does,
 * with poll standing in for Go's netpoller), and filters the destination port in user
 * space. Compiled by bench/e2e.ts with `cc -O2` into a temporary directory and run
 * pinned to a core in the sensor namespace; single-threaded.
 *
 * Control, line-oriented like bench/e2e-receiver.ts: it prints {"ready":true,"pid":N}
 * once the socket is open; on `stats` it prints {"hits","other","socketDrops"}; on
 * `quit` or end of stdin it exits. Drops are the socket's sk_drops (receive buffer
 * full): the SO_RXQ_OVFL control message carries it with every packet, and the
 * `drops` column of /proc/net/raw has the final value after the last packet.
 *
 * Usage: raw_receiver PORT [RCVBUF_BYTES]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "receiver_common.h"

#ifndef SO_RXQ_OVFL
#define SO_RXQ_OVFL 40
#endif

static unsigned long long proc_raw_drops(void) {
  /* Sums the last column (drops) of every raw socket in this namespace: ours is the
   * only one the benchmark's namespace has. */
  FILE *f = fopen("/proc/net/raw", "r");
  if (f == NULL) return 0;
  char line[512];
  unsigned long long total = 0;
  if (fgets(line, sizeof line, f) == NULL) { fclose(f); return 0; } /* header */
  while (fgets(line, sizeof line, f) != NULL) {
    char *last = strrchr(line, ' ');
    if (last != NULL) total += strtoull(last + 1, NULL, 10);
  }
  fclose(f);
  return total;
}

/* The counters a command reports, and whether it asked to quit. */
struct control {
  unsigned long long hits, other;
  uint32_t drops_seen;
  int quit;
};

static void on_command(const char *line, void *ctx) {
  struct control *c = ctx;
  if (strcmp(line, "stats") == 0) {
    unsigned long long proc = proc_raw_drops();
    unsigned long long drops = proc > c->drops_seen ? proc : c->drops_seen;
    printf("{\"hits\":%llu,\"other\":%llu,\"socketDrops\":%llu}\n", c->hits, c->other, drops);
    fflush(stdout);
  } else if (strcmp(line, "quit") == 0) {
    c->quit = 1;
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: raw_receiver PORT [RCVBUF_BYTES]\n");
    return 2;
  }
  const unsigned port = (unsigned)strtoul(argv[1], NULL, 10);
  int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    fprintf(stderr, "socket(AF_INET, SOCK_RAW, IPPROTO_TCP): %s\n", strerror(errno));
    return 1;
  }
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) != 0) {
    fprintf(stderr, "SO_RXQ_OVFL: %s (drops read from /proc/net/raw only)\n", strerror(errno));
  }
  if (argc > 2) {
    int rcvbuf = atoi(argv[2]);
    /* SO_RCVBUFFORCE: the benchmark runs as root and may exceed rmem_max. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
      fprintf(stderr, "SO_RCVBUFFORCE: %s\n", strerror(errno));
    }
  }
  printf("{\"ready\":true,\"pid\":%d}\n", (int)getpid());
  fflush(stdout);

  unsigned long long hits = 0, other = 0;
  uint32_t drops_seen = 0;
  unsigned char pkt[2048];
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(uint32_t))];
  } control;
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
        struct iovec iov = {pkt, sizeof pkt};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
        if (n < 0) break; /* EAGAIN: back to poll */
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) memcpy(&drops_seen, CMSG_DATA(c), sizeof drops_seen);
        }
        /* A raw IPv4 socket hands over the IP header: find TCP's destination port. */
        if (n < 20) { other++; continue; }
        const size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
        if (ihl < 20 || (size_t)n < ihl + 4) { other++; continue; }
        const unsigned dport = ((unsigned)pkt[ihl + 2] << 8) | pkt[ihl + 3];
        if (dport == port) hits++;
        else other++;
      }
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      struct control c = {hits, other, drops_seen, 0};
      if (!read_commands(&input, on_command, &c) || c.quit) return 0;
    }
  }
}
