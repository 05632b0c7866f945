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
  // C1 controls (CSI as U+009B, or as the lone byte 0x9b an 8-bit terminal obeys) and bytes
  // outside UTF-8 are escaped too; other UTF-8 is kept.
  EXPECT_EQ(QuoteName("\xc2\x9b"
                      "2J \x9b"
                      "2J caf\xc3\xa9"),
            "\"\\xc2\\x9b2J \\x9b2J caf\xc3\xa9\"");
}

TEST(TextTest, Utf8IsCheckedAsRfc3629Says) {
  struct Case {
    std::string bytes;
    bool utf8;
  };
  const Case cases[] = {
      {"", true},
      {"plain", true},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", true},
      {"\xf4\x8f\xbf\xbf", true},  // U+10FFFF
      {"\xff", false},
      {"bad\xff\xfename", false},
      {"\xc0\xaf", false},          // overlong '/'
      {"\xe0\x80\xaf", false},      // overlong '/'
      {"\xed\xa0\x80", false},      // a surrogate
      {"\xf4\x90\x80\x80", false},  // past U+10FFFF
      {"\xe2\x82", false},          // cut short
      {"\x80", false},              // a continuation byte alone
  };
  for (const Case& c : cases) EXPECT_EQ(IsUtf8(c.bytes), c.utf8) << HexEncode(c.bytes);
}

TEST(TextTest, EscapeBytesModes) {
  struct Case {
    std::string bytes;
    std::string utf8, terminal, message;
  };
  const Case cases[] = {
      {"etc/passwd", "etc/passwd", "etc/passwd", "etc/passwd"},
      {"bad\xff\xfename", "bad\\xff\\xfename", "bad\\xff\\xfename", "bad\\xff\\xfename"},
      {"a\\xffb", "a\\x5cxffb", "a\\x5cxffb", "a\\xffb"},
      {"\x1b[2J\n\x7f", "\x1b[2J\n\x7f", "\\x1b[2J\\x0a\\x7f", "\\x1b[2J\\x0a\\x7f"},
      {"\xc2\x9b\xc2\xa0", "\xc2\x9b\xc2\xa0", "\\xc2\\x9b\xc2\xa0", "\\xc2\\x9b\xc2\xa0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(HexEncode(c.bytes));
    EXPECT_EQ(EscapeBytes(c.bytes, Escape::kUtf8), c.utf8);
    EXPECT_EQ(EscapeBytes(c.bytes, Escape::kTerminal), c.terminal);
    EXPECT_EQ(EscapeBytes(c.bytes, Escape::kMessage), c.message);
  }
}

TEST(TextTest, EscapedBytesAreUtf8AndUnescapeToTheBytes) {
  // Every single byte, and every pair, in both lossless modes.
  for (int a = 0; a < 256; ++a) {
    for (int b = -1; b < 256; ++b) {
      std::string bytes(1, static_cast<char>(a));
      if (b >= 0) bytes += static_cast<char>(b);
      for (Escape mode : {Escape::kUtf8, Escape::kTerminal}) {
        const std::string text = EscapeBytes(bytes, mode);
        ASSERT_TRUE(IsUtf8(text)) << HexEncode(bytes);
        auto back = UnescapeBytes(text);
        ASSERT_TRUE(back.ok()) << HexEncode(bytes) << ": " << back.status().ToString();
        ASSERT_EQ(*back, bytes);
      }
    }
  }
  for (const char* bad : {"\\", "\\x", "\\x4", "\\xg0", "a\\nb"}) {
    EXPECT_FALSE(UnescapeBytes(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace lazyfs
