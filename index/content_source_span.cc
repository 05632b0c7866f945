// The checkpoint-span source (content_source.h): stream-indexed layers read with one range
// request from the decompression checkpoint before the wanted chunks.
#include <algorithm>

#include <set>

#include "base/thread_annotations.h"
#include "index/content_source.h"
#include "index/inflate.h"
#include "index/layer_artifact.h"

namespace lazyfs::index {
namespace {

// Chunks fetched ahead of a sequential reader (8 MiB), in the same range request.
constexpr uint64_t kReadaheadChunks = 8;
// Decoded bytes kept around the wanted chunks, to cache the files they hold.
constexpr uint64_t kNeighbourBytes = 8 << 20;
// With no checkpoint after the wanted bytes (single-frame zstd, the end of a layer), requests
// start at this size and double up to the next, until the bytes are decoded.
constexpr uint64_t kFirstProbe = 1 << 20;
constexpr uint64_t kMaxProbe = 16 << 20;

// Where a span of a layer lies: blob bytes [start, end or the blob's end), decoding to the tar
// from `region_start`, resuming at `before`.
struct Span {
  std::optional<Checkpoint> before;
  uint64_t start = 0, region_start = 0;
  std::optional<uint64_t> end;
};

class SpanSource final : public ContentSource {
 public:
  SpanSource(LayerDescriptor layer, const LayerRecord& record, const LazyLayerRecord& lazy,
             const SourceContext& ctx, std::unique_ptr<ContentSource> whole,
             std::optional<ArtifactProvenance> provenance)
      : layer_(std::move(layer)), diff_id_(record.diff_id), lazy_(lazy), ctx_(ctx),
        whole_(std::move(whole)), provenance_(std::move(provenance)) {}

  // A layer indexed from an artifact names digests it merely claims: a cached object under one
  // of them may be any image's content. Until the layer passes its whole-layer check, only what
  // this layer's own bytes produced (in this process) is served from the cache.
  bool TrustsCached(const Digest& digest) override {
    if (!Claimed()) return true;
    MutexLock lock(trusted_mu_);
    return trusted_.count(digest) != 0;
  }

  Result<size_t> Read(const Digest& file, uint64_t size, uint64_t offset,
                      std::span<std::byte> out, const Deadline& deadline,
                      bool* fetched) override {
    LAZYFS_ASSIGN_OR_RETURN(auto loc, ctx_.records->Location(layer_.digest, file));
    // A file indexed before its location was recorded: the whole layer, once.
    if (!loc) return whole_->Read(file, size, offset, out, deadline, fetched);
    if (loc->size != size) return Corrupt("of file " + file.Short() + " (size)");
    if (loc->sparse) return ReadSparse(*loc, offset, out, deadline, fetched);
    const uint64_t first = offset / kContentChunkSize;
    const uint64_t last = (offset + out.size() - 1) / kContentChunkSize;
    // Sequential readahead: a read at the start of a file, or right after a chunk already
    // cached, fetches the following chunks in the same request. Without it each 1 MiB chunk of
    // a file read front to back is a request of its own, starting at the checkpoint before it,
    // and those spans overlap.
    const bool sequential = first == 0 || Have(loc->chunk(first - 1));
    const uint64_t fetch_last =
        sequential ? std::min(loc->chunk_count() - 1, last + kReadaheadChunks) : last;
    std::vector<FileChunk> chunks;
    for (uint64_t c = first; c <= last; ++c) chunks.push_back(ChunkOf(*loc, c));
    return ReadCachedChunks(*ctx_.cache, file, chunks, offset, out, [&]() -> Status {
      std::vector<Digest> missing;
      for (uint64_t c = first; c <= fetch_last; ++c) {
        if (!Have(loc->chunk(c))) missing.push_back(loc->chunk(c));
      }
      if (missing.empty()) return Status::Ok();
      *fetched = true;
      return FetchMissingChunks(
          ctx_, layer_, missing, [this](const Digest& d) { return Have(d); },
          [this, loc = *loc, first, fetch_last, deadline](const std::vector<Digest>& claimed) {
            // One request for the run from the first claimed chunk to the last.
            uint64_t c0 = fetch_last, c1 = first;
            for (uint64_t c = first; c <= fetch_last; ++c) {
              if (std::find(claimed.begin(), claimed.end(), loc.chunk(c)) == claimed.end()) continue;
              c0 = std::min(c0, c);
              c1 = std::max(c1, c);
            }
            return FetchSpan(loc, c0, c1, deadline);
          },
          deadline);
    });
  }

 private:
  // A sparse file's data is not contiguous in the tar: its holes read as zeros, and its data
  // chunks, when one is missing, come from reading the whole layer once.
  Result<size_t> ReadSparse(const FileLocation& loc, uint64_t offset, std::span<std::byte> out,
                            const Deadline& deadline, bool* fetched) {
    std::vector<FileChunk> chunks;
    const uint64_t last = (offset + out.size() - 1) / kContentChunkSize;
    for (uint64_t c = offset / kContentChunkSize; c <= last; ++c) chunks.push_back(ChunkOf(loc, c));
    return ReadCachedChunks(*ctx_.cache, loc.digest, chunks, offset, out, [&]() -> Status {
      for (const FileChunk& c : chunks) {
        if (IsZeroChunk(c.digest, c.size) || ctx_.cache->Contains(c.digest)) continue;
        *fetched = true;
        return whole_->FetchFile(loc.digest, deadline).status();
      }
      return Status::Ok();
    });
  }

  // Whether the layer's digests are an artifact's claims not yet checked against its bytes.
  bool Claimed() { return provenance_ && !ctx_.check->Passed(layer_.digest); }
  bool Have(const Digest& d) { return ctx_.cache->Contains(d) && TrustsCached(d); }
  // Caches `bytes` as chunk `d` (DataLoss when they do not hash to it). For a claimed layer they
  // are hashed here even when the cache holds `d` already: that proves this layer holds them.
  Status Store(const Digest& d, std::string_view bytes) {
    if (!Claimed()) return ctx_.cache->Put(d, bytes);
    if (Sha256Of(bytes) != d) return DataLossError("chunk " + d.Short() + " does not match");
    LAZYFS_RETURN_IF_ERROR(ctx_.cache->PutHashed(d, bytes));
    MutexLock lock(trusted_mu_);
    trusted_.insert(d);
    return Status::Ok();
  }
  // A chunk that does not match the digest an artifact claimed: the artifact lies, and the
  // layer is refused for good.
  Status Lie(const FileLocation& loc, uint64_t c, const std::string& what) {
    const std::string why = ArtifactLieMessage(
        provenance_->artifact, layer_.digest,
        "chunk " + std::to_string(c) + " of file " + loc.digest.ToString() +
            " does not match the digest it claims");
    ctx_.check->MarkBad(layer_.digest, why);
    DropLayerChunks(*ctx_.records, *ctx_.cache, layer_.digest);
    return DataLossError(what + ": " + why);
  }

  static FileChunk ChunkOf(const FileLocation& loc, uint64_t c) {
    const uint64_t start = c * kContentChunkSize;
    return FileChunk{loc.chunk(c), start, std::min(kContentChunkSize, loc.size - start)};
  }

  Result<Span> SpanFor(uint64_t u0, uint64_t u1) const;
  Status FetchSpan(const FileLocation& loc, uint64_t c0, uint64_t c1, const Deadline& deadline);
  Result<uint64_t> Decode(const Span& span, uint64_t u1, const std::string& what,
                          const Deadline& deadline, const InflateSink& sink);
  void CacheNeighbours(uint64_t from, std::string_view bytes);
  void NoteFetched(uint64_t offset, std::string_view bytes);

  const LayerDescriptor layer_;
  const Digest diff_id_;
  const LazyLayerRecord lazy_;
  const SourceContext ctx_;
  const std::unique_ptr<ContentSource> whole_;
  const std::optional<ArtifactProvenance> provenance_;
  Mutex trusted_mu_;
  std::set<Digest> trusted_ LAZYFS_GUARDED_BY(trusted_mu_);  // chunks this layer's bytes made
};

// The checkpoint at or before u0 and the one at or after u1 (none needed for a plain tar).
Result<Span> SpanSource::SpanFor(uint64_t u0, uint64_t u1) const {
  Span span;
  span.start = span.region_start = u0;
  if (lazy_.compression == LayerCompression::kNone) {
    span.end = u1;
    return span;
  }
  LAZYFS_ASSIGN_OR_RETURN(span.before, ctx_.records->CheckpointNear(layer_.digest, u0, true));
  LAZYFS_ASSIGN_OR_RETURN(auto after, ctx_.records->CheckpointNear(layer_.digest, u1, false));
  span.start = SpanStart(span.before ? &*span.before : nullptr);
  span.region_start = span.before ? span.before->uncompressed : 0;
  if (after) span.end = after->compressed;
  return span;
}

// Fetches chunks c0..c1 of a file: one range request from the checkpoint before them to the
// one after (or, with no checkpoint after, growing requests until the bytes are decoded); each
// chunk is checked against its digest and stored. Whole files and chunks of other files that
// the decoded span happens to hold are cached too (CacheNeighbours).
Status SpanSource::FetchSpan(const FileLocation& loc, uint64_t c0, uint64_t c1,
                             const Deadline& deadline) {
  const uint64_t u0 = loc.offset + c0 * kContentChunkSize;
  const uint64_t u1 = loc.offset + std::min((c1 + 1) * kContentChunkSize, loc.size);
  LAZYFS_ASSIGN_OR_RETURN(Span span, SpanFor(u0, u1));
  const std::string what = "layer " + layer_.digest.Short() + ": file " + loc.digest.Short();
  // Decoded bytes kept: the chunks wanted and up to kNeighbourBytes on either side of them.
  const uint64_t keep_from =
      std::max(span.region_start, u0 > kNeighbourBytes ? u0 - kNeighbourBytes : 0);
  const uint64_t keep_to = u1 + kNeighbourBytes;
  std::string kept;
  uint64_t at = span.region_start;  // the tar offset of the next decoded byte
  LAZYFS_ASSIGN_OR_RETURN(const uint64_t decoded,
                          Decode(span, u1, what, deadline, [&](const char* p, size_t n) {
                            const uint64_t from = std::max(at, keep_from);
                            const uint64_t to = std::min(at + n, keep_to);
                            if (from < to) kept.append(p + (from - at), to - from);
                            at += n;
                            return at < keep_to;  // nothing past the kept bytes is of use
                          }));
  if (decoded < u1) return DataLossError(what + ": the layer ends before the file does");
  for (uint64_t c = c0; c <= c1; ++c) {
    const FileChunk chunk = ChunkOf(loc, c);
    Status s = Store(
        chunk.digest, std::string_view(kept).substr(loc.offset + chunk.offset - keep_from, chunk.size));
    if (!s.ok()) {
      if (s.code() != StatusCode::kDataLoss) return s;
      if (Claimed()) return Lie(loc, c, what);
      return DataLossError(what + ": chunk " + std::to_string(c) +
                           " does not match the digest recorded when the layer was indexed");
    }
  }
  CacheNeighbours(keep_from, kept);
  return Status::Ok();
}

// Fetches and inflates the span until the tar bytes before u1 are decoded; returns where the
// decoded output ended.
Result<uint64_t> SpanSource::Decode(const Span& span, uint64_t u1, const std::string& what,
                                    const Deadline& deadline,
                                    const InflateSink& sink) {
  const uint64_t limit = span.end.value_or(layer_.size);
  if (limit > layer_.size || span.start > limit) return Corrupt("of layer " + layer_.digest.Short());
  LAZYFS_ASSIGN_OR_RETURN(auto inflater, Inflater::Open(lazy_.compression,
                                                        span.before ? &*span.before : nullptr, false));
  uint64_t decoded = span.region_start;
  auto counted = [&](const char* p, size_t n) {
    decoded += n;
    return sink(p, n);
  };
  uint64_t piece = span.end ? limit - span.start : kFirstProbe;
  for (uint64_t pos = span.start; decoded < u1 && pos < limit;) {
    const uint64_t len = std::min(piece, limit - pos);
    LAZYFS_ASSIGN_OR_RETURN(std::string bytes, FetchRange(*ctx_.blobs, layer_, pos, len, deadline));
    LAZYFS_RETURN_IF_ERROR(InflateAll(*inflater, bytes, counted).WithContext(what));
    NoteFetched(pos, bytes);
    if (ctx_.check->IsBad(layer_.digest)) {
      return DataLossError("layer " + layer_.digest.Short() + " failed its whole-layer check");
    }
    pos += len;
    piece = std::min(piece * 2, kMaxProbe);
  }
  return decoded;
}

// Caches every chunk of every file that lies wholly inside decoded bytes [from, from +
// bytes.size()) of the layer and is not cached yet: the bytes were fetched anyway, and a
// directory's files sit together in a tar (reading /etc file by file then costs one fetch per
// span, not one per file). Best effort: a chunk that does not match is simply not cached.
void SpanSource::CacheNeighbours(uint64_t from, std::string_view bytes) {
  const uint64_t to = from + bytes.size();
  ctx_.records
      ->ForEachFileAt(layer_.digest, from,
                      [&](uint64_t offset, const Digest& file) {
                        if (offset >= to) return false;
                        auto loc = ctx_.records->Location(layer_.digest, file);
                        if (!loc.ok() || !*loc) return true;
                        for (uint64_t c = 0; c < (*loc)->chunk_count(); ++c) {
                          const FileChunk chunk = ChunkOf(**loc, c);
                          if (offset + chunk.offset + chunk.size > to) break;
                          if (Have(chunk.digest)) continue;
                          Store(chunk.digest,
                                bytes.substr(offset + chunk.offset - from, chunk.size))
                              .IgnoreError();
                        }
                        return true;
                      })
      .IgnoreError();
}

void SpanSource::NoteFetched(uint64_t offset, std::string_view bytes) {
  LayerCheck::ClaimsCheck claims;
  if (provenance_) {
    claims = [this](int fd) {
      return CheckArtifactAgainstStream(fd, layer_, *ctx_.records, *ctx_.options, *ctx_.cache);
    };
  }
  ctx_.check->Saw(
      layer_, diff_id_, offset, bytes,
      [&] { DropLayerChunks(*ctx_.records, *ctx_.cache, layer_.digest); }, claims);
}

}  // namespace

std::unique_ptr<ContentSource> MakeSpanSource(const LayerDescriptor& layer,
                                              const LayerRecord& record,
                                              const LazyLayerRecord& lazy,
                                              const SourceContext& ctx,
                                              std::unique_ptr<ContentSource> whole,
                                              std::optional<ArtifactProvenance> provenance) {
  return std::make_unique<SpanSource>(layer, record, lazy, ctx, std::move(whole),
                                      std::move(provenance));
}

}  // namespace lazyfs::index
