// lazyfs ls / cat / stat / diff: read an image's tree without mounting it.
//
// Paths are resolved inside the image as a chroot would: absolute symlink targets start at the
// image root and ".." never leaves it. ls and stat describe a symlink itself (as lstat does);
// cat follows it. Nothing here touches the host's filesystem beyond the store.
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/text.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/output.h"
#include "index/tree.h"

namespace lazyfs::cli {
namespace {

using index::Attr;
using index::Tree;
using index::TreeEntry;

// Symlink hops allowed while resolving one path (Linux's MAXSYMLINKS).
constexpr int kMaxSymlinkHops = 40;

std::vector<std::string> SplitPath(std::string_view path) { return Split(path, '/'); }

// Resolves `path` in the tree; follows a symlink in the last component only if follow_last.
Result<Attr> Resolve(const Tree& tree, const std::string& path, bool follow_last) {
  std::vector<Attr> stack;  // the directories walked so far, root first
  LAZYFS_ASSIGN_OR_RETURN(Attr root, tree.GetAttr(index::kRootIno));
  stack.push_back(root);
  std::vector<std::string> todo = SplitPath(path);
  std::reverse(todo.begin(), todo.end());  // a stack of components, next on top
  int hops = 0;
  while (!todo.empty()) {
    std::string name = std::move(todo.back());
    todo.pop_back();
    if (!stack.back().is_dir()) return NotADirectoryError(path);
    if (name == ".") continue;
    if (name == "..") {
      if (stack.size() > 1) stack.pop_back();
      continue;
    }
    const Attr& dir = stack.back();
    auto child = tree.Lookup(dir.ino, name);
    if (!child.ok()) {
      if (child.status().code() == StatusCode::kNotFound) {
        return NotFoundError(path + ": no such file or directory in the image");
      }
      return child.status();
    }
    if (child->is_symlink() && (!todo.empty() || follow_last)) {
      if (++hops > kMaxSymlinkHops) return FailedPreconditionError(path + ": too many symlinks");
      LAZYFS_ASSIGN_OR_RETURN(std::string target, tree.ReadLink(child->ino));
      if (!target.empty() && target[0] == '/') stack.resize(1);
      std::vector<std::string> more = SplitPath(target);
      for (auto it = more.rbegin(); it != more.rend(); ++it) todo.push_back(*it);
      continue;
    }
    stack.push_back(*child);
  }
  return stack.back();
}

struct OpenImage {
  PreparedImage image;
  OpenedTree opened;
};

Result<OpenImage> Open(const std::string& ref, const ImageOptions& options) {
  OpenImage o;
  LAZYFS_ASSIGN_OR_RETURN(o.image, PrepareImage(ref, options));
  LAZYFS_ASSIGN_OR_RETURN(o.opened, OpenTree(o.image, options));
  return o;
}

std::string Normalised(const std::string& path) {
  std::string out;
  for (const auto& part : SplitPath(path)) out += "/" + part;
  return out.empty() ? "/" : out;
}

// ---- ls ----

struct LsArgs {
  ImageOptions image;
  std::string ref, path = "/";
  bool long_format = false, recursive = false, json = false;
};

// One entry of a listing: a JSON object, a long line or a name.
void ListEntry(const Tree& tree, const TreeEntry& e, const LsArgs& args, nlohmann::json* out) {
  if (args.json) {
    out->push_back(AttrJson(tree, e.attr, e.path));
  } else if (args.long_format) {
    std::printf("%s\n", LongLine(tree, e.attr, e.name).c_str());
  } else {
    std::printf("%s\n", TextName(e.name).c_str());
  }
}

// The entries of `dir`, and with -R those of every directory under it, directory by directory.
Status ListDir(const Tree& tree, const TreeEntry& dir, const LsArgs& args, nlohmann::json* out) {
  if (!args.recursive) {
    LAZYFS_ASSIGN_OR_RETURN(std::vector<TreeEntry> entries, index::ReadDirEntries(tree, dir));
    for (const TreeEntry& e : entries) ListEntry(tree, e, args, out);
    return Status::Ok();
  }
  bool first = true;
  return index::WalkTree(tree, dir, [&](const TreeEntry& d, const std::vector<TreeEntry>& entries) {
    if (!args.json) std::printf("%s%s:\n", first ? "" : "\n", TextName(d.path).c_str());
    first = false;
    for (const TreeEntry& e : entries) ListEntry(tree, e, args, out);
    return Status::Ok();
  });
}

Status Ls(const LsArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(OpenImage o, Open(args.ref, args.image));
  const Tree& tree = *o.opened.tree;
  const std::string path = Normalised(args.path);
  LAZYFS_ASSIGN_OR_RETURN(Attr a, Resolve(tree, path, /*follow_last=*/true));
  if (args.path.size() > 1 && args.path.back() == '/' && !a.is_dir()) {
    return NotADirectoryError(args.path);
  }
  nlohmann::json out = nlohmann::json::array();
  if (!a.is_dir()) {
    if (args.json) {
      out.push_back(AttrJson(tree, a, path));
    } else {
      const std::string name = path.substr(path.rfind('/') + 1);
      std::printf("%s\n",
                  args.long_format ? LongLine(tree, a, name).c_str() : TextName(name).c_str());
    }
  } else {
    LAZYFS_RETURN_IF_ERROR(ListDir(tree, TreeEntry{path, "", a}, args, &out));
  }
  if (args.json) PrintJson(out);
  return Status::Ok();
}

// ---- cat ----

struct CatArgs {
  ImageOptions image;
  std::string ref, path;
};

Status Cat(const CatArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(OpenImage o, Open(args.ref, args.image));
  const Tree& tree = *o.opened.tree;
  LAZYFS_ASSIGN_OR_RETURN(Attr a, Resolve(tree, Normalised(args.path), /*follow_last=*/true));
  if (!a.is_reg()) return NotARegularFileError(args.path);
  std::vector<std::byte> buf(1 << 20);
  uint64_t off = 0;
  while (off < a.size) {
    LAZYFS_ASSIGN_OR_RETURN(size_t n, tree.Read(a.ino, off, buf));
    if (n == 0) return DataLossError(args.path + ": content ends at byte " + std::to_string(off));
    if (std::fwrite(buf.data(), 1, n, stdout) != n) return ErrnoError(errno, "writing stdout");
    off += n;
  }
  if (std::fflush(stdout) != 0) return ErrnoError(errno, "writing stdout");
  return Status::Ok();
}

// ---- stat ----

struct StatArgs {
  ImageOptions image;
  std::string ref, path;
  bool json = false, dereference = false;
};

Status Stat(const StatArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(OpenImage o, Open(args.ref, args.image));
  const Tree& tree = *o.opened.tree;
  const std::string path = Normalised(args.path);
  LAZYFS_ASSIGN_OR_RETURN(Attr a, Resolve(tree, path, args.dereference));
  if (args.json) {
    PrintJson(AttrJson(tree, a, path));
    return Status::Ok();
  }
  std::string target;
  if (a.is_symlink()) {
    LAZYFS_ASSIGN_OR_RETURN(std::string t, tree.ReadLink(a.ino));
    target = " -> " + TextName(t);
  }
  std::printf("  Path: %s%s\n", TextName(path).c_str(), target.c_str());
  std::printf("  Size: %-12" PRIu64 " Inode: %-10" PRIu64 " Links: %u\n", a.size, a.ino, a.nlink);
  std::printf("Access: (%s/%s)  Uid: %u  Gid: %u\n", OctalMode(a.mode).c_str(),
              ModeString(a.mode).c_str(), a.uid, a.gid);
  if (IsDevice(a.mode)) std::printf("Device: %u,%u\n", a.rdev_major, a.rdev_minor);
  std::printf("Modify: %s.%09u UTC\n", TimeText(a.mtime().sec).c_str(), a.mtime().nsec);
  if (a.is_reg()) {
    if (auto d = tree.ContentDigest(a.ino); d.ok())
      std::printf("Digest: %s\n", d->ToString().c_str());
  }
  if (auto xs = tree.ListXattrs(a.ino); xs.ok()) {
    for (const index::Xattr& x : *xs) {
      std::printf(" Xattr: %s=0x%s\n", TextName(x.name).c_str(), HexEncode(x.value).c_str());
    }
  }
  return Status::Ok();
}

// ---- diff ----

struct DiffArgs {
  ImageOptions image;
  std::string ref1, ref2;
  bool json = false, times = false;
};

// The names `lazyfs diff` gives the fields (those of the entries' JSON).
const char* FieldName(index::TreeField f) {
  switch (f) {
    case index::TreeField::kType:
      return "type";
    case index::TreeField::kMode:
      return "mode";
    case index::TreeField::kUid:
      return "uid";
    case index::TreeField::kGid:
      return "gid";
    case index::TreeField::kSize:
      return "size";
    case index::TreeField::kDigest:
      return "digest";
    case index::TreeField::kTarget:
      return "target";
    case index::TreeField::kRdev:
      return "rdev";
    case index::TreeField::kXattrs:
      return "xattrs_hex";
    case index::TreeField::kNlink:
      return "nlink";
    case index::TreeField::kMtime:
      return "mtime";
    case index::TreeField::kInode:
      return "inode";
  }
  return "?";
}

const char* ChangeName(index::TreeChange c) {
  switch (c) {
    case index::TreeChange::kAdded:
      return "added";
    case index::TreeChange::kRemoved:
      return "removed";
    default:
      return "modified";
  }
}

// One difference as --json gives it: the path, the fields, and the entries before and after.
nlohmann::json DiffJson(const index::TreeDifference& d, const Tree& t1, const Tree& t2) {
  JsonObject o;
  nlohmann::json& j = o.json();
  j["change"] = ChangeName(d.change);
  o.Text("path", d.path);
  if (!d.fields.empty()) {
    std::vector<std::string> fields;
    for (index::TreeField f : d.fields) fields.emplace_back(FieldName(f));
    j["fields"] = fields;
  }
  if (d.change != index::TreeChange::kAdded) j["before"] = AttrJson(t1, d.a, d.path);
  if (d.change != index::TreeChange::kRemoved) j["after"] = AttrJson(t2, d.b, d.path);
  return std::move(o).Take();
}

// "A /etc/new  (0644 0:0)", "M /etc/f  (0600 7:8; changed: mode "0644"->"0600" size 3->4)".
std::string DiffLine(const index::TreeDifference& d) {
  const char what = d.change == index::TreeChange::kAdded     ? 'A'
                    : d.change == index::TreeChange::kRemoved ? 'D'
                                                              : 'M';
  const Attr& shown = d.change == index::TreeChange::kRemoved ? d.a : d.b;
  std::string line = std::string(1, what) + " " + TextName(d.path) + "  (" + OctalMode(shown.mode) +
                     " " + std::to_string(shown.uid) + ":" + std::to_string(shown.gid);
  if (!d.fields.empty()) line += "; changed:";
  const auto target = [](const std::optional<std::string>& t) {
    return t ? QuoteName(*t) : std::string("(none)");
  };
  for (index::TreeField f : d.fields) {
    line += " ";
    line += FieldName(f);
    if (f == index::TreeField::kMode) {
      line += " \"" + OctalMode(d.a.mode) + "\"->\"" + OctalMode(d.b.mode) + "\"";
    } else if (f == index::TreeField::kUid) {
      line += " " + std::to_string(d.a.uid) + "->" + std::to_string(d.b.uid);
    } else if (f == index::TreeField::kGid) {
      line += " " + std::to_string(d.a.gid) + "->" + std::to_string(d.b.gid);
    } else if (f == index::TreeField::kSize) {
      line += " " + std::to_string(d.a.size) + "->" + std::to_string(d.b.size);
    } else if (f == index::TreeField::kTarget) {
      line += " " + target(d.target_a) + "->" + target(d.target_b);
    }
  }
  return line + ")";
}

// Exit code of diff: 0 when the trees are the same, 1 when they differ (as diff(1)).
Result<int> Diff(const DiffArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(OpenImage a, Open(args.ref1, args.image));
  LAZYFS_ASSIGN_OR_RETURN(OpenImage b, Open(args.ref2, args.image));
  const Tree& t1 = *a.opened.tree;
  const Tree& t2 = *b.opened.tree;
  index::TreeDiffOptions o;
  o.compare_mtime = args.times;
  LAZYFS_ASSIGN_OR_RETURN(index::TreeDiff diff, index::DiffTrees(t1, t2, o));
  nlohmann::json out = nlohmann::json::array();
  uint64_t counts[3] = {0, 0, 0};  // by TreeChange: removed, added, modified
  for (const index::TreeDifference& d : diff.differences) {
    ++counts[static_cast<size_t>(d.change)];
    if (args.json) {
      out.push_back(DiffJson(d, t1, t2));
    } else {
      std::printf("%s\n", DiffLine(d).c_str());
    }
  }
  if (args.json) {
    PrintJson(out);
  } else if (!args.image.quiet) {
    std::fprintf(stderr, "%" PRIu64 " added, %" PRIu64 " removed, %" PRIu64 " modified\n",
                 counts[static_cast<size_t>(index::TreeChange::kAdded)],
                 counts[static_cast<size_t>(index::TreeChange::kRemoved)],
                 counts[static_cast<size_t>(index::TreeChange::kModified)]);
  }
  return diff.differences.empty() ? 0 : 1;
}

template <typename Args, typename Fn>
void OnRun(CLI::App* cmd, std::shared_ptr<Args> args, int& exit_code, Fn fn) {
  cmd->callback([args, &exit_code, fn] {
    Status s = fn(*args);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace

void RegisterBrowse(CLI::App& app, int& exit_code) {
  {
    auto args = std::make_shared<LsArgs>();
    CLI::App* cmd = app.add_subcommand("ls",
                                       "List a directory of an image without mounting it\n\n"
                                       "Examples:\n"
                                       "  lazyfs ls -l docker://127.0.0.1:5000/app:1.2 /etc\n"
                                       "  lazyfs ls -R --json oci:./layout:demo /");
    AddImageOptions(*cmd, args->image);
    cmd->add_option("REF", args->ref, "Image reference")->required();
    cmd->add_option("PATH", args->path, "Path inside the image (default /)");
    cmd->add_flag("-l", args->long_format, "Long format: mode, links, uid, gid, size, mtime (UTC)");
    cmd->add_flag("-R,--recursive", args->recursive, "List subdirectories too");
    cmd->add_flag("--json", args->json, "JSON array of entries");
    OnRun(cmd, args, exit_code, Ls);
  }
  {
    auto args = std::make_shared<CatArgs>();
    CLI::App* cmd = app.add_subcommand(
        "cat",
        "Write a file of an image to standard output, verified, without mounting it\n\n"
        "Example:\n"
        "  lazyfs cat docker://127.0.0.1:5000/app:1.2 /etc/os-release");
    AddImageOptions(*cmd, args->image);
    cmd->add_option("REF", args->ref, "Image reference")->required();
    cmd->add_option("PATH", args->path, "Path inside the image (symlinks followed)")->required();
    OnRun(cmd, args, exit_code, Cat);
  }
  {
    auto args = std::make_shared<StatArgs>();
    CLI::App* cmd = app.add_subcommand(
        "stat",
        "Show an entry's type, mode, owner, size, times, digest and xattrs as the image records\n\n"
        "Examples:\n"
        "  lazyfs stat docker://127.0.0.1:5000/app:1.2 /usr/bin/passwd\n"
        "  lazyfs stat --json oci:./layout:demo /etc/motd");
    AddImageOptions(*cmd, args->image);
    cmd->add_option("REF", args->ref, "Image reference")->required();
    cmd->add_option("PATH", args->path, "Path inside the image")->required();
    cmd->add_flag("-L,--dereference", args->dereference, "Follow a symlink in the last component");
    cmd->add_flag("--json", args->json, "JSON object");
    OnRun(cmd, args, exit_code, Stat);
  }
  {
    auto args = std::make_shared<DiffArgs>();
    CLI::App* cmd = app.add_subcommand(
        "diff",
        "Paths added (A), removed (D) and modified (M) from REF1 to REF2, with owners and modes\n\n"
        "Exit status, as diff(1): 0 same trees, 1 they differ, 2 trouble (usage, errors).\n"
        "Examples:\n"
        "  lazyfs diff docker://127.0.0.1:5000/app:1.2 docker://127.0.0.1:5000/app:1.3\n"
        "  lazyfs diff --json oci:./a:v1 oci:./b:v1");
    AddImageOptions(*cmd, args->image);
    cmd->add_option("REF1", args->ref1, "The image before")->required();
    cmd->add_option("REF2", args->ref2, "The image after")->required();
    cmd->add_flag("--json", args->json, "JSON array of changes with before/after entries");
    cmd->add_flag("--times", args->times, "Count mtime differences as modifications");
    cmd->callback([args, &exit_code] {
      Result<int> r = Diff(*args);
      if (r.ok()) {
        exit_code = *r;
      } else {
        ReportError(r.status());
        exit_code = 2;
      }
    });
  }
}

}  // namespace lazyfs::cli
