// libFuzzer target: the tar layer indexer over untrusted layer blobs. The first byte picks the
// compression (none, gzip, zstd); the rest is the blob. Caps are small so that a bomb ends fast.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "base/fd.h"
#include "index/layer_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const lazyfs::LayerCompression compression =
      data[0] % 3 == 0   ? lazyfs::LayerCompression::kNone
      : data[0] % 3 == 1 ? lazyfs::LayerCompression::kGzip
                         : lazyfs::LayerCompression::kZstd;
  ++data;
  --size;
  lazyfs::Fd fd(::memfd_create("fuzz-layer", MFD_CLOEXEC));
  if (!fd.valid() || !lazyfs::WriteAll(fd.get(), data, size).ok()) return 0;
  lazyfs::index::LayerReadOptions options;
  options.max_entries = 2000;
  options.max_uncompressed_bytes = 32 << 20;
  auto reader = lazyfs::index::LayerReader::Open(fd.get(), size, compression, options, "fuzz");
  if (!reader.ok()) return 0;
  lazyfs::index::LayerEntry entry;
  for (;;) {
    auto next = (*reader)->Next(&entry);
    if (!next.ok() || !*next) break;
    (void)lazyfs::index::NormaliseEntryPath(entry.path);
    if (entry.kind == lazyfs::index::EntryKind::kFile && !(*reader)->ReadData(nullptr).ok()) break;
  }
  (void)(*reader)->Finish();
  return 0;
}
