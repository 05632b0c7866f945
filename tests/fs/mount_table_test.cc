// The mount table parser and path normalisation behind `lazyfs umount`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "fs/fs.h"
#include "fs/mount_table.h"

namespace lazyfs::fs {
namespace {

constexpr const char* kTable =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "40 22 0:35 / /mnt/image rw,nosuid,nodev,relatime shared:20 - fuse.lazyfs "
    "docker.io/library/alpine:3.20 ro,user_id=0,group_id=0\n"
    "41 22 0:36 / /mnt/with\\040space ro master:3 - fuse.lazyfs lazyfs ro\n"
    "42 22 0:37 / /home rw - ext4 /dev/sda2 rw\n"
    "43 40 0:38 / /mnt/image ro - tmpfs tmpfs rw\n";

TEST(MountTableTest, FindsMountsAndTheirTypes) {
  auto m = FindMountIn(kTable, "/home");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->fstype, "ext4");
  EXPECT_EQ(m->source, "/dev/sda2");

  m = FindMountIn(kTable, "/mnt/with space");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->mountpoint, "/mnt/with space");
  EXPECT_EQ(m->fstype, kMountType);

  // The topmost of two stacked mounts.
  m = FindMountIn(kTable, "/mnt/image");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->fstype, "tmpfs");

  EXPECT_FALSE(FindMountIn(kTable, "/mnt").has_value());
  EXPECT_FALSE(FindMountIn(kTable, "/mnt/with").has_value());
  EXPECT_FALSE(FindMountIn("", "/").has_value());
  EXPECT_FALSE(FindMountIn("garbage line\n\n", "/").has_value());
}

TEST(MountTableTest, NormalizePath) {
  EXPECT_EQ(NormalizePath("/"), "/");
  EXPECT_EQ(NormalizePath("/a//b/./c/"), "/a/b/c");
  EXPECT_EQ(NormalizePath("/a/b/../c"), "/a/c");
  EXPECT_EQ(NormalizePath("/.."), "/");
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  EXPECT_EQ(NormalizePath("x/y"), NormalizePath(std::string(cwd) + "/x/y"));
}

TEST(MountTableTest, RootIsAMountButNotLazyfs) {
  auto m = FindMount("/");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_TRUE(m->has_value());
  EXPECT_NE((*m)->fstype, kMountType);
}

TEST(UnmountTest, RefusesPathsThatAreNotLazyfsMounts) {
  char dir[] = "/tmp/lazyfs-unmount-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  Status s = Unmount(dir);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("not mounted"), std::string::npos) << s.ToString();
  rmdir(dir);

  s = Unmount("/tmp/lazyfs-no-such-dir-for-sure");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/tmp/lazyfs-no-such-dir-for-sure"), std::string::npos);

  // "/" is a mountpoint, but not ours: never unmounted.
  s = Unmount("/");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a lazyfs mount"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace lazyfs::fs
