// ImageSource for docker:// against Debian's real docker-registry on 127.0.0.1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <dirent.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/cas_dir.h"
#include "fetch/fetch.h"
#include "tests/fetch/registry_fixture.h"
#include "tests/fetch/test_layout.h"
#include "tests/fetch/token_front.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/registry.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::Blob;
using testing::LayoutWriter;
using testing::PlatformJson;
using testing::RefName;
using testing::TempDir;

std::string ReadAll(const Fd& fd) {
  std::string out(1 << 20, '\0');
  auto n = PreadFull(fd.get(), out.data(), out.size(), 0);
  EXPECT_TRUE(n.ok());
  out.resize(n.ok() ? *n : 0);
  return out;
}

Result<std::unique_ptr<ImageSource>> OpenSource(const std::string& ref_text,
                                                const std::string& store,
                                                const std::string& docker_config = "/nonexistent",
                                                const std::string& platform = "linux/amd64") {
  LAZYFS_ASSIGN_OR_RETURN(ImageRef ref, ImageRef::Parse(ref_text));
  SourceOptions options;
  options.store = StoreLayout{store};
  options.docker_config = docker_config;
  options.connect_timeout_s = 5;
  options.low_speed_timeout_s = 10;
  options.retry_initial_delay_ms = 50;
  LAZYFS_ASSIGN_OR_RETURN(options.platform, Platform::Parse(platform));
  return OpenImageSource(ref, options);
}

size_t FilesIn(const std::string& dir) {
  size_t n = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
  }
  return n;
}

class RegistryTest : public testing::SharedRegistryTest {
 protected:

  // Builds a one-image layout and pushes it as REPO:tag; returns the manifest.
  Blob PushImage(const std::string& repo, const std::string& tag,
                 const std::vector<std::string>& layers, Blob* config = nullptr) {
    LayoutWriter w(tmp_.path() + "/layout-" + repo);
    Blob manifest = w.AddImage(layers, "amd64", "", config);
    w.WriteIndex({{manifest, RefName("t")}});
    Status s = lazyfs::testing::PushOciLayout(w.dir(), "t", registry_->host(), repo, tag);
    EXPECT_TRUE(s.ok()) << s.message();
    return manifest;
  }

  std::string Ref(const std::string& repo_and_tag) const {
    return "docker://" + registry_->host() + "/" + repo_and_tag;
  }

  TempDir tmp_;
  std::string store_ = tmp_.path() + "/store";
};

TEST_F(RegistryTest, ResolveByTagAndDigestThenOpenBlob) {
  Blob config;
  Blob manifest = PushImage("fetch/basic", "v1", {"first layer", "second layer"}, &config);

  auto source = OpenSource(Ref("fetch/basic:v1"), store_);
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->reference, Ref("fetch/basic:v1"));
  EXPECT_EQ(image->manifest_digest, manifest.digest);
  EXPECT_EQ(image->config_digest, config.digest);
  EXPECT_EQ(image->platform, "linux/amd64");
  ASSERT_EQ(image->layers.size(), 2u);
  EXPECT_EQ(image->layers[1].digest, Sha256Of("second layer"));
  EXPECT_EQ(image->layers[1].diff_id, Sha256Of("second layer"));

  auto store = CasDir::Open(store_ + "/blobs");
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->Contains(manifest.digest));
  EXPECT_TRUE((*store)->Contains(config.digest));
  auto stored = ReadFileToString((*store)->PathFor(manifest.digest));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(*stored, manifest.bytes);  // raw bytes as received

  const LayerDescriptor& l = image->layers[0];
  EXPECT_FALSE((*store)->Contains(l.digest));
  auto fd = (*source)->OpenBlob(l.digest, l.size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(ReadAll(*fd), "first layer");
  EXPECT_TRUE((*store)->Contains(l.digest));
  std::array<std::byte, 5> buf;
  auto n = (*source)->ReadBlobRange(image->layers[1].digest, 7, buf, Deadline::Never());
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *n), "layer");
  auto raw_config = (*source)->ReadSmallBlob(config.digest, 1 << 20);
  ASSERT_TRUE(raw_config.ok()) << raw_config.status().message();
  EXPECT_EQ(*raw_config, config.bytes);

  // By digest, into a fresh store.
  auto by_digest = OpenSource(Ref("fetch/basic@" + manifest.digest.ToString()),
                              tmp_.path() + "/store2");
  ASSERT_TRUE(by_digest.ok()) << by_digest.status().message();
  auto image2 = (*by_digest)->Resolve();
  ASSERT_TRUE(image2.ok()) << image2.status().message();
  EXPECT_EQ(image2->manifest_digest, manifest.digest);
  EXPECT_EQ(image2->layers.size(), 2u);
}

TEST_F(RegistryTest, IndexResolvedByPlatform) {
  LayoutWriter w(tmp_.path() + "/multi");
  Blob amd = w.AddImage({"amd64 bytes"}, "amd64");
  Blob arm = w.AddImage({"arm v7 bytes"}, "arm", "v7");
  Blob index = w.AddIndex(
      {{amd, PlatformJson("linux", "amd64")}, {arm, PlatformJson("linux", "arm", "v7")}});
  w.WriteIndex({{index, RefName("multi")}});
  ASSERT_TRUE(
      lazyfs::testing::PushOciLayout(w.dir(), "multi", registry_->host(), "fetch/multi", "m")
          .ok());

  auto source = OpenSource(Ref("fetch/multi:m"), store_, "/nonexistent", "linux/arm/v7");
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->manifest_digest, arm.digest);
  EXPECT_EQ(image->platform, "linux/arm/v7");
  auto fd = (*source)->OpenBlob(image->layers[0].digest, image->layers[0].size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(ReadAll(*fd), "arm v7 bytes");
  auto store = CasDir::Open(store_ + "/blobs");
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->Contains(index.digest));

  auto none = OpenSource(Ref("fetch/multi:m"), store_, "/nonexistent", "linux/riscv64");
  ASSERT_TRUE(none.ok());
  auto missing = (*none)->Resolve();
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("linux/amd64, linux/arm/v7"));
}

TEST_F(RegistryTest, MissingTagAndRepository) {
  PushImage("fetch/tags", "v1", {"x"});
  auto source = OpenSource(Ref("fetch/tags:nope"), store_);
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(image.status().message(),
            "registry " + registry_->host() + ": repository fetch/tags: manifest \"nope\": not found");

  source = OpenSource(Ref("fetch/no-such-repo:v1"), store_);
  ASSERT_TRUE(source.ok());
  image = (*source)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(image.status().message(), HasSubstr("fetch/no-such-repo"));
}

TEST_F(RegistryTest, BlobCorruptedInRegistryIsDataLossAndNotStored) {
  PushImage("fetch/corrupt", "v1", {"pristine layer bytes"});
  const Digest layer = Sha256Of("pristine layer bytes");
  ASSERT_TRUE(WriteFileAtomic(registry_->BlobDataPath(layer.ToString()), "tampered layer bytes")
                  .ok());
  auto source = OpenSource(Ref("fetch/corrupt:v1"), store_);
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  auto fd = (*source)->OpenBlob(layer, image->layers[0].size);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(fd.status().message(), HasSubstr("registry " + registry_->host()));
  EXPECT_THAT(fd.status().message(), HasSubstr("blob " + layer.ToString()));
  EXPECT_THAT(fd.status().message(), HasSubstr("digest mismatch"));
  EXPECT_THAT(fd.status().message(), HasSubstr(Sha256Of("tampered layer bytes").ToString()));
  auto store = CasDir::Open(store_ + "/blobs");
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->Contains(layer));
  EXPECT_EQ(FilesIn(store_ + "/blobs/tmp"), 0u);

  // A longer body than the manifest states is cut off and refused.
  ASSERT_TRUE(WriteFileAtomic(registry_->BlobDataPath(layer.ToString()),
                              "pristine layer bytes and then some more")
                  .ok());
  fd = (*source)->OpenBlob(layer, image->layers[0].size);
  EXPECT_EQ(fd.status().code(), StatusCode::kDataLoss);
  EXPECT_FALSE((*store)->Contains(layer));
  EXPECT_EQ(FilesIn(store_ + "/blobs/tmp"), 0u);
}

TEST_F(RegistryTest, ConfigLongerThanItsDescriptorIsCutOffAndRejected) {
  Blob config;
  PushImage("fetch/longconfig", "v1", {"layer under a long config"}, &config);
  // The registry serves 5 MiB where the manifest promises config.size bytes: lazyfs stops
  // reading at the promised size and stores nothing.
  ASSERT_TRUE(WriteFileAtomic(registry_->BlobDataPath(config.digest.ToString()),
                              config.bytes + std::string(5 << 20, ' '))
                  .ok());
  auto source = OpenSource(Ref("fetch/longconfig:v1"), store_);
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kDataLoss) << image.status().message();
  EXPECT_THAT(image.status().message(),
              HasSubstr("sent more than " + std::to_string(config.size) + " bytes"));
  EXPECT_THAT(image.status().message(), HasSubstr("registry " + registry_->host()));
  auto store = CasDir::Open(store_ + "/blobs");
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->Contains(config.digest));
}

TEST_F(RegistryTest, BlobCorruptedInStoreIsFetchedAgain) {
  PushImage("fetch/storefix", "v1", {"layer kept in the store"});
  const Digest layer = Sha256Of("layer kept in the store");
  {
    auto source = OpenSource(Ref("fetch/storefix:v1"), store_);
    ASSERT_TRUE(source.ok());
    auto image = (*source)->Resolve();
    ASSERT_TRUE(image.ok()) << image.status().message();
    ASSERT_TRUE((*source)->OpenBlob(layer, image->layers[0].size).ok());
  }
  auto store = CasDir::Open(store_ + "/blobs");
  ASSERT_TRUE(store.ok());
  const std::string path = (*store)->PathFor(layer);
  ASSERT_TRUE(WriteFileAtomic(path, "LAYER KEPT IN THE STORE").ok());

  auto source = OpenSource(Ref("fetch/storefix:v1"), store_);
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  auto fd = (*source)->OpenBlob(layer, image->layers[0].size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(ReadAll(*fd), "layer kept in the store");
  auto again = ReadFileToString(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, "layer kept in the store");
}

TEST_F(RegistryTest, ConcurrentOpenBlobFetchesOnce) {
  std::string big(2 << 20, 'q');
  PushImage("fetch/concurrent", "v1", {big});
  auto source = OpenSource(Ref("fetch/concurrent:v1"), store_);
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto fd = (*source)->OpenBlob(image->layers[0].digest, image->layers[0].size);
      if (fd.ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(FilesIn(store_ + "/blobs/tmp"), 0u);
}

TEST_F(RegistryTest, ManifestDigestMismatchByDigest) {
  Blob manifest = PushImage("fetch/bydigest", "v1", {"d"});
  // The registry stores manifests by digest; corrupting its copy on disk makes it serve bytes
  // that do not hash to the digest asked for.
  const std::string path = registry_->BlobDataPath(manifest.digest.ToString());
  std::string tampered = manifest.bytes;
  tampered.insert(tampered.size() - 1, " ");
  ASSERT_TRUE(WriteFileAtomic(path, tampered).ok());
  auto source = OpenSource(Ref("fetch/bydigest@" + manifest.digest.ToString()), store_);
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kDataLoss) << image.status().message();
  EXPECT_THAT(image.status().message(), HasSubstr("digest mismatch"));
}

TEST(RegistryUnreachableTest, UnavailableNamingTheRegistry) {
  TempDir tmp;
  auto source = OpenSource("docker://127.0.0.1:1/foo/bar:latest", tmp.path() + "/store");
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(image.status().message(),
            "registry 127.0.0.1:1: repository foo/bar: manifest \"latest\": gave up after 5 "
            "attempts: cannot reach registry 127.0.0.1:1 (connection refused)");
}

// --- basic auth -----------------------------------------------------------------------------

// base64 of user:password, written out by hand to stay independent of fetch's encoder.
std::string UserPass64(const std::string& user, const std::string& password) {
  std::string auth;
  {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const std::string in = user + ":" + password;
    for (size_t i = 0; i < in.size(); i += 3) {
      uint32_t v = static_cast<uint8_t>(in[i]) << 16;
      if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
      if (i + 2 < in.size()) v |= static_cast<uint8_t>(in[i + 2]);
      auth += kAlphabet[v >> 18];
      auth += kAlphabet[(v >> 12) & 63];
      auth += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
      auth += i + 2 < in.size() ? kAlphabet[v & 63] : '=';
    }
  }
  return auth;
}

std::string WriteDockerConfig(const std::string& dir, const std::string& key,
                              const std::string& user, const std::string& password) {
  const std::string auth = UserPass64(user, password);
  const std::string path = dir + "/config.json";
  EXPECT_TRUE(WriteFileAtomic(path, "{\"auths\":{\"other.example\":{\"auth\":\"eDp5\"},\"" + key +
                                        "\":{\"auth\":\"" + auth + "\"}}}")
                  .ok());
  return path;
}

// A registry that demands `user`/`password`, holding a one-layer image (layer bytes `layer`)
// pushed as REPO:v1 over `scheme` ("http://" or "https://").
struct PrivateRegistry {
  std::unique_ptr<lazyfs::testing::Registry> registry;
  Blob manifest;
  std::string layer;
  std::string host() const { return registry->host(); }
};

void StartPrivateRegistry(const TempDir& tmp, bool tls, const std::string& user,
                          const std::string& password, const std::string& repo,
                          PrivateRegistry* out) {
  lazyfs::testing::RegistryOptions options;
  options.tls = tls;
  options.user = user;
  options.password = password;
  auto registry = lazyfs::testing::Registry::Start(options);
  ASSERT_TRUE(registry.ok()) << registry.status().message();
  out->registry = std::move(*registry);
  out->layer = "layer of " + repo;
  LayoutWriter w(tmp.path() + "/layout");
  out->manifest = w.AddImage({out->layer});
  w.WriteIndex({{out->manifest, RefName("t")}});
  const std::string scheme = tls ? "https://" : "";
  Status pushed = lazyfs::testing::PushOciLayout(w.dir(), "t", scheme + out->host(), repo, "v1",
                                                 user, password);
  ASSERT_TRUE(pushed.ok()) << pushed.message();
}

// Resolves `ref` with the docker config at `config` and checks it is `reg`'s image.
void ExpectPulls(const PrivateRegistry& reg, const std::string& ref, const std::string& store,
                 const std::string& config) {
  auto source = OpenSource(ref, store, config);
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->manifest_digest, reg.manifest.digest);
  auto fd = (*source)->OpenBlob(image->layers[0].digest, image->layers[0].size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(ReadAll(*fd), reg.layer);
}

TEST(RegistryAuthTest, BasicCredentialsFromDockerConfig) {
  TempDir tmp;
  PrivateRegistry reg;
  ASSERT_NO_FATAL_FAILURE(
      StartPrivateRegistry(tmp, /*tls=*/false, "lazy", "s3cret-pass", "priv/img", &reg));
  const std::string host = reg.host();
  const std::string ref = "docker://" + host + "/priv/img:v1";
  for (const std::string& key : {host, "https://" + host + "/v1/", "http://" + host}) {
    SCOPED_TRACE(key);
    TempDir dir;
    ExpectPulls(reg, ref, dir.path() + "/store",
                WriteDockerConfig(dir.path(), key, "lazy", "s3cret-pass"));
  }

  // Wrong password: PermissionDenied, and the password is not in the message.
  TempDir wrong;
  const std::string config = WriteDockerConfig(wrong.path(), host, "lazy", "wrong-pass");
  auto source = OpenSource(ref, wrong.path() + "/store", config);
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(image.status().message(), HasSubstr("rejected"));
  EXPECT_THAT(image.status().message(), HasSubstr(host));
  EXPECT_THAT(image.status().message(), Not(HasSubstr("wrong-pass")));

  // No credentials at all.
  auto anonymous = OpenSource(ref, wrong.path() + "/store", wrong.path() + "/missing.json");
  ASSERT_TRUE(anonymous.ok());
  image = (*anonymous)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(image.status().message(), HasSubstr("requires credentials"));
}

TEST(RegistryTlsTest, HttpsRegistryWithBasicCredentials) {
  // A registry that speaks only HTTPS (self-signed, as a loopback registry may be): lazyfs
  // talks TLS to it, and basic credentials travel inside TLS.
  TempDir tmp;
  PrivateRegistry reg;
  ASSERT_NO_FATAL_FAILURE(
      StartPrivateRegistry(tmp, /*tls=*/true, "tls-user", "tls-pass", "tls/img", &reg));
  // Plain HTTP is not what this registry speaks: it proves the pull below went over TLS.
  EXPECT_FALSE(lazyfs::testing::PushOciLayout(tmp.path() + "/layout", "t", "http://" + reg.host(),
                                              "tls/img", "v2", "tls-user", "tls-pass")
                   .ok());
  ExpectPulls(reg, "docker://" + reg.host() + "/tls/img:v1", tmp.path() + "/store",
              WriteDockerConfig(tmp.path(), reg.host(), "tls-user", "tls-pass"));
}

// --- anonymous bearer tokens ----------------------------------------------------------------

using testing::TokenFront;

TEST_F(RegistryTest, AnonymousBearerTokenFlow) {
  Blob manifest = PushImage("fetch/bearer", "v1", {"token protected layer"});
  TokenFront front(registry_->host());
  ASSERT_TRUE(front.Start().ok());

  auto source = OpenSource("docker://" + front.host() + "/fetch/bearer:v1", store_);
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->manifest_digest, manifest.digest);
  auto fd = (*source)->OpenBlob(image->layers[0].digest, image->layers[0].size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(ReadAll(*fd), "token protected layer");

  EXPECT_EQ(front.token_requests(), 1);  // the token is reused
  EXPECT_EQ(front.challenged(), 1);
  EXPECT_GE(front.authorized(), 3);  // manifest, config, layer
  EXPECT_THAT(front.last_token_query(), HasSubstr("service=test"));
  EXPECT_THAT(front.last_token_query(), HasSubstr("scope=repository%3Afetch%2Fbearer%3Apull"));
}

// --- bearer tokens with credentials, token lifetime ------------------------------------------

TEST_F(RegistryTest, BearerTokenWithCredentials) {
  Blob manifest = PushImage("fetch/bearer-creds", "v1", {"bearer with credentials"});
  TokenFront front(registry_->host(), "Basic " + UserPass64("tok-user", "tok-pass"));
  ASSERT_TRUE(front.Start().ok());
  const std::string ref = "docker://" + front.host() + "/fetch/bearer-creds:v1";

  TempDir good;
  auto source = OpenSource(ref, store_,
                           WriteDockerConfig(good.path(), front.host(), "tok-user", "tok-pass"));
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->manifest_digest, manifest.digest);
  EXPECT_EQ(front.token_requests(), 1);
  EXPECT_EQ(front.token_refused(), 0);
  EXPECT_THAT(front.last_token_query(), HasSubstr("scope=repository%3Afetch%2Fbearer-creds%3Apull"));

  TempDir bad;
  auto refused = OpenSource(ref, bad.path() + "/store",
                            WriteDockerConfig(bad.path(), front.host(), "tok-user", "not-it-9"));
  ASSERT_TRUE(refused.ok());
  auto denied = (*refused)->Resolve();
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(), HasSubstr("rejected"));
  EXPECT_THAT(denied.status().message(), HasSubstr(bad.path() + "/config.json"));
  EXPECT_THAT(denied.status().message(), Not(HasSubstr("not-it-9")));
  EXPECT_THAT(denied.status().message(), Not(HasSubstr(UserPass64("tok-user", "not-it-9"))));
  EXPECT_EQ(front.token_refused(), 1);
}

TEST_F(RegistryTest, TokenReusedUntilItExpires) {
  PushImage("fetch/expiry", "v1", {"short-lived token"});
  TokenFront front(registry_->host(), "", /*expires_in=*/"1");
  ASSERT_TRUE(front.Start().ok());
  auto source = OpenSource("docker://" + front.host() + "/fetch/expiry:v1", store_);
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();  // manifest + config with one token
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(front.token_requests(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // outlive the token
  auto fd = (*source)->OpenBlob(image->layers[0].digest, image->layers[0].size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(ReadAll(*fd), "short-lived token");
  EXPECT_EQ(front.token_requests(), 2);
}

// However long a token service says its token lives (INT64_MAX, 1e30 seconds), the token is
// reused as any other, and no clock arithmetic overflows on the way.
TEST_F(RegistryTest, AnEndlessTokenLifetimeIsClampedAndTheTokenReused) {
  PushImage("fetch/endless", "v1", {"endless token"});
  for (const std::string expires_in : {"9223372036854775807", "1e30", "-9223372036854775808"}) {
    SCOPED_TRACE(expires_in);
    TokenFront front(registry_->host(), "", expires_in);
    ASSERT_TRUE(front.Start().ok());
    TempDir tmp;
    auto source = OpenSource("docker://" + front.host() + "/fetch/endless:v1", tmp.path());
    ASSERT_TRUE(source.ok()) << source.status().message();
    auto image = (*source)->Resolve();
    ASSERT_TRUE(image.ok()) << image.status().message();
    auto fd = (*source)->OpenBlob(image->layers[0].digest, image->layers[0].size);
    ASSERT_TRUE(fd.ok()) << fd.status().message();
    EXPECT_EQ(front.token_requests(), 1) << "the token was not reused";
  }
}

// --- where basic credentials may go with a token request -------------------------------------

// An IPv4 address of this machine outside 127.0.0.0/8: a host that is not "this machine to
// itself" by its name, yet reachable from the test. Empty when there is none.
std::string NonLoopbackAddress() {
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0) return {};
  std::string found;
  for (ifaddrs* a = all; a && found.empty(); a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || !(a->ifa_flags & IFF_UP)) continue;
    const in_addr addr = reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr;
    if ((ntohl(addr.s_addr) >> 24) == 127) continue;
    char text[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, &addr, text, sizeof text)) found = text;
  }
  ::freeifaddrs(all);
  return found;
}

// A loopback registry whose challenge names a token service on another host over plain HTTP.
struct RealmElsewhere {
  TokenFront tokens, front;
  std::string config;  // a docker config with credentials for the front
};

std::unique_ptr<RealmElsewhere> StartRealmElsewhere(const std::string& upstream,
                                                    const std::string& dir,
                                                    const std::string& token_basic_auth) {
  const std::string ip = NonLoopbackAddress();
  if (ip.empty()) {
    ADD_FAILURE() << "this machine has no non-loopback IPv4 address to play the other host "
                     "(getifaddrs): the test needs one";
    return nullptr;
  }
  std::unique_ptr<RealmElsewhere> w(
      new RealmElsewhere{TokenFront(upstream, token_basic_auth), TokenFront(upstream), ""});
  if (Status s = w->tokens.Start(ip); !s.ok()) {
    ADD_FAILURE() << s.message();
    return nullptr;
  }
  if (Status s = w->front.Start(); !s.ok()) {
    ADD_FAILURE() << s.message();
    return nullptr;
  }
  w->front.set_realm("http://" + w->tokens.host() + "/token");
  w->config = WriteDockerConfig(dir, w->front.host(), "realm-user", "s3cret-realm");
  return w;
}

TEST_F(RegistryTest, CredentialsNeverGoToATokenServiceOnAnotherHost) {
  PushImage("realm/elsewhere", "v1", {"realm elsewhere"});
  auto w = StartRealmElsewhere(registry_->host(), tmp_.path(), "");
  ASSERT_NE(w, nullptr);
  auto source = OpenSource("docker://" + w->front.host() + "/realm/elsewhere:v1", store_,
                           w->config);
  ASSERT_TRUE(source.ok()) << source.status().message();
  // The token is asked for anonymously, and the (public) image still pulls with it.
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(w->front.token_requests(), 0);
  EXPECT_EQ(w->tokens.token_authorizations(), std::vector<std::string>{""});
}

TEST_F(RegistryTest, ARefusalWithCredentialsWithheldSaysSo) {
  PushImage("realm/private", "v1", {"realm private"});
  auto w = StartRealmElsewhere(registry_->host(), tmp_.path(),
                               "Basic " + UserPass64("realm-user", "s3cret-realm"));
  ASSERT_NE(w, nullptr);
  auto source = OpenSource("docker://" + w->front.host() + "/realm/private:v1", store_,
                           w->config);
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(image.status().message(), HasSubstr("were not sent to the token service at http://" +
                                                  w->tokens.host()));
  EXPECT_THAT(image.status().message(), Not(HasSubstr("s3cret-realm")));
  EXPECT_EQ(w->tokens.token_authorizations(), std::vector<std::string>{""});
}

// Loopback to loopback is this machine talking to itself: the credentials go.
TEST_F(RegistryTest, ALoopbackRegistrysLoopbackTokenServiceGetsTheCredentials) {
  PushImage("realm/loopback", "v1", {"realm loopback"});
  const std::string basic = "Basic " + UserPass64("realm-user", "s3cret-realm");
  TokenFront tokens(registry_->host(), basic), front(registry_->host());
  ASSERT_TRUE(tokens.Start("127.0.0.2").ok());
  ASSERT_TRUE(front.Start().ok());
  front.set_realm("http://" + tokens.host() + "/token");
  auto source = OpenSource("docker://" + front.host() + "/realm/loopback:v1", store_,
                           WriteDockerConfig(tmp_.path(), front.host(), "realm-user",
                                             "s3cret-realm"));
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(tokens.token_authorizations(), std::vector<std::string>{basic});
}

// --- redirects to blob storage --------------------------------------------------------------

// Blob requests to `front` are redirected to `storage` (another port on the same host, a
// "storage service" in front of an open registry holding the same blobs). Pulls `ref` and
// checks the credentials went to the front and never to storage.
void ExpectRedirectKeepsCredentialsHome(lazyfs::testing::FaultProxy& front,
                                        lazyfs::testing::FaultProxy& storage,
                                        const std::string& ref, const std::string& config,
                                        const std::string& store, const std::string& scheme) {
  lazyfs::testing::FaultRule redirect;
  redirect.path_contains = "/blobs/";
  redirect.action = lazyfs::testing::FaultRule::Action::kRedirect;
  redirect.redirect_to = "http://" + storage.host();
  redirect.times = -1;
  front.AddRule(redirect);
  auto source = OpenSource(ref, store, config);
  ASSERT_TRUE(source.ok()) << source.status().message();
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  auto fd = (*source)->OpenBlob(image->layers[0].digest, image->layers[0].size);
  ASSERT_TRUE(fd.ok()) << fd.status().message();

  size_t authorized_blob_requests = 0;
  for (const auto& r : front.Requests()) {
    if (r.target.find("/blobs/") != std::string::npos && r.Header("Authorization").starts_with(scheme)) {
      ++authorized_blob_requests;
    }
  }
  EXPECT_GE(authorized_blob_requests, 2u) << "config and layer requests carried credentials";
  const auto at_storage = storage.Requests();
  EXPECT_GE(at_storage.size(), 2u);
  for (const auto& r : at_storage) {
    EXPECT_EQ(r.Header("Authorization"), "") << r.target;
    for (const std::string& h : r.headers) EXPECT_THAT(h, Not(HasSubstr("s3cret")));
    EXPECT_EQ(r.status, 200) << r.target;
  }
}

TEST_F(RegistryTest, RedirectToAnotherPortDropsBasicCredentials) {
  TempDir tmp;
  PrivateRegistry reg;
  ASSERT_NO_FATAL_FAILURE(
      StartPrivateRegistry(tmp, /*tls=*/false, "lazy", "s3cret-basic", "redir/basic", &reg));
  // The open registry holds the same image: it plays the storage service.
  ASSERT_TRUE(lazyfs::testing::PushOciLayout(tmp.path() + "/layout", "t", registry_->host(),
                                             "redir/basic", "v1")
                  .ok());
  auto front = lazyfs::testing::FaultProxy::Start(reg.host());
  auto storage = lazyfs::testing::FaultProxy::Start(registry_->host());
  ASSERT_TRUE(front.ok() && storage.ok());
  ExpectRedirectKeepsCredentialsHome(
      **front, **storage, "docker://" + (*front)->host() + "/redir/basic:v1",
      WriteDockerConfig(tmp.path(), (*front)->host(), "lazy", "s3cret-basic"), store_, "Basic ");
}

TEST_F(RegistryTest, RedirectToAnotherPortDropsBearerToken) {
  PushImage("redir/bearer", "v1", {"redirected bearer layer"});
  TokenFront tokens(registry_->host(), "Basic " + UserPass64("tok-user", "s3cret-tok"));
  ASSERT_TRUE(tokens.Start().ok());
  auto front = lazyfs::testing::FaultProxy::Start(tokens.host());
  auto storage = lazyfs::testing::FaultProxy::Start(registry_->host());
  ASSERT_TRUE(front.ok() && storage.ok());
  ExpectRedirectKeepsCredentialsHome(
      **front, **storage, "docker://" + (*front)->host() + "/redir/bearer:v1",
      WriteDockerConfig(tmp_.path(), (*front)->host(), "tok-user", "s3cret-tok"), store_,
      "Bearer ");
}

// --- where credentials come from ------------------------------------------------------------

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(RegistryCredentialsTest, AuthFilesHelpersAndNamespaces) {
  TempDir tmp;
  PrivateRegistry reg;
  ASSERT_NO_FATAL_FAILURE(
      StartPrivateRegistry(tmp, /*tls=*/false, "lazy", "s3cret-env", "team/img", &reg));
  const std::string host = reg.host();
  const std::string ref = "docker://" + host + "/team/img:v1";
  const std::string b64 = UserPass64("lazy", "s3cret-env");
  // No file of the user's may interfere.
  ScopedEnv home("HOME", tmp.path() + "/home");
  ScopedEnv docker_config("DOCKER_CONFIG", tmp.path() + "/no-docker");
  int n = 0;
  auto fresh = [&] { return tmp.path() + "/store" + std::to_string(++n); };

  {
    SCOPED_TRACE("REGISTRY_AUTH_FILE");
    ASSERT_TRUE(WriteFileAtomic(tmp.path() + "/auth.json",
                                "{\"auths\":{\"" + host + "\":{\"auth\":\"" + b64 + "\"}}}")
                    .ok());
    ScopedEnv file("REGISTRY_AUTH_FILE", tmp.path() + "/auth.json");
    ExpectPulls(reg, ref, fresh(), "");
  }
  {
    SCOPED_TRACE("XDG_RUNTIME_DIR, namespaced keys: the longest match wins");
    ASSERT_TRUE(MakeDirs(tmp.path() + "/run/containers", 0700).ok());
    ASSERT_TRUE(WriteFileAtomic(tmp.path() + "/run/containers/auth.json",
                                "{\"auths\":{\"" + host + "\":{\"auth\":\"" +
                                    UserPass64("lazy", "wrong") + "\"},\"" + host +
                                    "/team\":{\"auth\":\"" + b64 + "\"},\"" + host +
                                    "/other\":{\"auth\":\"" + UserPass64("x", "y") + "\"}}}")
                    .ok());
    ScopedEnv run("XDG_RUNTIME_DIR", tmp.path() + "/run");
    ExpectPulls(reg, ref, fresh(), "");
  }
  {
    SCOPED_TRACE("credential helpers: credHelpers, then credsStore");
    const std::string bin = tmp.path() + "/bin";
    ASSERT_TRUE(MakeDirs(bin, 0755).ok());
    // A helper speaking the docker-credential-helpers protocol, recording what it was asked.
    const std::string helper = bin + "/docker-credential-lazytest";
    ASSERT_TRUE(WriteFileAtomic(helper, "#!/bin/sh\n"
                                        "[ \"$1\" = get ] || exit 3\n"
                                        "read server\n"
                                        "echo \"$server\" >> " + tmp.path() + "/asked\n"
                                        "printf '{\"ServerURL\":\"%s\",\"Username\":\"lazy\","
                                        "\"Secret\":\"s3cret-env\"}' \"$server\"\n")
                    .ok());
    ASSERT_EQ(::chmod(helper.c_str(), 0755), 0);
    const std::string failing = bin + "/docker-credential-broken";
    ASSERT_TRUE(WriteFileAtomic(failing, "#!/bin/sh\necho s3cret-leak\nexit 7\n").ok());
    ASSERT_EQ(::chmod(failing.c_str(), 0755), 0);
    ScopedEnv path("PATH", bin + ":" + std::getenv("PATH"));
    ASSERT_TRUE(WriteFileAtomic(tmp.path() + "/helpers.json",
                                "{\"credHelpers\":{\"" + host + "\":\"lazytest\"}}")
                    .ok());
    ExpectPulls(reg, ref, fresh(), tmp.path() + "/helpers.json");
    ASSERT_TRUE(WriteFileAtomic(tmp.path() + "/store.json", "{\"credsStore\":\"lazytest\"}").ok());
    ExpectPulls(reg, ref, fresh(), tmp.path() + "/store.json");
    auto asked = ReadFileToString(tmp.path() + "/asked");
    ASSERT_TRUE(asked.ok());
    EXPECT_EQ(*asked, host + "\n" + host + "\n");

    ASSERT_TRUE(WriteFileAtomic(tmp.path() + "/broken.json", "{\"credsStore\":\"broken\"}").ok());
    auto source = OpenSource(ref, fresh(), tmp.path() + "/broken.json");
    ASSERT_FALSE(source.ok());
    EXPECT_THAT(source.status().message(), HasSubstr("docker-credential-broken"));
    EXPECT_THAT(source.status().message(), HasSubstr("exit status 7"));
    EXPECT_THAT(source.status().message(), Not(HasSubstr("s3cret")));
  }
  {
    SCOPED_TRACE("nothing anywhere: the message lists what was searched");
    ScopedEnv run("XDG_RUNTIME_DIR", tmp.path() + "/empty-run");
    auto source = OpenSource(ref, fresh(), "");
    ASSERT_TRUE(source.ok()) << source.status().message();
    auto image = (*source)->Resolve();
    ASSERT_FALSE(image.ok());
    EXPECT_EQ(image.status().code(), StatusCode::kPermissionDenied);
    EXPECT_THAT(image.status().message(), HasSubstr("requires credentials"));
    EXPECT_THAT(image.status().message(), HasSubstr(tmp.path() + "/empty-run/containers/auth.json"));
  }
}

}  // namespace
}  // namespace lazyfs::fetch

namespace lazyfs::fetch {
namespace {

TEST(RegistrySupportTest, RestartKeepsPortAndStorage) {
  auto registry = lazyfs::testing::Registry::Start();
  ASSERT_TRUE(registry.ok()) << registry.status().message();
  TempDir tmp;
  LayoutWriter w(tmp.path() + "/layout");
  Blob manifest = w.AddImage({"survives restarts"});
  w.WriteIndex({{manifest, RefName("t")}});
  ASSERT_TRUE(lazyfs::testing::PushOciLayout(w.dir(), "t", (*registry)->host(), "keep/me", "v1")
                  .ok());
  const std::string host = (*registry)->host();
  Status restarted = (*registry)->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted.message();
  EXPECT_EQ((*registry)->host(), host);
  auto source = OpenSource("docker://" + host + "/keep/me:v1", tmp.path() + "/store");
  ASSERT_TRUE(source.ok());
  auto image = (*source)->Resolve();
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->manifest_digest, manifest.digest);

  ASSERT_TRUE((*registry)->Stop().ok());
  image = (*source)->Resolve();
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(image.status().message(), HasSubstr("registry " + host));
}

}  // namespace
}  // namespace lazyfs::fetch
