// The TOC-chunk source (content_source.h): eStargz and zstd:chunked layers read chunk by chunk.
#include <algorithm>

#include <fcntl.h>

#include <set>

#include "base/thread_annotations.h"
#include "index/content_source.h"
#include "index/inflate.h"
#include "index/layer_indexer.h"
#include "index/toc_check.h"

namespace lazyfs::index {
namespace {

class TocSource final : public ContentSource {
 public:
  TocSource(LayerDescriptor layer, const LayerRecord& record, TocLayerRecord toc,
            const SourceContext& ctx)
      : layer_(std::move(layer)), diff_id_(record.diff_id), toc_(std::move(toc)), ctx_(ctx),
        trusted_path_(ctx.options->store.verified_layers() + "/" + layer_.digest.Hex() +
                      ".chunks") {
    // The chunks this layer's own bytes produced, in earlier processes too.
    auto known = ReadFileToString(trusted_path_, size_t{64} << 20);
    if (known.ok()) {
      MutexLock lock(trusted_mu_);
      for (size_t i = 0; i + 32 <= known->size(); i += 32) {
        std::array<uint8_t, 32> b;
        std::memcpy(b.data(), known->data() + i, 32);
        trusted_.insert(Digest::FromBytes(b));
      }
    }
  }

  bool TrustsCached(const Digest& digest) override {
    if (ctx_.check->Passed(layer_.digest)) return true;
    MutexLock lock(trusted_mu_);
    return trusted_.count(digest) != 0;
  }

  Result<size_t> Read(const Digest& file, uint64_t, uint64_t offset, std::span<std::byte> out,
                      const Deadline& deadline, bool* fetched) override {
    LAZYFS_ASSIGN_OR_RETURN(std::vector<TocChunk> chunks, ChunksOf(file));
    if (out.empty()) return size_t{0};
    const uint64_t end = offset + out.size();
    // The chunks overlapping [offset, end).
    auto first = std::upper_bound(chunks.begin(), chunks.end(), offset,
                                  [](uint64_t o, const TocChunk& c) { return o < c.offset; });
    if (first == chunks.begin()) return Corrupt("of file " + file.Short() + " (TOC chunks)");
    --first;
    std::vector<TocChunk> wanted(first, chunks.end());
    std::erase_if(wanted, [&](const TocChunk& c) { return c.offset >= end; });
    if (wanted.empty() || wanted.back().offset + wanted.back().size < end) {
      return Corrupt("of file " + file.Short() + " (TOC chunks end before the file)");
    }
    std::vector<FileChunk> pieces;
    for (const TocChunk& c : wanted) pieces.push_back(FileChunk{c.digest, c.offset, c.size});
    return ReadCachedChunks(*ctx_.cache, file, pieces, offset, out, [&]() -> Status {
      std::vector<TocChunk> missing = Missing(wanted);
      if (missing.empty()) return Status::Ok();
      *fetched = true;
      return Fetch(missing, deadline);
    });
  }

  Result<uint64_t> FetchFile(const Digest& file, const Deadline& deadline) override {
    LAZYFS_ASSIGN_OR_RETURN(std::vector<TocChunk> chunks, ChunksOf(file));
    return FetchAll(Missing(chunks), deadline);
  }

  Result<uint64_t> FetchRest(const Deadline& deadline) override {
    std::vector<TocChunk> all;
    LAZYFS_RETURN_IF_ERROR(ctx_.records->ForEachTocFile(
        layer_.digest,
        [&](const std::vector<TocChunk>& chunks) { all.insert(all.end(), chunks.begin(), chunks.end()); }));
    LAZYFS_ASSIGN_OR_RETURN(uint64_t bytes, FetchAll(Missing(all), deadline));
    // What no chunk fetch brought (tar headers, chunks whose content was cached already under
    // the same digest, the TOC and footer) is fetched as it is, so the layer can be checked whole.
    static constexpr uint64_t kPiece = 16 << 20;
    for (const auto& [start, end] : ctx_.check->Gaps(layer_)) {
      for (uint64_t at = start; at < end; at += kPiece) {
        const uint64_t len = std::min(kPiece, end - at);
        LAZYFS_ASSIGN_OR_RETURN(std::string bytes_in, FetchRange(*ctx_.blobs, layer_, at, len, deadline));
        NoteFetched(at, bytes_in);
      }
    }
    return bytes;
  }

  std::vector<Digest> LandmarkFiles() const override { return toc_.prefetch; }

 private:
  Result<std::vector<TocChunk>> ChunksOf(const Digest& file) const {
    LAZYFS_ASSIGN_OR_RETURN(auto chunks, ctx_.records->TocChunks(layer_.digest, file));
    if (!chunks) return Corrupt("of file " + file.Short() + " (no TOC chunks)");
    return std::move(*chunks);
  }

  // A chunk this read can take from the cache: cached, and produced by this layer's bytes (a
  // TOC may name any digest, the content of another image's file among them).
  bool Have(const Digest& d) { return ctx_.cache->Contains(d) && TrustsCached(d); }

  std::vector<TocChunk> Missing(const std::vector<TocChunk>& chunks) {
    std::vector<TocChunk> out;
    for (const TocChunk& c : chunks) {
      if (!Have(c.digest)) out.push_back(c);
    }
    return out;
  }

  // Records that this layer's bytes produced chunk `d` (after checking it).
  void Trust(const Digest& d) {
    MutexLock lock(trusted_mu_);
    if (!trusted_.insert(d).second) return;
    auto fd = OpenFile(trusted_path_, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd.ok()) {
      WriteAll(fd->get(), d.bytes().data(), d.bytes().size()).IgnoreError();
    }
  }

  Result<uint64_t> FetchAll(const std::vector<TocChunk>& missing, const Deadline& deadline) {
    uint64_t bytes = 0;
    for (const TocChunk& c : missing) bytes += c.size;
    if (!missing.empty()) LAZYFS_RETURN_IF_ERROR(Fetch(missing, deadline));
    return bytes;
  }

  Status Fetch(const std::vector<TocChunk>& missing, const Deadline& deadline) {
    std::vector<Digest> keys;
    for (const TocChunk& c : missing) keys.push_back(c.digest);
    return FetchMissingChunks(
        ctx_, layer_, keys, [this](const Digest& d) { return Have(d); },
        [this, missing, deadline](const std::vector<Digest>& claimed) {
          std::vector<TocChunk> mine;
          for (const Digest& d : claimed) {
            mine.push_back(*std::find_if(missing.begin(), missing.end(),
                                         [&](const TocChunk& c) { return c.digest == d; }));
          }
          return FetchRuns(std::move(mine), deadline);
        },
        deadline);
  }

  Status FetchRuns(std::vector<TocChunk> chunks, const Deadline& deadline);
  Status InflateRun(const std::vector<TocChunk>& chunks, size_t i, size_t j, uint64_t start,
                    std::string_view run);
  void NoteFetched(uint64_t offset, std::string_view bytes);

  const LayerDescriptor layer_;
  const Digest diff_id_;
  const TocLayerRecord toc_;
  const SourceContext ctx_;
  const std::string trusted_path_;  // StoreLayout::verified_layers()/<hex>.chunks
  Mutex trusted_mu_;
  std::set<Digest> trusted_ LAZYFS_GUARDED_BY(trusted_mu_);
};

// One range request per run of chunks whose members (frames) are adjacent in the blob; each
// chunk decompressed alone, checked against its digest, stored.
Status TocSource::FetchRuns(std::vector<TocChunk> chunks, const Deadline& deadline) {
  std::sort(chunks.begin(), chunks.end(), [](const TocChunk& a, const TocChunk& b) {
    return a.compressed_offset < b.compressed_offset;
  });
  for (size_t i = 0; i < chunks.size();) {
    size_t j = i + 1;
    uint64_t end = chunks[i].compressed_end;
    while (j < chunks.size() && chunks[j].compressed_offset <= end) {
      end = std::max(end, chunks[j].compressed_end);
      ++j;
    }
    // The layer's first chunk brings the tar headers before it along (a few KiB at most), so
    // reads alone can cover the whole layer for its whole-layer check.
    const uint64_t start =
        chunks[i].compressed_offset == toc_.first_chunk ? 0 : chunks[i].compressed_offset;
    if (end > layer_.size || start >= end) {
      return Corrupt("of layer " + layer_.digest.Short() + " (TOC chunk offsets)");
    }
    LAZYFS_ASSIGN_OR_RETURN(std::string run,
                            FetchRange(*ctx_.blobs, layer_, start, end - start, deadline));
    LAZYFS_RETURN_IF_ERROR(InflateRun(chunks, i, j, start, run));
    NoteFetched(start, run);
    i = j;
  }
  return Status::Ok();
}

Status TocSource::InflateRun(const std::vector<TocChunk>& chunks, size_t i, size_t j,
                             uint64_t start, std::string_view run) {
  const std::string what = "layer " + layer_.digest.Short();
  LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer_.media_type));
  for (size_t k = i; k < j; ++k) {
    const TocChunk& c = chunks[k];
    auto data = InflateSpan(comp, nullptr,
                            run.substr(c.compressed_offset - start,
                                       c.compressed_end - c.compressed_offset),
                            c.inner_offset, c.size);
    if (!data.ok()) {
      return DataLossError(what + ": chunk " + c.digest.Short() + " at blob offset " +
                           std::to_string(c.compressed_offset) + ": " + data.status().message());
    }
    // Checked here whether or not the cache holds an object of that name already: that this
    // layer's bytes produce the chunk is what makes the cached copy this layer's content.
    if (Sha256Of(*data) != c.digest) {
      return DataLossError(what + ": chunk at blob offset " + std::to_string(c.compressed_offset) +
                           " does not match its chunkDigest " + c.digest.ToString());
    }
    LAZYFS_RETURN_IF_ERROR(ctx_.cache->PutHashed(c.digest, *data));
    Trust(c.digest);
  }
  return Status::Ok();
}

void TocSource::NoteFetched(uint64_t offset, std::string_view bytes) {
  ctx_.check->Saw(
      layer_, diff_id_, offset, bytes,
      [&] {
        // The layer as a whole does not match what the manifest says: none of its chunks is
        // trusted any more.
        ctx_.records
            ->ForEachTocFile(layer_.digest,
                             [&](const std::vector<TocChunk>& chunks) {
                               for (const TocChunk& c : chunks) {
                                 ctx_.cache->Remove(c.digest).IgnoreError();
                               }
                             })
            .IgnoreError();
      },
      // And the TOC's claims must be the tar stream's.
      [&](int fd) {
        return CheckTocAgainstStream(fd, layer_, *ctx_.records,
                                     StreamReadOptions(*ctx_.options, layer_.size));
      });
}

}  // namespace

std::unique_ptr<ContentSource> MakeTocSource(const LayerDescriptor& layer,
                                             const LayerRecord& record, TocLayerRecord toc,
                                             const SourceContext& ctx) {
  return std::make_unique<TocSource>(layer, record, std::move(toc), ctx);
}

}  // namespace lazyfs::index
