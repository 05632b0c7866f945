// The layer index artifact: what a mount needs of one stream-indexed layer (its entries, file
// locations with their chunk digests, and decompression checkpoints) as one portable blob, so a
// store that never saw the layer imports it instead of downloading and decompressing the layer
// (docs/formats.md, "Index artifacts").
//
// The one idea: the blob is the layer's own index records in a canonical order (the same layer
// indexed anywhere with the same options gives the same bytes), and importing it trusts none of
// them. Every field is decoded by the records' own decoders and checked against the layer
// descriptor and the caps indexing applies; the records are then written with a provenance
// record ('P', schema.h) until the whole-layer check (CheckArtifactAgainstStream) has compared
// them with the layer's tar stream. A read whose chunk does not match a claimed digest, or a
// check that finds a difference, refuses the layer for good (verified/<hex>.bad).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/image.h"
#include "base/status.h"
#include "index/content_cache.h"
#include "index/db.h"
#include "index/layer_entry.h"
#include "index/records.h"
#include "index/tree.h"

namespace lazyfs::index {

// The media types and the layer annotation are public, in tree.h.
// A reader refuses a major version it does not know; minor versions only add optional sections.
inline constexpr uint16_t kArtifactMajor = 1;
inline constexpr uint16_t kArtifactMinor = 0;
// The zstd level of the blob: fixed, so the bytes are a function of the records.
inline constexpr int kArtifactZstdLevel = 12;
// What an artifact may decompress to: at most this much, and at most kArtifactMaxExpansion
// times its own size or kArtifactMinCap, whichever is more.
inline constexpr uint64_t kArtifactMaxBytes = uint64_t{1} << 30;
inline constexpr uint64_t kArtifactMaxExpansion = 1000;
inline constexpr uint64_t kArtifactMinCap = uint64_t{16} << 20;

// The records of one stream-indexed layer, decoded, in canonical order.
struct LayerArtifact {
  LayerRecord record;                                 // 'L' (record.chunks as RocksDB keeps it)
  LazyLayerRecord lazy;                               // 'M'
  std::vector<LayerEntry> entries;                    // 'E', archive order
  std::vector<FileLocation> locations;                // 'O', by content digest
  std::vector<std::pair<uint64_t, Digest>> files_at;  // 'Q', by tar offset
  std::vector<Checkpoint> checkpoints;                // 'K', by uncompressed offset
};

// The stored records of `layer`. FailedPrecondition when the layer is not indexed, was indexed
// from its TOC (eStargz, zstd:chunked: the registry holds its index already) or without lazy
// content; DataLoss for a damaged record.
Result<LayerArtifact> ReadLayerArtifact(const Db& db, const LayerDescriptor& layer);

// The artifact blob: a fixed header naming `layer`, the records, the whole compressed with zstd
// at kArtifactZstdLevel in one single-threaded call (deterministic for a given libzstd).
Result<std::string> EncodeLayerArtifact(const LayerDescriptor& layer, const LayerArtifact& art);

// Decodes and checks an artifact blob for `layer` (InvalidArgument naming what is wrong, or
// ResourceExhausted past a cap): the header names exactly this layer (digest, size,
// compression, diff_id when the descriptor has one), every record decodes, counts and offsets
// agree and stay within the layer's sizes, names are normalised, the caps of `options` hold.
// Pure: no store is touched (the fuzz target calls it).
Result<LayerArtifact> DecodeLayerArtifact(const LayerDescriptor& layer, std::string_view blob,
                                          const IndexOptions& options);

// The records of a decoded artifact into `batch`, with the provenance record, the layer record
// last (as the stream indexer writes them).
void PutLayerArtifact(RecordBatch& batch, const Digest& layer, const LayerArtifact& art,
                      const Digest& artifact_digest);

// The whole-layer check of an artifact-indexed layer: the complete blob at `fd` (already checked
// against its digest and diff_id) indexed again in memory and compared with the imported
// records: entries (names, types, modes, owners, links, sizes, times, xattrs, digests), file
// locations and chunk digests; not checkpoints (a wrong one only yields bytes that fail their
// chunk digest). DataLoss "index artifact D of layer L lies ...", naming the first difference.
Status CheckArtifactAgainstStream(int fd, const LayerDescriptor& layer, const Records& records,
                                  const IndexOptions& options, ContentCache& cache);

// Adds one stored record of a layer (its key and value as the Db holds them) to `art`; records
// an artifact does not carry ('P', 'S', 'T') are ignored. DataLoss for a damaged one.
Status AddLayerArtifactRecord(std::string_view key, std::string_view value, LayerArtifact* art);

// The verdict recorded when an artifact-indexed layer is caught lying.
std::string ArtifactLieMessage(const Digest& artifact, const Digest& layer, std::string_view what);

}  // namespace lazyfs::index
