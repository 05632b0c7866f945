// Pass 1 of the ext4 writer: the survey, and the image size it gives.
//
// The survey walks the tree (index::WalkTree, the order the writer writes in) without reading
// content: it validates names and shapes, counts the references to every inode (the link counts
// the image will have), adds up the space everything takes and fingerprints the tree (the seed
// of the UUID when the caller gives none).
#include <sys/stat.h>

#include <algorithm>

#include "convert/ext4_writer.h"

namespace lazyfs::convert {
namespace {

using index::Attr;
using index::TreeEntry;

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

class Surveyor {
 public:
  explicit Surveyor(const index::Tree& tree) : tree_(tree), n_(tree.Stats().inodes) {}

  Result<Survey> Run() {
    if (n_ < 1) return InvalidArgumentError("the tree has no root");
    s_.ftype.assign(n_ + 1, 0);
    s_.refs.assign(n_ + 1, 0);
    LAZYFS_ASSIGN_OR_RETURN(TreeEntry root, index::RootEntry(tree_));
    if (!root.attr.is_dir()) return InvalidArgumentError("the tree's root is not a directory");
    LAZYFS_RETURN_IF_ERROR(VisitInode(index::kRootIno, root.attr, "/"));
    LAZYFS_RETURN_IF_ERROR(index::WalkTree(
        tree_, root, [this](const TreeEntry& dir, const std::vector<TreeEntry>& entries) {
          return VisitDir(dir, entries);
        }));
    s_.needs.other_blocks += kLostFoundBlocks;
    // The highest ext4 inode number is tree inode n + 10.
    s_.needs.inodes = n_ + kFirstIno;
    s_.fingerprint = fp_.Finish();
    return std::move(s_);
  }

 private:
  // A directory's names: each checked and counted, its inode visited at its first name.
  Status VisitDir(const TreeEntry& dir, const std::vector<TreeEntry>& entries) {
    const bool root = dir.attr.ino == index::kRootIno;
    DirPacker packer;
    bool unused;
    packer.Place(1, &unused);             // "."
    packer.Place(2, &unused);             // ".."
    if (root) packer.Place(10, &unused);  // lost+found
    fp_.Int(entries.size());
    for (const TreeEntry& e : entries) {
      LAZYFS_RETURN_IF_ERROR(ValidateName(dir.path, e.name));
      const uint64_t ino = e.attr.ino;
      if (ino <= index::kRootIno || ino > n_) {
        return InvalidArgumentError(e.path + ": inode " + std::to_string(ino) + " is out of range");
      }
      if (root && e.name == "lost+found") s_.root_has_lost_found = true;
      packer.Place(static_cast<uint32_t>(e.name.size()), &unused);
      fp_.Str(e.name);
      fp_.Int(ino);
      if (s_.refs[ino]++ == 0) {
        LAZYFS_RETURN_IF_ERROR(VisitInode(ino, e.attr, e.path));
      } else if (s_.ftype[ino] == EXT2_FT_DIR) {
        return InvalidArgumentError(e.path + ": a directory with more than one name");
      } else if (s_.refs[ino] > kMaxLinks) {
        return InvalidArgumentError(e.path + ": more than 65000 hardlinks to one file");
      }
    }
    if (packer.blocks() + packer.blocks() / 16 + 1 > kDxMaxLeaves) {
      return InvalidArgumentError(dir.path + ": " + std::to_string(entries.size()) +
                                  " entries is more than a two-level htree holds");
    }
    s_.needs.other_blocks += DirBlocks(packer.blocks());
    return Status::Ok();
  }

  // Records an inode's facts at its first name.
  Status VisitInode(uint64_t ino, const Attr& a, const std::string& path) {
    const uint8_t ft = FileType(a.mode);
    if (ft == EXT2_FT_UNKNOWN) {
      return InvalidArgumentError(path + ": unsupported file type (mode 0" +
                                  std::to_string(a.mode) + ")");
    }
    s_.ftype[ino] = ft;
    ++s_.inodes;
    s_.newest_mtime = std::max(s_.newest_mtime, a.mtime().sec);
    for (uint64_t v : {ino, uint64_t{a.mode}, uint64_t{a.uid}, uint64_t{a.gid}, a.size,
                       static_cast<uint64_t>(a.mtime_sec), uint64_t{a.mtime_nsec},
                       uint64_t{a.rdev_major}, uint64_t{a.rdev_minor}}) {
      fp_.Int(v);
    }
    if (a.is_reg()) {
      LAZYFS_RETURN_IF_ERROR(VisitFile(ino, a, path));
    } else if (a.is_symlink()) {
      LAZYFS_ASSIGN_OR_RETURN(std::string target, tree_.ReadLink(ino));
      if (target.empty() || target.size() > kMaxSymlink || target.find('\0') != std::string::npos) {
        return InvalidArgumentError(path + ": symlink target of " + std::to_string(target.size()) +
                                    " bytes cannot be stored (1..4095 bytes, no NUL)");
      }
      if (target.size() > kFastSymlinkMax) ++s_.needs.other_blocks;
      fp_.Str(target);
    }
    return VisitXattrs(ino, path);
  }

  Status VisitFile(uint64_t ino, const Attr& a, const std::string& path) {
    if (DivCeil(a.size, kBlockSize) > kMaxFileBlocks) {
      return InvalidArgumentError(path + ": " + std::to_string(a.size) +
                                  " bytes is more than ext4 holds in one file");
    }
    FileToRead f{ino, a.size, false, {}};
    // A sparse file costs the blocks of its data only: its holes stay holes in the image.
    uint64_t blocks = DivCeil(a.size, kBlockSize), bytes = a.size;
    if (a.size > index::kContentChunkSize) {
      LAZYFS_ASSIGN_OR_RETURN(index::Tree::ContentLayout layout, tree_.Layout(ino));
      if (layout.sparse) {
        f.sparse = true;
        f.data = std::move(layout.data);
        blocks = bytes = 0;
        for (const auto& [start, end] : f.data) {
          blocks += DivCeil(end, kBlockSize) - start / kBlockSize;
          bytes += end - start;
        }
        s_.needs.other_blocks += 1 + f.data.size() / 340;  // an extent per data run, at most
      }
    }
    s_.needs.content_blocks += blocks;
    s_.content_bytes += bytes;
    s_.files.push_back(std::move(f));
    // Extent tree blocks: none up to 4 extents in the inode, else at most one leaf per 340
    // extents, and a fragmented file has at most one extent per two blocks.
    if (blocks > 4) s_.needs.other_blocks += 1 + blocks / 680;
    LAZYFS_ASSIGN_OR_RETURN(Digest d, tree_.ContentDigest(ino));
    fp_.Str(d.ToString());
    return Status::Ok();
  }

  Status VisitXattrs(uint64_t ino, const std::string& path) {
    LAZYFS_ASSIGN_OR_RETURN(std::vector<index::Xattr> xattrs, tree_.ListXattrs(ino));
    uint64_t xattr_space = 0;
    for (const auto& x : xattrs) {
      if (x.name.empty() || x.name.find('\0') != std::string::npos || x.name.size() > 255) {
        return InvalidArgumentError(path + ": invalid xattr name \"" + x.name.substr(0, 300) +
                                    "\"");
      }
      xattr_space += XattrSpace(x);
      fp_.Str(x.name);
      fp_.Str(x.value);
    }
    if (xattr_space > kInodeXattrSpace) ++s_.needs.other_blocks;
    return Status::Ok();
  }

  const index::Tree& tree_;
  const uint64_t n_;
  Survey s_;
  Fingerprint fp_;
};

}  // namespace

uint8_t FileType(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return EXT2_FT_REG_FILE;
    case S_IFDIR:
      return EXT2_FT_DIR;
    case S_IFCHR:
      return EXT2_FT_CHRDEV;
    case S_IFBLK:
      return EXT2_FT_BLKDEV;
    case S_IFIFO:
      return EXT2_FT_FIFO;
    case S_IFSOCK:
      return EXT2_FT_SOCK;
    case S_IFLNK:
      return EXT2_FT_SYMLINK;
  }
  return EXT2_FT_UNKNOWN;
}

Result<Survey> SurveyTree(const index::Tree& tree) { return Surveyor(tree).Run(); }

Result<uint64_t> ImageBlocks(const Survey& survey, const Ext4Options& options) {
  const double free_fraction = std::max(options.free_fraction, 0.0);
  const bool ro = options.read_only;
  uint64_t blocks = 0;
  const uint64_t needed = RequiredBlocks(survey.needs, free_fraction, 0, ro);
  if (options.size_bytes != 0) {
    blocks = options.size_bytes / kBlockSize;
    if (blocks < needed) {
      return ResourceExhaustedError("tree needs " + std::to_string(needed * kBlockSize) +
                                    " bytes, --size gives " + std::to_string(options.size_bytes));
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
  return blocks;
}

}  // namespace lazyfs::convert
