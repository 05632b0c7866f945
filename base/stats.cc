#include "base/stats.h"

#include <bit>
#include <map>
#include <memory>
#include <mutex>

namespace lazyfs {
namespace {

struct Registry {
  std::mutex mu;
  // std::map nodes never move, so references handed out stay valid.
  std::map<std::string, StatCounter, std::less<>> counters;
  std::map<std::string, StatHistogram, std::less<>> histograms;
};

Registry& TheRegistry() {
  static Registry* r = new Registry();  // never destroyed: counters may be bumped at exit
  return *r;
}

template <typename Map>
auto& FindOrAdd(Map& map, std::mutex& mu, std::string_view name) {
  std::lock_guard lock(mu);
  auto it = map.find(name);
  if (it == map.end()) it = map.try_emplace(std::string(name)).first;
  return it->second;
}

}  // namespace

void StatHistogram::Record(std::chrono::nanoseconds d) {
  const uint64_t us = d.count() <= 0 ? 0 : static_cast<uint64_t>(d.count()) / 1000;
  const size_t bucket = us == 0 ? 0 : std::min<size_t>(kBuckets - 1, std::bit_width(us) - 1);
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
}

uint64_t StatHistogram::Count() const {
  uint64_t n = 0;
  for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
  return n;
}

uint64_t StatHistogram::PercentileMicros(double p) const {
  std::array<uint64_t, kBuckets> counts;
  uint64_t total = 0;
  for (size_t i = 0; i < kBuckets; ++i) total += counts[i] = buckets_[i].load(std::memory_order_relaxed);
  if (total == 0) return 0;
  const double want = p / 100.0 * static_cast<double>(total);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts[i];
    if (counts[i] != 0 && static_cast<double>(seen) >= want) return uint64_t{1} << (i + 1);
  }
  return uint64_t{1} << kBuckets;
}

StatCounter& Counter(std::string_view name) {
  Registry& r = TheRegistry();
  return FindOrAdd(r.counters, r.mu, name);
}

StatHistogram& Histogram(std::string_view name) {
  Registry& r = TheRegistry();
  return FindOrAdd(r.histograms, r.mu, name);
}

StatsSnapshot SnapshotStats() {
  Registry& r = TheRegistry();
  std::lock_guard lock(r.mu);
  StatsSnapshot s;
  for (const auto& [name, c] : r.counters) s.counters.emplace_back(name, c.Get());
  for (const auto& [name, h] : r.histograms) {
    s.histograms.push_back({name, h.Count(), h.PercentileMicros(50), h.PercentileMicros(90),
                            h.PercentileMicros(99), h.PercentileMicros(100)});
  }
  return s;
}

}  // namespace lazyfs
