// Sparse files: regular files whose tar entry declares holes (GNU sparse, PAX sparse 0.x/1.0).
//
// A hole is never expanded, hashed byte by byte, cached or written: a legitimate image may carry
// a /var/log/lastlog of hundreds of GiB that is almost all hole. So a sparse file over one chunk
// does not have the sha256 of its bytes as its content digest (that would hash every zero): it
// has the digest of its chunk list,
//
//   SparseFileDigest = sha256("lazyfs sparse file v1\n" || size, 8 bytes little-endian ||
//                             the sha256 of each kContentChunkSize chunk, in order)
//
// where a chunk that no data touches is ZeroChunkDigest(its length), known without hashing it.
// The digest depends on the bytes only, not on how the tar's map split them. A chunk whose digest
// is ZeroChunkDigest reads as zeros without a fetch or a cache object, whatever file it is in.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

#include "base/digest.h"
#include "base/status.h"

namespace lazyfs::index {

// Regular files over this size are cached, fetched and hashed in pieces of this size (each
// piece under its own sha256); it is also the unit of a sparse file's holes.
inline constexpr uint64_t kContentChunkSize = uint64_t{1} << 20;

// Apparent sizes past this are refused however sparse the file (IndexOptions::max_file_size).
inline constexpr uint64_t kDefaultMaxFileSize = uint64_t{1} << 50;  // 1 PiB

// [start, end) byte ranges of a file, in order, not overlapping.
using Extents = std::vector<std::pair<uint64_t, uint64_t>>;

// sha256 of `len` (<= kContentChunkSize) zero bytes; computed once per length.
Digest ZeroChunkDigest(uint64_t len);
bool IsZeroChunk(const Digest& chunk, uint64_t len);
Digest SparseFileDigest(uint64_t size, const std::vector<Digest>& chunks);
// The ranges of a file of `size` bytes whose chunks are not zero chunks, merged.
Extents DataOfChunks(uint64_t size, const std::vector<Digest>& chunks);

// A sparse map as a tar declares it: InvalidArgument unless the extents are in order, do not
// overlap and end within `size`. Empty extents are dropped.
Result<Extents> CheckSparseMap(Extents map, uint64_t size);

// Builds a sparse file's chunks from its data blocks, given in increasing offsets: each chunk a
// data block touches is assembled (zeros where the map has none) and handed to `chunk` with its
// digest; the others only get ZeroChunkDigest.
class SparseChunker {
 public:
  using ChunkFn = std::function<Status(uint64_t index, const Digest& digest, std::string_view bytes)>;
  SparseChunker(uint64_t size, ChunkFn chunk);
  // Data at [offset, offset + bytes.size()); InvalidArgument when it goes backwards or past the
  // size.
  Status Data(uint64_t offset, std::string_view bytes);
  // Ends the file; returns SparseFileDigest, and every chunk's digest in *chunks.
  Result<Digest> Finish(std::vector<Digest>* chunks);

 private:
  uint64_t ChunkLen(uint64_t index) const;
  // Completes chunks up to (not including) `index`: the open one hashed, the rest zero.
  Status CloseUpTo(uint64_t index);

  const uint64_t size_;
  const ChunkFn chunk_;
  std::vector<Digest> digests_;
  std::string open_;  // the chunk being assembled: digests_.size() is its index
  uint64_t pos_ = 0;  // the end of the data so far
};

}  // namespace lazyfs::index
