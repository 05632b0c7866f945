// An ext4 image read back as an index::Tree, through libext2fs, read-only and without a mount, so
// `lazyfs verify` compares it with the index by the same differ `lazyfs diff` uses.
//
// Tree inode t is ext4 inode t + 1: the root (ext4 inode 2) is kRootIno. ContentDigest hashes the
// file's bytes as the image holds them; directories have size 0 as in every Tree.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "base/digest.h"
#include "base/thread_annotations.h"
#include "convert/convert.h"
#include "convert/ext2fs_handle.h"
#include "convert/ext4_time.h"

namespace lazyfs::convert {
namespace {

using index::Attr;
using index::DirEntry;

uint32_t ModeOfFileType(int ftype) {
  switch (ftype) {
    case EXT2_FT_REG_FILE:
      return S_IFREG;
    case EXT2_FT_DIR:
      return S_IFDIR;
    case EXT2_FT_CHRDEV:
      return S_IFCHR;
    case EXT2_FT_BLKDEV:
      return S_IFBLK;
    case EXT2_FT_FIFO:
      return S_IFIFO;
    case EXT2_FT_SOCK:
      return S_IFSOCK;
    case EXT2_FT_SYMLINK:
      return S_IFLNK;
  }
  return 0;
}

int CollectEntry(ext2_ino_t, int, ext2_dir_entry* d, int, int, char*, void* priv) {
  auto* out = static_cast<std::vector<DirEntry>*>(priv);
  std::string name(d->name, static_cast<size_t>(ext2fs_dirent_name_len(d)));
  if (name != "." && name != "..") {
    out->push_back(
        {std::move(name), uint64_t{d->inode} - 1, ModeOfFileType(ext2fs_dirent_file_type(d))});
  }
  return 0;
}

int CollectXattr(char* name, char* value, size_t len, void* priv) {
  static_cast<std::vector<index::Xattr>*>(priv)->push_back({name, std::string(value, len)});
  return 0;
}

// One libext2fs handle, used under one lock (libext2fs is not thread-safe).
class Ext4Tree : public index::Tree {
 public:
  explicit Ext4Tree(Ext2Fs fs, std::string path) : fs_(std::move(fs)), path_(std::move(path)) {}

  Result<Attr> GetAttr(uint64_t ino) const override {
    MutexLock lock(mu_);
    LAZYFS_ASSIGN_OR_RETURN(ext2_inode_large in, ReadInode(ino));
    return AttrOf(ino, in);
  }
  Result<Attr> Lookup(uint64_t parent, std::string_view name) const override {
    MutexLock lock(mu_);
    LAZYFS_ASSIGN_OR_RETURN(ext2_inode_large dir, ReadInode(parent));
    if (!LINUX_S_ISDIR(dir.i_mode)) return NotADirectoryError(Name(parent));
    ext2_ino_t found = 0;
    errcode_t err = ext2fs_lookup(fs_.get(), Ext(parent), name.data(),
                                  static_cast<int>(name.size()), nullptr, &found);
    if (err == EXT2_ET_FILE_NOT_FOUND) return NotFoundError(std::string(name));
    if (err != 0) return Ext2Error(err, "while looking up a name in " + Name(parent));
    LAZYFS_ASSIGN_OR_RETURN(ext2_inode_large in, ReadInode(found - 1));
    return AttrOf(found - 1, in);
  }
  Result<std::vector<DirEntry>> ReadDir(uint64_t ino) const override {
    MutexLock lock(mu_);
    LAZYFS_ASSIGN_OR_RETURN(ext2_inode_large dir, ReadInode(ino));
    if (!LINUX_S_ISDIR(dir.i_mode)) return NotADirectoryError(Name(ino));
    std::vector<DirEntry> out;
    LAZYFS_EXT2_CHECK(ext2fs_dir_iterate2(fs_.get(), Ext(ino), 0, nullptr, CollectEntry, &out),
                      "while reading directory " + Name(ino));
    std::sort(out.begin(), out.end(),
              [](const DirEntry& x, const DirEntry& y) { return x.name < y.name; });
    return out;
  }
  Result<std::string> ReadLink(uint64_t ino) const override {
    MutexLock lock(mu_);
    LAZYFS_ASSIGN_OR_RETURN(ext2_inode_large in, ReadInode(ino));
    if (!LINUX_S_ISLNK(in.i_mode)) return NotASymlinkError(Name(ino));
    const uint64_t size = EXT2_I_SIZE(&in);
    if (!(in.i_flags & EXT4_EXTENTS_FL) && size < sizeof(in.i_block)) {
      return std::string(reinterpret_cast<const char*>(in.i_block), size);  // a fast symlink
    }
    std::string target;
    LAZYFS_RETURN_IF_ERROR(
        ReadContent(ino, in, [&](const char* p, size_t n) { target.append(p, n); }));
    return target;
  }
  Result<std::vector<index::Xattr>> ListXattrs(uint64_t ino) const override {
    MutexLock lock(mu_);
    LAZYFS_RETURN_IF_ERROR(ReadInode(ino).status());
    std::vector<index::Xattr> out;
    XattrHandle h;
    const std::string what = "while reading the xattrs of " + Name(ino);
    LAZYFS_EXT2_CHECK(ext2fs_xattrs_open(fs_.get(), Ext(ino), h.out()), what);
    LAZYFS_EXT2_CHECK(ext2fs_xattrs_read(h.get()), what);
    LAZYFS_EXT2_CHECK(ext2fs_xattrs_iterate(h.get(), CollectXattr, &out), what);
    LAZYFS_RETURN_IF_ERROR(h.Close().WithContext(what));
    std::sort(out.begin(), out.end(),
              [](const index::Xattr& x, const index::Xattr& y) { return x.name < y.name; });
    return out;
  }
  Result<Digest> ContentDigest(uint64_t ino) const override {
    MutexLock lock(mu_);
    LAZYFS_ASSIGN_OR_RETURN(ext2_inode_large in, ReadInode(ino));
    if (!LINUX_S_ISREG(in.i_mode)) return NotARegularFileError(Name(ino));
    Sha256 hash;
    LAZYFS_RETURN_IF_ERROR(
        ReadContent(ino, in, [&](const char* p, size_t n) { hash.Update(p, n); }));
    return hash.Finish();
  }
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override;
  // The file's mapped blocks (initialised extents): what is not mapped is a hole.
  Result<ContentLayout> Layout(uint64_t ino) const override {
    MutexLock lock(mu_);
    LAZYFS_ASSIGN_OR_RETURN(ext2_inode_large in, ReadInode(ino));
    if (!LINUX_S_ISREG(in.i_mode)) return NotARegularFileError(Name(ino));
    const uint64_t size = EXT2_I_SIZE(&in);
    ContentLayout l;
    if (!(in.i_flags & EXT4_EXTENTS_FL)) {
      if (size > 0) l.data.emplace_back(0, size);
      return l;
    }
    ExtentHandle h;
    const std::string what = "while mapping " + Name(ino);
    LAZYFS_EXT2_CHECK(
        ext2fs_extent_open2(fs_.get(), Ext(ino), reinterpret_cast<ext2_inode*>(&in), h.out()),
        what);
    ext2fs_extent e;
    for (errcode_t err = ext2fs_extent_get(h.get(), EXT2_EXTENT_ROOT, &e); err == 0;
         err = ext2fs_extent_get(h.get(), EXT2_EXTENT_NEXT, &e)) {
      if (!(e.e_flags & EXT2_EXTENT_FLAGS_LEAF) || (e.e_flags & EXT2_EXTENT_FLAGS_UNINIT)) continue;
      const uint64_t start = e.e_lblk * uint64_t{fs_->blocksize};
      const uint64_t end =
          std::min<uint64_t>(size, (e.e_lblk + uint64_t{e.e_len}) * fs_->blocksize);
      if (start >= end) continue;
      if (!l.data.empty() && l.data.back().second == start) {
        l.data.back().second = end;
      } else {
        l.data.emplace_back(start, end);
      }
    }
    return l;
  }
  index::TreeStats Stats() const override {
    MutexLock lock(mu_);
    index::TreeStats s;  // only the inode count: the rest would take a pass over the image
    s.inodes = fs_->super->s_inodes_count - 1;
    return s;
  }

 private:
  static ext2_ino_t Ext(uint64_t ino) { return static_cast<ext2_ino_t>(ino + 1); }
  std::string Name(uint64_t ino) const { return path_ + ": inode " + std::to_string(Ext(ino)); }

  Result<ext2_inode_large> ReadInode(uint64_t ino) const LAZYFS_REQUIRES(mu_) {
    if (ino == 0 || ino >= fs_->super->s_inodes_count) return NotFoundError(Name(ino));
    ext2_inode_large in;
    std::memset(&in, 0, sizeof(in));
    LAZYFS_EXT2_CHECK(
        ext2fs_read_inode_full(fs_.get(), Ext(ino), reinterpret_cast<ext2_inode*>(&in), sizeof(in)),
        "while reading " + Name(ino));
    if (in.i_links_count == 0 && in.i_mode == 0) return NotFoundError(Name(ino));
    return in;
  }

  Attr AttrOf(uint64_t ino, const ext2_inode_large& in) const;

  // Feeds the file's bytes to `sink` in order; DataLoss when they end before its size.
  template <typename Sink>
  Status ReadContent(uint64_t ino, ext2_inode_large& in, Sink sink) const LAZYFS_REQUIRES(mu_) {
    const uint64_t size = EXT2_I_SIZE(&in);
    ext2_file_t file = nullptr;
    const std::string what = "while reading " + Name(ino);
    LAZYFS_EXT2_CHECK(
        ext2fs_file_open2(fs_.get(), Ext(ino), reinterpret_cast<ext2_inode*>(&in), 0, &file), what);
    std::vector<char> buf(1 << 20);
    uint64_t done = 0;
    errcode_t err = 0;
    while (done < size) {
      unsigned int got = 0;
      err = ext2fs_file_read(file, buf.data(), static_cast<unsigned>(buf.size()), &got);
      if (err != 0 || got == 0) break;
      sink(buf.data(), got);
      done += got;
    }
    ext2fs_file_close(file);
    if (err != 0) return Ext2Error(err, what);
    if (done != size) {
      return DataLossError(Name(ino) + ": content ends at byte " + std::to_string(done));
    }
    return Status::Ok();
  }

  mutable Mutex mu_;
  const Ext2Fs fs_ LAZYFS_GUARDED_BY(mu_);
  const std::string path_;
};

Attr Ext4Tree::AttrOf(uint64_t ino, const ext2_inode_large& in) const {
  Attr a;
  a.ino = ino;
  a.mode = in.i_mode;
  a.uid = inode_uid(in);
  a.gid = inode_gid(in);
  a.nlink = in.i_links_count;
  const index::Timestamp mtime = DecodeInodeTime(in.i_mtime, in.i_mtime_extra);
  a.mtime_sec = mtime.sec;
  a.mtime_nsec = mtime.nsec;
  if (LINUX_S_ISREG(in.i_mode) || LINUX_S_ISLNK(in.i_mode)) a.size = EXT2_I_SIZE(&in);
  if (LINUX_S_ISCHR(in.i_mode) || LINUX_S_ISBLK(in.i_mode)) {
    // The old 8:8 encoding in i_block[0], else the new 12:20 one in i_block[1].
    if (in.i_block[0] != 0) {
      const uint32_t old = ext2fs_le32_to_cpu(in.i_block[0]);
      a.rdev_major = (old >> 8) & 0xff;
      a.rdev_minor = old & 0xff;
    } else {
      const uint32_t dev = ext2fs_le32_to_cpu(in.i_block[1]);
      a.rdev_major = (dev & 0xfff00) >> 8;
      a.rdev_minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    }
  }
  return a;
}

Result<size_t> Ext4Tree::Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const {
  MutexLock lock(mu_);
  LAZYFS_ASSIGN_OR_RETURN(ext2_inode_large in, ReadInode(ino));
  if (LINUX_S_ISDIR(in.i_mode)) return IsADirectoryError(Name(ino));
  if (!LINUX_S_ISREG(in.i_mode)) return NotARegularFileError(Name(ino));
  const uint64_t size = EXT2_I_SIZE(&in);
  if (offset >= size) return size_t{0};
  ext2_file_t file = nullptr;
  const std::string what = "while reading " + Name(ino);
  LAZYFS_EXT2_CHECK(
      ext2fs_file_open2(fs_.get(), Ext(ino), reinterpret_cast<ext2_inode*>(&in), 0, &file), what);
  errcode_t err = ext2fs_file_llseek(file, offset, EXT2_SEEK_SET, nullptr);
  size_t done = 0;
  const size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), size - offset));
  while (err == 0 && done < want) {
    unsigned int got = 0;
    const size_t n = std::min<size_t>(want - done, 1 << 30);
    err = ext2fs_file_read(file, out.data() + done, static_cast<unsigned>(n), &got);
    if (got == 0) break;
    done += got;
  }
  ext2fs_file_close(file);
  if (err != 0) return Ext2Error(err, what);
  return done;
}

}  // namespace

Result<std::unique_ptr<index::Tree>> OpenExt4Tree(const std::string& image_path) {
  ext2_filsys raw = nullptr;
  errcode_t err = ext2fs_open(image_path.c_str(), EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &raw);
  if (err != 0) return Ext2Error(err, "while opening " + image_path + " as ext4");
  return std::unique_ptr<index::Tree>(std::make_unique<Ext4Tree>(Ext2Fs(raw), image_path));
}

}  // namespace lazyfs::convert
