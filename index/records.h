// The values of the index's records (schema.h builds their keys): one encoder and one decoder
// each, typed reads over the Db, and a batch that writes them. No other file knows a record's
// bytes.
//
// Every value starts with its own version byte (except the small fixed ones: a reference's or a
// file-at record's 32 digest bytes, a directory entry's inode number), so a record can change
// shape without a new store format.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/write_batch.h>

#include "base/digest.h"
#include "base/image.h"
#include "base/status.h"
#include "index/checkpoint.h"
#include "index/db.h"
#include "index/layer_entry.h"
#include "index/merge.h"
#include "index/toc.h"
#include "index/tree.h"

namespace lazyfs::index {

struct FormatRecord {
  uint64_t version = 0, compat = 0, ro_compat = 0, incompat = 0;
};
bool DecodeFormatRecord(std::string_view v, FormatRecord* out);

// 'A': an inode of a merged tree.
struct InodeRecord {
  Attr attr;
  std::string link;
  Digest digest;       // regular files
  uint32_t layer = 0;  // regular files: the image layer holding the content
  std::vector<Xattr> xattrs;
};

// 'L': an indexed layer.
struct LayerRecord {
  Digest diff_id;
  uint64_t entries = 0;
  uint32_t chunks = 0;
  uint64_t uncompressed = 0;
};

// 'M': a stream-indexed layer that can be read with ranges.
struct LazyLayerRecord {
  LayerCompression compression = LayerCompression::kNone;
  uint64_t checkpoints = 0;
};

// 'O': where a regular file's content lies in a stream-indexed layer; for a sparse file
// (sparse.h), only its chunks (its data is not contiguous in the tar).
struct FileLocation {
  uint64_t offset = 0;  // in the uncompressed tar (0 for a sparse file)
  uint64_t size = 0;
  Digest digest;               // of the whole content (the key)
  std::vector<Digest> chunks;  // kContentChunkSize pieces; empty when the file is one chunk
  bool sparse = false;         // digest is the SparseFileDigest of chunks

  uint64_t chunk_count() const { return (size + kContentChunkSize - 1) / kContentChunkSize; }
  const Digest& chunk(uint64_t i) const { return chunks.empty() ? digest : chunks[i]; }
};

// 'S': a layer indexed from its TOC.
struct TocLayerRecord {
  TocFormat format = TocFormat::kEstargz;
  Digest toc_digest;
  uint64_t first_chunk = 0;      // blob offset of the first chunk (what precedes it is tar headers)
  uint64_t payload_end = 0;      // where the TOC (or its skippable frame) begins
  std::vector<Digest> prefetch;  // files before the prefetch landmark
};

// 'P': a layer whose records came from an index artifact (layer_artifact.h), not from its own
// bytes: every claim in them stands until the whole-layer check compares them with the layer's
// tar stream, which then deletes this record.
struct ArtifactProvenance {
  Digest artifact;  // sha256 of the artifact blob the records were imported from
};

// The values of a stream-indexed layer's own records ('L', 'M', 'O'), also what an index
// artifact carries. Decoders return false on a damaged or unknown value.
std::string EncodeLayer(const LayerRecord& r);
bool DecodeLayer(std::string_view v, LayerRecord* r);
std::string EncodeLazyLayer(const LazyLayerRecord& r);
bool DecodeLazyLayer(std::string_view v, LazyLayerRecord* r);
std::string EncodeLocation(const FileLocation& l);
// `digest` is the file's (the key's) digest.
bool DecodeLocation(std::string_view v, const Digest& digest, FileLocation* l);

// 'T': a file's TOC chunks (offsets in the file are implied by the sizes).
std::string EncodeTocChunks(const std::vector<TocChunk>& chunks);
bool DecodeTocChunks(std::string_view v, std::vector<TocChunk>* out);

// Typed reads of one Db. Each fails with DataLoss ("run lazyfs fsck") on a damaged record.
// Thread-safe, as the Db is.
class Records {
 public:
  explicit Records(const Db& db) : db_(db) {}
  const Db& db() const { return db_; }

  // References and images.
  Result<std::optional<Digest>> Ref(std::string_view ref) const;
  Status ForEachRef(const std::function<Status(std::string_view, const Digest&)>& fn) const;
  Result<bool> HasImage(const Digest& manifest) const;
  // NotFound "image ... is not in the index" when absent.
  Result<ImageDescriptor> Image(const Digest& manifest, TreeStats* stats) const;
  Status ForEachImage(
      const std::function<Status(const ImageDescriptor&, const TreeStats&)>& fn) const;

  // A merged tree.
  Result<InodeRecord> Inode(const Digest& manifest, uint64_t ino) const;
  // Every inode record in inode order; `fn` returning false stops.
  Status ForEachInode(const Digest& manifest,
                      const std::function<Result<bool>(const InodeRecord&)>& fn) const;
  // The inode number of `name` in directory `parent`, nullopt when absent.
  Result<std::optional<uint64_t>> Child(const Digest& manifest, uint64_t parent,
                                        std::string_view name) const;
  Result<std::vector<DirEntry>> Children(const Digest& manifest, uint64_t parent) const;

  // Layers.
  Result<std::optional<LayerRecord>> Layer(const Digest& layer) const;
  Result<std::vector<LayerEntry>> Entries(const Digest& layer, const LayerRecord& rec) const;
  Result<std::optional<LazyLayerRecord>> LazyLayer(const Digest& layer) const;
  Result<std::optional<FileLocation>> Location(const Digest& layer, const Digest& file) const;
  Status ForEachLocation(const Digest& layer,
                         const std::function<void(const FileLocation&)>& fn) const;
  // The files whose data starts at tar offsets from `from` on, in offset order, until `fn`
  // returns false.
  Status ForEachFileAt(const Digest& layer, uint64_t from,
                       const std::function<bool(uint64_t offset, const Digest& file)>& fn) const;
  // The checkpoint at or before (`before`) or at or after an uncompressed offset of a layer.
  Result<std::optional<Checkpoint>> CheckpointNear(const Digest& layer, uint64_t uncompressed,
                                                   bool before) const;
  Result<std::optional<TocLayerRecord>> TocLayer(const Digest& layer) const;
  Result<std::optional<std::vector<TocChunk>>> TocChunks(const Digest& layer,
                                                         const Digest& file) const;
  Status ForEachTocFile(const Digest& layer,
                        const std::function<void(const std::vector<TocChunk>&)>& fn) const;
  Result<bool> HasTocFiles(const Digest& layer) const;
  // Where a layer's records came from, when an index artifact (nullopt: its own bytes).
  Result<std::optional<ArtifactProvenance>> Provenance(const Digest& layer) const;

 private:
  const Db& db_;
};

// Writes records, atomically once handed to Db::Write. Not thread-safe.
class RecordBatch {
 public:
  void PutRef(std::string_view ref, const Digest& manifest);
  void DeleteRef(std::string_view ref);
  void PutImage(const ImageDescriptor& image, const TreeStats& stats);
  void PutInode(const Digest& manifest, const MergedInode& inode);
  void PutChild(const Digest& manifest, uint64_t parent, const DirEntry& child);
  // Forgets an image's record and tree.
  void DeleteImage(const Digest& manifest);

  // The layer's entries ('E'), then its record ('L', with rec.chunks set here).
  void PutEntries(const Digest& layer, const std::vector<LayerEntry>& entries, LayerRecord rec);
  void PutLazyLayer(const Digest& layer, const LazyLayerRecord& rec);
  void PutLocation(const Digest& layer, const FileLocation& loc);
  void PutFileAt(const Digest& layer, uint64_t offset, const Digest& file);
  void PutCheckpoint(const Digest& layer, const Checkpoint& cp);
  void PutTocLayer(const Digest& layer, const TocLayerRecord& rec);
  void PutTocChunks(const Digest& layer, const Digest& file, const std::vector<TocChunk>& chunks);
  void PutProvenance(const Digest& layer, const ArtifactProvenance& p);
  void DeleteProvenance(const Digest& layer);
  // Forgets every record of a layer.
  void DeleteLayer(const Digest& layer);

  // Adds everything `other` holds, after what this holds.
  Status Append(rocksdb::WriteBatch& other);
  size_t bytes() const { return batch_.GetDataSize(); }
  void Clear() { batch_.Clear(); }
  rocksdb::WriteBatch& rocks() { return batch_; }

 private:
  rocksdb::WriteBatch batch_;
};

}  // namespace lazyfs::index
