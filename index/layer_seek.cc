#include "index/layer_seek.h"

#include <zlib.h>
#include <zstd.h>

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

// Collects the part [skip, skip + want) of a stream of output pieces.
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

Result<std::string> InflateGzip(const Checkpoint* cp, std::string_view span, Collector& c) {
  ZStream z;
  size_t pos = 0;
  if (cp) {
    // Raw deflate from a block boundary, primed with the partial byte and the window.
    if (inflateInit2(&z.zs, -15) != Z_OK) return InternalError("inflateInit2 failed");
    z.init = true;
    if (cp->bits) {
      if (span.empty()) return Corrupt("empty span");
      const int byte = static_cast<unsigned char>(span[0]);
      inflatePrime(&z.zs, cp->bits, byte >> (8 - cp->bits));
      pos = 1;
    }
    inflateSetDictionary(&z.zs, reinterpret_cast<const Bytef*>(cp->window.data()),
                         static_cast<uInt>(cp->window.size()));
  } else {
    if (inflateInit2(&z.zs, 15 + 16) != Z_OK) return InternalError("inflateInit2 failed");
    z.init = true;
  }
  bool raw = cp != nullptr;
  std::string buf(256 * 1024, '\0');
  while (!c.full()) {
    if (pos >= span.size()) break;
    z.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(span.data() + pos));
    z.zs.avail_in = static_cast<uInt>(std::min<size_t>(span.size() - pos, 1 << 30));
    z.zs.next_out = reinterpret_cast<Bytef*>(buf.data());
    z.zs.avail_out = static_cast<uInt>(buf.size());
    const uInt before = z.zs.avail_in;
    const int rc = inflate(&z.zs, Z_NO_FLUSH);
    pos += before - z.zs.avail_in;
    c.Add(buf.data(), buf.size() - z.zs.avail_out);
    if (rc == Z_STREAM_END) {
      // A member ends; another may follow (concatenated gzip members are one stream). After a
      // raw resume the member's 8-byte trailer comes first.
      if (raw) pos += 8;
      raw = false;
      if (inflateReset2(&z.zs, 15 + 16) != Z_OK) return InternalError("inflateReset2 failed");
      continue;
    }
    if (rc != Z_OK && !(rc == Z_BUF_ERROR && z.zs.avail_in == 0)) {
      return Corrupt(std::string("corrupt gzip data (") + (z.zs.msg ? z.zs.msg : "zlib error") +
                     ")");
    }
  }
  return std::move(c.out);
}

Result<std::string> InflateZstd(std::string_view span, Collector& c) {
  std::unique_ptr<ZSTD_DCtx, ZstdDCtxFree> d(ZSTD_createDCtx());
  if (!d) return InternalError("ZSTD_createDCtx failed");
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{span.data(), span.size(), 0};
  while (!c.full()) {
    ZSTD_outBuffer out{buf.data(), buf.size(), 0};
    const size_t rc = ZSTD_decompressStream(d.get(), &out, &in);
    if (ZSTD_isError(rc)) {
      return Corrupt(std::string("corrupt zstd data (") + ZSTD_getErrorName(rc) + ")");
    }
    c.Add(buf.data(), out.pos);
    if (out.pos == 0 && in.pos == in.size) break;
  }
  return std::move(c.out);
}

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

Result<std::string> InflateSpan(LayerCompression compression, const Checkpoint* cp,
                                std::string_view span, uint64_t skip, uint64_t want) {
  Collector c{skip, want, 0, {}};
  Result<std::string> out = std::string();
  switch (compression) {
    case LayerCompression::kNone:
      if (span.size() < skip) return Corrupt("short span");
      out = std::string(span.substr(skip, want));
      break;
    case LayerCompression::kGzip: out = InflateGzip(cp, span, c); break;
    case LayerCompression::kZstd: out = InflateZstd(span, c); break;
  }
  if (out.ok() && out->size() < want) {
    return Corrupt("ends " + std::to_string(want - out->size()) + " bytes early");
  }
  return out;
}

}  // namespace lazyfs::index
