// Decompression checkpoints: places in a compressed layer where inflating can resume, recorded
// while a layer is indexed so that a later read fetches and inflates only a span near its bytes.
//
// A gzip checkpoint is a deflate block boundary: the blob offset of the next block, how many
// bits of the byte before it belong to it, the offset in the uncompressed tar, and the 32 KiB of
// output before it (deflate's back-reference window). zstd needs no window: a checkpoint is a
// frame boundary, and a single-frame layer has none (reads then decompress from the start of
// the blob; docs/formats.md). An uncompressed tar needs no checkpoints at all.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace lazyfs::index {

// The back-reference window of deflate.
inline constexpr size_t kDeflateWindow = 32 * 1024;

struct Checkpoint {
  uint64_t uncompressed = 0;  // offset in the uncompressed tar
  uint64_t compressed = 0;    // blob offset of the first byte of the next block or frame
  uint8_t bits = 0;           // gzip: low bits of the byte before `compressed` still to read
  std::string window;         // gzip: up to 32 KiB of output before the checkpoint
};

// The stored value of a checkpoint (its uncompressed offset is in the key): a version byte, the
// compressed offset, the bits and the window compressed with zstd. Decoding fails with DataLoss.
std::string EncodeCheckpoint(const Checkpoint& cp);
Result<Checkpoint> DecodeCheckpoint(std::string_view value, uint64_t uncompressed);

// The blob offset where the bytes needed to resume at `cp` start (a byte earlier when the
// block begins mid-byte); 0 for the start of the blob (cp == nullptr).
uint64_t SpanStart(const Checkpoint* cp);

// Takes checkpoints at the boundaries an Inflater reports, spaced by output and input distance,
// keeping the last 32 KiB of output for gzip windows. Not thread-safe; one per layer pass.
class CheckpointRecorder {
 public:
  // A checkpoint at the first boundary after either this much output or this much input since
  // the previous one. `windows`: keep deflate windows (gzip).
  CheckpointRecorder(uint64_t every_uncompressed, uint64_t every_compressed, bool windows);

  // A boundary `produced` bytes into `out` (the output of the current step, whose start is
  // `out_offset` in the uncompressed stream), with the next block at blob offset `in_offset`.
  void AtBoundary(std::string_view out, size_t produced, uint64_t out_offset, uint64_t in_offset,
                  uint8_t bits);
  // Every byte of output, after any AtBoundary calls for it: the window's history.
  void Saw(std::string_view out);
  // The checkpoints so far, those at or past `end` (the end of the stream) dropped.
  std::vector<Checkpoint> Take(uint64_t end);

 private:
  const uint64_t every_uncompressed_, every_compressed_;
  const bool windows_;
  std::vector<Checkpoint> checkpoints_;
  uint64_t last_in_ = 0, last_out_ = 0;
  std::string history_;  // the last kDeflateWindow bytes of output before the current step
};

}  // namespace lazyfs::index
