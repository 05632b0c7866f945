// lazyfs ls / cat / stat / diff: read an image's tree without mounting it.
//
// Paths are resolved inside the image as a chroot would: absolute symlink targets start at the
// image root and ".." never leaves it. ls and stat describe a symlink itself (as lstat does);
// cat follows it. Nothing here touches the host's filesystem beyond the store.
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/text.h"
#include "cli/commands.h"
#include "cli/common.h"
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

char TypeChar(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'd';
    case S_IFLNK:
      return 'l';
    case S_IFCHR:
      return 'c';
    case S_IFBLK:
      return 'b';
    case S_IFIFO:
      return 'p';
    case S_IFSOCK:
      return 's';
    default:
      return '-';
  }
}

// "drwxr-sr-t" as ls -l prints it.
std::string ModeString(uint32_t mode) {
  std::string s(10, '-');
  s[0] = TypeChar(mode);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if (mode & (0400u >> i)) s[1 + i] = rwx[i];
  }
  auto special = [&](int pos, uint32_t bit, char set_exec, char set_noexec) {
    if (mode & bit) s[pos] = s[pos] == 'x' ? set_exec : set_noexec;
  };
  special(3, S_ISUID, 's', 'S');
  special(6, S_ISGID, 's', 'S');
  special(9, S_ISVTX, 't', 'T');
  return s;
}

std::string TimeString(int64_t sec) {
  const time_t t = static_cast<time_t>(sec);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

bool IsDevice(uint32_t mode) { return S_ISCHR(mode) || S_ISBLK(mode); }

nlohmann::json AttrJson(const Tree& tree, const Attr& a, const std::string& path) {
  nlohmann::json j;
  j["path"] = path;
  j["type"] = std::string(1, TypeChar(a.mode));
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", a.mode & 07777);
  j["mode"] = mode;
  j["uid"] = a.uid;
  j["gid"] = a.gid;
  j["size"] = a.size;
  j["nlink"] = a.nlink;
  j["mtime"] = a.mtime_sec;
  j["mtime_nsec"] = a.mtime_nsec;
  j["ino"] = a.ino;
  if (IsDevice(a.mode)) j["rdev"] = {a.rdev_major, a.rdev_minor};
  if (a.is_symlink()) {
    if (auto t = tree.ReadLink(a.ino); t.ok()) j["target"] = *t;
  }
  if (a.is_reg()) {
    if (auto d = tree.ContentDigest(a.ino); d.ok()) j["digest"] = d->ToString();
  }
  if (auto xs = tree.ListXattrs(a.ino); xs.ok() && !xs->empty()) {
    nlohmann::json xj = nlohmann::json::object();
    // Values are bytes; JSON strings must be UTF-8, so they are given in hex.
    for (const auto& x : *xs) xj[x.name] = HexEncode(x.value);
    j["xattrs_hex"] = xj;
  }
  return j;
}

// One `ls -ln` line.
std::string LongLine(const Tree& tree, const Attr& a, const std::string& name) {
  char size[48];
  if (IsDevice(a.mode)) {
    std::snprintf(size, sizeof size, "%u, %u", a.rdev_major, a.rdev_minor);
  } else {
    std::snprintf(size, sizeof size, "%" PRIu64, a.size);
  }
  char head[160];
  std::snprintf(head, sizeof head, "%s %3u %5u %5u %10s %s ", ModeString(a.mode).c_str(), a.nlink,
                a.uid, a.gid, size, TimeString(a.mtime_sec).c_str());
  std::string line = head + name;
  if (a.is_symlink()) {
    if (auto t = tree.ReadLink(a.ino); t.ok()) line += " -> " + *t;
  }
  return line;
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
    std::printf("%s\n", e.name.c_str());
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
    if (!args.json) std::printf("%s%s:\n", first ? "" : "\n", d.path.c_str());
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
      std::printf("%s\n", args.long_format ? LongLine(tree, a, name).c_str() : name.c_str());
    }
  } else {
    LAZYFS_RETURN_IF_ERROR(ListDir(tree, TreeEntry{path, "", a}, args, &out));
  }
  if (args.json) std::printf("%s\n", out.dump(2).c_str());
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
  nlohmann::json j = AttrJson(tree, a, path);
  if (args.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("  Path: %s%s\n", path.c_str(),
              j.contains("target") ? (" -> " + j["target"].get<std::string>()).c_str() : "");
  std::printf("  Size: %-12" PRIu64 " Inode: %-10" PRIu64 " Links: %u\n", a.size, a.ino, a.nlink);
  std::printf("Access: (%s/%s)  Uid: %u  Gid: %u\n", j["mode"].get<std::string>().c_str(),
              ModeString(a.mode).c_str(), a.uid, a.gid);
  if (IsDevice(a.mode)) std::printf("Device: %u,%u\n", a.rdev_major, a.rdev_minor);
  std::printf("Modify: %s.%09u UTC\n", TimeString(a.mtime_sec).c_str(), a.mtime_nsec);
  if (j.contains("digest")) std::printf("Digest: %s\n", j["digest"].get<std::string>().c_str());
  if (j.contains("xattrs_hex")) {
    for (const auto& [name, value] : j["xattrs_hex"].items()) {
      std::printf(" Xattr: %s=0x%s\n", name.c_str(), value.get<std::string>().c_str());
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

struct DiffReport {
  const DiffArgs& args;
  nlohmann::json out = nlohmann::json::array();
  uint64_t added = 0, removed = 0, changed = 0;

  void Report(char what, const std::string& path, const std::vector<std::string>& fields,
              const nlohmann::json* before, const nlohmann::json* after) {
    (what == 'A' ? added : what == 'D' ? removed : changed)++;
    if (args.json) {
      nlohmann::json j;
      j["change"] = what == 'A' ? "added" : what == 'D' ? "removed" : "modified";
      j["path"] = path;
      if (!fields.empty()) j["fields"] = fields;
      if (before) j["before"] = *before;
      if (after) j["after"] = *after;
      out.push_back(j);
      return;
    }
    std::string line(1, what);
    line += " " + path;
    const nlohmann::json& shown = after ? *after : *before;
    line += "  (" + shown["mode"].get<std::string>() + " " +
            std::to_string(shown["uid"].get<uint32_t>()) + ":" +
            std::to_string(shown["gid"].get<uint32_t>());
    if (!fields.empty()) {
      line += "; changed:";
      for (const auto& f : fields) {
        line += " " + f;
        if (f == "mode" || f == "uid" || f == "gid" || f == "size" || f == "target") {
          line += " " + before->at(f).dump() + "->" + after->at(f).dump();
        }
      }
    }
    std::printf("%s)\n", line.c_str());
  }
};

// Exit code of diff: 0 when the trees are the same, 1 when they differ (as diff(1)).
Result<int> Diff(const DiffArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(OpenImage a, Open(args.ref1, args.image));
  LAZYFS_ASSIGN_OR_RETURN(OpenImage b, Open(args.ref2, args.image));
  const Tree& t1 = *a.opened.tree;
  const Tree& t2 = *b.opened.tree;
  index::TreeDiffOptions o;
  o.compare_mtime = args.times;
  LAZYFS_ASSIGN_OR_RETURN(index::TreeDiff diff, index::DiffTrees(t1, t2, o));
  DiffReport r{args};
  for (const index::TreeDifference& d : diff.differences) {
    if (d.change == index::TreeChange::kAdded) {
      const nlohmann::json j = AttrJson(t2, d.b, d.path);
      r.Report('A', d.path, {}, nullptr, &j);
    } else if (d.change == index::TreeChange::kRemoved) {
      const nlohmann::json j = AttrJson(t1, d.a, d.path);
      r.Report('D', d.path, {}, &j, nullptr);
    } else {
      std::vector<std::string> fields;
      for (index::TreeField f : d.fields) fields.emplace_back(FieldName(f));
      const nlohmann::json ja = AttrJson(t1, d.a, d.path), jb = AttrJson(t2, d.b, d.path);
      r.Report('M', d.path, fields, &ja, &jb);
    }
  }
  if (args.json) {
    std::printf("%s\n", r.out.dump(2).c_str());
  } else if (!args.image.quiet) {
    std::fprintf(stderr, "%" PRIu64 " added, %" PRIu64 " removed, %" PRIu64 " modified\n", r.added,
                 r.removed, r.changed);
  }
  return r.added + r.removed + r.changed == 0 ? 0 : 1;
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
