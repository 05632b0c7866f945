#include "fs/cached_tree.h"

#include <cstring>

namespace lazyfs::fs {
namespace {

std::string InoKey(uint64_t ino) {
  std::string key(sizeof(ino), '\0');
  std::memcpy(key.data(), &ino, sizeof(ino));
  return key;
}

size_t One(const auto&) { return 1; }

}  // namespace

CachedTree::CachedTree(const index::Tree& tree, size_t capacity)
    : tree_(tree),
      enabled_(capacity > 0),
      hits_(Counter(kStatMetaCacheHits)),
      misses_(Counter(kStatMetaCacheMisses)),
      attrs_(capacity),
      lookups_(capacity),
      listings_(capacity),
      links_(capacity),
      xattrs_(capacity) {}

template <typename T, typename Fetch, typename Charge>
Result<T> CachedTree::Memoized(ShardedLru<T>& lru, uint64_t ino, Fetch&& fetch,
                               Charge&& charge) const {
  if (!enabled_) return fetch();
  const std::string key = InoKey(ino);
  if (std::optional<T> v = lru.Get(key)) {
    hits_.Add();
    return std::move(*v);
  }
  misses_.Add();
  Result<T> v = fetch();
  if (v.ok()) lru.Put(key, *v, charge(*v));
  return v;
}

Result<index::Attr> CachedTree::GetAttr(uint64_t ino) const {
  return Memoized(attrs_, ino, [&] { return tree_.GetAttr(ino); }, One<index::Attr>);
}

Result<index::Attr> CachedTree::Lookup(uint64_t parent, std::string_view name) const {
  if (!enabled_) return tree_.Lookup(parent, name);
  std::string key = InoKey(parent);
  key.append(name);
  if (std::optional<LookupAnswer> ino = lookups_.Get(key)) {
    hits_.Add();
    if (*ino == 0) {
      return Status(StatusCode::kNotFound,
                    "no entry " + std::string(name) + " in inode " + std::to_string(parent));
    }
    return GetAttr(*ino);
  }
  misses_.Add();
  Result<index::Attr> attr = tree_.Lookup(parent, name);
  if (attr.ok()) {
    lookups_.Put(key, attr->ino);
    attrs_.Put(InoKey(attr->ino), *attr);
  } else if (attr.status().code() == StatusCode::kNotFound) {
    // Only a miss inside an existing directory is an answer worth keeping; NotFound for a
    // parent that does not exist is asked again (FileSystem tells the two apart).
    Result<index::Attr> dir = GetAttr(parent);
    if (dir.ok() && dir->is_dir()) lookups_.Put(key, 0);
  }
  return attr;
}

Result<std::vector<index::DirEntry>> CachedTree::ReadDir(uint64_t ino) const {
  return Memoized(listings_, ino, [&] { return tree_.ReadDir(ino); },
                  [](const std::vector<index::DirEntry>& l) { return 1 + l.size(); });
}

Result<std::string> CachedTree::ReadLink(uint64_t ino) const {
  return Memoized(links_, ino, [&] { return tree_.ReadLink(ino); }, One<std::string>);
}

Result<std::vector<index::Xattr>> CachedTree::ListXattrs(uint64_t ino) const {
  return Memoized(xattrs_, ino, [&] { return tree_.ListXattrs(ino); },
                  One<std::vector<index::Xattr>>);
}

}  // namespace lazyfs::fs
