// CompareExt4: the image read back as a tree (ext4_tree.cc) against the tree it was written from,
// by the one differ (index/tree.h), each difference in the words `lazyfs verify` prints.
//
// The image's facts come first in each line, the index's second. Directories' link counts are
// not compared (the root's counts the writer's lost+found), nor is that lost+found itself.
#include <cstdio>
#include <map>

#include "convert/convert.h"

namespace lazyfs::convert {
namespace {

using index::TreeDifference;
using index::TreeField;

std::string Octal(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0%o", v);
  return buf;
}

template <typename T>
void Check(std::vector<std::string>& out, const std::string& path, const char* what, const T& image,
           const T& index) {
  if (image != index) {
    out.push_back(path + ": " + what + " " + std::to_string(image) + " in the image, " +
                  std::to_string(index) + " in the index");
  }
}

void XattrLines(const TreeDifference& d, std::vector<std::string>& out) {
  std::map<std::string, std::string> image, index;
  for (const auto& x : d.xattrs_b) image[x.name] = x.value;
  for (const auto& x : d.xattrs_a) index[x.name] = x.value;
  for (const auto& [name, value] : index) {
    auto it = image.find(name);
    if (it == image.end()) {
      out.push_back(d.path + ": xattr " + name + " missing from the image");
    } else if (it->second != value) {
      out.push_back(d.path + ": xattr " + name + " has a different value in the image");
    }
  }
  for (const auto& [name, value] : image) {
    if (!index.count(name)) {
      out.push_back(d.path + ": xattr " + name + " in the image but not in the index");
    }
  }
}

// The lines for one difference; `a` is the index's tree, `b` the image.
void Lines(const TreeDifference& d, std::vector<std::string>& out) {
  const std::string& path = d.path;
  if (d.change == index::TreeChange::kRemoved) {
    out.push_back(path + ": missing from the image");
    return;
  }
  if (d.change == index::TreeChange::kAdded) {
    out.push_back(path + ": in the image but not in the index");
    return;
  }
  if (d.Has(TreeField::kInode)) {
    out.push_back(path + ": not the same inode as its other names");
    return;
  }
  if (d.Has(TreeField::kType) || d.Has(TreeField::kMode)) {
    // A different type makes the rest meaningless.
    out.push_back(path + ": mode " + Octal(d.b.mode) + " in the image, " + Octal(d.a.mode) +
                  " in the index");
    return;
  }
  Check(out, path, "uid", d.b.uid, d.a.uid);
  Check(out, path, "gid", d.b.gid, d.a.gid);
  // The index's time as the writer clamped it to ext4's range.
  Check(out, path, "mtime", d.b.mtime().sec, d.a.mtime().sec);
  Check(out, path, "mtime nanoseconds", d.b.mtime().nsec, d.a.mtime().nsec);
  if (!d.a.is_dir()) {
    Check(out, path, "size", d.b.size, d.a.size);
    Check(out, path, "link count", d.b.nlink, d.a.nlink);
  }
  if (d.Has(TreeField::kRdev)) {
    Check(out, path, "device major", d.b.rdev_major, d.a.rdev_major);
    Check(out, path, "device minor", d.b.rdev_minor, d.a.rdev_minor);
  }
  if (d.Has(TreeField::kTarget)) {
    out.push_back(path + ": symlink target \"" + d.target_b.value_or("") + "\" in the image, \"" +
                  d.target_a.value_or("") + "\" in the index");
  }
  if (d.Has(TreeField::kDigest) && d.digest_a && d.digest_b) {
    out.push_back(path + ": content " + d.digest_b->ToString() + " in the image, " +
                  d.digest_a->ToString() + " in the index");
  }
  if (d.Has(TreeField::kXattrs)) XattrLines(d, out);
}

}  // namespace

Result<std::vector<std::string>> CompareExt4(const index::Tree& tree, const std::string& image_path,
                                             size_t max_diffs) {
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<index::Tree> image, OpenExt4Tree(image_path));
  index::TreeDiffOptions o;
  o.compare_directory_nlink = false;
  o.hardlinks = true;
  o.list_subtrees = false;
  o.max_differences = max_diffs;
  Result<index::Attr> lf = tree.Lookup(index::kRootIno, "lost+found");
  if (!lf.ok() && lf.status().code() == StatusCode::kNotFound) o.ignore_added = {"/lost+found"};
  Result<index::TreeDiff> diff = index::DiffTrees(tree, *image, o);
  if (!diff.ok()) return diff.status().WithContext("while comparing " + image_path);
  std::vector<std::string> lines;
  for (const TreeDifference& d : diff->differences) {
    Lines(d, lines);
    if (lines.size() >= max_diffs) break;
  }
  if (lines.size() > max_diffs) lines.resize(max_diffs);
  return lines;
}

}  // namespace lazyfs::convert
