// Pass 2 of the ext4 writer (pass 1, the survey, is ext4_sizing.cc): walks the tree again, in
// the survey's order, and libext2fs writes every inode straight into the image.
// - inode numbers are fixed by arithmetic, not allocated: the tree's root is ext4 inode 2, tree
//   inode k >= 2 is ext4 inode k + 10 (11 is lost+found). A hardlink is one inode with several
//   names, and a directory can be written before its children because their numbers are known.
// - directories are built whole in memory from ReadDir's sorted entries, packed first-fit into
//   4 KiB leaf blocks with checksum tails and written once: O(n log n) in the entry count, where
//   ext2fs_link per name would rescan the directory each time (quadratic). A directory of one
//   block stays linear; a bigger one becomes a hashed index (htree, dir_index) built here: the
//   entries sorted by their half-MD4 hash (libext2fs's ext2fs_dirhash2 with the image's seed),
//   packed into leaves, and a root (plus interior nodes past 507 leaves) pointing at them.
//   libext2fs has no bulk htree builder (only e2fsck's rehash, which is not a library call), so
//   the index blocks are laid out by hand; ext2fs_write_dir_block4 sets their checksums.
// - file data is read in 4 MiB chunks and hashed ahead of the writer by a pool of reader threads
//   (ext4_readahead.h), in the order the writer takes files, which the survey records; the writer
//   alone writes them, with one pwrite per contiguous run into ranges from ext2fs_new_range,
//   allocated in order from a cursor so files are laid out in the order they are written and the
//   bytes do not depend on the number of readers. Whole zero blocks become holes. Extents are
//   written into the inode directly (<= 4) or through an extent handle (deeper trees).
// - inodes are written with ext2fs_write_inode_full from a fully built ext2_inode_large, so
//   libext2fs never substitutes "now" for a zero time or a crtime; every time comes from the tree
//   or from Ext4Options::fs_time.
#include "convert/ext4_writer.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "convert/ext4_time.h"

namespace lazyfs::convert {
namespace {

using index::Attr;
using index::TreeEntry;

bool IsZero(const std::byte* p, size_t len) {
  if (len == 0) return true;
  return p[0] == std::byte{0} && std::memcmp(p, p + 1, len - 1) == 0;
}

void SetTime(uint32_t& lo, uint32_t& extra, int64_t sec, uint32_t nsec) {
  const Ext4InodeTime t = EncodeInodeTime(sec, nsec);
  lo = t.lo;
  extra = t.extra;
}

struct Extent {
  uint64_t lblk;
  uint64_t pblk;
  uint32_t len;
};

class Writer {
 public:
  Writer(const index::Tree& tree, ext2_filsys fs, const Survey& survey, ContentReader& content,
         const ProgressFn& progress, int64_t fs_time)
      : tree_(tree),
        fs_(fs),
        survey_(survey),
        content_(content),
        progress_(progress),
        fs_time_(fs_time),
        written_(survey.ftype.size(), false) {}

  static ext2_ino_t ExtIno(uint64_t tree_ino) {
    return tree_ino == index::kRootIno ? EXT2_ROOT_INO
                                       : static_cast<ext2_ino_t>(tree_ino + kFirstIno - 1);
  }

  // Marks the reserved inodes used and writes the bad-blocks inode, like mke2fs.
  Status WriteReserved() {
    for (ext2_ino_t ino = 1; ino < kFirstIno; ++ino) {
      if (ino != EXT2_ROOT_INO) ext2fs_inode_alloc_stats2(fs_, ino, +1, 0);
    }
    ext2_inode_large bad = NewInode(0, 0, 0, fs_time_, 0, 0);
    return WriteInode(EXT2_BAD_INO, bad, "the bad blocks inode");
  }

  Status WriteLostFound() {
    ext2_inode_large in = NewInode(S_IFDIR | 0700, 0, 0, fs_time_, 0, 2);
    std::vector<DirRecord> records = {{".", kLostFoundIno, EXT2_FT_DIR},
                                      {"..", EXT2_ROOT_INO, EXT2_FT_DIR}};
    ext2fs_inode_alloc_stats2(fs_, kLostFoundIno, +1, 1);
    return WriteDirInode(kLostFoundIno, in, records, kLostFoundBlocks, "/lost+found");
  }

  // Writes every inode reachable from the root, directories depth-first in name order and each
  // directory's other children right after it (index::WalkTree's order, the survey's too).
  Status WriteTree(bool add_lost_found) {
    std::unordered_map<uint64_t, uint64_t> parent{{index::kRootIno, index::kRootIno}};
    return index::WalkTree(
        tree_, [&](const TreeEntry& dir, const std::vector<TreeEntry>& entries) -> Status {
          for (const TreeEntry& e : entries) {
            if (e.attr.ino >= survey_.ftype.size() ||
                survey_.ftype[e.attr.ino] == EXT2_FT_UNKNOWN) {
              return InternalError(e.path + ": the tree changed while it was being written");
            }
          }
          const uint64_t ino = dir.attr.ino;
          LAZYFS_RETURN_IF_ERROR(
              WriteDirectory(dir, parent[ino], entries, add_lost_found && ino == index::kRootIno));
          for (const TreeEntry& e : entries) {
            if (survey_.ftype[e.attr.ino] == EXT2_FT_DIR) {
              parent[e.attr.ino] = ino;
            } else if (!written_[e.attr.ino]) {
              written_[e.attr.ino] = true;
              LAZYFS_RETURN_IF_ERROR(WriteLeaf(e));
            }
          }
          return Status::Ok();
        });
  }

  uint64_t inodes_written() const { return inodes_written_; }
  uint64_t data_bytes() const { return bytes_done_; }

 private:
  ext2_inode_large NewInode(uint32_t mode, uint32_t uid, uint32_t gid, int64_t mtime,
                            uint32_t mtime_nsec, uint32_t links) {
    ext2_inode_large in;
    std::memset(&in, 0, sizeof(in));
    in.i_mode = static_cast<uint16_t>(mode);
    in.i_uid = static_cast<uint16_t>(uid);
    ext2fs_set_i_uid_high(in, static_cast<uint16_t>(uid >> 16));
    in.i_gid = static_cast<uint16_t>(gid);
    ext2fs_set_i_gid_high(in, static_cast<uint16_t>(gid >> 16));
    in.i_links_count = static_cast<uint16_t>(links);
    in.i_extra_isize = sizeof(ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
    // atime, ctime and crtime all equal mtime: the tree records one time per inode.
    SetTime(in.i_mtime, in.i_mtime_extra, mtime, mtime_nsec);
    SetTime(in.i_atime, in.i_atime_extra, mtime, mtime_nsec);
    SetTime(in.i_ctime, in.i_ctime_extra, mtime, mtime_nsec);
    SetTime(in.i_crtime, in.i_crtime_extra, mtime, mtime_nsec);
    return in;
  }

  ext2_inode_large InodeFromAttr(const Attr& a, uint32_t links) {
    return NewInode(a.mode, a.uid, a.gid, a.mtime_sec, a.mtime_nsec, links);
  }

  Status WriteInode(ext2_ino_t ino, ext2_inode_large& in, const std::string& path) {
    LAZYFS_EXT2_CHECK(
        ext2fs_write_inode_full(fs_, ino, reinterpret_cast<ext2_inode*>(&in), sizeof(in)),
        "while writing the inode of " + path);
    ++inodes_written_;
    return Status::Ok();
  }

  // Allocates `count` blocks from the cursor onwards, in as few runs as the free space allows.
  Status Allocate(uint64_t count, std::vector<std::pair<blk64_t, blk64_t>>& runs,
                  const std::string& path) {
    while (count > 0) {
      blk64_t pblk = 0, plen = 0;
      LAZYFS_EXT2_CHECK(ext2fs_new_range(fs_, 0, goal_, count, nullptr, &pblk, &plen),
                        "while allocating " + std::to_string(count) + " blocks for " + path);
      ext2fs_block_alloc_stats_range(fs_, pblk, plen, +1);
      goal_ = pblk + plen;
      runs.emplace_back(pblk, plen);
      count -= plen;
    }
    return Status::Ok();
  }

  static void AddExtent(std::vector<Extent>& extents, uint64_t lblk, uint64_t pblk, uint64_t len) {
    while (len > 0) {
      if (!extents.empty()) {
        Extent& last = extents.back();
        if (last.lblk + last.len == lblk && last.pblk + last.len == pblk &&
            last.len < kMaxExtentLen) {
          const uint64_t take = std::min<uint64_t>(len, kMaxExtentLen - last.len);
          last.len += static_cast<uint32_t>(take);
          lblk += take;
          pblk += take;
          len -= take;
          continue;
        }
      }
      const uint64_t take = std::min<uint64_t>(len, kMaxExtentLen);
      extents.push_back({lblk, pblk, static_cast<uint32_t>(take)});
      lblk += take;
      pblk += take;
      len -= take;
    }
  }

  // Writes `count` whole blocks of data as logical blocks lblk.. of a file.
  Status WriteRun(uint64_t lblk, const std::byte* data, uint64_t count,
                  std::vector<Extent>& extents, const std::string& path) {
    std::vector<std::pair<blk64_t, blk64_t>> runs;
    LAZYFS_RETURN_IF_ERROR(Allocate(count, runs, path));
    for (auto [pblk, plen] : runs) {
      LAZYFS_EXT2_CHECK(io_channel_write_blk64(fs_->io, pblk, static_cast<int>(plen), data),
                        "while writing the data of " + path);
      AddExtent(extents, lblk, pblk, plen);
      data += plen * kBlockSize;
      lblk += plen;
    }
    return Status::Ok();
  }

  // Writes the inode with its block map: up to 4 extents inside the inode, else an extent tree
  // built through libext2fs (which allocates the index blocks and adds them to i_blocks).
  Status WriteMappedInode(ext2_ino_t ino, ext2_inode_large& in, const std::vector<Extent>& extents,
                          uint64_t data_blocks, const std::string& path) {
    in.i_flags |= EXT4_EXTENTS_FL;
    auto* eh = reinterpret_cast<ext3_extent_header*>(in.i_block);
    eh->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
    eh->eh_max =
        ext2fs_cpu_to_le16((sizeof(in.i_block) - sizeof(ext3_extent_header)) / sizeof(ext3_extent));
    eh->eh_depth = 0;
    eh->eh_generation = 0;
    const bool inline_map = extents.size() <= 4;
    if (inline_map) {
      eh->eh_entries = ext2fs_cpu_to_le16(extents.size());
      auto* ex = reinterpret_cast<ext3_extent*>(eh + 1);
      for (size_t i = 0; i < extents.size(); ++i) {
        ex[i].ee_block = ext2fs_cpu_to_le32(static_cast<uint32_t>(extents[i].lblk));
        ex[i].ee_len = ext2fs_cpu_to_le16(static_cast<uint16_t>(extents[i].len));
        ex[i].ee_start = ext2fs_cpu_to_le32(static_cast<uint32_t>(extents[i].pblk));
        ex[i].ee_start_hi = ext2fs_cpu_to_le16(static_cast<uint16_t>(extents[i].pblk >> 32));
      }
    } else {
      eh->eh_entries = 0;
    }
    LAZYFS_EXT2_CHECK(ext2fs_iblk_set(fs_, reinterpret_cast<ext2_inode*>(&in), data_blocks),
                      "while setting the block count of " + path);
    LAZYFS_RETURN_IF_ERROR(WriteInode(ino, in, path));
    if (inline_map) return Status::Ok();

    // The handle works on `in` (its first 128 bytes) and rewrites the inode as the tree grows.
    ExtentHandle h;
    LAZYFS_EXT2_CHECK(ext2fs_extent_open2(fs_, ino, reinterpret_cast<ext2_inode*>(&in), h.out()),
                      "while mapping the blocks of " + path);
    for (size_t i = 0; i < extents.size(); ++i) {
      ext2fs_extent e{};
      e.e_lblk = extents[i].lblk;
      e.e_pblk = extents[i].pblk;
      e.e_len = extents[i].len;
      LAZYFS_EXT2_CHECK(ext2fs_extent_insert(h.get(), i == 0 ? 0 : EXT2_EXTENT_INSERT_AFTER, &e),
                        "while mapping the blocks of " + path);
      LAZYFS_EXT2_CHECK(ext2fs_extent_fix_parents(h.get()), "while mapping the blocks of " + path);
    }
    return Status::Ok();
  }

  Status WriteXattrs(uint64_t tree_ino, ext2_ino_t ino, const std::string& path) {
    LAZYFS_ASSIGN_OR_RETURN(std::vector<index::Xattr> xattrs, tree_.ListXattrs(tree_ino));
    if (xattrs.empty()) return Status::Ok();
    XattrHandle h;
    const std::string what = "while writing the xattrs of " + path;
    LAZYFS_EXT2_CHECK(ext2fs_xattrs_open(fs_, ino, h.out()), what);
    LAZYFS_EXT2_CHECK(ext2fs_xattrs_read(h.get()), what);
    for (const index::Xattr& x : xattrs) {
      errcode_t err = ext2fs_xattr_set(h.get(), x.name.c_str(), x.value.data(), x.value.size());
      if (err == EXT2_ET_EA_NO_SPACE) {
        // Without the ea_inode feature all of an inode's xattrs share its spare bytes and one
        // 4 KiB block.
        return InvalidArgumentError(path + ": xattrs do not fit in ext4's 4 KiB xattr block (at " +
                                    x.name + ", " + std::to_string(x.value.size()) + " bytes)");
      }
      if (err != 0) return Ext2Error(err, what + " (" + x.name + ")");
    }
    return h.Close().WithContext(what);
  }

  // Builds a directory's blocks from its records ("." and ".." first) and writes them and its
  // inode: linear when one block holds them (or min_blocks asks for spare room), else an htree.
  Status WriteDirInode(ext2_ino_t ino, ext2_inode_large& in, const std::vector<DirRecord>& records,
                       uint64_t min_blocks, const std::string& path) {
    std::vector<const DirRecord*> order;
    order.reserve(records.size());
    for (const DirRecord& r : records) order.push_back(&r);
    LAZYFS_ASSIGN_OR_RETURN(std::vector<std::byte> blocks,
                            PackDirLeaves(fs_, order, min_blocks, nullptr, path));
    if (blocks.size() > kBlockSize && min_blocks <= 1) {
      LAZYFS_ASSIGN_OR_RETURN(blocks, BuildIndexedDir(fs_, records, path));
      in.i_flags |= EXT2_INDEX_FL;
    }
    const uint64_t nblocks = blocks.size() / kBlockSize;

    std::vector<std::pair<blk64_t, blk64_t>> runs;
    LAZYFS_RETURN_IF_ERROR(Allocate(nblocks, runs, path));
    std::vector<Extent> extents;
    uint64_t lblk = 0;
    for (auto [pblk, plen] : runs) {
      for (blk64_t i = 0; i < plen; ++i) {
        // Sets the block's checksum (leaf tail or dx tail), then writes it.
        LAZYFS_EXT2_CHECK(
            ext2fs_write_dir_block4(fs_, pblk + i, blocks.data() + (lblk + i) * kBlockSize, 0, ino),
            "while writing directory " + path);
      }
      AddExtent(extents, lblk, pblk, plen);
      lblk += plen;
    }
    LAZYFS_EXT2_CHECK(
        ext2fs_inode_size_set(fs_, reinterpret_cast<ext2_inode*>(&in), nblocks * kBlockSize),
        "while sizing directory " + path);
    return WriteMappedInode(ino, in, extents, nblocks, path);
  }

  Status WriteDirectory(const TreeEntry& dir, uint64_t parent,
                        const std::vector<TreeEntry>& entries, bool add_lost_found) {
    const uint64_t tree_ino = dir.attr.ino;
    const std::string& path = dir.path;
    const ext2_ino_t ino = ExtIno(tree_ino);
    std::vector<DirRecord> records;
    records.reserve(entries.size() + 3);
    records.push_back({".", ino, EXT2_FT_DIR});
    records.push_back({"..", ExtIno(parent), EXT2_FT_DIR});
    uint64_t links = 2;
    if (add_lost_found) {
      records.push_back({"lost+found", kLostFoundIno, EXT2_FT_DIR});
      ++links;
    }
    for (const TreeEntry& e : entries) {
      const uint8_t ft = survey_.ftype[e.attr.ino];
      records.push_back({e.name, ExtIno(e.attr.ino), ft});
      if (ft == EXT2_FT_DIR) ++links;
    }
    // dir_nlink: a directory with too many subdirectories counts 1.
    ext2_inode_large in =
        InodeFromAttr(dir.attr, links > kMaxLinks ? 1 : static_cast<uint32_t>(links));
    ext2fs_inode_alloc_stats2(fs_, ino, +1, 1);
    LAZYFS_RETURN_IF_ERROR(WriteDirInode(ino, in, records, 1, path));
    return WriteXattrs(tree_ino, ino, path);
  }

  // Writes a non-directory inode (at its first name).
  Status WriteLeaf(const TreeEntry& e) {
    const uint64_t tree_ino = e.attr.ino;
    const Attr& a = e.attr;
    const std::string& path = e.path;
    const ext2_ino_t ino = ExtIno(tree_ino);
    if (FileType(a.mode) != survey_.ftype[tree_ino]) {
      return InternalError(path + ": the tree changed while it was being written");
    }
    ext2_inode_large in = InodeFromAttr(a, survey_.refs[tree_ino]);
    ext2fs_inode_alloc_stats2(fs_, ino, +1, 0);
    if (a.is_reg()) {
      LAZYFS_RETURN_IF_ERROR(WriteRegular(tree_ino, ino, a, in, path));
    } else if (a.is_symlink()) {
      LAZYFS_RETURN_IF_ERROR(WriteSymlink(tree_ino, ino, in, path));
    } else {
      if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
        // As the kernel's ext4: the old 8:8 encoding in i_block[0] when it fits, else the new
        // 12:20 encoding in i_block[1].
        if (a.rdev_major < 256 && a.rdev_minor < 256) {
          in.i_block[0] = ext2fs_cpu_to_le32((a.rdev_major << 8) | a.rdev_minor);
        } else {
          in.i_block[1] = ext2fs_cpu_to_le32((a.rdev_minor & 0xff) | (a.rdev_major << 8) |
                                             ((a.rdev_minor & ~0xffu) << 12));
        }
      }
      LAZYFS_RETURN_IF_ERROR(WriteInode(ino, in, path));
    }
    return WriteXattrs(tree_ino, ino, path);
  }

  Status WriteSymlink(uint64_t tree_ino, ext2_ino_t ino, ext2_inode_large& in,
                      const std::string& path) {
    LAZYFS_ASSIGN_OR_RETURN(std::string target, tree_.ReadLink(tree_ino));
    LAZYFS_EXT2_CHECK(ext2fs_inode_size_set(fs_, reinterpret_cast<ext2_inode*>(&in), target.size()),
                      "while sizing symlink " + path);
    if (target.size() <= kFastSymlinkMax) {
      // A fast symlink: the target lives in i_block, no blocks, no extents flag.
      std::memcpy(in.i_block, target.data(), target.size());
      return WriteInode(ino, in, path);
    }
    std::vector<std::byte> block(kBlockSize);
    std::memcpy(block.data(), target.data(), target.size());
    std::vector<Extent> extents;
    LAZYFS_RETURN_IF_ERROR(WriteRun(0, block.data(), 1, extents, path));
    return WriteMappedInode(ino, in, extents, 1, path);
  }

  Status WriteRegular(uint64_t tree_ino, ext2_ino_t ino, const Attr& a, ext2_inode_large& in,
                      const std::string& path) {
    // The readers follow the survey's order; a tree that answers differently now has changed.
    if (next_file_ >= content_.file_count() || content_.file(next_file_).ino != tree_ino ||
        content_.file(next_file_).size != a.size) {
      return InternalError(path + ": the tree changed while it was being written");
    }
    const size_t file = next_file_++;
    std::vector<Extent> extents;
    uint64_t data_blocks = 0;
    for (bool last = false; !last;) {
      ContentPiece piece = content_.Next(file);
      last = piece.last;
      const size_t blocks = DivCeil(piece.bytes, kBlockSize);
      const std::byte* data = piece.data.get();
      const uint64_t lblk0 = piece.offset / kBlockSize;
      for (size_t i = 0; i < blocks;) {
        if (IsZero(data + i * kBlockSize, kBlockSize)) {
          ++i;  // a hole
          continue;
        }
        size_t j = i + 1;
        while (j < blocks && !IsZero(data + j * kBlockSize, kBlockSize)) ++j;
        LAZYFS_RETURN_IF_ERROR(WriteRun(lblk0 + i, data + i * kBlockSize, j - i, extents, path));
        data_blocks += j - i;
        i = j;
      }
      if (piece.bytes > 0) {
        bytes_done_ += piece.bytes;
        if (progress_) {
          progress_(Progress{"write", path, bytes_done_, survey_.content_bytes});
        }
      }
      if (!piece.status.ok()) {
        // A read error, content ending early, or (after the last piece) a digest mismatch.
        if (!piece.needs_path) return piece.status;
        return Status(piece.status.code(), path + ": " + piece.status.message());
      }
      content_.Release(std::move(piece));
    }
    LAZYFS_EXT2_CHECK(ext2fs_inode_size_set(fs_, reinterpret_cast<ext2_inode*>(&in), a.size),
                      "while sizing " + path);
    return WriteMappedInode(ino, in, extents, data_blocks, path);
  }

  const index::Tree& tree_;
  ext2_filsys fs_;
  const Survey& survey_;
  ContentReader& content_;
  const ProgressFn& progress_;
  const int64_t fs_time_;
  std::vector<bool> written_;
  size_t next_file_ = 0;  // index into the readers' file order
  blk64_t goal_ = 0;      // allocation cursor
  uint64_t bytes_done_ = 0;
  uint64_t inodes_written_ = 0;
};

}  // namespace

Result<uint64_t> WriteInodes(const index::Tree& tree, ext2_filsys fs, const Survey& survey,
                             ContentReader& content, const Ext4Options& options,
                             const ProgressFn& progress, const std::string& context,
                             const std::function<Status()>& before_tree) {
  const int64_t fs_time = options.fs_time.value_or(survey.newest_mtime);
  Writer writer(tree, fs, survey, content, progress, fs_time);
  LAZYFS_RETURN_IF_ERROR(writer.WriteReserved().WithContext(context));
  LAZYFS_RETURN_IF_ERROR(before_tree());
  // A tree that brings its own /lost+found keeps it (the writer then leaves inode 11 unused).
  const bool add_lost_found = !survey.root_has_lost_found;
  if (add_lost_found) LAZYFS_RETURN_IF_ERROR(writer.WriteLostFound().WithContext(context));
  Status s = writer.WriteTree(add_lost_found);
  if (!s.ok()) {
    if (s.code() == StatusCode::kResourceExhausted && options.size_bytes != 0) {
      return ResourceExhaustedError("tree needs more than the " +
                                    std::to_string(options.size_bytes) +
                                    " bytes --size gives: " + s.message());
    }
    return s;
  }
  return writer.data_bytes();
}

}  // namespace lazyfs::convert
