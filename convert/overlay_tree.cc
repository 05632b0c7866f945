// A Tree with guest additions on top of another: one more layer, applied in memory.
//
// Directories the additions touch get their own entry lists (copied from the base on first
// touch); new files and directories get inode numbers after the base's, so the writer's inode
// arithmetic still holds. Everything else is forwarded to the base tree. Replaced or removed base
// inodes simply become unreachable: the writer writes only what it reaches from the root and
// counts links from the names it finds.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "base/digest.h"
#include "convert/convert.h"

namespace lazyfs::convert {
namespace {

using index::Attr;
using index::DirEntry;

class OverlayTree : public index::Tree {
 public:
  explicit OverlayTree(const index::Tree& base) : base_(base), base_n_(base.Stats().inodes) {}

  Status Add(const GuestFile& f, int64_t mtime) {
    if (f.guest_path.empty() || f.guest_path[0] != '/' || f.guest_path == "/") {
      return InvalidArgumentError("guest path \"" + f.guest_path + "\" must be an absolute file path");
    }
    std::vector<std::string> parts;
    size_t at = 1;
    while (at <= f.guest_path.size()) {
      size_t slash = f.guest_path.find('/', at);
      if (slash == std::string::npos) slash = f.guest_path.size();
      std::string part = f.guest_path.substr(at, slash - at);
      if (part.empty() || part == "." || part == ".." || part.size() > 255) {
        return InvalidArgumentError("guest path \"" + f.guest_path + "\" has a bad component");
      }
      parts.push_back(std::move(part));
      at = slash + 1;
    }
    uint64_t dir = index::kRootIno;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      LAZYFS_ASSIGN_OR_RETURN(auto* entries, Entries(dir));
      auto it = entries->find(parts[i]);
      if (it != entries->end() && S_ISDIR(it->second.mode)) {
        dir = it->second.ino;
        continue;
      }
      if (it != entries->end()) {
        return InvalidArgumentError("guest path \"" + f.guest_path + "\": " + parts[i] +
                                    " is not a directory in the image");
      }
      Attr a;
      a.mode = S_IFDIR | 0755;
      a.nlink = 2;
      a.mtime_sec = mtime;
      const uint64_t ino = NewInode(a, "", std::nullopt);
      (*entries)[parts[i]] = DirEntry{parts[i], ino, a.mode};
      dirs_[ino];  // a new, empty directory
      Bump(dir, +1);  // its ".."
      dir = ino;
    }
    LAZYFS_ASSIGN_OR_RETURN(auto* entries, Entries(dir));
    auto it = entries->find(parts.back());
    if (it != entries->end() && S_ISDIR(it->second.mode)) {
      return InvalidArgumentError("guest path \"" + f.guest_path + "\" is a directory in the image");
    }
    Attr a;
    a.mode = S_IFREG | (f.mode & 07777);
    a.uid = f.uid;
    a.gid = f.gid;
    a.size = f.digest ? f.size : f.content.size();
    a.mtime_sec = mtime;
    const uint64_t ino = NewInode(a, f.content, f.digest);
    if (it != entries->end()) Bump(it->second.ino, -1);  // a hardlinked file loses this name
    (*entries)[parts.back()] = DirEntry{parts.back(), ino, a.mode};
    return Status::Ok();
  }

  Result<Attr> GetAttr(uint64_t ino) const override {
    if (const Node* n = Local(ino)) return n->attr;
    LAZYFS_ASSIGN_OR_RETURN(Attr a, base_.GetAttr(ino));
    if (auto d = nlink_delta_.find(ino); d != nlink_delta_.end()) {
      a.nlink = static_cast<uint32_t>(static_cast<int64_t>(a.nlink) + d->second);
    }
    return a;
  }
  Result<Attr> Lookup(uint64_t parent, std::string_view name) const override {
    auto d = dirs_.find(parent);
    if (d == dirs_.end()) return base_.Lookup(parent, name);
    auto it = d->second.find(std::string(name));
    if (it == d->second.end()) return NotFoundError(std::string(name));
    return GetAttr(it->second.ino);
  }
  Result<std::vector<DirEntry>> ReadDir(uint64_t ino) const override {
    auto d = dirs_.find(ino);
    if (d == dirs_.end()) return base_.ReadDir(ino);
    std::vector<DirEntry> out;
    for (const auto& [name, e] : d->second) out.push_back(e);
    return out;
  }
  Result<std::string> ReadLink(uint64_t ino) const override {
    if (Local(ino)) return InvalidArgumentError("not a symlink");
    return base_.ReadLink(ino);
  }
  Result<std::vector<index::Xattr>> ListXattrs(uint64_t ino) const override {
    if (Local(ino)) return std::vector<index::Xattr>{};
    return base_.ListXattrs(ino);
  }
  Result<Digest> ContentDigest(uint64_t ino) const override {
    if (const Node* n = Local(ino)) return n->digest ? *n->digest : Sha256Of(n->data);
    return base_.ContentDigest(ino);
  }
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    const Node* n = Local(ino);
    if (n == nullptr) return base_.Read(ino, offset, out);
    if (n->digest) {
      return FailedPreconditionError("inode " + std::to_string(ino) +
                                     ": a guest file known only by its digest cannot be read");
    }
    if (offset >= n->data.size()) return size_t{0};
    const size_t len = std::min<size_t>(out.size(), n->data.size() - offset);
    std::memcpy(out.data(), n->data.data() + offset, len);
    return len;
  }
  index::TreeStats Stats() const override {
    index::TreeStats s = base_.Stats();
    s.inodes = base_n_ + nodes_.size();
    return s;
  }

 private:
  struct Node {
    Attr attr;
    std::string data;
    std::optional<Digest> digest;  // GuestFile::digest: compare-only, no data
  };
  const Node* Local(uint64_t ino) const {
    return ino > base_n_ && ino <= base_n_ + nodes_.size() ? &nodes_[ino - base_n_ - 1] : nullptr;
  }
  uint64_t NewInode(Attr a, std::string data, std::optional<Digest> digest) {
    a.ino = base_n_ + nodes_.size() + 1;
    nodes_.push_back(Node{a, std::move(data), digest});
    return a.ino;
  }
  // A link count changed by the additions: the writer counts names, so the tree must agree
  // (lazyfs verify compares the two).
  void Bump(uint64_t ino, int64_t by) {
    if (ino > base_n_) {
      if (Node* n = ino <= base_n_ + nodes_.size() ? &nodes_[ino - base_n_ - 1] : nullptr) {
        n->attr.nlink = static_cast<uint32_t>(static_cast<int64_t>(n->attr.nlink) + by);
      }
      return;
    }
    nlink_delta_[ino] += by;
  }
  // The directory's own entry list, copied from the base the first time it is changed.
  Result<std::map<std::string, DirEntry>*> Entries(uint64_t dir) {
    auto it = dirs_.find(dir);
    if (it != dirs_.end()) return &it->second;
    LAZYFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, base_.ReadDir(dir));
    auto& m = dirs_[dir];
    for (DirEntry& e : entries) m[e.name] = std::move(e);
    return &m;
  }

  const index::Tree& base_;
  const uint64_t base_n_;
  std::vector<Node> nodes_;                                  // inodes base_n_+1..
  std::map<uint64_t, std::map<std::string, DirEntry>> dirs_;  // changed directories
  std::map<uint64_t, int64_t> nlink_delta_;                   // base inodes' link count changes
};

}  // namespace

Result<std::unique_ptr<index::Tree>> WithGuestFiles(const index::Tree& base,
                                                    const std::vector<GuestFile>& files,
                                                    int64_t mtime) {
  auto tree = std::make_unique<OverlayTree>(base);
  for (const GuestFile& f : files) {
    LAZYFS_RETURN_IF_ERROR(tree->Add(f, mtime));
  }
  return std::unique_ptr<index::Tree>(std::move(tree));
}

}  // namespace lazyfs::convert
