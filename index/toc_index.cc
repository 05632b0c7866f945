// Indexing from TOCs and chunk reads (toc_index.h).
#include "index/toc_index.h"

#include <algorithm>
#include <thread>

#include "index/codec.h"
#include "index/layer_seek.h"
#include "index/schema.h"

namespace lazyfs::index {
namespace {

Status Corrupt(std::string_view what) {
  return DataLossError("index record " + std::string(what) + " is damaged; run lazyfs fsck");
}

std::string EncodeChunks(const std::vector<TocChunk>& chunks) {
  Encoder e;
  e.U8(1);
  e.Varint(chunks.size());
  for (const TocChunk& c : chunks) {
    e.Varint(c.size);
    e.Varint(c.compressed_offset);
    e.Varint(c.compressed_end - c.compressed_offset);
    e.Varint(c.inner_offset);
    e.DigestBytes(c.digest);
  }
  return e.Take();
}

}  // namespace

bool DecodeTocChunks(std::string_view v, std::vector<TocChunk>* out) {
  Decoder d(v);
  uint8_t version;
  uint64_t n;
  if (!d.U8(&version) || version != 1 || !d.Varint(&n) || n > (uint64_t{1} << 32)) return false;
  out->clear();
  uint64_t offset = 0;
  for (uint64_t i = 0; i < n; ++i) {
    TocChunk c;
    uint64_t len;
    if (!d.Varint(&c.size) || !d.Varint(&c.compressed_offset) || !d.Varint(&len) ||
        !d.Varint(&c.inner_offset) || !d.DigestBytes(&c.digest)) {
      return false;
    }
    c.offset = offset;
    c.compressed_end = c.compressed_offset + len;
    offset += c.size;
    out->push_back(std::move(c));
  }
  return d.done();
}

std::string EncodeTocLayer(const TocLayerRecord& r) {
  Encoder e;
  e.U8(1);
  e.U8(static_cast<uint8_t>(r.format));
  e.DigestBytes(r.toc_digest);
  e.Varint(r.first_chunk);
  e.Varint(r.payload_end);
  e.Varint(r.prefetch.size());
  for (const Digest& d : r.prefetch) e.DigestBytes(d);
  return e.Take();
}

bool DecodeTocLayer(std::string_view v, TocLayerRecord* r) {
  Decoder d(v);
  uint8_t version, format;
  uint64_t n;
  if (!d.U8(&version) || version != 1 || !d.U8(&format) || format < 1 || format > 2 ||
      !d.DigestBytes(&r->toc_digest) || !d.Varint(&r->first_chunk) || !d.Varint(&r->payload_end) ||
      !d.Varint(&n) || n > (uint64_t{1} << 32)) {
    return false;
  }
  r->format = static_cast<TocFormat>(format);
  r->prefetch.resize(n);
  for (Digest& x : r->prefetch) {
    if (!d.DigestBytes(&x)) return false;
  }
  return d.done();
}

Result<std::optional<Digest>> TocDigestOf(const LayerDescriptor& layer) {
  auto it = layer.annotations.find(std::string(kTocDigestAnnotation));
  if (it == layer.annotations.end()) return std::optional<Digest>();
  auto comp = CompressionOfMediaType(layer.media_type);
  if (!comp.ok() || *comp == LayerCompression::kNone) return std::optional<Digest>();
  auto d = Digest::Parse(it->second);
  if (!d.ok()) {
    return InvalidArgumentError("layer " + layer.digest.Short() + ": annotation " +
                                std::string(kTocDigestAnnotation) + ": " + d.status().message());
  }
  return std::optional<Digest>(*d);
}

Result<TocIndexed> IndexFromToc(const LayerDescriptor& layer, const Digest& toc_digest,
                                BlobSource& blobs, const TocLimits& limits) {
  const std::string name = "layer " + layer.digest.Short();
  LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
  auto read = [&](uint64_t offset, uint64_t length) -> Result<std::string> {
    std::string buf(length, '\0');
    LAZYFS_ASSIGN_OR_RETURN(size_t n, blobs.ReadBlobRange(layer.digest, offset,
                                                          std::as_writable_bytes(std::span(buf)),
                                                          Deadline::Never()));
    if (n != length) {
      return DataLossError(name + ": the blob ends before byte " + std::to_string(offset + length) +
                           " (its descriptor says " + std::to_string(layer.size) + " bytes)");
    }
    return buf;
  };
  TocIndexed out;
  const uint64_t tail_size = std::min(layer.size, kTocTailSize);
  LAZYFS_ASSIGN_OR_RETURN(std::string tail, read(layer.size - tail_size, tail_size));
  auto footer = ParseTocFooter(comp, tail, layer.size);
  if (!footer.ok()) return footer.status().WithContext(name);
  if (footer->toc_size > limits.max_toc_bytes) {
    return Status(StatusCode::kResourceExhausted,
                  name + ": TOC of " + std::to_string(footer->toc_size) + " bytes (more than " +
                      std::to_string(limits.max_toc_bytes) + ")");
  }
  LAZYFS_ASSIGN_OR_RETURN(std::string compressed, read(footer->toc_offset, footer->toc_size));
  out.bytes_read = tail.size() + compressed.size();
  auto json = DecompressToc(*footer, compressed, limits);
  if (!json.ok()) return json.status().WithContext(name);
  const Digest got = Sha256Of(*json);
  if (got != toc_digest) {
    return DataLossError(name + ": its TOC hashes to " + got.ToString() +
                         " but the manifest annotates " + std::string(kTocDigestAnnotation) + " " +
                         toc_digest.ToString());
  }
  auto toc = ParseToc(*json, *footer, limits);
  if (!toc.ok()) return toc.status().WithContext(name + ": TOC");

  TocLayerRecord rec;
  rec.format = footer->format;
  rec.toc_digest = toc_digest;
  rec.payload_end = footer->payload_end;
  rec.first_chunk = footer->payload_end;
  rec.prefetch = std::move(toc->prefetch);
  for (const auto& [digest, chunks] : toc->files) {
    for (const TocChunk& c : chunks)
      rec.first_chunk = std::min(rec.first_chunk, c.compressed_offset);
    out.records.emplace_back(schema::TocFileKey(layer.digest, digest), EncodeChunks(chunks));
  }
  out.records.emplace_back(schema::TocLayerKey(layer.digest), EncodeTocLayer(rec));
  out.entries = std::move(toc->entries);
  return out;
}

// ---- reads --------------------------------------------------------------------------------

TocReader::TocReader(GetFn get, ScanFn scan, std::shared_ptr<ContentCache> cache, BlobSource& blobs,
                     std::chrono::milliseconds read_timeout, SawFn saw)
    : get_(std::move(get)),
      scan_(std::move(scan)),
      cache_(std::move(cache)),
      blobs_(blobs),
      read_timeout_(read_timeout),
      saw_(std::move(saw)) {}

TocReader::~TocReader() {
  std::unique_lock lock(mu_);
  workers_cv_.wait(lock, [&] { return workers_ == 0; });
}

Result<std::optional<TocLayerRecord>> TocReader::Layer(const Digest& layer) {
  LAZYFS_ASSIGN_OR_RETURN(auto v, get_(schema::TocLayerKey(layer)));
  if (!v) return std::optional<TocLayerRecord>();
  TocLayerRecord r;
  if (!DecodeTocLayer(*v, &r)) return Corrupt("of layer " + layer.Short() + " (TOC)");
  return std::optional<TocLayerRecord>(std::move(r));
}

Result<std::optional<std::vector<TocChunk>>> TocReader::Chunks(const Digest& layer,
                                                               const Digest& file) {
  LAZYFS_ASSIGN_OR_RETURN(auto v, get_(schema::TocFileKey(layer, file)));
  if (!v) return std::optional<std::vector<TocChunk>>();
  std::vector<TocChunk> chunks;
  if (!DecodeTocChunks(*v, &chunks)) return Corrupt("of file " + file.Short() + " (TOC chunks)");
  return std::optional<std::vector<TocChunk>>(std::move(chunks));
}

Result<std::optional<size_t>> TocReader::Read(const LayerDescriptor& layer, const Digest& file,
                                              uint64_t offset, std::span<std::byte> out,
                                              bool* fetched) {
  LAZYFS_ASSIGN_OR_RETURN(auto chunks, Chunks(layer.digest, file));
  if (!chunks) return std::optional<size_t>();
  if (out.empty()) return std::optional<size_t>(0);
  const auto deadline = std::chrono::steady_clock::now() + read_timeout_;
  const uint64_t end = offset + out.size();
  // The chunks overlapping [offset, end).
  auto first = std::upper_bound(chunks->begin(), chunks->end(), offset,
                                [](uint64_t o, const TocChunk& c) { return o < c.offset; });
  if (first == chunks->begin()) return Corrupt("of file " + file.Short() + " (TOC chunks)");
  --first;
  std::vector<TocChunk> wanted;
  for (auto it = first; it != chunks->end() && it->offset < end; ++it) wanted.push_back(*it);
  if (wanted.empty() || wanted.back().offset + wanted.back().size < end) {
    return Corrupt("of file " + file.Short() + " (TOC chunks end before the file)");
  }
  for (int attempt = 0;; ++attempt) {
    std::vector<TocChunk> missing;
    for (const TocChunk& c : wanted) {
      if (!cache_->Contains(c.digest)) missing.push_back(c);
    }
    if (!missing.empty()) {
      *fetched = true;
      LAZYFS_RETURN_IF_ERROR(Fetch(layer, missing, deadline));
    }
    size_t done = 0;
    bool lost = false;
    for (const TocChunk& c : wanted) {
      auto fd = cache_->Open(c.digest);
      if (!fd.ok()) {
        // Evicted, or found corrupt and dropped, since it was fetched: fetch it again.
        if (fd.status().code() != StatusCode::kNotFound) return fd.status();
        lost = true;
        break;
      }
      const uint64_t from = std::max(offset, c.offset);
      const uint64_t to = std::min(end, c.offset + c.size);
      LAZYFS_ASSIGN_OR_RETURN(size_t n, PreadFull((*fd)->get(), out.data() + done,
                                                  static_cast<size_t>(to - from), from - c.offset));
      if (n != to - from) return DataLossError("cached chunk " + c.digest.Short() + " is short");
      done += n;
    }
    if (!lost) return std::optional<size_t>(done);
    if (attempt >= 3) {
      return UnavailableError("file " + file.Short() +
                              ": its chunks are evicted as fast as they are fetched; the content "
                              "cache is too small");
    }
  }
}

Result<uint64_t> TocReader::FetchFile(const LayerDescriptor& layer, const Digest& file) {
  LAZYFS_ASSIGN_OR_RETURN(auto chunks, Chunks(layer.digest, file));
  if (!chunks) return uint64_t{0};
  std::vector<TocChunk> missing;
  uint64_t bytes = 0;
  for (const TocChunk& c : *chunks) {
    if (cache_->Contains(c.digest)) continue;
    missing.push_back(c);
    bytes += c.size;
  }
  if (!missing.empty()) {
    LAZYFS_RETURN_IF_ERROR(Fetch(layer, missing, std::chrono::steady_clock::now() + read_timeout_));
  }
  return bytes;
}

Result<uint64_t> TocReader::FetchLayer(const LayerDescriptor& layer) {
  LAZYFS_ASSIGN_OR_RETURN(auto rec, Layer(layer.digest));
  if (!rec) return uint64_t{0};
  std::vector<TocChunk> missing;
  bool damaged = false;
  uint64_t bytes = 0;
  LAZYFS_RETURN_IF_ERROR(
      scan_(schema::DigestKey('T', layer.digest), [&](std::string_view, std::string_view value) {
        std::vector<TocChunk> chunks;
        if (!DecodeTocChunks(value, &chunks)) damaged = true;
        for (TocChunk& c : chunks) {
          if (cache_->Contains(c.digest)) continue;
          bytes += c.size;
          missing.push_back(std::move(c));
        }
      }));
  if (damaged) return Corrupt("of TOC chunks in layer " + layer.digest.Short());
  if (!missing.empty()) {
    LAZYFS_RETURN_IF_ERROR(Fetch(layer, missing, std::chrono::steady_clock::now() + read_timeout_));
  }
  if (rec->payload_end < layer.size) {
    LAZYFS_ASSIGN_OR_RETURN(
        std::string tail,
        FetchBlobRange(blobs_, layer.digest, rec->payload_end, layer.size - rec->payload_end,
                       std::chrono::steady_clock::now() + read_timeout_));
    if (saw_) saw_(layer, rec->payload_end, tail);
  }
  return bytes;
}

// Chunks another read is fetching are waited for; the rest are fetched in a worker thread, so
// a reader gives up at its deadline even when a connection hangs.
Status TocReader::Fetch(const LayerDescriptor& layer, const std::vector<TocChunk>& missing,
                        std::chrono::steady_clock::time_point deadline) {
  std::vector<std::shared_future<Status>> waits;
  std::vector<TocChunk> mine;
  auto promise = std::make_shared<std::promise<Status>>();
  std::shared_future<Status> mine_done = promise->get_future().share();
  {
    std::lock_guard lock(mu_);
    for (const TocChunk& c : missing) {
      // A fetch stores its chunks before it leaves inflight_: checked under the lock, a chunk
      // is either cached or in flight, never fetched twice.
      if (cache_->Contains(c.digest)) continue;
      auto [it, inserted] = inflight_.emplace(c.digest, mine_done);
      if (inserted) {
        mine.push_back(c);
      } else {
        waits.push_back(it->second);
      }
    }
    if (!mine.empty()) ++workers_;
  }
  if (!mine.empty()) {
    waits.push_back(mine_done);
    std::thread([this, layer, mine, promise, deadline] {
      Status s = FetchRuns(layer, mine, deadline);
      std::lock_guard lock(mu_);
      // No memory of failures: the next read of these chunks tries again.
      for (const TocChunk& c : mine) inflight_.erase(c.digest);
      promise->set_value(s);
      --workers_;
      workers_cv_.notify_all();
    }).detach();
  }
  for (const auto& w : waits) {
    if (w.wait_until(deadline) == std::future_status::timeout) {
      return UnavailableError("layer " + layer.digest.Short() + ": no answer within " +
                              std::to_string(read_timeout_.count() / 1000.0).substr(0, 5) + " s");
    }
    LAZYFS_RETURN_IF_ERROR(w.get());
  }
  return Status::Ok();
}

// One range request per run of chunks whose members (frames) are adjacent in the blob; each
// chunk decompressed alone, checked against its digest, stored.
Status TocReader::FetchRuns(const LayerDescriptor& layer, std::vector<TocChunk> chunks,
                            std::chrono::steady_clock::time_point deadline) {
  LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
  LAZYFS_ASSIGN_OR_RETURN(auto rec, Layer(layer.digest));
  if (!rec) return Corrupt("of layer " + layer.digest.Short() + " (TOC record missing)");
  std::sort(chunks.begin(), chunks.end(), [](const TocChunk& a, const TocChunk& b) {
    return a.compressed_offset < b.compressed_offset;
  });
  const std::string what = "layer " + layer.digest.Short();
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
        chunks[i].compressed_offset == rec->first_chunk ? 0 : chunks[i].compressed_offset;
    if (end > layer.size || start >= end) return Corrupt("of " + what + " (TOC chunk offsets)");
    LAZYFS_ASSIGN_OR_RETURN(std::string run,
                            FetchBlobRange(blobs_, layer.digest, start, end - start, deadline));
    if (run.size() != end - start) {
      return DataLossError(what + ": the blob ends before byte " + std::to_string(end));
    }
    for (size_t k = i; k < j; ++k) {
      const TocChunk& c = chunks[k];
      auto data = InflateSpan(comp, nullptr,
                              std::string_view(run).substr(c.compressed_offset - start,
                                                           c.compressed_end - c.compressed_offset),
                              c.inner_offset, c.size);
      if (!data.ok()) {
        return DataLossError(what + ": chunk " + c.digest.Short() + " at blob offset " +
                             std::to_string(c.compressed_offset) + ": " + data.status().message());
      }
      Status s = cache_->Put(c.digest, *data);
      if (!s.ok()) {
        if (s.code() != StatusCode::kDataLoss) return s;
        return DataLossError(what + ": chunk at blob offset " +
                             std::to_string(c.compressed_offset) +
                             " does not match its chunkDigest " + c.digest.ToString());
      }
    }
    if (saw_) saw_(layer, start, run);
    i = j;
  }
  return Status::Ok();
}

Result<std::string> FetchBlobRange(BlobSource& blobs, const Digest& blob, uint64_t offset,
                                   uint64_t length,
                                   std::chrono::steady_clock::time_point deadline) {
  std::string buf(length, '\0');
  auto delay = std::chrono::milliseconds(50);
  for (;;) {
    auto n = blobs.ReadBlobRange(blob, offset, std::as_writable_bytes(std::span(buf)),
                                 Deadline::At(deadline));
    if (n.ok()) {
      buf.resize(*n);
      return buf;
    }
    if (n.status().code() != StatusCode::kUnavailable ||
        std::chrono::steady_clock::now() + delay >= deadline) {
      return n.status();
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

}  // namespace lazyfs::index
