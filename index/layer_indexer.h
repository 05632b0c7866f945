// Indexing one layer: its entries, and the records that let its content be read later. One
// indexer per family of layer formats:
//
// - the stream indexer (indexer_stream.cc: tar, tar+gzip, tar+zstd) reads the whole blob once,
//   verified against its digest, hashing every file (and each 1 MiB chunk of larger ones) and
//   the uncompressed stream (checked against the config's diff_id), and records decompression
//   checkpoints and where each file's bytes lie, so a later read fetches only a span;
// - the TOC indexer (indexer_toc.cc: eStargz, zstd:chunked) reads the footer and the table of
//   contents with two range requests, checks the TOC against the digest the manifest annotates,
//   and records each file's chunks: no layer download at all.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "base/image.h"
#include "base/status.h"
#include "index/content_cache.h"
#include "index/layer_entry.h"
#include "index/records.h"
#include "index/tree.h"

namespace lazyfs::index {

// Thread-safe: layers of one image are indexed on several threads at once.
class LayerIndexer {
 public:
  virtual ~LayerIndexer() = default;
  // Whether this indexer takes `layer` (InvalidArgument for a malformed TOC annotation).
  virtual Result<bool> Takes(const LayerDescriptor& layer) const = 0;
  // Indexes `layer`, adding its records to `batch`; returns its entries in archive order.
  // `stopped` is polled: once true, indexing ends early with Unavailable. Errors name the layer
  // and the entry; Unimplemented means this indexer cannot take the layer after all (a TOC it
  // cannot use), and the next one should.
  virtual Result<std::vector<LayerEntry>> Index(const LayerDescriptor& layer, BlobSource& blobs,
                                                RecordBatch& batch, const ProgressFn& progress,
                                                const std::function<bool()>& stopped) const = 0;
};

// `cache` receives content while indexing when options.cache_content_while_indexing.
std::unique_ptr<LayerIndexer> MakeStreamIndexer(const IndexOptions& options, ContentCache& cache);
std::unique_ptr<LayerIndexer> MakeTocIndexer(const IndexOptions& options);

// The message a layer's indexing stops with when another layer of the image failed.
inline constexpr std::string_view kIndexingStopped = "stopped: another layer of the image failed";

// What a stream layer reads with: the caps of `options`, the decompressed size capped against
// the size the manifest declares for the layer.
LayerReadOptions StreamReadOptions(const IndexOptions& options, uint64_t declared_size);

}  // namespace lazyfs::index
