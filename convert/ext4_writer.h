// Private to convert/: the ext4 writer's two passes, shared by its three files.
//
// ext4_sizing.cc: pass 1, the survey (validation, link counts, space, fingerprint) and the image
// size it gives. ext4_fs.cc: the filesystem around the tree (superblock, identity, times, group
// tables, journal) and WriteExt4's sequence. ext4_writer.cc: pass 2, every inode and file's
// content. ext4_dir.cc: directory blocks, linear and hashed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "convert/convert.h"
#include "convert/ext2fs_handle.h"
#include "convert/ext4_layout.h"
#include "convert/ext4_readahead.h"
#include "index/tree.h"

namespace lazyfs::convert {

inline constexpr uint32_t kMaxLinks = 65000;  // EXT4_LINK_MAX
inline constexpr uint32_t kMaxSymlink = kBlockSize - 1;
inline constexpr uint32_t kFastSymlinkMax = sizeof(ext2_inode::i_block) - 1;  // 59
inline constexpr uint64_t kMaxFileBlocks = (uint64_t{1} << 32) - 1;
// In-inode xattr space: 256-byte inode - 128 - i_extra_isize 32 - magic 4 - terminator 4.
inline constexpr uint64_t kInodeXattrSpace = kInodeSize - 128 - 32 - 8;

inline uint64_t DivCeil(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// EXT2_FT_* for an st_mode; EXT2_FT_UNKNOWN for a type ext4 cannot hold.
uint8_t FileType(uint32_t mode);

// Pass 1's findings.
struct Survey {
  SpaceNeeds needs;
  std::vector<uint8_t> ftype;  // [tree ino]: EXT2_FT_* of reachable inodes, 0 if unreachable
  std::vector<uint32_t> refs;  // [tree ino]: names referring to it (its link count)
  bool root_has_lost_found = false;
  uint64_t inodes = 0;  // reachable tree inodes
  uint64_t content_bytes = 0;
  int64_t newest_mtime = 0;  // the default for the filesystem's own times
  Digest fingerprint;
  // Regular files at their first name, in the order the writer writes them (the same walk).
  std::vector<FileToRead> files;
};

// Pass 1: walks the tree from the root without reading content, validates names and shapes,
// counts the references to every inode, sizes the image and fingerprints the tree.
Result<Survey> SurveyTree(const index::Tree& tree);

// The image's size in blocks for the survey and the options: an explicit size checked against
// what the tree needs (ResourceExhausted), else what it needs plus the free space asked for.
Result<uint64_t> ImageBlocks(const Survey& survey, const Ext4Options& options);

// One name of a directory as ext4 stores it.
struct DirRecord {
  std::string_view name;
  ext2_ino_t ino;
  uint8_t ftype;
};

// Packs records (in the given order) first-fit into leaf blocks with checksum tails; at least
// min_blocks blocks, the spare ones empty. Returns the blocks and, in `firsts` (may be null), the
// index of each block's first record.
Result<std::vector<std::byte>> PackDirLeaves(ext2_filsys fs,
                                             std::span<const DirRecord* const> records,
                                             uint64_t min_blocks, std::vector<size_t>* firsts,
                                             const std::string& path);

// An htree directory's blocks: the root ("." and ".." and the index), interior nodes when the
// leaves outgrow the root, then the leaves in hash order. records[0..1] are "." and "..".
Result<std::vector<std::byte>> BuildIndexedDir(ext2_filsys fs,
                                               const std::vector<DirRecord>& records,
                                               const std::string& path);

// Pass 2, in the order that decides where every block lands: the reserved inodes, then
// `before_tree` (the journal), lost+found unless the tree brings its own, then every inode of
// the tree. The first and third steps' errors are given `context`; running out of space in the
// tree's with an explicit size says so. Returns the content bytes written.
Result<uint64_t> WriteInodes(const index::Tree& tree, ext2_filsys fs, const Survey& survey,
                             ContentReader& content, const Ext4Options& options,
                             const ProgressFn& progress, const std::string& context,
                             const std::function<Status()>& before_tree);

}  // namespace lazyfs::convert
