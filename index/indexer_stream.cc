// The stream indexer (layer_indexer.h): one pass over a tar, tar+gzip or tar+zstd layer.
#include <map>
#include <utility>

#include "index/content_capture.h"
#include "index/layer_indexer.h"
#include "index/layer_reader.h"

namespace lazyfs::index {
namespace {

// What one pass learns besides the entries: where each file's bytes lie.
struct StreamFacts {
  std::map<Digest, FileLocation> locations;
  std::vector<std::pair<uint64_t, Digest>> files_at;
};

class StreamIndexer final : public LayerIndexer {
 public:
  StreamIndexer(const IndexOptions& options, ContentCache& cache)
      : options_(options), cache_(cache) {}

  // Every layer: one of an unsupported media type fails in Index, naming it.
  Result<bool> Takes(const LayerDescriptor&) const override { return true; }

  Result<std::vector<LayerEntry>> Index(const LayerDescriptor& layer, BlobSource& blobs,
                                        RecordBatch& batch, const ProgressFn& progress,
                                        const std::function<bool()>& stopped) const override {
    const std::string name = layer.digest.Short();
    LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
    LAZYFS_ASSIGN_OR_RETURN(Fd blob, blobs.OpenBlob(layer.digest, layer.size));
    LayerReadOptions ro = StreamReadOptions(options_, layer.size);
    ro.record_checkpoints = true;
    LAZYFS_ASSIGN_OR_RETURN(auto reader, LayerReader::Open(blob.get(), layer.size, comp, ro, name));
    StreamFacts facts;
    LAZYFS_ASSIGN_OR_RETURN(std::vector<LayerEntry> entries,
                            ReadEntries(*reader, layer, progress, stopped, &facts));
    LAZYFS_ASSIGN_OR_RETURN(Digest diff_id, reader->Finish());
    if (layer.diff_id && *layer.diff_id != diff_id) {
      return DataLossError("layer " + name + ": uncompressed content is " + diff_id.ToString() +
                           " but the image config says diff_id " + layer.diff_id->ToString());
    }
    if (progress) progress({"index", name, layer.size, layer.size});

    const std::vector<Checkpoint> checkpoints = reader->TakeCheckpoints();
    for (const Checkpoint& cp : checkpoints) batch.PutCheckpoint(layer.digest, cp);
    for (const auto& [digest, loc] : facts.locations) batch.PutLocation(layer.digest, loc);
    for (const auto& [offset, digest] : facts.files_at) batch.PutFileAt(layer.digest, offset, digest);
    batch.PutLazyLayer(layer.digest, LazyLayerRecord{comp, checkpoints.size()});
    LayerRecord r;
    r.diff_id = diff_id;
    r.uncompressed = reader->uncompressed_bytes();
    batch.PutEntries(layer.digest, entries, r);
    return entries;
  }

 private:
  // Every entry, each file's content hashed (and captured into the cache when asked).
  Result<std::vector<LayerEntry>> ReadEntries(LayerReader& reader, const LayerDescriptor& layer,
                                              const ProgressFn& progress,
                                              const std::function<bool()>& stopped,
                                              StreamFacts* facts) const {
    const std::string name = layer.digest.Short();
    std::vector<LayerEntry> entries;
    uint64_t last_report = 0;
    ContentCapture capture(cache_, name);
    for (;;) {
      if (stopped()) return UnavailableError(std::string(kIndexingStopped));
      LayerEntry e;
      LAZYFS_ASSIGN_OR_RETURN(bool more, reader.Next(&e));
      if (!more) break;
      if (e.kind == EntryKind::kFile && reader.CurrentIsSparse()) {
        LAZYFS_RETURN_IF_ERROR(ReadSparse(reader, &e, facts));
      } else if (e.kind == EntryKind::kFile) {
        const std::optional<uint64_t> offset = reader.DataOffset();
        FileLocation loc;
        const bool capturing = options_.cache_content_while_indexing && e.size > 0 &&
                               capture.Begin(e.size, &loc.chunks);
        auto digest = reader.ReadData(capturing ? capture.sink() : LayerReader::Sink(),
                                      &loc.chunks);
        if (!digest.ok()) {
          return Status(digest.status().code(),
                        digest.status().message() + " (in entry \"" + e.path + "\")");
        }
        if (capturing) capture.End(*digest);
        e.digest = *digest;
        // Where the bytes lie, for range reads; each chunk's digest is computed from the same
        // bytes as the file's, so it chains to the layer's digest and diff_id checked after.
        if (offset && e.size > 0) {
          loc.offset = *offset;
          loc.size = e.size;
          loc.digest = e.digest;
          if (loc.chunks.size() <= 1) loc.chunks.clear();
          facts->files_at.emplace_back(loc.offset, e.digest);
          facts->locations.emplace(e.digest, std::move(loc));
        }
      }
      entries.push_back(std::move(e));
      if (progress && reader.compressed_bytes_read() - last_report >= (4 << 20)) {
        last_report = reader.compressed_bytes_read();
        progress({"index", name, last_report, layer.size});
      }
    }
    return entries;
  }

  // A sparse file: its chunks recorded (those that hold data captured when asked), its holes
  // neither hashed nor stored.
  Status ReadSparse(LayerReader& reader, LayerEntry* e, StreamFacts* facts) const {
    FileLocation loc;
    loc.size = e->size;
    loc.sparse = true;
    const bool capturing = options_.cache_content_while_indexing;
    auto digest = reader.ReadSparseData(
        [&](uint64_t, const Digest& d, std::string_view bytes) -> Status {
          if (capturing && !IsZeroChunk(d, bytes.size()) && !cache_.Contains(d)) {
            cache_.PutHashed(d, bytes).IgnoreError();
          }
          return Status::Ok();
        },
        &loc.chunks);
    if (!digest.ok()) {
      return Status(digest.status().code(),
                    digest.status().message() + " (in entry \"" + e->path + "\")");
    }
    e->digest = loc.digest = *digest;
    facts->locations.emplace(e->digest, std::move(loc));
    return Status::Ok();
  }

  const IndexOptions options_;
  ContentCache& cache_;
};

}  // namespace

LayerReadOptions StreamReadOptions(const IndexOptions& options, uint64_t declared_size) {
  LayerReadOptions ro;
  ro.max_entries = options.max_entries_per_layer;
  ro.max_xattr_bytes_per_entry = options.max_xattr_bytes_per_entry;
  ro.max_file_size = options.max_file_size;
  ro.checkpoint_every_uncompressed = options.checkpoint_every_uncompressed;
  ro.checkpoint_every_compressed = options.checkpoint_every_compressed;
  // Capped against the size the manifest declares for the layer (the bytes just verified).
  const uint64_t declared = declared_size > UINT64_MAX / options.max_expansion
                                ? UINT64_MAX
                                : declared_size * options.max_expansion;
  ro.max_uncompressed_bytes =
      std::min(ro.max_uncompressed_bytes, std::max(declared, options.min_expansion_cap));
  return ro;
}

std::unique_ptr<LayerIndexer> MakeStreamIndexer(const IndexOptions& options, ContentCache& cache) {
  return std::make_unique<StreamIndexer>(options, cache);
}

}  // namespace lazyfs::index
