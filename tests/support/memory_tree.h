// An in-memory index::Tree for module tests of fs/ and convert/: built from a list of nodes by
// path, with the same inode numbering rule as the real index (dense, sorted depth-first, root 1).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "index/tree.h"

namespace lazyfs::testing {

struct MemNode {
  std::string path;          // "/" for the root, else "/a/b"
  uint32_t mode = 0;         // full st_mode (S_IFREG | 0644 ...)
  uint32_t uid = 0, gid = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  std::string data;          // file content or symlink target
  uint32_t rdev_major = 0, rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
  std::string hardlink_to;   // path of an earlier regular file: share its inode
};

// Thread-safe after construction (read-only).
class MemoryTree : public index::Tree {
 public:
  // Missing parent directories are created 0755 root:root. Fails on a hardlink to a missing node.
  static Result<std::unique_ptr<MemoryTree>> Build(std::vector<MemNode> nodes);

  Result<index::Attr> GetAttr(uint64_t ino) const override;
  Result<index::Attr> Lookup(uint64_t parent, std::string_view name) const override;
  Result<std::vector<index::DirEntry>> ReadDir(uint64_t ino) const override;
  Result<std::string> ReadLink(uint64_t ino) const override;
  Result<std::vector<index::Xattr>> ListXattrs(uint64_t ino) const override;
  Result<Digest> ContentDigest(uint64_t ino) const override;
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override;
  index::TreeStats Stats() const override;

 private:
  struct Inode {
    index::Attr attr;
    std::string data;
    std::vector<index::Xattr> xattrs;
    std::map<std::string, uint64_t> children;  // directories
  };
  static std::string Name(uint64_t ino);  // "inode N", for errors
  Result<const Inode*> Get(uint64_t ino) const;
  std::vector<Inode> inodes_;  // inodes_[ino - 1]
};

}  // namespace lazyfs::testing
