#include "index/layer_entry.h"

#include <sys/stat.h>

namespace lazyfs::index {

uint32_t TypeBits(EntryKind kind) {
  switch (kind) {
    case EntryKind::kFile:
    case EntryKind::kHardlink: return S_IFREG;
    case EntryKind::kDir: return S_IFDIR;
    case EntryKind::kSymlink: return S_IFLNK;
    case EntryKind::kCharDev: return S_IFCHR;
    case EntryKind::kBlockDev: return S_IFBLK;
    case EntryKind::kFifo: return S_IFIFO;
    case EntryKind::kWhiteout:
    case EntryKind::kOpaque: return 0;
  }
  return 0;
}

void EncodeLayerEntry(const LayerEntry& e, Encoder& enc) {
  enc.U8(static_cast<uint8_t>(e.kind));
  enc.Bytes(e.path);
  enc.Bytes(e.link);
  enc.Varint(e.mode);
  enc.Varint(e.uid);
  enc.Varint(e.gid);
  enc.Signed(e.mtime_sec);
  enc.Varint(e.mtime_nsec);
  enc.Varint(e.size);
  enc.Varint(e.rdev_major);
  enc.Varint(e.rdev_minor);
  if (e.kind == EntryKind::kFile) enc.DigestBytes(e.digest);
  enc.Varint(e.xattrs.size());
  for (const Xattr& x : e.xattrs) {
    enc.Bytes(x.name);
    enc.Bytes(x.value);
  }
}

bool DecodeLayerEntry(Decoder& dec, LayerEntry* e) {
  uint8_t kind;
  if (!dec.U8(&kind) || kind < 1 || kind > 9) return false;
  e->kind = static_cast<EntryKind>(kind);
  uint64_t nx;
  if (!dec.Bytes(&e->path) || !dec.Bytes(&e->link) || !dec.VarintAs(&e->mode) ||
      !dec.VarintAs(&e->uid) || !dec.VarintAs(&e->gid) || !dec.Signed(&e->mtime_sec) ||
      !dec.VarintAs(&e->mtime_nsec) || !dec.Varint(&e->size) || !dec.VarintAs(&e->rdev_major) ||
      !dec.VarintAs(&e->rdev_minor)) {
    return false;
  }
  if (e->kind == EntryKind::kFile && !dec.DigestBytes(&e->digest)) return false;
  if (!dec.Varint(&nx) || nx > (1u << 20)) return false;
  e->xattrs.resize(nx);
  for (Xattr& x : e->xattrs) {
    if (!dec.Bytes(&x.name) || !dec.Bytes(&x.value)) return false;
  }
  return true;
}

Status CheckDeviceNumbers(uint64_t major, uint64_t minor) {
  if (major <= kMaxDeviceMajor && minor <= kMaxDeviceMinor) return Status::Ok();
  return InvalidArgumentError("device number " + std::to_string(major) + ":" +
                              std::to_string(minor) +
                              " cannot be represented on Linux (major at most 4095, minor at "
                              "most 1048575)");
}

}  // namespace lazyfs::index
