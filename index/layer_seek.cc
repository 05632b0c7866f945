#include "index/layer_seek.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <memory>

#include "index/codec.h"

namespace lazyfs::index {
namespace {

struct ZStream {
  z_stream zs{};
  bool init = false;
  ~ZStream() {
    if (init) inflateEnd(&zs);
  }
};
struct ZstdDCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// Keeps `want` bytes of a stream after skipping its first `skip`.
struct Collector {
  uint64_t skip, want, seen = 0;
  std::string out;
  bool full() const { return out.size() >= want; }
  void Add(const char* p, size_t n) {
    const uint64_t end = seen + n;
    if (end > skip && !full()) {
      const uint64_t from = seen > skip ? 0 : skip - seen;
      const uint64_t take = std::min<uint64_t>(n - from, want - out.size());
      out.append(p + from, take);
    }
    seen = end;
  }
};

Status Corrupt(const std::string& what) { return DataLossError("layer span: " + what); }

class GzipInflater final : public SpanInflater {
 public:
  Status Init(const Checkpoint* cp) {
    if (cp) {
      // Raw deflate from a block boundary, primed with the window (and, on the first byte fed,
      // the bits of the block that byte holds).
      if (inflateInit2(&z_.zs, -15) != Z_OK) return InternalError("inflateInit2 failed");
      z_.init = true;
      raw_ = true;
      prime_bits_ = cp->bits;
      inflateSetDictionary(&z_.zs, reinterpret_cast<const Bytef*>(cp->window.data()),
                           static_cast<uInt>(cp->window.size()));
    } else {
      if (inflateInit2(&z_.zs, 15 + 16) != Z_OK) return InternalError("inflateInit2 failed");
      z_.init = true;
    }
    return Status::Ok();
  }

  Status Feed(std::string_view in, const Sink& sink) override {
    if (prime_bits_ && !in.empty()) {
      inflatePrime(&z_.zs, prime_bits_, static_cast<unsigned char>(in[0]) >> (8 - prime_bits_));
      prime_bits_ = 0;
      in.remove_prefix(1);
    }
    while (!in.empty()) {
      if (skip_) {
        const size_t n = std::min<size_t>(skip_, in.size());
        skip_ -= n;
        in.remove_prefix(n);
        continue;
      }
      z_.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      z_.zs.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), 1 << 30));
      z_.zs.next_out = reinterpret_cast<Bytef*>(buf_.data());
      z_.zs.avail_out = static_cast<uInt>(buf_.size());
      const uInt before = z_.zs.avail_in;
      const int rc = inflate(&z_.zs, Z_NO_FLUSH);
      in.remove_prefix(before - z_.zs.avail_in);
      if (const size_t n = buf_.size() - z_.zs.avail_out; n) sink(buf_.data(), n);
      if (rc == Z_STREAM_END) {
        // A member ends; another may follow (concatenated members are one stream). After a
        // raw resume the member's 8-byte trailer comes first.
        if (raw_) skip_ = 8;
        raw_ = false;
        if (inflateReset2(&z_.zs, 15 + 16) != Z_OK) return InternalError("inflateReset2 failed");
        continue;
      }
      if (rc != Z_OK && !(rc == Z_BUF_ERROR && z_.zs.avail_in == 0)) {
        return Corrupt(std::string("corrupt gzip data (") +
                       (z_.zs.msg ? z_.zs.msg : "zlib error") + ")");
      }
    }
    return Status::Ok();
  }

 private:
  ZStream z_;
  bool raw_ = false;
  int prime_bits_ = 0;
  size_t skip_ = 0;
  std::string buf_ = std::string(256 * 1024, '\0');
};

class ZstdInflater final : public SpanInflater {
 public:
  Status Init() {
    d_.reset(ZSTD_createDCtx());
    return d_ ? Status::Ok() : InternalError("ZSTD_createDCtx failed");
  }
  Status Feed(std::string_view input, const Sink& sink) override {
    ZSTD_inBuffer in{input.data(), input.size(), 0};
    for (;;) {
      ZSTD_outBuffer out{buf_.data(), buf_.size(), 0};
      const size_t rc = ZSTD_decompressStream(d_.get(), &out, &in);
      if (ZSTD_isError(rc)) {
        return Corrupt(std::string("corrupt zstd data (") + ZSTD_getErrorName(rc) + ")");
      }
      if (out.pos) sink(buf_.data(), out.pos);
      if (in.pos == in.size && out.pos < out.size) return Status::Ok();
    }
  }

 private:
  std::unique_ptr<ZSTD_DCtx, ZstdDCtxFree> d_;
  std::string buf_ = std::string(ZSTD_DStreamOutSize(), '\0');
};

class TarPassThrough final : public SpanInflater {
 public:
  Status Feed(std::string_view input, const Sink& sink) override {
    sink(input.data(), input.size());
    return Status::Ok();
  }
};

}  // namespace

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

Result<std::unique_ptr<SpanInflater>> SpanInflater::Start(LayerCompression compression,
                                                           const Checkpoint* cp) {
  switch (compression) {
    case LayerCompression::kGzip: {
      auto g = std::make_unique<GzipInflater>();
      LAZYFS_RETURN_IF_ERROR(g->Init(cp));
      return std::unique_ptr<SpanInflater>(std::move(g));
    }
    case LayerCompression::kZstd: {
      auto z = std::make_unique<ZstdInflater>();
      LAZYFS_RETURN_IF_ERROR(z->Init());
      return std::unique_ptr<SpanInflater>(std::move(z));
    }
    case LayerCompression::kNone: break;
  }
  return std::unique_ptr<SpanInflater>(new TarPassThrough);
}

Result<std::string> InflateSpan(LayerCompression compression, const Checkpoint* cp,
                                std::string_view span, uint64_t skip, uint64_t want) {
  Collector c{skip, want, 0, {}};
  LAZYFS_ASSIGN_OR_RETURN(auto inflater, SpanInflater::Start(compression, cp));
  LAZYFS_RETURN_IF_ERROR(inflater->Feed(span, [&](const char* p, size_t n) { c.Add(p, n); }));
  if (c.out.size() < want) {
    return Corrupt("ends " + std::to_string(want - c.out.size()) + " bytes early");
  }
  return std::move(c.out);
}

}  // namespace lazyfs::index
