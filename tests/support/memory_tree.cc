#include "tests/support/memory_tree.h"

#include <algorithm>
#include <cstring>
#include <functional>

namespace lazyfs::testing {

Result<std::unique_ptr<MemoryTree>> MemoryTree::Build(std::vector<MemNode> nodes) {
  // Path-keyed model first, then number inodes depth-first in sorted order.
  std::map<std::string, MemNode> by_path;
  auto parent_of = [](const std::string& p) {
    size_t slash = p.rfind('/');
    return slash == 0 ? std::string("/") : p.substr(0, slash);
  };
  MemNode root;
  root.path = "/";
  root.mode = S_IFDIR | 0755;
  by_path["/"] = root;
  for (auto& n : nodes) {
    for (std::string p = parent_of(n.path); p != "/" && !by_path.count(p); p = parent_of(p)) {
      MemNode dir;
      dir.path = p;
      dir.mode = S_IFDIR | 0755;
      by_path[p] = dir;
    }
    by_path[n.path] = n;
  }
  std::map<std::string, std::vector<std::string>> children;
  for (auto& [p, n] : by_path) {
    if (p != "/") children[parent_of(p)].push_back(p);
  }
  auto tree = std::unique_ptr<MemoryTree>(new MemoryTree());
  std::map<std::string, uint64_t> ino_of;
  std::function<Status(const std::string&)> visit = [&](const std::string& p) -> Status {
    const MemNode& n = by_path[p];
    if (!n.hardlink_to.empty()) {
      auto it = ino_of.find(n.hardlink_to);
      if (it == ino_of.end()) return NotFoundError("hardlink target " + n.hardlink_to);
      ino_of[p] = it->second;
      tree->inodes_[it->second - 1].attr.nlink++;
      return Status::Ok();
    }
    Inode in;
    in.attr.ino = tree->inodes_.size() + 1;
    in.attr.mode = n.mode;
    in.attr.uid = n.uid;
    in.attr.gid = n.gid;
    in.attr.mtime_sec = n.mtime_sec;
    in.attr.mtime_nsec = n.mtime_nsec;
    in.attr.rdev_major = n.rdev_major;
    in.attr.rdev_minor = n.rdev_minor;
    in.attr.nlink = S_ISDIR(n.mode) ? 2 : 1;
    in.data = n.data;
    in.attr.size = (S_ISREG(n.mode) || S_ISLNK(n.mode)) ? n.data.size() : 0;
    for (auto& [k, v] : n.xattrs) in.xattrs.push_back({k, v});
    ino_of[p] = in.attr.ino;
    tree->inodes_.push_back(std::move(in));
    std::vector<std::string> kids = children[p];
    std::sort(kids.begin(), kids.end(), [&](const std::string& a, const std::string& b) {
      return a.substr(a.rfind('/') + 1) < b.substr(b.rfind('/') + 1);
    });
    const uint64_t self = ino_of[p];
    for (const auto& k : kids) {
      LAZYFS_RETURN_IF_ERROR(visit(k));
      const uint64_t child = ino_of[k];
      tree->inodes_[self - 1].children[k.substr(k.rfind('/') + 1)] = child;
      if (S_ISDIR(by_path[k].mode)) tree->inodes_[self - 1].attr.nlink++;
    }
    return Status::Ok();
  };
  LAZYFS_RETURN_IF_ERROR(visit("/"));
  return tree;
}

std::string MemoryTree::Name(uint64_t ino) { return "inode " + std::to_string(ino); }

Result<const MemoryTree::Inode*> MemoryTree::Get(uint64_t ino) const {
  if (ino == 0 || ino > inodes_.size()) return NotFoundError(Name(ino));
  return &inodes_[ino - 1];
}

Result<index::Attr> MemoryTree::GetAttr(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(const Inode* in, Get(ino));
  return in->attr;
}

Result<index::Attr> MemoryTree::Lookup(uint64_t parent, std::string_view name) const {
  LAZYFS_ASSIGN_OR_RETURN(const Inode* in, Get(parent));
  if (!in->attr.is_dir()) return NotADirectoryError(Name(parent));
  auto it = in->children.find(std::string(name));
  if (it == in->children.end()) return NotFoundError(std::string(name));
  return inodes_[it->second - 1].attr;
}

Result<std::vector<index::DirEntry>> MemoryTree::ReadDir(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(const Inode* in, Get(ino));
  if (!in->attr.is_dir()) return NotADirectoryError(Name(ino));
  std::vector<index::DirEntry> out;
  for (auto& [name, child] : in->children) {
    out.push_back({name, child, inodes_[child - 1].attr.mode});
  }
  return out;
}

Result<std::string> MemoryTree::ReadLink(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(const Inode* in, Get(ino));
  if (!in->attr.is_symlink()) return NotASymlinkError(Name(ino));
  return in->data;
}

Result<std::vector<index::Xattr>> MemoryTree::ListXattrs(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(const Inode* in, Get(ino));
  return in->xattrs;
}

Result<Digest> MemoryTree::ContentDigest(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(const Inode* in, Get(ino));
  if (!in->attr.is_reg()) return NotARegularFileError(Name(ino));
  return Sha256Of(in->data);
}

Result<size_t> MemoryTree::Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const {
  LAZYFS_ASSIGN_OR_RETURN(const Inode* in, Get(ino));
  if (in->attr.is_dir()) return IsADirectoryError(Name(ino));
  if (!in->attr.is_reg()) return NotARegularFileError(Name(ino));
  if (offset >= in->data.size()) return size_t{0};
  size_t n = std::min<size_t>(out.size(), in->data.size() - offset);
  std::memcpy(out.data(), in->data.data() + offset, n);
  return n;
}

index::TreeStats MemoryTree::Stats() const {
  index::TreeStats s;
  s.inodes = inodes_.size();
  for (const auto& in : inodes_) {
    if (in.attr.is_dir()) s.directories++;
    if (in.attr.is_reg()) {
      s.regular_files++;
      s.content_bytes += in.data.size();
    }
    for (const auto& x : in.xattrs) s.xattr_bytes += x.name.size() + x.value.size();
  }
  return s;
}

}  // namespace lazyfs::testing
