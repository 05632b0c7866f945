#include "index/inflate.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "index/inflate_isal.h"

namespace lazyfs::index {
namespace {

class GzipInflater final : public Inflater {
 public:
  explicit GzipInflater(bool boundaries) : flush_(boundaries ? Z_BLOCK : Z_NO_FLUSH) {}
  ~GzipInflater() override {
    if (init_) inflateEnd(&zs_);
  }

  Status Init(const Checkpoint* cp) {
    // A resume starts raw deflate at a block boundary, primed with the window (and, on the
    // first byte fed, the bits of the block that byte holds); a stream start reads the header.
    if (inflateInit2(&zs_, cp ? -15 : 15 + 16) != Z_OK) return InternalError("inflateInit2 failed");
    init_ = true;
    if (cp) {
      raw_ = true;
      prime_bits_ = cp->bits;
      inflateSetDictionary(&zs_, reinterpret_cast<const Bytef*>(cp->window.data()),
                           static_cast<uInt>(cp->window.size()));
    }
    return Status::Ok();
  }

  Result<InflateStep> Inflate(std::string_view in, std::span<char> out) override {
    InflateStep step;
    auto use = [&](size_t n) {
      in.remove_prefix(n);
      step.consumed += n;
    };
    if (prime_bits_ && !in.empty()) {
      inflatePrime(&zs_, prime_bits_, static_cast<unsigned char>(in[0]) >> (8 - prime_bits_));
      prime_bits_ = 0;
      use(1);
    }
    if (skip_ && !in.empty()) {
      const size_t n = std::min(skip_, in.size());
      use(n);
      skip_ -= n;
    }
    if (member_done_) {
      // Another member follows (or nothing does: the stream is complete).
      if (in.empty() || skip_) return step;
      if (inflateReset2(&zs_, 15 + 16) != Z_OK) return InternalError("inflateReset2 failed");
      member_done_ = false;
    }
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), 1u << 30));
    zs_.next_out = reinterpret_cast<Bytef*>(out.data());
    zs_.avail_out = static_cast<uInt>(std::min<size_t>(out.size(), 1u << 30));
    const uInt avail_in = zs_.avail_in, avail_out = zs_.avail_out;
    const int rc = inflate(&zs_, flush_);
    use(avail_in - zs_.avail_in);
    step.produced = avail_out - zs_.avail_out;
    if (rc == Z_STREAM_END) {
      // After a raw resume the member's 8-byte trailer comes next; gzip mode reads its own.
      member_done_ = true;
      if (raw_) skip_ = 8;
      raw_ = false;
    } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && zs_.avail_in == 0)) {
      return DataLossError(std::string("corrupt gzip stream (") +
                           (zs_.msg ? zs_.msg : "zlib error") + ")");
    } else if (flush_ == Z_BLOCK && (zs_.data_type & 128) && !(zs_.data_type & 64)) {
      // The end of a block that is not the member's last: the next block starts here.
      step.boundary = true;
      step.bits = static_cast<uint8_t>(zs_.data_type & 7);
    }
    return step;
  }

  bool complete() const override { return member_done_ && skip_ == 0; }
  std::string_view format() const override { return "gzip"; }
  std::string_view engine() const override { return "zlib"; }

 private:
  const int flush_;
  z_stream zs_{};
  bool init_ = false;
  bool raw_ = false;
  bool member_done_ = false;
  int prime_bits_ = 0;
  size_t skip_ = 0;
};

class ZstdInflater final : public Inflater {
 public:
  explicit ZstdInflater(bool boundaries) : boundaries_(boundaries) {}
  ~ZstdInflater() override { ZSTD_freeDCtx(d_); }

  Status Init() {
    d_ = ZSTD_createDCtx();
    return d_ ? Status::Ok() : InternalError("ZSTD_createDCtx failed");
  }

  Result<InflateStep> Inflate(std::string_view in, std::span<char> out) override {
    // A finished frame is fully flushed; without input, asking again would start a new one.
    if (in.empty() && last_ == 0) return InflateStep{};
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    ZSTD_outBuffer ob{out.data(), out.size(), 0};
    last_ = ZSTD_decompressStream(d_, &ob, &ib);
    if (ZSTD_isError(last_)) {
      return DataLossError(std::string("corrupt zstd stream (") + ZSTD_getErrorName(last_) + ")");
    }
    InflateStep step;
    step.consumed = ib.pos;
    step.produced = ob.pos;
    // A frame ends here: the next one decodes without any history.
    step.boundary = boundaries_ && last_ == 0 && (ib.pos > 0 || ob.pos > 0);
    return step;
  }

  bool complete() const override { return last_ == 0; }
  std::string_view format() const override { return "zstd"; }
  std::string_view engine() const override { return "zstd"; }

 private:
  const bool boundaries_;
  ZSTD_DCtx* d_ = nullptr;
  size_t last_ = 1;  // the last ZSTD_decompressStream result: 0 at a frame boundary
};

class TarInflater final : public Inflater {
 public:
  Result<InflateStep> Inflate(std::string_view in, std::span<char> out) override {
    InflateStep step;
    step.consumed = step.produced = std::min(in.size(), out.size());
    std::memcpy(out.data(), in.data(), step.produced);
    return step;
  }
  bool complete() const override { return true; }
  std::string_view format() const override { return "tar"; }
  std::string_view engine() const override { return "copy"; }
};

// The environment picks zlib over igzip (LAZYFS_INFLATE=zlib) for comparisons and as a way
// out should igzip ever misbehave on some stream.
bool UseIsal(GzipEngine engine) {
  if (!IsalAvailable() || engine == GzipEngine::kZlib) return false;
  if (engine == GzipEngine::kIsal) return true;
  const char* env = std::getenv("LAZYFS_INFLATE");
  return !(env && std::string_view(env) == "zlib");
}

}  // namespace

Result<std::unique_ptr<Inflater>> Inflater::Open(LayerCompression compression,
                                                  const Checkpoint* resume, bool boundaries) {
  InflateOptions options;
  options.boundaries = boundaries;
  return Open(compression, resume, options);
}

Result<std::unique_ptr<Inflater>> Inflater::Open(LayerCompression compression,
                                                  const Checkpoint* resume,
                                                  const InflateOptions& options) {
  switch (compression) {
    case LayerCompression::kGzip: {
      if (UseIsal(options.gzip)) return OpenIsalGzip(resume, options);
      auto g = std::make_unique<GzipInflater>(options.boundaries);
      LAZYFS_RETURN_IF_ERROR(g->Init(resume));
      return std::unique_ptr<Inflater>(std::move(g));
    }
    case LayerCompression::kZstd: {
      auto z = std::make_unique<ZstdInflater>(options.boundaries);
      LAZYFS_RETURN_IF_ERROR(z->Init());
      return std::unique_ptr<Inflater>(std::move(z));
    }
    case LayerCompression::kNone:
      break;
  }
  return std::unique_ptr<Inflater>(new TarInflater);
}

Status InflateAll(Inflater& inflater, std::string_view input, const InflateSink& sink) {
  static constexpr size_t kPiece = 256 * 1024;
  // Left uninitialised: zero-filling it would cost more than a small span's whole inflate.
  const std::unique_ptr<char[]> storage = std::make_unique_for_overwrite<char[]>(kPiece);
  const std::span<char> buf(storage.get(), kPiece);
  for (;;) {
    LAZYFS_ASSIGN_OR_RETURN(InflateStep step, inflater.Inflate(input, buf));
    input.remove_prefix(step.consumed);
    if (step.produced && !sink(buf.data(), step.produced)) return Status::Ok();
    // Done once the input is used and the output no longer fills the buffer (nothing pending).
    if (input.empty() && step.produced < buf.size()) return Status::Ok();
    if (step.consumed == 0 && step.produced == 0 && inflater.complete()) {
      // A complete stream followed by bytes that start nothing (a member that never begins).
      return Status::Ok();
    }
  }
}

Result<std::string> InflateSpan(LayerCompression compression, const Checkpoint* cp,
                                std::string_view span, uint64_t skip, uint64_t want) {
  std::string out;
  uint64_t seen = 0;
  LAZYFS_ASSIGN_OR_RETURN(auto inflater, Inflater::Open(compression, cp, false));
  LAZYFS_RETURN_IF_ERROR(InflateAll(*inflater, span, [&](const char* p, size_t n) {
    // Keep `want` bytes after the first `skip`.
    const uint64_t end = seen + n;
    if (end > skip && out.size() < want) {
      const uint64_t from = seen > skip ? 0 : skip - seen;
      out.append(p + from, std::min<uint64_t>(n - from, want - out.size()));
    }
    seen = end;
    return out.size() < want;
  }).WithContext("layer span"));
  if (out.size() < want) {
    return DataLossError("layer span: ends " + std::to_string(want - out.size()) + " bytes early");
  }
  return out;
}

}  // namespace lazyfs::index
