// convert: freezes an index::Tree into an ext4 image with libext2fs.
//
// No staging directory, no mkfs -d, no root: inodes are written straight into the image file
// from the tree, with the tar headers' owners, modes, times, devices and xattrs, so nothing from
// the image ever touches a host path. The image is written to a temporary name and renamed into
// place only when complete.
#pragma once

#include <cstdint>
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
  // Time used for the filesystem's own timestamps (superblock, lost+found, implicit directories'
  // ctime); SOURCE_DATE_EPOCH style. 0 means "now".
  int64_t fs_time = 0;
};

struct Ext4Report {
  uint64_t image_bytes = 0;   // size of out.img
  uint64_t inodes = 0;
  uint64_t data_bytes = 0;    // file content written
};

// Writes `tree` as an ext4 image at out_path. Fails with ResourceExhausted when an explicit size
// is too small, DataLoss when content does not match its digest, and names the path involved.
Result<Ext4Report> WriteExt4(const index::Tree& tree, const std::string& out_path,
                             const Ext4Options& options, const ProgressFn& progress);

}  // namespace lazyfs::convert
