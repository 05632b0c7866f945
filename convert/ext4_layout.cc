#include "convert/ext4_layout.h"

#include <algorithm>

namespace lazyfs::convert {
namespace {

uint64_t DivCeil(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// sparse_super keeps superblock backups in groups 0, 1 and powers of 3, 5 and 7.
uint64_t SuperblockGroups(uint64_t groups) {
  uint64_t n = std::min<uint64_t>(groups, 2);
  for (uint64_t base : {3, 5, 7}) {
    for (uint64_t g = base; g < groups; g *= base) ++n;
  }
  return n;
}

}  // namespace

uint64_t JournalBlocks(uint64_t total_blocks) {
  // Mirrors ext2fs_default_journal_size, which ext2fs_get_journal_params uses.
  if (total_blocks < 2048) return 0;
  if (total_blocks < 32768) return 1024;
  if (total_blocks < 256 * 1024) return 4096;
  if (total_blocks < 512 * 1024) return 8192;
  if (total_blocks < 4096 * 1024) return 16384;
  if (total_blocks < 8192 * 1024) return 32768;
  if (total_blocks < 16384 * 1024) return 65536;
  if (total_blocks < 32768 * 1024) return 131072;
  return 262144;
}

uint64_t InodesFor(uint64_t total_blocks, const SpaceNeeds& needs, double free_fraction,
                   bool read_only) {
  if (read_only) return needs.inodes + 16;
  const uint64_t slack =
      std::max<uint64_t>(1024, static_cast<uint64_t>(static_cast<double>(needs.inodes) *
                                                     std::max(free_fraction, 0.0)));
  const uint64_t by_ratio = total_blocks * kBlockSize / 16384;
  return std::max(needs.inodes + slack, by_ratio);
}

uint64_t OverheadBlocks(uint64_t total_blocks, uint64_t inodes, bool read_only) {
  // ext2fs_initialize shrinks groups when inodes do not fit 32768 per group.
  const uint64_t groups = std::max(DivCeil(total_blocks, kBlocksPerGroup),
                                   DivCeil(inodes, kMaxInodesPerGroup));
  const uint64_t inodes_per_block = kBlockSize / kInodeSize;
  const uint64_t ipg = DivCeil(DivCeil(inodes, groups), inodes_per_block) * inodes_per_block;
  const uint64_t inode_table = groups * ipg / inodes_per_block;
  const uint64_t gdt = DivCeil(groups * kDescSize, kBlockSize);
  const uint64_t supers = SuperblockGroups(groups) * (1 + gdt);
  const uint64_t bitmaps = 2 * groups;
  const uint64_t journal = read_only ? 0 : JournalBlocks(total_blocks);
  return supers + bitmaps + inode_table + journal + 2;  // + root, bad blocks
}

uint64_t RequiredBlocks(const SpaceNeeds& needs, double free_fraction, uint64_t extra_free,
                        bool read_only) {
  const uint64_t payload = needs.content_blocks + needs.other_blocks + extra_free;
  // Without a journal nothing forces 16 MiB; 1 MiB still leaves room for the group tables.
  const uint64_t min_blocks = read_only ? 256 : kMinImageBlocks;
  uint64_t total = std::max(min_blocks, payload);
  // The overhead grows with the total (journal, inode tables), so iterate to a fixed point; it
  // is monotone, so a few rounds settle it.
  for (int round = 0; round < 16; ++round) {
    const uint64_t want =
        payload + OverheadBlocks(total, InodesFor(total, needs, free_fraction, read_only),
                                 read_only);
    // 1% margin for what the estimate cannot see (last-group rounding, xattr block sharing).
    const uint64_t next = std::max(min_blocks, want + want / 100 + 64);
    if (next <= total) break;
    total = next;
  }
  return total;
}

}  // namespace lazyfs::convert
