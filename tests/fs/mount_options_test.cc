// The -o string the daemon mounts with: its safety rules hold however the options are spelled.
#include "fs/mount_options.h"

#include <gtest/gtest.h>

namespace lazyfs::fs {
namespace {

bool Has(const std::string& opts, const std::string& opt) {
  return ("," + opts + ",").find("," + opt + ",") != std::string::npos;
}

TEST(MountOptionStringTest, OurOptionsComeLastAndWin) {
  MountOptions o;
  o.fuse_options = {"rw", "debug"};
  auto s = MountOptionString(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(*s, "rw,debug,ro,subtype=lazyfs,fsname=lazyfs,nosuid,nodev");
}

TEST(MountOptionStringTest, AllowOtherAlwaysBringsDefaultPermissions) {
  struct Case {
    bool flag;
    std::vector<std::string> extra;
  };
  const Case cases[] = {{true, {}},
                        {false, {"allow_other"}},
                        {false, {"noatime,allow_other"}},
                        {false, {"allow_root"}},
                        {true, {"allow_other"}}};
  for (const Case& c : cases) {
    MountOptions o;
    o.allow_other = c.flag;
    o.fuse_options = c.extra;
    auto s = MountOptionString(o);
    ASSERT_TRUE(s.ok());
    EXPECT_TRUE(Has(*s, "default_permissions")) << *s;
    EXPECT_TRUE(Has(*s, "nosuid") && Has(*s, "nodev")) << *s;
  }
  MountOptions plain;
  EXPECT_FALSE(Has(*MountOptionString(plain), "default_permissions"));
  // An escaped comma is part of a value, not a separator.
  plain.fuse_options = {"fsname=a\\,allow_other"};
  EXPECT_FALSE(Has(*MountOptionString(plain), "default_permissions"));
}

TEST(MountOptionStringTest, SuidAndDevNeedTheFlagThatSaysSo) {
  for (const char* opt : {"suid", "dev", "ro,dev"}) {
    MountOptions o;
    o.fuse_options = {opt};
    auto s = MountOptionString(o);
    ASSERT_FALSE(s.ok()) << opt;
    EXPECT_NE(s.status().message().find("--allow-setuid-and-devices"), std::string::npos);
    o.allow_setuid_and_devices = true;
    s = MountOptionString(o);
    ASSERT_TRUE(s.ok()) << opt;
    EXPECT_TRUE(Has(*s, "suid") && Has(*s, "dev") && !Has(*s, "nosuid")) << *s;
  }
}

}  // namespace
}  // namespace lazyfs::fs
