// The differ of two trees: `lazyfs diff` (two images) and `lazyfs verify` (an index tree with its
// additions against the ext4 image read back as a tree).
//
// Both trees are walked in lockstep, each directory's sorted entries merged by name, each entry
// followed by what is under it, so the differences come out in path order. A subtree only one
// side has is walked alone and reported entry by entry.
#include <sys/stat.h>

#include <algorithm>
#include <map>

#include "index/layer_entry.h"
#include "index/tree.h"

namespace lazyfs::index {

bool TreeDifference::Has(TreeField f) const {
  return std::find(fields.begin(), fields.end(), f) != fields.end();
}

namespace {

bool IsDevice(const Attr& a) { return S_ISCHR(a.mode) || S_ISBLK(a.mode); }

class Differ {
 public:
  Differ(const Tree& a, const Tree& b, const TreeDiffOptions& options)
      : a_(a), b_(b), options_(options) {}

  Status Run() {
    LAZYFS_ASSIGN_OR_RETURN(TreeEntry ra, RootEntry(a_));
    LAZYFS_ASSIGN_OR_RETURN(TreeEntry rb, RootEntry(b_));
    return Both(ra, rb);
  }

  TreeDiff Take() { return std::move(diff_); }

 private:
  bool Full() const { return diff_.differences.size() >= options_.max_differences; }

  void Add(TreeDifference d) {
    if (Full()) {
      diff_.truncated = true;
      return;
    }
    diff_.differences.push_back(std::move(d));
  }

  // A path both trees have.
  Status Both(const TreeEntry& ea, const TreeEntry& eb) {
    if (options_.hardlinks && !ea.attr.is_dir()) {
      auto [seen, first] = inode_map_.emplace(ea.attr.ino, eb.attr.ino);
      if (!first) {
        if (seen->second != eb.attr.ino) {
          TreeDifference d;
          d.path = ea.path;
          d.a = ea.attr;
          d.b = eb.attr;
          d.fields = {TreeField::kInode};
          Add(std::move(d));
        }
        return Status::Ok();  // this inode was compared at its first name
      }
    }
    LAZYFS_RETURN_IF_ERROR(Compare(ea, eb));
    const bool da = ea.attr.is_dir(), db = eb.attr.is_dir();
    if (da && db) return Children(&ea, &eb);
    if (!options_.list_subtrees) return Status::Ok();
    if (da) return Children(&ea, nullptr);
    if (db) return Children(nullptr, &eb);
    return Status::Ok();
  }

  // A path only one tree has: it and everything under it.
  Status Only(const TreeEntry& e, bool in_a) {
    if (!in_a && std::find(options_.ignore_added.begin(), options_.ignore_added.end(), e.path) !=
                     options_.ignore_added.end()) {
      return Status::Ok();
    }
    TreeDifference d;
    d.change = in_a ? TreeChange::kRemoved : TreeChange::kAdded;
    d.path = e.path;
    (in_a ? d.a : d.b) = e.attr;
    Add(std::move(d));
    if (!e.attr.is_dir() || !options_.list_subtrees || Full()) return Status::Ok();
    return in_a ? Children(&e, nullptr) : Children(nullptr, &e);
  }

  // The entries of a directory in one or both trees, merged by name.
  Status Children(const TreeEntry* da, const TreeEntry* db) {
    std::vector<TreeEntry> ca, cb;
    if (da != nullptr) {
      LAZYFS_ASSIGN_OR_RETURN(ca, ReadDirEntries(a_, *da));
    }
    if (db != nullptr) {
      LAZYFS_ASSIGN_OR_RETURN(cb, ReadDirEntries(b_, *db));
    }
    size_t i = 0, k = 0;
    while ((i < ca.size() || k < cb.size()) && !Full()) {
      const int cmp = i == ca.size() ? 1 : k == cb.size() ? -1 : ca[i].name.compare(cb[k].name);
      if (cmp < 0) {
        LAZYFS_RETURN_IF_ERROR(Only(ca[i++], true));
      } else if (cmp > 0) {
        LAZYFS_RETURN_IF_ERROR(Only(cb[k++], false));
      } else {
        LAZYFS_RETURN_IF_ERROR(Both(ca[i++], cb[k++]));
      }
    }
    if (i < ca.size() || k < cb.size()) diff_.truncated = true;
    return Status::Ok();
  }

  // The facts of one path in both trees.
  // Both files' digests, of one kind: when one side's is a sparse file's chunk-list digest and
  // the other's a sha256 (an ext4 image's file, a file sparse in one image's tar only), the
  // latter's is computed as a sparse digest from its bytes, skipping its holes.
  Status Digests(const Attr& a, const Attr& b, TreeDifference* d) const {
    bool sparse_a = false, sparse_b = false;
    if (a.size == b.size && a.size > kContentChunkSize) {
      LAZYFS_ASSIGN_OR_RETURN(Tree::ContentLayout la, a_.Layout(a.ino));
      LAZYFS_ASSIGN_OR_RETURN(Tree::ContentLayout lb, b_.Layout(b.ino));
      sparse_a = la.sparse;
      sparse_b = lb.sparse;
    }
    if (sparse_b && !sparse_a) {
      LAZYFS_ASSIGN_OR_RETURN(d->digest_a, DigestOfFile(a_, a.ino, a.size, true));
    } else {
      LAZYFS_ASSIGN_OR_RETURN(d->digest_a, a_.ContentDigest(a.ino));
    }
    if (sparse_a && !sparse_b) {
      LAZYFS_ASSIGN_OR_RETURN(d->digest_b, DigestOfFile(b_, b.ino, b.size, true));
    } else {
      LAZYFS_ASSIGN_OR_RETURN(d->digest_b, b_.ContentDigest(b.ino));
    }
    return Status::Ok();
  }

  Status Compare(const TreeEntry& ea, const TreeEntry& eb) {
    const Attr& a = ea.attr;
    const Attr& b = eb.attr;
    TreeDifference d;
    d.path = ea.path;
    d.a = a;
    d.b = b;
    auto field = [&](TreeField f, bool differs) {
      if (differs) d.fields.push_back(f);
    };
    field(TreeField::kType, (a.mode & S_IFMT) != (b.mode & S_IFMT));
    field(TreeField::kMode, (a.mode & 07777) != (b.mode & 07777));
    field(TreeField::kUid, a.uid != b.uid);
    field(TreeField::kGid, a.gid != b.gid);
    field(TreeField::kSize, a.size != b.size);
    if (a.is_reg() && b.is_reg()) {
      LAZYFS_RETURN_IF_ERROR(Digests(a, b, &d));
    } else if (a.is_reg()) {
      LAZYFS_ASSIGN_OR_RETURN(d.digest_a, a_.ContentDigest(a.ino));
    } else if (b.is_reg()) {
      LAZYFS_ASSIGN_OR_RETURN(d.digest_b, b_.ContentDigest(b.ino));
    }
    field(TreeField::kDigest, d.digest_a != d.digest_b);
    if (a.is_symlink()) {
      LAZYFS_ASSIGN_OR_RETURN(d.target_a, a_.ReadLink(a.ino));
    }
    if (b.is_symlink()) {
      LAZYFS_ASSIGN_OR_RETURN(d.target_b, b_.ReadLink(b.ino));
    }
    field(TreeField::kTarget, d.target_a != d.target_b);
    field(TreeField::kRdev,
          IsDevice(a) != IsDevice(b) ||
              (IsDevice(a) && (a.rdev_major != b.rdev_major || a.rdev_minor != b.rdev_minor)));
    LAZYFS_ASSIGN_OR_RETURN(d.xattrs_a, a_.ListXattrs(a.ino));
    LAZYFS_ASSIGN_OR_RETURN(d.xattrs_b, b_.ListXattrs(b.ino));
    field(TreeField::kXattrs, !SameXattrs(d.xattrs_a, d.xattrs_b));
    const bool dirs = a.is_dir() && b.is_dir();
    field(TreeField::kNlink, a.nlink != b.nlink && (options_.compare_directory_nlink || !dirs));
    // Clamped as every output shows them: an image and the ext4 it was written to agree.
    field(TreeField::kMtime, options_.compare_mtime && a.mtime() != b.mtime());
    if (!d.fields.empty()) Add(std::move(d));
    return Status::Ok();
  }

  // Xattr lists compared as sets of names with values (a tree's order is not trusted).
  static bool SameXattrs(const std::vector<Xattr>& x, const std::vector<Xattr>& y) {
    if (x.size() != y.size()) return false;
    std::map<std::string_view, std::string_view> m;
    for (const Xattr& e : x) m.emplace(e.name, e.value);
    for (const Xattr& e : y) {
      auto it = m.find(e.name);
      if (it == m.end() || it->second != e.value) return false;
    }
    return true;
  }

  const Tree& a_;
  const Tree& b_;
  const TreeDiffOptions& options_;
  TreeDiff diff_;
  std::map<uint64_t, uint64_t> inode_map_;  // inode of `a` -> inode of `b` (hardlinks option)
};

}  // namespace

Result<TreeDiff> DiffTrees(const Tree& a, const Tree& b, const TreeDiffOptions& options) {
  Differ d(a, b, options);
  LAZYFS_RETURN_IF_ERROR(d.Run());
  return d.Take();
}

}  // namespace lazyfs::index
