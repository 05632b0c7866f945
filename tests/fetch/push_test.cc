// Pushes and referrers against Debian's real docker-registry (2.8: no referrers API, so every
// referrer goes through the referrers tag), directly, through a bearer-token front, and through
// a proxy that answers for the registry with lies.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "fetch/fetch.h"
#include "fetch/http.h"
#include "fetch/registry_client.h"
#include "tests/fetch/registry_fixture.h"
#include "tests/fetch/test_layout.h"
#include "tests/fetch/token_front.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/registry.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;
using testing::Blob;
using testing::LayoutWriter;
using testing::RefName;
using testing::TempDir;

constexpr const char* kIndexType = "application/vnd.lazyfs.layer-index.v1";
constexpr const char* kOtherType = "application/vnd.example.sbom.v1";
constexpr const char* kIndexMediaType = "application/vnd.oci.image.index.v1+json";
constexpr const char* kManifestMediaType = "application/vnd.oci.image.manifest.v1+json";

SourceOptions TestOptions(const std::string& store, const std::string& registries_conf) {
  SourceOptions options;
  options.registries_conf = registries_conf;
  options.store = StoreLayout{store};
  options.docker_config = "/nonexistent";
  options.connect_timeout_s = 5;
  options.low_speed_timeout_s = 10;
  options.retry_initial_delay_ms = 50;
  options.max_attempts = 2;
  options.upload_chunk_size = 64 << 10;
  options.platform = Platform{"linux", "amd64", ""};
  return options;
}

// How many requests of `method` the registry answered for a URI starting with `path_part`
// (its "response completed" log lines).
int Logged(const lazyfs::testing::Registry& registry, const std::string& method,
           const std::string& path_part) {
  std::istringstream log(registry.Log());
  int n = 0;
  for (std::string line; std::getline(log, line);) {
    if (line.find("msg=\"response completed\"") != std::string::npos &&
        line.find("http.request.method=" + method + " ") != std::string::npos &&
        line.find("http.request.uri=\"" + path_part) != std::string::npos) {
      ++n;
    }
  }
  return n;
}

BlobToPush MakeBlob(std::string bytes, std::map<std::string, std::string> annotations = {}) {
  BlobToPush b;
  b.digest = Sha256Of(bytes);
  b.bytes = std::move(bytes);
  b.media_type = "application/vnd.lazyfs.layer-index.v1.tar+zstd";
  b.annotations = std::move(annotations);
  return b;
}

class PushTest : public testing::SharedRegistryTest {
 protected:
  // Pushes a one-image layout as REPO:v1 and returns its manifest.
  Blob PushImage(const std::string& repo, const std::string& layer) {
    LayoutWriter w(tmp_.path() + "/layout-" + std::to_string(++layouts_));
    Blob manifest = w.AddImage({layer}, "amd64", "");
    w.WriteIndex({{manifest, RefName("t")}});
    Status s = lazyfs::testing::PushOciLayout(w.dir(), "t", registry_->host(), repo, "v1");
    EXPECT_TRUE(s.ok()) << s.message();
    return manifest;
  }

  std::unique_ptr<ImageSource> Open(const std::string& host, const std::string& repo) {
    auto ref = ImageRef::Parse("docker://" + host + "/" + repo + ":v1");
    EXPECT_TRUE(ref.ok());
    auto source = OpenImageSource(*ref, TestOptions(tmp_.path() + "/store", RegistriesConf()));
    EXPECT_TRUE(source.ok()) << source.status().message();
    return source.ok() ? std::move(*source) : nullptr;
  }

  std::unique_ptr<RegistryClient> Client(const std::string& repo) {
    auto client = RegistryClient::Create(registry_->host(), repo, TestOptions(tmp_.path(), RegistriesConf()));
    EXPECT_TRUE(client.ok()) << client.status().message();
    return client.ok() ? std::move(*client) : nullptr;
  }

  // An empty registries.conf: the tests do not depend on the machine's.
  std::string RegistriesConf() {
    const std::string path = tmp_.path() + "/registries.conf";
    EXPECT_TRUE(WriteFileAtomic(path, "").ok());
    return path;
  }

  static Descriptor SubjectOf(const Blob& manifest) {
    return Descriptor{manifest.media_type, manifest.digest, manifest.size, "", {}, {}};
  }

  TempDir tmp_;
  int layouts_ = 0;
};

std::string ReadBack(RegistryClient& client, const Digest& digest) {
  std::string got;
  Status s = client.GetBlob(digest, [&](std::string_view chunk) {
    got.append(chunk);
    return Status::Ok();
  }, Deadline::Never());
  EXPECT_TRUE(s.ok()) << s.message();
  return got;
}

TEST_F(PushTest, MonolithicAndChunkedUploadsRoundTrip) {
  auto client = Client("push/blobs");
  ASSERT_NE(client, nullptr);
  // One PUT up to the chunk size (64 KiB here); above it, PATCHes of 64 KiB and a closing PUT.
  const std::string small(1000, 's');
  std::string large(3 * (64 << 10) + 17, '\0');
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>(i * 7 % 251);
  for (const std::string* bytes : {&small, static_cast<const std::string*>(&large)}) {
    const Digest d = Sha256Of(*bytes);
    auto before = client->BlobExists(d);
    ASSERT_TRUE(before.ok()) << before.status().message();
    EXPECT_FALSE(*before);
    Status pushed = client->PutBlob(d, *bytes);
    ASSERT_TRUE(pushed.ok()) << pushed.message();
    auto after = client->BlobExists(d);
    ASSERT_TRUE(after.ok()) << after.status().message();
    EXPECT_TRUE(*after);
    const std::string got = ReadBack(*client, d);
    EXPECT_EQ(got.size(), bytes->size());
    EXPECT_EQ(Sha256Of(got), d);
  }
  EXPECT_EQ(Logged(*registry_, "PATCH", "/v2/push/blobs/blobs/uploads/"), 4);
  EXPECT_EQ(Logged(*registry_, "PUT", "/v2/push/blobs/blobs/uploads/"), 2);

  // The registry checks the digest: bytes that are not the blob are refused.
  Status wrong = client->PutBlob(Sha256Of("other bytes"), "these bytes");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.code(), StatusCode::kInvalidArgument) << wrong.message();
  EXPECT_THAT(wrong.message(), HasSubstr("upload of blob " + Sha256Of("other bytes").ToString()));
}

TEST_F(PushTest, ManifestPushByTagAndByDigest) {
  auto client = Client("push/manifests");
  ASSERT_NE(client, nullptr);
  const std::string config = "{}";
  const std::string layer = "layer bytes";
  ASSERT_TRUE(client->PutBlob(Sha256Of(config), config).ok());
  ASSERT_TRUE(client->PutBlob(Sha256Of(layer), layer).ok());
  const std::string manifest =
      nlohmann::json{
          {"schemaVersion", 2},
          {"mediaType", kManifestMediaType},
          {"artifactType", kOtherType},
          {"config",
           {{"mediaType", kOciEmptyMediaType}, {"digest", Sha256Of(config).ToString()}, {"size", 2}}},
          {"layers",
           {{{"mediaType", "application/octet-stream"},
             {"digest", Sha256Of(layer).ToString()},
             {"size", layer.size()}}}}}
          .dump();
  const Digest digest = Sha256Of(manifest);
  auto by_digest = client->PutManifest(digest.ToString(), manifest, kManifestMediaType);
  ASSERT_TRUE(by_digest.ok()) << by_digest.status().message();
  EXPECT_EQ(by_digest->digest, digest);
  EXPECT_FALSE(by_digest->subject_indexed);  // 2.8 has no referrers API
  auto by_tag = client->PutManifest("art", manifest, kManifestMediaType);
  ASSERT_TRUE(by_tag.ok()) << by_tag.status().message();
  EXPECT_EQ(by_tag->digest, digest);
  for (const std::string& reference : {std::string("art"), digest.ToString()}) {
    auto got = client->GetManifest(reference);
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(got->bytes, manifest);
  }
  // A manifest naming a blob the registry lacks is refused with the registry's reason.
  const std::string dangling = nlohmann::json{
      {"schemaVersion", 2},
      {"mediaType", kManifestMediaType},
      {"config",
       {{"mediaType", kOciEmptyMediaType}, {"digest", Sha256Of("absent").ToString()}, {"size", 6}}},
      {"layers", nlohmann::json::array()}}.dump();
  auto refused = client->PutManifest("dangling", dangling, kManifestMediaType);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("push of manifest \"dangling\""));
}

TEST_F(PushTest, ReferrersFoundThroughTheTagByType) {
  const Blob image = PushImage("push/ref", "image layer");
  auto source = Open(registry_->host(), "push/ref");
  ASSERT_NE(source, nullptr);
  auto none = source->Referrers(image.digest, kIndexType);
  ASSERT_TRUE(none.ok()) << none.status().message();
  EXPECT_TRUE(none->empty());

  const BlobToPush blob = MakeBlob("index of layer 0", {{"org.lazyfs.layer", "0"}});
  auto pushed = source->PushReferrer(SubjectOf(image), kIndexType, {blob},
                                     {{"org.lazyfs.version", "1"}});
  ASSERT_TRUE(pushed.ok()) << pushed.status().message();
  EXPECT_EQ(pushed->artifact_type, kIndexType);
  EXPECT_EQ(pushed->media_type, kManifestMediaType);

  // Listed through a recording proxy: 2.8 answers the referrers API with 404, and the list
  // comes from the tag.
  auto proxy = lazyfs::testing::FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy.ok()) << proxy.status().message();
  auto watched = Open((*proxy)->host(), "push/ref");
  ASSERT_NE(watched, nullptr);
  auto found = watched->Referrers(image.digest, kIndexType);
  const auto api = (*proxy)->RequestsFor("/v2/push/ref/referrers/" + image.digest.ToString());
  ASSERT_EQ(api.size(), 1u);
  EXPECT_EQ(api[0].status, 404);
  EXPECT_THAT(api[0].target, HasSubstr("artifactType=application%2Fvnd.lazyfs.layer-index.v1"));
  const auto tag = (*proxy)->RequestsFor("/v2/push/ref/manifests/sha256-" + image.digest.Hex());
  ASSERT_EQ(tag.size(), 1u);
  EXPECT_EQ(tag[0].status, 200);
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].digest, pushed->digest);
  EXPECT_EQ((*found)[0].size, pushed->size);
  EXPECT_EQ((*found)[0].artifact_type, kIndexType);
  EXPECT_EQ((*found)[0].annotations.at("org.lazyfs.version"), "1");
  auto other = source->Referrers(image.digest, kOtherType);
  ASSERT_TRUE(other.ok()) << other.status().message();
  EXPECT_TRUE(other->empty());

  // The artifact reads back verified: its manifest names the subject, its blob is the bytes.
  auto raw = source->ReadManifest(pushed->digest, 1 << 20);
  ASSERT_TRUE(raw.ok()) << raw.status().message();
  const auto j = nlohmann::json::parse(*raw);
  EXPECT_EQ(j["subject"]["digest"], image.digest.ToString());
  EXPECT_EQ(j["artifactType"], kIndexType);
  EXPECT_EQ(j["config"]["mediaType"], kOciEmptyMediaType);
  EXPECT_EQ(j["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  EXPECT_EQ(j["layers"][0]["annotations"]["org.lazyfs.layer"], "0");
  auto bytes = source->ReadSmallBlob(blob.digest, 1 << 20);
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  EXPECT_EQ(*bytes, blob.bytes);
  auto capped = source->ReadSmallBlob(blob.digest, 4);
  EXPECT_FALSE(capped.ok());
}

TEST_F(PushTest, TwoReferrersOfOneSubjectAreBothListedOnce) {
  const Blob image = PushImage("push/two", "two layer");
  auto source = Open(registry_->host(), "push/two");
  ASSERT_NE(source, nullptr);
  auto first = source->PushReferrer(SubjectOf(image), kIndexType, {MakeBlob("first")}, {});
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = source->PushReferrer(SubjectOf(image), kOtherType, {MakeBlob("second")}, {});
  ASSERT_TRUE(second.ok()) << second.status().message();
  // Publishing the same artifact again changes nothing.
  auto again = source->PushReferrer(SubjectOf(image), kIndexType, {MakeBlob("first")}, {});
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->digest, first->digest);

  auto all = source->Referrers(image.digest, "");
  ASSERT_TRUE(all.ok()) << all.status().message();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].digest, first->digest);
  EXPECT_EQ((*all)[1].digest, second->digest);
  auto only = source->Referrers(image.digest, kOtherType);
  ASSERT_TRUE(only.ok()) << only.status().message();
  ASSERT_EQ(only->size(), 1u);
  EXPECT_EQ((*only)[0].digest, second->digest);

  // A blob whose bytes are not its digest is refused before anything is sent.
  BlobToPush lying = MakeBlob("claimed");
  lying.bytes = "actual";
  auto refused = source->PushReferrer(SubjectOf(image), kIndexType, {lying}, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
}

std::string Entry(const std::string& digest, const std::string& size,
                  const std::string& media_type = kManifestMediaType,
                  const std::string& artifact_type = kIndexType) {
  std::string out = "{\"digest\":\"" + digest + "\",\"size\":" + size;
  if (!media_type.empty()) out += ",\"mediaType\":\"" + media_type + "\"";
  return out + ",\"artifactType\":\"" + artifact_type + "\"}";
}

std::string IndexOf(const std::string& entries) {
  return std::string("{\"schemaVersion\":2,\"mediaType\":\"") + kIndexMediaType +
         "\",\"manifests\":[" + entries + "]}";
}

TEST_F(PushTest, LyingReferrersListsAreRefused) {
  const Blob image = PushImage("push/lies", "lies layer");
  auto proxy = lazyfs::testing::FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy.ok()) << proxy.status().message();
  const std::string good = Sha256Of("x").ToString();
  struct Case {
    std::string name;
    std::string path;  // where the lie is told: the referrers API or the tag
    std::string body;
    StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"malformed digest", "/manifests/sha256-", IndexOf(Entry("sha256:xyz", "5")),
       StatusCode::kInvalidArgument, "referrers tag sha256-" + image.digest.Hex()},
      {"negative size", "/manifests/sha256-", IndexOf(Entry(good, "-1")),
       StatusCode::kInvalidArgument, "non-negative"},
      {"no media type", "/manifests/sha256-", IndexOf(Entry(good, "5", "")),
       StatusCode::kInvalidArgument, "has no media type"},
      {"not an index", "/manifests/sha256-",
       image.bytes, StatusCode::kInvalidArgument, "not an image index"},
      {"huge index", "/manifests/sha256-",
       IndexOf(Entry(good, "5") + std::string(5 << 20, ' ')), StatusCode::kResourceExhausted,
       "larger than 4 MiB"},
      {"api: malformed digest", "/referrers/", IndexOf(Entry("sha256:xyz", "5")),
       StatusCode::kInvalidArgument, "referrers API"},
      {"api: huge list", "/referrers/", IndexOf(std::string(5 << 20, ' ')),
       StatusCode::kResourceExhausted, "larger than 4 MiB"},
  };
  auto source = Open((*proxy)->host(), "push/lies");
  ASSERT_NE(source, nullptr);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    (*proxy)->ClearRules();
    lazyfs::testing::FaultRule rule;
    rule.path_contains = c.path;
    rule.action = lazyfs::testing::FaultRule::Action::kStatus;
    rule.status = 200;
    rule.body = c.body;
    rule.times = -1;
    (*proxy)->AddRule(rule);
    auto listed = source->Referrers(image.digest, kIndexType);
    ASSERT_FALSE(listed.ok());
    EXPECT_EQ(listed.status().code(), c.code) << listed.status().message();
    EXPECT_THAT(listed.status().message(), HasSubstr(c.message));
    EXPECT_THAT(listed.status().message(), HasSubstr("registry " + (*proxy)->host()));
  }

  // A referrers API that ignores the filter: the client applies it.
  (*proxy)->ClearRules();
  lazyfs::testing::FaultRule rule;
  rule.path_contains = "/referrers/";
  rule.action = lazyfs::testing::FaultRule::Action::kStatus;
  rule.status = 200;
  rule.body = IndexOf(Entry(good, "5") + "," +
                      Entry(Sha256Of("y").ToString(), "6", kManifestMediaType, kOtherType));
  (*proxy)->AddRule(rule);
  auto filtered = source->Referrers(image.digest, kOtherType);
  ASSERT_TRUE(filtered.ok()) << filtered.status().message();
  ASSERT_EQ(filtered->size(), 1u);
  EXPECT_EQ((*filtered)[0].digest, Sha256Of("y"));
}

TEST_F(PushTest, PushesThroughATokenServiceAskForThePushScope) {
  const Blob image = PushImage("push/token", "token layer");
  testing::TokenFront front(registry_->host());
  ASSERT_TRUE(front.Start().ok());
  auto source = Open(front.host(), "push/token");
  ASSERT_NE(source, nullptr);
  // A pull first: the client holds a token for pulls only.
  auto resolved = source->Resolve();
  ASSERT_TRUE(resolved.ok()) << resolved.status().message();
  EXPECT_THAT(front.last_token_query(), HasSubstr("scope=repository%3Apush%2Ftoken%3Apull"));
  // The front's challenges name pull only and it lets writes through only with a push token:
  // the push succeeds because the client asked for pull,push itself.
  auto pushed = source->PushReferrer(SubjectOf(image), kIndexType,
                                     {MakeBlob(std::string(200 << 10, 'z'))}, {});
  ASSERT_TRUE(pushed.ok()) << pushed.status().message();
  EXPECT_THAT(front.last_token_query(),
              HasSubstr("scope=repository%3Apush%2Ftoken%3Apull%2Cpush"));
  auto found = source->Referrers(image.digest, kIndexType);
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].digest, pushed->digest);
}

// Upload URLs are the registry's to name; one on another origin gets no credentials.
TEST_F(PushTest, CredentialsStayOnTheirOrigin) {
  auto proxy = lazyfs::testing::FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy.ok()) << proxy.status().message();
  lazyfs::testing::FaultRule absent;
  absent.path_contains = "/v2/elsewhere/";
  absent.status = 404;
  absent.times = -1;
  (*proxy)->AddRule(absent);
  HttpClient http(HttpOptions{});
  for (const bool home : {true, false}) {
    HttpRequest request;
    request.url = "http://" + (*proxy)->host() + "/v2/elsewhere/" + (home ? "home" : "away");
    request.authorization = "Bearer secret";
    request.auth_origin = home ? OriginOf(request.url) : "http://127.0.0.1:1";
    ASSERT_TRUE(http.Perform(request).ok());
  }
  auto home = (*proxy)->RequestsFor("/home");
  auto away = (*proxy)->RequestsFor("/away");
  ASSERT_EQ(home.size(), 1u);
  ASSERT_EQ(away.size(), 1u);
  EXPECT_EQ(home[0].Header("authorization"), "Bearer secret");
  EXPECT_EQ(away[0].Header("authorization"), "");
}

}  // namespace
}  // namespace lazyfs::fetch
