// FileSystem against an in-memory tree: every answer the FUSE adapter would send, without FUSE.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "tests/support/memory_tree.h"

namespace lazyfs::fs {
namespace {

using ::testing::ElementsAre;
using testing::MemNode;
using testing::MemoryTree;

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

class FileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<MemNode> nodes;
    auto add = [&](std::string path, uint32_t mode, std::string data = "", uint32_t uid = 0,
                   uint32_t gid = 0) -> MemNode& {
      MemNode n;
      n.path = std::move(path);
      n.mode = mode;
      n.data = std::move(data);
      n.uid = uid;
      n.gid = gid;
      nodes.push_back(std::move(n));
      return nodes.back();
    };
    add("/bin", S_IFDIR | 0755);
    MemNode& su = add("/bin/su", S_IFREG | 04755, "ELF");
    su.mtime_sec = 1700000000;
    su.mtime_nsec = 123;
    add("/home/user/notes.txt", S_IFREG | 0640, "hello, world\n", 1000, 1000).mtime_sec =
        1600000000;
    add("/nobody", S_IFREG | 0600, "", 65534, 65534);
    add("/tmp", S_IFDIR | 01777);
    add("/big", S_IFREG | 0644, Pattern(10000));
    add("/link", S_IFLNK | 0777, "bin/su");
    MemNode& null = add("/dev/null", S_IFCHR | 0666);
    null.rdev_major = 1;
    null.rdev_minor = 3;
    add("/cap", S_IFREG | 0755, "x").xattrs = {
        {"security.capability", std::string("\x01\x00\x00\x02", 4)},
        {"user.comment", "twelve bytes"}};
    auto tree = MemoryTree::Build(nodes);
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    tree_ = std::move(*tree);
    fs_ = std::make_unique<FileSystem>(*tree_);
  }

  uint64_t Ino(const std::string& path) {
    uint64_t ino = index::kRootIno;
    size_t pos = 1;
    while (pos < path.size()) {
      size_t end = path.find('/', pos);
      if (end == std::string::npos) end = path.size();
      auto e = fs_->Lookup(ino, path.substr(pos, end - pos));
      EXPECT_TRUE(e.ok()) << path << ": " << e.status().ToString();
      if (!e.ok()) return 0;
      EXPECT_NE(e->ino, 0u) << path << " missing";
      ino = e->ino;
      pos = end + 1;
    }
    return ino;
  }

  std::unique_ptr<MemoryTree> tree_;
  std::unique_ptr<FileSystem> fs_;
};

TEST_F(FileSystemTest, LookupHitCarriesAttributesAndLongTimeouts) {
  auto e = fs_->Lookup(index::kRootIno, "bin");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_NE(e->ino, 0u);
  EXPECT_EQ(e->attr.st_ino, e->ino);
  EXPECT_TRUE(S_ISDIR(e->attr.st_mode));
  EXPECT_GE(e->entry_timeout, 3600.0);
  EXPECT_GE(e->attr_timeout, 3600.0);
}

TEST_F(FileSystemTest, LookupMissIsANegativeEntryNotAnError) {
  auto e = fs_->Lookup(index::kRootIno, "nonexistent");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->ino, 0u);
  EXPECT_GE(e->entry_timeout, 3600.0);
}

TEST_F(FileSystemTest, LookupErrors) {
  // In a file: ENOTDIR.
  auto e = fs_->Lookup(Ino("/big"), "x");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(ErrnoFromStatus(e.status()), ENOTDIR);
  // In a stale inode: ENOENT, not a negative entry.
  e = fs_->Lookup(9999, "x");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(ErrnoFromStatus(e.status()), ENOENT);
  // A name longer than 255 bytes.
  e = fs_->Lookup(index::kRootIno, std::string(256, 'n'));
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(ErrnoFromStatus(e.status()), ENAMETOOLONG);
}

TEST_F(FileSystemTest, GetAttrReportsTheTreesOwnersModesAndTimes) {
  auto su = fs_->GetAttr(Ino("/bin/su"));
  ASSERT_TRUE(su.ok());
  EXPECT_EQ(su->attr.st_mode, static_cast<mode_t>(S_IFREG | 04755));
  EXPECT_EQ(su->attr.st_uid, 0u);
  EXPECT_EQ(su->attr.st_size, 3);
  EXPECT_EQ(su->attr.st_nlink, 1u);
  EXPECT_EQ(su->attr.st_blocks, 1);
  EXPECT_EQ(su->attr.st_blksize, 4096);
  EXPECT_EQ(su->attr.st_mtim.tv_sec, 1700000000);
  EXPECT_EQ(su->attr.st_mtim.tv_nsec, 123);
  EXPECT_EQ(su->attr.st_atim.tv_sec, 1700000000);
  EXPECT_EQ(su->attr.st_ctim.tv_sec, 1700000000);
  EXPECT_EQ(su->attr.st_ctim.tv_nsec, 123);

  auto notes = fs_->GetAttr(Ino("/home/user/notes.txt"));
  ASSERT_TRUE(notes.ok());
  EXPECT_EQ(notes->attr.st_uid, 1000u);
  EXPECT_EQ(notes->attr.st_gid, 1000u);
  EXPECT_EQ(notes->attr.st_mode & 07777, 0640u);

  auto nobody = fs_->GetAttr(Ino("/nobody"));
  ASSERT_TRUE(nobody.ok());
  EXPECT_EQ(nobody->attr.st_uid, 65534u);
  EXPECT_EQ(nobody->attr.st_gid, 65534u);
  EXPECT_EQ(nobody->attr.st_blocks, 0);

  auto tmp = fs_->GetAttr(Ino("/tmp"));
  ASSERT_TRUE(tmp.ok());
  EXPECT_EQ(tmp->attr.st_mode, static_cast<mode_t>(S_IFDIR | 01777));
  EXPECT_EQ(tmp->attr.st_nlink, 2u);

  auto big = fs_->GetAttr(Ino("/big"));
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->attr.st_blocks, (10000 + 511) / 512);

  auto null = fs_->GetAttr(Ino("/dev/null"));
  ASSERT_TRUE(null.ok());
  EXPECT_TRUE(S_ISCHR(null->attr.st_mode));
  EXPECT_EQ(major(null->attr.st_rdev), 1u);
  EXPECT_EQ(minor(null->attr.st_rdev), 3u);

  auto root = fs_->GetAttr(index::kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->attr.st_ino, index::kRootIno);
  // ".", "..", and one link from each subdirectory: bin, dev, home, tmp.
  EXPECT_EQ(root->attr.st_nlink, 6u);

  auto missing = fs_->GetAttr(9999);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ErrnoFromStatus(missing.status()), ENOENT);
}

std::vector<std::string> Names(const std::vector<DirItem>& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i.name);
  return out;
}

TEST(StatFromAttrTest, ExtremeMtimesAreClampedToTheRangeEveryOutputShows) {
  struct Case {
    int64_t sec;
    uint32_t nsec;
    int64_t want_sec;
    long want_nsec;
  };
  const Case cases[] = {
      {INT64_MAX, UINT32_MAX, 15'032'385'535, 999'999'999},  // 2446-05-10T22:38:55Z
      {INT64_MIN, 0, -2'147'483'648, 0},                     // 1901-12-13T20:45:52Z
      {-1, 5, -1, 5},
      {0, 0, 0, 0},
  };
  for (const Case& c : cases) {
    index::Attr a;
    a.mode = S_IFREG | 0644;
    a.mtime_sec = c.sec;
    a.mtime_nsec = c.nsec;
    const struct stat st = StatFromAttr(a);
    EXPECT_EQ(st.st_mtim.tv_sec, c.want_sec) << c.sec;
    EXPECT_EQ(st.st_mtim.tv_nsec, c.want_nsec) << c.sec;
    EXPECT_EQ(st.st_ctim.tv_sec, c.want_sec) << c.sec;
  }
}

TEST_F(FileSystemTest, ReadDirListsDotsThenSortedChildrenWithStableOffsets) {
  auto all = fs_->ReadDir(index::kRootIno, 0);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_THAT(Names(*all), ElementsAre(".", "..", "big", "bin", "cap", "dev", "home", "link",
                                       "nobody", "tmp"));
  for (size_t i = 0; i < all->size(); ++i) EXPECT_EQ((*all)[i].offset, i);
  EXPECT_EQ((*all)[0].ino, index::kRootIno);
  EXPECT_EQ((*all)[1].ino, index::kRootIno);  // the root's ".." is itself
  EXPECT_TRUE(S_ISLNK((*all)[7].mode));
  EXPECT_EQ((*all)[7].ino, Ino("/link"));

  // Resuming from any offset gives exactly the rest, as the kernel's paging expects.
  for (uint64_t off = 0; off <= all->size() + 1; ++off) {
    auto rest = fs_->ReadDir(index::kRootIno, off);
    ASSERT_TRUE(rest.ok());
    std::vector<DirItem> expected(all->begin() + std::min<size_t>(off, all->size()), all->end());
    EXPECT_EQ(Names(*rest), Names(expected)) << "offset " << off;
  }
  auto middle = fs_->ReadDir(index::kRootIno, 5);
  ASSERT_TRUE(middle.ok());
  ASSERT_FALSE(middle->empty());
  EXPECT_EQ(middle->front().name, "dev");
  EXPECT_EQ(middle->front().offset, 5u);
}

TEST_F(FileSystemTest, DotDotOfASubdirectoryIsItsParent) {
  const uint64_t home = Ino("/home");
  const uint64_t user = Ino("/home/user");
  auto items = fs_->ReadDir(user, 0);
  ASSERT_TRUE(items.ok());
  ASSERT_GE(items->size(), 2u);
  EXPECT_EQ((*items)[0].ino, user);
  EXPECT_EQ((*items)[1].ino, home);
  EXPECT_THAT(Names(*items), ElementsAre(".", "..", "notes.txt"));
}

TEST_F(FileSystemTest, ReadDirOfAFileIsENOTDIR) {
  auto r = fs_->ReadDir(Ino("/big"), 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrnoFromStatus(r.status()), ENOTDIR);
}

TEST_F(FileSystemTest, ReadAtOffsets) {
  const std::string content = Pattern(10000);
  const uint64_t big = Ino("/big");
  struct Case {
    uint64_t offset;
    size_t size;
    size_t expect;
  };
  for (const Case& c : std::vector<Case>{{0, 100, 100},
                                         {0, 10000, 10000},
                                         {0, 1 << 20, 10000},
                                         {4096, 4096, 4096},
                                         {9990, 100, 10},
                                         {9999, 1, 1},
                                         {10000, 10, 0},
                                         {123456789, 10, 0},
                                         {5, 0, 0}}) {
    auto r = fs_->Read(big, c.offset, c.size);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->size(), c.expect) << "offset " << c.offset << " size " << c.size;
    if (c.expect > 0) {
      EXPECT_EQ(*r, content.substr(c.offset, c.expect));
    }
  }
  auto empty = fs_->Read(Ino("/nobody"), 0, 4096);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());

  auto dir = fs_->Read(Ino("/bin"), 0, 10);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(ErrnoFromStatus(dir.status()), EISDIR);
}

TEST_F(FileSystemTest, OpenRefusesWriteFlagsWithEROFS) {
  const uint64_t f = Ino("/big");
  EXPECT_TRUE(fs_->Open(f, O_RDONLY).ok());
  EXPECT_TRUE(fs_->Open(f, O_RDONLY | O_NOFOLLOW | O_CLOEXEC).ok());
  for (int flags : {O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC, O_RDONLY | O_APPEND, O_WRONLY | O_CREAT,
                    O_RDWR | O_APPEND}) {
    Status s = fs_->Open(f, flags);
    EXPECT_EQ(ErrnoFromStatus(s), EROFS) << "flags " << flags << ": " << s.ToString();
  }
  EXPECT_EQ(ErrnoFromStatus(fs_->Open(Ino("/bin"), O_RDONLY)), EISDIR);
  EXPECT_EQ(ErrnoFromStatus(fs_->Open(9999, O_RDONLY)), ENOENT);
}

TEST_F(FileSystemTest, AccessAllowsReadAndExecuteRefusesWrite) {
  EXPECT_TRUE(fs_->Access(Ino("/bin/su"), R_OK | X_OK).ok());
  EXPECT_TRUE(fs_->Access(Ino("/bin/su"), F_OK).ok());
  EXPECT_EQ(ErrnoFromStatus(fs_->Access(Ino("/bin/su"), W_OK)), EROFS);
  EXPECT_EQ(ErrnoFromStatus(fs_->Access(9999, R_OK)), ENOENT);
}

TEST_F(FileSystemTest, ReadLink) {
  auto t = fs_->ReadLink(Ino("/link"));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "bin/su");
  auto notlink = fs_->ReadLink(Ino("/big"));
  ASSERT_FALSE(notlink.ok());
  EXPECT_EQ(ErrnoFromStatus(notlink.status()), EINVAL);
}

TEST_F(FileSystemTest, GetXattrSizeQueryFitAndErrors) {
  const uint64_t cap = Ino("/cap");
  auto q = fs_->GetXattr(cap, "user.comment", 0);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->size, 12u);
  EXPECT_TRUE(q->data.empty());

  auto v = fs_->GetXattr(cap, "user.comment", 12);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->data, "twelve bytes");
  v = fs_->GetXattr(cap, "security.capability", 100);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->data, std::string("\x01\x00\x00\x02", 4));

  auto small = fs_->GetXattr(cap, "user.comment", 11);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(ErrnoFromStatus(small.status()), ERANGE);

  auto missing = fs_->GetXattr(cap, "user.missing", 100);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ErrnoFromStatus(missing.status()), ENODATA);
  missing = fs_->GetXattr(Ino("/big"), "user.comment", 0);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ErrnoFromStatus(missing.status()), ENODATA);
}

TEST_F(FileSystemTest, ListXattrSizeQueryFitAndErrors) {
  const uint64_t cap = Ino("/cap");
  const std::string names("security.capability\0user.comment\0", 33);
  auto q = fs_->ListXattr(cap, 0);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->size, names.size());
  auto v = fs_->ListXattr(cap, names.size());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->data, names);
  auto small = fs_->ListXattr(cap, names.size() - 1);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(ErrnoFromStatus(small.status()), ERANGE);
  auto none = fs_->ListXattr(Ino("/big"), 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->size, 0u);
}

TEST_F(FileSystemTest, StatFs) {
  struct statvfs st = fs_->StatFs();
  const index::TreeStats stats = tree_->Stats();
  EXPECT_EQ(st.f_bsize, 4096u);
  EXPECT_EQ(st.f_blocks, (stats.content_bytes + 4095) / 4096);
  EXPECT_GT(st.f_blocks, 0u);
  EXPECT_EQ(st.f_bfree, 0u);
  EXPECT_EQ(st.f_bavail, 0u);
  EXPECT_EQ(st.f_files, stats.inodes);
  EXPECT_EQ(st.f_ffree, 0u);
  EXPECT_EQ(st.f_namemax, 255u);
  EXPECT_TRUE(st.f_flag & ST_RDONLY);
}

TEST(ErrnoFromStatusTest, MapsEveryCode) {
  struct Case {
    Status status;
    int expected;
  };
  const std::vector<Case> cases = {
      {Status::Ok(), 0},
      {NotFoundError("x"), ENOENT},
      {InvalidArgumentError("x"), EINVAL},
      {UnavailableError("x"), EIO},
      {DataLossError("x"), EIO},
      {InternalError("x"), EIO},
      {PermissionDeniedError("x"), EACCES},
      {Status(StatusCode::kAlreadyExists, "x"), EEXIST},
      {ResourceExhaustedError("x"), ENOSPC},
      // A precondition that is not a type check is an invalid request, never "not a directory".
      {FailedPreconditionError("x"), EINVAL},
      // The type checks, each with its own errno.
      {NotADirectoryError("x"), ENOTDIR},
      {IsADirectoryError("x"), EISDIR},
      {NotASymlinkError("x"), EINVAL},
      {NotARegularFileError("x"), EINVAL},
      {UnimplementedError("x"), EOPNOTSUPP},
      // An exact errno wins over the code.
      {Status(StatusCode::kFailedPrecondition, "x", EISDIR), EISDIR},
      {Status(StatusCode::kNotFound, "x", ENODATA), ENODATA},
      {Status(StatusCode::kInvalidArgument, "x", ERANGE), ERANGE},
      {Status(StatusCode::kUnavailable, "x", ETIMEDOUT), ETIMEDOUT},
      {ErrnoError(ENAMETOOLONG, "x"), ENAMETOOLONG},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ErrnoFromStatus(c.status), c.expected)
        << StatusCodeName(c.status.code()) << " / " << c.status.error_number();
  }
}

}  // namespace
}  // namespace lazyfs::fs
