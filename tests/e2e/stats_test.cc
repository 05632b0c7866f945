// `lazyfs stats` end to end: the lazyfs binary mounts an image from a real docker-registry on
// 127.0.0.1, a file is read through the kernel, and the stats the command prints (text and
// JSON) must account for it: bytes served equal to the bytes read, the image's compressed size
// from its manifest, and a read that fails while the registry is down counted as an EIO caused
// by the registry being unavailable. Needs root and /dev/fuse; fails and says so without them.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry.h"

namespace lazyfs::testing {
namespace {

namespace fsys = std::filesystem;

const std::string kSmall = "a small file, read whole\n";

ImageSpec StatsSpec() {
  ImageSpec spec;
  Layer base;
  base.entries = {File("etc/small", kSmall, 0644), File("data/a", PseudoRandomBytes(300000, 5))};
  Layer top;
  top.entries = {File("data/b", PseudoRandomBytes(200000, 6))};
  spec.layers = {base, top};
  return spec;
}

class StatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "end-to-end tests mount FUSE: run them as root";
    ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0) << "/dev/fuse is missing: cannot mount";
    ASSERT_EQ(::access(LazyfsBinary().c_str(), X_OK), 0) << "no lazyfs binary at " << LazyfsBinary();
    auto reg = Registry::Start();
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
    dir_ = MakeTempDir("lazyfs-e2e-stats");
    store_ = dir_ + "/store";
    mnt_ = dir_ + "/mnt";
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);
    auto built = BuildImage(StatsSpec());
    ASSERT_TRUE(built.ok()) << built.status().ToString();
    built_ = std::move(*built);
    ASSERT_TRUE(WriteOciLayout(StatsSpec(), dir_ + "/layout", "stats").ok());
    Status s = PushOciLayout(dir_ + "/layout", "stats", registry_->host(), "e2e/stats", "1");
    ASSERT_TRUE(s.ok()) << s.ToString();
    ref_ = "docker://" + registry_->host() + "/e2e/stats:1";
  }
  void TearDown() override {
    ForceUnmount(mnt_);
    registry_.reset();
    RemoveTree(dir_).IgnoreError();
  }

  nlohmann::json StatsJson() {
    CommandResult r = RunLazyfs({"stats", "--json", mnt_});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out;
    return j;
  }

  std::unique_ptr<Registry> registry_;
  BuiltImage built_;
  std::string dir_, store_, mnt_, ref_;
};

TEST_F(StatsTest, CountsWhatWasReadAndTheImageSize) {
  CommandResult r = RunLazyfs({"mount", "--store", store_, "-q", ref_, mnt_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json before = StatsJson();
  for (const char* key : {"mountpoint", "image_compressed_bytes", "bytes_fetched", "bytes_served",
                          "reads", "cache", "fetch", "eio", "counters", "latencies"}) {
    EXPECT_TRUE(before.contains(key)) << "no \"" << key << "\" in " << before.dump();
  }
  for (const char* key : {"hits", "misses"}) EXPECT_TRUE(before["cache"].contains(key));
  for (const char* key : {"requests", "latency"}) EXPECT_TRUE(before["fetch"].contains(key));
  for (const char* key : {"count", "p50_us", "p90_us", "p99_us", "max_us"}) {
    EXPECT_TRUE(before["fetch"]["latency"].contains(key)) << key;
  }
  for (const char* key : {"unavailable", "data_loss", "other"}) {
    EXPECT_TRUE(before["eio"].contains(key)) << key;
  }
  uint64_t compressed = 0;
  for (const auto& l : built_.layers) compressed += l.blob.size();
  EXPECT_EQ(before["image_compressed_bytes"].get<uint64_t>(), compressed);
  EXPECT_EQ(before["bytes_served"].get<uint64_t>(), 0u);
  EXPECT_EQ(before["mountpoint"].get<std::string>(), mnt_);

  auto small = ReadFileToString(mnt_ + "/etc/small");
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  ASSERT_EQ(*small, kSmall);
  auto b = ReadFileToString(mnt_ + "/data/b");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_EQ(b->size(), 200000u);
  nlohmann::json after = StatsJson();
  EXPECT_EQ(after["bytes_served"].get<uint64_t>(), kSmall.size() + b->size());
  EXPECT_GE(after["reads"].get<uint64_t>(), 2u);
  EXPECT_EQ(after["eio"]["unavailable"].get<uint64_t>(), 0u);

  // The text form says the same in words.
  r = RunLazyfs({"stats", mnt_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("bytes served:   " ), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(" + std::to_string(kSmall.size() + b->size()) + " B)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("image size:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fetch latency:  p50"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("EIO returned:"), std::string::npos) << r.out;

  // Not a lazyfs mount: a one-line error naming it.
  r = RunLazyfs({"stats", dir_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(dir_), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not a mountpoint"), std::string::npos) << r.err;
  CommandResult um = RunLazyfs({"umount", mnt_});
  EXPECT_EQ(um.exit_code, 0) << um.err;
}

// With the registry stopped and neither the content nor the layer blob stored locally, a read
// has nowhere to get its bytes: the reader gets EIO and the stats blame the registry.
TEST_F(StatsTest, ReadsFailingWhileTheRegistryIsDownAreCountedAsUnavailable) {
  CommandResult r = RunLazyfs({"mount", "--store", store_, "-q", ref_, mnt_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(registry_->Stop().ok());
  // Whatever local copy of the layers indexing left behind goes, so only the registry could
  // serve the content.
  for (const auto& l : built_.layers) {
    fsys::remove(store_ + "/blobs/sha256/" + l.digest.Hex());
  }
  auto a = ReadFileToString(mnt_ + "/data/a");
  ASSERT_FALSE(a.ok()) << "read uncached content with the registry stopped";
  EXPECT_EQ(a.status().error_number(), EIO) << a.status().ToString();
  nlohmann::json j = StatsJson();
  EXPECT_GE(j["eio"]["unavailable"].get<uint64_t>(), 1u) << j.dump();
  EXPECT_EQ(j["eio"]["data_loss"].get<uint64_t>(), 0u) << j.dump();
  EXPECT_EQ(j["bytes_served"].get<uint64_t>(), 0u);
  ASSERT_TRUE(registry_->Restart().ok());
  CommandResult um = RunLazyfs({"umount", mnt_});
  EXPECT_EQ(um.exit_code, 0) << um.err;
}

}  // namespace
}  // namespace lazyfs::testing
