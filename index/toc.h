// Tables of contents of eStargz and zstd:chunked layers: the footer that says where the TOC is,
// the TOC itself, and what it says about each file.
//
// The one idea: such a layer is still a valid tar+gzip (tar+zstd) stream, but it is cut so that
// every chunk of every file starts a new gzip member (zstd frame), and a JSON table at its end
// lists each entry's tar facts and each chunk's blob offset and sha256. Reading the footer and the
// table (two range requests) is enough to index the layer, and any chunk can then be fetched and
// decompressed alone. Formats as written by the estargz Go package (stargz-snapshotter
// docs/estargz.md; estargz/gzip.go and estargz/zstdchunked/zstdchunked.go):
//
//   eStargz:        [gzip members ...][TOC: one gzip member of a tar holding stargz.index.json]
//                   [51-byte footer: an empty gzip member whose extra field "SG" holds
//                   "%016x" of the TOC offset followed by "STARGZ"] (legacy stargz: 47 bytes,
//                   the extra field without the "SG" subfield header)
//   zstd:chunked:   [zstd frames ...][skippable frame: the TOC as one zstd frame]
//                   [skippable frame of 40 bytes: TOC offset, compressed size, uncompressed
//                   size, manifest type (le64 each), magic "GnUlInUx"]
//
// The footers are parsed by hand (a few fixed bytes no library knows); the TOC with
// nlohmann-json, its eStargz tar with libarchive.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/image.h"
#include "base/status.h"
#include "index/layer_entry.h"

namespace lazyfs::index {

// The layer descriptor annotation holding the sha256 of the TOC JSON (the estargz package's
// TOCJSONDigestAnnotation).
inline constexpr std::string_view kTocDigestAnnotation = "containerd.io/snapshot/stargz/toc.digest";
// Bytes at the end of a blob that hold either format's footer (the largest, eStargz's).
inline constexpr uint64_t kTocTailSize = 51;
// Root entries that are markers, not content: files before kPrefetchLandmark are the ones a
// workload reads first; kNoPrefetchLandmark says there are none.
inline constexpr std::string_view kPrefetchLandmark = ".prefetch.landmark";
inline constexpr std::string_view kNoPrefetchLandmark = ".no.prefetch.landmark";

enum class TocFormat : uint8_t { kEstargz = 1, kZstdChunked = 2 };

struct TocFooter {
  TocFormat format = TocFormat::kEstargz;
  uint64_t toc_offset = 0;   // blob offset of the compressed TOC
  uint64_t toc_size = 0;     // its compressed size
  uint64_t payload_end = 0;  // where the file chunks end (the TOC, or its skippable frame, begins)
};

struct TocLimits {
  uint64_t max_toc_bytes = 64 << 20;  // compressed, and again uncompressed
  uint64_t max_entries = 1'000'000;
  uint64_t max_xattr_bytes_per_entry = 64 * 1024;
  // A chunk is decompressed in memory to be verified: larger ones make the TOC unusable
  // (Unimplemented), and the layer is indexed as a plain stream instead.
  uint64_t max_chunk_bytes = 64 << 20;
  // What a chunk's compressed span (its member or frame, up to where the next chunk starts)
  // may hold beyond the chunk's own bytes (tar headers of entries without content sit there);
  // more makes the TOC unusable (Unimplemented) and the layer is indexed as a plain stream.
  uint64_t max_chunk_span_slack = 16 << 20;
};

// Finds the footer in `tail`, the last min(blob_size, kTocTailSize) bytes of a blob. Fails with
// InvalidArgument when no footer of the format `compression` implies is there, or its offsets do
// not fit in the blob.
Result<TocFooter> ParseTocFooter(LayerCompression compression, std::string_view tail,
                                 uint64_t blob_size);

// Decompresses the TOC (blob bytes [toc_offset, toc_offset + toc_size)) to its JSON. Fails with
// DataLoss when it is corrupt (or, for eStargz, not a tar holding stargz.index.json), and
// ResourceExhausted past limits.max_toc_bytes.
Result<std::string> DecompressToc(const TocFooter& footer, std::string_view compressed,
                                  const TocLimits& limits);

// One chunk of a regular file: a gzip member or zstd frame that decompresses, from
// inner_offset on, to `size` bytes of the file starting at `offset`.
struct TocChunk {
  uint64_t offset = 0;             // in the file
  uint64_t size = 0;               // uncompressed
  uint64_t compressed_offset = 0;  // blob offset where its member or frame starts
  uint64_t compressed_end = 0;     // where the next one (or the TOC) starts
  uint64_t inner_offset = 0;       // where the chunk starts in the decompressed member or frame
  Digest digest;                   // sha256 of the chunk's bytes
};

struct Toc {
  // The entries as LayerReader makes them from the same tar (whiteouts recognised, names
  // normalised, digests set), in TOC order; the landmark markers are left out.
  std::vector<LayerEntry> entries;
  // The chunks of every non-empty regular file, by the file's sha256, in file order.
  std::map<Digest, std::vector<TocChunk>> files;
  // Files (sha256) before the prefetch landmark, in TOC order; empty without one.
  std::vector<Digest> prefetch;
};

// Parses TOC JSON (checked by the caller against its digest). Errors name the entry: "entry
// \"etc/passwd\": chunk at offset 4096 ends past the file". Unimplemented for chunks larger
// than limits.max_chunk_bytes or without a chunk digest (legacy stargz).
Result<Toc> ParseToc(std::string_view json, const TocFooter& footer, const TocLimits& limits);

}  // namespace lazyfs::index
