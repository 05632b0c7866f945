#include "index/layer_overlay.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <unordered_map>

#include "base/fd.h"
#include "index/merge.h"

namespace lazyfs::index {
namespace {

// Replays `base` as the entries of one layer, parents before children, in name order. A
// non-directory inode reached again under another name becomes a hardlink to its first name.
class BaseReplay {
 public:
  explicit BaseReplay(const Tree& base) : base_(base) {}

  Result<std::vector<LayerEntry>> Run(std::map<Digest, uint64_t>* content) {
    LAZYFS_ASSIGN_OR_RETURN(Attr root, base_.GetAttr(kRootIno));
    LAZYFS_RETURN_IF_ERROR(Visit(root, "", content));
    return std::move(out_);
  }

 private:
  Status Visit(const Attr& a, const std::string& path, std::map<Digest, uint64_t>* content) {
    LayerEntry e;
    e.path = path;
    e.mode = a.mode & 07777;
    e.uid = a.uid;
    e.gid = a.gid;
    e.mtime_sec = a.mtime_sec;
    e.mtime_nsec = a.mtime_nsec;
    if (!a.is_dir()) {
      auto [it, first] = first_name_.emplace(a.ino, path);
      if (!first) {
        e.kind = EntryKind::kHardlink;
        e.link = it->second;
        out_.push_back(std::move(e));
        return Status::Ok();
      }
    }
    const std::string shown = "/" + path;
    switch (a.mode & S_IFMT) {
      case S_IFDIR:
        e.kind = EntryKind::kDir;
        break;
      case S_IFREG: {
        e.kind = EntryKind::kFile;
        e.size = a.size;
        LAZYFS_ASSIGN_OR_RETURN(e.digest, base_.ContentDigest(a.ino));
        content->emplace(e.digest, a.ino);
        break;
      }
      case S_IFLNK: {
        e.kind = EntryKind::kSymlink;
        LAZYFS_ASSIGN_OR_RETURN(e.link, base_.ReadLink(a.ino));
        break;
      }
      case S_IFCHR:
        e.kind = EntryKind::kCharDev;
        break;
      case S_IFBLK:
        e.kind = EntryKind::kBlockDev;
        break;
      case S_IFIFO:
        e.kind = EntryKind::kFifo;
        break;
      default:
        return UnimplementedError(shown +
                                  ": this file type cannot be carried under an added layer");
    }
    e.rdev_major = a.rdev_major;
    e.rdev_minor = a.rdev_minor;
    LAZYFS_ASSIGN_OR_RETURN(e.xattrs, base_.ListXattrs(a.ino));
    const bool dir = e.kind == EntryKind::kDir;
    out_.push_back(std::move(e));
    if (!dir) return Status::Ok();
    LAZYFS_ASSIGN_OR_RETURN(std::vector<DirEntry> children, base_.ReadDir(a.ino));
    for (const DirEntry& c : children) {
      LAZYFS_ASSIGN_OR_RETURN(Attr ca, base_.GetAttr(c.ino));
      LAZYFS_RETURN_IF_ERROR(Visit(ca, path.empty() ? c.name : path + "/" + c.name, content));
    }
    return Status::Ok();
  }

  const Tree& base_;
  std::unordered_map<uint64_t, std::string> first_name_;
  std::vector<LayerEntry> out_;
};

LayerCompression Sniff(int fd) {
  unsigned char m[4] = {};
  const ssize_t n = ::pread(fd, m, sizeof(m), 0);
  if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b) return LayerCompression::kGzip;
  if (n == 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd) {
    return LayerCompression::kZstd;
  }
  return LayerCompression::kNone;
}

// Reads one tar's entries, keeping each regular file's content under its digest.
Result<std::vector<LayerEntry>> ReadTar(OverlayTar& tar, const LayerReadOptions& options,
                                        std::map<Digest, std::string>* content) {
  LAZYFS_ASSIGN_OR_RETURN(Fd fd, OpenFile(tar.path, O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat " + tar.path);
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(tar.path + " is not a regular file");
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<LayerReader> reader,
                          LayerReader::Open(fd.get(), static_cast<uint64_t>(st.st_size),
                                            Sniff(fd.get()), options, tar.path));
  std::vector<LayerEntry> entries;
  LayerEntry e;
  // Content is held in memory: capped like the uncompressed stream, since the holes of a sparse
  // entry come out as zeros without being in the stream. Header sizes are not trusted.
  uint64_t held = 0;
  const uint64_t cap = options.max_uncompressed_bytes;
  for (;;) {
    LAZYFS_ASSIGN_OR_RETURN(bool more, reader->Next(&e));
    if (!more) break;
    if (e.kind == EntryKind::kFile) {
      std::string data;
      data.reserve(std::min<uint64_t>(e.size, 64 << 20));
      LAZYFS_ASSIGN_OR_RETURN(e.digest, reader->ReadData([&](const char* p, size_t n) {
        held += n;
        if (held > cap) {
          return ResourceExhaustedError(tar.path + ": entry \"" + e.path + "\": over " +
                                        std::to_string(cap) + " bytes of file content");
        }
        data.append(p, n);
        return Status::Ok();
      }));
      content->emplace(e.digest, std::move(data));
    }
    entries.push_back(std::move(e));
    e = LayerEntry{};
  }
  LAZYFS_ASSIGN_OR_RETURN(tar.sha256, reader->Finish());
  return entries;
}

// The wrong file type, with the errno FUSE would answer (as the stored tree does).
Status NotA(int err, std::string what) {
  return Status(StatusCode::kFailedPrecondition, std::move(what), err);
}

// The merged tree of base + tars. Immutable after construction, so thread-safe.
class LayeredTree : public Tree {
 public:
  LayeredTree(const Tree& base, MergedTree merged, std::map<Digest, uint64_t> base_content,
              std::map<Digest, std::string> tar_content)
      : base_(base),
        merged_(std::move(merged)),
        base_content_(std::move(base_content)),
        tar_content_(std::move(tar_content)) {}

  Result<Attr> GetAttr(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    return m->attr;
  }
  Result<Attr> Lookup(uint64_t parent, std::string_view name) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(parent));
    if (!m->attr.is_dir()) return NotA(ENOTDIR, "not a directory");
    auto it = std::lower_bound(m->children.begin(), m->children.end(), name,
                               [](const DirEntry& d, std::string_view n) { return d.name < n; });
    if (it == m->children.end() || it->name != name) return NotFoundError(std::string(name));
    return GetAttr(it->ino);
  }
  Result<std::vector<DirEntry>> ReadDir(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    if (!m->attr.is_dir()) return NotA(ENOTDIR, "not a directory");
    return m->children;
  }
  Result<std::string> ReadLink(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    if (!m->attr.is_symlink()) return NotA(EINVAL, "not a symlink");
    return m->link;
  }
  Result<std::vector<Xattr>> ListXattrs(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    return m->xattrs;
  }
  Result<Digest> ContentDigest(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    if (!m->attr.is_reg()) return NotA(EINVAL, "not a file");
    return m->digest;
  }
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    if (!m->attr.is_reg()) return NotA(EINVAL, "not a file");
    if (m->layer == 0) {  // the base tree's file (any base inode with this digest has the bytes)
      auto it = base_content_.find(m->digest);
      if (it == base_content_.end())
        return InternalError("no base inode for " + m->digest.ToString());
      return base_.Read(it->second, offset, out);
    }
    auto it = tar_content_.find(m->digest);
    if (it == tar_content_.end())
      return InternalError("no tar content for " + m->digest.ToString());
    const std::string& data = it->second;
    if (offset >= data.size()) return size_t{0};
    const size_t len = std::min<size_t>(out.size(), data.size() - offset);
    std::memcpy(out.data(), data.data() + offset, len);
    return len;
  }
  TreeStats Stats() const override { return merged_.stats; }

 private:
  Result<const MergedInode*> Get(uint64_t ino) const {
    if (ino == 0 || ino > merged_.inodes.size())
      return NotFoundError("inode " + std::to_string(ino));
    return &merged_.inodes[ino - 1];
  }

  const Tree& base_;
  const MergedTree merged_;
  const std::map<Digest, uint64_t> base_content_;
  const std::map<Digest, std::string> tar_content_;
};

}  // namespace

Result<std::unique_ptr<Tree>> WithLayerTars(const Tree& base, std::vector<OverlayTar>& tars,
                                            const LayerReadOptions& options) {
  std::vector<std::vector<LayerEntry>> layers;
  std::map<Digest, uint64_t> base_content;
  std::map<Digest, std::string> tar_content;
  LAZYFS_ASSIGN_OR_RETURN(std::vector<LayerEntry> replay, BaseReplay(base).Run(&base_content));
  layers.push_back(std::move(replay));
  for (OverlayTar& tar : tars) {
    LAZYFS_ASSIGN_OR_RETURN(std::vector<LayerEntry> entries, ReadTar(tar, options, &tar_content));
    layers.push_back(std::move(entries));
  }
  Result<MergedTree> merged = MergeLayers(layers);
  if (!merged.ok()) {
    // MergeLayers counts layers from 1, and layer 1 here is the image's merged tree.
    return merged.status().WithContext(
        "while applying the added tars over the image (layer 1 is the image, layer N the "
        "(N-1)th tar)");
  }
  return std::unique_ptr<Tree>(std::make_unique<LayeredTree>(
      base, std::move(*merged), std::move(base_content), std::move(tar_content)));
}

}  // namespace lazyfs::index
