#include "base/status.h"

#include <gtest/gtest.h>

namespace lazyfs {
namespace {

Result<int> Half(int x) {
  if (x % 2) return InvalidArgumentError(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  LAZYFS_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, ContextIsPrefixed) {
  Status s = DataLossError("digest mismatch").WithContext("while fetching blob sha256:ab12");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "while fetching blob sha256:ab12: digest mismatch");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
}

TEST(StatusTest, ErrnoErrorMapsCode) {
  struct {
    int err;
    StatusCode code;
  } cases[] = {{ENOENT, StatusCode::kNotFound},
               {ENOSPC, StatusCode::kResourceExhausted},
               {EACCES, StatusCode::kPermissionDenied},
               {ECONNRESET, StatusCode::kUnavailable}};
  for (const auto& c : cases) {
    Status s = ErrnoError(c.err, "open /x");
    EXPECT_EQ(s.code(), c.code) << c.err;
    EXPECT_EQ(s.error_number(), c.err);
    EXPECT_EQ(s.message().rfind("open /x: ", 0), 0u);
  }
}

}  // namespace
}  // namespace lazyfs
