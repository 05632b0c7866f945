#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

namespace lazyfs::fs {
namespace {

Status ReadOnlyError(std::string_view what) {
  return Status(StatusCode::kFailedPrecondition, std::string(what) + ": read-only filesystem",
                EROFS);
}

std::string InoName(uint64_t ino) { return "inode " + std::to_string(ino); }

// Shared by getxattr and listxattr: a size query, a fit, or ERANGE.
Result<XattrReply> SizedReply(std::string data, size_t size, std::string_view what) {
  XattrReply r;
  r.size = data.size();
  if (size == 0) return r;
  if (data.size() > size) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(what) + ": " + std::to_string(data.size()) +
                      " bytes do not fit a buffer of " + std::to_string(size),
                  ERANGE);
  }
  r.data = std::move(data);
  return r;
}

}  // namespace

int ErrnoFromStatus(const Status& status) {
  if (status.ok()) return 0;
  if (status.error_number() > 0) return status.error_number();
  switch (status.code()) {
    case StatusCode::kOk: return 0;
    case StatusCode::kNotFound: return ENOENT;
    case StatusCode::kInvalidArgument: return EINVAL;
    case StatusCode::kUnavailable:
    case StatusCode::kDataLoss:
    case StatusCode::kInternal: return EIO;
    case StatusCode::kPermissionDenied: return EACCES;
    case StatusCode::kAlreadyExists: return EEXIST;
    case StatusCode::kResourceExhausted: return ENOSPC;
    // The type checks carry their own errno (base/status.h); anything else that does not apply
    // to the object is an invalid request, not a missing directory.
    case StatusCode::kFailedPrecondition: return EINVAL;
    case StatusCode::kUnimplemented: return EOPNOTSUPP;
  }
  return EIO;
}

struct stat StatFromAttr(const index::Attr& a) {
  struct stat st = {};
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_rdev = makedev(a.rdev_major, a.rdev_minor);
  st.st_size = static_cast<off_t>(a.size);
  st.st_blksize = kBlockSize;
  st.st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  // Clamped: the image may record any int64, and time_t or the kernel may hold less.
  const index::Timestamp mtime = a.mtime();
  st.st_mtim.tv_sec = static_cast<time_t>(mtime.sec);
  st.st_mtim.tv_nsec = mtime.nsec;
  st.st_atim = st.st_mtim;
  st.st_ctim = st.st_mtim;
  return st;
}

std::span<const DirItem> DirListing::From(uint64_t offset) const {
  if (offset >= items_.size()) return {};
  return std::span<const DirItem>(items_).subspan(static_cast<size_t>(offset));
}

FileSystem::FileSystem(const index::Tree& tree) : tree_(tree) {}

void FileSystem::NoteParent(uint64_t dir, uint64_t parent) const {
  {
    std::shared_lock lock(mu_);
    auto it = parents_.find(dir);
    if (it != parents_.end() && it->second == parent) return;
  }
  std::unique_lock lock(mu_);
  parents_[dir] = parent;
}

uint64_t FileSystem::ParentOf(uint64_t dir) const {
  if (dir == index::kRootIno) return index::kRootIno;
  std::shared_lock lock(mu_);
  auto it = parents_.find(dir);
  return it == parents_.end() ? dir : it->second;
}

Result<Entry> FileSystem::Lookup(uint64_t parent, std::string_view name) const {
  if (name.size() > kNameMax) {
    return Status(StatusCode::kInvalidArgument,
                  "lookup of a " + std::to_string(name.size()) + "-byte name", ENAMETOOLONG);
  }
  Result<index::Attr> attr = tree_.Lookup(parent, name);
  if (!attr.ok()) {
    if (attr.status().code() != StatusCode::kNotFound) return attr.status();
    // NotFound may mean the parent is gone (a stale inode) rather than the name: only a miss
    // in an existing directory is a cacheable negative entry. (A parent that is not a
    // directory was refused by the tree's own type check.)
    LAZYFS_RETURN_IF_ERROR(tree_.GetAttr(parent));
    Entry negative;
    negative.ino = 0;
    return negative;
  }
  if (attr->is_dir()) NoteParent(attr->ino, parent);
  Entry e;
  e.ino = attr->ino;
  e.attr = StatFromAttr(*attr);
  return e;
}

Result<Entry> FileSystem::EntryOf(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(index::Attr attr, tree_.GetAttr(ino));
  Entry e;
  e.ino = attr.ino;
  e.attr = StatFromAttr(attr);
  return e;
}

Result<AttrReply> FileSystem::GetAttr(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(index::Attr attr, tree_.GetAttr(ino));
  AttrReply r;
  r.attr = StatFromAttr(attr);
  return r;
}

Status FileSystem::Open(uint64_t ino, int flags) const {
  LAZYFS_ASSIGN_OR_RETURN(index::Attr attr, tree_.GetAttr(ino));
  // Write intent is refused before the type check, as on a read-only mount.
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_APPEND)) != 0) {
    return ReadOnlyError("open of " + InoName(ino) + " for writing");
  }
  if (attr.is_dir()) return IsADirectoryError(InoName(ino));
  return Status::Ok();
}

Result<size_t> FileSystem::ReadInto(uint64_t ino, uint64_t offset,
                                    std::span<std::byte> out) const {
  LAZYFS_ASSIGN_OR_RETURN(index::Attr attr, tree_.GetAttr(ino));
  const size_t want =
      offset < attr.size ? static_cast<size_t>(std::min<uint64_t>(out.size(), attr.size - offset))
                         : 0;
  size_t done = 0;
  // Tree::Read returns fewer bytes only at end of file, but a short read must not become a hole
  // of stale buffer bytes, so loop until the size the attributes promise. The first call is
  // made even for an empty read: it is where the tree refuses what is not a regular file.
  do {
    Result<size_t> n = tree_.Read(ino, offset + done, out.subspan(done, want - done));
    if (!n.ok()) {
      return n.status().WithContext("while reading " + InoName(ino) + " at offset " +
                                    std::to_string(offset + done));
    }
    if (*n == 0) break;
    done += *n;
  } while (done < want);
  return done;
}

Result<std::string> FileSystem::Read(uint64_t ino, uint64_t offset, size_t size) const {
  LAZYFS_ASSIGN_OR_RETURN(index::Attr attr, tree_.GetAttr(ino));
  // Size the buffer by what the file can give, not by what the caller asks for.
  const uint64_t left = offset < attr.size ? attr.size - offset : 0;
  std::string out(static_cast<size_t>(std::min<uint64_t>(size, left)), '\0');
  LAZYFS_ASSIGN_OR_RETURN(size_t n, ReadInto(ino, offset, std::as_writable_bytes(std::span(out))));
  out.resize(n);
  return out;
}

Result<std::shared_ptr<const DirListing>> FileSystem::OpenDir(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(std::vector<index::DirEntry> children, tree_.ReadDir(ino));
  std::vector<DirItem> items;
  items.reserve(children.size() + 2);
  items.push_back({".", ino, S_IFDIR, 0});
  items.push_back({"..", ParentOf(ino), S_IFDIR, 1});
  for (auto& c : children) {
    if (S_ISDIR(c.mode)) NoteParent(c.ino, ino);
    const uint64_t off = items.size();
    items.push_back({std::move(c.name), c.ino, c.mode, off});
  }
  return std::make_shared<const DirListing>(std::move(items));
}

Result<std::vector<DirItem>> FileSystem::ReadDir(uint64_t ino, uint64_t offset) const {
  LAZYFS_ASSIGN_OR_RETURN(std::shared_ptr<const DirListing> listing, OpenDir(ino));
  std::span<const DirItem> rest = listing->From(offset);
  return std::vector<DirItem>(rest.begin(), rest.end());
}

Result<std::string> FileSystem::ReadLink(uint64_t ino) const { return tree_.ReadLink(ino); }

Result<XattrReply> FileSystem::GetXattr(uint64_t ino, std::string_view name, size_t size) const {
  LAZYFS_ASSIGN_OR_RETURN(std::vector<index::Xattr> xattrs, tree_.ListXattrs(ino));
  for (auto& x : xattrs) {
    if (x.name == name) {
      return SizedReply(std::move(x.value), size,
                        "xattr " + std::string(name) + " of " + InoName(ino));
    }
  }
  return Status(StatusCode::kNotFound, InoName(ino) + ": no xattr " + std::string(name), ENODATA);
}

Result<XattrReply> FileSystem::ListXattr(uint64_t ino, size_t size) const {
  LAZYFS_ASSIGN_OR_RETURN(std::vector<index::Xattr> xattrs, tree_.ListXattrs(ino));
  std::string names;
  for (const auto& x : xattrs) {
    names += x.name;
    names += '\0';
  }
  return SizedReply(std::move(names), size, "xattr names of " + InoName(ino));
}

Status FileSystem::Access(uint64_t ino, int mask) const {
  LAZYFS_RETURN_IF_ERROR(tree_.GetAttr(ino));
  if (mask & W_OK) return ReadOnlyError("write access to " + InoName(ino));
  return Status::Ok();
}

struct statvfs FileSystem::StatFs() const {
  const index::TreeStats stats = tree_.Stats();
  struct statvfs st = {};
  st.f_bsize = kBlockSize;
  st.f_frsize = kBlockSize;
  st.f_blocks = (stats.content_bytes + kBlockSize - 1) / kBlockSize;
  st.f_bfree = 0;
  st.f_bavail = 0;
  st.f_files = stats.inodes;
  st.f_ffree = 0;
  st.f_favail = 0;
  st.f_namemax = kNameMax;
  st.f_flag = ST_RDONLY;
  return st;
}

}  // namespace lazyfs::fs
