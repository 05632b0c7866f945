// convert/ WriteExt4 against the real tools: every image must pass `e2fsck -fn`, and the
// loop-mounted image (kernel ext4, read-only) must list exactly what the tree says.
//
// Needs root (loop mounts) and e2fsprogs; a test that cannot get them fails and says why.
//
// Mounted listings differ from the tree in one deliberate way: the writer adds /lost+found (as
// mke2fs does, so e2fsck has somewhere to reconnect files). The comparison removes it from the
// mounted listing and takes one link off the root's count, which lost+found's ".." adds.
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "base/fd.h"
#include "convert/convert.h"
#include "index/tree.h"
#include "tests/support/forwarding_tree.h"
#include "tests/support/listing.h"
#include "tests/support/memory_tree.h"

extern char** environ;

namespace lazyfs::convert {
namespace {

using testing::DiffListings;
using testing::ListDirectory;
using testing::Listing;
using testing::ListTree;
using testing::MemNode;
using testing::MemoryTree;

constexpr int64_t kFsTime = 1'700'000'000;
constexpr int64_t kPast2038 = (int64_t{1} << 31) + 100;
constexpr int64_t k2100 = 4'102'444'800;  // 2100-01-01T00:00:00Z: needs the epoch bits

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs argv (no shell) with posix_spawnp, collecting stdout+stderr.
CommandResult RunCommand(const std::vector<std::string>& argv) {
  CommandResult r;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    r.output = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // e2fsprogs and mount live in sbin, which a test runner's PATH may lack.
  std::string path_env = std::string("PATH=/usr/sbin:/sbin:/usr/bin:/bin");
  std::vector<char*> env{path_env.data(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    r.output = "spawning " + argv[0] + ": " + std::strerror(rc);
    return r;
  }
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipefd[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    r.output.append(buf, static_cast<size_t>(n));
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

// A scratch directory removed (with anything in it) at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/lazyfs-convert-test-XXXXXX";
    if (mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~ScratchDir() {
    if (!path_.empty()) RemoveTree(path_).IgnoreError();
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  // Names in the directory, for "nothing was left behind" checks.
  std::vector<std::string> Names() const {
    std::vector<std::string> out;
    if (DIR* d = opendir(path_.c_str())) {
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
      }
      closedir(d);
    }
    return out;
  }

 private:
  std::string path_;
};

// A read-only loop mount, unmounted on destruction (also when the test failed half way).
class LoopMount {
 public:
  ~LoopMount() {
    if (mounted_) {
      CommandResult r = RunCommand({"umount", dir_});
      if (r.exit_code != 0) RunCommand({"umount", "-l", dir_});
    }
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  // Mounts image at a fresh directory; returns an error text or "".
  std::string Mount(const std::string& image, bool read_write = false) {
    char tmpl[] = "/tmp/lazyfs-convert-mnt-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return std::string("mkdtemp: ") + std::strerror(errno);
    dir_ = tmpl;
    std::vector<std::string> argv = {"mount", "-t", "ext4", "-o",
                                     read_write ? "loop,rw" : "loop,ro", image, dir_};
    CommandResult r = RunCommand(argv);
    if (r.exit_code != 0) {
      return Join(argv) + " exited " + std::to_string(r.exit_code) + " (loop mounts need root):\n" +
             r.output;
    }
    mounted_ = true;
    return "";
  }
  const std::string& dir() const { return dir_; }
  // Unmounts now; returns an error text or "".
  std::string Unmount() {
    if (!mounted_) return "";
    CommandResult r = RunCommand({"umount", dir_});
    if (r.exit_code != 0) return "umount " + dir_ + ": " + r.output;
    mounted_ = false;
    return "";
  }

 private:
  std::string dir_;
  bool mounted_ = false;
};

std::string PseudoRandom(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ull ^ seed;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

MemNode File(std::string path, std::string data, uint32_t mode = 0644) {
  MemNode n;
  n.path = std::move(path);
  n.mode = S_IFREG | mode;
  n.data = std::move(data);
  n.mtime_sec = 1'600'000'000;
  return n;
}

MemNode Dir(std::string path, uint32_t mode = 0755) {
  MemNode n;
  n.path = std::move(path);
  n.mode = S_IFDIR | mode;
  n.mtime_sec = 1'600'000'001;
  return n;
}

MemNode Symlink(std::string path, std::string target) {
  MemNode n;
  n.path = std::move(path);
  n.mode = S_IFLNK | 0777;
  n.data = std::move(target);
  n.mtime_sec = 1'600'000'002;
  return n;
}

MemNode Device(std::string path, uint32_t type, uint32_t major, uint32_t minor) {
  MemNode n;
  n.path = std::move(path);
  n.mode = type | 0660;
  n.rdev_major = major;
  n.rdev_minor = minor;
  n.mtime_sec = 1'600'000'003;
  return n;
}

// A tree with one of everything the writer handles.
std::vector<MemNode> EverythingNodes() {
  std::vector<MemNode> v;
  MemNode root = Dir("/", 0755);
  root.mtime_sec = 1'650'000'000;
  v.push_back(root);
  v.push_back(Dir("/a"));
  v.push_back(Dir("/a/b", 0750));
  v.push_back(File("/a/b/c.txt", "hello, ext4\n"));

  // A directory with 5000 entries of varying name lengths (several directory blocks).
  for (int i = 0; i < 5000; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "/many/entry-%05d%s", i, std::string(i % 23, 'x').c_str());
    v.push_back(File(name, i % 100 == 0 ? "x" : ""));
  }
  v.push_back(File("/empty", ""));
  v.push_back(File("/data/six_mib", PseudoRandom(6 << 20, 1)));
  // A whole zero block in the middle (a hole), and a partial last block.
  v.push_back(File("/data/holey", PseudoRandom(4096, 2) + std::string(4096, '\0') +
                                      PseudoRandom(5000, 3)));
  v.push_back(File("/data/all_zero", std::string(100000, '\0')));
  // Data and holes alternating: 600 extents, so the extent tree needs index blocks.
  {
    std::string frag;
    for (int i = 0; i < 1200; ++i) {
      frag += (i % 2 == 0) ? PseudoRandom(4096, 100 + i) : std::string(4096, '\0');
    }
    v.push_back(File("/data/fragmented", frag));
  }

  v.push_back(Symlink("/links/short", "a/b/c.txt"));
  v.push_back(Symlink("/links/fast_max", std::string(59, 's')));
  v.push_back(Symlink("/links/slow_min", std::string(60, 'l')));
  v.push_back(Symlink("/links/long", "../" + std::string(200, 'q') + "/target/that/is/long"));
  v.push_back(Symlink("/links/dangling", "/nonexistent"));

  MemNode h1 = File("/hard/one", "shared content\n", 0640);
  h1.uid = 1000;
  h1.gid = 1000;
  v.push_back(h1);
  MemNode h2;
  h2.path = "/hard/two";
  h2.hardlink_to = "/hard/one";
  v.push_back(h2);
  MemNode h3;
  h3.path = "/other/three";
  h3.hardlink_to = "/hard/one";
  v.push_back(h3);

  v.push_back(Device("/dev/null", S_IFCHR, 1, 3));
  v.push_back(Device("/dev/sda", S_IFBLK, 8, 0));
  v.push_back(Device("/dev/big", S_IFCHR, 300, 70000));  // needs the new encoding
  v.push_back(Device("/dev/fifo", S_IFIFO, 0, 0));
  v.push_back(Device("/dev/sock", S_IFSOCK, 0, 0));

  v.push_back(File("/modes/suid", "#!/bin/sh\n", 04755));
  v.push_back(File("/modes/sgid", "#!/bin/sh\n", 02711));
  v.push_back(Dir("/modes/sticky", 01777));
  v.push_back(File("/modes/none", "secret", 0));

  for (uint32_t id : {1000u, 65534u, 100000u}) {
    MemNode n = File("/owners/f" + std::to_string(id), "owned");
    n.uid = id;
    n.gid = id + 1;
    v.push_back(n);
  }
  MemNode od = Dir("/owners/dir100000", 0700);
  od.uid = 100000;
  od.gid = 100000;
  v.push_back(od);

  MemNode future = File("/time/future", "after 2038");
  future.mtime_sec = kPast2038;
  future.mtime_nsec = 123456789;
  v.push_back(future);
  MemNode epoch = File("/time/epoch", "1970");
  epoch.mtime_sec = 0;
  v.push_back(epoch);
  MemNode before = File("/time/before_epoch", "1969");
  before.mtime_sec = -86400;
  v.push_back(before);
  MemNode far = Dir("/time/far_dir");
  far.mtime_sec = int64_t{4'000'000'000};
  v.push_back(far);
  MemNode y2100 = File("/time/y2100", "new year 2100");
  y2100.mtime_sec = k2100;
  y2100.mtime_nsec = 999'999'999;
  v.push_back(y2100);

  MemNode x = File("/xattrs/file", "with xattrs");
  x.xattrs["user.comment"] = "hello";
  x.xattrs["trusted.overlay.opaque"] = "y";
  // vfs_cap_data v2: magic/flags, permitted (cap_net_bind_service), inheritable; zeros inside.
  x.xattrs["security.capability"] =
      std::string("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
                  20);
  v.push_back(x);
  MemNode xb = File("/xattrs/big", "big xattrs");
  xb.xattrs["user.big"] = PseudoRandom(1500, 9);  // too big for the inode: an xattr block
  xb.xattrs["user.small"] = "s";
  v.push_back(xb);
  MemNode xd = Dir("/xattrs/dir");
  xd.xattrs["user.dir"] = "on a directory";
  v.push_back(xd);
  MemNode xl = Symlink("/xattrs/link", "file");
  xl.xattrs["trusted.link"] = "on a symlink";
  v.push_back(xl);

  v.push_back(File("/names/" + std::string(255, 'n'), "long name"));
  std::string deep = "/deep";
  for (int i = 0; i < 40; ++i) deep += "/level" + std::to_string(i);
  v.push_back(File(deep + "/leaf", "deep"));
  return v;
}

std::unique_ptr<MemoryTree> BuildTree(std::vector<MemNode> nodes) {
  auto t = MemoryTree::Build(std::move(nodes));
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

// The EverythingNodes tree written to image with the test's fixed filesystem time.
Result<Ext4Report> WriteEverything(const std::string& image) {
  auto tree = MemoryTree::Build(EverythingNodes());
  if (!tree.ok()) return tree.status();
  Ext4Options o;
  o.fs_time = kFsTime;
  return WriteExt4(**tree, image, o, nullptr);
}

// e2fsck -fn must exit 0; returns its complaint otherwise.
std::string Fsck(const std::string& image) {
  std::vector<std::string> argv = {"e2fsck", "-fn", image};
  CommandResult r = RunCommand(argv);
  if (r.exit_code == 0) return "";
  return Join(argv) + " exited " + std::to_string(r.exit_code) + ":\n" + r.output;
}

// Writes, checks with e2fsck, mounts, and compares the mounted listing with the tree's.
void WriteCheckAndCompare(const index::Tree& tree, const Ext4Options& options,
                          bool expect_added_lost_found = true) {
  ScratchDir scratch;
  ASSERT_FALSE(scratch.path().empty()) << "mkdtemp failed";
  const std::string image = scratch / "out.img";
  auto start = std::chrono::steady_clock::now();
  Result<Ext4Report> report = WriteExt4(tree, image, options, nullptr);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  std::printf("WriteExt4: %.3f s, image %llu bytes, %llu inodes, %llu content bytes, uuid %s\n",
              secs, static_cast<unsigned long long>(report->image_bytes),
              static_cast<unsigned long long>(report->inodes),
              static_cast<unsigned long long>(report->data_bytes), report->uuid.c_str());
  struct stat st;
  ASSERT_EQ(stat(image.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), report->image_bytes);
  EXPECT_EQ(scratch.Names(), std::vector<std::string>{"out.img"});

  std::string fsck = Fsck(image);
  ASSERT_EQ(fsck, "");

  LoopMount mnt;
  std::string err = mnt.Mount(image);
  ASSERT_EQ(err, "");
  Result<Listing> got = ListDirectory(mnt.dir());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  Result<Listing> want = ListTree(tree);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  if (expect_added_lost_found) {
    ASSERT_TRUE(got->count("/lost+found"));
    EXPECT_EQ((*got)["/lost+found"].type, 'd');
    EXPECT_EQ((*got)["/lost+found"].mode, 0700u);
    got->erase("/lost+found");
    (*got)["/"].nlink -= 1;
  }
  EXPECT_EQ(DiffListings(*want, *got), "");
  EXPECT_EQ(got->size(), want->size());
}

TEST(convert_ext4, EverythingFsckCleanAndMountedListingMatches) {
  auto tree = BuildTree(EverythingNodes());
  ASSERT_TRUE(tree);
  Ext4Options o;
  o.label = "lazyfs-test";
  o.fs_time = kFsTime;
  WriteCheckAndCompare(*tree, o);
}

TEST(convert_ext4, TimesPast2038KeepNanosecondsAndLabelIsSet) {
  auto tree = BuildTree(EverythingNodes());
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  const std::string image = scratch / "t.img";
  Ext4Options o;
  o.label = "rootfs";
  o.fs_time = kFsTime;
  Result<Ext4Report> report = WriteExt4(*tree, image, o, nullptr);
  ASSERT_TRUE(report.ok()) << report.status().ToString();

  CommandResult label = RunCommand({"e2label", image});
  EXPECT_EQ(label.output, "rootfs\n");
  CommandResult blkid = RunCommand({"blkid", "-p", "-o", "value", "-s", "UUID", image});
  EXPECT_EQ(blkid.output, report->uuid + "\n") << blkid.output;

  LoopMount mnt;
  ASSERT_EQ(mnt.Mount(image), "");
  struct stat st;
  ASSERT_EQ(lstat((mnt.dir() + "/time/future").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, kPast2038);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_atim.tv_sec, kPast2038);
  EXPECT_EQ(st.st_ctim.tv_sec, kPast2038);
  ASSERT_EQ(lstat((mnt.dir() + "/time/y2100").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, k2100);
  EXPECT_EQ(st.st_mtim.tv_nsec, 999'999'999);
  ASSERT_EQ(lstat((mnt.dir() + "/time/far_dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 4'000'000'000);
  ASSERT_EQ(lstat((mnt.dir() + "/time/epoch").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 0);
  EXPECT_EQ(st.st_ctim.tv_sec, 0);
  ASSERT_EQ(lstat((mnt.dir() + "/time/before_epoch").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, -86400);
  ASSERT_EQ(lstat((mnt.dir() + "/dev/big").c_str(), &st), 0);
  EXPECT_EQ(major(st.st_rdev), 300u);
  EXPECT_EQ(minor(st.st_rdev), 70000u);
  ASSERT_EQ(lstat((mnt.dir() + "/data/holey").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 3 * 4096 / 512) << "the zero block should be a hole";
  ASSERT_EQ(lstat((mnt.dir() + "/data/all_zero").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0);
}

TEST(convert_ext4, SameTreeTwiceGivesIdenticalBytes) {
  auto tree = BuildTree(EverythingNodes());
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  Ext4Options o;
  o.fs_time = kFsTime;
  ASSERT_TRUE(WriteExt4(*tree, scratch / "1.img", o, nullptr).ok());
  ASSERT_TRUE(WriteExt4(*tree, scratch / "2.img", o, nullptr).ok());
  CommandResult cmp = RunCommand({"cmp", scratch / "1.img", scratch / "2.img"});
  EXPECT_EQ(cmp.exit_code, 0) << cmp.output;

  // A caller-supplied seed changes the UUID and nothing about the content.
  o.seed = "another seed";
  Result<Ext4Report> r3 = WriteExt4(*tree, scratch / "3.img", o, nullptr);
  ASSERT_TRUE(r3.ok());
  CommandResult cmp3 = RunCommand({"cmp", "-s", scratch / "1.img", scratch / "3.img"});
  EXPECT_NE(cmp3.exit_code, 0);
  EXPECT_EQ(Fsck(scratch / "3.img"), "");
}

TEST(convert_ext4, ExplicitSizeTooSmallIsResourceExhaustedAndLeavesNothing) {
  auto tree = BuildTree(EverythingNodes());
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  Ext4Options o;
  o.fs_time = kFsTime;
  o.size_bytes = 8 << 20;
  Result<Ext4Report> r = WriteExt4(*tree, scratch / "small.img", o, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("tree needs "), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("--size gives 8388608"), std::string::npos)
      << r.status().message();
  EXPECT_TRUE(scratch.Names().empty());

  // The size the message names is enough.
  const std::string& msg = r.status().message();
  const size_t at = msg.find("tree needs ");
  ASSERT_NE(at, std::string::npos);
  o.size_bytes = std::stoull(msg.substr(at + 11));
  Result<Ext4Report> fits = WriteExt4(*tree, scratch / "fits.img", o, nullptr);
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_EQ(fits->image_bytes, o.size_bytes);
  EXPECT_EQ(Fsck(scratch / "fits.img"), "");
}

// 5 GiB: 40 block groups in three flex groups, inodes by mke2fs's ratio; the file is sparse.
TEST(convert_ext4, ExplicitSizeLargerThanNeededIsUsedExactly) {
  auto tree = BuildTree(EverythingNodes());
  ASSERT_TRUE(tree);
  Ext4Options o;
  o.fs_time = kFsTime;
  o.size_bytes = uint64_t{5} << 30;
  WriteCheckAndCompare(*tree, o);
}

// A Tree whose Read corrupts one file's bytes (as a bad cache or a lying index would).
class CorruptingTree : public testing::ForwardingTree {
 public:
  CorruptingTree(const index::Tree& base, uint64_t bad_ino)
      : ForwardingTree(base), bad_ino_(bad_ino) {}
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    Result<size_t> n = base_.Read(ino, offset, out);
    if (n.ok() && ino == bad_ino_ && *n > 0) out[0] ^= std::byte{0x55};
    return n;
  }

 private:
  uint64_t bad_ino_;
};

TEST(convert_ext4, ContentNotMatchingDigestIsDataLossAndLeavesNothing) {
  auto tree = BuildTree({File("/etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
                         File("/etc/zzz", "later file")});
  ASSERT_TRUE(tree);
  Result<index::Attr> etc = tree->Lookup(index::kRootIno, "etc");
  ASSERT_TRUE(etc.ok());
  Result<index::Attr> passwd = tree->Lookup(etc->ino, "passwd");
  ASSERT_TRUE(passwd.ok());
  CorruptingTree bad(*tree, passwd->ino);
  ScratchDir scratch;
  Ext4Options o;
  o.fs_time = kFsTime;
  Result<Ext4Report> r = WriteExt4(bad, scratch / "bad.img", o, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_NE(r.status().message().find("/etc/passwd"), std::string::npos) << r.status().message();
  EXPECT_TRUE(scratch.Names().empty());
}

TEST(convert_ext4, ReportsWriteProgressUpToTheContentSize) {
  auto tree = BuildTree({File("/a", PseudoRandom(10 << 20, 5)), File("/b", "bee")});
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  Ext4Options o;
  o.fs_time = kFsTime;
  uint64_t calls = 0, last_done = 0, last_total = 0;
  bool stage_ok = true;
  ProgressFn progress = [&](const Progress& p) {
    ++calls;
    stage_ok = stage_ok && p.stage == "write";
    EXPECT_GE(p.done, last_done);
    last_done = p.done;
    last_total = p.total;
  };
  Result<Ext4Report> r = WriteExt4(*tree, scratch / "p.img", o, progress);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(calls, 3u);
  EXPECT_TRUE(stage_ok);
  EXPECT_EQ(last_done, (10u << 20) + 3);
  EXPECT_EQ(last_total, (10u << 20) + 3);
  EXPECT_EQ(r->data_bytes, (10u << 20) + 3);
}

// The kernel must accept the image's bitmaps, group descriptors and directories as its own:
// change it through a read-write mount, and e2fsck must still find it clean.
TEST(convert_ext4, KernelWritesKeepTheImageClean) {
  ScratchDir scratch;
  const std::string image = scratch / "rw.img";
  ASSERT_TRUE(WriteEverything(image).ok());
  {
    LoopMount mnt;
    ASSERT_EQ(mnt.Mount(image, /*read_write=*/true), "");
    const std::string d = mnt.dir();
    // The image keeps max(1024, 20%) inodes free by default; use most of them.
    for (int i = 0; i < 1000; ++i) {
      Result<Fd> fd = OpenFile(d + "/many/new-" + std::to_string(i), O_WRONLY | O_CREAT, 0600);
      ASSERT_TRUE(fd.ok()) << fd.status().ToString();
    }
    ASSERT_EQ(unlink((d + "/data/six_mib").c_str()), 0);
    ASSERT_EQ(unlink((d + "/hard/two").c_str()), 0);
    ASSERT_EQ(mkdir((d + "/newdir").c_str(), 0755), 0);
    ASSERT_TRUE(WriteFileAtomic(d + "/newdir/file", PseudoRandom(3 << 20, 7)).ok());
    ASSERT_EQ(rename((d + "/a/b").c_str(), (d + "/newdir/b").c_str()), 0);
    ASSERT_EQ(rmdir((d + "/modes/sticky").c_str()), 0);
    ASSERT_EQ(mnt.Unmount(), "");
  }
  EXPECT_EQ(Fsck(image), "");
}

TEST(convert_ext4, EmptyTreeGivesASmallCleanImage) {
  auto tree = BuildTree({});
  ASSERT_TRUE(tree);
  Ext4Options o;
  o.fs_time = kFsTime;
  WriteCheckAndCompare(*tree, o);
}

TEST(convert_ext4, TreeWithItsOwnLostFoundKeepsIt) {
  MemNode lf = Dir("/lost+found", 0700);
  auto tree = BuildTree({lf, File("/lost+found/#12", "orphan"), File("/x", "x")});
  ASSERT_TRUE(tree);
  Ext4Options o;
  o.fs_time = kFsTime;
  WriteCheckAndCompare(*tree, o, /*expect_added_lost_found=*/false);
}

TEST(convert_ext4, InvalidInputsAreInvalidArgument) {
  auto tree = BuildTree({File("/a", "a")});
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  Ext4Options o;
  o.label = "a label longer than sixteen bytes";
  Result<Ext4Report> r = WriteExt4(*tree, scratch / "l.img", o, nullptr);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(scratch.Names().empty());

  MemNode x = File("/x", "x");
  x.xattrs["user.huge"] = std::string(6000, 'h');
  auto big_xattr = BuildTree({x});
  ASSERT_TRUE(big_xattr);
  r = WriteExt4(*big_xattr, scratch / "x.img", Ext4Options{}, nullptr);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("/x: xattrs do not fit"), std::string::npos)
      << r.status().message();
  EXPECT_TRUE(scratch.Names().empty());

  auto empty_link = BuildTree({Symlink("/l", "")});
  ASSERT_TRUE(empty_link);
  r = WriteExt4(*empty_link, scratch / "s.img", Ext4Options{}, nullptr);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_TRUE(scratch.Names().empty());
}

// Directories past one block become htrees: one level for 20k entries, two levels (interior
// nodes) for 60k long names. e2fsck checks the index (hash order, ranges, checksums); the kernel
// must find every name through it, and debugfs must dump it.
TEST(convert_ext4, BigDirectoriesAreHashIndexedAndEveryNameIsFound) {
  std::vector<MemNode> nodes;
  nodes.push_back(File("/small/only", "x"));
  for (int i = 0; i < 20000; ++i) nodes.push_back(File("/big/f" + std::to_string(i), ""));
  for (int i = 0; i < 60000; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "/huge/%040d", i);
    nodes.push_back(File(name, i % 1000 == 0 ? "data" : ""));
  }
  MemNode sub = Dir("/big/subdir");
  nodes.push_back(sub);
  auto tree = BuildTree(std::move(nodes));
  ASSERT_TRUE(tree);
  Ext4Options o;
  o.fs_time = kFsTime;
  WriteCheckAndCompare(*tree, o);

  ScratchDir scratch;
  const std::string image = scratch / "dirs.img";
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(WriteExt4(*tree, image, o, nullptr).ok());
  std::printf("80k entries written in %.3f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  for (const char* dir : {"/big", "/huge"}) {
    CommandResult h = RunCommand({"debugfs", "-R", std::string("htree ") + dir, image});
    EXPECT_EQ(h.exit_code, 0) << h.output;
    EXPECT_NE(h.output.find("Root node dump"), std::string::npos) << h.output.substr(0, 2000);
    EXPECT_EQ(h.output.find("Not a hash-indexed directory"), std::string::npos);
  }
  CommandResult h = RunCommand({"debugfs", "-R", "htree /huge", image});
  EXPECT_NE(h.output.find("Indirect levels: 1"), std::string::npos) << h.output.substr(0, 2000);
  CommandResult small = RunCommand({"debugfs", "-R", "htree /small", image});
  EXPECT_NE(small.output.find("Not a hash-indexed directory"), std::string::npos)
      << small.output.substr(0, 2000);

  LoopMount mnt;
  ASSERT_EQ(mnt.Mount(image), "");
  struct stat st;
  int missing = 0;
  for (int i = 0; i < 20000; ++i) {
    if (lstat((mnt.dir() + "/big/f" + std::to_string(i)).c_str(), &st) != 0) ++missing;
  }
  for (int i = 0; i < 60000; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "/huge/%040d", i);
    if (lstat((mnt.dir() + name).c_str(), &st) != 0) ++missing;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_NE(lstat((mnt.dir() + "/big/absent").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
}

// A tree with one file of kBigSize bytes, zero except a few patches (one straddling the 4 GiB
// boundary, one in the partial last block): served without holding it in memory.
class BigSparseTree : public index::Tree {
 public:
  static constexpr uint64_t kBigSize = (uint64_t{5} << 30) + 12345;
  struct Patch {
    uint64_t off;
    std::string bytes;
  };
  BigSparseTree() {
    patches_ = {{0, PseudoRandom(10000, 1)},
                {(uint64_t{4} << 30) - 3, "across 4 GiB"},
                {(uint64_t{4} << 30) + (uint64_t{1} << 29), PseudoRandom(4096 * 3, 2)},
                {kBigSize - 5, "tail!"}};
    Sha256 h;
    std::vector<std::byte> buf(8 << 20);
    for (uint64_t off = 0; off < kBigSize; off += buf.size()) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), kBigSize - off));
      Fill(off, std::span<std::byte>(buf.data(), n));
      h.Update(buf.data(), n);
    }
    digest_ = h.Finish();
  }
  Result<index::Attr> GetAttr(uint64_t ino) const override {
    index::Attr a;
    a.ino = ino;
    if (ino == 1) {
      a.mode = S_IFDIR | 0755;
      a.nlink = 2;
    } else if (ino == 2) {
      a.mode = S_IFREG | 0644;
      a.size = kBigSize;
      a.mtime_sec = 1'700'000'000;
    } else {
      return NotFoundError("no inode " + std::to_string(ino));
    }
    return a;
  }
  Result<index::Attr> Lookup(uint64_t parent, std::string_view name) const override {
    if (parent == 1 && name == "big") return GetAttr(2);
    return NotFoundError(std::string(name));
  }
  Result<std::vector<index::DirEntry>> ReadDir(uint64_t ino) const override {
    if (ino != 1) return std::vector<index::DirEntry>{};
    return std::vector<index::DirEntry>{{"big", 2, S_IFREG | 0644}};
  }
  Result<std::string> ReadLink(uint64_t) const override { return InvalidArgumentError("no"); }
  Result<std::vector<index::Xattr>> ListXattrs(uint64_t) const override {
    return std::vector<index::Xattr>{};
  }
  Result<Digest> ContentDigest(uint64_t) const override { return digest_; }
  Result<size_t> Read(uint64_t, uint64_t offset, std::span<std::byte> out) const override {
    if (offset >= kBigSize) return size_t{0};
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), kBigSize - offset));
    Fill(offset, out.subspan(0, n));
    return n;
  }
  index::TreeStats Stats() const override {
    index::TreeStats s;
    s.inodes = 2;
    s.directories = 1;
    s.regular_files = 1;
    s.content_bytes = kBigSize;
    return s;
  }
  const Digest& digest() const { return digest_; }
  // Bytes of the file that are not in an all-zero 4 KiB block.
  uint64_t DataBlocks() const {
    std::set<uint64_t> blocks;
    for (const Patch& p : patches_) {
      for (uint64_t b = p.off / 4096; b <= (p.off + p.bytes.size() - 1) / 4096; ++b) blocks.insert(b);
    }
    return blocks.size();
  }

 private:
  void Fill(uint64_t off, std::span<std::byte> out) const {
    std::memset(out.data(), 0, out.size());
    for (const Patch& p : patches_) {
      const uint64_t lo = std::max(off, p.off);
      const uint64_t hi = std::min(off + out.size(), p.off + p.bytes.size());
      if (lo < hi) std::memcpy(out.data() + (lo - off), p.bytes.data() + (lo - p.off), hi - lo);
    }
  }
  std::vector<Patch> patches_;
  Digest digest_;
};

// Past 4 GiB nothing may wrap (offsets, extent starts, i_size_high), and whole zero blocks stay
// holes all the way down: in the ext4 file and in out.img itself.
TEST(convert_ext4, FileLargerThan4GiBStaysSparseAndReadsBackIdentical) {
  BigSparseTree tree;
  ScratchDir scratch;
  const std::string image = scratch / "big.img";
  Ext4Options o;
  o.fs_time = kFsTime;
  Result<Ext4Report> r = WriteExt4(tree, image, o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->image_bytes, BigSparseTree::kBigSize) << "auto size counts holes as data";
  struct stat st;
  ASSERT_EQ(stat(image.c_str(), &st), 0);
  const uint64_t allocated = static_cast<uint64_t>(st.st_blocks) * 512;
  std::printf("image %llu bytes, %llu allocated on the host\n",
              static_cast<unsigned long long>(st.st_size),
              static_cast<unsigned long long>(allocated));
  EXPECT_LT(allocated, uint64_t{200} << 20) << "out.img should stay sparse";
  EXPECT_EQ(Fsck(image), "");

  LoopMount mnt;
  ASSERT_EQ(mnt.Mount(image), "");
  const std::string big = mnt.dir() + "/big";
  ASSERT_EQ(lstat(big.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), BigSparseTree::kBigSize);
  EXPECT_EQ(static_cast<uint64_t>(st.st_blocks), tree.DataBlocks() * 4096 / 512);
  Result<Fd> fd = OpenFile(big, O_RDONLY);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  Sha256 h;
  std::vector<char> buf(8 << 20);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd->get(), buf.data(), buf.size());
    ASSERT_GE(n, 0) << std::strerror(errno);
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  EXPECT_EQ(total, BigSparseTree::kBigSize);
  EXPECT_EQ(h.Finish(), tree.digest());
}

// --read-only: no journal, and (sized automatically) almost no free blocks or inodes. Sizing
// happens before content is read, so holes are counted as data: the free-space check uses
// dense files.
TEST(convert_ext4, ReadOnlyImageHasNoJournalAndLittleFreeSpace) {
  auto everything = BuildTree(EverythingNodes());
  ASSERT_TRUE(everything);
  Ext4Options o;
  o.fs_time = kFsTime;
  o.read_only = true;
  WriteCheckAndCompare(*everything, o);

  std::vector<MemNode> dense;
  for (int i = 0; i < 20; ++i) {
    dense.push_back(File("/bin/f" + std::to_string(i), PseudoRandom(1 << 20, 40 + i)));
  }
  for (int i = 0; i < 5000; ++i) dense.push_back(File("/etc/n" + std::to_string(i), "c"));
  auto tree = BuildTree(std::move(dense));
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  const std::string image = scratch / "ro.img";
  Result<Ext4Report> ro = WriteExt4(*tree, image, o, nullptr);
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  o.read_only = false;
  Result<Ext4Report> rw = WriteExt4(*tree, scratch / "rw.img", o, nullptr);
  ASSERT_TRUE(rw.ok()) << rw.status().ToString();
  std::printf("read-only %llu bytes (%llu free), read-write %llu bytes (%llu free)\n",
              static_cast<unsigned long long>(ro->image_bytes),
              static_cast<unsigned long long>(ro->free_bytes),
              static_cast<unsigned long long>(rw->image_bytes),
              static_cast<unsigned long long>(rw->free_bytes));
  EXPECT_LT(ro->image_bytes, rw->image_bytes);
  EXPECT_LT(ro->free_bytes, ro->image_bytes / 20);
  CommandResult features = RunCommand({"dumpe2fs", "-h", image});
  ASSERT_EQ(features.exit_code, 0) << features.output;
  EXPECT_EQ(features.output.find("has_journal"), std::string::npos) << features.output;
  CommandResult rw_features = RunCommand({"dumpe2fs", "-h", scratch / "rw.img"});
  EXPECT_NE(rw_features.output.find("has_journal"), std::string::npos);
}

// Without an explicit time the filesystem's own times come from the tree, not the clock.
TEST(convert_ext4, DefaultFilesystemTimeIsTheNewestMtime) {
  auto tree = BuildTree({File("/a", "a"), File("/b", "b")});
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  ASSERT_TRUE(WriteExt4(*tree, scratch / "1.img", Ext4Options{}, nullptr).ok());
  sleep(1);
  ASSERT_TRUE(WriteExt4(*tree, scratch / "2.img", Ext4Options{}, nullptr).ok());
  CommandResult cmp = RunCommand({"cmp", scratch / "1.img", scratch / "2.img"});
  EXPECT_EQ(cmp.exit_code, 0) << cmp.output;
  CommandResult d = RunCommand({"debugfs", "-R", "stat /lost+found", scratch / "1.img"});
  EXPECT_NE(d.output.find("mtime: 0x5f5e1000"), std::string::npos) << d.output;  // 1600000000
}

// Flips one byte of a file in place.
void FlipByte(const std::string& path, uint64_t off) {
  Result<Fd> fd = OpenFile(path, O_RDWR);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  char c = 0;
  ASSERT_EQ(pread(fd->get(), &c, 1, static_cast<off_t>(off)), 1);
  c = static_cast<char>(c ^ 0x01);
  ASSERT_EQ(pwrite(fd->get(), &c, 1, static_cast<off_t>(off)), 1);
}

// The hand-written tree against the real veritysetup, beside the image and appended to it; one
// flipped byte must make veritysetup fail and CheckVerity name the block.
TEST(convert_verity, VeritysetupAcceptsTheTreeAndRejectsAFlippedByte) {
  ScratchDir scratch;
  const std::string image = scratch / "v.img";
  Result<Ext4Report> img = WriteEverything(image);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  const std::string salt = VeritySalt("sha256:test");
  Result<VerityReport> v =
      WriteVerity(image, img->image_bytes, scratch / "v.img.verity", 0, salt, nullptr);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->root_hash.size(), 64u);
  EXPECT_EQ(v->salt.size(), 64u);
  CommandResult ok = RunCommand({"veritysetup", "verify", image, scratch / "v.img.verity",
                                 v->root_hash});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  // veritysetup reads the same parameters back from the superblock.
  CommandResult dump = RunCommand({"veritysetup", "dump", scratch / "v.img.verity"});
  EXPECT_NE(dump.output.find(v->salt), std::string::npos) << dump.output;
  EXPECT_NE(dump.output.find("Data blocks:     \t" + std::to_string(v->data_blocks)),
            std::string::npos) << dump.output;
  // The same image and salt give the same tree.
  Result<VerityReport> again =
      WriteVerity(image, img->image_bytes, scratch / "again.verity", 0, salt, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(RunCommand({"cmp", scratch / "v.img.verity", scratch / "again.verity"}).exit_code, 0);

  Result<VerityCheck> clean = CheckVerity(image, scratch / "v.img.verity", 0, nullptr);
  ASSERT_TRUE(clean.ok()) << clean.status().ToString();
  EXPECT_EQ(clean->root_hash, v->root_hash);
  EXPECT_TRUE(clean->bad_ranges.empty());

  // Appended: the tree after the data, found through --hash-offset.
  const std::string appended = scratch / "a.img";
  ASSERT_EQ(RunCommand({"cp", "--sparse=always", image, appended}).exit_code, 0);
  Result<VerityReport> a =
      WriteVerity(appended, img->image_bytes, appended, img->image_bytes, salt, nullptr);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->root_hash, v->root_hash);
  CommandResult a_ok =
      RunCommand({"veritysetup", "verify", "--hash-offset=" + std::to_string(img->image_bytes),
                  appended, appended, a->root_hash});
  EXPECT_EQ(a_ok.exit_code, 0) << a_ok.output;

  const uint64_t flip_at = uint64_t{3000} * 4096 + 17;  // inside data block 3000
  FlipByte(image, flip_at);
  CommandResult bad = RunCommand({"veritysetup", "verify", image, scratch / "v.img.verity",
                                  v->root_hash});
  EXPECT_NE(bad.exit_code, 0) << bad.output;
  Result<VerityCheck> flipped = CheckVerity(image, scratch / "v.img.verity", 0, nullptr);
  ASSERT_TRUE(flipped.ok()) << flipped.status().ToString();
  EXPECT_NE(flipped->root_hash, v->root_hash);
  ASSERT_EQ(flipped->bad_ranges.size(), 1u);
  EXPECT_EQ(flipped->bad_ranges[0], std::make_pair(uint64_t{3000}, uint64_t{3001}));

  FlipByte(appended, 4096 * 3);
  CommandResult a_bad =
      RunCommand({"veritysetup", "verify", "--hash-offset=" + std::to_string(img->image_bytes),
                  appended, appended, a->root_hash});
  EXPECT_NE(a_bad.exit_code, 0) << a_bad.output;
}

// CompareExt4 reads the image without mounting it: clean against its own tree, and after one
// byte of a file's data block is flipped it names that file; against a changed tree it names
// each change.
TEST(convert_compare, NamesEveryDifferenceBetweenImageAndTree) {
  auto tree = BuildTree(EverythingNodes());
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  const std::string image = scratch / "c.img";
  ASSERT_TRUE(WriteEverything(image).ok());
  Result<std::vector<std::string>> same = CompareExt4(*tree, image, 100);
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_EQ(Join(*same), "");

  std::vector<MemNode> changed_nodes = EverythingNodes();
  for (MemNode& n : changed_nodes) {
    if (n.path == "/a/b/c.txt") n.data = "hello, ext5\n";
    if (n.path == "/modes/suid") n.mode = S_IFREG | 0755;
    if (n.path == "/owners/f100000") n.uid = 100001;
    if (n.path == "/xattrs/file") n.xattrs["user.comment"] = "bye";
    if (n.path == "/links/long") n.data = "elsewhere";
  }
  changed_nodes.push_back(File("/new-file", "new"));
  auto changed = BuildTree(std::move(changed_nodes));
  ASSERT_TRUE(changed);
  Result<std::vector<std::string>> diffs = CompareExt4(*changed, image, 100);
  ASSERT_TRUE(diffs.ok()) << diffs.status().ToString();
  const std::string all = Join(*diffs);
  for (const char* want : {"/a/b/c.txt: content", "/modes/suid: mode 0104755 in the image",
                           "/owners/f100000: uid 100000 in the image, 100001 in the index",
                           "/xattrs/file: xattr user.comment has a different value",
                           "/links/long: symlink target", "/new-file: missing from the image"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << " not in: " << all;
  }
  EXPECT_EQ(diffs->size(), 7u) << all;  // the symlink differs in size and target

  // A flipped byte in /data/six_mib's first data block.
  CommandResult blocks = RunCommand({"debugfs", "-R", "blocks /data/six_mib", image});
  ASSERT_EQ(blocks.exit_code, 0) << blocks.output;
  const size_t nl = blocks.output.find('\n');
  ASSERT_NE(nl, std::string::npos);
  const uint64_t first_block = std::stoull(blocks.output.substr(nl + 1));
  FlipByte(image, first_block * 4096 + 100);
  Result<std::vector<std::string>> flipped = CompareExt4(*tree, image, 100);
  ASSERT_TRUE(flipped.ok()) << flipped.status().ToString();
  ASSERT_EQ(flipped->size(), 1u) << Join(*flipped);
  EXPECT_TRUE((*flipped)[0].starts_with("/data/six_mib: content sha256:")) << (*flipped)[0];
}

// The image read back as a Tree (no mount) lists exactly what the tree it was written from
// lists, content read through Tree::Read; the differ finds nothing between them.
TEST(convert_ext4_tree, ReadsTheImageBackAsTheTreeItWasWrittenFrom) {
  auto tree = BuildTree(EverythingNodes());
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  const std::string image = scratch / "t.img";
  ASSERT_TRUE(WriteEverything(image).ok());
  Result<std::unique_ptr<index::Tree>> ext4 = OpenExt4Tree(image);
  ASSERT_TRUE(ext4.ok()) << ext4.status().ToString();
  Result<Listing> got = ListTree(**ext4);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  Result<Listing> want = ListTree(*tree);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  ASSERT_TRUE(got->count("/lost+found"));
  got->erase("/lost+found");
  (*got)["/"].nlink -= 1;
  EXPECT_EQ(DiffListings(*want, *got), "");

  index::TreeDiffOptions o;
  o.compare_directory_nlink = false;
  o.ignore_added = {"/lost+found"};
  Result<index::TreeDiff> diff = index::DiffTrees(*tree, **ext4, o);
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  EXPECT_TRUE(diff->differences.empty()) << diff->differences[0].path;

  // Reads at an offset, and the type errors every Tree gives.
  Result<index::Attr> a = (*ext4)->Lookup(index::kRootIno, "a");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  Result<index::Attr> b = (*ext4)->Lookup(a->ino, "b");
  ASSERT_TRUE(b.ok());
  Result<index::Attr> c = (*ext4)->Lookup(b->ino, "c.txt");
  ASSERT_TRUE(c.ok());
  std::vector<std::byte> buf(4);
  Result<size_t> n = (*ext4)->Read(c->ino, 7, buf);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *n), "ext4");
  EXPECT_EQ((*ext4)->ReadDir(c->ino).status().error_number(), ENOTDIR);
  EXPECT_EQ((*ext4)->Read(a->ino, 0, buf).status().error_number(), EISDIR);
  EXPECT_EQ((*ext4)->ReadLink(c->ino).status().error_number(), EINVAL);
  EXPECT_EQ((*ext4)->Lookup(a->ino, "nothing").status().code(), StatusCode::kNotFound);
}

// The differ: what only one side has, entry by entry with its subtree (or not), what changed,
// by field, in path order, and capped.
TEST(tree_diff, TypedDifferencesInPathOrder) {
  std::vector<MemNode> before = {File("/same", "s"), File("/gone/f", "g"), File("/mod", "1"),
                                 Dir("/dir"), Symlink("/link", "a")};
  std::vector<MemNode> after = {File("/same", "s"), File("/mod", "22", 0600), File("/dir", "now a file"),
                                Symlink("/link", "b"), File("/new/x/y", "n")};
  auto a = BuildTree(before);
  auto b = BuildTree(after);
  ASSERT_TRUE(a && b);
  Result<index::TreeDiff> d = index::DiffTrees(*a, *b);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  std::vector<std::string> got;
  for (const auto& x : d->differences) {
    std::string line = x.path + (x.change == index::TreeChange::kAdded     ? " A"
                                 : x.change == index::TreeChange::kRemoved ? " D"
                                                                           : " M");
    for (index::TreeField f : x.fields) line += " " + std::to_string(static_cast<int>(f));
    got.push_back(line);
  }
  using F = index::TreeField;
  auto m = [](std::string path, std::vector<F> fields) {
    std::string line = path + " M";
    for (F f : fields) line += " " + std::to_string(static_cast<int>(f));
    return line;
  };
  const std::vector<std::string> want = {
      m("/", {F::kNlink}),  // /gone and /new swap, /dir is no longer a directory
      m("/dir", {F::kType, F::kMode, F::kSize, F::kDigest, F::kNlink, F::kMtime}),
      "/gone D", "/gone/f D",
      m("/link", {F::kTarget}),
      m("/mod", {F::kMode, F::kSize, F::kDigest}),
      "/new A", "/new/x A", "/new/x/y A"};
  EXPECT_EQ(got, want);

  index::TreeDiffOptions o;
  o.list_subtrees = false;
  o.max_differences = 4;
  d = index::DiffTrees(*a, *b, o);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->differences.size(), 4u);
  EXPECT_TRUE(d->truncated);
  EXPECT_EQ(d->differences[2].path, "/gone");
  EXPECT_EQ(d->differences[3].path, "/link");
}

// ----- Read-ahead: content read and hashed by reader threads, written by one writer --------------

// Many small files in several directories, empty files, hardlinks (one inode written at its first
// name), a sparse file, and a file bigger than the window the read-ahead tests use.
std::vector<MemNode> ReadAheadNodes() {
  std::vector<MemNode> v;
  for (int i = 0; i < 600; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "/many/d%02d/f%03d", i % 7, i);
    v.push_back(File(name, i % 50 == 0 ? "" : PseudoRandom(static_cast<size_t>(i * 37 % 9000), i)));
  }
  for (int i = 0; i < 5; ++i) {
    MemNode link = File("/more-links/l" + std::to_string(i), "");
    link.hardlink_to = "/many/d0" + std::to_string(i) + "/f00" + std::to_string(i);
    v.push_back(link);
  }
  // Holes at the start, in the middle (across a 4 MiB piece boundary) and at the end.
  v.push_back(File("/sparse", std::string(3 << 20, '\0') + PseudoRandom(5000, 91) +
                                  std::string(2 << 20, '\0') + PseudoRandom(4096, 92) +
                                  std::string(1 << 20, '\0')));
  v.push_back(File("/big", PseudoRandom((20 << 20) + 123, 93)));
  v.push_back(File("/zz/after-big", "the last file"));
  return v;
}

constexpr uint64_t kSmallWindow = 8 << 20;

// The same image for any number of readers and any window: only reading moved off the writer.
TEST(convert_readahead, ImageIsByteIdenticalForAnyReaderCount) {
  auto tree = BuildTree(ReadAheadNodes());
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  Ext4Options o;
  o.fs_time = kFsTime;
  o.read_threads = 1;
  Result<Ext4Report> one = WriteExt4(*tree, scratch / "1.img", o, nullptr);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(Fsck(scratch / "1.img"), "");
  Result<std::vector<std::string>> diffs = CompareExt4(*tree, scratch / "1.img", 100);
  ASSERT_TRUE(diffs.ok()) << diffs.status().ToString();
  EXPECT_EQ(Join(*diffs), "");

  struct Case {
    unsigned threads;
    uint64_t window;
  };
  for (Case c : {Case{4, kSmallWindow}, Case{8, 4096}, Case{2, uint64_t{1} << 30}, Case{0, 0}}) {
    SCOPED_TRACE("read_threads " + std::to_string(c.threads) + ", window " +
                 std::to_string(c.window));
    o.read_threads = c.threads;
    o.read_window_bytes = c.window == 0 ? Ext4Options{}.read_window_bytes : c.window;
    Result<Ext4Report> r = WriteExt4(*tree, scratch / "n.img", o, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->data_bytes, one->data_bytes);
    CommandResult cmp = RunCommand({"cmp", scratch / "1.img", scratch / "n.img"});
    EXPECT_EQ(cmp.exit_code, 0) << cmp.output;
  }
}

// Counts the Read calls in flight at once (each lasts a few ms, so readers that run side by side
// are seen side by side) and the bytes read, per inode and in all.
class ReadProbeTree : public testing::ForwardingTree {
 public:
  explicit ReadProbeTree(const index::Tree& base) : ForwardingTree(base) {}
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    const int now = ++in_flight_;
    int seen = max_in_flight_.load();
    while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    Result<size_t> n = base_.Read(ino, offset, out);
    --in_flight_;
    if (n.ok()) bytes_read_ += *n;
    return n;
  }
  int max_in_flight() const { return max_in_flight_.load(); }
  uint64_t bytes_read() const { return bytes_read_.load(); }

 private:
  mutable std::atomic<int> in_flight_{0};
  mutable std::atomic<int> max_in_flight_{0};
  mutable std::atomic<uint64_t> bytes_read_{0};
};

TEST(convert_readahead, ReadersOverlapTheirReads) {
  std::vector<MemNode> nodes;
  for (int i = 0; i < 200; ++i) nodes.push_back(File("/f" + std::to_string(1000 + i), "x" + std::to_string(i)));
  auto tree = BuildTree(std::move(nodes));
  ASSERT_TRUE(tree);
  ScratchDir scratch;
  Ext4Options o;
  o.fs_time = kFsTime;

  o.read_threads = 1;
  ReadProbeTree serial(*tree);
  ASSERT_TRUE(WriteExt4(serial, scratch / "1.img", o, nullptr).ok());
  EXPECT_EQ(serial.max_in_flight(), 1) << "one thread reads one file at a time";

  o.read_threads = 4;
  ReadProbeTree parallel(*tree);
  Result<Ext4Report> r = WriteExt4(parallel, scratch / "4.img", o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(parallel.max_in_flight(), 1) << "reads did not overlap";
  EXPECT_LE(parallel.max_in_flight(), 4);
  CommandResult cmp = RunCommand({"cmp", scratch / "1.img", scratch / "4.img"});
  EXPECT_EQ(cmp.exit_code, 0) << cmp.output;
}

// Fails, shortens or corrupts the reads of chosen inodes; reads of `slow_ino` take 20 ms, so a
// later file's failure can happen first in time.
class FaultyReadTree : public testing::ForwardingTree {
 public:
  enum class Fault { kError, kShort, kCorrupt };
  explicit FaultyReadTree(const index::Tree& base) : ForwardingTree(base) {}
  void Set(uint64_t ino, Fault fault) { faults_[ino] = fault; }
  void SetSlow(uint64_t ino) { slow_ino_ = ino; }
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    if (ino == slow_ino_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto it = faults_.find(ino);
    if (it == faults_.end()) return base_.Read(ino, offset, out);
    switch (it->second) {
      case Fault::kError:
        return UnavailableError("while fetching blob sha256:abcd for inode " +
                                std::to_string(ino) + ": connection reset");
      case Fault::kShort:
        if (offset >= 1000) return size_t{0};
        return base_.Read(ino, offset, out.first(std::min<size_t>(out.size(), 1000 - offset)));
      case Fault::kCorrupt: {
        Result<size_t> n = base_.Read(ino, offset, out);
        if (n.ok() && *n > 0) out[0] ^= std::byte{0x55};
        return n;
      }
    }
    return InternalError("unreachable");
  }

 private:
  std::map<uint64_t, Fault> faults_;  // set before the writer starts, then only read
  uint64_t slow_ino_ = 0;
};

uint64_t InoOf(const index::Tree& tree, const std::string& path) {
  uint64_t ino = index::kRootIno;
  size_t at = 1;
  while (at < path.size()) {
    const size_t slash = std::min(path.find('/', at), path.size());
    Result<index::Attr> a = tree.Lookup(ino, path.substr(at, slash - at));
    EXPECT_TRUE(a.ok()) << path << ": " << a.status().ToString();
    if (!a.ok()) return 0;
    ino = a->ino;
    at = slash + 1;
  }
  return ino;
}

// The error a reader meets is the writer's error, as it would be with no readers, and the first
// failing file in write order is the one named, whichever failed first in time.
TEST(convert_readahead, ReaderErrorsAreTheWritersErrorsInWriteOrder) {
  auto tree = BuildTree(ReadAheadNodes());
  ASSERT_TRUE(tree);
  const uint64_t nth = InoOf(*tree, "/many/d02/f177");
  const uint64_t later = InoOf(*tree, "/many/d05/f012");
  ASSERT_NE(nth, 0u);
  ASSERT_NE(later, 0u);
  struct Case {
    FaultyReadTree::Fault fault;
    StatusCode code;
    std::string message;
  };
  const std::string blob_error =
      "while fetching blob sha256:abcd for inode " + std::to_string(nth) + ": connection reset";
  for (const Case& c : {
           Case{FaultyReadTree::Fault::kError, StatusCode::kUnavailable, blob_error},
           Case{FaultyReadTree::Fault::kShort, StatusCode::kDataLoss,
                "/many/d02/f177: content ends at byte 1000, its size is 6549"},
           Case{FaultyReadTree::Fault::kCorrupt, StatusCode::kDataLoss,
                "/many/d02/f177: content does not match its digest (expected sha256:"},
       }) {
    SCOPED_TRACE(c.message);
    std::string first_message;
    for (unsigned threads : {1u, 4u}) {
      SCOPED_TRACE("read_threads " + std::to_string(threads));
      FaultyReadTree faulty(*tree);
      faulty.Set(nth, c.fault);
      faulty.Set(later, FaultyReadTree::Fault::kCorrupt);
      faulty.SetSlow(nth);
      ScratchDir scratch;
      Ext4Options o;
      o.fs_time = kFsTime;
      o.read_threads = threads;
      o.read_window_bytes = kSmallWindow;
      Result<Ext4Report> r = WriteExt4(faulty, scratch / "bad.img", o, nullptr);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), c.code) << r.status().ToString();
      EXPECT_TRUE(r.status().message().starts_with(c.message)) << r.status().message();
      if (threads == 1) first_message = r.status().message();
      EXPECT_EQ(r.status().message(), first_message);
      EXPECT_TRUE(scratch.Names().empty()) << Join(scratch.Names());
    }
  }
}

// The writer fails on its own (an inode's xattrs do not fit) while readers wait on a full
// window: WriteExt4 returns that error, every reader is joined, and what was read stayed within
// the window (plus one piece and what the writer consumed), not the whole tree.
TEST(convert_readahead, WriterFailureStopsReadersBlockedOnAFullWindow) {
  std::vector<MemNode> nodes;
  for (int i = 0; i < 200; ++i) {
    nodes.push_back(File("/f" + std::to_string(1000 + i), std::string(1 << 20, static_cast<char>('a' + i % 26))));
  }
  nodes[2].xattrs["user.huge"] = std::string(6000, 'h');
  auto tree = BuildTree(std::move(nodes));
  ASSERT_TRUE(tree);
  ReadProbeTree probe(*tree);
  ScratchDir scratch;
  Ext4Options o;
  o.fs_time = kFsTime;
  o.read_threads = 4;
  o.read_window_bytes = 4 << 20;
  Result<Ext4Report> r = WriteExt4(probe, scratch / "x.img", o, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("/f1002: xattrs do not fit"), std::string::npos)
      << r.status().message();
  EXPECT_TRUE(scratch.Names().empty()) << Join(scratch.Names());
  EXPECT_LE(probe.bytes_read(), uint64_t{16} << 20) << "of 200 MiB";

  // An explicit size that is too small fails before any content is read.
  o.size_bytes = 32 << 20;
  ReadProbeTree unread(*tree);
  r = WriteExt4(unread, scratch / "small.img", o, nullptr);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_EQ(unread.bytes_read(), 0u);
  EXPECT_TRUE(scratch.Names().empty()) << Join(scratch.Names());
}

}  // namespace
}  // namespace lazyfs::convert
