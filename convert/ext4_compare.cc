// Compares an ext4 image with a tree by reading the image through libext2fs, read-only and
// without mounting it: names, types, modes, owners, sizes, mtimes, devices, link counts, symlink
// targets, xattrs, and each regular file's sha256 against the tree's recorded digest (the tree's
// content is never read, so nothing is fetched).
//
// Each ext4 directory is read once into a name -> inode map (ext2fs_lookup per name would scan
// the directory each time, quadratic in its size).
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "base/digest.h"
#include "convert/convert.h"
#include "convert/ext2fs_handle.h"

namespace lazyfs::convert {
namespace {

using index::Attr;
using index::DirEntry;
using index::Tree;

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string Octal(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0%o", v);
  return buf;
}

// Decodes an inode time field with its extra word (epoch bits and nanoseconds).
void GetTime(uint32_t lo, uint32_t extra, int64_t* sec, uint32_t* nsec) {
  *sec = static_cast<int32_t>(lo) + (static_cast<int64_t>(extra & 3) << 32);
  *nsec = extra >> 2;
}

struct Entry {
  ext2_ino_t ino;
  uint8_t ftype;
};

int CollectEntry(ext2_ino_t, int, ext2_dir_entry* d, int, int, char*, void* priv) {
  auto* out = static_cast<std::map<std::string, Entry>*>(priv);
  const int len = ext2fs_dirent_name_len(d);
  std::string name(d->name, static_cast<size_t>(len));
  if (name != "." && name != "..") {
    (*out)[name] = Entry{d->inode, static_cast<uint8_t>(ext2fs_dirent_file_type(d))};
  }
  return 0;
}

int CollectXattr(char* name, char* value, size_t len, void* priv) {
  auto* out = static_cast<std::vector<index::Xattr>*>(priv);
  out->push_back({name, std::string(value, len)});
  return 0;
}

class Comparer {
 public:
  Comparer(const Tree& tree, ext2_filsys fs, size_t max_diffs)
      : tree_(tree), fs_(fs), max_diffs_(max_diffs) {}

  Status Run() {
    struct Frame {
      uint64_t tree_ino;
      ext2_ino_t ext_ino;
      std::string path;
    };
    std::vector<Frame> stack{{index::kRootIno, EXT2_ROOT_INO, "/"}};
    LAZYFS_RETURN_IF_ERROR(CompareInode(index::kRootIno, EXT2_ROOT_INO, "/"));
    while (!stack.empty() && !Full()) {
      Frame f = std::move(stack.back());
      stack.pop_back();
      LAZYFS_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, tree_.ReadDir(f.tree_ino));
      std::map<std::string, Entry> names;
      LAZYFS_EXT2_CHECK(ext2fs_dir_iterate2(fs_, f.ext_ino, 0, nullptr, CollectEntry, &names),
                        "while reading directory " + f.path + " of the image");
      if (f.tree_ino == index::kRootIno) {
        bool tree_has_lf = false;
        for (const DirEntry& e : entries) tree_has_lf = tree_has_lf || e.name == "lost+found";
        if (!tree_has_lf) names.erase("lost+found");  // the writer's own
      }
      for (const DirEntry& e : entries) {
        const std::string path = JoinPath(f.path, e.name);
        auto it = names.find(e.name);
        if (it == names.end()) {
          Diff(path + ": missing from the image");
          continue;
        }
        const Entry got = it->second;
        names.erase(it);
        auto [seen, first] = seen_.emplace(e.ino, got.ino);
        if (!first) {
          if (seen->second != got.ino) Diff(path + ": not the same inode as its other names");
          continue;
        }
        LAZYFS_RETURN_IF_ERROR(CompareInode(e.ino, got.ino, path));
        if (S_ISDIR(e.mode)) stack.push_back({e.ino, got.ino, path});
      }
      for (const auto& [name, entry] : names) {
        Diff(JoinPath(f.path, name) + ": in the image but not in the index");
      }
    }
    return Status::Ok();
  }

  std::vector<std::string> TakeDiffs() { return std::move(diffs_); }

 private:
  bool Full() const { return diffs_.size() >= max_diffs_; }
  void Diff(std::string text) {
    if (!Full()) diffs_.push_back(std::move(text));
  }
  template <typename T>
  void Check(const std::string& path, const char* what, const T& image, const T& index) {
    if (image != index) {
      Diff(path + ": " + what + " " + std::to_string(image) + " in the image, " +
           std::to_string(index) + " in the index");
    }
  }

  // Directories' link counts are not compared: the root's counts the writer's lost+found.
  Status CompareInode(uint64_t tree_ino, ext2_ino_t ino, const std::string& path) {
    LAZYFS_ASSIGN_OR_RETURN(Attr a, tree_.GetAttr(tree_ino));
    ext2_inode_large in;
    std::memset(&in, 0, sizeof(in));
    LAZYFS_EXT2_CHECK(ext2fs_read_inode_full(fs_, ino, reinterpret_cast<ext2_inode*>(&in),
                                             sizeof(in)),
                      "while reading the inode of " + path + " in the image");
    if (in.i_mode != a.mode) {
      Diff(path + ": mode " + Octal(in.i_mode) + " in the image, " + Octal(a.mode) +
           " in the index");
      return Status::Ok();  // a different type makes the rest meaningless
    }
    Check(path, "uid", static_cast<uint32_t>(inode_uid(in)), a.uid);
    Check(path, "gid", static_cast<uint32_t>(inode_gid(in)), a.gid);
    int64_t sec = 0;
    uint32_t nsec = 0;
    GetTime(in.i_mtime, in.i_mtime_extra, &sec, &nsec);
    Check(path, "mtime", sec, a.mtime_sec);
    Check(path, "mtime nanoseconds", nsec, a.mtime_nsec);
    const uint64_t size = EXT2_I_SIZE(&in);
    if (!a.is_dir()) {
      Check(path, "size", size, a.size);
      Check(path, "link count", static_cast<uint32_t>(in.i_links_count), a.nlink);
    }
    if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
      uint32_t major_n = 0, minor_n = 0;
      if (in.i_block[0] != 0) {
        const uint32_t old = ext2fs_le32_to_cpu(in.i_block[0]);
        major_n = (old >> 8) & 0xff;
        minor_n = old & 0xff;
      } else {
        const uint32_t dev = ext2fs_le32_to_cpu(in.i_block[1]);
        major_n = (dev & 0xfff00) >> 8;
        minor_n = (dev & 0xff) | ((dev >> 12) & 0xfff00);
      }
      Check(path, "device major", major_n, a.rdev_major);
      Check(path, "device minor", minor_n, a.rdev_minor);
    }
    if (a.is_symlink() || a.is_reg()) {
      LAZYFS_RETURN_IF_ERROR(CompareData(tree_ino, ino, in, a, path));
    }
    LAZYFS_ASSIGN_OR_RETURN(std::vector<index::Xattr> want, tree_.ListXattrs(tree_ino));
    std::vector<index::Xattr> got;
    {
      XattrHandle h;
      const std::string what = "while reading the xattrs of " + path + " in the image";
      LAZYFS_EXT2_CHECK(ext2fs_xattrs_open(fs_, ino, h.out()), what);
      LAZYFS_EXT2_CHECK(ext2fs_xattrs_read(h.get()), what);
      LAZYFS_EXT2_CHECK(ext2fs_xattrs_iterate(h.get(), CollectXattr, &got), what);
      LAZYFS_RETURN_IF_ERROR(h.Close().WithContext(what));
    }
    std::map<std::string, std::string> gm, wm;
    for (auto& x : got) gm[x.name] = x.value;
    for (auto& x : want) wm[x.name] = x.value;
    for (const auto& [name, value] : wm) {
      auto it = gm.find(name);
      if (it == gm.end()) {
        Diff(path + ": xattr " + name + " missing from the image");
      } else if (it->second != value) {
        Diff(path + ": xattr " + name + " has a different value in the image");
      }
    }
    for (const auto& [name, value] : gm) {
      if (!wm.count(name)) Diff(path + ": xattr " + name + " in the image but not in the index");
    }
    return Status::Ok();
  }

  Status CompareData(uint64_t tree_ino, ext2_ino_t ino, ext2_inode_large& in, const Attr& a,
                     const std::string& path) {
    const uint64_t size = EXT2_I_SIZE(&in);
    std::string target;
    Sha256 hash;
    if (a.is_symlink() && !(in.i_flags & EXT4_EXTENTS_FL) && size < sizeof(in.i_block)) {
      target.assign(reinterpret_cast<const char*>(in.i_block), size);  // a fast symlink
    } else {
      ext2_file_t file = nullptr;
      const std::string what = "while reading " + path + " in the image";
      LAZYFS_EXT2_CHECK(
          ext2fs_file_open2(fs_, ino, reinterpret_cast<ext2_inode*>(&in), 0, &file), what);
      std::vector<char> buf(1 << 20);
      uint64_t done = 0;
      errcode_t err = 0;
      while (done < size) {
        unsigned int got = 0;
        err = ext2fs_file_read(file, buf.data(), static_cast<unsigned>(buf.size()), &got);
        if (err != 0 || got == 0) break;
        if (a.is_symlink()) {
          target.append(buf.data(), got);
        } else {
          hash.Update(buf.data(), got);
        }
        done += got;
      }
      ext2fs_file_close(file);
      if (err != 0) return Ext2Error(err, what);
      if (done != size) {
        Diff(path + ": content ends at byte " + std::to_string(done) + " in the image");
        return Status::Ok();
      }
    }
    if (a.is_symlink()) {
      LAZYFS_ASSIGN_OR_RETURN(std::string want, tree_.ReadLink(tree_ino));
      if (target != want) Diff(path + ": symlink target \"" + target + "\" in the image, \"" +
                               want + "\" in the index");
      return Status::Ok();
    }
    LAZYFS_ASSIGN_OR_RETURN(Digest want, tree_.ContentDigest(tree_ino));
    const Digest got = hash.Finish();
    if (got != want) {
      Diff(path + ": content " + got.ToString() + " in the image, " + want.ToString() +
           " in the index");
    }
    return Status::Ok();
  }

  const Tree& tree_;
  ext2_filsys fs_;
  const size_t max_diffs_;
  std::vector<std::string> diffs_;
  std::map<uint64_t, ext2_ino_t> seen_;  // tree inode -> image inode, for hardlinks
};

}  // namespace

Result<std::vector<std::string>> CompareExt4(const Tree& tree, const std::string& image_path,
                                             size_t max_diffs) {
  ext2_filsys raw = nullptr;
  errcode_t err = ext2fs_open(image_path.c_str(), EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &raw);
  if (err != 0) return Ext2Error(err, "while opening " + image_path + " as ext4");
  Ext2Fs fs(raw);
  Comparer c(tree, fs.get(), max_diffs);
  LAZYFS_RETURN_IF_ERROR(c.Run().WithContext("while comparing " + image_path));
  return c.TakeDiffs();
}

}  // namespace lazyfs::convert
