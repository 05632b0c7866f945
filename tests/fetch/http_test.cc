// The small helpers of the HTTP layer: query escaping, origins, Retry-After.
#include "fetch/http.h"

#include <gtest/gtest.h>

namespace lazyfs::fetch {
namespace {

TEST(UrlEscapeTest, EscapesAllButUnreservedCharacters) {
  EXPECT_EQ(UrlEscape("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull");
  EXPECT_EQ(UrlEscape("a-b.c_d~e"), "a-b.c_d~e");
  EXPECT_EQ(UrlEscape("sp ace&=?"), "sp%20ace%26%3D%3F");
  EXPECT_EQ(UrlEscape(""), "");
}

TEST(OriginOfTest, FillsDefaultPortsAndLowerCasesTheHost) {
  EXPECT_EQ(OriginOf("https://Registry.Example/v2/"), "https://registry.example:443");
  EXPECT_EQ(OriginOf("http://127.0.0.1:5000/x"), "http://127.0.0.1:5000");
  EXPECT_EQ(OriginOf("not a url"), "");
}

TEST(ParseRetryAfterTest, SecondsOrAnHttpDate) {
  EXPECT_EQ(ParseRetryAfter("7"), 7);
  EXPECT_EQ(ParseRetryAfter(""), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("soon"), std::nullopt);
  // A date in the past asks for no wait at all.
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"), 0);
}

}  // namespace
}  // namespace lazyfs::fetch
