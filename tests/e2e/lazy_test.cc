// End to end, the lazy read path: the lazyfs binary mounts an image whose index is built, with
// an empty blob store and content cache, behind a proxy that counts the bytes the real registry
// sends. Reading one small file costs a sliver of the image; a corrupted cached object is
// refetched; a stopped registry makes reads fail with EIO within the read deadline and a
// restarted one makes them work; many threads reading at once get correct data. Needs root and
// /dev/fuse; fails saying so when they are missing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <sstream>
#include <thread>

#include "base/digest.h"
#include "base/fd.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/suite.h"
#include "tests/support/counting_proxy.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry.h"

namespace lazyfs::testing {
namespace {

constexpr int kBigFiles = 6;
constexpr size_t kBigSize = 10 << 20;  // 60 MiB of incompressible data
constexpr int kSmallFiles = 1500;

std::string SmallData(int i) {
  std::string s = "file " + std::to_string(i) + "\n";
  while (s.size() < 1500 + static_cast<size_t>(i % 700)) s += "line of text " + std::to_string(i) + "\n";
  return s;
}

struct World : SuiteWorld {
  std::unique_ptr<CountingProxy> proxy;  // destroyed before the registry behind it
  uint64_t compressed_size = 0;
};
World* world = nullptr;

class LazyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new World;
    ASSERT_NO_FATAL_FAILURE(StartSuiteWorld(*world, "lazyfs-lazy-e2e"));
    auto proxy = CountingProxy::Start(world->registry->host());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    world->proxy = std::move(*proxy);
    // Layer 1: big pseudo-random files (gzip cannot shrink them); layer 2: many small text files.
    ImageSpec spec;
    Layer big, small;
    for (int i = 0; i < kBigFiles; ++i) {
      big.entries.push_back(File("big/" + std::to_string(i), PseudoRandomBytes(kBigSize, 900 + i)));
    }
    for (int i = 0; i < kSmallFiles; ++i) {
      small.entries.push_back(File("etc/f" + std::to_string(i), SmallData(i)));
    }
    spec.layers = {big, small};
    auto digest = WriteOciLayout(spec, world->work + "/layout", "big");
    ASSERT_TRUE(digest.ok()) << digest.status().ToString();
    auto built = BuildImage(spec);
    ASSERT_TRUE(built.ok());
    for (const auto& l : built->layers) world->compressed_size += l.blob.size();
    Status s = PushOciLayout(world->work + "/layout", "big", world->registry->host(), "lazy/big", "1");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  static void TearDownTestSuite() {
    delete world;
    world = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(world, nullptr);
    ASSERT_NE(world->proxy, nullptr) << "the suite's registry or proxy did not start";
    dir_ = MakeTempDir("lazyfs-lazy-test");
    store_ = dir_ + "/store";
    mnt_ = dir_ + "/mnt";
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);
  }
  void TearDown() override {
    ForceUnmount(mnt_);
    RemoveTree(dir_).IgnoreError();
  }

  std::string Ref() const { return "docker://" + world->proxy->host() + "/lazy/big:1"; }

  CommandResult Mount(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"mount", "--store", store_, "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(Ref());
    args.push_back(mnt_);
    return RunLazyfs(args);
  }
  void Umount() {
    CommandResult r = RunLazyfs({"umount", mnt_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Indexes the image (a full pull), unmounts, and empties the blob store and content cache.
  void IndexThenForgetContent() {
    CommandResult r = Mount();
    ASSERT_EQ(r.exit_code, 0) << r.err;
    Umount();
    for (const char* dir : {"/blobs/sha256", "/content/sha256"}) {
      std::filesystem::remove_all(store_ + dir);
      std::filesystem::create_directories(store_ + dir);
    }
  }

  std::string dir_, store_, mnt_;
};

TEST_F(LazyTest, OneSmallFileCostsUnderOnePercentOfTheImage) {
  IndexThenForgetContent();
  CommandResult r = Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  world->proxy->Reset();
  EXPECT_EQ(Slurp(mnt_ + "/etc/f777"), SmallData(777));
  const uint64_t fetched = world->proxy->bytes_down();
  std::printf("read one small file: %llu bytes from the registry, image %llu bytes (%.3f%%)\n",
              static_cast<unsigned long long>(fetched),
              static_cast<unsigned long long>(world->compressed_size),
              100.0 * static_cast<double>(fetched) / static_cast<double>(world->compressed_size));
  EXPECT_GT(fetched, 0u) << "nothing came from the registry: the cache was not empty";
  EXPECT_LT(fetched, world->compressed_size / 100);
  // The big layer was never touched: reading into a big file costs a chunk, not the layer.
  world->proxy->Reset();
  {
    std::ifstream f(mnt_ + "/big/3", std::ios::binary);
    f.seekg(7 << 20);
    std::string piece(4096, '\0');
    f.read(piece.data(), 4096);
    EXPECT_EQ(piece, PseudoRandomBytes(kBigSize, 903).substr(7 << 20, 4096));
  }
  EXPECT_LT(world->proxy->bytes_down(), world->compressed_size / 20);
  Umount();
}

TEST_F(LazyTest, ACorruptedCachedObjectIsFetchedAgain) {
  IndexThenForgetContent();
  ASSERT_EQ(Mount().exit_code, 0);
  ASSERT_EQ(Slurp(mnt_ + "/etc/f12"), SmallData(12));
  Umount();
  const std::string object = store_ + "/content/sha256/" + Sha256Of(SmallData(12)).Hex();
  ASSERT_EQ(::access(object.c_str(), F_OK), 0) << "the read did not cache the file by its sha256";
  std::string bad = SmallData(12);
  bad[3] ^= 1;
  ASSERT_TRUE(WriteFileAtomic(object, bad).ok());
  ASSERT_EQ(Mount().exit_code, 0);
  world->proxy->Reset();
  EXPECT_EQ(Slurp(mnt_ + "/etc/f12"), SmallData(12));
  EXPECT_GT(world->proxy->bytes_down(), 0u) << "the corrupt object was served instead of refetched";
  EXPECT_EQ(Slurp(object), SmallData(12));
  Umount();
}

TEST_F(LazyTest, AStoppedRegistryGivesEioWithinTheDeadlineAndARestartedOneWorks) {
  IndexThenForgetContent();
  ASSERT_EQ(Mount({"--read-timeout", "2"}).exit_code, 0);
  ASSERT_TRUE(world->registry->Stop().ok());
  // `timeout` only keeps a hung mount from hanging the suite; the read must fail by itself.
  CommandResult r = RunCommand({"timeout", "60", "cat", mnt_ + "/etc/f99"});
  EXPECT_NE(r.exit_code, 124) << "the read hung instead of failing at its deadline";
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << r.err;
  Status s = world->registry->Restart();
  ASSERT_TRUE(s.ok()) << s.ToString();
  // A fetch that began while the registry was down may still be backing off between retries
  // (and a read joins it rather than asking twice), so the read succeeds within a few tries.
  for (int attempt = 0; attempt < 10; ++attempt) {
    r = RunCommand({"timeout", "60", "cat", mnt_ + "/etc/f99"});
    if (r.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, SmallData(99));
  Umount();
}

TEST_F(LazyTest, ManyThreadsReadingManyFilesGetCorrectData) {
  IndexThenForgetContent();
  ASSERT_EQ(Mount().exit_code, 0);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kSmallFiles; i += 23) {
        if (Sha256Of(Slurp(mnt_ + "/etc/f" + std::to_string(i))) != Sha256Of(SmallData(i))) bad++;
      }
      const int b = t % kBigFiles;
      std::ifstream f(mnt_ + "/big/" + std::to_string(b), std::ios::binary);
      f.seekg(static_cast<std::streamoff>(t) << 19);
      std::string piece(300000, '\0');
      f.read(piece.data(), static_cast<std::streamsize>(piece.size()));
      if (piece != PseudoRandomBytes(kBigSize, 900 + b).substr(static_cast<size_t>(t) << 19, 300000)) bad++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, 0);
  Umount();
}

TEST_F(LazyTest, GcEvictsToTheCacheSizeAndEvictedContentIsFetchedAgain) {
  IndexThenForgetContent();
  ASSERT_EQ(Mount().exit_code, 0);
  ASSERT_EQ(Slurp(mnt_ + "/etc/f5"), SmallData(5));
  Umount();
  auto count = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(store_ + "/content/sha256")) {
      (void)e;
      ++n;
    }
    return n;
  };
  ASSERT_GT(count(), 0u);
  CommandResult r = RunLazyfs({"gc", "--store", store_, "--cache-size", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("removed"), std::string::npos) << r.out;
  EXPECT_EQ(count(), 0u) << "a 1-byte cache keeps nothing";
  ASSERT_EQ(Mount({"--cache-size", "64M"}).exit_code, 0);
  world->proxy->Reset();
  EXPECT_EQ(Slurp(mnt_ + "/etc/f5"), SmallData(5));
  EXPECT_GT(world->proxy->bytes_down(), 0u);
  Umount();
}

}  // namespace
}  // namespace lazyfs::testing
