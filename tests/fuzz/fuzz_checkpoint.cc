// libFuzzer target: decompression checkpoints as stored in the index, and resuming a span from
// one. A damaged index must give an error, never a crash or a read outside the span. The first
// byte picks the compression; the next 4 split the rest into checkpoint record and span.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "index/checkpoint.h"
#include "index/inflate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const auto compression = data[0] % 2 ? lazyfs::LayerCompression::kZstd
                                       : lazyfs::LayerCompression::kGzip;
  const size_t split = (static_cast<size_t>(data[1]) << 8 | data[2]) % (size - 4);
  const std::string_view rest(reinterpret_cast<const char*>(data + 5), size - 5);
  const std::string_view record = rest.substr(0, split), span = rest.substr(split);
  auto cp = lazyfs::index::DecodeCheckpoint(record, static_cast<uint64_t>(data[3]) << 20);
  const lazyfs::index::Checkpoint* at = cp.ok() ? &*cp : nullptr;
  (void)lazyfs::index::SpanStart(at);
  (void)lazyfs::index::InflateSpan(compression, at, span, data[4], 1 << 16);
  return 0;
}
