#include "index/checkpoint.h"

#include <zstd.h>

#include <algorithm>

#include "index/codec.h"

namespace lazyfs::index {

std::string EncodeCheckpoint(const Checkpoint& cp) {
  Encoder e;
  e.U8(1);
  e.Varint(cp.compressed);
  e.U8(cp.bits);
  std::string z;
  if (!cp.window.empty()) {
    z.resize(ZSTD_compressBound(cp.window.size()));
    const size_t n = ZSTD_compress(z.data(), z.size(), cp.window.data(), cp.window.size(), 3);
    z.resize(ZSTD_isError(n) ? 0 : n);
  }
  e.Varint(cp.window.size());
  e.Bytes(z);
  return e.Take();
}

Result<Checkpoint> DecodeCheckpoint(std::string_view value, uint64_t uncompressed) {
  Decoder d(value);
  Checkpoint cp;
  cp.uncompressed = uncompressed;
  uint8_t version;
  uint64_t window_size;
  std::string z;
  if (!d.U8(&version) || version != 1 || !d.Varint(&cp.compressed) || !d.U8(&cp.bits) ||
      cp.bits > 7 || !d.Varint(&window_size) || window_size > kDeflateWindow || !d.Bytes(&z) ||
      !d.done()) {
    return DataLossError("index record of a checkpoint is damaged; run lazyfs fsck");
  }
  cp.window.resize(window_size);
  if (window_size) {
    const size_t n = ZSTD_decompress(cp.window.data(), window_size, z.data(), z.size());
    if (ZSTD_isError(n) || n != window_size) {
      return DataLossError("index record of a checkpoint has a damaged window");
    }
  }
  return cp;
}

uint64_t SpanStart(const Checkpoint* cp) {
  if (!cp) return 0;
  return cp->compressed - (cp->bits ? 1 : 0);
}

CheckpointRecorder::CheckpointRecorder(uint64_t every_uncompressed, uint64_t every_compressed,
                                       bool windows)
    : every_uncompressed_(every_uncompressed), every_compressed_(every_compressed),
      windows_(windows) {}

void CheckpointRecorder::AtBoundary(std::string_view out, size_t produced, uint64_t out_offset,
                                    uint64_t in_offset, uint8_t bits) {
  const uint64_t at = out_offset + produced;
  if (at - last_out_ < every_uncompressed_ && in_offset - last_in_ < every_compressed_) return;
  Checkpoint cp;
  cp.uncompressed = at;
  cp.compressed = in_offset;
  cp.bits = bits;
  if (windows_) {
    if (produced >= kDeflateWindow) {
      cp.window.assign(out.data() + produced - kDeflateWindow, kDeflateWindow);
    } else {
      const size_t from_history = std::min(history_.size(), kDeflateWindow - produced);
      cp.window = history_.substr(history_.size() - from_history);
      cp.window.append(out.data(), produced);
    }
  }
  checkpoints_.push_back(std::move(cp));
  last_in_ = in_offset;
  last_out_ = at;
}

void CheckpointRecorder::Saw(std::string_view out) {
  if (!windows_) return;
  if (out.size() >= kDeflateWindow) {
    history_.assign(out.substr(out.size() - kDeflateWindow));
    return;
  }
  history_.append(out);
  if (history_.size() > kDeflateWindow) history_.erase(0, history_.size() - kDeflateWindow);
}

std::vector<Checkpoint> CheckpointRecorder::Take(uint64_t end) {
  std::vector<Checkpoint> out = std::move(checkpoints_);
  checkpoints_.clear();
  std::erase_if(out, [&](const Checkpoint& c) { return c.uncompressed >= end; });
  return out;
}

}  // namespace lazyfs::index
