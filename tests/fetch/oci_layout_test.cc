// ImageSource over oci:DIR[:TAG] layouts written byte by byte.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/cas_dir.h"
#include "fetch/fetch.h"
#include "tests/fetch/test_layout.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;
using testing::Blob;
using testing::LayoutWriter;
using testing::PlatformJson;
using testing::RefName;
using testing::TempDir;

std::unique_ptr<ImageSource> Open(const std::string& ref_text, const std::string& store,
                                  const std::string& platform = "linux/amd64") {
  auto ref = ImageRef::Parse(ref_text);
  EXPECT_TRUE(ref.ok()) << ref.status().message();
  SourceOptions options;
  options.store = StoreLayout{store};
  options.platform = *Platform::Parse(platform);
  auto source = OpenImageSource(*ref, options);
  EXPECT_TRUE(source.ok()) << source.status().message();
  return source.ok() ? std::move(*source) : nullptr;
}

std::string ReadAll(const Fd& fd) {
  std::string out(1 << 16, '\0');
  auto n = PreadFull(fd.get(), out.data(), out.size(), 0);
  EXPECT_TRUE(n.ok());
  out.resize(n.ok() ? *n : 0);
  return out;
}

class OciLayoutTest : public ::testing::Test {
 protected:
  TempDir tmp_;
  std::string layout_dir_ = tmp_.path() + "/layout";
  std::string store_ = tmp_.path() + "/store";
};

TEST_F(OciLayoutTest, ResolvesTaggedImageAndServesVerifiedBlobs) {
  LayoutWriter w(layout_dir_);
  Blob config;
  Blob manifest = w.AddImage({"layer one", "layer two"}, "amd64", "", &config);
  Blob other = w.AddImage({"other"});
  w.WriteIndex({{manifest, RefName("v1")}, {other, RefName("v2")}});

  auto source = Open("oci:" + layout_dir_ + ":v1", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->reference, "oci:" + layout_dir_ + ":v1");
  EXPECT_EQ(image->manifest_digest, manifest.digest);
  EXPECT_EQ(image->manifest_media_type, testing::kOciManifestType);
  EXPECT_EQ(image->config_digest, config.digest);
  EXPECT_EQ(image->platform, "linux/amd64");
  ASSERT_EQ(image->layers.size(), 2u);
  EXPECT_EQ(image->layers[0].digest, Sha256Of("layer one"));
  EXPECT_EQ(image->layers[0].size, 9u);
  EXPECT_EQ(image->layers[0].diff_id, Sha256Of("layer one"));
  EXPECT_EQ(image->layers[1].annotations.at("test.layer"), "1");

  // Manifest and config are kept in the store; layers are not copied.
  auto store = CasDir::Open(store_ + "/blobs");
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->Contains(manifest.digest));
  EXPECT_TRUE((*store)->Contains(config.digest));
  EXPECT_FALSE((*store)->Contains(image->layers[0].digest));

  auto fd = source->OpenBlob(image->layers[1].digest, image->layers[1].size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(ReadAll(*fd), "layer two");
  EXPECT_FALSE((*store)->Contains(image->layers[1].digest));

  std::array<std::byte, 4> buf;
  auto n = source->ReadBlobRange(image->layers[0].digest, 6, buf, Deadline::Never());
  ASSERT_TRUE(n.ok()) << n.status().message();
  ASSERT_EQ(*n, 3u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), 3), "one");

  auto raw = source->ReadSmallBlob(config.digest, 1 << 20);
  ASSERT_TRUE(raw.ok()) << raw.status().message();
  EXPECT_EQ(*raw, config.bytes);
}

TEST_F(OciLayoutTest, SingleImageNeedsNoTag) {
  LayoutWriter w(layout_dir_);
  Blob manifest = w.AddImage({"only"});
  w.WriteIndex({{manifest, ""}});
  auto source = Open("oci:" + layout_dir_, store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->manifest_digest, manifest.digest);
}

TEST_F(OciLayoutTest, UnknownOrMissingTagListsNames) {
  LayoutWriter w(layout_dir_);
  Blob a = w.AddImage({"a"});
  Blob b = w.AddImage({"b"});
  w.WriteIndex({{a, RefName("alpha")}, {b, RefName("beta")}});

  auto source = Open("oci:" + layout_dir_ + ":gamma", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(image.status().message(), HasSubstr("no image named \"gamma\""));
  EXPECT_THAT(image.status().message(), HasSubstr("alpha, beta"));

  auto untagged = Open("oci:" + layout_dir_, store_);
  ASSERT_TRUE(untagged);
  image = untagged->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_THAT(image.status().message(), HasSubstr("alpha, beta"));
}

TEST_F(OciLayoutTest, FollowsNestedIndexByPlatform) {
  LayoutWriter w(layout_dir_);
  Blob amd = w.AddImage({"amd layer"}, "amd64");
  Blob arm = w.AddImage({"arm layer"}, "arm", "v7");
  Blob arm64 = w.AddImage({"arm64 layer"}, "arm64", "v8");
  Blob index = w.AddIndex({{amd, PlatformJson("linux", "amd64")},
                           {arm, PlatformJson("linux", "arm", "v7")},
                           {arm64, PlatformJson("linux", "arm64", "v8")}});
  w.WriteIndex({{index, RefName("multi")}});

  const struct {
    std::string platform;
    Blob chosen;
  } cases[] = {{"linux/amd64", amd}, {"linux/arm/v7", arm}, {"linux/arm64", arm64}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.platform);
    auto source = Open("oci:" + layout_dir_ + ":multi", store_, c.platform);
    ASSERT_TRUE(source);
    auto image = source->Resolve();
    ASSERT_TRUE(image.ok()) << image.status().message();
    EXPECT_EQ(image->manifest_digest, c.chosen.digest);
  }
  auto source = Open("oci:" + layout_dir_ + ":multi", store_, "linux/ppc64le");
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(image.status().message(),
              HasSubstr("no image for platform linux/ppc64le (available: linux/amd64, "
                        "linux/arm/v7, linux/arm64/v8)"));
}

TEST_F(OciLayoutTest, BlobsDirMayBeASymlinkToASharedDirectory) {
  const std::string shared = tmp_.path() + "/shared-blobs";
  {
    LayoutWriter w(shared + "-layout");
    Blob manifest = w.AddImage({"shared layer"});
    w.WriteIndex({{manifest, RefName("s")}});
    ASSERT_EQ(::rename((shared + "-layout/blobs/sha256").c_str(), shared.c_str()), 0);
    ASSERT_TRUE(MakeDirs(layout_dir_ + "/blobs").ok());
    ASSERT_EQ(::symlink(shared.c_str(), (layout_dir_ + "/blobs/sha256").c_str()), 0);
    ASSERT_EQ(::rename((shared + "-layout/index.json").c_str(),
                       (layout_dir_ + "/index.json").c_str()),
              0);
    ASSERT_EQ(::rename((shared + "-layout/oci-layout").c_str(),
                       (layout_dir_ + "/oci-layout").c_str()),
              0);
  }
  auto source = Open("oci:" + layout_dir_ + ":s", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  auto fd = source->OpenBlob(image->layers[0].digest, image->layers[0].size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(ReadAll(*fd), "shared layer");
}

TEST_F(OciLayoutTest, CorruptedLayerIsDataLoss) {
  LayoutWriter w(layout_dir_);
  Blob manifest = w.AddImage({"good bytes"});
  w.WriteIndex({{manifest, RefName("t")}});
  auto source = Open("oci:" + layout_dir_ + ":t", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  const Digest layer = image->layers[0].digest;
  // Same size, different bytes.
  ASSERT_TRUE(WriteFileAtomic(w.BlobPath(layer), "evil bytes").ok());
  auto fd = source->OpenBlob(layer, image->layers[0].size);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(fd.status().message(), HasSubstr("blob " + layer.ToString() + ": digest mismatch"));
  EXPECT_THAT(fd.status().message(), HasSubstr("got " + Sha256Of("evil bytes").ToString()));
  std::array<std::byte, 4> buf;
  EXPECT_EQ(source->ReadBlobRange(layer, 0, buf, Deadline::Never()).status().code(),
            StatusCode::kDataLoss);

  // A different size is caught before hashing.
  ASSERT_TRUE(WriteFileAtomic(w.BlobPath(layer), "longer evil bytes").ok());
  fd = source->OpenBlob(layer, image->layers[0].size);
  EXPECT_EQ(fd.status().code(), StatusCode::kDataLoss);
}

TEST_F(OciLayoutTest, VerifiedOnceThenRehashedWhenReplaced) {
  LayoutWriter w(layout_dir_);
  Blob manifest = w.AddImage({"original"});
  w.WriteIndex({{manifest, RefName("t")}});
  auto source = Open("oci:" + layout_dir_ + ":t", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  const LayerDescriptor& l = image->layers[0];
  ASSERT_TRUE(source->OpenBlob(l.digest, l.size).ok());
  // Replaced by a new file (new inode) with other bytes: verified again, and refused.
  ASSERT_TRUE(WriteFileAtomic(w.BlobPath(l.digest), "ORIGINAL").ok());
  EXPECT_EQ(source->OpenBlob(l.digest, l.size).status().code(), StatusCode::kDataLoss);
}

TEST_F(OciLayoutTest, CorruptedManifestOrConfigIsDataLoss) {
  LayoutWriter w(layout_dir_);
  Blob config;
  Blob manifest = w.AddImage({"x"}, "amd64", "", &config);
  w.WriteIndex({{manifest, RefName("t")}});
  std::string bad = config.bytes;
  bad[bad.size() - 2] = ' ';
  ASSERT_TRUE(WriteFileAtomic(w.BlobPath(config.digest), bad).ok());
  auto source = Open("oci:" + layout_dir_ + ":t", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(image.status().message(), HasSubstr("config"));
  EXPECT_THAT(image.status().message(), HasSubstr(config.digest.ToString()));
}

TEST_F(OciLayoutTest, MissingLayoutAndBlobErrorsSayWhere) {
  auto source = Open("oci:" + tmp_.path() + "/nowhere", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(image.status().message(), HasSubstr("not an OCI image layout"));

  LayoutWriter w(layout_dir_);
  Blob manifest = w.AddImage({"gone"});
  w.WriteIndex({{manifest, RefName("t")}});
  ASSERT_EQ(::unlink(w.BlobPath(Sha256Of("gone")).c_str()), 0);
  source = Open("oci:" + layout_dir_ + ":t", store_);
  ASSERT_TRUE(source);
  image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  auto fd = source->OpenBlob(Sha256Of("gone"), 4);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(fd.status().message(), HasSubstr("is missing"));
}

TEST_F(OciLayoutTest, UnsupportedLayerTypeIsNamed) {
  LayoutWriter w(layout_dir_);
  Blob layer = w.AddBlob("opaque", "application/vnd.example.layer.v1");
  Blob config = w.AddBlob(
      "{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":{\"type\":\"layers\","
      "\"diff_ids\":[\"" + layer.digest.ToString() + "\"]}}",
      testing::kOciConfigType);
  Blob manifest = w.AddBlob("{\"schemaVersion\":2,\"mediaType\":\"" +
                                std::string(testing::kOciManifestType) + "\",\"config\":" +
                                config.Json() + ",\"layers\":[" + layer.Json() + "]}",
                            testing::kOciManifestType);
  w.WriteIndex({{manifest, RefName("t")}});
  auto source = Open("oci:" + layout_dir_ + ":t", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(image.status().message(), HasSubstr("application/vnd.example.layer.v1"));
  EXPECT_THAT(image.status().message(), HasSubstr("oci:" + layout_dir_ + ":t"));
}

TEST_F(OciLayoutTest, ConcurrentOpensAgree) {
  LayoutWriter w(layout_dir_);
  std::string big(3 << 20, 'z');
  Blob manifest = w.AddImage({big});
  w.WriteIndex({{manifest, RefName("t")}});
  auto source = Open("oci:" + layout_dir_ + ":t", store_);
  ASSERT_TRUE(source);
  auto image = source->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto fd = source->OpenBlob(image->layers[0].digest, image->layers[0].size);
      if (fd.ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
}

}  // namespace
}  // namespace lazyfs::fetch
