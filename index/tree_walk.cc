// The depth-first walk every reader of a whole tree uses (the ext4 writer, the additions' replay,
// `lazyfs ls -R`, the tests' listings), iterative so a deep tree cannot overflow the stack.
#include <unordered_set>

#include "base/text.h"
#include "index/tree.h"

namespace lazyfs::index {

Result<std::vector<TreeEntry>> ReadDirEntries(const Tree& tree, const TreeEntry& dir) {
  LAZYFS_ASSIGN_OR_RETURN(std::vector<DirEntry> children, tree.ReadDir(dir.attr.ino));
  std::vector<TreeEntry> out;
  out.reserve(children.size());
  for (const DirEntry& c : children) {
    LAZYFS_ASSIGN_OR_RETURN(Attr a, tree.GetAttr(c.ino));
    out.push_back({JoinPath(dir.path, c.name), c.name, a});
  }
  return out;
}

Result<TreeEntry> RootEntry(const Tree& tree) {
  LAZYFS_ASSIGN_OR_RETURN(Attr root, tree.GetAttr(kRootIno));
  return TreeEntry{"/", "", root};
}

Status WalkTree(const Tree& tree, const TreeEntry& start, const TreeDirVisitor& visit) {
  std::vector<TreeEntry> stack{start};
  std::unordered_set<uint64_t> descended{start.attr.ino};
  while (!stack.empty()) {
    TreeEntry dir = std::move(stack.back());
    stack.pop_back();
    LAZYFS_ASSIGN_OR_RETURN(std::vector<TreeEntry> entries, ReadDirEntries(tree, dir));
    LAZYFS_RETURN_IF_ERROR(visit(dir, entries));
    // Pushed in reverse so the first subdirectory by name comes off the stack first.
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      if (it->attr.is_dir() && descended.insert(it->attr.ino).second) {
        stack.push_back(std::move(*it));
      }
    }
  }
  return Status::Ok();
}

Status WalkTree(const Tree& tree, const TreeDirVisitor& visit) {
  LAZYFS_ASSIGN_OR_RETURN(TreeEntry root, RootEntry(tree));
  return WalkTree(tree, root, visit);
}

}  // namespace lazyfs::index
