// The blob store's upkeep: pruning keeps exactly what stored images name, fsck finds (and with
// repair removes) what does not match its digest.
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/cas_dir.h"
#include "fetch/fetch.h"
#include "tests/fetch/test_layout.h"

namespace lazyfs::fetch {
namespace {

using testing::TempDir;

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cas = CasDir::Open(store_.blobs());
    ASSERT_TRUE(cas.ok()) << cas.status().message();
    cas_ = std::move(*cas);
  }

  Digest Put(const std::string& bytes) {
    const Digest d = Sha256Of(bytes);
    EXPECT_TRUE(cas_->Put(d, bytes).ok());
    return d;
  }

  TempDir tmp_;
  StoreLayout store_ = StoreLayout::At(tmp_.path() + "/store");
  std::unique_ptr<CasDir> cas_;
};

TEST_F(BlobStoreTest, PruneKeepsTheManifestConfigAndLayersOfKeptImagesOnly) {
  ImageDescriptor kept;
  kept.manifest_digest = Put("manifest");
  kept.config_digest = Put("config");
  kept.layers.push_back(LayerDescriptor{Put("layer one"), "", 9, std::nullopt, {}});
  kept.layers.push_back(LayerDescriptor{Put("shared layer"), "", 12, std::nullopt, {}});
  const Digest gone_manifest = Put("another manifest");  // 16 bytes
  const Digest gone_layer = Put("its own layer");        // 13 bytes

  auto report = PruneBlobStore(store_, {kept});
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->objects, 2u);
  EXPECT_EQ(report->bytes, 16u + 13u);
  for (const Digest& d : {kept.manifest_digest, kept.config_digest, kept.layers[0].digest,
                          kept.layers[1].digest}) {
    EXPECT_TRUE(cas_->Contains(d)) << d.ToString();
  }
  EXPECT_FALSE(cas_->Contains(gone_manifest));
  EXPECT_FALSE(cas_->Contains(gone_layer));

  // Nothing left to prune; keeping nothing empties the store.
  report = PruneBlobStore(store_, {kept});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->objects, 0u);
  report = PruneBlobStore(store_, {});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->objects, 4u);
  EXPECT_FALSE(cas_->Contains(kept.manifest_digest));
}

TEST_F(BlobStoreTest, CheckFindsCorruptBlobsAndRepairRemovesThem) {
  const Digest good = Put("good blob");
  const Digest bad = Put("bad blob");
  ASSERT_TRUE(WriteFileAtomic(cas_->PathFor(bad), "bad blob, changed").ok());

  auto report = CheckBlobStore(store_, /*repair=*/false);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->objects, 2u);
  ASSERT_EQ(report->corrupt.size(), 1u);
  EXPECT_EQ(report->corrupt[0], cas_->PathFor(bad));
  EXPECT_FALSE(report->clean());
  EXPECT_EQ(::access(cas_->PathFor(bad).c_str(), F_OK), 0) << "a check without repair removed it";

  report = CheckBlobStore(store_, /*repair=*/true);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->corrupt.size(), 1u);
  EXPECT_NE(::access(cas_->PathFor(bad).c_str(), F_OK), 0);
  EXPECT_TRUE(cas_->Contains(good));

  report = CheckBlobStore(store_, /*repair=*/false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->clean());
  EXPECT_EQ(report->objects, 1u);
}

TEST(OpenImageSourceTest, AStoreWithoutARootIsRefused) {
  SourceOptions options;
  auto ref = ImageRef::Parse("oci:/nonexistent");
  ASSERT_TRUE(ref.ok());
  auto source = OpenImageSource(*ref, options);
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lazyfs::fetch
