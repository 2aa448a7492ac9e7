/*
 * The benchmark's "physical limit" receiver: a plain C TPACKET_V3 reader with the same
 * kernel side as portanoia and nothing else. An AF_PACKET SOCK_RAW socket bound to one
 * interface, the same classic-BPF program portanoia attaches (the harness compiles it
 * with lib/bpf/filter.ts and passes its bytes as hex), a TPACKET_V3 ring with
 * portanoia's default geometry (64 blocks of 128 KiB, 1 ms retire timeout; flags change
 * it), one thread that polls, walks every retired block, checks Ethernet/IPv4/TCP
 * destination port in place and hands the block back. No second thread, no copy, no
 * record: what is left of portanoia's cost above this is its own. Compiled by
 * bench/e2e.ts with `cc -O2` into a scratch folder and run pinned to a core in the
 * sensor namespace.
 *
 * It also measures packet → user-space latency the way bench/latency-receiver.ts does
 * for JS: CLOCK_REALTIME when the hit is walked minus the kernel's timestamp in the
 * frame header (tp_sec/tp_nsec, CLOCK_REALTIME), so the two figures are comparable
 * in the same round.
 *
 * Control, line-oriented like bench/e2e-receiver.ts and bench/latency-receiver.ts: it
 * prints {"ready":true,"pid":N} once the socket is bound; `go` starts a fresh latency
 * sample ({"go":true,"anchorUncertaintyMs":0}: the kernel and this reader read the same
 * clock); `stats` prints {"hits","other","socketDrops"};
 * `report` prints {"n","median","p99","min","max"} in ms plus the stats; `quit` or end
 * of stdin exits. Drops come from PACKET_STATISTICS (tp_drops), kept as a running total
 * because the kernel resets them on every read.
 *
 * Usage: tpacket_receiver IFNAME PORT FILTER_HEX [BLOCK_SIZE BLOCK_COUNT RETIRE_MS]
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "receiver_common.h"

static double *samples;
static size_t sample_count, sample_cap;
static int recording;

static void record(double ms) {
  if (sample_count == sample_cap) {
    size_t cap = sample_cap ? sample_cap * 2 : 1 << 16;
    double *bigger = realloc(samples, cap * sizeof *samples);
    if (bigger == NULL) return;
    samples = bigger;
    sample_cap = cap;
  }
  samples[sample_count++] = ms;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile over a sorted sample, as bench/realtime.ts computes it. */
static double rank(const double *sorted, size_t n, double q) {
  if (n == 0) return 0;
  size_t i = (size_t)(q * (double)n + 0.999999999);
  if (i < 1) i = 1;
  if (i > n) i = n;
  return sorted[i - 1];
}

/* The counters a command reports, and whether it asked to quit. */
struct control {
  int fd;
  unsigned long long hits, other, *drops;
  int quit;
};

static void on_command(const char *line, void *ctx) {
  struct control *c = ctx;
  if (strcmp(line, "stats") == 0 || strcmp(line, "report") == 0) {
    /* PACKET_STATISTICS resets on read: add to the running total. */
    struct tpacket_stats_v3 st;
    socklen_t sl = sizeof st;
    if (getsockopt(c->fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0) *c->drops += st.tp_drops;
  }
  if (strcmp(line, "go") == 0) {
    sample_count = 0;
    recording = 1;
    printf("{\"go\":true,\"anchorUncertaintyMs\":0}\n");
  } else if (strcmp(line, "stats") == 0) {
    printf("{\"hits\":%llu,\"other\":%llu,\"socketDrops\":%llu}\n", c->hits, c->other, *c->drops);
  } else if (strcmp(line, "report") == 0) {
    qsort(samples, sample_count, sizeof *samples, cmp_double);
    const size_t n = sample_count;
    printf("{\"n\":%zu,\"median\":%.6f,\"p99\":%.6f,\"min\":%.6f,\"max\":%.6f,\"hits\":%llu,\"other\":%llu,\"kernelDrops\":%llu,\"ringDrops\":0}\n",
           n, rank(samples, n, 0.5), rank(samples, n, 0.99), n ? samples[0] : 0, n ? samples[n - 1] : 0, c->hits, c->other, *c->drops);
  } else if (strcmp(line, "quit") == 0) {
    c->quit = 1;
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: tpacket_receiver IFNAME PORT FILTER_HEX [BLOCK_SIZE BLOCK_COUNT RETIRE_MS]\n");
    return 2;
  }
  const unsigned port = (unsigned)strtoul(argv[2], NULL, 10);
  const unsigned block_size = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 128u << 10;
  const unsigned block_count = argc > 5 ? (unsigned)strtoul(argv[5], NULL, 10) : 64;
  const unsigned retire_ms = argc > 6 ? (unsigned)strtoul(argv[6], NULL, 10) : 1;

  int fd = filtered_packet_socket(argv[3]);
  int version = TPACKET_V3;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) {
    fprintf(stderr, "PACKET_VERSION: %s\n", strerror(errno));
    return 1;
  }
  struct tpacket_req3 req;
  memset(&req, 0, sizeof req);
  req.tp_block_size = block_size;
  req.tp_block_nr = block_count;
  req.tp_frame_size = 2048;
  req.tp_frame_nr = (block_size / 2048) * block_count;
  req.tp_retire_blk_tov = retire_ms;
  if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) {
    fprintf(stderr, "PACKET_RX_RING: %s\n", strerror(errno));
    return 1;
  }
  const size_t map_len = (size_t)block_size * block_count;
  uint8_t *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
  if (map == MAP_FAILED) map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    fprintf(stderr, "mmap: %s\n", strerror(errno));
    return 1;
  }
  bind_packet_socket(fd, argv[1]);
  printf("{\"ready\":true,\"pid\":%d}\n", (int)getpid());
  fflush(stdout);

  unsigned long long hits = 0, other = 0, drops = 0;
  unsigned cursor = 0;
  struct line_reader input = {{0}, 0};
  struct pollfd fds[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};

  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("poll");
      return 1;
    }
    /* Every block user space owns, in ring order, then back to poll. */
    for (unsigned walked = 0; walked < block_count; walked++) {
      struct tpacket_block_desc *block = (struct tpacket_block_desc *)(map + (size_t)cursor * block_size);
      if ((__atomic_load_n(&block->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) == 0) break;
      struct timespec now;
      if (recording) clock_gettime(CLOCK_REALTIME, &now);
      const uint32_t count = block->hdr.bh1.num_pkts;
      uint32_t offset = block->hdr.bh1.offset_to_first_pkt;
      for (uint32_t i = 0; i < count; i++) {
        const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)((uint8_t *)block + offset);
        const uint8_t *p = (const uint8_t *)h + h->tp_mac;
        const uint32_t len = h->tp_snaplen;
        int hit = 0;
        /* Ethernet, IPv4 only (the benchmark's traffic); anything else is `other`. */
        if (len >= 14 + 20 && p[12] == 0x08 && p[13] == 0x00) {
          const uint32_t ihl = (uint32_t)(p[14] & 0x0f) * 4;
          if (p[14 + 9] == 6 && ihl >= 20 && len >= 14 + ihl + 4) {
            const unsigned dport = ((unsigned)p[14 + ihl + 2] << 8) | p[14 + ihl + 3];
            hit = dport == port;
          }
        }
        if (hit) {
          hits++;
          if (recording) {
            const double ms = (double)(now.tv_sec - (time_t)h->tp_sec) * 1e3 + ((double)now.tv_nsec - (double)h->tp_nsec) / 1e6;
            record(ms);
          }
        } else {
          other++;
        }
        if (h->tp_next_offset == 0) break;
        offset += h->tp_next_offset;
      }
      __atomic_store_n(&block->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
      cursor = (cursor + 1) % block_count;
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      struct control c = {fd, hits, other, &drops, 0};
      if (!read_commands(&input, on_command, &c) || c.quit) return 0;
    }
  }
}
