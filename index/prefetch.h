// Background prefetch of an image's content (IndexOptions::prefetch).
//
// One thread per tree, at low priority: before each file piece it waits until no foreground
// read is running, so prefetch never competes with a reader for the network. `landmark` fetches
// the files an eStargz layer lists before its ".prefetch.landmark" (chunk by chunk, through the
// layer's ContentSource); `all` reads every regular file of the merged tree through Tree::Read
// (any layer format), then what TOC layers hold beyond that (hidden files, the TOC) so they are
// complete for the whole-layer check.
// Best effort: a failure is counted (prefetch.errors) and logged, and prefetch moves on.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "base/image.h"
#include "index/content_source.h"
#include "index/tree.h"

namespace lazyfs::index {

// Thread-safe. The tree, image and sources must outlive the Prefetcher; the destructor stops
// the thread and joins it.
class Prefetcher {
 public:
  // The content source of image layer i.
  using SourceOf = std::function<Result<ContentSource*>(size_t layer)>;
  Prefetcher(PrefetchMode mode, const Tree& tree, const ImageDescriptor& image, SourceOf source_of,
             std::chrono::milliseconds read_timeout);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Marks a foreground read for its lifetime; reads made by the prefetch thread itself do not
  // count. `p` may be null (no prefetch).
  class Foreground {
   public:
    explicit Foreground(Prefetcher* p);
    ~Foreground();
    Foreground(const Foreground&) = delete;
    Foreground& operator=(const Foreground&) = delete;

   private:
    Prefetcher* p_;
  };

 private:
  void Run();
  // Waits while foreground reads run; false once stopping.
  bool Yield();
  void Landmarks();
  void Everything();

  const PrefetchMode mode_;
  const Tree& tree_;
  const ImageDescriptor& image_;
  const SourceOf source_of_;
  const std::chrono::milliseconds read_timeout_;
  std::atomic<int> foreground_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace lazyfs::index
