// Process-wide counters and latency histograms, for `lazyfs stats`.
//
// Modules count what they do under fixed names (kStat* below) without knowing who reads the
// numbers: fetch/ and index/ count bytes fetched and cache hits, fs/ counts bytes served and
// EIOs, and the mount daemon publishes a snapshot. Counting is one relaxed atomic add.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lazyfs {

// Names every module uses. Dots group them; units are in the name.
inline constexpr std::string_view kStatBytesFetched = "fetch.bytes";           // from the network
inline constexpr std::string_view kStatFetches = "fetch.requests";             // blob GETs, ranged or not
inline constexpr std::string_view kStatFetchRetries = "fetch.retries";
inline constexpr std::string_view kStatFetchLatency = "fetch.latency";         // histogram
inline constexpr std::string_view kStatBytesServed = "read.bytes";             // to readers
inline constexpr std::string_view kStatReads = "read.requests";
inline constexpr std::string_view kStatCacheHits = "cache.hits";               // content objects
inline constexpr std::string_view kStatCacheMisses = "cache.misses";
inline constexpr std::string_view kStatCacheCorrupt = "cache.corrupt_dropped";
inline constexpr std::string_view kStatImageBytes = "image.compressed_bytes";  // a gauge
inline constexpr std::string_view kStatEioUnavailable = "eio.unavailable";     // registry gone
inline constexpr std::string_view kStatEioDataLoss = "eio.data_loss";          // digest mismatch
inline constexpr std::string_view kStatEioOther = "eio.other";
inline constexpr std::string_view kStatPrefetchFiles = "prefetch.files";    // brought in by prefetch
inline constexpr std::string_view kStatPrefetchBytes = "prefetch.bytes";    // their content bytes
inline constexpr std::string_view kStatPrefetchErrors = "prefetch.errors";

class StatCounter {
 public:
  void Add(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  void Set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Latencies in power-of-two microsecond buckets (bucket i holds [2^i, 2^(i+1)) us): percentiles
// are exact to a factor of two, which is what a latency report needs, for a fixed 40 counters.
class StatHistogram {
 public:
  static constexpr size_t kBuckets = 40;
  void Record(std::chrono::nanoseconds d);
  uint64_t Count() const;
  // The upper bound of the bucket holding the p-th percentile (0 < p <= 100), in microseconds;
  // 0 when nothing was recorded.
  uint64_t PercentileMicros(double p) const;

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
};

// Looks up (creating on first use) the counter or histogram with this name. The reference stays
// valid for the life of the process; callers keep it in a static.
StatCounter& Counter(std::string_view name);
StatHistogram& Histogram(std::string_view name);

struct StatsSnapshot {
  struct Latency {
    std::string name;
    uint64_t count = 0, p50_us = 0, p90_us = 0, p99_us = 0, max_us = 0;
  };
  std::vector<std::pair<std::string, uint64_t>> counters;  // sorted by name
  std::vector<Latency> histograms;                         // sorted by name
};
StatsSnapshot SnapshotStats();

// Times a scope into a histogram.
class ScopedLatency {
 public:
  explicit ScopedLatency(StatHistogram& h) : h_(h), start_(std::chrono::steady_clock::now()) {}
  ~ScopedLatency() { h_.Record(std::chrono::steady_clock::now() - start_); }
  ScopedLatency(const ScopedLatency&) = delete;
  ScopedLatency& operator=(const ScopedLatency&) = delete;

 private:
  StatHistogram& h_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace lazyfs
