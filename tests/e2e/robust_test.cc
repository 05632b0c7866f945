// Processes that race, get killed and run as other users: several lazyfs commands on one store
// at once, kill -9 in the middle of indexing, of materialize and of a mount's reads, and the
// kernel enforcing an image's modes for other users under --allow-other. Needs root, /dev/fuse
// and Debian's docker-registry. LAZYFS_CRASH_LOOPS (default 3) sets how many kills each crash
// test makes.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <gtest/gtest.h>
#include <random>
#include <thread>
#include <variant>
#include <cstring>
#include <fcntl.h>

#include "base/digest.h"
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
using std::chrono::milliseconds;
using lazyfs::testing::FaultProxy;
using lazyfs::testing::FaultRule;

int CrashLoops() {
  const char* env = std::getenv("LAZYFS_CRASH_LOOPS");
  return env && *env ? std::max(1, std::atoi(env)) : 3;
}

// An image big enough that indexing and materializing take a moment to kill: 48 MiB of
// incompressible files in a gzip layer, plus some small ones.
ImageSpec BigSpec() {
  ImageSpec spec;
  Layer l;
  for (int i = 0; i < 6; ++i) {
    l.entries.push_back(File("big/" + std::to_string(i), PseudoRandomBytes(8 << 20, 100 + i)));
  }
  for (int i = 0; i < 200; ++i) {
    l.entries.push_back(File("small/" + std::to_string(i), "small file " + std::to_string(i) + "\n"));
  }
  spec.layers = {l};
  return spec;
}

ImageSpec PermissionSpec() {
  ImageSpec spec;
  Layer l;
  l.entries = {File("secret", "root only\n", 0600), File("public", "everyone\n", 0644),
               Dir("private", 0700), File("private/inside", "hidden\n", 0644),
               File("owned", "user 65534 may\n", 0600, 65534, 65534)};
  spec.layers = {l};
  return spec;
}

struct World : SuiteWorld {
  Listing foundation, big;
};
World* world = nullptr;

std::string Ref(const std::string& name) {
  return "docker://" + world->registry->host() + "/robust/" + name + ":1";
}

class RobustTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new World;
    ASSERT_NO_FATAL_FAILURE(StartSuiteWorld(*world, "lazyfs-robust"));
    const std::string layout = world->work + "/layout";
    for (const auto& [name, spec] : std::vector<std::pair<std::string, ImageSpec>>{
             {"foundation", FoundationSpec()}, {"big", BigSpec()}, {"perm", PermissionSpec()}}) {
      ASSERT_TRUE(WriteOciLayout(spec, layout, name).ok());
      Status s = PushOciLayout(layout, name, world->registry->host(), "robust/" + name, "1");
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    world->foundation = *ExpectedListing(FoundationSpec());
    world->big = *ExpectedListing(BigSpec());
  }
  static void TearDownTestSuite() {
    delete world;
    world = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(world, nullptr);
    ASSERT_NE(world->registry, nullptr) << "the suite's registry did not start";
    dir_ = MakeTempDir("lazyfs-robust-test");
    store_ = dir_ + "/store";
  }
  void TearDown() override {
    for (const auto& m : mounts_) ForceUnmount(m);
    RemoveTree(dir_).IgnoreError();
  }
  // A tmpfs of `size` ("16m") at the new directory `dir`, unmounted at TearDown.
  void MountTmpfs(const std::string& dir, const std::string& size) {
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    CommandResult t = RunCommand({"mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", dir});
    ASSERT_EQ(t.exit_code, 0) << t.err;
    mounts_.push_back(dir);
  }
  std::string NewMountpoint() {
    std::string m = dir_ + "/mnt" + std::to_string(mounts_.size());
    EXPECT_EQ(::mkdir(m.c_str(), 0755), 0);
    mounts_.push_back(m);
    return m;
  }
  void ExpectTree(const std::string& root, const Listing& want) {
    auto got = ListDirectory(root);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(DiffListings(want, *got), "");
  }
  void ExpectImage(const std::string& img, const Listing& want) {
    CommandResult fsck = RunCommand({"e2fsck", "-fn", img});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
    const std::string loop = NewMountpoint();
    CommandResult m = RunCommand({"mount", "-o", "loop,ro", img, loop});
    ASSERT_EQ(m.exit_code, 0) << m.err;
    auto got = ListDirectory(loop);
    ForceUnmount(loop);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    got->erase("/lost+found");
    got->at("/").nlink -= 1;
    EXPECT_EQ(DiffListings(want, *got), "");
  }

  std::string dir_, store_;
  std::vector<std::string> mounts_;
};

TEST_F(RobustTest, CommandsStartedTogetherOnOneStoreAllWork) {
  // Two images, a second mount of one of them and a materialize, all from an empty store and
  // all at the same moment: they contend for the index writer lock and share blobs.
  const std::string m1 = NewMountpoint(), m2 = NewMountpoint(), m3 = NewMountpoint();
  const std::string img = dir_ + "/out.img";
  std::vector<Spawned> procs = {
      SpawnLazyfs({"mount", "--store", store_, "-q", Ref("foundation"), m1}),
      SpawnLazyfs({"mount", "--store", store_, "-q", Ref("big"), m2}),
      SpawnLazyfs({"mount", "--store", store_, "-q", Ref("foundation"), m3}),
      SpawnLazyfs({"materialize", "--store", store_, "-q", Ref("big"), img}),
  };
  for (auto& p : procs) {
    CommandResult r = Wait(p);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  ExpectTree(m1, world->foundation);
  ExpectTree(m2, world->big);
  ExpectTree(m3, world->foundation);
  ExpectImage(img, world->big);
}

// However allow_other is spelled (the flag, -o allow_other, inside an -o list), the kernel
// enforces the image's modes for other users, and the mount is nosuid,nodev.
TEST_F(RobustTest, AllowOtherEnforcesTheImagesModes) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);  // others must reach the mountpoint
  for (const std::vector<std::string>& spelling :
       {std::vector<std::string>{"--allow-other"}, {"-o", "allow_other"},
        {"-o", "noatime,allow_other"}}) {
    SCOPED_TRACE(spelling.back());
    const std::string m = NewMountpoint();
    std::vector<std::string> args = {"mount", "--store", store_, "-q"};
    args.insert(args.end(), spelling.begin(), spelling.end());
    args.insert(args.end(), {Ref("perm"), m});
    CommandResult r = RunLazyfs(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    struct stat st;
    ASSERT_EQ(::stat(store_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u) << "the store is private to its owner";
    CommandResult findmnt = RunCommand({"findmnt", "-n", "-o", "OPTIONS", m});
    EXPECT_NE(findmnt.out.find("nosuid"), std::string::npos) << findmnt.out;
    EXPECT_NE(findmnt.out.find("nodev"), std::string::npos) << findmnt.out;
    EXPECT_NE(findmnt.out.find("default_permissions"), std::string::npos) << findmnt.out;
    // Another user (nobody), through the kernel's default_permissions checks.
    auto as_nobody = [&](std::vector<std::string> argv) {
      std::vector<std::string> full = {"setpriv", "--reuid=65534", "--regid=65534",
                                       "--clear-groups"};
      full.insert(full.end(), argv.begin(), argv.end());
      return RunCommand(full);
    };
    CommandResult pub = as_nobody({"cat", m + "/public"});
    EXPECT_EQ(pub.exit_code, 0) << pub.err;
    EXPECT_EQ(pub.out, "everyone\n");
    CommandResult secret = as_nobody({"cat", m + "/secret"});
    EXPECT_NE(secret.exit_code, 0);
    EXPECT_NE(secret.err.find("Permission denied"), std::string::npos) << secret.err;
    CommandResult inside = as_nobody({"cat", m + "/private/inside"});
    EXPECT_NE(inside.exit_code, 0);
    EXPECT_NE(inside.err.find("Permission denied"), std::string::npos) << inside.err;
    CommandResult owned = as_nobody({"cat", m + "/owned"});
    EXPECT_EQ(owned.exit_code, 0) << owned.err;
    EXPECT_EQ(owned.out, "user 65534 may\n");
    // Root reads everything, as in the container.
    EXPECT_EQ(*ReadFileToString(m + "/secret"), "root only\n");
    EXPECT_EQ(RunLazyfs({"umount", m}).exit_code, 0);
  }
  // suid and dev must be asked for by the flag that says what they do.
  const std::string m = NewMountpoint();
  CommandResult suid = RunLazyfs({"mount", "--store", store_, "-q", "-o", "suid", Ref("perm"), m});
  EXPECT_NE(suid.exit_code, 0);
  EXPECT_NE(suid.err.find("--allow-setuid-and-devices"), std::string::npos) << suid.err;
  EXPECT_FALSE(IsMountpoint(m));
}

// The image holds the image's root-only files: OUT and OUT.verity are the owner's alone unless
// --file-mode says otherwise.
TEST_F(RobustTest, MaterializedFilesAreOwnerOnlyByDefault) {
  const std::string img = dir_ + "/modes.img";
  CommandResult r = RunLazyfs({"materialize", "--store", store_, "-q", Ref("perm"), img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st;
  ASSERT_EQ(::stat(img.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat((img + ".verity").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  r = RunLazyfs(
      {"materialize", "--store", store_, "-q", "--file-mode", "0644", Ref("perm"), img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(::stat(img.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  ASSERT_EQ(::stat((img + ".verity").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

// A materialize killed mid-write leaves its temporary (hundreds of MiB) beside the output; the
// next run for that output removes the ones whose writer is gone, never a live writer's.
TEST_F(RobustTest, AStaleTemporaryOfADeadWriterIsRemovedByTheNextRun) {
  const std::string img = dir_ + "/stale.img";
  const pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ASSERT_GT(gone, 0);
  ASSERT_EQ(::waitpid(gone, nullptr, 0), gone);
  const std::string stale = img + ".tmp-" + std::to_string(gone) + "-0badf00d";
  const std::string live = img + ".tmp-" + std::to_string(::getpid()) + "-0badf00d";
  ASSERT_TRUE(WriteFileAtomic(stale, std::string(1 << 20, 'x')).ok());
  ASSERT_TRUE(WriteFileAtomic(live, "a writer still at work").ok());
  CommandResult r = RunLazyfs({"materialize", "--store", store_, "-q", Ref("perm"), img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fsys::exists(stale)) << "the dead writer's temporary is still there";
  EXPECT_TRUE(fsys::exists(live)) << "a live writer's temporary was removed";
  fsys::remove(live);
}

TEST_F(RobustTest, CredentialsNeverAppearInOutputOrLogs) {
  RegistryOptions options;
  options.user = "robust-user";
  options.password = "pw-7f3c9a2e";
  auto reg = Registry::Start(options);
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  ASSERT_TRUE(WriteOciLayout(PermissionSpec(), dir_ + "/layout", "perm").ok());
  ASSERT_TRUE(PushOciLayout(dir_ + "/layout", "perm", (*reg)->host(), "priv/perm", "1",
                            options.user, options.password)
                  .ok());
  // base64("robust-user:pw-7f3c9a2e"), as it travels in the Authorization header.
  const std::string basic = "cm9idXN0LXVzZXI6cHctN2YzYzlhMmU=";
  const std::string ref = "docker://" + (*reg)->host() + "/priv/perm:1";
  int round = 0;
  for (const std::string& password : {options.password, std::string("wrong-pw-55e1")}) {
    SCOPED_TRACE(password);
    const std::string config_dir = dir_ + "/docker-" + std::to_string(round++);
    ASSERT_TRUE(MakeDirs(config_dir).ok());
    const std::string auth = password == options.password ? basic : "cm9idXN0LXVzZXI6d3JvbmctcHctNTVlMQ==";
    ASSERT_TRUE(WriteFileAtomic(config_dir + "/config.json",
                                "{\"auths\":{\"" + (*reg)->host() + "\":{\"auth\":\"" + auth + "\"}}}")
                    .ok());
    const std::string m = NewMountpoint();
    std::vector<std::string> env = {"DOCKER_CONFIG=" + config_dir, "LAZYFS_LOG=debug"};
    Spawned p = SpawnLazyfs({"mount", "--store", config_dir + "/store", ref, m}, env);
    CommandResult r = Wait(p);
    for (const std::string& secret : {password, auth}) {
      EXPECT_EQ(r.out.find(secret), std::string::npos) << r.out;
      EXPECT_EQ(r.err.find(secret), std::string::npos) << r.err;
    }
    if (password == options.password) {
      EXPECT_EQ(r.exit_code, 0) << r.err;
    } else {
      EXPECT_NE(r.exit_code, 0);
      EXPECT_NE(r.err.find("rejected"), std::string::npos) << r.err;
    }
  }
}

// kill -9 at a random moment in [0, max_ms).
void KillSoon(Spawned& p, int max_ms, std::mt19937& rng) {
  std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(0, max_ms)(rng)));
  ::kill(p.pid, SIGKILL);
}

TEST_F(RobustTest, KillDuringIndexingOrMaterializeLosesNothing) {
  std::mt19937 rng(std::random_device{}());
  const std::string img = dir_ + "/out.img";
  for (int i = 0; i < CrashLoops(); ++i) {
    SCOPED_TRACE("kill " + std::to_string(i));
    // A fresh store each other round, so the kill lands in indexing as well as in writing.
    const std::string store = store_ + std::to_string(i / 2);
    Spawned p = SpawnLazyfs({"materialize", "--store", store, "-q", Ref("big"), img});
    KillSoon(p, 1500, rng);
    CommandResult killed = Wait(p);
    if (killed.exit_code == 128 + SIGKILL) {
      // The image is renamed into place only once complete (its dm-verity tree and sidecar
      // follow): after a kill there is no image, or a whole one.
      if (fsys::exists(img)) {
        CommandResult fsck = RunCommand({"e2fsck", "-fn", img});
        EXPECT_EQ(fsck.exit_code, 0) << "a killed materialize left a partial " << img << "\n"
                                     << fsck.out;
      }
    } else {
      EXPECT_EQ(killed.exit_code, 0) << killed.err;  // it finished before the kill
    }
    // The store holds nothing half-written, and the next run completes with the right tree.
    CommandResult fsck = RunLazyfs({"fsck", "--store", store});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
    fsys::remove(img);
    CommandResult again = RunLazyfs({"materialize", "--store", store, "-q", Ref("big"), img});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    ExpectImage(img, world->big);
    // Nothing of the killed run is left beside the output: the next run removed it.
    for (const auto& entry : fsys::directory_iterator(dir_)) {
      EXPECT_FALSE(entry.path().filename().string().starts_with("out.img.tmp-"))
          << entry.path() << " left behind";
    }
    fsys::remove(img);
  }
}

TEST_F(RobustTest, KillTheDaemonDuringReadsThenMountAgain) {
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < CrashLoops(); ++i) {
    SCOPED_TRACE("kill " + std::to_string(i));
    const std::string m = NewMountpoint();
    // In the foreground, the spawned process is the daemon itself.
    Spawned daemon = SpawnLazyfs({"mount", "-f", "--store", store_, "-q", Ref("big"), m});
    for (int t = 0; t < 600 && !IsMountpoint(m); ++t) std::this_thread::sleep_for(milliseconds(50));
    ASSERT_TRUE(IsMountpoint(m)) << "the daemon did not mount within 30 s";
    // Read every big file while the daemon is killed under the reader.
    std::thread reader([&] {
      for (int f = 0; f < 6; ++f) (void)ReadFileToString(m + "/big/" + std::to_string(f));
    });
    KillSoon(daemon, 800, rng);
    reader.join();
    Wait(daemon);
    // The kernel keeps a dead mount until it is detached.
    CommandResult um = RunLazyfs({"umount", "-l", m});
    EXPECT_EQ(um.exit_code, 0) << um.err;
    EXPECT_FALSE(IsMountpoint(m));
    CommandResult fsck = RunLazyfs({"fsck", "--store", store_});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
    // Mount again from the same store: every file is whole and right.
    CommandResult r = RunLazyfs({"mount", "--store", store_, "-q", Ref("big"), m});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ExpectTree(m, world->big);
    ASSERT_EQ(RunLazyfs({"umount", m}).exit_code, 0);
  }
}

// Reads a file with read(2), returning its bytes or the errno that stopped it.
std::variant<std::string, int> ReadOrErrno(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno;
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) return errno;
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// Waits up to `seconds` for `p` to exit; one still running then is killed (and the test fails):
// a hang guard, not a timing.
CommandResult WaitWithin(Spawned& p, int seconds, const std::string& what) {
  for (int i = 0; i < seconds * 10; ++i) {
    if (::kill(p.pid, 0) != 0) break;
    int status = 0;
    const pid_t done = ::waitpid(p.pid, &status, WNOHANG);
    if (done == p.pid) {
      CommandResult r = Wait(p);  // (reaped: only collects the output)
      r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return r;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  ADD_FAILURE() << what << " still running after " << seconds << " s: killed";
  ::kill(p.pid, SIGKILL);
  return Wait(p);
}

// A registry that stops answering while a file is read must hold neither the unmount nor the
// daemon: the read deadline is ten minutes away (--read-timeout 600), so only cancellation ends
// the hanging fetch. Once with the reader gone (killed while it waited) and fusermount3 -u, once
// with the daemon told to stop (SIGTERM) while its reader still waits, which gets an error; the
// daemon exits 0 both times (not killed by the signal: it unmounts cleanly).
TEST_F(RobustTest, AStalledRegistryHoldsNeitherTheUnmountNorTheDaemon) {
  auto proxy = FaultProxy::Start(world->registry->host());
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  const std::string ref = "docker://" + (*proxy)->host() + "/robust/big:1";
  const std::string m = NewMountpoint();
  // Index (the layer travels whole once), then forget the blob and the content: reads need
  // range requests, and those stall.
  CommandResult r = RunLazyfs({"mount", "--store", store_, "-q", ref, m});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(RunLazyfs({"umount", m}).exit_code, 0);
  for (const char* dir : {"/blobs/sha256", "/content/sha256"}) fsys::remove_all(store_ + dir);
  FaultRule stall;
  stall.path_contains = "/blobs/";
  stall.action = FaultRule::Action::kStall;
  stall.times = -1;
  (*proxy)->AddRule(stall);

  for (const bool by_signal : {false, true}) {
    SCOPED_TRACE(by_signal ? "SIGTERM to the daemon" : "fusermount3 -u");
    const size_t stalled_before = (*proxy)->RequestsFor("/blobs/").size();
    Spawned daemon = SpawnLazyfs(
        {"mount", "-f", "--store", store_, "-q", "--read-timeout", "600", ref, m});
    for (int t = 0; t < 600 && !IsMountpoint(m); ++t) std::this_thread::sleep_for(milliseconds(50));
    ASSERT_TRUE(IsMountpoint(m)) << "the daemon did not mount within 30 s";
    Spawned reader = Spawn({"cat", m + "/big/0"});
    for (int t = 0; t < 300 && (*proxy)->RequestsFor("/blobs/").size() == stalled_before; ++t) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    ASSERT_GT((*proxy)->RequestsFor("/blobs/").size(), stalled_before) << "the read never fetched";
    if (!by_signal) {
      ::kill(reader.pid, SIGKILL);
      WaitWithin(reader, 30, "the killed reader");
      Spawned um = Spawn({"fusermount3", "-u", m});
      CommandResult unmounted = WaitWithin(um, 30, "fusermount3 -u");
      EXPECT_EQ(unmounted.exit_code, 0) << unmounted.err;
    } else {
      ::kill(daemon.pid, SIGTERM);
    }
    CommandResult exited = WaitWithin(daemon, 30, "the daemon");
    EXPECT_EQ(exited.exit_code, 0) << exited.err;
    if (by_signal) {
      CommandResult read = WaitWithin(reader, 30, "the reader");
      EXPECT_NE(read.exit_code, 0) << "the read of a stalled file succeeded";
      // EIO for the cancelled fetch; a retry the kernel makes once the daemon stopped reading
      // its requests finds the connection gone.
      EXPECT_TRUE(read.err.find("Input/output error") != std::string::npos ||
                  read.err.find("Transport endpoint is not connected") != std::string::npos)
          << read.err;
    }
    ForceUnmount(m);
    EXPECT_FALSE(IsMountpoint(m));
  }
}

TEST_F(RobustTest, AFullDiskFailsClearlyAndLosesNothing) {
  // The store on a small tmpfs: first too small for the image's 48 MiB layer, then big enough
  // to index it but filled up before the content is read.
  const std::string small = dir_ + "/small";
  ASSERT_NO_FATAL_FAILURE(MountTmpfs(small, "16m"));
  CommandResult t;
  const std::string store = small + "/store";
  const std::string m = NewMountpoint();

  CommandResult r = RunLazyfs({"mount", "--store", store, "-q", Ref("big"), m});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  EXPECT_FALSE(IsMountpoint(m));

  // Grow the tmpfs: the same store now indexes and mounts the image, with room for the layer
  // blob and every file's content once the filler below is gone.
  t = RunCommand({"mount", "-o", "remount,size=160m", small});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  r = RunLazyfs({"mount", "--store", store, "-q", Ref("big"), m});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int i = 0; i < 20; ++i) {
    auto got = ReadFileToString(m + "/small/" + std::to_string(i));
    EXPECT_EQ(got.ok() ? *got : got.status().ToString(), "small file " + std::to_string(i) + "\n");
  }
  // Fill what is left, then read the big files: each read either fails with ENOSPC or EIO, or
  // returns exactly the right bytes; never anything else.
  const std::string filler = small + "/filler";
  CommandResult dd = RunCommand({"dd", "if=/dev/zero", "of=" + filler, "bs=1M", "count=400"});
  ASSERT_NE(dd.exit_code, 0) << "dd should have hit the end of the tmpfs";
  int failed = 0;
  for (int i = 0; i < 6; ++i) {
    const std::string path = "/big/" + std::to_string(i);
    auto got = ReadOrErrno(m + path);
    if (std::holds_alternative<int>(got)) {
      const int err = std::get<int>(got);
      EXPECT_TRUE(err == ENOSPC || err == EIO) << path << ": " << std::strerror(err);
      ++failed;
    } else {
      EXPECT_EQ(Sha256Of(std::get<std::string>(got)).Hex(), world->big.at(path).sha256) << path;
    }
  }
  // What was read before still reads.
  for (int i = 0; i < 20; ++i) {
    auto got = ReadFileToString(m + "/small/" + std::to_string(i));
    EXPECT_EQ(got.ok() ? *got : got.status().ToString(), "small file " + std::to_string(i) + "\n");
  }
  // With space again, every file reads whole and right, and the store checks clean.
  ASSERT_TRUE(fsys::remove(filler));
  ExpectTree(m, world->big);
  CommandResult fsck = RunLazyfs({"fsck", "--store", store});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  ASSERT_EQ(RunLazyfs({"umount", m}).exit_code, 0);
  std::printf("full disk: %d of 6 big-file reads failed while the store was full\n", failed);
}

TEST_F(RobustTest, AMaterializeIntoAFullStoreFailsClearlyAndLeavesNoImage) {
  // Room for the 48 MiB layer blob and the index, not for the 48 MiB of content materialize
  // keeps in the cache: capturing stops short of filling the disk (the index still gets written),
  // and the reads of what was not captured hit ENOSPC. (RocksDB's WAL preallocation once took
  // 70 MiB of such a filesystem: the blob did not fit.)
  const std::string small = dir_ + "/small";
  ASSERT_NO_FATAL_FAILURE(MountTmpfs(small, "100m"));
  CommandResult t;
  const std::string store = small + "/store";
  const std::string img = dir_ + "/big.img";

  CommandResult r = RunLazyfs({"materialize", "--store", store, "-q", Ref("big"), img});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stopped storing content while indexing"), std::string::npos) << r.err;
  for (const std::string& f : {img, img + ".json", img + ".verity"}) {
    EXPECT_FALSE(fsys::exists(f)) << f << " left behind";
  }
  CommandResult fsck = RunLazyfs({"fsck", "--store", store});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  EXPECT_NE(fsck.out.find("1 images"), std::string::npos) << "the index was written: " << fsck.out;

  // With room, the same store finishes the job from what it has.
  t = RunCommand({"mount", "-o", "remount,size=160m", small});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  r = RunLazyfs({"materialize", "--store", store, "-q", Ref("big"), img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectImage(img, world->big);
}

}  // namespace
}  // namespace lazyfs::testing
