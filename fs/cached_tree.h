// CachedTree: hot inodes' metadata in memory, in front of a (RocksDB-backed) index::Tree.
//
// The kernel caches what FUSE replies for as long as the timeouts allow, but some questions reach
// the daemon again and again: readdirplus asks for every child's attributes, `ls -l` asks each
// file for security.selinux and the POSIX ACL xattrs (the kernel never caches xattrs), and the
// kernel drops inodes under memory pressure. Each is a RocksDB point read or prefix scan; this
// cache answers repeats from memory. The tree is immutable, so nothing is ever invalidated: the
// only policy is a bound, least recently used first out. Private to fs/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/stats.h"
#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::fs {

// Stat names: metadata answers from memory, and those that went to the tree.
inline constexpr std::string_view kStatMetaCacheHits = "fs.meta_cache.hits";
inline constexpr std::string_view kStatMetaCacheMisses = "fs.meta_cache.misses";

// A bounded map with least-recently-used eviction, split into shards that lock separately so
// FUSE workers rarely wait for each other. Each value has a charge (1 for an attribute, the entry
// count for a directory listing); a shard evicts from its cold end while its charge is over its
// share of `capacity`. Hand-written because none of the project's libraries offers one without
// tying fs/ to RocksDB, which only index/ may know about. Thread-safe.
template <typename Value>
class ShardedLru {
 public:
  explicit ShardedLru(size_t capacity) : shard_capacity_(capacity / kShards) {}

  std::optional<Value> Get(const std::string& key) {
    Shard& s = ShardOf(key);
    std::lock_guard lock(s.mu);
    auto it = s.map.find(key);
    if (it == s.map.end()) return std::nullopt;
    s.lru.splice(s.lru.begin(), s.lru, it->second);  // now the most recently used
    return it->second->value;
  }

  void Put(const std::string& key, Value value, size_t charge = 1) {
    if (charge > shard_capacity_) return;  // would evict everything else: not worth keeping
    Shard& s = ShardOf(key);
    std::lock_guard lock(s.mu);
    auto it = s.map.find(key);
    if (it != s.map.end()) {  // another worker filled it first; the values are equal
      s.lru.splice(s.lru.begin(), s.lru, it->second);
      return;
    }
    s.lru.push_front(Node{key, std::move(value), charge});
    s.map.emplace(key, s.lru.begin());
    s.charge += charge;
    while (s.charge > shard_capacity_) {
      Node& cold = s.lru.back();
      s.charge -= cold.charge;
      s.map.erase(cold.key);
      s.lru.pop_back();
    }
  }

 private:
  static constexpr size_t kShards = 16;
  struct Node {
    std::string key;
    Value value;
    size_t charge;
  };
  struct Shard {
    std::mutex mu;
    std::list<Node> lru;  // GUARDED_BY(mu), most recently used first
    std::unordered_map<std::string, typename std::list<Node>::iterator> map;  // GUARDED_BY(mu)
    size_t charge = 0;                                                        // GUARDED_BY(mu)
  };
  Shard& ShardOf(const std::string& key) {
    return shards_[std::hash<std::string>{}(key) % kShards];
  }

  const size_t shard_capacity_;
  Shard shards_[kShards];
};

// An index::Tree that answers GetAttr, Lookup (hits and misses), ReadDir, ReadLink and
// ListXattrs from memory after the first time, and passes Read, ContentDigest and Stats through.
// Only successful answers and NotFound lookups are kept; any other error is asked again next
// time. Thread-safe. Does not own `tree`, which must outlive it.
class CachedTree final : public index::Tree {
 public:
  // `capacity`: entries kept of each kind (attributes, lookups, symlink targets, xattr lists;
  // directory listings count their children). 0 disables the cache.
  CachedTree(const index::Tree& tree, size_t capacity);

  Result<index::Attr> GetAttr(uint64_t ino) const override;
  Result<index::Attr> Lookup(uint64_t parent, std::string_view name) const override;
  Result<std::vector<index::DirEntry>> ReadDir(uint64_t ino) const override;
  Result<std::string> ReadLink(uint64_t ino) const override;
  Result<std::vector<index::Xattr>> ListXattrs(uint64_t ino) const override;
  Result<Digest> ContentDigest(uint64_t ino) const override { return tree_.ContentDigest(ino); }
  Result<ContentLayout> Layout(uint64_t ino) const override { return tree_.Layout(ino); }
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    return tree_.Read(ino, offset, out);
  }
  index::TreeStats Stats() const override { return tree_.Stats(); }
  void CancelReads() const override { tree_.CancelReads(); }

 private:
  // A lookup's answer: the child's inode, or 0 when the name does not exist.
  using LookupAnswer = uint64_t;

  // The cached answer for `ino`, else fetch() kept with charge(value).
  template <typename T, typename Fetch, typename Charge>
  Result<T> Memoized(ShardedLru<T>& lru, uint64_t ino, Fetch&& fetch, Charge&& charge) const;

  const index::Tree& tree_;
  const bool enabled_;
  StatCounter& hits_;
  StatCounter& misses_;
  // Keys are the inode's 8 bytes (plus the name for lookups), so one string type serves all.
  mutable ShardedLru<index::Attr> attrs_;
  mutable ShardedLru<LookupAnswer> lookups_;
  mutable ShardedLru<std::vector<index::DirEntry>> listings_;
  mutable ShardedLru<std::string> links_;
  mutable ShardedLru<std::vector<index::Xattr>> xattrs_;
};

}  // namespace lazyfs::fs
