// base/text.h: hex, path joining, base64 and quoting, table-driven.
#include "base/text.h"

#include <gtest/gtest.h>

namespace lazyfs {
namespace {

TEST(TextTest, HexAndJoin) {
  EXPECT_EQ(HexEncode(std::string("\x01\xab\xff", 3)), "01abff");
  EXPECT_EQ(HexEncode(""), "");
  EXPECT_EQ(JoinPath("/", "etc"), "/etc");
  EXPECT_EQ(JoinPath("/etc", "passwd"), "/etc/passwd");
}

TEST(TextTest, Base64RoundTripsEveryLength) {
  std::string data;
  for (int n = 0; n < 40; ++n) {
    auto back = Base64Decode(Base64Encode(data));
    ASSERT_TRUE(back.ok()) << n;
    EXPECT_EQ(*back, data) << n;
    data.push_back(static_cast<char>(n * 37 + 200));
  }
}

TEST(TextTest, Base64DecodeTakesBothAlphabetsAndMissingPadding) {
  struct Case {
    std::string in;
    bool ok;
    std::string out;
  };
  const Case cases[] = {
      {"dXNlcjpwYXNz", true, "user:pass"},
      {"dXNlcjpwYXNzMQ==", true, "user:pass1"},
      {"dXNlcjpwYXNzMQ", true, "user:pass1"},
      {"-_8=", true, "\xfb\xff"},
      {"+/8=", true, "\xfb\xff"},
      {"", true, ""},
      {"a", false, ""},
      {"ab=c", false, ""},
      {"ab!c", false, ""},
  };
  for (const Case& c : cases) {
    auto got = Base64Decode(c.in);
    EXPECT_EQ(got.ok(), c.ok) << c.in;
    if (c.ok && got.ok()) {
      EXPECT_EQ(*got, c.out) << c.in;
    }
  }
}

TEST(TextTest, QuoteNameEscapesWhatCouldDriveATerminal) {
  EXPECT_EQ(QuoteName("etc/passwd"), "\"etc/passwd\"");
  EXPECT_EQ(QuoteName("a\x1b[2Jb\n"), "\"a\\x1b[2Jb\\x0a\"");
  EXPECT_EQ(QuoteName("q\"\\"), "\"q\\x22\\x5c\"");
  EXPECT_EQ(QuoteName(std::string(10, 'x'), 4), "\"xxxx...\"");
}

}  // namespace
}  // namespace lazyfs
