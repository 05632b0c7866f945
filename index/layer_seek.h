// Random access into compressed layers: decompression checkpoints recorded while a layer is
// indexed, and inflating one span of the blob from a checkpoint.
//
// Hand-written after zlib's examples/zran.c (the technique, not the code): no library in Debian
// offers random access into a deflate stream. A gzip checkpoint is a deflate block boundary: the
// blob offset of the next block, how many bits of the byte before it belong to it, the offset in
// the uncompressed tar, and the 32 KiB of output before it (deflate's back-reference window).
// zstd needs no window: a checkpoint is a frame boundary, and a single-frame layer has none
// (reads then decompress from the start of the blob; docs/formats.md). An uncompressed tar needs
// no checkpoints at all.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/image.h"
#include "base/status.h"

namespace lazyfs::index {

// Regular file contents are verified, fetched and cached in chunks of this size (the last one
// shorter); a file of at most one chunk has a single chunk whose digest is the file's sha256.
inline constexpr uint64_t kContentChunkSize = uint64_t{1} << 20;
// The back-reference window of deflate.
inline constexpr size_t kDeflateWindow = 32 * 1024;

struct Checkpoint {
  uint64_t uncompressed = 0;  // offset in the uncompressed tar
  uint64_t compressed = 0;    // blob offset of the first byte of the next block or frame
  uint8_t bits = 0;           // gzip: low bits of the byte before `compressed` still to read
  std::string window;         // gzip: up to 32 KiB of output before the checkpoint
};

// The stored value of a checkpoint (its uncompressed offset is in the key): a version byte, the
// compressed offset, the bits and the window compressed with zstd.
std::string EncodeCheckpoint(const Checkpoint& cp);
Result<Checkpoint> DecodeCheckpoint(std::string_view value, uint64_t uncompressed);

// The blob offset where the bytes needed to resume at `cp` start (a byte earlier when the
// block begins mid-byte); 0 for the start of the blob (cp == nullptr).
uint64_t SpanStart(const Checkpoint* cp);

// Decompresses a span of a blob fed piece by piece, resuming at a checkpoint (nullptr: the
// start of the blob), so a reader that does not know where its bytes end can fetch until it has
// them. Not thread-safe.
class SpanInflater {
 public:
  static Result<std::unique_ptr<SpanInflater>> Start(LayerCompression compression,
                                                     const Checkpoint* cp);
  virtual ~SpanInflater() = default;
  // Decompresses the next bytes of the span (blob bytes from SpanStart(cp) on, in order) and
  // hands the output to `sink`. Fails with DataLoss on corrupt data.
  using Sink = std::function<void(const char* data, size_t len)>;
  virtual Status Feed(std::string_view input, const Sink& sink) = 0;
};

// Convenience for a whole span (an eStargz chunk's gzip member, a zstd:chunked frame): returns
// `want` uncompressed bytes starting `skip` bytes after the checkpoint. Fails with DataLoss when
// the span is corrupt or ends before skip + want.
Result<std::string> InflateSpan(LayerCompression compression, const Checkpoint* cp,
                                std::string_view span, uint64_t skip, uint64_t want);

}  // namespace lazyfs::index
