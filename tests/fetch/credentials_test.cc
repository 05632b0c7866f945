// Credentials from auth files: the "auth" entries other tools write, decoded with base's base64.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/fd.h"
#include "fetch/registry_client.h"
#include "tests/fetch/test_layout.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

TEST(CredentialsTest, AuthEntriesAsToolsWriteThem) {
  TempDir tmp;
  const std::string file = tmp.path() + "/auth.json";
  SourceOptions options;
  options.docker_config = file;
  struct Case {
    std::string auth;  // as written in the file's JSON
    std::string user, password;
  };
  for (const Case& c : std::vector<Case>{
           {"dXNlcjpwYXNz", "user", "pass"},
           {"dXNlcjpwYXNzIHdvcmQ=", "user", "pass word"},
           {"dXNlcjpwYXNzIHdvcmQ", "user", "pass word"},        // padding left out
           {"dXNlcjpwYXNz\\nIHdvcmQ=\\n", "user", "pass word"},  // wrapped
           {"dTpwPz8-", "u", "p?\?>"},                            // the URL-safe alphabet
       }) {
    SCOPED_TRACE(c.auth);
    ASSERT_TRUE(
        WriteFileAtomic(file, "{\"auths\":{\"reg.example\":{\"auth\":\"" + c.auth + "\"}}}").ok());
    auto found = FindCredentials(options, "reg.example", "team/app");
    ASSERT_TRUE(found.ok()) << found.status().message();
    ASSERT_TRUE(found->credentials.has_value());
    EXPECT_EQ(found->credentials->username, c.user);
    EXPECT_EQ(found->credentials->password, c.password);
    EXPECT_EQ(found->source, file);
  }
}

TEST(CredentialsTest, AnAuthEntryThatIsNotBase64NamesTheFileNotTheSecret) {
  TempDir tmp;
  const std::string file = tmp.path() + "/auth.json";
  SourceOptions options;
  options.docker_config = file;
  for (const std::string auth : {"not base64!", "dXNlcnBhc3M="}) {  // the second has no colon
    SCOPED_TRACE(auth);
    ASSERT_TRUE(
        WriteFileAtomic(file, "{\"auths\":{\"reg.example\":{\"auth\":\"" + auth + "\"}}}").ok());
    auto found = FindCredentials(options, "reg.example", "team/app");
    ASSERT_FALSE(found.ok());
    EXPECT_EQ(found.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(found.status().message(), HasSubstr(file));
    EXPECT_THAT(found.status().message(), HasSubstr("reg.example"));
    EXPECT_THAT(found.status().message(), ::testing::Not(HasSubstr(auth)));
  }
}

}  // namespace
}  // namespace lazyfs::fetch
