// Directories as the ext4 writer lays them out: records packed into leaf blocks with checksum
// tails, and past one block a hashed index (htree) built by hand, since libext2fs has no bulk
// htree builder (only e2fsck's rehash, which is not a library call).
#include <algorithm>
#include <cstring>

#include "convert/ext4_writer.h"

namespace lazyfs::convert {
namespace {

struct Hashed {
  ext2_dirhash_t hash, minor;
  const DirRecord* rec;
};

// The names after "." and ".." in htree order: by half-MD4 hash with the image's seed.
Result<std::vector<Hashed>> HashNames(ext2_filsys fs, const std::vector<DirRecord>& records,
                                      const std::string& path) {
  // An unsigned-hash filesystem (set in WriteExt4) uses the *_UNSIGNED variant of the
  // superblock's default hash, as the kernel and e2fsck do.
  const int alg = fs->super->s_def_hash_version + 3;
  const auto* seed = reinterpret_cast<const __u32*>(fs->super->s_hash_seed);
  std::vector<Hashed> hashed;
  hashed.reserve(records.size() - 2);
  for (size_t i = 2; i < records.size(); ++i) {
    Hashed h{0, 0, &records[i]};
    LAZYFS_EXT2_CHECK(
        ext2fs_dirhash2(alg, records[i].name.data(), static_cast<int>(records[i].name.size()),
                        nullptr, 0, seed, &h.hash, &h.minor),
        "while hashing the names of directory " + path);
    hashed.push_back(h);
  }
  std::sort(hashed.begin(), hashed.end(), [](const Hashed& a, const Hashed& b) {
    if (a.hash != b.hash) return a.hash < b.hash;
    if (a.minor != b.minor) return a.minor < b.minor;
    return a.rec->name < b.rec->name;
  });
  return hashed;
}

// Writes count/limit and entries (block numbers, and hashes from the second on) at `at`.
void PutIndex(std::byte* at, uint16_t limit, const std::vector<uint32_t>& hashes,
              const std::vector<uint32_t>& lblks) {
  auto* cl = reinterpret_cast<ext2_dx_countlimit*>(at);
  cl->limit = ext2fs_cpu_to_le16(limit);
  cl->count = ext2fs_cpu_to_le16(static_cast<uint16_t>(lblks.size()));
  auto* e = reinterpret_cast<ext2_dx_entry*>(at);
  for (size_t i = 0; i < lblks.size(); ++i) {
    if (i > 0) e[i].hash = ext2fs_cpu_to_le32(hashes[i]);
    e[i].block = ext2fs_cpu_to_le32(lblks[i]);
  }
}

// The htree root block: "." and ".." and the root info, then the root's index entries.
Status PutDxRoot(ext2_filsys fs, std::byte* root, const std::vector<DirRecord>& records,
                 bool two_levels, const std::vector<uint32_t>& hashes,
                 const std::vector<uint32_t>& lblks, const std::string& path) {
  auto* dot = reinterpret_cast<ext2_dir_entry*>(root);
  dot->inode = records[0].ino;
  ext2fs_dirent_set_name_len(dot, 1);
  ext2fs_dirent_set_file_type(dot, EXT2_FT_DIR);
  dot->name[0] = '.';
  LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs, 12, dot), "while building directory " + path);
  auto* dotdot = reinterpret_cast<ext2_dir_entry*>(root + 12);
  dotdot->inode = records[1].ino;
  ext2fs_dirent_set_name_len(dotdot, 2);
  ext2fs_dirent_set_file_type(dotdot, EXT2_FT_DIR);
  dotdot->name[0] = '.';
  dotdot->name[1] = '.';
  LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs, kBlockSize - 12, dotdot),
                    "while building directory " + path);
  auto* info = reinterpret_cast<ext2_dx_root_info*>(root + 24);
  info->reserved_zero = 0;
  info->hash_version = fs->super->s_def_hash_version;
  info->info_length = 8;
  info->indirect_levels = two_levels ? 1 : 0;
  info->unused_flags = 0;
  PutIndex(root + 32, kDxRootLimit, hashes, lblks);
  return Status::Ok();
}

}  // namespace

// Packs records (in the given order) first-fit into leaf blocks with checksum tails; at least
// min_blocks blocks, the spare ones empty. Returns the blocks and, per block, the index of its
// first record.
Result<std::vector<std::byte>> PackDirLeaves(ext2_filsys fs,
                                             std::span<const DirRecord* const> records,
                                             uint64_t min_blocks, std::vector<size_t>* firsts,
                                             const std::string& path) {
  DirPacker packer;
  std::vector<std::byte> blocks(kBlockSize);
  ext2_dir_entry* last = nullptr;
  // Stretches the block's last entry to the checksum tail, as the format requires.
  auto close_block = [&](ext2_dir_entry* d, uint64_t off) -> Status {
    const uint32_t in_block = static_cast<uint32_t>(off % kBlockSize);
    LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs, DirPacker::kUsable - in_block, d),
                      "while building directory " + path);
    return Status::Ok();
  };
  uint64_t last_off = 0;
  if (firsts != nullptr) firsts->push_back(0);
  for (size_t i = 0; i < records.size(); ++i) {
    const DirRecord& r = *records[i];
    bool new_block = false;
    const uint64_t off = packer.Place(static_cast<uint32_t>(r.name.size()), &new_block);
    if (new_block) {
      LAZYFS_RETURN_IF_ERROR(close_block(last, last_off));
      blocks.resize(packer.blocks() * kBlockSize);
      if (firsts != nullptr) firsts->push_back(i);
    }
    auto* d = reinterpret_cast<ext2_dir_entry*>(blocks.data() + off);
    d->inode = r.ino;
    ext2fs_dirent_set_name_len(d, static_cast<int>(r.name.size()));
    ext2fs_dirent_set_file_type(d, r.ftype);
    std::memcpy(d->name, r.name.data(), r.name.size());
    LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs, DirRecLen(static_cast<uint32_t>(r.name.size())), d),
                      "while building directory " + path);
    last = d;
    last_off = off;
  }
  // Empty blocks (lost+found's spare room, or no records): one unused entry spanning the block.
  const uint64_t used_blocks = last == nullptr ? 0 : packer.blocks();
  if (last != nullptr) LAZYFS_RETURN_IF_ERROR(close_block(last, last_off));
  const uint64_t nblocks = std::max(used_blocks, min_blocks);
  blocks.resize(nblocks * kBlockSize);
  for (uint64_t b = used_blocks; b < nblocks; ++b) {
    auto* d = reinterpret_cast<ext2_dir_entry*>(blocks.data() + b * kBlockSize);
    LAZYFS_RETURN_IF_ERROR(close_block(d, 0));
  }
  for (uint64_t b = 0; b < nblocks; ++b) {
    ext2fs_initialize_dirent_tail(fs, reinterpret_cast<ext2_dir_entry_tail*>(
                                          blocks.data() + (b + 1) * kBlockSize - kDirTailSize));
  }
  return blocks;
}

// Builds an htree directory: block 0 is the root ("." and ".." and the index), then interior
// nodes when the leaves outgrow the root, then the leaves in hash order. records[0..1] are
// "." and "..".
Result<std::vector<std::byte>> BuildIndexedDir(ext2_filsys fs,
                                               const std::vector<DirRecord>& records,
                                               const std::string& path) {
  LAZYFS_ASSIGN_OR_RETURN(std::vector<Hashed> hashed, HashNames(fs, records, path));
  std::vector<const DirRecord*> order;
  order.reserve(hashed.size());
  for (const Hashed& h : hashed) order.push_back(h.rec);
  std::vector<size_t> firsts;
  LAZYFS_ASSIGN_OR_RETURN(std::vector<std::byte> leaves,
                          PackDirLeaves(fs, order, 1, &firsts, path));
  const uint64_t nleaves = leaves.size() / kBlockSize;
  if (nleaves > kDxMaxLeaves) {
    return InvalidArgumentError(path + ": " + std::to_string(records.size() - 2) +
                                " entries is more than a two-level htree holds");
  }
  // The index key of each leaf: the hash of its first entry, with the low bit set when the
  // previous leaf ends with the same hash (a collision run continued across leaves).
  std::vector<uint32_t> keys(nleaves, 0);
  for (uint64_t l = 1; l < nleaves; ++l) {
    const size_t i = firsts[l];
    keys[l] = hashed[i].hash | (hashed[i - 1].hash == hashed[i].hash ? 1u : 0u);
  }
  const uint64_t nnodes = nleaves > kDxRootLimit ? DivCeil(nleaves, kDxNodeLimit) : 0;
  const uint64_t first_leaf = 1 + nnodes;
  std::vector<std::byte> blocks((first_leaf + nleaves) * kBlockSize);
  std::memcpy(blocks.data() + first_leaf * kBlockSize, leaves.data(), leaves.size());
  std::vector<uint32_t> root_hashes, root_lblks;
  if (nnodes == 0) {
    for (uint64_t l = 0; l < nleaves; ++l) {
      root_hashes.push_back(keys[l]);
      root_lblks.push_back(static_cast<uint32_t>(first_leaf + l));
    }
  }
  for (uint64_t n = 0; n < nnodes; ++n) {
    const uint64_t lo = n * kDxNodeLimit;
    const uint64_t hi = std::min<uint64_t>(nleaves, lo + kDxNodeLimit);
    std::vector<uint32_t> hashes, lblks;
    for (uint64_t l = lo; l < hi; ++l) {
      hashes.push_back(keys[l]);
      lblks.push_back(static_cast<uint32_t>(first_leaf + l));
    }
    std::byte* node = blocks.data() + (1 + n) * kBlockSize;
    auto* fake = reinterpret_cast<ext2_dir_entry*>(node);
    fake->inode = 0;
    LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs, kBlockSize, fake), "while building directory " + path);
    PutIndex(node + 8, kDxNodeLimit, hashes, lblks);
    root_hashes.push_back(keys[lo]);
    root_lblks.push_back(static_cast<uint32_t>(1 + n));
  }
  LAZYFS_RETURN_IF_ERROR(
      PutDxRoot(fs, blocks.data(), records, nnodes != 0, root_hashes, root_lblks, path));
  return blocks;
}

}  // namespace lazyfs::convert
