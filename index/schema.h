// The RocksDB schema of STORE/index: every key, built here and nowhere else. One key space, a
// one-byte tag per record type (records.h encodes and decodes the values):
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
//   'K' layer(32) uncompressed(be64)  a decompression checkpoint (checkpoint.h)
//   'Q' layer(32) offset(be64)     content sha256 (32) of the regular file whose data starts at
//                                  this tar offset: which files a fetched span holds
//   'S' layer(32)                  TocLayerRecord: the layer was indexed from its eStargz or
//                                  zstd:chunked TOC; written with its chunks
//   'T' layer(32) content(32)      the TOC chunks of a regular file with this sha256 in the layer
//   'P' layer(32)                  ArtifactProvenance: the layer's records were imported from an
//                                  index artifact (layer_artifact.h) with this sha256 and are
//                                  claims until the whole-layer check passes, which deletes it;
//                                  written with the layer's records, before 'L'
//   'A' manifest(32) ino(be64)     inode record of the merged tree
//   'D' manifest(32) parent(be64) name   child ino (be64) and st_mode (varint)
//
// Integers inside values are varints (codec.h). Big-endian inode numbers in keys keep a
// directory's entries, and an image's inodes, contiguous and sorted.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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

// The value stored under kFormatKey (records.cc).
std::string EncodeFormatRecord(uint64_t version, uint64_t compat, uint64_t ro_compat,
                               uint64_t incompat);

inline void AppendBe(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline uint64_t ReadBe64(std::string_view s) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}
inline void AppendDigest(std::string& s, const Digest& d) {
  s.append(reinterpret_cast<const char*>(d.bytes().data()), d.bytes().size());
}
inline std::string DigestKey(char tag, const Digest& d) {
  std::string k(1, tag);
  AppendDigest(k, d);
  return k;
}
// The first key after every key that starts with `prefix` (the end of a DeleteRange).
inline std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<uint8_t>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<uint8_t>(prefix.back()) + 1);
  return prefix;
}

// References.
inline std::string RefPrefix() { return "R"; }
inline std::string RefKey(std::string_view ref) { return RefPrefix() + std::string(ref); }

// Images and their trees.
inline std::string ImagePrefix() { return "I"; }
inline std::string ImageKey(const Digest& m) { return DigestKey('I', m); }
inline std::string InodePrefix(const Digest& m) { return DigestKey('A', m); }
inline std::string InodeKey(const Digest& m, uint64_t ino) {
  std::string k = InodePrefix(m);
  AppendBe(k, ino, 8);
  return k;
}
inline std::string DirEntriesPrefix(const Digest& m) { return DigestKey('D', m); }
inline std::string DirPrefix(const Digest& m, uint64_t parent) {
  std::string k = DirEntriesPrefix(m);
  AppendBe(k, parent, 8);
  return k;
}
inline std::string DirEntryKey(const Digest& m, uint64_t parent, std::string_view name) {
  std::string k = DirPrefix(m, parent);
  k.append(name);
  return k;
}

// Layers.
inline std::string LayerKey(const Digest& l) { return DigestKey('L', l); }
inline std::string ChunkPrefix(const Digest& l) { return DigestKey('E', l); }
inline std::string ChunkKey(const Digest& l, uint32_t chunk) {
  std::string k = ChunkPrefix(l);
  AppendBe(k, chunk, 4);
  return k;
}
inline std::string LazyLayerKey(const Digest& l) { return DigestKey('M', l); }
inline std::string LocationPrefix(const Digest& l) { return DigestKey('O', l); }
inline std::string LocationKey(const Digest& l, const Digest& content) {
  std::string k = LocationPrefix(l);
  AppendDigest(k, content);
  return k;
}
inline std::string FileAtPrefix(const Digest& l) { return DigestKey('Q', l); }
inline std::string FileAtKey(const Digest& l, uint64_t offset) {
  std::string k = FileAtPrefix(l);
  AppendBe(k, offset, 8);
  return k;
}
inline std::string CheckpointPrefix(const Digest& l) { return DigestKey('K', l); }
inline std::string CheckpointKey(const Digest& l, uint64_t uncompressed) {
  std::string k = CheckpointPrefix(l);
  AppendBe(k, uncompressed, 8);
  return k;
}
inline std::string TocLayerKey(const Digest& l) { return DigestKey('S', l); }
inline std::string TocFilePrefix(const Digest& l) { return DigestKey('T', l); }
inline std::string TocFileKey(const Digest& l, const Digest& content) {
  std::string k = TocFilePrefix(l);
  AppendDigest(k, content);
  return k;
}
inline std::string ProvenanceKey(const Digest& l) { return DigestKey('P', l); }

// Every record of a layer: its single keys and the prefixes of its many.
inline std::vector<std::string> LayerKeys(const Digest& l) {
  return {LayerKey(l), LazyLayerKey(l), TocLayerKey(l), ProvenanceKey(l)};
}
inline std::vector<std::string> LayerPrefixes(const Digest& l) {
  return {ChunkPrefix(l), LocationPrefix(l), CheckpointPrefix(l), FileAtPrefix(l),
          TocFilePrefix(l)};
}

}  // namespace lazyfs::index::schema
