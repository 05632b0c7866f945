// Decompression of layer streams (gzip, zstd, or a plain tar), from the start of a blob or
// resumed at a checkpoint (checkpoint.h).
//
// One family serves both directions: indexing inflates whole layers and asks where deflate
// blocks and zstd frames end, to record checkpoints there; a lazy read resumes at one of those
// checkpoints and inflates just a span. Hand-written around zlib and zstd (after zlib's
// examples/zran.c, the technique, not the code) because no library in Debian offers random
// access into a deflate stream. Concatenated gzip members and zstd frames are one stream.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/image.h"
#include "base/status.h"
#include "index/checkpoint.h"

namespace lazyfs::index {

struct InflateStep {
  size_t consumed = 0;    // input bytes used
  size_t produced = 0;    // output bytes written
  bool boundary = false;  // the output ends at a block or frame boundary (checkpoint material)
  uint8_t bits = 0;       // gzip, at a boundary: bits of the last input byte that belong to the
                          // next block
};

// Not thread-safe; one per stream.
class Inflater {
 public:
  // From the start of the stream (resume == nullptr) or from a checkpoint. `boundaries`: stop
  // at every deflate block and zstd frame boundary and report it (for indexing; a little slower).
  static Result<std::unique_ptr<Inflater>> Open(LayerCompression compression,
                                                const Checkpoint* resume, bool boundaries);
  virtual ~Inflater() = default;

  // Inflates some of `in` into `out` (out must not be empty): uses some input, or writes some
  // output, or both; with empty input, flushes what is pending. DataLoss "corrupt gzip stream
  // (...)" on bad data.
  virtual Result<InflateStep> Inflate(std::string_view in, std::span<char> out) = 0;
  // Whether the input so far ends exactly at the end of a gzip member or zstd frame (always,
  // for a plain tar): the stream is complete, not truncated.
  virtual bool complete() const = 0;
  // "gzip", "zstd" or "tar", for messages.
  virtual std::string_view format() const = 0;
};

// Inflates all of `input` (the next piece of a stream) and hands the output to `sink`, which
// returns false once it wants no more: inflating stops there (a span that decompresses to far
// more than its reader needs costs no more than what was needed).
using InflateSink = std::function<bool(const char* data, size_t len)>;
Status InflateAll(Inflater& inflater, std::string_view input, const InflateSink& sink);

// A whole span at once (an eStargz chunk's gzip member, a zstd:chunked frame): returns `want`
// uncompressed bytes starting `skip` bytes after the checkpoint. Fails with DataLoss when the
// span is corrupt or ends before skip + want.
Result<std::string> InflateSpan(LayerCompression compression, const Checkpoint* cp,
                                std::string_view span, uint64_t skip, uint64_t want);

}  // namespace lazyfs::index
