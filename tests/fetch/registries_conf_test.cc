// registries.conf parsing and the endpoints a reference maps to (pure; no registry needed).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fetch/registries_conf.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;

constexpr const char* kConf = R"(
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.local:5000/hub"
[[registry.mirror]]
location = "plain.local"
insecure = true

[[registry]]
prefix = "quay.io/team"
location = "internal.example/quay-team"
insecure = true

[[registry]]
location = "10.0.0.1:5000"

[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "cache.corp.example"

[[registry]]
prefix = "evil.example"
blocked = true
)";

std::string Describe(const std::vector<Endpoint>& endpoints) {
  std::string out;
  for (const Endpoint& e : endpoints) {
    if (!out.empty()) out += " | ";
    out += e.registry + " " + e.repository + (e.insecure ? " insecure" : "") +
           (e.mirror ? " mirror" : "");
  }
  return out;
}

TEST(RegistriesConfTest, EndpointsForReferences) {
  auto conf = ParseRegistriesConf(kConf, "test.conf");
  ASSERT_TRUE(conf.ok()) << conf.status().message();
  ASSERT_EQ(conf->registries.size(), 5u);
  struct Case {
    const char* registry;
    const char* repository;
    bool insecure_flag;
    const char* want;
  };
  const Case cases[] = {
      {"docker.io", "library/alpine", false,
       "mirror.local:5000 hub/library/alpine mirror | plain.local library/alpine insecure mirror "
       "| docker.io library/alpine"},
      {"quay.io", "team/app", false, "internal.example quay-team/app insecure"},
      {"quay.io", "teamster/app", false, "quay.io teamster/app"},  // a prefix is whole components
      {"quay.io", "other/app", true, "quay.io other/app insecure"},  // --insecure
      {"10.0.0.1:5000", "x/y", false, "10.0.0.1:5000 x/y"},
      {"build.corp.example", "tools/cc", false,
       "cache.corp.example tools/cc mirror | build.corp.example tools/cc"},
      {"corp.example", "tools/cc", false, "corp.example tools/cc"},  // *. needs a subdomain
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.registry) + "/" + c.repository);
    SourceOptions options;
    options.insecure = c.insecure_flag;
    auto endpoints = EndpointsFor(*conf, c.registry, c.repository, false, options);
    ASSERT_TRUE(endpoints.ok()) << endpoints.status().message();
    EXPECT_EQ(Describe(*endpoints), c.want);
  }
  auto blocked = EndpointsFor(*conf, "evil.example", "a/b", false, SourceOptions{});
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(blocked.status().message(), HasSubstr("blocked by test.conf"));
}

// mirror-by-digest-only keeps every mirror of its entry out of a pull by tag; pull-from-mirror
// does the same per mirror, either way round.
TEST(RegistriesConfTest, MirrorsServeOnlyThePullsTheyAreFor) {
  auto conf = ParseRegistriesConf(R"(
[[registry]]
prefix = "docker.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "digests.local"
[[registry.mirror]]
location = "tags.local"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "quay.io"
[[registry.mirror]]
location = "all.local"
pull-from-mirror = "all"
[[registry.mirror]]
location = "digests.local"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.local"
pull-from-mirror = "tag-only"
)",
                                  "test.conf");
  ASSERT_TRUE(conf.ok()) << conf.status().message();
  struct Case {
    const char* registry;
    bool by_digest;
    const char* want;
  };
  for (const Case& c : {
           Case{"docker.io", false, "docker.io a/b"},
           Case{"docker.io", true, "digests.local a/b mirror | tags.local a/b mirror | docker.io a/b"},
           Case{"quay.io", false, "all.local a/b mirror | tags.local a/b mirror | quay.io a/b"},
           Case{"quay.io", true, "all.local a/b mirror | digests.local a/b mirror | quay.io a/b"},
       }) {
    SCOPED_TRACE(std::string(c.registry) + (c.by_digest ? " by digest" : " by tag"));
    auto endpoints = EndpointsFor(*conf, c.registry, "a/b", c.by_digest, SourceOptions{});
    ASSERT_TRUE(endpoints.ok()) << endpoints.status().message();
    EXPECT_EQ(Describe(*endpoints), c.want);
  }
}

TEST(RegistriesConfTest, BadFilesNameTheFileAndLine) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"[[registry]\nlocation = \"x\"\n", "bad.conf: line 1"},
      {"[[registry]]\nlocation = 5\n", "\"location\" must be a string"},
      {"[[registry]]\nlocation = \"x\"\ninsecure = \"yes\"\n", "\"insecure\" must be true or false"},
      {"\n[[registry]]\ninsecure = true\n", "[[registry]] at line 2: needs a prefix or a location"},
      {"[[registry]]\nlocation = \"x\"\n[[registry.mirror]]\ninsecure = true\n",
       "[[registry.mirror]] at line 3: needs a location"},
      {"registry = \"x\"\n", "must be an array of tables"},
      {"[[registry]]\nlocation = \"x\"\nmirror-by-digest-only = \"yes\"\n",
       "\"mirror-by-digest-only\" must be true or false"},
      {"[[registry]]\nlocation = \"x\"\n[[registry.mirror]]\nlocation = \"m\"\n"
       "pull-from-mirror = \"some\"\n",
       "\"pull-from-mirror\" must be \"all\", \"digest-only\" or \"tag-only\", not \"some\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto conf = ParseRegistriesConf(c.text, "bad.conf");
    ASSERT_FALSE(conf.ok());
    EXPECT_EQ(conf.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(conf.status().message(), HasSubstr("bad.conf"));
    EXPECT_THAT(conf.status().message(), HasSubstr(c.error));
  }
  // The v1 format and keys lazyfs does not act on are ignored, not refused.
  auto v1 = ParseRegistriesConf("[registries.search]\nregistries = ['docker.io']\n", "v1.conf");
  ASSERT_TRUE(v1.ok()) << v1.status().message();
  EXPECT_TRUE(v1->registries.empty());
}

TEST(RegistriesConfTest, NamedFileMustExistDefaultNeedNot) {
  SourceOptions options;
  options.registries_conf = "/nonexistent/registries.conf";
  auto conf = LoadRegistriesConf(options);
  ASSERT_FALSE(conf.ok());
  EXPECT_THAT(conf.status().message(), HasSubstr("/nonexistent/registries.conf"));
}

}  // namespace
}  // namespace lazyfs::fetch
