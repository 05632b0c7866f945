#include "index/merge.h"

#include <sys/stat.h>

#include <map>
#include <memory>
#include <unordered_map>

#include "base/text.h"

namespace lazyfs::index {
namespace {

struct Node;
struct Child {
  std::shared_ptr<Node> node;
  uint32_t layer = 0;  // the layer that put this name here
};

struct Node {
  LayerEntry entry;      // kind is never kHardlink, kWhiteout or kOpaque here
  uint32_t layer = 0;    // layer of the entry (where a file's bytes are)
  std::map<std::string, Child> children;  // directories; std::string orders bytewise
};

std::shared_ptr<Node> ImplicitDir() {
  auto n = std::make_shared<Node>();
  n->entry.kind = EntryKind::kDir;
  n->entry.mode = 0755;
  return n;
}

// Components of a normalised path (never empty ones).
std::vector<std::string> Split(const std::string& path) { return lazyfs::Split(path, '/'); }

class Merger {
 public:
  Merger() : root_(ImplicitDir()) {}

  Status Apply(uint32_t layer, const LayerEntry& e) {
    auto in_entry = [&](const std::string& what) {
      return InvalidArgumentError("layer " + std::to_string(layer + 1) + ": entry \"" + e.path +
                                  "\": " + what);
    };
    if (e.path.empty()) {
      if (e.kind == EntryKind::kOpaque) {
        HideLower(*root_, layer);
      } else if (e.kind == EntryKind::kDir) {
        root_->entry = WithKind(e);
      }
      // A whiteout of the root cannot be expressed (".wh." alone is refused by the reader).
      return Status::Ok();
    }
    const std::vector<std::string> parts = Split(e.path);
    const std::string& name = parts.back();

    if (e.kind == EntryKind::kWhiteout || e.kind == EntryKind::kOpaque) {
      Node* dir = Find(parts, e.kind == EntryKind::kOpaque ? parts.size() : parts.size() - 1);
      if (!dir) return Status::Ok();  // nothing below to hide
      if (e.kind == EntryKind::kOpaque) {
        HideLower(*dir, layer);
      } else {
        auto it = dir->children.find(name);
        if (it != dir->children.end() && it->second.layer < layer) dir->children.erase(it);
      }
      return Status::Ok();
    }

    Node* parent = MakeParents(parts, layer);
    if (!parent) {
      return in_entry("below a non-directory that the same layer put at a parent path");
    }
    if (e.kind == EntryKind::kHardlink) {
      std::shared_ptr<Node> target = FindShared(Split(e.link));
      if (!target) return in_entry("hardlink to \"" + e.link + "\", which does not exist");
      if (target->entry.kind == EntryKind::kDir) {
        return in_entry("hardlink to directory \"" + e.link + "\"");
      }
      parent->children[name] = Child{std::move(target), layer};
      return Status::Ok();
    }
    auto it = parent->children.find(name);
    if (e.kind == EntryKind::kDir && it != parent->children.end() &&
        it->second.node->entry.kind == EntryKind::kDir) {
      it->second.node->entry = WithKind(e);  // keep the children
      it->second.node->layer = layer;
      it->second.layer = layer;
      return Status::Ok();
    }
    auto node = std::make_shared<Node>();
    node->entry = e;
    node->layer = layer;
    parent->children[name] = Child{std::move(node), layer};
    return Status::Ok();
  }

  MergedTree Finish() {
    MergedTree out;
    std::unordered_map<const Node*, uint64_t> inos;
    std::unordered_map<const Node*, uint32_t> names;
    CountNames(*root_, names);
    Number(root_.get(), inos, names, out);
    return out;
  }

 private:
  static LayerEntry WithKind(const LayerEntry& e) { return e; }

  static void HideLower(Node& dir, uint32_t layer) {
    for (auto it = dir.children.begin(); it != dir.children.end();) {
      if (it->second.layer < layer) {
        it = dir.children.erase(it);
      } else {
        ++it;
      }
    }
  }

  // The directory at parts[0..n), or null.
  Node* Find(const std::vector<std::string>& parts, size_t n) {
    Node* cur = root_.get();
    for (size_t i = 0; i < n; ++i) {
      if (cur->entry.kind != EntryKind::kDir) return nullptr;
      auto it = cur->children.find(parts[i]);
      if (it == cur->children.end()) return nullptr;
      cur = it->second.node.get();
    }
    return cur->entry.kind == EntryKind::kDir ? cur : nullptr;
  }

  std::shared_ptr<Node> FindShared(const std::vector<std::string>& parts) {
    std::shared_ptr<Node> cur = root_;
    for (const std::string& p : parts) {
      if (cur->entry.kind != EntryKind::kDir) return nullptr;
      auto it = cur->children.find(p);
      if (it == cur->children.end()) return nullptr;
      cur = it->second.node;
    }
    return cur;
  }

  // The parent directory of parts, made as needed; null when a parent is a non-directory the
  // same layer put there (a file "p", then "p/child": no tar tool writes that, and guessing
  // which entry wins would show a tree the layer never held).
  Node* MakeParents(const std::vector<std::string>& parts, uint32_t layer) {
    Node* cur = root_.get();
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = cur->children.find(parts[i]);
      if (it != cur->children.end() && it->second.node->entry.kind != EntryKind::kDir &&
          it->second.layer == layer) {
        return nullptr;
      }
      if (it == cur->children.end() || it->second.node->entry.kind != EntryKind::kDir) {
        // Missing, or a lower layer's non-directory that this path now needs as a directory.
        it = cur->children.insert_or_assign(parts[i], Child{ImplicitDir(), layer}).first;
      }
      cur = it->second.node.get();
    }
    return cur;
  }

  static void CountNames(const Node& dir, std::unordered_map<const Node*, uint32_t>& names) {
    for (const auto& [name, child] : dir.children) {
      if (++names[child.node.get()] == 1 && child.node->entry.kind == EntryKind::kDir) {
        CountNames(*child.node, names);
      }
    }
  }

  uint64_t Number(const Node* node, std::unordered_map<const Node*, uint64_t>& inos,
                  const std::unordered_map<const Node*, uint32_t>& names, MergedTree& out) {
    if (auto it = inos.find(node); it != inos.end()) return it->second;
    const uint64_t ino = out.inodes.size() + 1;
    inos[node] = ino;
    out.inodes.emplace_back();
    {
      MergedInode& m = out.inodes.back();
      const LayerEntry& e = node->entry;
      m.attr.ino = ino;
      m.attr.mode = TypeBits(e.kind) | (e.mode & 07777);
      m.attr.uid = e.uid;
      m.attr.gid = e.gid;
      m.attr.mtime_sec = e.mtime_sec;
      m.attr.mtime_nsec = e.mtime_nsec;
      m.attr.rdev_major = e.rdev_major;
      m.attr.rdev_minor = e.rdev_minor;
      m.xattrs = e.xattrs;
      m.layer = node->layer;
      if (e.kind == EntryKind::kFile) {
        m.attr.size = e.size;
        m.digest = e.digest;
        out.stats.regular_files++;
        out.stats.content_bytes += e.size;
      } else if (e.kind == EntryKind::kSymlink) {
        m.attr.size = e.link.size();
        m.link = e.link;
      }
      if (e.kind == EntryKind::kDir) out.stats.directories++;
      auto n = names.find(node);
      m.attr.nlink = n == names.end() ? 1 : n->second;
      for (const Xattr& x : e.xattrs) out.stats.xattr_bytes += x.name.size() + x.value.size();
    }
    if (node->entry.kind == EntryKind::kDir) {
      uint32_t subdirs = 0;
      std::vector<DirEntry> children;
      children.reserve(node->children.size());
      for (const auto& [name, child] : node->children) {
        const uint64_t child_ino = Number(child.node.get(), inos, names, out);
        children.push_back({name, child_ino, out.inodes[child_ino - 1].attr.mode});
        if (child.node->entry.kind == EntryKind::kDir) ++subdirs;
      }
      MergedInode& m = out.inodes[ino - 1];  // the vector may have grown
      m.attr.nlink = 2 + subdirs;
      m.children = std::move(children);
    }
    out.stats.inodes = out.inodes.size();
    return ino;
  }

  std::shared_ptr<Node> root_;
};

}  // namespace

Result<MergedTree> MergeLayers(const std::vector<std::vector<LayerEntry>>& layers) {
  std::vector<const std::vector<LayerEntry>*> borrowed;
  for (const auto& l : layers) borrowed.push_back(&l);
  return MergeLayers(borrowed);
}

Result<MergedTree> MergeLayers(const std::vector<const std::vector<LayerEntry>*>& layers) {
  Merger merger;
  auto is_marker = [](const LayerEntry& e) {
    return e.kind == EntryKind::kWhiteout || e.kind == EntryKind::kOpaque;
  };
  for (uint32_t i = 0; i < layers.size(); ++i) {
    // Whiteouts and opaque markers hide what the lower layers hold, wherever they stand in the
    // layer's tar: they go first, so a directory the layer re-declares before its opaque marker
    // still loses the lower layers' entries.
    for (const LayerEntry& e : *layers[i]) {
      if (is_marker(e)) LAZYFS_RETURN_IF_ERROR(merger.Apply(i, e));
    }
    for (const LayerEntry& e : *layers[i]) {
      if (!is_marker(e)) LAZYFS_RETURN_IF_ERROR(merger.Apply(i, e));
    }
  }
  return merger.Finish();
}

}  // namespace lazyfs::index
