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

TEST(ResolveUrlTest, RelativeAndAbsoluteLocations) {
  const std::string base = "http://127.0.0.1:5000/v2/r/blobs/uploads/";
  EXPECT_EQ(*ResolveUrl(base, "/v2/r/blobs/uploads/u1?_state=a%3D"),
            "http://127.0.0.1:5000/v2/r/blobs/uploads/u1?_state=a%3D");
  EXPECT_EQ(*ResolveUrl(base, "u2"), "http://127.0.0.1:5000/v2/r/blobs/uploads/u2");
  EXPECT_EQ(*ResolveUrl(base, "https://storage.example/up/u3?sig=x"),
            "https://storage.example/up/u3?sig=x");
  EXPECT_FALSE(ResolveUrl("not a url", "/x").ok());
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
