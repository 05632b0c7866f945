// Where the content of a layer's files comes from when the content cache lacks it: one
// ContentSource per layer kind, chosen once, when a tree first reads from the layer.
//
//   - checkpoint span (content_source_span.cc): a stream-indexed layer. One range request
//     fetches the compressed span from the decompression checkpoint before the wanted chunks to
//     the one after; the span is inflated, each chunk checked against the digest recorded while
//     indexing, and every file the span wholly holds is cached too.
//   - TOC chunk (content_source_toc.cc): an eStargz or zstd:chunked layer. The chunks covering
//     the bytes are fetched, one range request per run of adjacent chunks, each inflated alone
//     and checked against its chunk digest.
//   - whole layer (content_source_layer.cc): a layer indexed before lazy reads existed, and a
//     sparse file (its bytes are not contiguous in the tar). The layer is read once, whole, and
//     every file it holds stored as a cached object.
//
// Every fetched range is also shown to the whole-layer check (layer_check.h). Chunk fetches of
// one tree share a SingleFlight and run in its WorkPool, so concurrent misses of a chunk make one
// request, and a reader gives up at its Deadline while the fetch goes on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "base/deadline.h"
#include "base/image.h"
#include "base/single_flight.h"
#include "base/status.h"
#include "base/work_pool.h"
#include "index/content_cache.h"
#include "index/layer_check.h"
#include "index/records.h"

namespace lazyfs::index {

// What the sources of one tree share. Everything outlives the sources.
struct SourceContext {
  const Records* records = nullptr;
  ContentCache* cache = nullptr;
  BlobSource* blobs = nullptr;
  LayerCheck* check = nullptr;
  SingleFlight<Digest>* flights = nullptr;  // chunk fetches, by chunk digest
  WorkPool* pool = nullptr;                 // where they run
  const IndexOptions* options = nullptr;    // caps for reading a layer whole
};

// Thread-safe.
class ContentSource {
 public:
  virtual ~ContentSource() = default;
  // Reads [offset, offset + out.size()) of the regular file with sha256 `file` and `size`
  // bytes (out already clamped to the file), fetching what the cache lacks. Sets *fetched when
  // anything came from the blob. DataLoss when bytes do not match their digest (nothing of them
  // is cached or served); Unavailable at the deadline.
  virtual Result<size_t> Read(const Digest& file, uint64_t size, uint64_t offset,
                              std::span<std::byte> out, const Deadline& deadline,
                              bool* fetched) = 0;
  // Brings a whole file into the cache (prefetch); the content bytes fetched.
  virtual Result<uint64_t> FetchFile(const Digest& file, const Deadline& deadline);
  // Fetches what the layer holds beyond its files' chunks, so it can be checked whole (TOC
  // layers: chunks of hidden files, the TOC); the content bytes fetched.
  virtual Result<uint64_t> FetchRest(const Deadline& deadline);
  // Files a workload reads first (an eStargz prefetch landmark), by sha256.
  virtual std::vector<Digest> LandmarkFiles() const;
  // Whether a cached object named `digest` may be served as this layer's content without a
  // fetch: true when the layer's digests are lazyfs's own (computed while indexing); for a TOC
  // layer, whose digests are the TOC's claims, only once this layer's own bytes produced it.
  virtual bool TrustsCached(const Digest& digest);
};

// The source for `layer`, from its records.
Result<std::unique_ptr<ContentSource>> OpenContentSource(const LayerDescriptor& layer,
                                                         const SourceContext& ctx);

std::unique_ptr<ContentSource> MakeWholeLayerSource(const LayerDescriptor& layer,
                                                    const SourceContext& ctx);
// `whole` serves the files that have no location (sparse files). `provenance`: the layer's
// records came from an index artifact, its digests are claims (layer_artifact.h).
std::unique_ptr<ContentSource> MakeSpanSource(const LayerDescriptor& layer,
                                              const LayerRecord& record,
                                              const LazyLayerRecord& lazy,
                                              const SourceContext& ctx,
                                              std::unique_ptr<ContentSource> whole,
                                              std::optional<ArtifactProvenance> provenance);
std::unique_ptr<ContentSource> MakeTocSource(const LayerDescriptor& layer,
                                             const LayerRecord& record, TocLayerRecord toc,
                                             const SourceContext& ctx);

// Removes every cached chunk of a stream-indexed layer's files: they matched their digests, but
// the layer as a whole did not, so nothing from it is trusted any more. Best effort.
void DropLayerChunks(const Records& records, ContentCache& cache, const Digest& layer);

// ---- shared by the chunked sources -------------------------------------------------------------

// One chunk of a file: its digest and where it lies in the file.
struct FileChunk {
  Digest digest;
  uint64_t offset = 0;
  uint64_t size = 0;
};

// Serves [offset, offset + out.size()) from the cached chunks that cover it (in file order),
// calling `fetch_missing` first: a chunk evicted (or found corrupt and dropped) between the
// fetch and the read is fetched again, up to three times, then Unavailable ("the content cache
// is too small").
Result<size_t> ReadCachedChunks(ContentCache& cache, const Digest& file,
                                const std::vector<FileChunk>& chunks, uint64_t offset,
                                std::span<std::byte> out,
                                const std::function<Status()>& fetch_missing);

// Fetches the chunks among `wanted` that are not `have` (asked under the flight's lock): those
// another read is fetching are waited for, the rest claimed by one `fetch(claimed)` run in the
// tree's pool. Errors name the layer.
Status FetchMissingChunks(const SourceContext& ctx, const LayerDescriptor& layer,
                          const std::vector<Digest>& wanted,
                          const std::function<bool(const Digest&)>& have,
                          std::function<Status(const std::vector<Digest>&)> fetch,
                          const Deadline& deadline);

// Reads a blob range of exactly `length` bytes (DataLoss when the blob ends first).
Result<std::string> FetchRange(BlobSource& blobs, const LayerDescriptor& layer, uint64_t offset,
                               uint64_t length, const Deadline& deadline);

}  // namespace lazyfs::index
