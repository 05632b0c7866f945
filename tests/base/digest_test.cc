#include "base/digest.h"

#include <gtest/gtest.h>

#include "base/image.h"

namespace lazyfs {
namespace {

TEST(DigestTest, KnownVectors) {
  EXPECT_EQ(Sha256Of("").ToString(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Of("abc").Hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.Finish(), Sha256Of("abc"));
}

TEST(DigestTest, ParseRoundTrips) {
  const std::string text = Sha256Of("abc").ToString();
  Result<Digest> d = Digest::Parse(text);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->ToString(), text);
  EXPECT_EQ(d->Short(), "sha256:ba7816bf8f01");
}

TEST(DigestTest, ParseRejects) {
  struct {
    const char* text;
    StatusCode code;
    const char* fragment;
  } cases[] = {
      {"", StatusCode::kInvalidArgument, "ALGORITHM:HEX"},
      {"ba7816bf", StatusCode::kInvalidArgument, "ALGORITHM:HEX"},
      {"sha256:abc", StatusCode::kInvalidArgument, "64 hex"},
      {"sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
       StatusCode::kInvalidArgument, "lowercase"},
      {"sha512:00", StatusCode::kUnimplemented, "sha512"},
  };
  for (const auto& c : cases) {
    Result<Digest> d = Digest::Parse(c.text);
    ASSERT_FALSE(d.ok()) << c.text;
    EXPECT_EQ(d.status().code(), c.code) << c.text;
    EXPECT_NE(d.status().message().find(c.fragment), std::string::npos) << d.status().message();
  }
}

TEST(MediaTypeTest, Compression) {
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar+gzip"),
            LayerCompression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            LayerCompression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar+zstd"),
            LayerCompression::kZstd);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar"),
            LayerCompression::kNone);
  Result<LayerCompression> bad = CompressionOfMediaType("application/x-rar");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("application/x-rar"), std::string::npos);
}

}  // namespace
}  // namespace lazyfs
