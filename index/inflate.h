// Decompression of layer streams (gzip, zstd, or a plain tar), from the start of a blob or
// resumed at a checkpoint (checkpoint.h).
//
// One family serves both directions: indexing inflates whole layers and asks where deflate
// blocks and zstd frames end, to record checkpoints there; a lazy read resumes at one of those
// checkpoints and inflates just a span. Hand-written around zlib and zstd (after zlib's
// examples/zran.c, the technique, not the code) because no library in Debian offers random
// access into a deflate stream. Concatenated gzip members and zstd frames are one stream.
//
// gzip inflates with ISA-L's igzip when lazyfs is built with it (several times faster than
// zlib: a first index of a gzip layer is bound by inflate), zlib otherwise. igzip does not stop
// at block boundaries, so when boundaries are wanted it looks for one only once the wanted
// spacing is reached, feeding the input in pieces until a piece ends inside a block header
// (inflate_isal.cc); zlib stays as the fallback, chosen with LAZYFS_INFLATE=zlib.
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

// Which library inflates gzip.
enum class GzipEngine {
  kDefault,  // igzip when built with ISA-L, unless the environment says LAZYFS_INFLATE=zlib
  kZlib,
  kIsal,     // igzip; zlib when lazyfs was built without ISA-L
};

struct InflateOptions {
  // Report deflate block and zstd frame boundaries (for indexing; a little slower).
  bool boundaries = false;
  // The boundaries wanted: the first after this much output or input since the last reported
  // one. zlib and zstd report every boundary whatever these say; igzip, which cannot stop at
  // every block cheaply, reports only these (CheckpointRecorder's spacing).
  uint64_t boundary_every_uncompressed = 4 << 20;
  uint64_t boundary_every_compressed = 512 << 10;
  GzipEngine gzip = GzipEngine::kDefault;
};

// Whether this build can inflate with igzip.
bool IsalAvailable();

// Not thread-safe; one per stream.
class Inflater {
 public:
  // From the start of the stream (resume == nullptr) or from a checkpoint. `boundaries`: stop
  // at every deflate block and zstd frame boundary and report it (for indexing; a little slower).
  static Result<std::unique_ptr<Inflater>> Open(LayerCompression compression,
                                                const Checkpoint* resume, bool boundaries);
  static Result<std::unique_ptr<Inflater>> Open(LayerCompression compression,
                                                const Checkpoint* resume,
                                                const InflateOptions& options);
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
  // The library doing the work ("zlib", "igzip", "zstd", "copy"), for tests and benchmarks.
  virtual std::string_view engine() const = 0;
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
