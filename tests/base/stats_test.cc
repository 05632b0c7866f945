// Stats counters and latency histograms.
#include "base/stats.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace lazyfs {
namespace {

TEST(Stats, CountersAreSharedByNameAndThreadSafe) {
  StatCounter& a = Counter("test.shared");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < 10000; ++i) Counter("test.shared").Add(3);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(a.Get(), 4u * 10000u * 3u);
  EXPECT_EQ(&a, &Counter("test.shared"));
  bool found = false;
  for (const auto& [name, value] : SnapshotStats().counters) {
    if (name == "test.shared") found = value == a.Get();
  }
  EXPECT_TRUE(found);
}

TEST(Stats, HistogramPercentilesWithinAFactorOfTwo) {
  StatHistogram& h = Histogram("test.latency");
  EXPECT_EQ(h.PercentileMicros(50), 0u);
  for (int i = 0; i < 90; ++i) h.Record(std::chrono::microseconds(100));   // bucket [64,128)
  for (int i = 0; i < 10; ++i) h.Record(std::chrono::milliseconds(50));    // [32768,65536)
  EXPECT_EQ(h.Count(), 100u);
  EXPECT_EQ(h.PercentileMicros(50), 128u);
  EXPECT_EQ(h.PercentileMicros(90), 128u);
  EXPECT_EQ(h.PercentileMicros(99), 65536u);
  EXPECT_EQ(h.PercentileMicros(100), 65536u);
}

}  // namespace
}  // namespace lazyfs
