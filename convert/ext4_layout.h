// Private to convert/: the arithmetic of the ext4 layout lazyfs writes, shared by the sizing pass
// and the writer so both agree on how many blocks a directory takes.
//
// Geometry is fixed: 4096-byte blocks, 256-byte inodes, 64-byte group descriptors, flex_bg of 16,
// sparse_super, no resize inode, metadata_csum (so every directory leaf block ends in a 12-byte
// checksum tail).
#pragma once

#include <cstdint>

namespace lazyfs::convert {

inline constexpr uint32_t kBlockSize = 4096;
inline constexpr uint32_t kInodeSize = 256;
inline constexpr uint32_t kDescSize = 64;
inline constexpr uint32_t kBlocksPerGroup = kBlockSize * 8;
inline constexpr uint32_t kMaxInodesPerGroup = kBlockSize * 8;
inline constexpr uint32_t kDirTailSize = 12;  // struct ext2_dir_entry_tail
inline constexpr uint32_t kMaxExtentLen = 32768;  // blocks in one initialized extent
// Reserved inodes 1..10 (bad blocks, root, journal, ...); the first ordinary inode is 11.
inline constexpr uint32_t kFirstIno = 11;
inline constexpr uint32_t kLostFoundIno = 11;
// lost+found gets 4 blocks like mke2fs, so e2fsck can reconnect files without allocating.
inline constexpr uint32_t kLostFoundBlocks = 4;
// The smallest image sized automatically (a journal needs 2048 blocks; leave room around it).
inline constexpr uint64_t kMinImageBlocks = 4096;  // 16 MiB

// Size of a directory entry record holding a name of name_len bytes.
constexpr uint32_t DirRecLen(uint32_t name_len) { return (8 + name_len + 3) & ~3u; }

// Places directory entries into leaf blocks in order, first fit into the current block: the same
// rule for sizing and for writing. Not thread-safe; one per directory.
class DirPacker {
 public:
  static constexpr uint32_t kUsable = kBlockSize - kDirTailSize;
  // Reserves room for an entry; returns its byte offset within the directory. Sets
  // *new_block when the entry opens a new block (the previous block's last entry is then
  // stretched to the block's end by the writer).
  uint64_t Place(uint32_t name_len, bool* new_block) {
    const uint32_t rec = DirRecLen(name_len);
    *new_block = false;
    if (used_ + rec > kUsable) {
      ++blocks_;
      used_ = 0;
      *new_block = true;
    }
    const uint64_t off = (blocks_ - 1) * uint64_t{kBlockSize} + used_;
    used_ += rec;
    return off;
  }
  uint64_t blocks() const { return blocks_; }

 private:
  uint64_t blocks_ = 1;
  uint32_t used_ = 0;
};

// htree (dir_index) limits with metadata_csum: the root block holds "." and ".." (24 bytes), the
// 8-byte dx_root_info and a dx_tail; an interior node a fake 8-byte entry and a dx_tail. Each
// index entry is 8 bytes. Without the largedir feature the tree has at most two levels.
inline constexpr uint32_t kDxRootLimit = (kBlockSize - 24 - 8 - 8) / 8;  // 507
inline constexpr uint32_t kDxNodeLimit = (kBlockSize - 8 - 8) / 8;       // 510
inline constexpr uint64_t kDxMaxLeaves = uint64_t{kDxRootLimit} * kDxNodeLimit;

// Blocks a directory takes when its entries packed linearly (in name order) fill linear_blocks:
// one block stays linear; more become an htree of a root, interior nodes if the leaves outgrow
// the root, and the leaves, repacked in hash order (a slack of 1/16 covers the different order).
constexpr uint64_t DirBlocks(uint64_t linear_blocks) {
  if (linear_blocks <= 1) return linear_blocks;
  const uint64_t leaves = linear_blocks + linear_blocks / 16 + 1;
  const uint64_t nodes = leaves > kDxRootLimit ? (leaves + kDxNodeLimit - 1) / kDxNodeLimit : 0;
  return 1 + nodes + leaves;
}

// What the tree needs besides the filesystem's own metadata, in blocks, and its inode count.
struct SpaceNeeds {
  uint64_t content_blocks = 0;  // regular files' data, whole blocks, holes counted as data
  uint64_t other_blocks = 0;    // directories, slow symlinks, xattr blocks, extent tree blocks
  uint64_t inodes = 0;          // ext4 inodes used (tree inodes + reserved + lost+found)
};

// Inodes the filesystem gets for an image of total_blocks: what the tree uses plus slack for
// the guest (max(1024, free_fraction of the tree's)), and never fewer than one per 16 KiB
// (mke2fs's default ratio). A read-only image gets what the tree uses and a few more.
uint64_t InodesFor(uint64_t total_blocks, const SpaceNeeds& needs, double free_fraction,
                   bool read_only);

// Blocks the filesystem's own metadata takes in an image of total_blocks holding `inodes`
// inodes: superblocks and descriptor copies, bitmaps, inode tables, the journal (unless
// read_only).
uint64_t OverheadBlocks(uint64_t total_blocks, uint64_t inodes, bool read_only);

// The journal's size in blocks for an image of total_blocks (mke2fs's default table); 0 when
// the image is too small for one.
uint64_t JournalBlocks(uint64_t total_blocks);

// The smallest image (blocks) that holds `needs` plus `extra_free` free blocks, at least
// kMinImageBlocks (256 blocks when read_only).
uint64_t RequiredBlocks(const SpaceNeeds& needs, double free_fraction, uint64_t extra_free,
                        bool read_only);

}  // namespace lazyfs::convert
