// Content kept while a layer is stream-indexed (IndexOptions::cache_content_while_indexing), so
// a caller about to read every file (materialize) never decompresses a byte twice.
//
// A file of one chunk is stored whole, a larger one chunk by chunk, each under the digest the
// layer reader computed from the same bytes. The stores run on a thread of their own, so writing
// the cache overlaps decompressing the layer; what waits for that thread is bounded
// (kMaxQueued bytes). Best effort: the first failure to store (a full disk, say) ends capturing
// for the layer, and what was not stored is read lazily later. So does the store's filesystem
// running low: capturing stops while kReserve (or an eighth of the filesystem, if less) is
// still free, so the index's own write never finds the disk full.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/digest.h"
#include "base/thread_annotations.h"
#include "index/content_cache.h"
#include "index/layer_reader.h"

namespace lazyfs::index {

// Begin/sink/End are called by the one indexing thread; the stores run on a worker of its own.
class ContentCapture {
 public:
  ContentCapture(ContentCache& cache, std::string layer);
  ~ContentCapture();  // waits for the queued stores
  ContentCapture(const ContentCapture&) = delete;
  ContentCapture& operator=(const ContentCapture&) = delete;

  // Starts a file of `size` bytes whose chunk digests the reader appends to `chunks` (files over
  // one chunk) as each chunk completes, before it hands the chunk's last bytes to sink().
  // False when capturing has ended.
  bool Begin(uint64_t size, const std::vector<Digest>* chunks);
  LayerReader::Sink sink();
  // The file's content ended; `file` is its digest.
  void End(const Digest& file);

 private:
  static constexpr size_t kMaxQueued = 64 << 20;
  static constexpr uint64_t kReserve = uint64_t{256} << 20;
  static constexpr uint64_t kCheckEvery = 8 << 20;

  void Take(const char* p, size_t n);
  void QueueChunk();
  void Queue(const Digest& d) LAZYFS_EXCLUDES(mu_);
  void Run() LAZYFS_EXCLUDES(mu_);
  Status RoomFor(size_t bytes);
  void Fail(const Status& s);

  ContentCache& cache_;
  const std::string layer_;
  // The indexing thread's file in progress.
  uint64_t size_ = 0;
  const std::vector<Digest>* chunks_ = nullptr;
  size_t next_ = 0;
  std::string buf_;
  std::atomic<bool> failed_{false};
  uint64_t since_check_ = kCheckEvery;  // the worker's: the first store checks
  Mutex mu_;
  CondVar cv_;
  std::deque<std::pair<Digest, std::string>> queue_ LAZYFS_GUARDED_BY(mu_);
  size_t queued_bytes_ LAZYFS_GUARDED_BY(mu_) = 0;
  bool closing_ LAZYFS_GUARDED_BY(mu_) = false;
  std::thread worker_;  // started by the indexing thread on the first store, joined at the end
};

}  // namespace lazyfs::index
