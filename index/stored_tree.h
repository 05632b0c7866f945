// The Tree of one stored image: metadata from the index's records, content from the cache or,
// on a miss, from the layer's ContentSource (content_source.h).
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "base/deadline.h"
#include "base/single_flight.h"
#include "base/thread_annotations.h"
#include "base/work_pool.h"
#include "index/content_cache.h"
#include "index/content_source.h"
#include "index/db.h"
#include "index/layer_check.h"
#include "index/prefetch.h"
#include "index/records.h"
#include "index/tree.h"

namespace lazyfs::index {

// Thread-safe. Destroying it cancels its fetches still running (their readers gave up at the
// deadline) and waits for them: they use the BlobSource it was given.
class StoredTree final : public Tree {
 public:
  StoredTree(std::shared_ptr<Db> db, ImageDescriptor image, TreeStats stats, BlobSource& blobs,
             std::shared_ptr<ContentCache> cache, std::shared_ptr<LayerCheck> check,
             const IndexOptions& options);
  ~StoredTree() override;

  Result<Attr> GetAttr(uint64_t ino) const override;
  Result<Attr> Lookup(uint64_t parent, std::string_view name) const override;
  Result<std::vector<DirEntry>> ReadDir(uint64_t ino) const override;
  Result<std::string> ReadLink(uint64_t ino) const override;
  Result<std::vector<Xattr>> ListXattrs(uint64_t ino) const override;
  Result<Digest> ContentDigest(uint64_t ino) const override;
  Result<ContentLayout> Layout(uint64_t ino) const override;
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override;
  TreeStats Stats() const override { return stats_; }
  void CancelReads() const override { cancel_.Cancel(); }

  // Chunk fetches that run in the pool end at this many readers' deadlines at once.
  static constexpr unsigned kFetchThreads = 16;

 private:

  Result<InodeRecord> Inode(uint64_t ino) const;
  Result<size_t> ReadContent(const InodeRecord& r, uint64_t offset, std::span<std::byte> out,
                             bool* fetched) const;
  // The content source of image layer i, made on first use.
  Result<ContentSource*> SourceOf(size_t layer) const LAZYFS_EXCLUDES(sources_mu_);

  const std::shared_ptr<Db> db_;
  const Records records_;
  const ImageDescriptor image_;
  const TreeStats stats_;
  BlobSource& blobs_;
  const std::shared_ptr<ContentCache> cache_;
  const std::shared_ptr<LayerCheck> check_;
  const IndexOptions options_;
  // Raised by CancelReads and the destructor: fetches still running end early.
  mutable Canceller cancel_;
  // Destroyed in reverse order: the prefetcher first (it reads through this tree), then the
  // pool (its work uses the flights and the sources), then the rest.
  mutable SingleFlight<Digest> flights_;
  mutable Mutex sources_mu_;
  mutable std::vector<std::unique_ptr<ContentSource>> sources_ LAZYFS_GUARDED_BY(sources_mu_);
  mutable WorkPool pool_{kFetchThreads};
  std::unique_ptr<Prefetcher> prefetch_;
};

}  // namespace lazyfs::index
