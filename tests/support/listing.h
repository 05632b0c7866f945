// Listings: the facts a test compares between an image spec, a Tree, a FUSE mount and a
// loop-mounted ext4 image.
//
// One entry per path: type, owner, mode (with setuid/setgid/sticky), size, sha256 of the content
// (regular files) or the link target (symlinks), device numbers, link count, mtime and xattrs.
// The same structure comes from three places, so a test can say "these three trees agree" with
// one DiffListings call per pair.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::testing {

struct ListingEntry {
  char type = '?';        // 'd' dir, 'f' regular, 'l' symlink, 'c' char dev, 'b' block dev,
                          // 'p' fifo, 's' socket
  uint32_t mode = 0;      // permission bits incl. setuid/setgid/sticky (st_mode & 07777)
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;      // regular files and symlinks; 0 otherwise
  std::string sha256;     // hex of the content (files) or of the target (symlinks); else empty
  std::string target;     // symlink target
  uint32_t rdev_major = 0, rdev_minor = 0;
  uint32_t nlink = 0;
  int64_t mtime_sec = 0;
  std::map<std::string, std::string> xattrs;

  friend bool operator==(const ListingEntry&, const ListingEntry&) = default;
};

// Keyed by absolute path inside the tree: "/" for the root, "/etc/passwd".
using Listing = std::map<std::string, ListingEntry>;

// Walks a real directory tree with lstat/readlink/llistxattr (never following symlinks) and
// hashes file contents.
Result<Listing> ListDirectory(const std::string& root);
// Walks a Tree from kRootIno, reading every file's content through Tree::Read.
Result<Listing> ListTree(const index::Tree& tree);

struct DiffOptions {
  bool compare_mtime = true;
  bool compare_nlink = true;
};
// Empty when equal; otherwise one line per difference ("/etc/passwd: uid 0 != 1000",
// "/tmp/x: missing", "/y: unexpected"), capped at 50 lines.
std::string DiffListings(const Listing& expected, const Listing& actual,
                         const DiffOptions& options = {});
// One line per entry, for failure messages.
std::string FormatEntry(const std::string& path, const ListingEntry& e);

}  // namespace lazyfs::testing
