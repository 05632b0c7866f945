// Times a tar header or a TOC may record (any int64 of seconds, nanoseconds past a second)
// through ext4's encoding: clamped to ext4's range, never overflowed. No root or tools needed,
// so the sanitizer tier runs it under UBSan.
#include "convert/ext4_time.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>

#include "base/fd.h"
#include "convert/convert.h"
#include "tests/support/memory_tree.h"

namespace lazyfs::convert {
namespace {

using index::kMaxTimeSec;
using index::kMinTimeSec;
using index::Timestamp;

constexpr int64_t kLast = 15'032'385'535;   // 2446-05-10T22:38:55Z
constexpr int64_t kFirst = -2'147'483'648;  // 1901-12-13T20:45:52Z

TEST(ext4_time, RangeIsExt4s) {
  EXPECT_EQ(kMaxTimeSec, kLast);
  EXPECT_EQ(kMinTimeSec, kFirst);
}

TEST(ext4_time, InodeTimesClampAndRoundTrip) {
  struct Case {
    int64_t sec;
    uint32_t nsec;
    Timestamp stored;
  };
  const Case cases[] = {
      {INT64_MAX, UINT32_MAX, {kLast, 999'999'999}},
      {INT64_MIN, 0, {kFirst, 0}},
      {kLast + 1, 5, {kLast, 5}},
      {kFirst - 1, 5, {kFirst, 5}},
      {kLast, 999'999'999, {kLast, 999'999'999}},
      {kFirst, 0, {kFirst, 0}},
      {-1, 1'000'000'000, {-1, 999'999'999}},
      {0, 0, {0, 0}},
      {(int64_t{1} << 31) + 100, 123'456'789, {(int64_t{1} << 31) + 100, 123'456'789}},
      {3 * (int64_t{1} << 32) - 1, 7, {3 * (int64_t{1} << 32) - 1, 7}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.sec) + "." + std::to_string(c.nsec));
    const Ext4InodeTime t = EncodeInodeTime(c.sec, c.nsec);
    EXPECT_EQ(DecodeInodeTime(t.lo, t.extra), c.stored);
    EXPECT_EQ(index::ClampTime(c.sec, c.nsec), c.stored);
  }
}

TEST(ext4_time, SuperblockTimesClampToUnsigned40Bits) {
  struct Case {
    int64_t sec;
    uint64_t stored;
  };
  const Case cases[] = {
      {INT64_MAX, kLast}, {INT64_MIN, 0}, {-1, 0}, {0, 0}, {1'700'000'000, 1'700'000'000}};
  for (const Case& c : cases) {
    const Ext4SuperTime t = EncodeSuperTime(c.sec);
    EXPECT_EQ((uint64_t{t.hi} << 32) | t.lo, c.stored) << c.sec;
  }
}

// The whole writer with the extreme times (the inodes, the filesystem's own time, which is the
// newest mtime, and the comparison verify makes), read back through libext2fs.
TEST(ext4_time, WriterClampsExtremeMtimesAndVerifyAgrees) {
  std::vector<testing::MemNode> nodes;
  const std::pair<const char*, int64_t> times[] = {
      {"/max", INT64_MAX}, {"/min", INT64_MIN}, {"/minus1", -1}, {"/zero", 0}};
  for (const auto& [path, sec] : times) {
    testing::MemNode n;
    n.path = path;
    n.mode = S_IFREG | 0644;
    n.mtime_sec = sec;
    n.mtime_nsec = UINT32_MAX;
    nodes.push_back(n);
  }
  auto tree = testing::MemoryTree::Build(nodes);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  char dir[] = "/tmp/lazyfs-ext4-time-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string image = std::string(dir) + "/t.img";
  Result<Ext4Report> report = WriteExt4(**tree, image, Ext4Options{}, nullptr);
  ASSERT_TRUE(report.ok()) << report.status().ToString();

  auto back = OpenExt4Tree(image);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const int64_t want[] = {kLast, kFirst, -1, 0};
  for (size_t i = 0; i < 4; ++i) {
    auto root = (*back)->GetAttr(index::kRootIno);
    ASSERT_TRUE(root.ok());
    auto a = (*back)->Lookup(root->ino, std::string(times[i].first).substr(1));
    ASSERT_TRUE(a.ok()) << times[i].first << ": " << a.status().ToString();
    EXPECT_EQ(a->mtime_sec, want[i]) << times[i].first;
    EXPECT_EQ(a->mtime_nsec, 999'999'999u) << times[i].first;
  }
  auto diffs = CompareExt4(**tree, image, 100);
  ASSERT_TRUE(diffs.ok()) << diffs.status().ToString();
  EXPECT_TRUE(diffs->empty()) << (*diffs)[0];
  RemoveTree(dir).IgnoreError();
}

}  // namespace
}  // namespace lazyfs::convert
