// End to end, eStargz and zstd:chunked: an image whose layers were written by the estargz Go
// package (tests/support/mkstargz), with the TOC digest annotated on its layer descriptors, is
// pushed to a real registry behind a proxy that counts the bytes the registry sends. `lazyfs
// mount` from an empty store and `cat` of one small file cost the manifest, the config, each
// layer's footer and TOC and that file's chunks: nothing else, and no layer download. The
// mounted tree then lists exactly as the tars say. Needs root, /dev/fuse and Go; fails saying
// so when they are missing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "base/digest.h"
#include "base/fd.h"
#include "index/toc.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/counting_proxy.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"
#include "tests/support/mkstargz.h"
#include "tests/support/registry.h"

namespace lazyfs::testing {
namespace {

constexpr int kFiles = 400;

std::string Small(int i) {
  std::string s = "small file " + std::to_string(i) + "\n";
  while (s.size() < 900 + static_cast<size_t>(i % 300)) s += "text " + std::to_string(i) + "\n";
  return s;
}

// Compressed bytes of a layer's footer and TOC, and of the chunks of the file with `content`.
struct LayerCost {
  uint64_t toc = 0;
  uint64_t file = 0;
};
LayerCost CostOf(const std::string& blob, LayerCompression comp, const std::string& content) {
  LayerCost cost;
  auto footer = index::ParseTocFooter(
      comp, std::string_view(blob).substr(blob.size() - index::kTocTailSize), blob.size());
  EXPECT_TRUE(footer.ok()) << footer.status().ToString();
  if (!footer.ok()) return cost;
  cost.toc = blob.size() - footer->toc_offset + index::kTocTailSize;
  auto json = index::DecompressToc(
      *footer, std::string_view(blob).substr(footer->toc_offset, footer->toc_size), {});
  EXPECT_TRUE(json.ok());
  auto toc = index::ParseToc(*json, *footer, {});
  EXPECT_TRUE(toc.ok());
  auto it = toc->files.find(Sha256Of(content));
  if (it == toc->files.end()) return cost;
  uint64_t first = footer->payload_end;
  for (const auto& [d, chunks] : toc->files) {
    for (const auto& c : chunks) first = std::min(first, c.compressed_offset);
  }
  for (const auto& c : it->second) {
    // A read of the layer's first chunk also brings the tar headers before it.
    cost.file += c.compressed_end - (c.compressed_offset == first ? 0 : c.compressed_offset);
  }
  return cost;
}

class EstargzTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::geteuid(), 0u) << "eStargz end-to-end tests mount FUSE: run them as root";
    ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0) << "/dev/fuse is missing: no FUSE mounts";
    ASSERT_EQ(::access(LazyfsBinary().c_str(), X_OK), 0)
        << "no lazyfs binary at " << LazyfsBinary();
    auto tool = MkstargzBinary();
    ASSERT_TRUE(tool.ok()) << tool.status().ToString();
  }

  void SetUp() override {
    auto reg = Registry::Start();
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
    auto proxy = CountingProxy::Start(registry_->host());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
    dir_ = MakeTempDir("lazyfs-estargz-test");
    store_ = dir_ + "/store";
    mnt_ = dir_ + "/mnt";
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);

    // Layer 1 (eStargz): big incompressible files and many small ones. Layer 2 (zstd:chunked):
    // more of both, a whiteout and a replaced file.
    std::vector<Entry> lower, upper;
    lower.push_back(Dir("etc"));
    lower.push_back(Dir("opt"));
    for (int i = 0; i < 4; ++i) {
      lower.push_back(File("opt/big" + std::to_string(i), PseudoRandomBytes(3 << 20, 40 + i)));
    }
    for (int i = 0; i < kFiles; ++i) lower.push_back(File("etc/f" + std::to_string(i), Small(i)));
    lower.push_back(Symlink("etc/link", "f1"));
    upper.push_back(Dir("usr"));
    upper.push_back(File("usr/blob", PseudoRandomBytes(4 << 20, 77), 0755));
    for (int i = 0; i < 50; ++i)
      upper.push_back(File("usr/u" + std::to_string(i), Small(1000 + i)));
    upper.push_back(Whiteout("etc/f3"));
    upper.push_back(File("etc/f4", "replaced\n"));
    entries_ = {lower, upper};
    const StargzFormat formats[] = {StargzFormat::kEstargz, StargzFormat::kZstdChunked};
    for (int i = 0; i < 2; ++i) {
      auto tar = BuildLayerTar(entries_[i]);
      ASSERT_TRUE(tar.ok()) << tar.status().ToString();
      auto z = MakeStargz(*tar, formats[i]);
      ASSERT_TRUE(z.ok()) << z.status().ToString();
      Layer l;
      l.entries = entries_[i];
      l.compression = i == 0 ? Compression::kGzip : Compression::kZstd;
      l.raw_blob = z->blob;
      l.diff_id = z->diff_id;
      l.annotations[std::string(index::kTocDigestAnnotation)] = z->toc_digest.ToString();
      spec_.layers.push_back(l);
    }
    auto digest = WriteOciLayout(spec_, dir_ + "/layout", "1");
    ASSERT_TRUE(digest.ok()) << digest.status().ToString();
    auto built = BuildImage(spec_);
    ASSERT_TRUE(built.ok());
    built_ = *built;
    Status s = PushOciLayout(dir_ + "/layout", "1", registry_->host(), "stargz/app", "1");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void TearDown() override {
    ForceUnmount(mnt_);
    proxy_.reset();
    registry_.reset();
    RemoveTree(dir_).IgnoreError();
  }

  CommandResult Mount(const std::string& prefetch) {
    return RunLazyfs({"mount", "--store", store_, "-q", "--prefetch", prefetch,
                      "docker://" + proxy_->host() + "/stargz/app:1", mnt_});
  }

  std::unique_ptr<Registry> registry_;
  std::unique_ptr<CountingProxy> proxy_;
  std::string dir_, store_, mnt_;
  std::vector<std::vector<Entry>> entries_;
  ImageSpec spec_;
  BuiltImage built_;
};

TEST_F(EstargzTest, MountFromNothingAndCatOneFileFetchesTocsAndThatFileOnly) {
  proxy_->Reset();
  CommandResult r = Mount("none");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t mount_bytes = proxy_->bytes_down();
  EXPECT_EQ(Slurp(mnt_ + "/etc/f123"), Small(123));
  const uint64_t fetched = proxy_->bytes_down();

  // What the registry must send: manifest, config, footers and TOCs, the file's chunks, plus
  // HTTP headers (a few hundred bytes per response; 4 KiB each is generous).
  uint64_t image = 0, tocs = 0, smallest_layer = UINT64_MAX;
  for (const BuiltLayer& l : built_.layers) {
    image += l.blob.size();
    smallest_layer = std::min<uint64_t>(smallest_layer, l.blob.size());
  }
  const LayerCost lower = CostOf(built_.layers[0].blob, LayerCompression::kGzip, Small(123));
  const LayerCost upper = CostOf(built_.layers[1].blob, LayerCompression::kZstd, "");
  tocs = lower.toc + upper.toc;
  ASSERT_GT(lower.file, 0u) << "etc/f123 has no chunks in the eStargz TOC";
  const uint64_t responses = 2 /*manifest, config*/ + 2 * 2 /*footer, TOC*/ + 1 /*chunk*/ + 8;
  const uint64_t bound =
      built_.manifest.size() + built_.config.size() + tocs + lower.file + responses * 4096;
  std::printf(
      "eStargz+zstd:chunked image of %llu bytes: mount %llu bytes, mount + cat %llu bytes "
      "(TOCs %llu, file chunks %llu, bound %llu)\n",
      static_cast<unsigned long long>(image), static_cast<unsigned long long>(mount_bytes),
      static_cast<unsigned long long>(fetched), static_cast<unsigned long long>(tocs),
      static_cast<unsigned long long>(lower.file), static_cast<unsigned long long>(bound));
  EXPECT_LT(bound, smallest_layer / 4) << "the test image is too small to tell a download";
  EXPECT_LE(fetched, bound) << "more than manifest + config + TOCs + the file's chunks";
  EXPECT_GE(fetched, built_.manifest.size() + built_.config.size() + tocs + lower.file)
      << "the proxy saw less than the minimum: the count is wrong";
  // No layer was downloaded: the store holds no layer blob.
  for (const BuiltLayer& l : built_.layers) {
    EXPECT_NE(::access((store_ + "/blobs/sha256/" + l.digest.Hex()).c_str(), F_OK), 0)
        << "layer " << l.digest.Short() << " was downloaded";
  }

  // The whole tree, contents included, is what the tars say.
  ImageSpec plain = spec_;
  for (Layer& l : plain.layers) {
    l.raw_blob.reset();
    l.diff_id.reset();
    l.annotations.clear();
  }
  auto want = ExpectedListing(plain);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  auto got = ListDirectory(mnt_);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(DiffListings(*want, *got), "");
  CommandResult u = RunLazyfs({"umount", mnt_});
  EXPECT_EQ(u.exit_code, 0) << u.err;
}

TEST_F(EstargzTest, PrefetchAllBringsEveryLayerInAndChecksItWhole) {
  CommandResult r = Mount("all");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  bool all = false;
  for (int i = 0; i < 6000 && !all; ++i) {
    all = true;
    for (const BuiltLayer& l : built_.layers) {
      all = all && ::access((store_ + "/content/verified/" + l.digest.Hex()).c_str(), F_OK) == 0;
    }
    if (!all) ::usleep(10'000);
  }
  EXPECT_TRUE(all) << "prefetch=all did not complete and verify both layers";
  // Everything is local now: reading it all costs the registry nothing.
  proxy_->Reset();
  auto got = ListDirectory(mnt_);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(proxy_->bytes_down(), 0u);
  CommandResult u = RunLazyfs({"umount", mnt_});
  EXPECT_EQ(u.exit_code, 0) << u.err;
}

}  // namespace
}  // namespace lazyfs::testing
