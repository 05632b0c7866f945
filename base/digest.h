// Content digests ("sha256:<64 hex>") and a streaming SHA-256 (OpenSSL EVP).
//
// Every byte lazyfs serves or writes is checked against a Digest that chains up to the manifest
// digest, so this is the one type all modules agree on.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace lazyfs {

// A sha256 content digest. Value type; thread-compatible.
class Digest {
 public:
  Digest() = default;  // all-zero; check valid() before use
  // Parses "sha256:<64 lowercase hex>". Fails with InvalidArgument naming what is wrong; other
  // algorithms (sha512) fail with Unimplemented.
  static Result<Digest> Parse(std::string_view text);
  static Digest FromBytes(const std::array<uint8_t, 32>& bytes);

  bool valid() const { return valid_; }
  std::string_view algorithm() const { return "sha256"; }
  const std::array<uint8_t, 32>& bytes() const { return bytes_; }
  std::string Hex() const;
  // "sha256:<hex>"
  std::string ToString() const;
  // "sha256:<first 12 hex>", for messages.
  std::string Short() const;

  friend bool operator==(const Digest& a, const Digest& b) = default;
  friend auto operator<=>(const Digest& a, const Digest& b) = default;

 private:
  std::array<uint8_t, 32> bytes_{};
  bool valid_ = false;
};

// Incremental SHA-256. Not thread-safe; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t len);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // Returns the digest of everything given so far; the hasher is then reset.
  Digest Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

Digest Sha256Of(std::string_view data);
// sha256 of everything readable from `fd` (pread from offset 0, so the file position is untouched).
Result<Digest> Sha256OfFd(int fd);

}  // namespace lazyfs

template <>
struct std::hash<lazyfs::Digest> {
  size_t operator()(const lazyfs::Digest& d) const noexcept {
    size_t h;
    static_assert(sizeof(h) <= 32);
    __builtin_memcpy(&h, d.bytes().data(), sizeof(h));
    return h;
  }
};
