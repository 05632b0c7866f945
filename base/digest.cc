#include "base/digest.h"

#include <openssl/evp.h>

#include "base/fd.h"
#include "base/text.h"

namespace lazyfs {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is not canonical in OCI digests
}

}  // namespace

Result<Digest> Digest::Parse(std::string_view text) {
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return InvalidArgumentError("malformed digest \"" + std::string(text) +
                                "\": expected ALGORITHM:HEX");
  }
  std::string_view algo = text.substr(0, colon);
  std::string_view hex = text.substr(colon + 1);
  if (algo != "sha256") {
    return Status(StatusCode::kUnimplemented,
                  "unsupported digest algorithm \"" + std::string(algo) + "\" in \"" +
                      std::string(text) + "\" (lazyfs supports sha256)");
  }
  if (hex.size() != 64) {
    return InvalidArgumentError("malformed digest \"" + std::string(text) +
                                "\": sha256 needs 64 hex digits");
  }
  Digest d;
  for (size_t i = 0; i < 32; ++i) {
    int hi = HexValue(hex[2 * i]), lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return InvalidArgumentError("malformed digest \"" + std::string(text) +
                                  "\": not lowercase hex");
    }
    d.bytes_[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  d.valid_ = true;
  return d;
}

Digest Digest::FromBytes(const std::array<uint8_t, 32>& bytes) {
  Digest d;
  d.bytes_ = bytes;
  d.valid_ = true;
  return d;
}

std::string Digest::Hex() const {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(bytes_.data()), bytes_.size()));
}

std::string Digest::ToString() const { return "sha256:" + Hex(); }
std::string Digest::Short() const { return "sha256:" + Hex().substr(0, 12); }

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
}

Sha256::~Sha256() = default;

void Sha256::Update(const void* data, size_t len) { EVP_DigestUpdate(ctx_->md, data, len); }

Digest Sha256::Finish() {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, out.data(), &len);
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
  return Digest::FromBytes(out);
}

Digest Sha256Of(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

Result<Digest> Sha256OfFd(int fd) {
  Sha256 h;
  constexpr size_t kBuf = 1 << 20;
  std::unique_ptr<char[]> buf(new char[kBuf]);
  uint64_t off = 0;
  for (;;) {
    LAZYFS_ASSIGN_OR_RETURN(size_t n, PreadFull(fd, buf.get(), kBuf, off));
    if (n == 0) break;
    h.Update(buf.get(), n);
    off += n;
  }
  return h.Finish();
}

}  // namespace lazyfs
