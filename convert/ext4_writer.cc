// The ext4 writer: two passes over the tree, then libext2fs writes inodes straight into the image.
//
// Pass 1 (Survey) walks the tree from the root without reading content: it validates names and
// shapes, counts the references to every inode (the link counts the image will have), sizes the
// image and fingerprints the tree (the seed of the UUID when the caller gives none).
// Pass 2 (Writer) walks it again and writes every inode:
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
//   bytes do not depend on the number of readers. Whole zero blocks become holes. Extents are written into the inode
//   directly (<= 4) or through an extent handle (deeper trees).
// - inodes are written with ext2fs_write_inode_full from a fully built ext2_inode_large, so
//   libext2fs never substitutes "now" for a zero time or a crtime; every time comes from the tree
//   or from Ext4Options::fs_time (which is also fs->now, for the journal and superblock).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/digest.h"
#include "base/fd.h"
#include "convert/convert.h"
#include "convert/ext2fs_handle.h"
#include "convert/ext4_layout.h"
#include "convert/ext4_readahead.h"

namespace lazyfs::convert {
namespace {

using index::Attr;
using index::DirEntry;
using index::Tree;

constexpr uint32_t kMaxLinks = 65000;  // EXT4_LINK_MAX
constexpr uint32_t kMaxSymlink = kBlockSize - 1;
constexpr uint32_t kFastSymlinkMax = sizeof(ext2_inode::i_block) - 1;  // 59
constexpr uint64_t kMaxFileBlocks = (uint64_t{1} << 32) - 1;
// In-inode xattr space: 256-byte inode - 128 - i_extra_isize 32 - magic 4 - terminator 4.
constexpr uint64_t kInodeXattrSpace = kInodeSize - 128 - 32 - 8;

uint8_t FileType(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return EXT2_FT_REG_FILE;
    case S_IFDIR: return EXT2_FT_DIR;
    case S_IFCHR: return EXT2_FT_CHRDEV;
    case S_IFBLK: return EXT2_FT_BLKDEV;
    case S_IFIFO: return EXT2_FT_FIFO;
    case S_IFSOCK: return EXT2_FT_SOCK;
    case S_IFLNK: return EXT2_FT_SYMLINK;
  }
  return EXT2_FT_UNKNOWN;
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

uint64_t DivCeil(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

Status ValidateName(const std::string& dir, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.size() > EXT2_NAME_LEN ||
      name.find('/') != std::string::npos || name.find('\0') != std::string::npos) {
    return InvalidArgumentError("directory " + dir + " has an entry that is not a valid name: \"" +
                                name.substr(0, 300) + "\"");
  }
  return Status::Ok();
}

// Bytes an xattr takes in ext4's attribute area (entry header, name without its prefix, value).
uint64_t XattrSpace(const index::Xattr& x) {
  size_t name_len = x.name.size();
  for (std::string_view prefix : {"user.", "trusted.", "security."}) {
    if (x.name.starts_with(prefix)) name_len -= prefix.size();
  }
  return ((16 + name_len + 3) & ~size_t{3}) + ((x.value.size() + 3) & ~size_t{3});
}

// Appends fixed-width little-endian integers and length-prefixed strings to the fingerprint.
class Fingerprint {
 public:
  void Int(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    h_.Update(b, sizeof(b));
  }
  void Str(std::string_view s) {
    Int(s.size());
    h_.Update(s);
  }
  Digest Finish() { return h_.Finish(); }

 private:
  Sha256 h_;
};

// Pass 1's findings.
struct Survey {
  SpaceNeeds needs;
  std::vector<uint8_t> ftype;   // [tree ino]: EXT2_FT_* of reachable inodes, 0 if unreachable
  std::vector<uint32_t> refs;   // [tree ino]: names referring to it (its link count)
  bool root_has_lost_found = false;
  uint64_t inodes = 0;          // reachable tree inodes
  uint64_t content_bytes = 0;
  int64_t newest_mtime = 0;     // the default for the filesystem's own times
  Digest fingerprint;
  // Regular files at their first name, in the order the writer writes them (the same walk).
  std::vector<FileToRead> files;
};

Result<Survey> SurveyTree(const Tree& tree) {
  Survey s;
  const uint64_t n = tree.Stats().inodes;
  if (n < 1) return InvalidArgumentError("the tree has no root");
  s.ftype.assign(n + 1, 0);
  s.refs.assign(n + 1, 0);
  Fingerprint fp;

  // Records an inode's facts at its first name; returns its file type.
  auto visit_inode = [&](uint64_t ino, const std::string& path) -> Status {
    LAZYFS_ASSIGN_OR_RETURN(Attr a, tree.GetAttr(ino));
    const uint8_t ft = FileType(a.mode);
    if (ft == EXT2_FT_UNKNOWN) {
      return InvalidArgumentError(path + ": unsupported file type (mode 0" +
                                  std::to_string(a.mode) + ")");
    }
    s.ftype[ino] = ft;
    ++s.inodes;
    s.newest_mtime = std::max(s.newest_mtime, a.mtime_sec);
    fp.Int(ino);
    fp.Int(a.mode);
    fp.Int(a.uid);
    fp.Int(a.gid);
    fp.Int(a.size);
    fp.Int(static_cast<uint64_t>(a.mtime_sec));
    fp.Int(a.mtime_nsec);
    fp.Int(a.rdev_major);
    fp.Int(a.rdev_minor);
    if (a.is_reg()) {
      if (DivCeil(a.size, kBlockSize) > kMaxFileBlocks) {
        return InvalidArgumentError(path + ": " + std::to_string(a.size) +
                                    " bytes is more than ext4 holds in one file");
      }
      const uint64_t blocks = DivCeil(a.size, kBlockSize);
      s.needs.content_blocks += blocks;
      s.content_bytes += a.size;
      s.files.push_back({ino, a.size});
      // Extent tree blocks: none up to 4 extents in the inode, else at most one leaf per 340
      // extents, and a fragmented file has at most one extent per two blocks.
      if (blocks > 4) s.needs.other_blocks += 1 + blocks / 680;
      LAZYFS_ASSIGN_OR_RETURN(Digest d, tree.ContentDigest(ino));
      fp.Str(d.ToString());
    } else if (a.is_symlink()) {
      LAZYFS_ASSIGN_OR_RETURN(std::string target, tree.ReadLink(ino));
      if (target.empty() || target.size() > kMaxSymlink ||
          target.find('\0') != std::string::npos) {
        return InvalidArgumentError(path + ": symlink target of " +
                                    std::to_string(target.size()) +
                                    " bytes cannot be stored (1..4095 bytes, no NUL)");
      }
      if (target.size() > kFastSymlinkMax) ++s.needs.other_blocks;
      fp.Str(target);
    }
    LAZYFS_ASSIGN_OR_RETURN(std::vector<index::Xattr> xattrs, tree.ListXattrs(ino));
    uint64_t xattr_space = 0;
    for (const auto& x : xattrs) {
      if (x.name.empty() || x.name.find('\0') != std::string::npos || x.name.size() > 255) {
        return InvalidArgumentError(path + ": invalid xattr name \"" + x.name.substr(0, 300) +
                                    "\"");
      }
      xattr_space += XattrSpace(x);
      fp.Str(x.name);
      fp.Str(x.value);
    }
    if (xattr_space > kInodeXattrSpace) ++s.needs.other_blocks;
    return Status::Ok();
  };

  LAZYFS_ASSIGN_OR_RETURN(Attr root, tree.GetAttr(index::kRootIno));
  if (!root.is_dir()) return InvalidArgumentError("the tree's root is not a directory");
  LAZYFS_RETURN_IF_ERROR(visit_inode(index::kRootIno, "/"));

  struct Frame {
    uint64_t ino;
    std::string path;
  };
  std::vector<Frame> stack{{index::kRootIno, "/"}};
  while (!stack.empty()) {
    Frame f = std::move(stack.back());
    stack.pop_back();
    LAZYFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, tree.ReadDir(f.ino));
    DirPacker packer;
    bool unused;
    packer.Place(1, &unused);  // "."
    packer.Place(2, &unused);  // ".."
    if (f.ino == index::kRootIno) packer.Place(10, &unused);  // lost+found
    fp.Int(entries.size());
    std::vector<Frame> subdirs;
    for (const DirEntry& e : entries) {
      LAZYFS_RETURN_IF_ERROR(ValidateName(f.path, e.name));
      const std::string path = JoinPath(f.path, e.name);
      if (e.ino <= index::kRootIno || e.ino > n) {
        return InvalidArgumentError(path + ": inode " + std::to_string(e.ino) +
                                    " is out of range");
      }
      if (f.ino == index::kRootIno && e.name == "lost+found") s.root_has_lost_found = true;
      packer.Place(static_cast<uint32_t>(e.name.size()), &unused);
      fp.Str(e.name);
      fp.Int(e.ino);
      if (s.refs[e.ino]++ == 0) {
        LAZYFS_RETURN_IF_ERROR(visit_inode(e.ino, path));
        if (s.ftype[e.ino] == EXT2_FT_DIR) subdirs.push_back({e.ino, path});
      } else if (s.ftype[e.ino] == EXT2_FT_DIR) {
        return InvalidArgumentError(path + ": a directory with more than one name");
      } else if (s.refs[e.ino] > kMaxLinks) {
        return InvalidArgumentError(path + ": more than 65000 hardlinks to one file");
      }
    }
    if (packer.blocks() + packer.blocks() / 16 + 1 > kDxMaxLeaves) {
      return InvalidArgumentError(f.path + ": " + std::to_string(entries.size()) +
                                  " entries is more than a two-level htree holds");
    }
    s.needs.other_blocks += DirBlocks(packer.blocks());
    // Depth-first in name order: push in reverse so the first subdirectory comes out first.
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(std::move(*it));
  }
  s.needs.other_blocks += kLostFoundBlocks;
  // The highest ext4 inode number is tree inode n + 10.
  s.needs.inodes = n + kFirstIno;
  s.fingerprint = fp.Finish();
  return s;
}

bool IsZero(const std::byte* p, size_t len) {
  if (len == 0) return true;
  return p[0] == std::byte{0} && std::memcmp(p, p + 1, len - 1) == 0;
}

void SetTime(uint32_t& lo, uint32_t& extra, int64_t sec, uint32_t nsec) {
  // The kernel's encoding: the low 32 bits as a signed seconds field, and in `extra` two epoch
  // bits extending it (years up to 2446) plus the nanoseconds.
  lo = static_cast<uint32_t>(sec);
  const int64_t base = static_cast<int32_t>(lo);
  const uint32_t epoch = static_cast<uint32_t>(static_cast<uint64_t>(sec - base) >> 32) & 3;
  extra = epoch | (std::min<uint32_t>(nsec, 999'999'999) << 2);
}

struct Extent {
  uint64_t lblk;
  uint64_t pblk;
  uint32_t len;
};

class Writer {
 public:
  Writer(const Tree& tree, ext2_filsys fs, const Survey& survey, ContentReader& content,
         const ProgressFn& progress, int64_t fs_time)
      : tree_(tree), fs_(fs), survey_(survey), content_(content), progress_(progress),
        fs_time_(fs_time), written_(survey.ftype.size(), false) {}

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
  // directory's other children right after it.
  Status WriteTree(bool add_lost_found) {
    struct Frame {
      uint64_t ino;
      uint64_t parent;
      std::string path;
    };
    std::vector<Frame> stack{{index::kRootIno, index::kRootIno, "/"}};
    while (!stack.empty()) {
      Frame f = std::move(stack.back());
      stack.pop_back();
      LAZYFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, tree_.ReadDir(f.ino));
      for (const DirEntry& e : entries) {
        if (e.ino >= survey_.ftype.size() || survey_.ftype[e.ino] == EXT2_FT_UNKNOWN) {
          return InternalError(JoinPath(f.path, e.name) +
                               ": the tree changed while it was being written");
        }
      }
      std::vector<Frame> subdirs;
      LAZYFS_RETURN_IF_ERROR(WriteDirectory(f.ino, f.parent, f.path, entries,
                                            add_lost_found && f.ino == index::kRootIno));
      for (const DirEntry& e : entries) {
        const std::string path = JoinPath(f.path, e.name);
        if (survey_.ftype[e.ino] == EXT2_FT_DIR) {
          subdirs.push_back({e.ino, f.ino, path});
        } else if (!written_[e.ino]) {
          written_[e.ino] = true;
          LAZYFS_RETURN_IF_ERROR(WriteLeaf(e.ino, path));
        }
      }
      for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(std::move(*it));
    }
    return Status::Ok();
  }

  uint64_t inodes_written() const { return inodes_written_; }
  uint64_t data_bytes() const { return bytes_done_; }

 private:
  struct DirRecord {
    std::string_view name;
    ext2_ino_t ino;
    uint8_t ftype;
  };

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
    LAZYFS_EXT2_CHECK(ext2fs_write_inode_full(fs_, ino, reinterpret_cast<ext2_inode*>(&in),
                                              sizeof(in)),
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
    eh->eh_max = ext2fs_cpu_to_le16(
        (sizeof(in.i_block) - sizeof(ext3_extent_header)) / sizeof(ext3_extent));
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
      LAZYFS_EXT2_CHECK(
          ext2fs_extent_insert(h.get(), i == 0 ? 0 : EXT2_EXTENT_INSERT_AFTER, &e),
          "while mapping the blocks of " + path);
      LAZYFS_EXT2_CHECK(ext2fs_extent_fix_parents(h.get()),
                        "while mapping the blocks of " + path);
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

  // Packs records (in the given order) first-fit into leaf blocks with checksum tails; at least
  // min_blocks blocks, the spare ones empty. Returns the blocks and, per block, the index of its
  // first record.
  Result<std::vector<std::byte>> PackLeaves(std::span<const DirRecord* const> records,
                                            uint64_t min_blocks, std::vector<size_t>* firsts,
                                            const std::string& path) {
    DirPacker packer;
    std::vector<std::byte> blocks(kBlockSize);
    ext2_dir_entry* last = nullptr;
    // Stretches the block's last entry to the checksum tail, as the format requires.
    auto close_block = [&](ext2_dir_entry* d, uint64_t off) -> Status {
      const uint32_t in_block = static_cast<uint32_t>(off % kBlockSize);
      LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs_, DirPacker::kUsable - in_block, d),
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
      LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs_, DirRecLen(static_cast<uint32_t>(r.name.size())), d),
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
      ext2fs_initialize_dirent_tail(
          fs_, reinterpret_cast<ext2_dir_entry_tail*>(blocks.data() + (b + 1) * kBlockSize -
                                                      kDirTailSize));
    }
    return blocks;
  }

  // Builds an htree directory: block 0 is the root ("." and ".." and the index), then interior
  // nodes when the leaves outgrow the root, then the leaves in hash order. records[0..1] are
  // "." and "..".
  Result<std::vector<std::byte>> BuildIndexed(const std::vector<DirRecord>& records,
                                              const std::string& path) {
    struct Hashed {
      ext2_dirhash_t hash, minor;
      const DirRecord* rec;
    };
    // An unsigned-hash filesystem (set in WriteExt4) uses the *_UNSIGNED variant of the
    // superblock's default hash, as the kernel and e2fsck do.
    const int alg = fs_->super->s_def_hash_version + 3;
    const auto* seed = reinterpret_cast<const __u32*>(fs_->super->s_hash_seed);
    std::vector<Hashed> hashed;
    hashed.reserve(records.size() - 2);
    for (size_t i = 2; i < records.size(); ++i) {
      Hashed h{0, 0, &records[i]};
      LAZYFS_EXT2_CHECK(ext2fs_dirhash2(alg, records[i].name.data(),
                                        static_cast<int>(records[i].name.size()), nullptr, 0,
                                        seed, &h.hash, &h.minor),
                        "while hashing the names of directory " + path);
      hashed.push_back(h);
    }
    std::sort(hashed.begin(), hashed.end(), [](const Hashed& a, const Hashed& b) {
      if (a.hash != b.hash) return a.hash < b.hash;
      if (a.minor != b.minor) return a.minor < b.minor;
      return a.rec->name < b.rec->name;
    });
    std::vector<const DirRecord*> order;
    order.reserve(hashed.size());
    for (const Hashed& h : hashed) order.push_back(h.rec);
    std::vector<size_t> firsts;
    LAZYFS_ASSIGN_OR_RETURN(std::vector<std::byte> leaves, PackLeaves(order, 1, &firsts, path));
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

    // Writes count/limit and entries (block numbers, and hashes from the second on) at `at`.
    auto put_index = [](std::byte* at, uint16_t limit, const std::vector<uint32_t>& hashes,
                        const std::vector<uint32_t>& lblks) {
      auto* cl = reinterpret_cast<ext2_dx_countlimit*>(at);
      cl->limit = ext2fs_cpu_to_le16(limit);
      cl->count = ext2fs_cpu_to_le16(static_cast<uint16_t>(lblks.size()));
      auto* e = reinterpret_cast<ext2_dx_entry*>(at);
      for (size_t i = 0; i < lblks.size(); ++i) {
        if (i > 0) e[i].hash = ext2fs_cpu_to_le32(hashes[i]);
        e[i].block = ext2fs_cpu_to_le32(lblks[i]);
      }
    };
    std::vector<uint32_t> root_hashes, root_lblks;
    if (nnodes == 0) {
      for (uint64_t l = 0; l < nleaves; ++l) {
        root_hashes.push_back(keys[l]);
        root_lblks.push_back(static_cast<uint32_t>(first_leaf + l));
      }
    } else {
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
        LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs_, kBlockSize, fake),
                          "while building directory " + path);
        put_index(node + 8, kDxNodeLimit, hashes, lblks);
        root_hashes.push_back(keys[lo]);
        root_lblks.push_back(static_cast<uint32_t>(1 + n));
      }
    }
    std::byte* root = blocks.data();
    auto* dot = reinterpret_cast<ext2_dir_entry*>(root);
    dot->inode = records[0].ino;
    ext2fs_dirent_set_name_len(dot, 1);
    ext2fs_dirent_set_file_type(dot, EXT2_FT_DIR);
    dot->name[0] = '.';
    LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs_, 12, dot), "while building directory " + path);
    auto* dotdot = reinterpret_cast<ext2_dir_entry*>(root + 12);
    dotdot->inode = records[1].ino;
    ext2fs_dirent_set_name_len(dotdot, 2);
    ext2fs_dirent_set_file_type(dotdot, EXT2_FT_DIR);
    dotdot->name[0] = '.';
    dotdot->name[1] = '.';
    LAZYFS_EXT2_CHECK(ext2fs_set_rec_len(fs_, kBlockSize - 12, dotdot),
                      "while building directory " + path);
    auto* info = reinterpret_cast<ext2_dx_root_info*>(root + 24);
    info->reserved_zero = 0;
    info->hash_version = fs_->super->s_def_hash_version;
    info->info_length = 8;
    info->indirect_levels = nnodes == 0 ? 0 : 1;
    info->unused_flags = 0;
    put_index(root + 32, kDxRootLimit, root_hashes, root_lblks);
    return blocks;
  }

  // Builds a directory's blocks from its records ("." and ".." first) and writes them and its
  // inode: linear when one block holds them (or min_blocks asks for spare room), else an htree.
  Status WriteDirInode(ext2_ino_t ino, ext2_inode_large& in, const std::vector<DirRecord>& records,
                       uint64_t min_blocks, const std::string& path) {
    std::vector<const DirRecord*> order;
    order.reserve(records.size());
    for (const DirRecord& r : records) order.push_back(&r);
    LAZYFS_ASSIGN_OR_RETURN(std::vector<std::byte> blocks,
                            PackLeaves(order, min_blocks, nullptr, path));
    if (blocks.size() > kBlockSize && min_blocks <= 1) {
      LAZYFS_ASSIGN_OR_RETURN(blocks, BuildIndexed(records, path));
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
        LAZYFS_EXT2_CHECK(ext2fs_write_dir_block4(fs_, pblk + i,
                                                  blocks.data() + (lblk + i) * kBlockSize, 0, ino),
                          "while writing directory " + path);
      }
      AddExtent(extents, lblk, pblk, plen);
      lblk += plen;
    }
    LAZYFS_EXT2_CHECK(ext2fs_inode_size_set(fs_, reinterpret_cast<ext2_inode*>(&in),
                                            nblocks * kBlockSize),
                      "while sizing directory " + path);
    return WriteMappedInode(ino, in, extents, nblocks, path);
  }

  Status WriteDirectory(uint64_t tree_ino, uint64_t parent, const std::string& path,
                        const std::vector<DirEntry>& entries, bool add_lost_found) {
    const ext2_ino_t ino = ExtIno(tree_ino);
    LAZYFS_ASSIGN_OR_RETURN(Attr a, tree_.GetAttr(tree_ino));
    std::vector<DirRecord> records;
    records.reserve(entries.size() + 3);
    records.push_back({".", ino, EXT2_FT_DIR});
    records.push_back({"..", ExtIno(parent), EXT2_FT_DIR});
    uint64_t links = 2;
    if (add_lost_found) {
      records.push_back({"lost+found", kLostFoundIno, EXT2_FT_DIR});
      ++links;
    }
    for (const DirEntry& e : entries) {
      const uint8_t ft = survey_.ftype[e.ino];
      records.push_back({e.name, ExtIno(e.ino), ft});
      if (ft == EXT2_FT_DIR) ++links;
    }
    // dir_nlink: a directory with too many subdirectories counts 1.
    ext2_inode_large in =
        InodeFromAttr(a, links > kMaxLinks ? 1 : static_cast<uint32_t>(links));
    ext2fs_inode_alloc_stats2(fs_, ino, +1, 1);
    LAZYFS_RETURN_IF_ERROR(WriteDirInode(ino, in, records, 1, path));
    return WriteXattrs(tree_ino, ino, path);
  }

  // Writes a non-directory inode (at its first name).
  Status WriteLeaf(uint64_t tree_ino, const std::string& path) {
    const ext2_ino_t ino = ExtIno(tree_ino);
    LAZYFS_ASSIGN_OR_RETURN(Attr a, tree_.GetAttr(tree_ino));
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

  const Tree& tree_;
  ext2_filsys fs_;
  const Survey& survey_;
  ContentReader& content_;
  const ProgressFn& progress_;
  const int64_t fs_time_;
  std::vector<bool> written_;
  size_t next_file_ = 0;  // index into the readers' file order
  blk64_t goal_ = 0;  // allocation cursor
  uint64_t bytes_done_ = 0;
  uint64_t inodes_written_ = 0;
};

// The temporary image beside out_path; removed on destruction unless committed.
class TempImage {
 public:
  ~TempImage() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  Status Create(const std::string& out_path, uint64_t bytes) {
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
      char suffix[16];
      std::snprintf(suffix, sizeof(suffix), ".tmp-%08x", static_cast<unsigned>(rd()));
      std::string path = out_path + suffix;
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) {
        if (errno == EEXIST) continue;
        return ErrnoError(errno, "creating " + path);
      }
      fd_.Reset(fd);
      path_ = std::move(path);
      if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
        return ErrnoError(errno, "sizing " + path_ + " to " + std::to_string(bytes) + " bytes");
      }
      return Status::Ok();
    }
    return InternalError("could not find a free temporary name beside " + out_path);
  }
  const std::string& path() const { return path_; }
  // fsync, rename over out_path, fsync the directory.
  Status Commit(const std::string& out_path) {
    if (::fsync(fd_.get()) != 0) return ErrnoError(errno, "fsync " + path_);
    LAZYFS_RETURN_IF_ERROR(fd_.Close());
    if (::rename(path_.c_str(), out_path.c_str()) != 0) {
      return ErrnoError(errno, "renaming " + path_ + " to " + out_path);
    }
    path_.clear();
    const size_t slash = out_path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : out_path.substr(0, slash + 1);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);  // best effort: the image is complete either way
      ::close(dfd);
    }
    return Status::Ok();
  }

 private:
  std::string path_;
  Fd fd_;
};

void SetSuperTime(uint32_t& lo, uint8_t& hi, int64_t t) {
  lo = static_cast<uint32_t>(t);
  hi = static_cast<uint8_t>(static_cast<uint64_t>(t) >> 32);
}

}  // namespace

Result<Ext4Report> WriteExt4(const Tree& tree, const std::string& out_path,
                             const Ext4Options& options, const ProgressFn& progress) {
  if (options.label.size() > EXT2_LABEL_LEN) {
    return InvalidArgumentError("label \"" + options.label + "\" is longer than 16 bytes");
  }
  LAZYFS_ASSIGN_OR_RETURN(Survey survey, SurveyTree(tree));
  const double free_fraction = std::max(options.free_fraction, 0.0);

  const bool ro = options.read_only;
  uint64_t blocks = 0;
  const uint64_t needed = RequiredBlocks(survey.needs, free_fraction, 0, ro);
  if (options.size_bytes != 0) {
    blocks = options.size_bytes / kBlockSize;
    if (blocks < needed) {
      return ResourceExhaustedError("tree needs " + std::to_string(needed * kBlockSize) +
                                    " bytes, --size gives " +
                                    std::to_string(options.size_bytes));
    }
  } else {
    const uint64_t free_blocks =
        ro ? 0
           : static_cast<uint64_t>(static_cast<double>(survey.needs.content_blocks) *
                                   free_fraction);
    blocks = RequiredBlocks(survey.needs, free_fraction, free_blocks, ro);
  }
  if (blocks > (uint64_t{1} << 32) * kBlocksPerGroup) {
    return InvalidArgumentError("image of " + std::to_string(blocks) + " blocks is too large");
  }
  const int64_t fs_time = options.fs_time.value_or(survey.newest_mtime);

  TempImage temp;
  LAZYFS_RETURN_IF_ERROR(temp.Create(out_path, blocks * kBlockSize));
  // Readers start now, so fetching overlaps with laying out the filesystem; they are stopped
  // and joined when `content` goes out of scope, on every return path.
  unsigned threads = options.read_threads;
  if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 4u, 8u);
  ContentReader content(tree, std::move(survey.files), threads, options.read_window_bytes);
  const std::string ctx = "while writing " + temp.path();

  ext2_super_block param;
  std::memset(&param, 0, sizeof(param));
  ext2fs_blocks_count_set(&param, blocks);
  param.s_log_block_size = 2;  // 1024 << 2
  param.s_rev_level = EXT2_DYNAMIC_REV;
  param.s_inode_size = kInodeSize;
  param.s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
  param.s_log_groups_per_flex = 4;
  param.s_inodes_count = static_cast<uint32_t>(
      std::min<uint64_t>(InodesFor(blocks, survey.needs, free_fraction, ro), UINT32_MAX - 1));
  param.s_feature_compat = EXT2_FEATURE_COMPAT_EXT_ATTR | EXT2_FEATURE_COMPAT_DIR_INDEX;
  param.s_feature_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_EXTENTS |
                             EXT4_FEATURE_INCOMPAT_FLEX_BG | EXT4_FEATURE_INCOMPAT_64BIT;
  param.s_feature_ro_compat = EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER |
                              EXT2_FEATURE_RO_COMPAT_LARGE_FILE | EXT4_FEATURE_RO_COMPAT_HUGE_FILE |
                              EXT4_FEATURE_RO_COMPAT_DIR_NLINK |
                              EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE |
                              EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;

  ext2_filsys raw = nullptr;
  errcode_t err = ext2fs_initialize(temp.path().c_str(), EXT2_FLAG_RW | EXT2_FLAG_64BITS, &param,
                                    unix_io_manager, &raw);
  if (err != 0) return Ext2Error(err, "while creating the filesystem in " + temp.path());
  Ext2Fs fs(raw);
  if (fs->super->s_inodes_count < survey.needs.inodes) {
    return ResourceExhaustedError("tree needs " + std::to_string(survey.needs.inodes) +
                                  " inodes, an image of " + std::to_string(blocks * kBlockSize) +
                                  " bytes holds " + std::to_string(fs->super->s_inodes_count));
  }

  // Identity and times: the same tree (or seed) and options give the same bytes.
  const std::string seed_text =
      options.seed.empty() ? survey.fingerprint.ToString() : "seed:" + options.seed;
  const Digest uuid_digest = Sha256Of("lazyfs ext4 uuid\n" + seed_text);
  const Digest hash_digest = Sha256Of("lazyfs ext4 hash seed\n" + seed_text);
  uint8_t uuid[16];
  std::memcpy(uuid, uuid_digest.bytes().data(), 16);
  uuid[6] = static_cast<uint8_t>((uuid[6] & 0x0f) | 0x80);  // version 8: custom (RFC 9562)
  uuid[8] = static_cast<uint8_t>((uuid[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::memcpy(fs->super->s_uuid, uuid, 16);
  std::memcpy(fs->super->s_hash_seed, hash_digest.bytes().data(), 16);
  fs->super->s_def_hash_version = EXT2_HASH_HALF_MD4;
  // One fixed hash signedness, so the image does not depend on the host's char.
  fs->super->s_flags = (fs->super->s_flags & ~EXT2_FLAGS_SIGNED_HASH) | EXT2_FLAGS_UNSIGNED_HASH;
  fs->super->s_checksum_type = EXT2_CRC32C_CHKSUM;
  fs->super->s_max_mnt_count = -1;
  fs->super->s_default_mount_opts = EXT2_DEFM_XATTR_USER | EXT2_DEFM_ACL;
  std::memset(fs->super->s_volume_name, 0, sizeof(fs->super->s_volume_name));
  std::memcpy(fs->super->s_volume_name, options.label.data(), options.label.size());
  fs->now = static_cast<time_t>(fs_time);
  SetSuperTime(fs->super->s_mkfs_time, fs->super->s_mkfs_time_hi, fs_time);
  SetSuperTime(fs->super->s_lastcheck, fs->super->s_lastcheck_hi, fs_time);
  ext2fs_init_csum_seed(fs.get());

  LAZYFS_EXT2_CHECK(ext2fs_allocate_tables(fs.get()), ctx + ": allocating group tables");
  // The file was created empty, so inode tables already read as zeros.
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    ext2fs_bg_flags_set(fs.get(), g, EXT2_BG_INODE_ZEROED);
    ext2fs_group_desc_csum_set(fs.get(), g);
  }
  ext2fs_mark_super_dirty(fs.get());

  Writer writer(tree, fs.get(), survey, content, progress, fs_time);
  LAZYFS_RETURN_IF_ERROR(writer.WriteReserved().WithContext(ctx));
  if (!ro) {
    ext2fs_journal_params jp;
    LAZYFS_EXT2_CHECK(ext2fs_get_journal_params(&jp, fs.get()), ctx + ": sizing the journal");
    LAZYFS_EXT2_CHECK(ext2fs_add_journal_inode3(fs.get(), &jp, ~0ULL,
                                                EXT2_MKJOURNAL_LAZYINIT |
                                                    EXT2_MKJOURNAL_NO_MNT_CHECK),
                      ctx + ": adding the journal");
  }
  // A tree that brings its own /lost+found keeps it (the writer then leaves inode 11 unused).
  const bool add_lost_found = !survey.root_has_lost_found;
  if (add_lost_found) LAZYFS_RETURN_IF_ERROR(writer.WriteLostFound().WithContext(ctx));
  Status s = writer.WriteTree(add_lost_found);
  if (!s.ok()) {
    if (s.code() == StatusCode::kResourceExhausted && options.size_bytes != 0) {
      return ResourceExhaustedError("tree needs more than the " +
                                    std::to_string(options.size_bytes) +
                                    " bytes --size gives: " + s.message());
    }
    return s;
  }

  Ext4Report report;
  report.image_bytes = blocks * kBlockSize;
  report.inodes = survey.inodes;
  report.data_bytes = writer.data_bytes();
  report.free_bytes = ext2fs_free_blocks_count(fs->super) * kBlockSize;
  char uuid_text[37];
  std::snprintf(uuid_text, sizeof(uuid_text),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", uuid[0],
                uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6], uuid[7], uuid[8], uuid[9],
                uuid[10], uuid[11], uuid[12], uuid[13], uuid[14], uuid[15]);
  report.uuid = uuid_text;

  LAZYFS_RETURN_IF_ERROR(fs.Close().WithContext(ctx));
  LAZYFS_RETURN_IF_ERROR(temp.Commit(out_path));
  return report;
}

}  // namespace lazyfs::convert
