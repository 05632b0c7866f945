#include "fetch/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;

std::string D(char c) { return "sha256:" + std::string(64, c); }

std::string Desc(const std::string& media_type, char c, uint64_t size,
                 const std::string& extra = "") {
  return "{\"mediaType\":\"" + media_type + "\",\"digest\":\"" + D(c) +
         "\",\"size\":" + std::to_string(size) + extra + "}";
}

std::string ImageManifest(const std::string& media_type, const std::string& layer_type) {
  return "{\"schemaVersion\":2,\"mediaType\":\"" + media_type + "\",\"config\":" +
         Desc("application/vnd.oci.image.config.v1+json", 'c', 10) + ",\"layers\":[" +
         Desc(layer_type, 'a', 100, ",\"annotations\":{\"k\":\"v\"}") + "," +
         Desc(layer_type, 'b', 200) + "],\"annotations\":{\"top\":\"yes\"}}";
}

TEST(ManifestTest, ParsesOciAndDockerImageManifests) {
  const struct {
    std::string media_type, layer_type;
  } cases[] = {
      {std::string(kOciManifest), "application/vnd.oci.image.layer.v1.tar+gzip"},
      {std::string(kOciManifest), "application/vnd.oci.image.layer.v1.tar+zstd"},
      {std::string(kOciManifest), "application/vnd.oci.image.layer.v1.tar"},
      {std::string(kDockerManifest), "application/vnd.docker.image.rootfs.diff.tar.gzip"},
      {std::string(kDockerManifest), "application/vnd.docker.image.rootfs.diff.tar"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.media_type + " / " + c.layer_type);
    auto m = ParseManifest(ImageManifest(c.media_type, c.layer_type));
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_EQ(m->kind, Manifest::Kind::kImage);
    EXPECT_EQ(m->media_type, c.media_type);
    EXPECT_EQ(m->config.digest.ToString(), D('c'));
    ASSERT_EQ(m->layers.size(), 2u);
    EXPECT_EQ(m->layers[0].digest.ToString(), D('a'));
    EXPECT_EQ(m->layers[0].size, 100u);
    EXPECT_EQ(m->layers[0].media_type, c.layer_type);
    EXPECT_EQ(m->layers[0].annotations.at("k"), "v");
    EXPECT_EQ(m->layers[1].size, 200u);
    EXPECT_EQ(m->annotations.at("top"), "yes");
  }
}

TEST(ManifestTest, MediaTypeFromContentTypeOrFields) {
  // No mediaType in the JSON: the Content-Type says, else the fields do.
  std::string no_type = "{\"schemaVersion\":2,\"config\":" +
                        Desc("application/vnd.docker.container.image.v1+json", 'c', 1) +
                        ",\"layers\":[]}";
  auto m = ParseManifest(no_type, std::string(kDockerManifest) + "; charset=utf-8");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->media_type, kDockerManifest);
  m = ParseManifest(no_type);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->media_type, kOciManifest);
  auto idx = ParseManifest("{\"schemaVersion\":2,\"manifests\":[]}");
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  EXPECT_EQ(idx->kind, Manifest::Kind::kIndex);
}

TEST(ManifestTest, RejectsSchema1) {
  for (const std::string& raw : {
           std::string("{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}"),
           std::string("{\"schemaVersion\":2,\"mediaType\":"
                       "\"application/vnd.docker.distribution.manifest.v1+prettyjws\"}"),
       }) {
    auto m = ParseManifest(raw);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), StatusCode::kUnimplemented);
    EXPECT_THAT(m.status().message(), HasSubstr("schema 1"));
  }
  auto m = ParseManifest("{\"schemaVersion\":1}",
                         "application/vnd.docker.distribution.manifest.v1+json");
  EXPECT_EQ(m.status().code(), StatusCode::kUnimplemented);
}

TEST(ManifestTest, RejectsUnknownMediaTypesNamingThem) {
  auto m = ParseManifest("{\"schemaVersion\":2,\"mediaType\":\"application/x-weird\"}");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(m.status().message(), HasSubstr("application/x-weird"));

  auto l = ParseManifest(ImageManifest(std::string(kOciManifest), "application/x-squashfs"));
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(l.status().message(), HasSubstr("application/x-squashfs"));
  EXPECT_THAT(l.status().message(), HasSubstr("layer sha256:aaaa"));
}

TEST(ManifestTest, RejectsMalformed) {
  const struct {
    std::string raw, message;
  } cases[] = {
      {"not json", "not valid JSON"},
      {"[1,2]", "not a JSON object"},
      {"{\"mediaType\":\"" + std::string(kOciManifest) + "\"}", "schemaVersion"},
      {"{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kOciManifest) + "\",\"layers\":[]}",
       "no \"config\""},
      {"{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kOciManifest) +
           "\",\"config\":{\"digest\":\"sha256:12\",\"size\":1},\"layers\":[]}",
       "64 hex digits"},
      {"{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kOciManifest) + "\",\"config\":" +
           Desc("x", 'c', 1) + ",\"layers\":[{\"digest\":\"" + D('a') + "\",\"size\":-1}]}",
       "size"},
      {"{\"schemaVersion\":2,\"mediaType\":7}", "not a string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.raw);
    auto m = ParseManifest(c.raw);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << m.status().message();
    EXPECT_THAT(m.status().message(), HasSubstr(c.message));
  }
}

TEST(ManifestTest, CapsSizeAt4MiB) {
  std::string big = ImageManifest(std::string(kOciManifest),
                                  "application/vnd.oci.image.layer.v1.tar");
  big.pop_back();
  big += ",\"pad\":\"" + std::string(kMaxManifestSize, 'x') + "\"}";
  auto m = ParseManifest(big);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(m.status().message(), HasSubstr("4 MiB"));
  auto c = ParseImageConfig(big);
  EXPECT_EQ(c.status().code(), StatusCode::kResourceExhausted);
}

Manifest IndexOf(const std::vector<std::pair<char, std::string>>& entries) {
  std::string raw = "{\"schemaVersion\":2,\"mediaType\":\"" + std::string(kOciIndex) +
                    "\",\"manifests\":[";
  for (size_t i = 0; i < entries.size(); ++i) {
    raw += (i ? "," : "") + Desc(std::string(kOciManifest), entries[i].first, 1,
                                 ",\"platform\":" + entries[i].second);
  }
  auto m = ParseManifest(raw + "]}");
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.ok() ? *m : Manifest{};
}

std::string P(const std::string& arch, const std::string& variant = "",
              const std::string& os = "linux") {
  std::string out = "{\"os\":\"" + os + "\",\"architecture\":\"" + arch + "\"";
  if (!variant.empty()) out += ",\"variant\":\"" + variant + "\"";
  return out + "}";
}

TEST(ManifestTest, SelectsPlatformFromIndex) {
  Manifest index = IndexOf({{'1', P("amd64")},
                            {'2', P("arm64", "v8")},
                            {'3', P("arm", "v6")},
                            {'4', P("arm", "v7")},
                            {'5', P("unknown", "", "unknown")},
                            {'6', P("amd64", "", "windows")}});
  const struct {
    std::string want;
    char chosen;
  } cases[] = {
      {"linux/amd64", '1'},  {"linux/arm64", '2'},    {"linux/arm64/v8", '2'},
      {"linux/arm/v7", '4'}, {"linux/arm/v6", '3'},   {"linux/arm/v8", '4'},
      {"linux/arm", '3'},    {"windows/amd64", '6'},  // no variant asked: index order
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.want);
    auto want = Platform::Parse(c.want);
    ASSERT_TRUE(want.ok());
    auto d = SelectPlatform(index, *want);
    ASSERT_TRUE(d.ok()) << d.status().message();
    EXPECT_EQ(d->digest.ToString(), D(c.chosen));
  }
  // arm64 without a variant in the index matches a v8 host.
  Manifest plain = IndexOf({{'7', P("arm64")}});
  auto d = SelectPlatform(plain, *Platform::Parse("linux/arm64/v8"));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->digest.ToString(), D('7'));
}

TEST(ManifestTest, NoMatchingPlatformListsAvailable) {
  Manifest index = IndexOf({{'1', P("amd64")}, {'2', P("arm", "v7")}});
  auto d = SelectPlatform(index, *Platform::Parse("linux/s390x"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr("linux/s390x"));
  EXPECT_THAT(d.status().message(), HasSubstr("linux/amd64, linux/arm/v7"));
  // arm v5 cannot run a v7 image.
  EXPECT_FALSE(SelectPlatform(index, *Platform::Parse("linux/arm/v5")).ok());
}

TEST(ManifestTest, BuildsImageDescriptorWithDiffIds) {
  auto m = ParseManifest(ImageManifest(std::string(kOciManifest),
                                       "application/vnd.oci.image.layer.v1.tar+gzip"));
  ASSERT_TRUE(m.ok());
  std::string config = "{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\","
                       "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" +
                       D('d') + "\",\"" + D('e') + "\"]}}";
  auto image = MakeImageDescriptor("docker://x/y:z", *Digest::Parse(D('f')), *m, config);
  ASSERT_TRUE(image.ok()) << image.status().message();
  EXPECT_EQ(image->reference, "docker://x/y:z");
  EXPECT_EQ(image->manifest_digest.ToString(), D('f'));
  EXPECT_EQ(image->manifest_media_type, kOciManifest);
  EXPECT_EQ(image->config_digest.ToString(), D('c'));
  EXPECT_EQ(image->platform, "linux/arm/v7");
  ASSERT_EQ(image->layers.size(), 2u);
  EXPECT_EQ(image->layers[0].diff_id->ToString(), D('d'));
  EXPECT_EQ(image->layers[1].diff_id->ToString(), D('e'));
  EXPECT_EQ(image->layers[0].annotations.at("k"), "v");

  std::string short_config =
      "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" + D('d') + "\"]}}";
  auto bad = MakeImageDescriptor("r", *Digest::Parse(D('f')), *m, short_config);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("1 diff_ids for 2 layers"));
  EXPECT_FALSE(MakeImageDescriptor("r", *Digest::Parse(D('f')), *m, "{}").ok());
}

}  // namespace
}  // namespace lazyfs::fetch
