// Streaming reader of one layer blob: decompression, the tar headers, and the layer's digests.
//
// The reader decompresses the blob itself (inflate.h) and hands libarchive plain tar bytes, so
// that it sees every uncompressed byte: it hashes them for the layer's diff_id and caps the
// decompressed size. libarchive parses the tar dialects (ustar, GNU long names and sparse files,
// PAX with global headers, SCHILY.xattr and sparse 1.0). Names are normalised and checked here,
// once, so nothing downstream ever sees "..", an absolute path or an over-long name.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>
#include <string>

#include "base/image.h"
#include "base/status.h"
#include "index/layer_entry.h"
#include "index/checkpoint.h"
#include "index/sparse.h"

namespace lazyfs::index {

struct LayerReadOptions {
  uint64_t max_entries = 1'000'000;
  uint64_t max_xattr_bytes_per_entry = 64 * 1024;
  // Decompressed bytes accepted from one layer (a gzip bomb stops here).
  uint64_t max_uncompressed_bytes = uint64_t{1} << 40;
  // A regular file's apparent size (a sparse file's holes count): past it the entry is refused.
  uint64_t max_file_size = kDefaultMaxFileSize;
  // Record decompression checkpoints (checkpoint.h) for later random access: one at the first
  // block (gzip) or frame (zstd) boundary after either this much output or this much input
  // since the previous one. The input distance bounds what a read fetches; the output distance
  // bounds what it decompresses. Each gzip checkpoint costs its window (<= 32 KiB, compressed).
  bool record_checkpoints = false;
  uint64_t checkpoint_every_uncompressed = 4 << 20;
  uint64_t checkpoint_every_compressed = 512 << 10;
};

// Normalises a tar entry name (or a hardlink target): strips "./", empty components and a
// leading "/" (names are relative to the image root, as other container tools take them);
// fails with InvalidArgument on an empty name, a ".." component, a component over 255 bytes or
// a path over 4096 bytes. Returns "" for the root.
Result<std::string> NormaliseEntryPath(std::string_view raw);

// What a normalised entry name says before the entry's type does: a whiteout (".wh.NAME") or an
// opaque marker (".wh..wh..opq"), which set e->kind and e->path; AUFS bookkeeping
// (".wh..wh.*") to skip; or a plain entry. InvalidArgument for a whiteout of nothing, "." or
// "..". Shared by tar layers and TOC entries.
enum class EntryName { kPlain, kMarker, kSkip };
Result<EntryName> ClassifyEntryName(const std::string& path, LayerEntry* e);

// Not thread-safe; one pass over one blob.
class LayerReader {
 public:
  // `fd` must stay open while the reader is used; `name` (the layer digest) prefixes errors.
  static Result<std::unique_ptr<LayerReader>> Open(int fd, uint64_t blob_size,
                                                   LayerCompression compression,
                                                   const LayerReadOptions& options,
                                                   std::string name);
  ~LayerReader();

  // Reads the next entry header into *entry (digest unset). False at the end of the archive.
  // Entries to ignore (AUFS metadata such as ".wh..wh.plnk") are skipped.
  Result<bool> Next(LayerEntry* entry);
  // Streams the current regular file's content to `sink` (holes of sparse files as zeros) and
  // returns its sha256. `sink` may be empty to only hash.
  // When `chunks` is given it receives the sha256 of every kContentChunkSize piece of the
  // content; nothing for a file of at most one chunk (its one chunk digest is the file's).
  using Sink = std::function<Status(const char* data, size_t len)>;
  Result<Digest> ReadData(const Sink& sink, std::vector<Digest>* chunks = nullptr);
  // Whether the current regular file is sparse (sparse.h): a tar sparse entry of more than one
  // chunk. ReadData then returns its SparseFileDigest, not the sha256 of its bytes, and still
  // hands `sink` every byte, holes as zeros (for callers that keep small files in memory);
  // ReadSparseData hands over only the chunks that hold data.
  bool CurrentIsSparse() const;
  Result<Digest> ReadSparseData(const SparseChunker::ChunkFn& chunk, std::vector<Digest>* chunks);
  // The offset of the current regular file's content in the uncompressed tar, when the content
  // is stored there contiguously (not for sparse files).
  std::optional<uint64_t> DataOffset() const;
  // Reads to the end of the blob; returns the sha256 of the whole uncompressed stream (the
  // diff_id) and checks the blob had no trailing garbage after the compressed stream.
  Result<Digest> Finish();

  // The checkpoints recorded so far (record_checkpoints), in stream order; after Finish, only
  // those before the end of the stream.
  std::vector<Checkpoint> TakeCheckpoints();

  uint64_t compressed_bytes_read() const;
  uint64_t uncompressed_bytes() const;

 private:
  struct Impl;
  explicit LayerReader(std::unique_ptr<Impl> impl);
  Result<Digest> ReadSparseExpanded(const Sink& sink, std::vector<Digest>* chunks);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lazyfs::index
