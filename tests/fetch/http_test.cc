// The small encoders of the HTTP layer: base64 for credentials, query escaping, origins.
#include "fetch/http.h"

#include <gtest/gtest.h>

namespace lazyfs::fetch {
namespace {

TEST(Base64Test, EncodesWithPaddingAsRfc4648) {
  struct Case {
    std::string in, out;
  };
  // RFC 4648 section 10, and binary bytes.
  for (const Case& c : std::vector<Case>{{"", ""},
                                         {"f", "Zg=="},
                                         {"fo", "Zm8="},
                                         {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="},
                                         {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"},
                                         {"user:pass word", "dXNlcjpwYXNzIHdvcmQ="},
                                         {std::string("\0\xff\xfe", 3), "AP/+"}}) {
    SCOPED_TRACE(c.out);
    EXPECT_EQ(Base64Encode(c.in), c.out);
    auto back = Base64Decode(c.out);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(*back, c.in);
  }
}

TEST(Base64Test, DecodesWhatAuthFilesHoldAndRejectsTheRest) {
  struct Case {
    std::string in;
    bool ok;
    std::string out;
  };
  for (const Case& c : std::vector<Case>{
           {"Zm9vYmE", true, "fooba"},           // padding left out
           {"Zm9v\nYmE=\r\n", true, "fooba"},  // line breaks
           {"AP_-", true, std::string("\0\xff\xfe", 3)},  // the URL-safe alphabet
           {"Zm9v YmE=", false, ""},              // a space
           {"Zm9v*mE=", false, ""},               // outside the alphabet
           {"Zm9vY", false, ""},                   // 6 bits cannot end a byte
       }) {
    SCOPED_TRACE(c.in);
    auto got = Base64Decode(c.in);
    ASSERT_EQ(got.ok(), c.ok) << (got.ok() ? *got : got.status().message());
    if (c.ok) {
      EXPECT_EQ(*got, c.out);
    } else {
      EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

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
