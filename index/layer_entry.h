// One tar entry of one layer, as the index records it: the tar header's facts, normalised.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "index/codec.h"
#include "index/sparse.h"
#include "index/tree.h"

namespace lazyfs::index {


enum class EntryKind : uint8_t {
  kFile = 1,
  kDir = 2,
  kSymlink = 3,
  kHardlink = 4,
  kCharDev = 5,
  kBlockDev = 6,
  kFifo = 7,
  kWhiteout = 8,  // ".wh.NAME": `path` is the whited-out path
  kOpaque = 9,    // ".wh..wh..opq": `path` is the opaque directory
};

struct LayerEntry {
  EntryKind kind = EntryKind::kFile;
  // Normalised relative path: no leading "/", no "." or ".." components, "" for the root.
  std::string path;
  // Symlink target (verbatim) or hardlink target (a normalised path).
  std::string link;
  uint32_t mode = 0;  // permission bits including setuid/setgid/sticky (no type bits)
  uint32_t uid = 0, gid = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;  // regular files: content size
  uint32_t rdev_major = 0, rdev_minor = 0;
  Digest digest;      // regular files: sha256 of the content
  std::vector<Xattr> xattrs;  // sorted by name
};

void EncodeLayerEntry(const LayerEntry& e, Encoder& enc);
bool DecodeLayerEntry(Decoder& dec, LayerEntry* e);

// Linux's device numbers: a 12-bit major and a 20-bit minor. A device entry with more is refused
// (InvalidArgument naming both numbers) rather than truncated into another device.
inline constexpr uint64_t kMaxDeviceMajor = 4095;
inline constexpr uint64_t kMaxDeviceMinor = (uint64_t{1} << 20) - 1;
Status CheckDeviceNumbers(uint64_t major, uint64_t minor);

// st_mode type bits for an entry kind (0 for whiteouts and opaque markers).
uint32_t TypeBits(EntryKind kind);

}  // namespace lazyfs::index
