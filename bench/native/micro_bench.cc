// Native micro benchmarks, compiled at bench time by bench/micro.bench.ts (g++ -O2, the
// addon's own flags minus napi) against native/packet_parse.cc and the header-only
// native/hit_ring.h, so they measure the very code the capture thread runs, without the
// N-API call that the addon's parseFrame test entry adds. Single process; the ring's
// cross-thread case starts one producer thread and joins it.
//
//   micro_bench FRAMES_FILE [REPEATS=7]
//
// FRAMES_FILE holds frames as <u32 little-endian length><bytes>..., written by the TS
// side from bench/traffic.ts (the same SYN pool the end-to-end benchmark sends).
// Prints one JSON object: for each case, ns per item of every repeat, so the TS side
// reports median [min..max] like everything else.
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../../native/hit_ring.h"
#include "../../native/packet_parse.h"

namespace portanoia {
namespace {

uint64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

// Keeps results observable so the optimiser cannot drop the work being timed.
volatile uint64_t g_sink = 0;

struct Frame {
  std::vector<uint8_t> bytes;
};

std::vector<Frame> ReadFrames(const char* path) {
  std::vector<Frame> frames;
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return frames;
  uint8_t len_bytes[4];
  while (std::fread(len_bytes, 1, 4, f) == 4) {
    const uint32_t len = uint32_t(len_bytes[0]) | uint32_t(len_bytes[1]) << 8 |
                         uint32_t(len_bytes[2]) << 16 | uint32_t(len_bytes[3]) << 24;
    Frame fr;
    fr.bytes.resize(len);
    if (len > 65535 || std::fread(fr.bytes.data(), 1, len, f) != len) break;
    frames.push_back(std::move(fr));
  }
  std::fclose(f);
  return frames;
}

// ParseNetwork from the IP header, as the capture thread calls it on a SOCK_RAW ring.
double ParseNetworkNs(const std::vector<Frame>& frames, uint32_t laps) {
  FrameMeta meta;
  meta.link_len = 14;
  HitRecord rec{};
  uint64_t sum = 0;
  const uint64_t start = NowNs();
  for (uint32_t lap = 0; lap < laps; lap++) {
    for (const Frame& fr : frames) {
      meta.wire_len = static_cast<uint32_t>(fr.bytes.size());
      const ParseResult r = ParseNetwork(fr.bytes.data() + 14, fr.bytes.size() - 14, 0x0800, meta, &rec);
      sum += static_cast<uint64_t>(r) + rec.src_port + rec.kind;
    }
  }
  const uint64_t elapsed = NowNs() - start;
  g_sink = g_sink + sum;
  return double(elapsed) / (double(laps) * double(frames.size()));
}

// ParseEthernet from the first byte, as the addon's parseFrame entry does.
double ParseEthernetNs(const std::vector<Frame>& frames, uint32_t laps) {
  FrameMeta meta;
  HitRecord rec{};
  uint64_t sum = 0;
  const uint64_t start = NowNs();
  for (uint32_t lap = 0; lap < laps; lap++) {
    for (const Frame& fr : frames) {
      meta.wire_len = static_cast<uint32_t>(fr.bytes.size());
      const ParseResult r = ParseEthernet(fr.bytes.data(), fr.bytes.size(), meta, &rec);
      sum += static_cast<uint64_t>(r) + rec.src_port + rec.kind;
    }
  }
  const uint64_t elapsed = NowNs() - start;
  g_sink = g_sink + sum;
  return double(elapsed) / (double(laps) * double(frames.size()));
}

constexpr uint32_t kPushBatch = 64;    // the capture thread's publish batch (capture.cc kBatch)
constexpr uint32_t kDrainBatch = 1024;  // the Sensor's default drain batch

// One thread: push records in batches of 64 until 1024 are queued, drain 1024, repeat.
// The cost of the ring's bookkeeping and copies with no cache line moving between cores.
double RingSameThreadNs(uint64_t records) {
  HitRing ring(1u << 16);
  std::vector<uint8_t> out(size_t{kDrainBatch} * sizeof(HitRecord));
  HitRecord proto{};
  proto.dst_port = 2222;
  uint64_t pushed = 0, drained = 0;
  const uint64_t start = NowNs();
  while (drained < records) {
    for (uint32_t b = 0; b < kDrainBatch / kPushBatch; b++) {
      const uint32_t room = ring.Reserve(kPushBatch);
      for (uint32_t i = 0; i < room; i++) {
        proto.src_port = static_cast<uint16_t>(pushed + i);
        *ring.Slot(i) = proto;
      }
      ring.Publish(room);
      pushed += room;
    }
    drained += ring.Drain(out.data(), kDrainBatch);
    g_sink = g_sink + out[40];
  }
  return double(NowNs() - start) / double(drained);
}

void Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// Two threads on two cores: a producer publishing batches of 64 (spinning while the ring
// is full) and a consumer draining up to 1024 at a time (spinning while it is empty).
// Throughput of the hand-off itself, cache-line transfers included; 0 when the machine
// has a single core.
double RingCrossThreadNs(uint64_t records, int producer_cpu, int consumer_cpu) {
  HitRing ring(1u << 16);
  std::vector<uint8_t> out(size_t{kDrainBatch} * sizeof(HitRecord));
  uint64_t start = 0;
  std::thread producer([&] {
    Pin(producer_cpu);
    HitRecord proto{};
    proto.dst_port = 2222;
    uint64_t pushed = 0;
    while (pushed < records) {
      const uint64_t left = records - pushed;
      const uint32_t want = left < kPushBatch ? static_cast<uint32_t>(left) : kPushBatch;
      const uint32_t room = ring.Reserve(want);
      for (uint32_t i = 0; i < room; i++) {
        proto.src_port = static_cast<uint16_t>(pushed + i);
        *ring.Slot(i) = proto;
      }
      ring.Publish(room);
      pushed += room;
      if (room == 0) sched_yield();
    }
  });
  Pin(consumer_cpu);
  start = NowNs();
  uint64_t drained = 0;
  while (drained < records) {
    const uint32_t n = ring.Drain(out.data(), kDrainBatch);
    if (n == 0) {
      sched_yield();
      continue;
    }
    drained += n;
    g_sink = g_sink + out[40];
  }
  const uint64_t elapsed = NowNs() - start;
  producer.join();
  return double(elapsed) / double(drained);
}

void PrintSeries(const char* name, const std::vector<double>& values, bool last) {
  std::printf("\"%s\":[", name);
  for (size_t i = 0; i < values.size(); i++) std::printf("%s%.3f", i == 0 ? "" : ",", values[i]);
  std::printf("]%s", last ? "" : ",");
}

}  // namespace
}  // namespace portanoia

int main(int argc, char** argv) {
  using namespace portanoia;
  if (argc < 2) {
    std::fprintf(stderr, "usage: micro_bench FRAMES_FILE [REPEATS]\n");
    return 2;
  }
  const std::vector<Frame> frames = ReadFrames(argv[1]);
  if (frames.empty()) {
    std::fprintf(stderr, "micro_bench: no frames in %s\n", argv[1]);
    return 1;
  }
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 7;
  const unsigned cpus = std::thread::hardware_concurrency();
  // About 2 M parses and 4 M records per repeat: long enough to swamp the clock,
  // short enough that a quick run stays quick.
  const uint32_t laps = static_cast<uint32_t>(2'000'000 / frames.size() + 1);
  std::vector<double> net, eth, same, cross;
  ParseNetworkNs(frames, laps / 4 + 1);  // warm-up: caches, branch predictors, page faults
  for (int i = 0; i < repeats; i++) {
    net.push_back(ParseNetworkNs(frames, laps));
    eth.push_back(ParseEthernetNs(frames, laps));
    same.push_back(RingSameThreadNs(4'000'000));
    if (cpus >= 2) cross.push_back(RingCrossThreadNs(4'000'000, 1, 0));
  }
  std::printf("{\"frames\":%zu,\"cpus\":%u,", frames.size(), cpus);
  PrintSeries("parseNetworkNs", net, false);
  PrintSeries("parseEthernetNs", eth, false);
  PrintSeries("ringSameThreadNs", same, false);
  PrintSeries("ringCrossThreadNs", cross, true);
  std::printf("}\n");
  return 0;
}
