#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fetch/fetch.h"

namespace lazyfs::fetch {
namespace {

using ::testing::HasSubstr;

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct GoodCase {
  std::string text;
  std::string registry;
  std::string repository;
  std::string tag;
  std::string digest;  // empty: none
  std::string canonical;
};

TEST(ImageRefTest, ParsesAndNormalises) {
  const GoodCase cases[] = {
      {"alpine", "docker.io", "library/alpine", "latest", "",
       "docker://docker.io/library/alpine:latest"},
      {"alpine:3.20", "docker.io", "library/alpine", "3.20", "",
       "docker://docker.io/library/alpine:3.20"},
      {"library/alpine:3.20", "docker.io", "library/alpine", "3.20", "",
       "docker://docker.io/library/alpine:3.20"},
      {"docker.io/alpine", "docker.io", "library/alpine", "latest", "",
       "docker://docker.io/library/alpine:latest"},
      {"index.docker.io/user/app:v1", "docker.io", "user/app", "v1", "",
       "docker://docker.io/user/app:v1"},
      {"docker://alpine", "docker.io", "library/alpine", "latest", "",
       "docker://docker.io/library/alpine:latest"},
      {"docker://127.0.0.1:5000/foo/bar:t", "127.0.0.1:5000", "foo/bar", "t", "",
       "docker://127.0.0.1:5000/foo/bar:t"},
      {"localhost/foo", "localhost", "foo", "latest", "", "docker://localhost/foo:latest"},
      {"localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", "",
       "docker://localhost:5000/a/b/c:latest"},
      {"ghcr.io/o/r:t", "ghcr.io", "o/r", "t", "", "docker://ghcr.io/o/r:t"},
      {"[::1]:5000/x", "[::1]:5000", "x", "latest", "", "docker://[::1]:5000/x:latest"},
      {"foo:5000", "docker.io", "library/foo", "5000", "",
       "docker://docker.io/library/foo:5000"},
      {"example.com/a.b_c__d-e--f/x", "example.com", "a.b_c__d-e--f/x", "latest", "",
       "docker://example.com/a.b_c__d-e--f/x:latest"},
      {"alpine@sha256:" + kHex, "docker.io", "library/alpine", "", "sha256:" + kHex,
       "docker://docker.io/library/alpine@sha256:" + kHex},
      {"127.0.0.1:5000/foo:t@sha256:" + kHex, "127.0.0.1:5000", "foo", "t", "sha256:" + kHex,
       "docker://127.0.0.1:5000/foo:t@sha256:" + kHex},
  };
  for (const GoodCase& c : cases) {
    SCOPED_TRACE(c.text);
    auto ref = ImageRef::Parse(c.text);
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(ref->transport, Transport::kDocker);
    EXPECT_EQ(ref->registry, c.registry);
    EXPECT_EQ(ref->repository, c.repository);
    EXPECT_EQ(ref->tag, c.tag);
    EXPECT_EQ(ref->digest ? ref->digest->ToString() : "", c.digest);
    EXPECT_EQ(ref->ToString(), c.canonical);
    // The canonical text parses back to the same reference.
    auto again = ImageRef::Parse(ref->ToString());
    ASSERT_TRUE(again.ok()) << again.status().message();
    EXPECT_EQ(again->ToString(), c.canonical);
  }
}

TEST(ImageRefTest, ParsesOciLayouts) {
  const struct {
    std::string text, path, tag, canonical;
  } cases[] = {
      {"oci:/tmp/layout", "/tmp/layout", "", "oci:/tmp/layout"},
      {"oci:/tmp/layout:v1", "/tmp/layout", "v1", "oci:/tmp/layout:v1"},
      {"oci:rel/dir:latest", "rel/dir", "latest", "oci:rel/dir:latest"},
      {"oci:/tmp/a:b/c", "/tmp/a:b/c", "", "oci:/tmp/a:b/c"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto ref = ImageRef::Parse(c.text);
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(ref->transport, Transport::kOciLayout);
    EXPECT_EQ(ref->path, c.path);
    EXPECT_EQ(ref->tag, c.tag);
    EXPECT_EQ(ref->ToString(), c.canonical);
  }
}

TEST(ImageRefTest, ParsesArchives) {
  const struct {
    std::string text;
    Transport transport;
    std::string path, tag;
  } cases[] = {
      {"oci-archive:/tmp/img.tar", Transport::kOciArchive, "/tmp/img.tar", ""},
      {"oci-archive:/tmp/img.tar:v1", Transport::kOciArchive, "/tmp/img.tar", "v1"},
      {"oci-archive:/tmp/a:b/img.tar", Transport::kOciArchive, "/tmp/a:b/img.tar", ""},
      {"docker-archive:/tmp/save.tar", Transport::kDockerArchive, "/tmp/save.tar", ""},
      {"docker-archive:save.tar:busybox:1.36", Transport::kDockerArchive, "save.tar",
       "busybox:1.36"},
      {"docker-archive:/s.tar:localhost:5000/app:v2", Transport::kDockerArchive, "/s.tar",
       "localhost:5000/app:v2"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto ref = ImageRef::Parse(c.text);
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(ref->transport, c.transport);
    EXPECT_EQ(ref->path, c.path);
    EXPECT_EQ(ref->tag, c.tag);
    // The canonical text parses back to the same reference.
    EXPECT_EQ(ref->ToString(), c.text);
    auto again = ImageRef::Parse(ref->ToString());
    ASSERT_TRUE(again.ok()) << again.status().message();
    EXPECT_EQ(again->transport, c.transport);
    EXPECT_EQ(again->path, c.path);
    EXPECT_EQ(again->tag, c.tag);
  }
}

TEST(ImageRefTest, RejectsMalformed) {
  const struct {
    std::string text;
    StatusCode code;
    std::string message;
  } cases[] = {
      {"", StatusCode::kInvalidArgument, "empty name"},
      {"Alpine", StatusCode::kInvalidArgument, "must be lowercase"},
      {"alpine:", StatusCode::kInvalidArgument, "invalid tag"},
      {"alpine:bad/tag:x", StatusCode::kInvalidArgument, "invalid"},
      {"alpine@sha256:abc", StatusCode::kInvalidArgument, "64 hex digits"},
      {"alpine@md5:" + kHex.substr(0, 32), StatusCode::kUnimplemented, "md5"},
      {"foo//bar", StatusCode::kInvalidArgument, "invalid repository component"},
      {"127.0.0.1:5000/", StatusCode::kInvalidArgument, "empty repository"},
      {"foo/-bar", StatusCode::kInvalidArgument, "invalid repository component \"-bar\""},
      {"a_b.c/x", StatusCode::kInvalidArgument, "invalid registry host \"a_b.c\""},
      {"http://example.com/x", StatusCode::kInvalidArgument, "unknown transport \"http://\""},
      {"oci:", StatusCode::kInvalidArgument, "needs a layout directory"},
      {"oci:/tmp/x:", StatusCode::kInvalidArgument, "empty tag"},
      {"docker-daemon:alpine:3.20", StatusCode::kUnimplemented, "not supported"},
      {"oci-archive:", StatusCode::kInvalidArgument, "needs a file"},
      {"oci-archive:/tmp/x.tar:", StatusCode::kInvalidArgument, "empty tag"},
      {"docker-archive:", StatusCode::kInvalidArgument, "needs a file"},
      {"docker-archive::app:1", StatusCode::kInvalidArgument, "needs a file"},
      {"docker-archive:/tmp/x.tar:", StatusCode::kInvalidArgument, "empty image name"},
      {"docker-archive:/tmp/x.tar:App:1", StatusCode::kInvalidArgument, "lowercase"},
      {"docker-archive:/tmp/x.tar:app@sha256:" + kHex, StatusCode::kInvalidArgument,
       "not digest"},
      {"alpine:" + std::string(129, 'a'), StatusCode::kInvalidArgument, "invalid tag"},
      {"x/" + std::string(300, 'a'), StatusCode::kInvalidArgument, "longer than 255"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto ref = ImageRef::Parse(c.text);
    ASSERT_FALSE(ref.ok()) << "parsed as " << ref->ToString();
    EXPECT_EQ(ref.status().code(), c.code) << ref.status().message();
    EXPECT_THAT(ref.status().message(), HasSubstr(c.message));
    if (!c.text.empty()) {
      EXPECT_THAT(ref.status().message(), HasSubstr(c.text.substr(0, 20)));
    }
  }
}

TEST(PlatformTest, ParsesAndNormalises) {
  const struct {
    std::string text, canonical;
  } cases[] = {
      {"linux/amd64", "linux/amd64"},     {"linux/x86_64", "linux/amd64"},
      {"linux/arm64", "linux/arm64"},     {"linux/aarch64", "linux/arm64"},
      {"linux/arm64/v8", "linux/arm64/v8"}, {"linux/armhf", "linux/arm/v7"},
      {"Linux/arm/v6", "linux/arm/v6"},   {"linux/i686", "linux/386"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto p = Platform::Parse(c.text);
    ASSERT_TRUE(p.ok()) << p.status().message();
    EXPECT_EQ(p->ToString(), c.canonical);
  }
  for (const char* bad : {"linux", "linux/", "/amd64", "a/b/c/d"}) {
    auto p = Platform::Parse(bad);
    EXPECT_FALSE(p.ok()) << bad;
    EXPECT_THAT(p.status().message(), HasSubstr("OS/ARCH"));
  }
  EXPECT_EQ(Platform::Host().os, "linux");
  EXPECT_FALSE(Platform::Host().architecture.empty());
}

}  // namespace
}  // namespace lazyfs::fetch
