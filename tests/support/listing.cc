#include "tests/support/listing.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "base/digest.h"
#include "base/fd.h"
#include "base/text.h"

namespace lazyfs::testing {
namespace {

char TypeOf(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'd';
    case S_IFREG:
      return 'f';
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
  }
  return '?';
}

Result<std::map<std::string, std::string>> HostXattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  ssize_t n = llistxattr(path.c_str(), nullptr, 0);
  if (n < 0) {
    if (errno == ENOTSUP) return out;
    return ErrnoError(errno, "llistxattr " + path);
  }
  std::string names(static_cast<size_t>(n), '\0');
  n = llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) return ErrnoError(errno, "llistxattr " + path);
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    ssize_t vn = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (vn < 0) return ErrnoError(errno, "lgetxattr " + path + " " + name);
    std::string value(static_cast<size_t>(vn), '\0');
    vn = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (vn < 0) return ErrnoError(errno, "lgetxattr " + path + " " + name);
    value.resize(static_cast<size_t>(vn));
    out[name] = value;
  }
  return out;
}

Status WalkHost(const std::string& host_root, const std::string& rel, Listing& out) {
  const std::string host = rel == "/" ? host_root : host_root + rel;
  struct stat st;
  if (lstat(host.c_str(), &st) != 0) return ErrnoError(errno, "lstat " + host);
  ListingEntry e;
  e.type = TypeOf(st.st_mode);
  e.mode = st.st_mode & 07777;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.nlink = static_cast<uint32_t>(st.st_nlink);
  e.mtime_sec = st.st_mtim.tv_sec;
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    e.rdev_major = major(st.st_rdev);
    e.rdev_minor = minor(st.st_rdev);
  }
  LAZYFS_ASSIGN_OR_RETURN(e.xattrs, HostXattrs(host));
  if (S_ISREG(st.st_mode)) {
    e.size = static_cast<uint64_t>(st.st_size);
    LAZYFS_ASSIGN_OR_RETURN(Fd fd, OpenFile(host, O_RDONLY));
    Sha256 h;
    std::vector<char> buf(1 << 20);
    for (;;) {
      ssize_t n = read(fd.get(), buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, "read " + host);
      }
      if (n == 0) break;
      h.Update(buf.data(), static_cast<size_t>(n));
    }
    e.sha256 = h.Finish().Hex();
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = readlink(host.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoError(errno, "readlink " + host);
    target.resize(static_cast<size_t>(n));
    e.size = target.size();
    e.sha256 = Sha256Of(target).Hex();
    e.target = std::move(target);
  }
  out[rel] = e;
  if (!S_ISDIR(st.st_mode)) return Status::Ok();

  DIR* d = opendir(host.c_str());
  if (!d) return ErrnoError(errno, "opendir " + host);
  std::vector<std::string> names;
  while (dirent* de = readdir(d)) {
    std::string name = de->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    LAZYFS_RETURN_IF_ERROR(WalkHost(host_root, JoinPath(rel, name), out));
  }
  return Status::Ok();
}

// One name of a tree, its file's content read through Tree::Read and hashed.
Status AddTreeEntry(const index::Tree& tree, const index::TreeEntry& t, Listing& out) {
  const index::Attr& a = t.attr;
  ListingEntry e;
  e.type = TypeOf(a.mode);
  e.mode = a.mode & 07777;
  e.uid = a.uid;
  e.gid = a.gid;
  e.nlink = a.nlink;
  e.mtime_sec = a.mtime_sec;
  if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
    e.rdev_major = a.rdev_major;
    e.rdev_minor = a.rdev_minor;
  }
  LAZYFS_ASSIGN_OR_RETURN(auto xattrs, tree.ListXattrs(a.ino));
  for (auto& x : xattrs) e.xattrs[x.name] = x.value;
  if (a.is_reg()) {
    e.size = a.size;
    Sha256 h;
    std::vector<std::byte> buf(1 << 20);
    uint64_t off = 0;
    for (;;) {
      LAZYFS_ASSIGN_OR_RETURN(size_t n, tree.Read(a.ino, off, buf));
      if (n == 0) break;
      h.Update(buf.data(), n);
      off += n;
    }
    if (off != a.size) {
      return DataLossError(t.path + ": read " + std::to_string(off) + " bytes, size says " +
                           std::to_string(a.size));
    }
    e.sha256 = h.Finish().Hex();
  } else if (a.is_symlink()) {
    LAZYFS_ASSIGN_OR_RETURN(e.target, tree.ReadLink(a.ino));
    e.size = e.target.size();
    e.sha256 = Sha256Of(e.target).Hex();
  }
  out[t.path] = e;
  return Status::Ok();
}

std::string Octal(uint32_t v) {
  std::ostringstream s;
  s << std::oct << v;
  return s.str();
}

std::string Printable(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x" + HexEncode(std::string_view(reinterpret_cast<const char*>(&c), 1));
    }
  }
  return out;
}

}  // namespace

Result<Listing> ListDirectory(const std::string& root) {
  Listing out;
  LAZYFS_RETURN_IF_ERROR(WalkHost(root, "/", out));
  return out;
}

Result<Listing> ListTree(const index::Tree& tree) {
  Listing out;
  LAZYFS_ASSIGN_OR_RETURN(index::TreeEntry root, index::RootEntry(tree));
  LAZYFS_RETURN_IF_ERROR(AddTreeEntry(tree, root, out));
  if (!root.attr.is_dir()) return out;
  LAZYFS_RETURN_IF_ERROR(index::WalkTree(
      tree, root, [&](const index::TreeEntry&, const std::vector<index::TreeEntry>& entries) {
        for (const index::TreeEntry& e : entries)
          LAZYFS_RETURN_IF_ERROR(AddTreeEntry(tree, e, out));
        return Status::Ok();
      }));
  return out;
}

std::string FormatEntry(const std::string& path, const ListingEntry& e) {
  std::ostringstream s;
  s << e.type << ' ' << Octal(e.mode) << ' ' << e.uid << ':' << e.gid << " n" << e.nlink << " s"
    << e.size << " t" << e.mtime_sec;
  if (e.type == 'c' || e.type == 'b') s << " rdev " << e.rdev_major << ',' << e.rdev_minor;
  if (!e.sha256.empty()) s << " sha256:" << e.sha256.substr(0, 12);
  s << ' ' << path;
  if (e.type == 'l') s << " -> " << e.target;
  for (const auto& [k, v] : e.xattrs) s << " [" << k << '=' << Printable(v) << ']';
  return s.str();
}

std::string DiffListings(const Listing& expected, const Listing& actual,
                         const DiffOptions& options) {
  std::ostringstream s;
  int lines = 0;
  auto line = [&](const std::string& text) {
    if (++lines <= 50) s << text << '\n';
  };
  for (const auto& [path, e] : expected) {
    auto it = actual.find(path);
    if (it == actual.end()) {
      line(path + ": missing (expected " + FormatEntry(path, e) + ")");
      continue;
    }
    const ListingEntry& a = it->second;
    const std::string& where = path;  // clang 14 cannot capture structured bindings
    auto field = [&](const char* name, const std::string& want, const std::string& got) {
      if (want != got) line(where + ": " + name + " " + got + " != expected " + want);
    };
    field("type", std::string(1, e.type), std::string(1, a.type));
    field("mode", Octal(e.mode), Octal(a.mode));
    field("uid", std::to_string(e.uid), std::to_string(a.uid));
    field("gid", std::to_string(e.gid), std::to_string(a.gid));
    field("size", std::to_string(e.size), std::to_string(a.size));
    field("sha256", e.sha256, a.sha256);
    field("target", e.target, a.target);
    field("rdev", std::to_string(e.rdev_major) + "," + std::to_string(e.rdev_minor),
          std::to_string(a.rdev_major) + "," + std::to_string(a.rdev_minor));
    if (options.compare_nlink) field("nlink", std::to_string(e.nlink), std::to_string(a.nlink));
    if (options.compare_mtime) {
      field("mtime", std::to_string(e.mtime_sec), std::to_string(a.mtime_sec));
    }
    std::string ex, ax;
    for (const auto& [k, v] : e.xattrs) ex += "[" + k + "=" + Printable(v) + "]";
    for (const auto& [k, v] : a.xattrs) ax += "[" + k + "=" + Printable(v) + "]";
    field("xattrs", ex, ax);
  }
  for (const auto& [path, a] : actual) {
    if (!expected.count(path)) line(path + ": unexpected " + FormatEntry(path, a));
  }
  if (lines > 50) s << "... " << (lines - 50) << " more differences\n";
  return s.str();
}

}  // namespace lazyfs::testing
