// Mirrors from registries.conf against two real registries, each behind a recording proxy: the
// mirror is asked first, and a failing mirror yields to the origin.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fetch/fetch.h"
#include "tests/fetch/registry_fixture.h"
#include "tests/fetch/test_layout.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/registry.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;
using lazyfs::testing::FaultProxy;
using lazyfs::testing::FaultRule;
using testing::Blob;
using testing::LayoutWriter;
using testing::RefName;
using testing::TempDir;

class MirrorTest : public testing::SharedRegistryTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(SharedRegistryTest::SetUp());
    auto mirror = lazyfs::testing::Registry::Start();
    ASSERT_TRUE(mirror.ok()) << "cannot start the mirror registry: " << mirror.status().message();
    mirror_ = std::move(*mirror);
    auto o = FaultProxy::Start(registry_->host());
    auto m = FaultProxy::Start(mirror_->host());
    ASSERT_TRUE(o.ok() && m.ok());
    origin_proxy_ = std::move(*o);
    mirror_proxy_ = std::move(*m);
    // One image, in the origin as mir/img and in the mirror under its "cache/" namespace, as a
    // pull-through cache keeps it.
    LayoutWriter w(tmp_.path() + "/layout");
    manifest_ = w.AddImage({"mirrored layer"}, "amd64");
    w.WriteIndex({{manifest_, RefName("t")}});
    ASSERT_TRUE(lazyfs::testing::PushOciLayout(w.dir(), "t", registry_->host(), "mir/img", "v1").ok());
    ASSERT_TRUE(
        lazyfs::testing::PushOciLayout(w.dir(), "t", mirror_->host(), "cache/mir/img", "v1").ok());
    conf_ = tmp_.path() + "/registries.conf";
    ASSERT_TRUE(WriteFileAtomic(conf_, "[[registry]]\nprefix = \"" + origin_proxy_->host() +
                                           "/mir\"\n[[registry.mirror]]\nlocation = \"" +
                                           mirror_proxy_->host() + "/cache/mir\"\n")
                    .ok());
  }

  // Pulls mir/img`what` (":v1" or "@sha256:...") from the origin's name, mirrors as conf_ says.
  Result<std::string> Pull(int max_attempts = 5, const std::string& what = ":v1") {
    LAZYFS_ASSIGN_OR_RETURN(ImageRef ref,
                            ImageRef::Parse("docker://" + origin_proxy_->host() + "/mir/img" + what));
    SourceOptions options;
    options.store = StoreLayout{tmp_.path() + "/store" + std::to_string(++pulls_)};
    options.docker_config = "/nonexistent";
    options.registries_conf = conf_;
    options.retry_initial_delay_ms = 20;
    options.max_attempts = max_attempts;
    LAZYFS_ASSIGN_OR_RETURN(options.platform, Platform::Parse("linux/amd64"));
    LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<ImageSource> source, OpenImageSource(ref, options));
    LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor image, source->Resolve());
    if (image.manifest_digest != manifest_.digest) return InternalError("wrong manifest");
    LAZYFS_ASSIGN_OR_RETURN(Fd fd, source->OpenBlob(image.layers[0].digest, image.layers[0].size));
    std::string out(image.layers[0].size, '\0');
    LAZYFS_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), out.data(), out.size(), 0));
    out.resize(n);
    return out;
  }

  TempDir tmp_;
  std::unique_ptr<lazyfs::testing::Registry> mirror_;
  std::unique_ptr<FaultProxy> origin_proxy_, mirror_proxy_;
  Blob manifest_;
  std::string conf_;
  int pulls_ = 0;
};

TEST_F(MirrorTest, MirrorHoldingTheImageIsUsedFirst) {
  auto layer = Pull();
  ASSERT_TRUE(layer.ok()) << layer.status().message();
  EXPECT_EQ(*layer, "mirrored layer");
  EXPECT_EQ(origin_proxy_->Requests().size(), 0u) << "the origin was not needed";
  EXPECT_EQ(mirror_proxy_->RequestsFor("/v2/cache/mir/img/manifests/v1").size(), 1u);
  EXPECT_EQ(mirror_proxy_->RequestsFor("/v2/cache/mir/img/blobs/").size(), 2u);  // config, layer
}

TEST_F(MirrorTest, FailingMirrorFallsBackToTheOrigin) {
  FaultRule down;
  down.path_contains = "/v2/";
  down.status = 503;
  down.times = -1;
  mirror_proxy_->AddRule(down);
  auto layer = Pull(/*max_attempts=*/2);
  ASSERT_TRUE(layer.ok()) << layer.status().message();
  EXPECT_EQ(*layer, "mirrored layer");
  EXPECT_EQ(mirror_proxy_->RequestsFor("/manifests/v1").size(), 2u);  // tried, with a retry
  EXPECT_EQ(origin_proxy_->RequestsFor("/v2/mir/img/manifests/v1").size(), 1u);
  EXPECT_EQ(origin_proxy_->RequestsFor("/v2/mir/img/blobs/").size(), 2u);
}

TEST_F(MirrorTest, MirrorWithoutTheImageFallsBackToTheOrigin) {
  ASSERT_TRUE(WriteFileAtomic(conf_, "[[registry]]\nprefix = \"" + origin_proxy_->host() +
                                         "/mir\"\n[[registry.mirror]]\nlocation = \"" +
                                         mirror_proxy_->host() + "/empty\"\n")
                  .ok());
  auto layer = Pull();
  ASSERT_TRUE(layer.ok()) << layer.status().message();
  EXPECT_EQ(*layer, "mirrored layer");
  EXPECT_EQ(mirror_proxy_->RequestsFor("/v2/empty/img/manifests/v1").size(), 1u);
  EXPECT_EQ(origin_proxy_->RequestsFor("/v2/mir/img/blobs/").size(), 2u);
}

TEST_F(MirrorTest, MirrorLosingABlobFallsBackForThatBlob) {
  const Digest layer_digest = Sha256Of("mirrored layer");
  FaultRule gone;
  gone.path_contains = "/blobs/" + layer_digest.ToString();
  gone.status = 404;
  gone.times = -1;
  mirror_proxy_->AddRule(gone);
  auto layer = Pull();
  ASSERT_TRUE(layer.ok()) << layer.status().message();
  EXPECT_EQ(*layer, "mirrored layer");
  EXPECT_EQ(origin_proxy_->RequestsFor("/manifests/").size(), 0u);
  EXPECT_EQ(origin_proxy_->RequestsFor("/blobs/" + layer_digest.ToString()).size(), 1u);
}

// A mirror's tags may be stale or forged, its digests are checked: with mirror-by-digest-only
// a tag is resolved at the origin without asking the mirror at all, a digest at the mirror.
TEST_F(MirrorTest, DigestOnlyMirrorIsNeverAskedForATag) {
  ASSERT_TRUE(WriteFileAtomic(conf_, "[[registry]]\nprefix = \"" + origin_proxy_->host() +
                                         "/mir\"\nmirror-by-digest-only = true\n"
                                         "[[registry.mirror]]\nlocation = \"" +
                                         mirror_proxy_->host() + "/cache/mir\"\n")
                  .ok());
  auto by_tag = Pull();
  ASSERT_TRUE(by_tag.ok()) << by_tag.status().message();
  EXPECT_EQ(*by_tag, "mirrored layer");
  EXPECT_EQ(mirror_proxy_->Requests().size(), 0u) << "the mirror was asked during a pull by tag";
  EXPECT_EQ(origin_proxy_->RequestsFor("/v2/mir/img/manifests/v1").size(), 1u);

  const size_t origin_before = origin_proxy_->Requests().size();
  auto by_digest = Pull(5, "@" + manifest_.digest.ToString());
  ASSERT_TRUE(by_digest.ok()) << by_digest.status().message();
  EXPECT_EQ(*by_digest, "mirrored layer");
  EXPECT_EQ(mirror_proxy_->RequestsFor("/v2/cache/mir/img/manifests/" + manifest_.digest.ToString())
                .size(),
            1u);
  EXPECT_EQ(origin_proxy_->Requests().size(), origin_before) << "the origin was not needed";
}

TEST_F(MirrorTest, BlockedRegistryIsRefused) {
  ASSERT_TRUE(WriteFileAtomic(conf_, "[[registry]]\nprefix = \"" + origin_proxy_->host() +
                                         "\"\nblocked = true\n")
                  .ok());
  auto layer = Pull();
  ASSERT_FALSE(layer.ok());
  EXPECT_EQ(layer.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(layer.status().message(), HasSubstr("blocked by " + conf_));
  EXPECT_EQ(origin_proxy_->Requests().size(), 0u);
}

}  // namespace
}  // namespace lazyfs::fetch
