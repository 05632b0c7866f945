// FileSystem: the FUSE daemon's logic with no FUSE in it.
//
// Every operation the kernel can ask of a read-only filesystem is one method here, answering in
// POSIX terms (struct stat, struct statvfs, byte strings) from an index::Tree, and failing with a
// Status whose errno ErrnoFromStatus() picks. fs/fuse_adapter.cc turns each FUSE callback into one
// call and one reply, so everything below is tested without a mount. The tree is immutable, so
// answers carry long cache timeouts and nothing needs invalidating.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::fs {

// How long the kernel may cache entries, negative entries and attributes, in seconds. The image
// never changes under a mount, so "a day" only bounds memory held by the kernel's caches.
inline constexpr double kCacheTimeoutSeconds = 86400.0;
// Longest name a directory entry may have (as ext4 and every Linux tool expect).
inline constexpr size_t kNameMax = 255;
// Block size reported by stat (st_blksize) and statfs.
inline constexpr uint32_t kBlockSize = 4096;

// The answer to a lookup: ino == 0 is a negative entry (the name does not exist), which the
// kernel caches for entry_timeout like a positive one.
struct Entry {
  uint64_t ino = 0;
  struct stat attr = {};
  double attr_timeout = kCacheTimeoutSeconds;
  double entry_timeout = kCacheTimeoutSeconds;
};

// Attributes with how long they may be cached.
struct AttrReply {
  struct stat attr = {};
  double timeout = kCacheTimeoutSeconds;
};

// One directory entry as readdir reports it. `offset` is this entry's position in the listing;
// the kernel resumes a listing at "the entry after offset", i.e. at index offset + 1.
struct DirItem {
  std::string name;
  uint64_t ino = 0;
  uint32_t mode = 0;  // st_mode of the entry (only its type bits matter to readdir)
  uint64_t offset = 0;
};

// A directory's entries, ".", ".." and then the children in the tree's (sorted) order. Index i is
// stable for the life of the mount because the tree is immutable, so offsets never skip or repeat
// entries, even across separate opendir calls. Immutable after creation.
class DirListing {
 public:
  explicit DirListing(std::vector<DirItem> items) : items_(std::move(items)) {}
  // The entries a readdir at `offset` returns: from index `offset` to the end. (FUSE's offset of
  // the first call is 0; each later call passes the `next offset` of the last entry it got,
  // which is its index + 1.) Past the end: empty.
  std::span<const DirItem> From(uint64_t offset) const;
  size_t size() const { return items_.size(); }

 private:
  std::vector<DirItem> items_;
};

// The answer to getxattr/listxattr. A size query (size 0) fills only `size`; otherwise `data`
// holds the value (or the NUL-separated name list) and size == data.size().
struct XattrReply {
  size_t size = 0;
  std::string data;
};

// The errno the kernel should see for a failed Status: Status::error_number() when set, else by
// code (NotFound→ENOENT, InvalidArgument→EINVAL, Unavailable/DataLoss/Internal→EIO,
// PermissionDenied→EACCES, AlreadyExists→EEXIST, ResourceExhausted→ENOSPC,
// FailedPrecondition→ENOTDIR, Unimplemented→EOPNOTSUPP). 0 for OK. The one place in lazyfs
// where a Status becomes an errno.
int ErrnoFromStatus(const Status& status);

// index::Attr → struct stat: the tree's uid, gid, full mode, size, nlink, rdev; atime = ctime =
// mtime clamped (index::ClampTime); st_blocks = ceil(size / 512); st_blksize = kBlockSize.
struct stat StatFromAttr(const index::Attr& attr);

// Serves one index::Tree read-only. Thread-safe: every method may be called concurrently (the
// Tree is thread-safe and the only mutable state, the directory parent map, is locked).
// Does not own the tree, which must outlive it.
//
// Errors follow the syscalls: write attempts fail with EROFS, a directory where a file is
// needed with EISDIR, a file where a directory is needed with ENOTDIR (from the tree), a
// missing xattr with ENODATA and a too-small xattr buffer with ERANGE; tree errors pass through
// with their context.
class FileSystem {
 public:
  explicit FileSystem(const index::Tree& tree);
  FileSystem(const FileSystem&) = delete;
  FileSystem& operator=(const FileSystem&) = delete;

  // A hit returns the child's attributes; a miss returns a negative entry (ino 0), not an
  // error. Fails with ENAMETOOLONG for names over kNameMax, ENOTDIR when parent is not a
  // directory, ENOENT when parent itself does not exist.
  Result<Entry> Lookup(uint64_t parent, std::string_view name) const;
  // The entry readdirplus reports for an inode (as a lookup hit would).
  Result<Entry> EntryOf(uint64_t ino) const;
  Result<AttrReply> GetAttr(uint64_t ino) const;
  // Checks an open(2) of a non-directory: write access, O_TRUNC or O_APPEND → EROFS; a
  // directory → EISDIR.
  Status Open(uint64_t ino, int flags) const;
  // Up to `size` bytes at `offset` (fewer only at end of file; empty at or past it). EISDIR for
  // a directory, EINVAL for other non-regular files.
  Result<std::string> Read(uint64_t ino, uint64_t offset, size_t size) const;
  // Reads into `out` (the same rules as above); returns the byte count.
  Result<size_t> ReadInto(uint64_t ino, uint64_t offset, std::span<std::byte> out) const;
  // The directory's whole listing, for an opendir handle; ENOTDIR for a non-directory.
  // ".." of the root is the root; ".." of another directory is its parent as seen by earlier
  // lookups and listings (the kernel always looks a directory up before opening it), or the
  // directory itself if it was never seen.
  Result<std::shared_ptr<const DirListing>> OpenDir(uint64_t ino) const;
  // ReadDir(ino, offset) == OpenDir(ino)->From(offset), copied.
  Result<std::vector<DirItem>> ReadDir(uint64_t ino, uint64_t offset) const;
  Result<std::string> ReadLink(uint64_t ino) const;
  // getxattr(2) semantics: size 0 asks for the length; a value longer than size → ERANGE; a
  // missing name → ENODATA.
  Result<XattrReply> GetXattr(uint64_t ino, std::string_view name, size_t size) const;
  // listxattr(2) semantics: the names NUL-terminated, size 0 asks for the length, too small →
  // ERANGE.
  Result<XattrReply> ListXattr(uint64_t ino, size_t size) const;
  // access(2): W_OK → EROFS; otherwise OK if the inode exists (with default_permissions the
  // kernel checks the modes itself).
  Status Access(uint64_t ino, int mask) const;
  // statfs(2): f_blocks from the content size, f_files = inode count, nothing free, read-only.
  struct statvfs StatFs() const;

 private:
  void NoteParent(uint64_t dir, uint64_t parent) const;
  uint64_t ParentOf(uint64_t dir) const;

  const index::Tree& tree_;
  mutable std::shared_mutex mu_;
  // Directory inode → parent directory inode, filled from lookups and listings. Only used for
  // the d_ino of "..".
  mutable std::unordered_map<uint64_t, uint64_t> parents_;  // GUARDED_BY(mu_)
};

}  // namespace lazyfs::fs
