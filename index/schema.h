// The RocksDB schema of STORE/index. One key space, a one-byte tag per record type:
//
//   "\0format"                     FormatRecord: version and feature flags (checked at open)
//   'R' ref                        manifest digest (32 bytes) a reference last resolved to
//   'I' manifest(32)               ImageRecord: the descriptor and tree stats; written last, so
//                                  its presence means the image's tree is complete
//   'L' layer(32)                  LayerRecord: diff_id, entry and chunk counts; written after
//                                  its chunks, so its presence means the layer is indexed
//   'E' layer(32) chunk(be32)      up to kEntriesPerChunk encoded LayerEntry values
//   'M' layer(32)                  LazyLayerRecord: the layer has file locations and checkpoints
//                                  (compat feature kCompatLazyContent); written with its chunks
//   'O' layer(32) content(32)      FileLocation of a regular file with this sha256 in the layer:
//                                  its data offset in the uncompressed tar, size, chunk digests
//   'K' layer(32) uncompressed(be64)  a decompression checkpoint (layer_seek.h)
//   'Q' layer(32) offset(be64)     content sha256 (32) of the regular file whose data starts at
//                                  this tar offset: which files a fetched span holds
//   'S' layer(32)                  TocLayerRecord (toc_index.h): the layer was indexed from its
//                                  eStargz or zstd:chunked TOC; written with its chunks
//   'T' layer(32) content(32)      the TOC chunks of a regular file with this sha256 in the layer
//   'A' manifest(32) ino(be64)     inode record of the merged tree
//   'D' manifest(32) parent(be64) name   child ino (be64) and st_mode (varint)
//
// Integers inside values are varints (codec.h). Big-endian inode numbers in keys keep a
// directory's entries, and an image's inodes, contiguous and sorted.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/digest.h"

namespace lazyfs::index::schema {

inline constexpr std::string_view kFormatKey{"\0format", 7};
inline constexpr uint32_t kFormatVersion = 1;
// Feature flags, as ext4's superblock has them: an unknown compat feature is ignored, an unknown
// ro_compat feature allows reading but not writing, an unknown incompat feature refuses the store.
//
// kCompatLazyContent: layers may carry 'M', 'O', 'Q' and 'K' records, so file contents are read with
// range requests and verified per chunk. An older lazyfs ignores them (and extracts whole
// layers); this lazyfs reads layers indexed without them the same old way.
inline constexpr uint64_t kCompatLazyContent = 1;
inline constexpr uint64_t kCompatKnown = kCompatLazyContent;
inline constexpr uint64_t kRoCompatKnown = 0;
inline constexpr uint64_t kIncompatKnown = 0;
inline constexpr size_t kEntriesPerChunk = 4096;

// The value stored under kFormatKey.
std::string EncodeFormatRecord(uint64_t version, uint64_t compat, uint64_t ro_compat,
                               uint64_t incompat);

inline void AppendBe(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline std::string DigestKey(char tag, const Digest& d) {
  std::string k(1, tag);
  k.append(reinterpret_cast<const char*>(d.bytes().data()), d.bytes().size());
  return k;
}
inline std::string RefKey(std::string_view ref) { return "R" + std::string(ref); }
inline std::string ImageKey(const Digest& m) { return DigestKey('I', m); }
inline std::string LayerKey(const Digest& l) { return DigestKey('L', l); }
inline std::string ChunkKey(const Digest& l, uint32_t chunk) {
  std::string k = DigestKey('E', l);
  AppendBe(k, chunk, 4);
  return k;
}
inline std::string LazyLayerKey(const Digest& l) { return DigestKey('M', l); }
inline std::string LocationKey(const Digest& l, const Digest& content) {
  std::string k = DigestKey('O', l);
  k.append(reinterpret_cast<const char*>(content.bytes().data()), content.bytes().size());
  return k;
}
inline std::string FileAtKey(const Digest& l, uint64_t offset) {
  std::string k = DigestKey('Q', l);
  AppendBe(k, offset, 8);
  return k;
}
inline std::string TocLayerKey(const Digest& l) { return DigestKey('S', l); }
inline std::string TocFileKey(const Digest& l, const Digest& content) {
  std::string k = DigestKey('T', l);
  k.append(reinterpret_cast<const char*>(content.bytes().data()), content.bytes().size());
  return k;
}
inline std::string CheckpointPrefix(const Digest& l) { return DigestKey('K', l); }
inline std::string CheckpointKey(const Digest& l, uint64_t uncompressed) {
  std::string k = CheckpointPrefix(l);
  AppendBe(k, uncompressed, 8);
  return k;
}
inline std::string InodeKey(const Digest& m, uint64_t ino) {
  std::string k = DigestKey('A', m);
  AppendBe(k, ino, 8);
  return k;
}
inline std::string DirPrefix(const Digest& m, uint64_t parent) {
  std::string k = DigestKey('D', m);
  AppendBe(k, parent, 8);
  return k;
}
inline uint64_t ReadBe64(std::string_view s) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

}  // namespace lazyfs::index::schema
