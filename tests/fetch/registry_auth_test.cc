// The pure parts of registry authentication: challenges, token answers and where basic
// credentials may go (fetch/registry_auth.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fetch/registry_auth.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;

TEST(ChallengeTest, BearerParametersQuotedAndBare) {
  Challenge c = ParseChallenge(
      "Bearer realm=\"https://auth.example/token\",service=registry.example,"
      "scope=\"repository:a/b:pull\"");
  EXPECT_EQ(c.scheme, "bearer");
  EXPECT_EQ(c.params["realm"], "https://auth.example/token");
  EXPECT_EQ(c.params["service"], "registry.example");
  EXPECT_EQ(c.params["scope"], "repository:a/b:pull");
  EXPECT_EQ(ParseChallenge("Basic realm=\"x\"").scheme, "basic");
  EXPECT_TRUE(ParseChallenge("").params.empty());
}

// A token service states how long its token lives; whatever it states, the lifetime kept is a
// sane number of seconds (no overflow in the clock arithmetic that follows).
TEST(TokenResponseTest, LifetimeIsClampedWhateverTheServiceStates) {
  struct Case {
    std::string expires_in;  // as it appears in the JSON; empty: absent
    int64_t seconds;
  };
  for (const Case& c : std::vector<Case>{
           {"", 60},                      // the distribution spec's default
           {"300", 300},
           {"1", 1},                      // short lifetimes are honoured
           {"3600", 3600},
           {"86400", 3600},               // at most an hour
           {"9223372036854775807", 3600},  // INT64_MAX
           {"18446744073709551615", 3600},  // UINT64_MAX
           {"1e30", 3600},
           {"1.5e3", 1500},
           {"-5", 60},                    // nonsense: the default
           {"-9223372036854775808", 60},
           {"0", 60},
           {"\"3600\"", 60},              // not a number
           {"null", 60},
           {"[]", 60},
       }) {
    SCOPED_TRACE(c.expires_in);
    std::string body = "{\"token\":\"t\"";
    if (!c.expires_in.empty()) body += ",\"expires_in\":" + c.expires_in;
    body += "}";
    auto grant = ParseTokenResponse(body, "token service");
    ASSERT_TRUE(grant.ok()) << grant.status().message();
    EXPECT_EQ(grant->token, "t");
    EXPECT_EQ(grant->lifetime.count(), c.seconds);
  }
}

TEST(TokenResponseTest, NoTokenIsPermissionDenied) {
  for (const std::string body : {"", "{}", "{\"token\":\"\"}", "{\"token\":5}", "[\"token\"]",
                                 "{\"access_token\":null}", "not json"}) {
    SCOPED_TRACE(body);
    auto grant = ParseTokenResponse(body, "token service X");
    ASSERT_FALSE(grant.ok());
    EXPECT_EQ(grant.status().code(), StatusCode::kPermissionDenied);
    EXPECT_THAT(grant.status().message(), HasSubstr("token service X: response holds no token"));
  }
  auto grant = ParseTokenResponse("{\"access_token\":\"a\"}", "p");
  ASSERT_TRUE(grant.ok());
  EXPECT_EQ(grant->token, "a");
}

// Basic credentials go with a token request only where they cannot leak.
TEST(RealmRuleTest, CredentialsGoOnlyToTheRegistrysHostOverHttps) {
  struct Case {
    std::string realm, registry, scheme;
    bool send;
  };
  for (const Case& c : std::vector<Case>{
           {"https://reg.example/token", "reg.example", "https", true},
           {"https://REG.Example:8443/v2/token?x=1", "reg.example:5000", "https", true},
           {"http://reg.example/token", "reg.example", "https", false},  // plain HTTP
           {"http://reg.example:5001/token", "reg.example:5000", "http", true},  // as insecure
           {"http://evil.example/token", "reg.example", "https", false},
           {"http://evil.example/token", "reg.example", "http", false},
           {"https://evil.example/token", "reg.example", "https", false},  // another host
           {"https://reg.example.evil.example/token", "reg.example", "https", false},
           {"https://evil.example/reg.example", "reg.example", "https", false},
           {"https://reg.example@evil.example/token", "reg.example", "https", false},
           {"https://auth.docker.io/token", "registry-1.docker.io", "https", true},
           {"http://auth.docker.io/token", "registry-1.docker.io", "https", false},
           {"https://auth.docker.io/token", "reg.example", "https", false},
           {"http://127.0.0.1:9000/token", "127.0.0.1:5000", "http", true},  // this machine
           {"http://127.0.0.2/token", "127.0.0.1:5000", "http", true},
           {"http://localhost/token", "[::1]:5000", "http", true},
           {"http://127.0.0.1/token", "reg.example", "https", false},  // a remote one's local port
           {"http://192.0.2.2/token", "127.0.0.1:5000", "http", false},
           {"not a url", "reg.example", "https", false},
           {"", "reg.example", "https", false},
       }) {
    SCOPED_TRACE(c.realm + " for " + c.registry + " over " + c.scheme);
    EXPECT_EQ(RealmMayReceiveCredentials(c.realm, c.registry, c.scheme), c.send);
  }
}

}  // namespace
}  // namespace lazyfs::fetch
