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

#define BATCH 64
#define SNAP 2048

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes the program: struct sock_filter in host byte order, as Buffer.toString('hex') gave it. */
static int parse_filter(const char *hex, struct sock_filter **out, unsigned short *count) {
  size_t len = strlen(hex);
  if (len == 0 || len % 16 != 0 || len / 16 > BPF_MAXINSNS) return -1;
  unsigned char *bytes = malloc(len / 2);
  if (bytes == NULL) return -1;
  for (size_t i = 0; i < len / 2; i++) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) { free(bytes); return -1; }
    bytes[i] = (unsigned char)(hi << 4 | lo);
  }
  *out = (struct sock_filter *)bytes;
  *count = (unsigned short)(len / 16);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: afpacket_receiver IFNAME PORT FILTER_HEX [RCVBUF_BYTES]\n");
    return 2;
  }
  const unsigned ifindex = if_nametoindex(argv[1]);
  if (ifindex == 0) {
    fprintf(stderr, "if_nametoindex(%s): %s\n", argv[1], strerror(errno));
    return 1;
  }
  const unsigned port = (unsigned)strtoul(argv[2], NULL, 10);
  struct sock_fprog prog;
  if (parse_filter(argv[3], &prog.filter, &prog.len) != 0) {
    fprintf(stderr, "FILTER_HEX must be 1..4096 struct sock_filter in hex\n");
    return 2;
  }
  /* Protocol 0 until the filter is attached: a socket opened with ETH_P_ALL would start
   * queueing every frame before the filter exists, and those would count as hits. */
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "socket(AF_PACKET, SOCK_RAW): %s\n", strerror(errno));
    return 1;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) {
    fprintf(stderr, "SO_ATTACH_FILTER: %s\n", strerror(errno));
    return 1;
  }
  if (argc > 4) {
    int rcvbuf = atoi(argv[4]);
    /* SO_RCVBUFFORCE: the benchmark runs as root and may exceed rmem_max. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
      fprintf(stderr, "SO_RCVBUFFORCE: %s\n", strerror(errno));
    }
  }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = (int)ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
    fprintf(stderr, "bind(%s): %s\n", argv[1], strerror(errno));
    return 1;
  }
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
  char input[256];
  size_t input_len = 0;
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
      ssize_t n = read(0, input + input_len, sizeof input - input_len);
      if (n <= 0) return 0;
      input_len += (size_t)n;
      char *nl;
      while ((nl = memchr(input, '\n', input_len)) != NULL) {
        *nl = '\0';
        if (strcmp(input, "stats") == 0) {
          /* PACKET_STATISTICS resets on read: add to the running total. */
          struct tpacket_stats st;
          socklen_t sl = sizeof st;
          if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0) drops += st.tp_drops;
          printf("{\"hits\":%llu,\"other\":%llu,\"socketDrops\":%llu}\n", hits, other, drops);
          fflush(stdout);
        } else if (strcmp(input, "quit") == 0) {
          return 0;
        }
        size_t used = (size_t)(nl - input) + 1;
        memmove(input, nl + 1, input_len - used);
        input_len -= used;
      }
      if (input_len == sizeof input) input_len = 0; /* an over-long line: drop it */
    }
  }
}
