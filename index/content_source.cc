#include "index/content_source.h"

#include <cstring>

namespace lazyfs::index {

Result<uint64_t> ContentSource::FetchFile(const Digest&, const Deadline&) { return uint64_t{0}; }
Result<uint64_t> ContentSource::FetchRest(const Deadline&) { return uint64_t{0}; }
std::vector<Digest> ContentSource::LandmarkFiles() const { return {}; }
bool ContentSource::TrustsCached(const Digest&) { return true; }

Result<std::unique_ptr<ContentSource>> OpenContentSource(const LayerDescriptor& layer,
                                                         const SourceContext& ctx) {
  LAZYFS_ASSIGN_OR_RETURN(auto record, ctx.records->Layer(layer.digest));
  if (!record) return Corrupt("of layer " + layer.digest.Short() + " (missing)");
  LAZYFS_ASSIGN_OR_RETURN(auto toc, ctx.records->TocLayer(layer.digest));
  if (toc) return MakeTocSource(layer, *record, std::move(*toc), ctx);
  auto whole = MakeWholeLayerSource(layer, ctx);
  LAZYFS_ASSIGN_OR_RETURN(auto lazy, ctx.records->LazyLayer(layer.digest));
  if (!lazy) return whole;  // indexed before kCompatLazyContent
  LAZYFS_ASSIGN_OR_RETURN(auto provenance, ctx.records->Provenance(layer.digest));
  return MakeSpanSource(layer, *record, *lazy, ctx, std::move(whole), std::move(provenance));
}

void DropLayerChunks(const Records& records, ContentCache& cache, const Digest& layer) {
  records
      .ForEachLocation(layer,
                       [&](const FileLocation& loc) {
                         for (uint64_t c = 0; c < loc.chunk_count(); ++c) {
                           cache.Remove(loc.chunk(c)).IgnoreError();
                         }
                       })
      .IgnoreError();
}

Result<size_t> ReadCachedChunks(ContentCache& cache, const Digest& file,
                                const std::vector<FileChunk>& chunks, uint64_t offset,
                                std::span<std::byte> out,
                                const std::function<Status()>& fetch_missing) {
  const uint64_t end = offset + out.size();
  for (int attempt = 0;; ++attempt) {
    LAZYFS_RETURN_IF_ERROR(fetch_missing());
    size_t done = 0;
    bool lost = false;
    for (const FileChunk& c : chunks) {
      const uint64_t from = std::max(offset, c.offset);
      const uint64_t to = std::min(end, c.offset + c.size);
      if (IsZeroChunk(c.digest, c.size)) {  // a hole: zeros, whatever the cache holds
        std::memset(out.data() + done, 0, to - from);
        done += to - from;
        continue;
      }
      auto n = cache.Read(c.digest, from - c.offset, out.subspan(done, to - from));
      if (!n.ok()) {
        if (n.status().code() != StatusCode::kNotFound) return n.status();
        lost = true;
        break;
      }
      done += *n;
    }
    if (!lost) return done;
    if (attempt >= 3) {
      return UnavailableError("file " + file.Short() +
                              ": its chunks are evicted as fast as they are fetched; the "
                              "content cache is too small");
    }
  }
}

Status FetchMissingChunks(const SourceContext& ctx, const LayerDescriptor& layer,
                          const std::vector<Digest>& wanted,
                          const std::function<bool(const Digest&)>& have,
                          std::function<Status(const std::vector<Digest>&)> fetch,
                          const Deadline& deadline) {
  // A fetch stores its chunks before it leaves the flight: checked under the flight's lock, a
  // chunk is either had or in flight, never fetched twice.
  return ctx.flights->DoAll(wanted, have, std::move(fetch), *ctx.pool, deadline,
                            "layer " + layer.digest.Short());
}

Result<std::string> FetchRange(BlobSource& blobs, const LayerDescriptor& layer, uint64_t offset,
                               uint64_t length, const Deadline& deadline) {
  std::string buf(length, '\0');
  LAZYFS_ASSIGN_OR_RETURN(
      size_t n, blobs.ReadBlobRange(layer.digest, offset, std::as_writable_bytes(std::span(buf)),
                                    deadline));
  if (n != length) {
    return DataLossError("layer " + layer.digest.Short() + ": the blob ends before byte " +
                         std::to_string(offset + length));
  }
  return buf;
}

}  // namespace lazyfs::index
