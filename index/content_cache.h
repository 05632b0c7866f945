// The content cache behind Tree::Read: STORE/content, a CasDir of verified objects named by
// their sha256 — whole files (a file of at most one chunk is its own single chunk) and
// kContentChunkSize chunks of larger files — so identical files and chunks, in any layer of any
// image, are stored once.
//
// Objects are verified when written and again on their first use in a process; one found
// corrupt is dropped (counted as cache.corrupt_dropped) and reported as NotFound so the caller
// fetches it again. With a size limit, the least recently used objects are evicted (use is the
// object's atime, set explicitly when it is served, so relatime mounts do not matter).
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/cas_dir.h"
#include "base/single_flight.h"
#include "base/thread_annotations.h"
#include "base/image.h"
#include "index/layer_entry.h"
#include "index/layer_reader.h"

namespace lazyfs::index {

class ContentCache {
 public:
  // size_limit 0: unlimited.
  ContentCache(std::unique_ptr<CasDir> cas, uint64_t size_limit);

  // An open, verified content object, or NotFound (absent, or corrupt and dropped). An object
  // changed on disk since it was verified (truncated, rewritten: a disk error, another program)
  // is verified again, so a live mount drops it and fetches it again.
  Result<std::shared_ptr<Fd>> Open(const Digest& d);
  // Reads out.size() bytes at `offset` of object `d`: NotFound as Open, DataLoss "cached content
  // ... is short" when the object ends first.
  Result<size_t> Read(const Digest& d, uint64_t offset, std::span<std::byte> out);
  bool Contains(const Digest& d) const { return cas_->Contains(d); }
  // STORE/content.
  const std::string& root() const { return cas_->root(); }
  CasDir& cas() { return *cas_; }
  // Stores verified bytes (DataLoss if they do not hash to `d`), then evicts if over the limit.
  Status Put(const Digest& d, std::string_view bytes);
  // Put for bytes the caller has just hashed to `d` itself (CasDir::PutHashed).
  Status PutHashed(const Digest& d, std::string_view bytes);
  Status Remove(const Digest& d);

  // Re-reads a whole layer and stores every regular file in it that the cache lacks. `indexed`
  // is the layer's entry list from the index, in archive order: each file's bytes must match the
  // digest recorded there, so what lands in the cache chains up to the manifest. Concurrent
  // calls for one layer share one extraction. The fallback for layers indexed without
  // checkpoints and for sparse files (whose data chunks it stores, never
  // their holes); `options` caps the pass as indexing did.
  Status ExtractLayer(const LayerDescriptor& layer, BlobSource& blobs,
                      const std::vector<LayerEntry>& indexed, const LayerReadOptions& options);

  struct EvictReport {
    uint64_t objects_removed = 0, bytes_removed = 0, objects_kept = 0, bytes_kept = 0;
  };
  // Removes the objects `drop` says to drop, then the least recently used until the cache fits
  // in `limit` bytes (0: no limit).
  Result<EvictReport> Evict(uint64_t limit, const std::function<bool(const Digest&)>& drop);

 private:
  static constexpr size_t kMaxOpen = 512;
  struct OpenObject {
    std::shared_ptr<Fd> fd;
    CasDir::Stamp stamp;  // the state CasDir verified
    std::chrono::steady_clock::time_point touched;
  };
  Status DoExtract(const LayerDescriptor& layer, BlobSource& blobs,
                   const std::vector<LayerEntry>& indexed, const LayerReadOptions& options);
  Status ExtractSparse(LayerReader& reader, const LayerEntry& indexed,
                       const LayerDescriptor& layer);
  void MaybeEvict(uint64_t added) LAZYFS_EXCLUDES(mu_);
  Result<EvictReport> EvictLocked(uint64_t limit, const std::function<bool(const Digest&)>& drop)
      LAZYFS_REQUIRES(evict_mu_);
  Status Store(const Digest& d, std::string_view bytes, bool hashed);

  std::unique_ptr<CasDir> cas_;
  const uint64_t size_limit_;
  SingleFlight<Digest> extractions_;  // by layer digest
  // Lock order: evict_mu_ before mu_.
  Mutex evict_mu_ LAZYFS_ACQUIRED_BEFORE(mu_);
  Mutex mu_;
  std::map<Digest, OpenObject> fds_ LAZYFS_GUARDED_BY(mu_);
  uint64_t added_since_evict_ LAZYFS_GUARDED_BY(mu_) = 0;
};

}  // namespace lazyfs::index
