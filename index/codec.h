// A small binary record codec for the index's RocksDB values.
//
// Hand-written because the records are tiny, fixed in shape and read on every FUSE lookup:
// varints and length-prefixed byte strings, decoded with bounds checks so a damaged value is an
// error, never an overread. Every record starts with its own version byte (see schema.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/status.h"

namespace lazyfs::index {

class Encoder {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void Signed(int64_t v) {  // zigzag
    Varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
  }
  void Bytes(std::string_view s) {
    Varint(s.size());
    out_.append(s);
  }
  void Raw(std::string_view s) { out_.append(s); }
  void DigestBytes(const Digest& d) {
    out_.append(reinterpret_cast<const char*>(d.bytes().data()), d.bytes().size());
  }
  const std::string& data() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}

  bool U8(uint8_t* v) {
    if (in_.empty()) return false;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
      if (in_.empty()) return false;
      const uint8_t b = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      result |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  template <typename T>
  bool VarintAs(T* v) {
    uint64_t x;
    if (!Varint(&x) || x > static_cast<uint64_t>(static_cast<T>(~T{0}))) return false;
    *v = static_cast<T>(x);
    return true;
  }
  bool Signed(int64_t* v) {
    uint64_t x;
    if (!Varint(&x)) return false;
    *v = static_cast<int64_t>((x >> 1) ^ (~(x & 1) + 1));
    return true;
  }
  bool Bytes(std::string* s) {
    uint64_t n;
    if (!Varint(&n) || n > in_.size()) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool DigestBytes(Digest* d) {
    std::array<uint8_t, 32> b;
    if (in_.size() < b.size()) return false;
    std::memcpy(b.data(), in_.data(), b.size());
    in_.remove_prefix(b.size());
    *d = Digest::FromBytes(b);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace lazyfs::index
