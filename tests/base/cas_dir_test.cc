#include "base/cas_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

namespace lazyfs {
namespace {

class CasDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lazyfs-cas-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto cas = CasDir::Open(root_ + "/cas");
    ASSERT_TRUE(cas.ok()) << cas.status().ToString();
    cas_ = std::move(*cas);
  }
  void TearDown() override { RemoveTree(root_).IgnoreError(); }

  std::string root_;
  std::unique_ptr<CasDir> cas_;
};

TEST_F(CasDirTest, PutThenOpen) {
  const Digest d = Sha256Of("hello");
  EXPECT_FALSE(cas_->Contains(d));
  ASSERT_TRUE(cas_->Put(d, "hello").ok());
  EXPECT_TRUE(cas_->Contains(d));
  auto fd = cas_->OpenVerified(d);
  ASSERT_TRUE(fd.ok());
  char buf[16];
  EXPECT_EQ(*PreadFull(fd->get(), buf, sizeof(buf), 0), 5u);
  EXPECT_EQ(std::string(buf, 5), "hello");
}

TEST_F(CasDirTest, WrongBytesAreNeverVisible) {
  const Digest d = Sha256Of("hello");
  Status s = cas_->Put(d, "hellO");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_FALSE(cas_->Contains(d));
  // The temporary is gone too.
  EXPECT_EQ(rmdir((root_ + "/cas/tmp").c_str()), 0);
}

TEST_F(CasDirTest, ACallerHashedWriteCommitsOnlyUnderTheDigestItsCallerComputed) {
  const Digest d = Sha256Of("hello");
  {
    auto w = cas_->BeginWrite(d, 5, true);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write("hellO", 5).ok());
    // The caller's hash of what it wrote says the bytes are not `d`.
    Status s = (*w)->CommitHashed(Sha256Of("hellO"));
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
    EXPECT_EQ((*w)->Commit().code(), StatusCode::kInternal) << "no unhashed commit";
  }
  EXPECT_FALSE(cas_->Contains(d));
  EXPECT_EQ(rmdir((root_ + "/cas/tmp").c_str()), 0) << "the temporary is gone";
  ASSERT_TRUE(MakeDirs(root_ + "/cas/tmp", 0700).ok());
  ASSERT_TRUE(cas_->PutHashed(d, "hello").ok());
  auto fd = cas_->OpenVerified(d);
  ASSERT_TRUE(fd.ok());
  char buf[8];
  EXPECT_EQ(*PreadFull(fd->get(), buf, sizeof(buf), 0), 5u);
  EXPECT_EQ(std::string(buf, 5), "hello");
}

TEST_F(CasDirTest, CorruptObjectIsDroppedOnOpen) {
  const Digest d = Sha256Of("payload");
  ASSERT_TRUE(cas_->Put(d, "payload").ok());
  // A fresh CasDir has not verified anything yet, as in a new process.
  auto fresh = CasDir::Open(root_ + "/cas");
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(WriteFileAtomic(cas_->PathFor(d), "paYload").ok());
  auto fd = (*fresh)->OpenVerified(d);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kNotFound);
  EXPECT_NE(fd.status().message().find("corrupt"), std::string::npos);
  EXPECT_FALSE((*fresh)->Contains(d));
}

TEST_F(CasDirTest, AbandonedWriterLeavesNothing) {
  const Digest d = Sha256Of("abc");
  {
    auto w = cas_->BeginWrite(d, 3);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write("ab", 2).ok());
  }
  EXPECT_FALSE(cas_->Contains(d));
  EXPECT_EQ(rmdir((root_ + "/cas/tmp").c_str()), 0);
}

}  // namespace
}  // namespace lazyfs
