// eStargz and zstd:chunked layers in the index: built from their TOCs with range requests only,
// and read chunk by chunk.
//
// A layer whose descriptor carries the TOC digest annotation is indexed from its footer and TOC
// (two range requests, no layer download): the TOC's sha256 must equal the annotation, which
// the manifest carries, so every entry and chunk digest chains to the manifest. The diff_id
// cannot be checked before every byte of the layer is present; the whole-layer check of
// index_store.cc does it then. Reads fetch the chunks that cover the bytes asked for, one range
// request per contiguous run, and check each chunk against its digest before it is cached
// (by that digest, so a chunk shared by layers or images is stored once) or served.
//
// Records (schema.h): 'S' layer -> TocLayerRecord; 'T' layer content -> the file's chunks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/image.h"
#include "base/status.h"
#include "index/content_cache.h"
#include "index/toc.h"

namespace lazyfs::index {

// 'S': a layer indexed from its TOC.
struct TocLayerRecord {
  TocFormat format = TocFormat::kEstargz;
  Digest toc_digest;
  uint64_t first_chunk = 0;      // blob offset of the first chunk (what precedes it is tar headers)
  uint64_t payload_end = 0;      // where the TOC (or its skippable frame) begins
  std::vector<Digest> prefetch;  // files before the prefetch landmark
};
std::string EncodeTocLayer(const TocLayerRecord& r);
bool DecodeTocLayer(std::string_view v, TocLayerRecord* r);
// 'T': a file's chunks (offsets in the file are implied by the sizes).
bool DecodeTocChunks(std::string_view v, std::vector<TocChunk>* out);

// The TOC digest annotated on a gzip or zstd layer; nullopt when there is none (the layer is
// indexed as a stream). InvalidArgument when the annotation is not a sha256 digest.
Result<std::optional<Digest>> TocDigestOf(const LayerDescriptor& layer);

struct TocIndexed {
  std::vector<LayerEntry> entries;
  // 'S' and 'T' records, written with the layer's other records.
  std::vector<std::pair<std::string, std::string>> records;
  uint64_t bytes_read = 0;  // from the blob: footer and TOC
};

// Reads the footer and the TOC with ranges, checks the TOC against `toc_digest` (DataLoss
// naming the layer when it differs) and builds the layer's entries and records from it.
Result<TocIndexed> IndexFromToc(const LayerDescriptor& layer, const Digest& toc_digest,
                                BlobSource& blobs, const TocLimits& limits);

// Reads a blob range, retrying network failures (Unavailable) with backoff until `deadline`.
Result<std::string> FetchBlobRange(BlobSource& blobs, const Digest& blob, uint64_t offset,
                                   uint64_t length, std::chrono::steady_clock::time_point deadline);

// Reads files of TOC-indexed layers for one Tree. Thread-safe; concurrent misses of one chunk
// share one request. The destructor waits for fetches still running (their readers may have
// given up at the deadline).
class TocReader {
 public:
  // Reads a record of the index (nullopt when absent).
  using GetFn = std::function<Result<std::optional<std::string>>(std::string_view key)>;
  // Calls `each` for every record whose key starts with `prefix`, in key order.
  using ScanFn = std::function<Status(
      std::string_view prefix,
      const std::function<void(std::string_view key, std::string_view value)>& each)>;
  // Told about every blob range fetched, for the whole-layer check.
  using SawFn =
      std::function<void(const LayerDescriptor& layer, uint64_t offset, std::string_view bytes)>;
  TocReader(GetFn get, ScanFn scan, std::shared_ptr<ContentCache> cache, BlobSource& blobs,
            std::chrono::milliseconds read_timeout, SawFn saw);
  ~TocReader();
  TocReader(const TocReader&) = delete;
  TocReader& operator=(const TocReader&) = delete;

  // Reads [offset, offset + out.size()) of the file with sha256 `file` in `layer` (out.size()
  // already clamped to the file); nullopt when the layer was not indexed from a TOC. Sets
  // *fetched when anything came from the blob. DataLoss when a chunk does not match its digest
  // (nothing of it is cached or served); Unavailable past the read timeout.
  Result<std::optional<size_t>> Read(const LayerDescriptor& layer, const Digest& file,
                                     uint64_t offset, std::span<std::byte> out, bool* fetched);
  // Brings every chunk of a file into the cache (prefetch). Returns the content bytes it
  // fetched (0 when all were cached, or the layer is not a TOC layer).
  Result<uint64_t> FetchFile(const LayerDescriptor& layer, const Digest& file);
  // The 'S' record of a layer; nullopt when it was not indexed from a TOC.
  Result<std::optional<TocLayerRecord>> Layer(const Digest& layer);
  // Fetches every chunk of the layer the cache lacks (files hidden by upper layers too) and its
  // TOC and footer, so the layer is complete for its whole-layer check. Returns the content
  // bytes fetched; 0 for a layer not indexed from a TOC.
  Result<uint64_t> FetchLayer(const LayerDescriptor& layer);

 private:
  Result<std::optional<std::vector<TocChunk>>> Chunks(const Digest& layer, const Digest& file);
  Status Fetch(const LayerDescriptor& layer, const std::vector<TocChunk>& missing,
               std::chrono::steady_clock::time_point deadline);
  Status FetchRuns(const LayerDescriptor& layer, std::vector<TocChunk> chunks,
                   std::chrono::steady_clock::time_point deadline);

  const GetFn get_;
  const ScanFn scan_;
  const std::shared_ptr<ContentCache> cache_;
  BlobSource& blobs_;
  const std::chrono::milliseconds read_timeout_;
  const SawFn saw_;
  std::mutex mu_;
  std::map<Digest, std::shared_future<Status>> inflight_;  // GUARDED_BY(mu_), by chunk digest
  std::condition_variable workers_cv_;
  int workers_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace lazyfs::index
