// The TOC indexer (layer_indexer.h): eStargz and zstd:chunked layers indexed from their footer
// and table of contents, read with range requests.
//
// The TOC's sha256 must equal the annotation the manifest carries, so every entry and chunk
// digest chains to the manifest. The diff_id cannot be checked before every byte of the layer is
// present: the config's is recorded, and the whole-layer check (layer_check.h) verifies it once
// reads (or prefetch) fetched them all.
#include <algorithm>

#include "base/log.h"
#include "index/layer_indexer.h"
#include "index/toc.h"

namespace lazyfs::index {
namespace {

// The TOC digest annotated on a gzip or zstd layer; nullopt when there is none (the layer is
// indexed as a stream). InvalidArgument when the annotation is not a sha256 digest.
Result<std::optional<Digest>> TocDigestOf(const LayerDescriptor& layer) {
  auto it = layer.annotations.find(std::string(kTocDigestAnnotation));
  if (it == layer.annotations.end()) return std::optional<Digest>();
  auto comp = CompressionOfMediaType(layer.media_type);
  if (!comp.ok() || *comp == LayerCompression::kNone) return std::optional<Digest>();
  auto d = Digest::Parse(it->second);
  if (!d.ok()) {
    return InvalidArgumentError("layer " + layer.digest.Short() + ": annotation " +
                                std::string(kTocDigestAnnotation) + ": " + d.status().message());
  }
  return std::optional<Digest>(*d);
}

class TocIndexer final : public LayerIndexer {
 public:
  explicit TocIndexer(const IndexOptions& options) {
    limits_.max_entries = options.max_entries_per_layer;
    limits_.max_xattr_bytes_per_entry = options.max_xattr_bytes_per_entry;
  }

  // A TOC annotation, and a diff_id to record (it cannot be computed without every byte).
  Result<bool> Takes(const LayerDescriptor& layer) const override {
    LAZYFS_ASSIGN_OR_RETURN(auto toc_digest, TocDigestOf(layer));
    return toc_digest.has_value() && layer.diff_id.has_value();
  }

  Result<std::vector<LayerEntry>> Index(const LayerDescriptor& layer, BlobSource& blobs,
                                        RecordBatch& batch, const ProgressFn& progress,
                                        const std::function<bool()>&) const override {
    LAZYFS_ASSIGN_OR_RETURN(auto toc_digest, TocDigestOf(layer));
    if (!toc_digest || !layer.diff_id) return UnimplementedError("no TOC to index from");
    LAZYFS_ASSIGN_OR_RETURN(ReadTocResult read, ReadToc(layer, *toc_digest, blobs));
    TocLayerRecord rec;
    rec.toc_digest = *toc_digest;
    rec.format = read.footer.format;
    rec.payload_end = read.footer.payload_end;
    rec.first_chunk = read.footer.payload_end;
    rec.prefetch = std::move(read.toc.prefetch);
    for (const auto& [digest, chunks] : read.toc.files) {
      for (const TocChunk& c : chunks) {
        rec.first_chunk = std::min(rec.first_chunk, c.compressed_offset);
      }
      batch.PutTocChunks(layer.digest, digest, chunks);
    }
    batch.PutTocLayer(layer.digest, rec);
    LayerRecord r;
    r.diff_id = *layer.diff_id;
    batch.PutEntries(layer.digest, read.toc.entries, r);
    if (progress) progress({"index", layer.digest.Short(), layer.size, layer.size});
    return std::move(read.toc.entries);
  }

 private:
  struct ReadTocResult {
    TocFooter footer;
    Toc toc;
  };

  // Reads the footer and the TOC with ranges and checks the TOC against `toc_digest` (DataLoss
  // naming the layer when it differs).
  Result<ReadTocResult> ReadToc(const LayerDescriptor& layer, const Digest& toc_digest,
                                BlobSource& blobs) const {
    const std::string name = "layer " + layer.digest.Short();
    LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
    auto read = [&](uint64_t offset, uint64_t length) -> Result<std::string> {
      std::string buf(length, '\0');
      LAZYFS_ASSIGN_OR_RETURN(size_t n,
                              blobs.ReadBlobRange(layer.digest, offset,
                                                  std::as_writable_bytes(std::span(buf)),
                                                  Deadline::Never()));
      if (n != length) {
        return DataLossError(name + ": the blob ends before byte " +
                             std::to_string(offset + length) + " (its descriptor says " +
                             std::to_string(layer.size) + " bytes)");
      }
      return buf;
    };
    ReadTocResult out;
    const uint64_t tail_size = std::min(layer.size, kTocTailSize);
    LAZYFS_ASSIGN_OR_RETURN(std::string tail, read(layer.size - tail_size, tail_size));
    auto footer = ParseTocFooter(comp, tail, layer.size);
    if (!footer.ok()) return footer.status().WithContext(name);
    out.footer = *footer;
    if (footer->toc_size > limits_.max_toc_bytes) {
      return Status(StatusCode::kResourceExhausted,
                    name + ": TOC of " + std::to_string(footer->toc_size) + " bytes (more than " +
                        std::to_string(limits_.max_toc_bytes) + ")");
    }
    LAZYFS_ASSIGN_OR_RETURN(std::string compressed, read(footer->toc_offset, footer->toc_size));
    auto json = DecompressToc(*footer, compressed, limits_);
    if (!json.ok()) return json.status().WithContext(name);
    const Digest got = Sha256Of(*json);
    if (got != toc_digest) {
      return DataLossError(name + ": its TOC hashes to " + got.ToString() +
                           " but the manifest annotates " + std::string(kTocDigestAnnotation) +
                           " " + toc_digest.ToString());
    }
    auto toc = ParseToc(*json, *footer, limits_);
    if (!toc.ok()) return toc.status().WithContext(name + ": TOC");
    out.toc = std::move(*toc);
    return out;
  }

  TocLimits limits_;
};

}  // namespace

std::unique_ptr<LayerIndexer> MakeTocIndexer(const IndexOptions& options) {
  return std::make_unique<TocIndexer>(options);
}

}  // namespace lazyfs::index
