// The pure parts of referrers: lists checked and filtered, artifact manifests and referrers
// indexes written the same way every time.
#include "fetch/referrers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;

constexpr const char* kIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kManifest = "application/vnd.oci.image.manifest.v1+json";

Descriptor Artifact(std::string_view bytes, std::string type) {
  return Descriptor{kManifest, Sha256Of(bytes), bytes.size(), std::move(type), {}, {}};
}

TEST(ReferrersTest, TagIsTheSubjectDigestWithADash) {
  EXPECT_EQ(ReferrersTag(Sha256Of("{}")),
            "sha256-44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
}

TEST(ReferrersTest, ListsAreFilteredByArtifactType) {
  auto one = AddReferrer(std::nullopt, Artifact("a", "type/a"));
  ASSERT_TRUE(one.ok()) << one.status().message();
  auto two = AddReferrer(*one, Artifact("b", "type/b"));
  ASSERT_TRUE(two.ok()) << two.status().message();
  auto again = AddReferrer(*two, Artifact("a", "type/a"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *two);  // de-duplicated by digest, and byte for byte the same
  auto all = ParseReferrers(*two, kIndex, "");
  ASSERT_TRUE(all.ok()) << all.status().message();
  ASSERT_EQ(all->size(), 2u);
  auto b = ParseReferrers(*two, kIndex, "type/b");
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].digest, Sha256Of("b"));
  EXPECT_EQ((*b)[0].artifact_type, "type/b");
}

TEST(ReferrersTest, ArtifactManifestIsDeterministic) {
  const Descriptor subject{kManifest, Sha256Of("image"), 5, "", {}, {}};
  const std::map<std::string, std::string> annotations = {{"z", "1"}, {"a", "2"}};
  const std::string m = ArtifactManifest(subject, "type/x", {}, annotations);
  EXPECT_EQ(m, ArtifactManifest(subject, "type/x", {}, annotations));
  const auto j = nlohmann::json::parse(m);
  EXPECT_EQ(j["artifactType"], "type/x");
  EXPECT_EQ(j["subject"]["digest"], Sha256Of("image").ToString());
  // No blobs: the empty descriptor stands in the layers, as image-spec asks.
  EXPECT_EQ(j["layers"][0]["mediaType"], "application/vnd.oci.empty.v1+json");
  EXPECT_EQ(m.find(' '), std::string::npos);
  EXPECT_LT(m.find("\"annotations\""), m.find("\"artifactType\""));  // sorted keys
}

// Hostile lists, each with the error it must produce.
TEST(ReferrersTest, MalformedListsAreRefused) {
  const std::string d = Sha256Of("x").ToString();
  struct Case {
    std::string raw;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"not json", "not valid JSON"},
      {"{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kIndex) +
           "\",\"manifests\":[{\"mediaType\":\"m\",\"digest\":\"md5:00\",\"size\":1}]}",
       "manifests[0]"},
      {"{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kIndex) +
           "\",\"manifests\":[{\"digest\":\"" + d + "\",\"size\":1}]}",
       "has no media type"},
      {"{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kIndex) +
           "\",\"manifests\":[{\"mediaType\":\"m\",\"digest\":\"" + d + "\",\"size\":1.5}]}",
       "non-negative integer"},
      {"{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kIndex) + "\"}", "no \"manifests\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.raw);
    auto parsed = ParseReferrers(c.raw, kIndex, "");
    ASSERT_FALSE(parsed.ok());
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message));
    EXPECT_FALSE(AddReferrer(c.raw, Artifact("a", "t")).ok());
  }
}

}  // namespace
}  // namespace lazyfs::fetch
