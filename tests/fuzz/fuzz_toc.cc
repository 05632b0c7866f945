// libFuzzer target: eStargz / zstd:chunked footers and TOCs (read from untrusted layer blobs
// before anything in them is verified against a chunk digest). The first byte picks the format;
// the input is tried as a blob tail (footer), as a compressed TOC and as TOC JSON.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "index/toc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using lazyfs::index::TocFooter;
  const bool zstd = data[0] & 1;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  lazyfs::index::TocLimits limits;
  limits.max_toc_bytes = 8 << 20;
  limits.max_entries = 10000;
  const auto compression = zstd ? lazyfs::LayerCompression::kZstd : lazyfs::LayerCompression::kGzip;
  const std::string_view tail = rest.substr(rest.size() > lazyfs::index::kTocTailSize
                                                ? rest.size() - lazyfs::index::kTocTailSize
                                                : 0);
  (void)lazyfs::index::ParseTocFooter(compression, tail, rest.size() + (data[0] >> 1) * 4096);
  TocFooter footer;
  footer.format = zstd ? lazyfs::index::TocFormat::kZstdChunked : lazyfs::index::TocFormat::kEstargz;
  footer.toc_offset = 1 << 20;
  footer.toc_size = rest.size();
  footer.payload_end = 1 << 20;
  (void)lazyfs::index::DecompressToc(footer, rest, limits);
  (void)lazyfs::index::ParseToc(rest, footer, limits);
  return 0;
}
