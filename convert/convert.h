// convert: freezes an index::Tree into an ext4 image with libext2fs.
//
// No staging directory, no mkfs -d, no root: inodes are written straight into the image file
// from the tree, with the tar headers' owners, modes, times, devices and xattrs, so nothing from
// the image ever touches a host path. The image is written to a temporary name and renamed into
// place only when complete.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/image.h"
#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::convert {

struct Ext4Options {
  // Image size in bytes; 0 sizes it from the tree (content + metadata + journal + free space).
  uint64_t size_bytes = 0;
  // Free space left over when sizing automatically, as a fraction of the content.
  double free_fraction = 0.2;
  std::string label;
  // Time used for the filesystem's own timestamps (superblock, lost+found, the journal);
  // SOURCE_DATE_EPOCH style. Unset: the newest mtime in the tree (0 for a tree with none), so
  // the image never depends on the clock.
  std::optional<int64_t> fs_time;
  // For images only ever mounted read-only: no journal, no free space or spare inodes beyond a
  // minimal margin (free_fraction is ignored).
  bool read_only = false;
  // Seed of the filesystem UUID and directory hash seed. Empty: derived from a sha256 of the
  // whole tree (names, inode facts, content digests), so the same tree gives the same image.
  std::string seed;
};

struct Ext4Report {
  uint64_t image_bytes = 0;   // size of out.img
  uint64_t inodes = 0;
  uint64_t data_bytes = 0;    // file content written
  uint64_t free_bytes = 0;    // free space left in the filesystem
  std::string uuid;           // filesystem UUID, "xxxxxxxx-xxxx-..." (for root=UUID=...)
};

// Writes `tree` as an ext4 image at out_path (through a temporary sibling renamed into place; no
// file is left behind on failure). Fails with ResourceExhausted when an explicit size is too
// small ("tree needs N bytes, --size gives M"), DataLoss when content does not match its digest
// or ends early, InvalidArgument for what ext4 cannot hold (a bad name, a hardlinked directory,
// an empty or >4095-byte symlink target, a label over 16 bytes), the tree's own errors, and
// Internal for libext2fs failures; messages name the path involved. `progress` (may be empty)
// gets stage "write" with content bytes done/total.
Result<Ext4Report> WriteExt4(const index::Tree& tree, const std::string& out_path,
                             const Ext4Options& options, const ProgressFn& progress);

}  // namespace lazyfs::convert
