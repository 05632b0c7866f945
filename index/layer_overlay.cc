#include "index/layer_overlay.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include "base/fd.h"
#include "index/merge.h"

namespace lazyfs::index {
namespace {

// Content of the added layers by digest; nullopt for a file known only by its digest.
using AddedContent = std::map<Digest, std::optional<std::string>>;

// The base tree as the entries of one layer, parents before children.
struct Replay {
  std::vector<LayerEntry> entries;
  std::map<Digest, uint64_t> content;                 // digest -> a base inode with those bytes
  std::unordered_map<std::string, uint64_t> by_path;  // every name (relative) -> base inode
};

// One inode of the base as a layer entry at `path` (relative). A non-directory met again under
// another name becomes a hardlink to its first name.
Status ReplayEntry(const Tree& base, const TreeEntry& t, Replay& r,
                   std::unordered_map<uint64_t, std::string>& first_name) {
  const Attr& a = t.attr;
  LayerEntry e;
  e.path = t.path.substr(1);
  r.by_path.emplace(e.path, a.ino);
  e.mode = a.mode & 07777;
  e.uid = a.uid;
  e.gid = a.gid;
  e.mtime_sec = a.mtime_sec;
  e.mtime_nsec = a.mtime_nsec;
  if (!a.is_dir()) {
    auto [it, first] = first_name.emplace(a.ino, e.path);
    if (!first) {
      e.kind = EntryKind::kHardlink;
      e.link = it->second;
      r.entries.push_back(std::move(e));
      return Status::Ok();
    }
  }
  switch (a.mode & S_IFMT) {
    case S_IFDIR:
      e.kind = EntryKind::kDir;
      break;
    case S_IFREG: {
      e.kind = EntryKind::kFile;
      e.size = a.size;
      LAZYFS_ASSIGN_OR_RETURN(e.digest, base.ContentDigest(a.ino));
      r.content.emplace(e.digest, a.ino);
      break;
    }
    case S_IFLNK: {
      e.kind = EntryKind::kSymlink;
      LAZYFS_ASSIGN_OR_RETURN(e.link, base.ReadLink(a.ino));
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
      return UnimplementedError(t.path + ": this file type cannot be carried under an added layer");
  }
  e.rdev_major = a.rdev_major;
  e.rdev_minor = a.rdev_minor;
  LAZYFS_ASSIGN_OR_RETURN(e.xattrs, base.ListXattrs(a.ino));
  r.entries.push_back(std::move(e));
  return Status::Ok();
}

Result<Replay> ReplayTree(const Tree& base) {
  Replay r;
  std::unordered_map<uint64_t, std::string> first_name;
  LAZYFS_ASSIGN_OR_RETURN(TreeEntry root, RootEntry(base));
  LAZYFS_RETURN_IF_ERROR(ReplayEntry(base, root, r, first_name));
  LAZYFS_RETURN_IF_ERROR(
      WalkTree(base, root, [&](const TreeEntry&, const std::vector<TreeEntry>& entries) {
        for (const TreeEntry& t : entries) {
          LAZYFS_RETURN_IF_ERROR(ReplayEntry(base, t, r, first_name));
        }
        return Status::Ok();
      }));
  return r;
}

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
Result<std::vector<LayerEntry>> ReadTar(AddedTar& tar, const LayerReadOptions& options,
                                        AddedContent* content) {
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

// The merged tree of base + added layers. Immutable after construction, so thread-safe.
// inodes_[ino - 1]; a slot with attr.ino == 0 is a number no name reaches.
class LayeredTree : public Tree {
 public:
  LayeredTree(const Tree& base, MergedTree merged, std::map<Digest, uint64_t> base_content,
              AddedContent added_content)
      : base_(base),
        inodes_(std::move(merged.inodes)),
        stats_(merged.stats),
        base_content_(std::move(base_content)),
        added_content_(std::move(added_content)) {}

  Result<Attr> GetAttr(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    return m->attr;
  }
  Result<Attr> Lookup(uint64_t parent, std::string_view name) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(parent));
    if (!m->attr.is_dir()) return NotADirectoryError(Name(parent));
    auto it = std::lower_bound(m->children.begin(), m->children.end(), name,
                               [](const DirEntry& d, std::string_view n) { return d.name < n; });
    if (it == m->children.end() || it->name != name) return NotFoundError(std::string(name));
    return GetAttr(it->ino);
  }
  Result<std::vector<DirEntry>> ReadDir(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    if (!m->attr.is_dir()) return NotADirectoryError(Name(ino));
    return m->children;
  }
  Result<std::string> ReadLink(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    if (!m->attr.is_symlink()) return NotASymlinkError(Name(ino));
    return m->link;
  }
  Result<std::vector<Xattr>> ListXattrs(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    return m->xattrs;
  }
  Result<Digest> ContentDigest(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
    if (!m->attr.is_reg()) return NotARegularFileError(Name(ino));
    return m->digest;
  }
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override;
  Result<ContentLayout> Layout(uint64_t ino) const override;
  TreeStats Stats() const override { return stats_; }

 private:
  static std::string Name(uint64_t ino) { return "inode " + std::to_string(ino); }
  Result<const MergedInode*> Get(uint64_t ino) const {
    if (ino == 0 || ino > inodes_.size() || inodes_[ino - 1].attr.ino == 0) {
      return NotFoundError(Name(ino));
    }
    return &inodes_[ino - 1];
  }

  const Tree& base_;
  const std::vector<MergedInode> inodes_;
  const TreeStats stats_;
  const std::map<Digest, uint64_t> base_content_;
  const AddedContent added_content_;
};

Result<size_t> LayeredTree::Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const {
  LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
  if (m->attr.is_dir()) return IsADirectoryError(Name(ino));
  if (!m->attr.is_reg()) return NotARegularFileError(Name(ino));
  if (m->layer == 0) {  // the base tree's file (any base inode with this digest has the bytes)
    auto it = base_content_.find(m->digest);
    if (it == base_content_.end())
      return InternalError("no base inode for " + m->digest.ToString());
    return base_.Read(it->second, offset, out);
  }
  auto it = added_content_.find(m->digest);
  if (it == added_content_.end()) {
    return InternalError("no added content for " + m->digest.ToString());
  }
  if (!it->second) {
    return FailedPreconditionError(Name(ino) +
                                   ": a guest file known only by its digest cannot be read");
  }
  const std::string& data = *it->second;
  if (offset >= data.size()) return size_t{0};
  const size_t len = std::min<size_t>(out.size(), data.size() - offset);
  std::memcpy(out.data(), data.data() + offset, len);
  return len;
}

Result<Tree::ContentLayout> LayeredTree::Layout(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(const MergedInode* m, Get(ino));
  if (!m->attr.is_reg()) return NotARegularFileError(Name(ino));
  if (m->layer == 0) {
    auto it = base_content_.find(m->digest);
    if (it == base_content_.end()) return InternalError("no base inode for " + m->digest.ToString());
    return base_.Layout(it->second);
  }
  // An added file is held whole in memory; a sparse one (its digest the chunk list's) is
  // told by its digest.
  ContentLayout l;
  if (m->attr.size > 0) l.data.emplace_back(0, m->attr.size);
  auto it = added_content_.find(m->digest);
  if (m->attr.size > kContentChunkSize && it != added_content_.end() && it->second) {
    std::vector<Digest> chunks;
    for (uint64_t at = 0; at < it->second->size(); at += kContentChunkSize) {
      chunks.push_back(Sha256Of(std::string_view(*it->second).substr(at, kContentChunkSize)));
    }
    l.sparse = SparseFileDigest(m->attr.size, chunks) == m->digest;
  }
  return l;
}

// The top of a stack of trees, keeping the trees below it alive.
class Owning : public Tree {
 public:
  Owning(std::unique_ptr<Tree> below, std::unique_ptr<Tree> top)
      : below_(std::move(below)), top_(std::move(top)) {}
  Result<Attr> GetAttr(uint64_t ino) const override { return top_->GetAttr(ino); }
  Result<Attr> Lookup(uint64_t parent, std::string_view name) const override {
    return top_->Lookup(parent, name);
  }
  Result<std::vector<DirEntry>> ReadDir(uint64_t ino) const override { return top_->ReadDir(ino); }
  Result<std::string> ReadLink(uint64_t ino) const override { return top_->ReadLink(ino); }
  Result<std::vector<Xattr>> ListXattrs(uint64_t ino) const override {
    return top_->ListXattrs(ino);
  }
  Result<Digest> ContentDigest(uint64_t ino) const override { return top_->ContentDigest(ino); }
  Result<ContentLayout> Layout(uint64_t ino) const override { return top_->Layout(ino); }
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    return top_->Read(ino, offset, out);
  }
  TreeStats Stats() const override { return top_->Stats(); }

 private:
  const std::unique_ptr<Tree> below_;  // what top_ borrows
  const std::unique_ptr<Tree> top_;
};

// The --add files as one layer over `lower`, checked against what is below them first (the merge
// would quietly turn a file in a parent's place into a directory).
class GuestLayer {
 public:
  GuestLayer(const Tree& lower, int64_t mtime) : lower_(lower), mtime_(mtime) {}

  Status Add(const AddedFile& f) {
    const std::string& gp = f.guest_path;
    if (gp.empty() || gp[0] != '/' || gp == "/") {
      return InvalidArgumentError("guest path \"" + gp + "\" must be an absolute file path");
    }
    std::vector<std::string> parts;
    for (size_t at = 1; at <= gp.size();) {
      const size_t slash = std::min(gp.find('/', at), gp.size());
      std::string part = gp.substr(at, slash - at);
      if (part.empty() || part == "." || part == ".." || part.size() > 255) {
        return InvalidArgumentError("guest path \"" + gp + "\" has a bad component");
      }
      parts.push_back(std::move(part));
      at = slash + 1;
    }
    std::optional<uint64_t> lower_dir = kRootIno;  // the parent in `lower`, while it is there
    std::string path;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      path += (path.empty() ? "" : "/") + parts[i];
      LAZYFS_ASSIGN_OR_RETURN(std::optional<Attr> there, Below(lower_dir, path, parts[i]));
      if (there && !there->is_dir()) {
        return InvalidArgumentError("guest path \"" + gp + "\": " + parts[i] +
                                    " is not a directory in the image");
      }
      lower_dir = there && there->ino != 0 ? std::optional<uint64_t>(there->ino) : std::nullopt;
      if (!there) Emit(MakeDir(path), true);
    }
    path += (path.empty() ? "" : "/") + parts.back();
    LAZYFS_ASSIGN_OR_RETURN(std::optional<Attr> there, Below(lower_dir, path, parts.back()));
    if (there && there->is_dir()) {
      return InvalidArgumentError("guest path \"" + gp + "\" is a directory in the image");
    }
    LayerEntry e;
    e.kind = EntryKind::kFile;
    e.path = path;
    e.mode = f.mode & 07777;
    e.uid = f.uid;
    e.gid = f.gid;
    e.mtime_sec = mtime_;
    e.size = f.digest ? f.size : f.content.size();
    e.digest = f.digest ? *f.digest : Sha256Of(f.content);
    content_.emplace(e.digest, f.digest ? std::nullopt : std::optional<std::string>(f.content));
    Emit(std::move(e), false);
    return Status::Ok();
  }

  std::vector<LayerEntry>& entries() { return entries_; }
  AddedContent& content() { return content_; }
  // Relative path -> the number of the inode the layer made there last.
  const std::unordered_map<std::string, uint64_t>& numbers() const { return numbers_; }
  uint64_t created() const { return created_; }

 private:
  // What is at `path` (named `name` in the lower directory `lower_dir`) before this file: an
  // earlier addition (ino 0), the lower tree's entry, or nothing.
  Result<std::optional<Attr>> Below(std::optional<uint64_t> lower_dir, const std::string& path,
                                    const std::string& name) {
    if (auto it = added_dir_.find(path); it != added_dir_.end()) {
      Attr a;
      a.mode = it->second ? S_IFDIR : S_IFREG;
      return std::optional<Attr>(a);
    }
    if (!lower_dir) return std::optional<Attr>();
    Result<Attr> a = lower_.Lookup(*lower_dir, name);
    if (a.ok()) return std::optional<Attr>(*a);
    if (a.status().code() == StatusCode::kNotFound) return std::optional<Attr>();
    return a.status();
  }
  LayerEntry MakeDir(const std::string& path) const {
    LayerEntry e;
    e.kind = EntryKind::kDir;
    e.path = path;
    e.mode = 0755;
    e.mtime_sec = mtime_;
    return e;
  }
  void Emit(LayerEntry e, bool dir) {
    added_dir_[e.path] = dir;
    numbers_[e.path] = ++created_;
    entries_.push_back(std::move(e));
  }

  const Tree& lower_;
  const int64_t mtime_;
  std::vector<LayerEntry> entries_;
  AddedContent content_;
  std::unordered_map<std::string, bool> added_dir_;  // path -> is a directory
  std::unordered_map<std::string, uint64_t> numbers_;
  uint64_t created_ = 0;
};

// Renumbers `merged` (base replayed as layer 0, the guest layer as layer 1): a base inode gets
// its number in `base`, a new one lower_n + the order the guest layer made it in. Numbers of
// replaced additions stay unused.
Result<MergedTree> KeepNumbers(MergedTree merged, const Replay& replay, const GuestLayer& guest,
                               uint64_t lower_n) {
  MergedTree out;
  out.stats = merged.stats;
  out.stats.inodes = lower_n + guest.created();
  out.inodes.resize(out.stats.inodes);
  std::vector<uint64_t> number(merged.inodes.size() + 1, 0);
  // Depth-first over the merged tree: every inode is reached under some name.
  std::vector<std::pair<uint64_t, std::string>> stack{{kRootIno, ""}};
  while (!stack.empty()) {
    auto [ino, path] = std::move(stack.back());
    stack.pop_back();
    if (number[ino] != 0) continue;
    const MergedInode& m = merged.inodes[ino - 1];
    const auto& names = m.layer == 0 ? replay.by_path : guest.numbers();
    auto it = names.find(path);
    if (it == names.end()) return InternalError("no inode number for \"/" + path + "\"");
    number[ino] = m.layer == 0 ? it->second : lower_n + it->second;
    if (number[ino] == 0 || number[ino] > out.inodes.size()) {
      return InternalError("inode number out of range for \"/" + path + "\"");
    }
    for (const DirEntry& c : m.children) {
      stack.emplace_back(c.ino, path.empty() ? c.name : path + "/" + c.name);
    }
  }
  for (uint64_t ino = 1; ino <= merged.inodes.size(); ++ino) {
    MergedInode m = std::move(merged.inodes[ino - 1]);
    m.attr.ino = number[ino];
    for (DirEntry& c : m.children) c.ino = number[c.ino];
    out.inodes[number[ino] - 1] = std::move(m);
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Tree>> WithGuestFiles(const Tree& base, const std::vector<AddedFile>& files,
                                             int64_t mtime) {
  GuestLayer guest(base, mtime);
  for (const AddedFile& f : files) LAZYFS_RETURN_IF_ERROR(guest.Add(f));
  LAZYFS_ASSIGN_OR_RETURN(Replay replay, ReplayTree(base));
  std::vector<std::vector<LayerEntry>> layers(2);
  layers[0] = std::move(replay.entries);
  layers[1] = std::move(guest.entries());
  Result<MergedTree> merged = MergeLayers(layers);
  if (!merged.ok()) return merged.status().WithContext("while adding the --add files");
  LAZYFS_ASSIGN_OR_RETURN(MergedTree numbered,
                          KeepNumbers(std::move(*merged), replay, guest, base.Stats().inodes));
  return std::unique_ptr<Tree>(std::make_unique<LayeredTree>(
      base, std::move(numbered), std::move(replay.content), std::move(guest.content())));
}

Result<std::unique_ptr<Tree>> WithLayerTars(const Tree& base, std::vector<AddedTar>& tars,
                                            const LayerReadOptions& options) {
  std::vector<std::vector<LayerEntry>> layers;
  AddedContent tar_content;
  LAZYFS_ASSIGN_OR_RETURN(Replay replay, ReplayTree(base));
  layers.push_back(std::move(replay.entries));
  for (AddedTar& tar : tars) {
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
      base, std::move(*merged), std::move(replay.content), std::move(tar_content)));
}

Result<std::unique_ptr<Tree>> WithAdditions(const Tree& base, TreeAdditions& additions) {
  // Two stacks, not one: the tars give dense numbers as image layers do, then the files keep them.
  std::unique_ptr<Tree> tarred;
  const Tree* below = &base;
  if (!additions.tars.empty()) {
    LayerReadOptions ro;
    ro.max_uncompressed_bytes = additions.max_tar_bytes;  // tar content is held in memory
    LAZYFS_ASSIGN_OR_RETURN(tarred, WithLayerTars(base, additions.tars, ro));
    below = tarred.get();
  }
  if (additions.files.empty()) {
    if (tarred) return tarred;
    return InvalidArgumentError("no additions to apply");
  }
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<Tree> top,
                          WithGuestFiles(*below, additions.files, additions.files_mtime));
  if (!tarred) return top;
  return std::unique_ptr<Tree>(std::make_unique<Owning>(std::move(tarred), std::move(top)));
}

}  // namespace lazyfs::index
