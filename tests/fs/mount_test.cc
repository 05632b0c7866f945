// A real FUSE mount of an in-memory tree: what `ls -ln`, `stat`, `cat` and `getfattr` see must be
// what the tree says, writes must fail with EROFS, and Exit() must leave no mount behind.
// Needs root and /dev/fuse; without them every test fails and says so.
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <grp.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/stats.h"
#include "fs/fs.h"
#include "fs/mount_table.h"
#include "fs/stats_channel.h"
#include "tests/support/forwarding_tree.h"
#include "tests/support/listing.h"
#include "tests/support/memory_tree.h"

namespace lazyfs::fs {
namespace {

using testing::MemNode;
using testing::MemoryTree;

constexpr size_t kBigSize = 6 << 20;
constexpr int kManyFiles = 1500;
constexpr int kDataFiles = 300;
const std::string kLongName(255, 'n');

// Position-dependent bytes, so a read from the wrong offset cannot pass.
char BigByte(size_t i) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull;
  return static_cast<char>(x >> 56);
}

std::string BigContent() {
  std::string s(kBigSize, '\0');
  for (size_t i = 0; i < kBigSize; ++i) s[i] = BigByte(i);
  return s;
}

std::string ManyName(int i) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "entry-%05d-with-a-longer-name-to-fill-pages", i);
  return buf;
}

std::string DataName(int i) { return "/data/f" + std::to_string(i); }

// Distinct content per file, 0 to ~300 KiB, so a read served from the wrong file shows.
std::string DataContent(int i) {
  std::string s(static_cast<size_t>(i) * 1021 % (300 << 10), '\0');
  for (size_t k = 0; k < s.size(); ++k) s[k] = BigByte(k * 31 + static_cast<size_t>(i));
  return s;
}

std::vector<MemNode> Nodes() {
  std::vector<MemNode> nodes;
  auto add = [&](std::string path, uint32_t mode, std::string data = "", uint32_t uid = 0,
                 uint32_t gid = 0) -> MemNode& {
    MemNode n;
    n.path = std::move(path);
    n.mode = mode;
    n.data = std::move(data);
    n.uid = uid;
    n.gid = gid;
    n.mtime_sec = 1700000000;
    nodes.push_back(std::move(n));
    return nodes.back();
  };
  add("/etc", S_IFDIR | 0755).xattrs = {{"user.dir", "on a directory"}};
  add("/etc/passwd", S_IFREG | 0644, "root:x:0:0::/root:/bin/sh\n").xattrs = {
      {"user.comment", "the password file"}};
  add("/etc/shadow", S_IFREG | 0640, "root:*:19000::::::\n", 0, 42);
  add("/home/user", S_IFDIR | 0750, "", 1000, 1000).mtime_sec = 1600000000;
  add("/home/user/.profile", S_IFREG | 0644, "export PS1='$ '\n", 1000, 1000);
  add("/nobody", S_IFREG | 0600, "nobody's\n", 65534, 65534);
  add("/big", S_IFREG | 0644, BigContent());
  add("/empty", S_IFREG | 0644);
  add("/bin/busybox", S_IFREG | 0755, "\x7f" "ELF busybox");
  add("/bin/ls", S_IFREG | 0755).hardlink_to = "/bin/busybox";
  add("/bin/cat", S_IFREG | 0755).hardlink_to = "/bin/busybox";
  add("/bin/sh", S_IFLNK | 0777, "busybox");
  add("/abs", S_IFLNK | 0777, "/etc/passwd");
  add("/dangling", S_IFLNK | 0777, "../nowhere/at/all");
  add("/dev/null", S_IFCHR | 0666).rdev_major = 1;
  nodes.back().rdev_minor = 3;
  add("/dev/sda", S_IFBLK | 0660, "", 0, 6).rdev_major = 8;
  add("/run/initctl", S_IFIFO | 0600);
  add("/usr/bin/sudo", S_IFREG | 04755, "sudo");
  add("/usr/bin/wall", S_IFREG | 02755, "wall", 0, 5);
  add("/usr/bin/ping", S_IFREG | 0755, "ping").xattrs = {
      {"security.capability",
       std::string("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                   "\x00",
                   20)}};
  add("/tmp", S_IFDIR | 01777);
  add("/srv/shared", S_IFDIR | 02775, "", 0, 100);
  add("/long/" + kLongName, S_IFREG | 0644, "long name\n");
  for (int i = 0; i < kManyFiles; ++i) add("/many/" + ManyName(i), S_IFREG | 0644);
  for (int i = 0; i < kDataFiles; ++i) add(DataName(i), S_IFREG | 0644, DataContent(i));
  return nodes;
}

bool IsMounted(const std::string& mp) {
  auto m = FindMount(mp);
  return m.ok() && m->has_value() && (*m)->fstype == kMountType;
}

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tree = MemoryTree::Build(Nodes());
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    tree_ = std::move(*tree);
    char dir[] = "/tmp/lazyfs-mount-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr) << std::strerror(errno);
    mp_ = dir;
    ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0)
        << "this test needs FUSE: /dev/fuse is not usable (" << std::strerror(errno)
        << "); run it as root on a host or container with /dev/fuse";
    MountOptions options;
    options.mountpoint = mp_;
    options.fsname = "lazyfs-test,with a comma";
    // LAZYFS_TEST_FUSE_DEBUG=1 prints every FUSE request and reply (libfuse's -o debug).
    if (std::getenv("LAZYFS_TEST_FUSE_DEBUG") != nullptr) options.fuse_options = {"debug"};
    Configure(options);
    auto session = Session::Mount(*tree_, options);
    ASSERT_TRUE(session.ok()) << "mounting FUSE failed, so this test cannot run (it needs root "
                                 "and /dev/fuse): "
                              << session.status().ToString();
    session_ = std::move(*session);
    ASSERT_TRUE(IsMounted(mp_)) << mp_ << " is not in /proc/self/mountinfo after Mount";
    runner_ = std::thread([this] { run_status_ = session_->Run(); });
  }

  void TearDown() override {
    StopSession();
    if (!mp_.empty()) {
      EXPECT_FALSE(IsMounted(mp_)) << "a mount was left behind at " << mp_;
      ::rmdir(mp_.c_str());
    }
  }

  virtual void Configure(MountOptions&) {}

  // Exit(), wait for Run() to return, destroy the session.
  void StopSession() {
    if (!session_) return;
    session_->Exit();
    if (runner_.joinable()) runner_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
    session_.reset();
  }

  std::string P(const std::string& rel) const { return mp_ + rel; }

  std::unique_ptr<MemoryTree> tree_;
  std::string mp_;
  std::unique_ptr<Session> session_;
  std::thread runner_;
  Status run_status_;
};

TEST_F(MountTest, ListingOfTheMountEqualsTheTree) {
  auto expected = testing::ListTree(*tree_);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  auto actual = testing::ListDirectory(mp_);
  ASSERT_TRUE(actual.ok()) << actual.status().ToString();
  EXPECT_EQ(testing::DiffListings(*expected, *actual), "");
  EXPECT_EQ(actual->size(), expected->size());
  // The listing really covered the interesting cases.
  ASSERT_TRUE(actual->count("/usr/bin/ping"));
  EXPECT_EQ(actual->at("/usr/bin/ping").xattrs.count("security.capability"), 1u);
  ASSERT_TRUE(actual->count("/long/" + kLongName));
  EXPECT_EQ(actual->at("/run/initctl").type, 'p');
  EXPECT_EQ(actual->at("/dev/sda").type, 'b');
}

TEST_F(MountTest, StatShowsTheTreesOwnersModesAndLinks) {
  struct Case {
    std::string path;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    nlink_t nlink;
  };
  const std::vector<Case> cases = {
      // 2 + bin data dev etc home long many run srv tmp usr.
      {"", S_IFDIR | 0755, 0, 0, 13},
      {"/home/user", S_IFDIR | 0750, 1000, 1000, 2},
      {"/home/user/.profile", S_IFREG | 0644, 1000, 1000, 1},
      {"/nobody", S_IFREG | 0600, 65534, 65534, 1},
      {"/etc/shadow", S_IFREG | 0640, 0, 42, 1},
      {"/usr/bin/sudo", S_IFREG | 04755, 0, 0, 1},
      {"/usr/bin/wall", S_IFREG | 02755, 0, 5, 1},
      {"/tmp", S_IFDIR | 01777, 0, 0, 2},
      {"/srv/shared", S_IFDIR | 02775, 0, 100, 2},
      {"/bin/busybox", S_IFREG | 0755, 0, 0, 3},
      {"/bin/ls", S_IFREG | 0755, 0, 0, 3},
      {"/bin/sh", S_IFLNK | 0777, 0, 0, 1},
      {"/dev/null", S_IFCHR | 0666, 0, 0, 1},
      {"/dev/sda", S_IFBLK | 0660, 0, 6, 1},
      {"/run/initctl", S_IFIFO | 0600, 0, 0, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    struct stat st;
    ASSERT_EQ(::lstat(P(c.path).c_str(), &st), 0) << std::strerror(errno);
    EXPECT_EQ(st.st_mode, c.mode);
    EXPECT_EQ(st.st_uid, c.uid);
    EXPECT_EQ(st.st_gid, c.gid);
    EXPECT_EQ(st.st_nlink, c.nlink);
  }
  struct stat busybox, ls, cat, null, big, home, sh;
  ASSERT_EQ(::lstat(P("/bin/busybox").c_str(), &busybox), 0);
  ASSERT_EQ(::lstat(P("/bin/ls").c_str(), &ls), 0);
  ASSERT_EQ(::lstat(P("/bin/cat").c_str(), &cat), 0);
  EXPECT_EQ(busybox.st_ino, ls.st_ino);
  EXPECT_EQ(busybox.st_ino, cat.st_ino);
  ASSERT_EQ(::lstat(P("/dev/null").c_str(), &null), 0);
  EXPECT_EQ(major(null.st_rdev), 1u);
  EXPECT_EQ(minor(null.st_rdev), 3u);
  ASSERT_EQ(::lstat(P("/big").c_str(), &big), 0);
  EXPECT_EQ(static_cast<size_t>(big.st_size), kBigSize);
  EXPECT_EQ(big.st_blocks, static_cast<blkcnt_t>(kBigSize / 512));
  EXPECT_EQ(big.st_mtim.tv_sec, 1700000000);
  EXPECT_EQ(big.st_atim.tv_sec, 1700000000);
  EXPECT_EQ(big.st_ctim.tv_sec, 1700000000);
  ASSERT_EQ(::lstat(P("/home/user").c_str(), &home), 0);
  EXPECT_EQ(home.st_mtim.tv_sec, 1600000000);
  ASSERT_EQ(::lstat(P("/bin/sh").c_str(), &sh), 0);
  EXPECT_EQ(sh.st_size, 7);  // "busybox"
}

TEST_F(MountTest, MissingNamesAndWrongTypes) {
  struct stat st;
  errno = 0;
  EXPECT_EQ(::lstat(P("/no/such/file").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  // The same miss again: answered from the kernel's negative entry cache or by us, same errno.
  errno = 0;
  EXPECT_EQ(::lstat(P("/nosuch").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  errno = 0;
  EXPECT_EQ(::lstat(P("/nosuch").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  errno = 0;
  EXPECT_EQ(::lstat(P("/etc/passwd/x").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOTDIR);
  errno = 0;
  EXPECT_EQ(::lstat(P("/long/" + kLongName + "x").c_str(), &st), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(::lstat(P("/long/" + kLongName).c_str(), &st), 0) << std::strerror(errno);
  // Following symlinks inside the mount.
  ASSERT_EQ(::stat(P("/bin/sh").c_str(), &st), 0) << std::strerror(errno);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  errno = 0;
  EXPECT_EQ(::stat(P("/dangling").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  char target[64] = {};
  ASSERT_EQ(::readlink(P("/dangling").c_str(), target, sizeof(target)), 17);
  EXPECT_STREQ(target, "../nowhere/at/all");
  errno = 0;
  EXPECT_EQ(::readlink(P("/etc/passwd").c_str(), target, sizeof(target)), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(MountTest, ReadsReturnTheTreesBytes) {
  auto passwd = ReadFileToString(P("/etc/passwd"));
  ASSERT_TRUE(passwd.ok()) << passwd.status().ToString();
  EXPECT_EQ(*passwd, "root:x:0:0::/root:/bin/sh\n");
  auto empty = ReadFileToString(P("/empty"));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");

  auto fd = OpenFile(P("/big"), O_RDONLY);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  const std::string big = BigContent();
  std::string buf(3 << 20, '\0');
  for (uint64_t off : {uint64_t{0}, uint64_t{1}, uint64_t{4095}, uint64_t{1} << 20,
                       uint64_t{kBigSize - 10}, uint64_t{kBigSize}, uint64_t{kBigSize + 4096}}) {
    auto n = PreadFull(fd->get(), buf.data(), buf.size(), off);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    const size_t expect = off >= kBigSize ? 0 : std::min<size_t>(buf.size(), kBigSize - off);
    ASSERT_EQ(*n, expect) << "offset " << off;
    EXPECT_TRUE(std::memcmp(buf.data(), big.data() + std::min<size_t>(off, kBigSize), expect) ==
                0)
        << "offset " << off;
  }
  errno = 0;
  auto dir = OpenFile(P("/etc"), O_RDONLY);
  ASSERT_TRUE(dir.ok());  // opening a directory read-only is fine; reading it is not
  char c;
  EXPECT_EQ(::read(dir->get(), &c, 1), -1);
  EXPECT_EQ(errno, EISDIR);
}

TEST_F(MountTest, ManyThreadsReadingAtOnceGetTheRightBytes) {
  const std::string big = BigContent();
  std::atomic<int> mismatches{0}, failures{0};
  auto shared = OpenFile(P("/big"), O_RDONLY);
  ASSERT_TRUE(shared.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      Result<Fd> own = OpenFile(P("/big"), O_RDONLY);
      if (!own.ok()) {
        failures++;
        return;
      }
      std::string buf;
      for (int i = 0; i < 40; ++i) {
        // Drop the cached pages now and then, so reads keep reaching the daemon.
        if (i % 8 == 0) ::posix_fadvise(own->get(), 0, 0, POSIX_FADV_DONTNEED);
        const size_t off = rng() % kBigSize;
        const size_t len = 1 + rng() % (512 << 10);
        buf.resize(len);
        const int fd = (i % 2 == 0) ? own->get() : shared->get();
        Result<size_t> n = PreadFull(fd, buf.data(), len, off);
        if (!n.ok()) {
          failures++;
          continue;
        }
        const size_t expect = std::min(len, kBigSize - off);
        if (*n != expect || std::memcmp(buf.data(), big.data() + off, expect) != 0) mismatches++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

// Counters are process-wide and the daemon runs in this process: tests compare before and after.
uint64_t Count(std::string_view name) { return Counter(name).Get(); }

TEST_F(MountTest, RepeatedStatsMissesAndReadlinksNeverReachTheDaemon) {
  struct stat st;
  char target[64];
  ASSERT_EQ(::lstat(P("/etc/passwd").c_str(), &st), 0) << std::strerror(errno);
  ASSERT_EQ(::lstat(P("/etc/nosuch").c_str(), &st), -1);
  ASSERT_EQ(::readlink(P("/bin/sh").c_str(), target, sizeof(target)), 7);
  const uint64_t lookups = Count(kStatFuseLookups), getattrs = Count(kStatFuseGetattrs),
                 readlinks = Count(kStatFuseReadlinks);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(::lstat(P("/etc/passwd").c_str(), &st), 0) << std::strerror(errno);
    ASSERT_EQ(::stat(P("/etc/passwd").c_str(), &st), 0) << std::strerror(errno);
    errno = 0;
    ASSERT_EQ(::lstat(P("/etc/nosuch").c_str(), &st), -1);
    ASSERT_EQ(errno, ENOENT);
    ASSERT_EQ(::readlink(P("/bin/sh").c_str(), target, sizeof(target)), 7);
  }
  // Long entry and attribute timeouts, negative entries and cached symlinks: the kernel answered.
  EXPECT_EQ(Count(kStatFuseLookups), lookups);
  EXPECT_EQ(Count(kStatFuseGetattrs), getattrs);
  EXPECT_EQ(Count(kStatFuseReadlinks), readlinks);
}

TEST_F(MountTest, ListingBringsEveryChildsAttributesAndIsCached) {
  const uint64_t plus = Count(kStatFuseReaddirplus), plain = Count(kStatFuseReaddirs);
  auto list = [&](std::map<std::string, ino_t>& out) {
    DIR* d = ::opendir(P("/many").c_str());
    ASSERT_NE(d, nullptr) << std::strerror(errno);
    while (dirent* de = ::readdir(d)) out[de->d_name] = de->d_ino;
    ::closedir(d);
  };
  std::map<std::string, ino_t> names;
  list(names);
  ASSERT_EQ(names.size(), static_cast<size_t>(kManyFiles + 2));
  EXPECT_GT(Count(kStatFuseReaddirplus), plus) << "the kernel did not use readdirplus";
  EXPECT_EQ(Count(kStatFuseReaddirs), plain) << "plain readdir: readdirplus auto mode is on";
  // Every child's attributes came with the listing: stat-ing them asks the daemon nothing.
  const uint64_t lookups = Count(kStatFuseLookups), getattrs = Count(kStatFuseGetattrs);
  for (const auto& [name, ino] : names) {
    if (name == "." || name == "..") continue;  // not children: no attributes come with them
    struct stat st;
    ASSERT_EQ(::lstat(P("/many/" + name).c_str(), &st), 0) << name << ": " << std::strerror(errno);
    EXPECT_EQ(st.st_ino, ino) << name;
  }
  EXPECT_EQ(Count(kStatFuseLookups), lookups);
  EXPECT_EQ(Count(kStatFuseGetattrs), getattrs);
  // Listing it again comes from the kernel's cached directory (FOPEN_CACHE_DIR).
  const uint64_t plus_before = Count(kStatFuseReaddirplus);
  std::map<std::string, ino_t> again;
  list(again);
  EXPECT_EQ(again, names);
  EXPECT_EQ(Count(kStatFuseReaddirplus), plus_before);
}

TEST_F(MountTest, SequentialReadsArriveAsOneMiBRequestsAndAreCounted) {
  const uint64_t large = Count(kStatFuseLargeReads), served = Count(kStatBytesServed),
                 reads = Count(kStatReads);
  auto fd = OpenFile(P("/big"), O_RDONLY);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  std::string buf(1 << 20, '\0');
  const std::string big = BigContent();
  size_t total = 0;
  for (;;) {
    auto n = PreadFull(fd->get(), buf.data(), buf.size(), total);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    if (*n == 0) break;
    ASSERT_EQ(std::memcmp(buf.data(), big.data() + total, *n), 0) << "at " << total;
    total += *n;
  }
  ASSERT_EQ(total, kBigSize);
  // The mount's readahead was raised (root) so the kernel asks for 1 MiB at a time, not 128 KiB.
  EXPECT_GE(Count(kStatFuseLargeReads) - large, 2u)
      << "reads of /big reached the daemon in requests under 1 MiB";
  // Every byte the file has was served once (a fresh mount has nothing in its page cache).
  EXPECT_EQ(Count(kStatBytesServed) - served, kBigSize);
  EXPECT_GE(Count(kStatReads) - reads, 1u);
  EXPECT_LE(Count(kStatReads) - reads, kBigSize / (128 << 10));
  // Read again: the page cache answers (FOPEN_KEEP_CACHE), the daemon serves nothing more.
  const uint64_t served_once = Count(kStatBytesServed);
  auto again = ReadFileToString(P("/big"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, big);
  EXPECT_EQ(Count(kStatBytesServed), served_once);
}

TEST_F(MountTest, ManyThreadsReadingManyFilesGetTheRightBytes) {
  std::vector<std::string> expected;
  for (int i = 0; i < kDataFiles; ++i) expected.push_back(DataContent(i));
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int> order(kDataFiles);
      for (int i = 0; i < kDataFiles; ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), std::mt19937(t));
      for (int i : order) {
        Result<std::string> got = ReadFileToString(P(DataName(i)));
        if (!got.ok()) {
          failures++;
        } else if (*got != expected[i]) {
          mismatches++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(MountTest, StatsAreAnsweredOnTheRootOnly) {
  ASSERT_TRUE(ReadFileToString(P("/etc/passwd")).ok());
  auto json = ReadMountStats(mp_);
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_NE(json->find("\"counters\":{"), std::string::npos) << *json;
  EXPECT_NE(json->find("\"" + std::string(kStatBytesServed) + "\":"), std::string::npos) << *json;
  EXPECT_NE(json->find("\"latencies\":{"), std::string::npos) << *json;
  // Through a path inside the mount it is the same mount's root that must be asked.
  auto inner = ReadMountStats(P("/etc"));
  EXPECT_FALSE(inner.ok());
  // Any other file answers ENOTTY, like a filesystem without ioctls.
  auto fd = OpenFile(P("/etc/passwd"), O_RDONLY);
  ASSERT_TRUE(fd.ok());
  StatsIoctlReply reply;
  errno = 0;
  EXPECT_EQ(::ioctl(fd->get(), kStatsIoctl, &reply), -1);
  EXPECT_EQ(errno, ENOTTY);
  // Not a lazyfs mount: a clear error naming the path.
  auto root = ReadMountStats("/proc");
  ASSERT_FALSE(root.ok());
  EXPECT_NE(root.status().message().find("not a lazyfs mount"), std::string::npos)
      << root.status().ToString();
}

TEST_F(MountTest, WritesFailWithEROFS) {
  auto expect_erofs = [](const char* what, int rc) {
    const int err = errno;
    EXPECT_EQ(rc, -1) << what;
    EXPECT_EQ(err, EROFS) << what << ": " << std::strerror(err);
  };
  const std::string passwd = P("/etc/passwd");
  errno = 0;
  int fd = ::open(passwd.c_str(), O_WRONLY);
  expect_erofs("open O_WRONLY", fd);
  if (fd >= 0) ::close(fd);
  fd = ::open(passwd.c_str(), O_RDWR);
  expect_erofs("open O_RDWR", fd);
  if (fd >= 0) ::close(fd);
  fd = ::open(passwd.c_str(), O_RDONLY | O_TRUNC);
  expect_erofs("open O_TRUNC", fd);
  if (fd >= 0) ::close(fd);
  fd = ::open(P("/etc/new").c_str(), O_WRONLY | O_CREAT, 0644);
  expect_erofs("create", fd);
  if (fd >= 0) ::close(fd);
  expect_erofs("mkdir", ::mkdir(P("/newdir").c_str(), 0755));
  expect_erofs("unlink", ::unlink(passwd.c_str()));
  expect_erofs("rmdir", ::rmdir(P("/tmp").c_str()));
  expect_erofs("rename", ::rename(passwd.c_str(), P("/etc/passwd2").c_str()));
  expect_erofs("link", ::link(passwd.c_str(), P("/etc/passwd3").c_str()));
  expect_erofs("symlink", ::symlink("x", P("/etc/sym").c_str()));
  expect_erofs("mknod", ::mknod(P("/fifo2").c_str(), S_IFIFO | 0644, 0));
  expect_erofs("chmod", ::chmod(passwd.c_str(), 0600));
  expect_erofs("chown", ::lchown(passwd.c_str(), 1, 1));
  expect_erofs("truncate", ::truncate(passwd.c_str(), 0));
  expect_erofs("utimes", ::utimes(passwd.c_str(), nullptr));
  expect_erofs("setxattr", ::lsetxattr(passwd.c_str(), "user.x", "1", 1, 0));
  expect_erofs("removexattr", ::lremovexattr(passwd.c_str(), "user.comment"));
  expect_erofs("access W_OK", ::access(passwd.c_str(), W_OK));
  EXPECT_EQ(::access(passwd.c_str(), R_OK), 0) << std::strerror(errno);
  // Nothing changed.
  auto content = ReadFileToString(passwd);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "root:x:0:0::/root:/bin/sh\n");
}

TEST_F(MountTest, XattrsThroughTheKernel) {
  const std::string passwd = P("/etc/passwd");
  EXPECT_EQ(::lgetxattr(passwd.c_str(), "user.comment", nullptr, 0), 17);
  char small[4];
  errno = 0;
  EXPECT_EQ(::lgetxattr(passwd.c_str(), "user.comment", small, sizeof(small)), -1);
  EXPECT_EQ(errno, ERANGE);
  char buf[64] = {};
  ASSERT_EQ(::lgetxattr(passwd.c_str(), "user.comment", buf, sizeof(buf)), 17);
  EXPECT_STREQ(buf, "the password file");
  errno = 0;
  EXPECT_EQ(::lgetxattr(passwd.c_str(), "user.missing", buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENODATA);
  const std::string names("user.comment\0", 13);
  EXPECT_EQ(::llistxattr(passwd.c_str(), nullptr, 0), 13);
  errno = 0;
  EXPECT_EQ(::llistxattr(passwd.c_str(), small, sizeof(small)), -1);
  EXPECT_EQ(errno, ERANGE);
  ASSERT_EQ(::llistxattr(passwd.c_str(), buf, sizeof(buf)), 13);
  EXPECT_EQ(std::string(buf, 13), names);
  EXPECT_EQ(::llistxattr(P("/big").c_str(), buf, sizeof(buf)), 0);
  EXPECT_EQ(::lgetxattr(P("/usr/bin/ping").c_str(), "security.capability", buf, sizeof(buf)),
            20);
}

TEST_F(MountTest, ReaddirPagesThroughALargeDirectoryAndSeeksBack) {
  DIR* d = ::opendir(P("/many").c_str());
  ASSERT_NE(d, nullptr) << std::strerror(errno);
  std::vector<std::string> names;
  std::vector<long> positions;
  while (dirent* de = ::readdir(d)) {
    names.push_back(de->d_name);
    positions.push_back(::telldir(d));
  }
  ASSERT_EQ(names.size(), static_cast<size_t>(kManyFiles + 2));
  EXPECT_EQ(names[0], ".");
  EXPECT_EQ(names[1], "..");
  for (int i = 0; i < kManyFiles; ++i) ASSERT_EQ(names[i + 2], ManyName(i));
  // Resume from the middle: the entry after position k is names[k + 1].
  const size_t k = 700;
  ::seekdir(d, positions[k]);
  dirent* de = ::readdir(d);
  ASSERT_NE(de, nullptr);
  EXPECT_EQ(std::string(de->d_name), names[k + 1]);
  ::closedir(d);

  // d_ino of "." and ".." are the directory and its parent.
  struct stat user, home;
  ASSERT_EQ(::stat(P("/home/user").c_str(), &user), 0);
  ASSERT_EQ(::stat(P("/home").c_str(), &home), 0);
  d = ::opendir(P("/home/user").c_str());
  ASSERT_NE(d, nullptr);
  std::map<std::string, ino_t> inos;
  while (dirent* e = ::readdir(d)) inos[e->d_name] = e->d_ino;
  ::closedir(d);
  EXPECT_EQ(inos["."], user.st_ino);
  EXPECT_EQ(inos[".."], home.st_ino);
  EXPECT_EQ(inos.size(), 3u);
}

TEST_F(MountTest, StatFsReportsAReadOnlyFilesystem) {
  struct statvfs st;
  ASSERT_EQ(::statvfs(mp_.c_str(), &st), 0) << std::strerror(errno);
  const index::TreeStats stats = tree_->Stats();
  EXPECT_TRUE(st.f_flag & ST_RDONLY);
  EXPECT_EQ(st.f_files, stats.inodes);
  EXPECT_EQ(st.f_namemax, 255u);
  EXPECT_EQ(st.f_blocks * st.f_frsize, (stats.content_bytes + 4095) / 4096 * 4096);
  auto m = FindMount(mp_);
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ((*m)->source, "lazyfs-test,with a comma");
}

TEST_F(MountTest, ExitMakesRunReturnAndRemovesTheMount) {
  // Keep a file open and a directory listing in progress: Exit must not wait for them.
  auto open_file = OpenFile(P("/big"), O_RDONLY);
  ASSERT_TRUE(open_file.ok());
  session_->Exit();
  runner_.join();
  EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
  EXPECT_FALSE(IsMounted(mp_)) << "still mounted after Run returned";
  session_.reset();
  EXPECT_FALSE(IsMounted(mp_));
  // Exit twice, and after Run, is harmless: covered by TearDown on a reset session.
}

TEST_F(MountTest, UnmountEndsTheSession) {
  Status s = Unmount(mp_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  runner_.join();  // Run returns on its own once the kernel drops the connection
  EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
  EXPECT_FALSE(IsMounted(mp_));
  session_.reset();
  // Now it is not mounted any more: a clear error naming it.
  s = Unmount(mp_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(mp_), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("not mounted"), std::string::npos) << s.ToString();
}

TEST_F(MountTest, ExitRacingTheStartOfRunNeverHangs) {
  StopSession();
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE(i);
    MountOptions options;
    options.mountpoint = mp_;
    auto session = Session::Mount(*tree_, options);
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    Status status = InternalError("Run did not return");
    std::thread runner([&] { status = (*session)->Run(); });
    (*session)->Exit();  // possibly before the loop has started, possibly inside it
    runner.join();
    EXPECT_TRUE(status.ok()) << status.ToString();
    EXPECT_FALSE(IsMounted(mp_));
  }
}

TEST_F(MountTest, ExitBeforeRunAndDestroyWithoutRunBothUnmount) {
  StopSession();
  {
    MountOptions options;
    options.mountpoint = mp_;
    auto session = Session::Mount(*tree_, options);
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    (*session)->Exit();
    EXPECT_TRUE((*session)->Run().ok());
    EXPECT_FALSE(IsMounted(mp_));
  }
  {
    MountOptions options;
    options.mountpoint = mp_;
    auto session = Session::Mount(*tree_, options);
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    EXPECT_TRUE(IsMounted(mp_));
  }
  EXPECT_FALSE(IsMounted(mp_));
}

// allow_other makes the mount visible to every user, so the kernel must enforce the image's
// modes (default_permissions): checked from a child process running as uid/gid 65534, for
// every spelling of the option (the flag, -o allow_other, and allow_other inside a list).
class AllowOtherMountTest : public MountTest, public ::testing::WithParamInterface<int> {
 protected:
  void Configure(MountOptions& options) override {
    switch (GetParam()) {
      case 0: options.allow_other = true; break;
      case 1: options.fuse_options = {"allow_other"}; break;
      case 2: options.fuse_options = {"noatime,allow_other"}; break;
    }
  }

  // errno of open(path, O_RDONLY) as uid/gid 65534, 0 on success.
  int OpenAsNobody(const std::string& path) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls in the child of a threaded process.
      if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) {
        ::_exit(255);
      }
      const int fd = ::open(path.c_str(), O_RDONLY);
      ::_exit(fd >= 0 ? 0 : (errno & 0x7f));
    }
    int wstatus = 0;
    EXPECT_EQ(::waitpid(pid, &wstatus, 0), pid);
    EXPECT_TRUE(WIFEXITED(wstatus));
    EXPECT_NE(WEXITSTATUS(wstatus), 255) << "could not drop privileges";
    return WEXITSTATUS(wstatus);
  }
};

INSTANTIATE_TEST_SUITE_P(Spellings, AllowOtherMountTest, ::testing::Values(0, 1, 2));

TEST_P(AllowOtherMountTest, OtherUsersAreHeldToTheImagesModes) {
  auto table = ReadFileToString("/proc/self/mountinfo");
  ASSERT_TRUE(table.ok());
  const size_t pos = table->find(" " + mp_ + " ");
  ASSERT_NE(pos, std::string::npos) << mp_ << " not in mountinfo";
  std::string line = table->substr(table->rfind('\n', pos) + 1);  // npos + 1 == 0: first line
  line = line.substr(0, line.find('\n'));
  EXPECT_NE(line.find("allow_other"), std::string::npos) << line;
  EXPECT_NE(line.find("default_permissions"), std::string::npos) << line;
  EXPECT_NE(line.find("nosuid"), std::string::npos) << line;
  EXPECT_NE(line.find("nodev"), std::string::npos) << line;
  EXPECT_EQ(OpenAsNobody(P("/etc/passwd")), 0);
  EXPECT_EQ(OpenAsNobody(P("/nobody")), 0);  // 0600 owned by 65534
  EXPECT_EQ(OpenAsNobody(P("/etc/shadow")), EACCES);  // 0640 root:42
  EXPECT_EQ(OpenAsNobody(P("/home/user/.profile")), EACCES);  // under a 0750 1000:1000 dir
}

// Extra options cannot make the mount writable.
class RwOptionMountTest : public MountTest {
 protected:
  void Configure(MountOptions& options) override { options.fuse_options.push_back("rw"); }
};

TEST_F(RwOptionMountTest, StaysReadOnly) {
  struct statvfs st;
  ASSERT_EQ(::statvfs(mp_.c_str(), &st), 0) << std::strerror(errno);
  EXPECT_TRUE(st.f_flag & ST_RDONLY);
  errno = 0;
  EXPECT_EQ(::mkdir(P("/newdir").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
}

// A tree whose content reads fail the way fetches do: the registry gone (Unavailable), data
// that does not match its digest (DataLoss), or anything else (Internal).
class FailingReadsTree final : public testing::ForwardingTree {
 public:
  using ForwardingTree::ForwardingTree;
  Result<size_t> Read(uint64_t ino, uint64_t off, std::span<std::byte> out) const override {
    auto a = base_.GetAttr(ino);
    if (!a.ok()) return a.status();
    switch (a->uid) {  // the test marks each file's failure by its owner
      case 1: return UnavailableError("registry 127.0.0.1:1 refused the connection");
      case 2: return DataLossError("sha256 mismatch");
      case 3: return InternalError("something else");
      default: return base_.Read(ino, off, out);
    }
  }
};

TEST(MountEioTest, FailedReadsAreEIOCountedByCause) {
  std::vector<MemNode> nodes;
  for (uint32_t uid : {0u, 1u, 2u, 3u}) {
    MemNode n;
    n.path = "/f" + std::to_string(uid);
    n.mode = S_IFREG | 0644;
    n.data = "data";
    n.uid = uid;
    nodes.push_back(n);
  }
  auto mem = MemoryTree::Build(nodes);
  ASSERT_TRUE(mem.ok());
  FailingReadsTree tree(**mem);
  char dir[] = "/tmp/lazyfs-mount-eio-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  MountOptions options;
  options.mountpoint = dir;
  auto session = Session::Mount(tree, options);
  ASSERT_TRUE(session.ok()) << "this test needs FUSE: " << session.status().ToString();
  Status run_status;
  std::thread runner([&] { run_status = (*session)->Run(); });
  const uint64_t unavailable = Count(kStatEioUnavailable), data_loss = Count(kStatEioDataLoss),
                 other = Count(kStatEioOther);
  auto read_errno = [&](const std::string& name) {
    auto r = ReadFileToString(std::string(dir) + name);
    return r.ok() ? 0 : r.status().error_number();
  };
  EXPECT_EQ(read_errno("/f0"), 0);
  EXPECT_EQ(read_errno("/f1"), EIO);
  EXPECT_EQ(read_errno("/f2"), EIO);
  EXPECT_EQ(read_errno("/f2"), EIO);
  EXPECT_EQ(read_errno("/f3"), EIO);
  // The kernel may retry a failed readahead page with a read of its own: at least once each.
  EXPECT_GE(Count(kStatEioUnavailable) - unavailable, 1u);
  EXPECT_GE(Count(kStatEioDataLoss) - data_loss, 2u);
  EXPECT_GE(Count(kStatEioOther) - other, 1u);
  (*session)->Exit();
  runner.join();
  EXPECT_TRUE(run_status.ok()) << run_status.ToString();
  session->reset();
  ::rmdir(dir);
}

TEST(MountErrorsTest, MountOnAMissingDirectoryNamesIt) {
  auto tree = MemoryTree::Build({});
  ASSERT_TRUE(tree.ok());
  MountOptions options;
  options.mountpoint = "/tmp/lazyfs-definitely-missing-mountpoint";
  auto session = Session::Mount(**tree, options);
  ASSERT_FALSE(session.ok());
  EXPECT_NE(session.status().message().find(options.mountpoint), std::string::npos)
      << session.status().ToString();
}

TEST(MountErrorsTest, BadFuseOptionIsAClearError) {
  auto tree = MemoryTree::Build({});
  ASSERT_TRUE(tree.ok());
  char dir[] = "/tmp/lazyfs-mount-opt-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  MountOptions options;
  options.mountpoint = dir;
  options.fuse_options = {"no_such_fuse_option"};
  auto session = Session::Mount(**tree, options);
  EXPECT_FALSE(session.ok());
  if (!session.ok()) {
    EXPECT_NE(session.status().message().find("no_such_fuse_option"), std::string::npos)
        << session.status().ToString();
  }
  session = Result<std::unique_ptr<Session>>(InternalError("released"));
  EXPECT_FALSE(IsMounted(dir));
  ::rmdir(dir);
}

}  // namespace
}  // namespace lazyfs::fs
