// End to end: the lazyfs binary against Debian's docker-registry on 127.0.0.1, real FUSE mounts,
// and real ext4 images checked by e2fsck -fn and a read-only loop mount. Needs root and
// /dev/fuse; a test that cannot get them fails and says so.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>

#include "base/fd.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/suite.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/foundation_spec.h"
#include "tests/support/image_builder.h"
#include "tests/support/listing.h"
#include "tests/support/registry.h"

namespace lazyfs::testing {
namespace {

namespace fsys = std::filesystem;

// The suite's registry and images, shared by every test (starting a registry takes a moment).
struct World : SuiteWorld {
  std::string layout;  // OCI layout holding "foundation" and the bad-input images
  Listing expected;    // the foundation image's merged tree, per the image spec
};
World* world = nullptr;

std::string FoundationRef() { return "docker://" + world->registry->host() + "/e2e/foundation:1"; }

class E2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new World;
    ASSERT_NO_FATAL_FAILURE(StartSuiteWorld(*world, "lazyfs-e2e"));
    world->layout = world->work + "/layout";
    const ImageSpec spec = FoundationSpec();
    auto digest = WriteOciLayout(spec, world->layout, "foundation");
    ASSERT_TRUE(digest.ok()) << digest.status().ToString();
    auto expected = ExpectedListing(spec);
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    world->expected = std::move(*expected);
    Status s = PushOciLayout(world->layout, "foundation", world->registry->host(), "e2e/foundation", "1");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  static void TearDownTestSuite() {
    delete world;
    world = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(world, nullptr);
    ASSERT_NE(world->registry, nullptr) << "the suite's registry did not start";
    dir_ = MakeTempDir("lazyfs-e2e-test");
    store_ = dir_ + "/store";
    mnt_ = dir_ + "/mnt";
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);
  }
  void TearDown() override {
    ForceUnmount(mnt_);
    ForceUnmount(dir_ + "/loop");
    RemoveTree(dir_).IgnoreError();
  }

  CommandResult Mount(const std::string& ref) {
    return RunLazyfs({"mount", "--store", store_, "-q", ref, mnt_});
  }
  void Umount() {
    CommandResult r = RunLazyfs({"umount", mnt_});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(IsMountpoint(mnt_));
  }
  void ExpectMountMatchesSpec() {
    ASSERT_TRUE(IsMountpoint(mnt_)) << mnt_ << " is not a mountpoint after lazyfs mount";
    auto got = ListDirectory(mnt_);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(DiffListings(world->expected, *got), "");
  }

  std::string dir_, store_, mnt_;
};

TEST_F(E2eTest, MountFromRegistryShowsTheImageAsItsLayersSay) {
  CommandResult r = Mount(FoundationRef());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectMountMatchesSpec();
  // stat shows the tar header's facts, not the mounter's.
  struct stat st;
  ASSERT_EQ(::lstat((mnt_ + "/home/user/notes").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::lstat((mnt_ + "/usr/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  EXPECT_EQ(st.st_nlink, 3u);
  ASSERT_EQ(::lstat((mnt_ + "/etc/future").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 4102444800);
  // Read-only: every write fails with EROFS.
  errno = 0;
  EXPECT_LT(::open((mnt_ + "/etc/passwd").c_str(), O_WRONLY), 0);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_NE(::mkdir((mnt_ + "/newdir").c_str(), 0755), 0);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_NE(::unlink((mnt_ + "/etc/passwd").c_str()), 0);
  EXPECT_EQ(errno, EROFS);
  // ls -ln, as a user would look.
  CommandResult ls = RunCommand({"ls", "-ln", mnt_ + "/home"});
  EXPECT_NE(ls.out.find("drwxr-x--- 2 1000 1000"), std::string::npos) << ls.out;
  Umount();
}

TEST_F(E2eTest, MountOciLayout) {
  CommandResult r = Mount("oci:" + world->layout + ":foundation");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectMountMatchesSpec();
  Umount();
}

TEST_F(E2eTest, RemountReadsNothingFromTheRegistry) {
  CommandResult r = Mount(FoundationRef());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectMountMatchesSpec();  // reads every file, so the content cache holds them all
  Umount();
  ASSERT_TRUE(world->registry->Stop().ok());
  r = Mount(FoundationRef());
  Status restarted = world->registry->Restart();
  ASSERT_EQ(r.exit_code, 0) << "remount with the registry stopped: " << r.err;
  ExpectMountMatchesSpec();
  Umount();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
}

TEST_F(E2eTest, MaterializeWritesTheSameTreeAsExt4) {
  const std::string img = dir_ + "/out.img";
  CommandResult r = RunLazyfs({"materialize", "--store", store_, "-q", FoundationRef(), img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  CommandResult fsck = RunCommand({"e2fsck", "-fn", img});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  auto got = ListExt4Image(img, dir_ + "/loop");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(DiffListings(world->expected, *got), "");

  // And it agrees with the FUSE view of the same store.
  r = Mount(FoundationRef());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto fuse_view = ListDirectory(mnt_);
  ASSERT_TRUE(fuse_view.ok());
  EXPECT_EQ(DiffListings(*fuse_view, *got), "");
  Umount();
}

// What a store looks like from outside, to prove a failed command left it as it was: the
// content objects and any temporary files. (The blob store may hold verified blobs of a failed
// image; they are correct bytes under their own digests.)
std::set<std::string> StoreSnapshot(const std::string& store) {
  std::set<std::string> out;
  if (!fsys::exists(store)) return out;
  for (const auto& e : fsys::recursive_directory_iterator(store)) {
    const std::string p = e.path().string().substr(store.size());
    if (p.starts_with("/content/") || p.find("/tmp/") != std::string::npos) out.insert(p);
  }
  return out;
}

TEST_F(E2eTest, BadInputGetsAOneLineErrorAndLeavesTheStoreAlone) {
  const std::string host = world->registry->host();
  // Images that are bad in one way each, pushed next to the good one.
  auto push = [&](const std::string& name, const ImageSpec& spec) {
    Status s = [&]() -> Status {
      LAZYFS_RETURN_IF_ERROR(WriteOciLayout(spec, world->layout, name).status());
      return PushOciLayout(world->layout, name, host, "e2e/" + name, "1");
    }();
    EXPECT_TRUE(s.ok()) << name << ": " << s.ToString();
    return "docker://" + host + "/e2e/" + name + ":1";
  };
  auto one_layer = [](std::vector<Entry> entries) {
    ImageSpec spec;
    Layer l;
    l.entries = std::move(entries);
    spec.layers = {l};
    return spec;
  };
  ImageSpec unknown_type = one_layer({File("a", "b")});
  unknown_type.layers[0].raw_media_type = "application/vnd.example.layer.v1.tar+lz4";
  ImageSpec mismatch = one_layer({File("a", PseudoRandomBytes(10000, 9))});

  struct Case {
    std::string name;
    std::string ref;
    std::string error;  // a part of the one-line message
  };
  std::vector<Case> cases = {
      {"malformed reference", "docker://" + host + "/UPPER/case:1", "malformed image reference"},
      {"unreachable registry", "docker://127.0.0.1:1/e2e/none:1", "127.0.0.1:1"},
      {"unknown media type", push("unknown-type", unknown_type), "tar+lz4"},
      {"parent escape", push("dotdot", one_layer({File("ok", "x"), Raw("../etc/evil", EntryType::kFile, "x")})),
       "escapes the root"},
      {"absolute name that climbs", push("absolute", one_layer({Raw("/../etc/evil", EntryType::kFile, "x")})),
       "escapes the root"},
  };
  // A blob whose bytes in the registry no longer match its digest.
  {
    const std::string ref = push("mismatch", mismatch);
    auto built = BuildImage(mismatch);
    ASSERT_TRUE(built.ok());
    const std::string data = world->registry->BlobDataPath(built->layers[0].digest.ToString());
    ASSERT_TRUE(fsys::exists(data)) << data;
    std::string bytes = *ReadFileToString(data);
    bytes[bytes.size() / 2] ^= 0x20;
    ASSERT_TRUE(WriteFileAtomic(data, bytes).ok());
    cases.push_back({"digest mismatch", ref, "digest mismatch"});
  }

  // A store that already holds the good image: failures must not disturb it.
  ASSERT_EQ(Mount(FoundationRef()).exit_code, 0);
  ExpectMountMatchesSpec();
  Umount();
  const std::set<std::string> before = StoreSnapshot(store_);
  for (const Case& c : cases) {
    for (const std::string cmd : {"mount", "materialize"}) {
      SCOPED_TRACE(c.name + " (" + cmd + ")");
      const std::string img = dir_ + "/bad.img";
      CommandResult r = cmd == "mount" ? Mount(c.ref)
                                       : RunLazyfs({"materialize", "--store", store_, "-q", c.ref, img});
      EXPECT_NE(r.exit_code, 0);
      EXPECT_TRUE(r.err.starts_with("lazyfs: error: ")) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
      EXPECT_NE(r.err.find(c.error), std::string::npos) << r.err;
      EXPECT_FALSE(IsMountpoint(mnt_));
      EXPECT_FALSE(fsys::exists(img));
      EXPECT_EQ(StoreSnapshot(store_), before);
    }
  }
  // The good image still mounts from the same store.
  ASSERT_EQ(Mount(FoundationRef()).exit_code, 0);
  ExpectMountMatchesSpec();
  Umount();
}

TEST_F(E2eTest, RegistryErrorTextCannotSteerTheTerminal) {
  auto proxy = FaultProxy::Start(world->registry->host());
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  const std::string ref = "docker://" + (*proxy)->host() + "/e2e/foundation:1";
  struct Case {
    std::string name;
    FaultRule rule;
    std::string shown;  // how the message must show the hostile part, escaped
  };
  FaultRule body;
  body.path_contains = "/manifests/";
  body.status = 400;
  body.times = -1;
  // Clear the screen, retitle the window, ring, forge a second line, CSI as a C1 control.
  body.body = R"({"errors":[{"code":"DENIED","message":"\u001b[2J\u001b]0;owned\u0007)"
              R"(\nlazyfs: ok\r\u009b31m"}]})";
  FaultRule challenge;
  challenge.path_contains = "/manifests/";
  challenge.status = 401;
  challenge.times = -1;
  challenge.body = "{}";
  challenge.headers = {"WWW-Authenticate: \x1b[2JEvil realm=\"x\""};
  const std::vector<Case> cases = {
      {"an error body's message", body,
       "\\x1b[2J\\x1b]0;owned\\x07\\x0alazyfs: ok\\x0d\\xc2\\x9b31m"},
      {"a WWW-Authenticate challenge", challenge, "\\x1b[2jevil"}  // schemes are lowercased,
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    (*proxy)->ClearRules();
    (*proxy)->AddRule(c.rule);
    CommandResult r = RunLazyfs({"inspect", "--store", store_, "-q", ref});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(r.err.starts_with("lazyfs: error: ")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(HasTerminalControls(r.err)) << r.err;
    EXPECT_NE(r.err.find(c.shown), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace lazyfs::testing
