// End to end, index artifacts: `lazyfs index push` publishes an image's layer indexes to a real
// registry (Debian's docker-registry, which has no referrers API: the referrers tag is used), and
// a first mount from an empty store, through a proxy that counts the bytes the registry sends,
// reads the manifest, the config, the artifact and the chunks of the file read: no layer is
// downloaded. An artifact that does not describe the image is refused with a clear warning and
// the layers are indexed from their blobs; --index-artifacts=false ignores artifacts. Needs root
// and /dev/fuse; fails saying so when they are missing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <sstream>

#include "base/digest.h"
#include "base/fd.h"
#include "fetch/fetch.h"
#include "index/layer_artifact.h"
#include "index/tree.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/counting_proxy.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"
#include "tests/support/registry.h"

namespace lazyfs::testing {
namespace {

constexpr int kFiles = 300;

std::string Small(int i) {
  std::string s = "small file " + std::to_string(i) + "\n";
  while (s.size() < 700 + static_cast<size_t>(i % 200)) s += "line " + std::to_string(i) + "\n";
  return s;
}

class ArtifactTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::geteuid(), 0u) << "index artifact end-to-end tests mount FUSE: run them as root";
    ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0) << "/dev/fuse is missing: no FUSE mounts";
    ASSERT_EQ(::access(LazyfsBinary().c_str(), X_OK), 0)
        << "no lazyfs binary at " << LazyfsBinary();
  }

  void SetUp() override {
    auto reg = Registry::Start();
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
    auto proxy = CountingProxy::Start(registry_->host());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
    dir_ = MakeTempDir("lazyfs-artifact-test");
    store_ = dir_ + "/store";
    mnt_ = dir_ + "/mnt";
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);

    // Two gzip layers: small text files, then big incompressible ones (so that a download of a
    // layer shows in the byte count); the upper one replaces and deletes files of the lower.
    std::vector<Entry> lower{Dir("etc"), Dir("opt")}, upper{Dir("usr")};
    for (int i = 0; i < kFiles; ++i) lower.push_back(File("etc/f" + std::to_string(i), Small(i)));
    for (int i = 0; i < 4; ++i) {
      lower.push_back(File("opt/big" + std::to_string(i), PseudoRandomBytes(3 << 20, 50 + i)));
    }
    lower.push_back(Symlink("etc/link", "f1"));
    upper.push_back(File("usr/tool", PseudoRandomBytes(5 << 20, 90), 0755));
    upper.push_back(Whiteout("etc/f3"));
    upper.push_back(File("etc/f4", "replaced\n"));
    for (auto* entries : {&lower, &upper}) {
      Layer l;
      l.entries = *entries;
      l.compression = Compression::kGzip;
      spec_.layers.push_back(l);
    }
    auto digest = WriteOciLayout(spec_, dir_ + "/layout", "1");
    ASSERT_TRUE(digest.ok()) << digest.status().ToString();
    manifest_ = *digest;
    auto built = BuildImage(spec_);
    ASSERT_TRUE(built.ok());
    built_ = *built;
    Status s = PushOciLayout(dir_ + "/layout", "1", registry_->host(), "art/app", "1");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void TearDown() override {
    ForceUnmount(mnt_);
    proxy_.reset();
    registry_.reset();
    RemoveTree(dir_).IgnoreError();
  }

  // `lazyfs index push` from a store of its own, straight to the registry.
  CommandResult Push(const std::string& store) {
    return RunLazyfs({"index", "push", "--store", store, "-q",
                      "docker://" + registry_->host() + "/art/app:1"});
  }

  CommandResult Mount(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"mount", "--store", store_};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back("docker://" + proxy_->host() + "/art/app:1");
    args.push_back(mnt_);
    return RunLazyfs(args);
  }

  uint64_t ImageBytes() const {
    uint64_t n = 0;
    for (const BuiltLayer& l : built_.layers) n += l.blob.size();
    return n;
  }

  bool LayerDownloaded(const BuiltLayer& l) const {
    return ::access((store_ + "/blobs/sha256/" + l.digest.Hex()).c_str(), F_OK) == 0;
  }

  void ExpectTreeAsBuilt() {
    auto want = ExpectedListing(spec_);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    auto got = ListDirectory(mnt_);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(DiffListings(*want, *got), "");
  }

  // The image's source at the registry, for tests that publish crafted artifacts.
  std::unique_ptr<fetch::ImageSource> Source(ImageDescriptor* image) {
    fetch::SourceOptions so;
    so.store = StoreLayout::At(dir_ + "/crafter");
    auto ref = fetch::ImageRef::Parse("docker://" + registry_->host() + "/art/app:1");
    EXPECT_TRUE(ref.ok());
    auto source = fetch::OpenImageSource(*ref, so);
    EXPECT_TRUE(source.ok()) << source.status().ToString();
    auto resolved = (*source)->Resolve();
    EXPECT_TRUE(resolved.ok()) << resolved.status().ToString();
    *image = *resolved;
    return std::move(*source);
  }

  // Publishes `blobs` as lazyfs's index artifact of the image.
  Result<fetch::Descriptor> PublishArtifact(fetch::ImageSource& source,
                                            const ImageDescriptor& image,
                                            const std::vector<fetch::BlobToPush>& blobs) {
    fetch::Descriptor subject;
    subject.media_type = image.manifest_media_type;
    subject.digest = image.manifest_digest;
    LAZYFS_ASSIGN_OR_RETURN(std::string raw,
                            source.ReadSmallBlob(image.manifest_digest, 4 << 20));
    subject.size = raw.size();
    return source.PushReferrer(subject, index::kIndexArtifactType, blobs,
                               {{"dev.lazyfs.index.version", "1"}});
  }

  // Every layer's index, exported from a store that indexed the image from its layers, passed
  // through `edit` (a lie) and packed as artifact blobs. Empty on failure (with the failure
  // reported).
  std::vector<fetch::BlobToPush> EditedIndexes(
      const ImageDescriptor& image, const std::function<void(index::LayerArtifact&)>& edit) {
    const std::string store = dir_ + "/honest";
    CommandResult indexed =
        RunLazyfs({"inspect", "--store", store, "-q", "docker://" + registry_->host() + "/art/app:1"});
    EXPECT_EQ(indexed.exit_code, 0) << indexed.err;
    index::IndexOptions io;
    io.store = StoreLayout::At(store);
    auto idx = index::Index::Open(io);
    EXPECT_TRUE(idx.ok()) << idx.status().ToString();
    std::vector<fetch::BlobToPush> blobs;
    if (!idx.ok()) return blobs;
    for (const LayerDescriptor& layer : image.layers) {
      auto exported = (*idx)->ExportLayer(layer);
      EXPECT_TRUE(exported.ok()) << exported.status().ToString();
      if (!exported.ok()) return {};
      auto art = index::DecodeLayerArtifact(layer, *exported, io);
      EXPECT_TRUE(art.ok()) << art.status().ToString();
      if (!art.ok()) return {};
      edit(*art);
      auto lying = index::EncodeLayerArtifact(layer, *art);
      EXPECT_TRUE(lying.ok());
      fetch::BlobToPush blob;
      blob.bytes = lying.ok() ? *lying : "";
      blob.digest = Sha256Of(blob.bytes);
      blob.media_type = std::string(index::kLayerIndexMediaType);
      blob.annotations[std::string(index::kLayerDigestAnnotation)] = layer.digest.ToString();
      blobs.push_back(std::move(blob));
    }
    return blobs;
  }

  std::unique_ptr<Registry> registry_;
  std::unique_ptr<CountingProxy> proxy_;
  std::string dir_, store_, mnt_;
  ImageSpec spec_;
  Digest manifest_;
  BuiltImage built_;
};

TEST_F(ArtifactTest, AFirstMountThroughAPushedArtifactDownloadsNoLayer) {
  CommandResult p = Push(dir_ + "/pusher");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  auto artifact = Digest::Parse(p.out.substr(0, p.out.find('\n')));
  ASSERT_TRUE(artifact.ok()) << "index push printed " << p.out;

  proxy_->Reset();
  CommandResult m = Mount();
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.err.find("index artifact " + artifact->ToString()), std::string::npos) << m.err;
  const uint64_t mount_bytes = proxy_->bytes_down();
  EXPECT_EQ(Slurp(mnt_ + "/etc/f123"), Small(123));
  const uint64_t fetched = proxy_->bytes_down();
  std::printf("image of %llu compressed bytes: mount %llu bytes, mount + cat %llu bytes\n",
              static_cast<unsigned long long>(ImageBytes()),
              static_cast<unsigned long long>(mount_bytes),
              static_cast<unsigned long long>(fetched));
  for (const BuiltLayer& l : built_.layers) {
    EXPECT_FALSE(LayerDownloaded(l)) << "layer " << l.digest.Short() << " was downloaded";
  }
  // The small files sit before the big ones: their chunk's span is a sliver of the image.
  EXPECT_LT(fetched, ImageBytes() / 4) << "the first mount and one cat cost a download";
  // Every file, big ones included, reads back as built: through the artifact's checkpoints,
  // each chunk checked against the artifact's digest.
  EXPECT_EQ(Slurp(mnt_ + "/opt/big2"), PseudoRandomBytes(3 << 20, 52));
  EXPECT_EQ(Slurp(mnt_ + "/usr/tool"), PseudoRandomBytes(5 << 20, 90));
  ExpectTreeAsBuilt();
  EXPECT_EQ(RunLazyfs({"umount", mnt_}).exit_code, 0);
}

TEST_F(ArtifactTest, APushIsTheSameBytesFromAnyStore) {
  CommandResult a = Push(dir_ + "/pusher-a");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  CommandResult b = Push(dir_ + "/pusher-b");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.out, b.out) << "two stores that indexed the same image published different bytes";
}

TEST_F(ArtifactTest, AnArtifactNamingALayerTheImageDoesNotHaveIsRefused) {
  // A referrer of the image's manifest, of lazyfs's artifact type, whose one blob claims to be
  // the index of a layer that is not the image's.
  ImageDescriptor image;
  auto source = Source(&image);
  ASSERT_TRUE(source);
  fetch::BlobToPush blob;
  blob.bytes = "not an index";
  blob.digest = Sha256Of(blob.bytes);
  blob.media_type = std::string(index::kLayerIndexMediaType);
  blob.annotations[std::string(index::kLayerDigestAnnotation)] =
      Sha256Of("another layer").ToString();
  auto pushed = PublishArtifact(*source, image, {blob});
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();

  CommandResult m = Mount({"-q"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.err.find("index artifact " + pushed->digest.ToString() + " refused"),
            std::string::npos)
      << m.err;
  EXPECT_NE(m.err.find("which the image does not have"), std::string::npos) << m.err;
  // Indexed from the layers instead, and served as built.
  for (const BuiltLayer& l : built_.layers) EXPECT_TRUE(LayerDownloaded(l));
  ExpectTreeAsBuilt();
  EXPECT_EQ(RunLazyfs({"umount", mnt_}).exit_code, 0);
}

TEST_F(ArtifactTest, AnArtifactWithALyingChunkDigestIsCaughtAndItsLayerRefused) {
  // The honest indexes with one chunk digest of the lower layer's opt/big1 changed: the
  // artifact an attacker with push rights could publish.
  const std::string big1 = PseudoRandomBytes(3 << 20, 51);
  ImageDescriptor image;
  auto source = Source(&image);
  ASSERT_TRUE(source);
  std::vector<fetch::BlobToPush> blobs = EditedIndexes(image, [&](index::LayerArtifact& art) {
    for (index::FileLocation& l : art.locations) {
      if (l.digest == Sha256Of(big1) && l.chunks.size() > 1) l.chunks[1] = Sha256Of("a lie");
    }
  });
  ASSERT_EQ(blobs.size(), image.layers.size());
  auto pushed = PublishArtifact(*source, image, blobs);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();

  // The mount imports it (nothing is wrong with its shape), and the read of the lie fails.
  CommandResult m = Mount();
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.err.find("index artifact " + pushed->digest.ToString()), std::string::npos) << m.err;
  EXPECT_FALSE(Slurp(mnt_ + "/opt/big1") == big1)
      << "a chunk that is not what the artifact says was served";
  EXPECT_EQ(RunLazyfs({"umount", mnt_}).exit_code, 0);
  // From then on the layer is refused, in another process too, with the artifact named.
  CommandResult c = RunLazyfs({"cat", "--store", store_, "docker://" + proxy_->host() + "/art/app:1",
                               "/etc/f5"});
  EXPECT_NE(c.exit_code, 0);
  EXPECT_NE(c.err.find("lies"), std::string::npos) << c.err;
  // The upper layer, whose index told the truth, still reads.
  CommandResult t = RunLazyfs({"cat", "--store", store_, "docker://" + proxy_->host() + "/art/app:1",
                               "/usr/tool"});
  EXPECT_EQ(t.exit_code, 0) << t.err;
}

TEST_F(ArtifactTest, MaterializeThroughAnArtifactChecksEveryLayerAndWritesTheImage) {
  CommandResult p = Push(dir_ + "/pusher");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const std::string img = dir_ + "/out.img";
  CommandResult r = RunLazyfs({"materialize", "--store", store_,
                               "docker://" + proxy_->host() + "/art/app:1", img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("index artifact"), std::string::npos) << r.err;
  CommandResult fsck = RunCommand({"e2fsck", "-fn", img});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  auto want = ExpectedListing(spec_);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  auto got = ListExt4Image(img, dir_ + "/loop");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(DiffListings(*want, *got), "");
}

TEST_F(ArtifactTest, MaterializeRefusesAnArtifactWhoseEntriesLie) {
  // etc/f7 claimed setuid root: an artifact that would put a setuid file in the guest's image.
  ImageDescriptor image;
  auto source = Source(&image);
  ASSERT_TRUE(source);
  std::vector<fetch::BlobToPush> blobs = EditedIndexes(image, [](index::LayerArtifact& art) {
    for (index::LayerEntry& e : art.entries) {
      if (e.path == "etc/f7") e.mode |= 04000;
    }
  });
  ASSERT_EQ(blobs.size(), image.layers.size());
  auto pushed = PublishArtifact(*source, image, blobs);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  const std::string img = dir_ + "/out.img";
  CommandResult r = RunLazyfs({"materialize", "--store", store_, "-q",
                               "docker://" + proxy_->host() + "/art/app:1", img});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("index artifact " + blobs[0].digest.ToString()), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("lies"), std::string::npos) << r.err;
  EXPECT_NE(::access(img.c_str(), F_OK), 0) << "an image was written from a lying artifact";
}

TEST_F(ArtifactTest, IndexArtifactsFalseIndexesFromTheLayers) {
  CommandResult p = Push(dir_ + "/pusher");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  CommandResult m = Mount({"--index-artifacts=false"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_EQ(m.err.find("index artifact"), std::string::npos) << m.err;
  for (const BuiltLayer& l : built_.layers) EXPECT_TRUE(LayerDownloaded(l));
  ExpectTreeAsBuilt();
  EXPECT_EQ(RunLazyfs({"umount", mnt_}).exit_code, 0);
}

}  // namespace
}  // namespace lazyfs::testing
