// libFuzzer target: any seconds and nanoseconds through ext4's inode and superblock time
// encodings (convert/ext4_time.h). Encoding never overflows (UBSan watches) and decodes back
// to the clamped time.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "convert/ext4_time.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 12) return 0;
  int64_t sec;
  uint32_t nsec;
  std::memcpy(&sec, data, 8);
  std::memcpy(&nsec, data + 8, 4);
  const lazyfs::convert::Ext4InodeTime t = lazyfs::convert::EncodeInodeTime(sec, nsec);
  if (!(lazyfs::convert::DecodeInodeTime(t.lo, t.extra) == lazyfs::index::ClampTime(sec, nsec))) {
    __builtin_trap();
  }
  const lazyfs::convert::Ext4SuperTime s = lazyfs::convert::EncodeSuperTime(sec);
  const int64_t stored = static_cast<int64_t>((uint64_t{s.hi} << 32) | s.lo);
  if (stored < 0 || stored > lazyfs::index::kMaxTimeSec) __builtin_trap();
  if (sec >= 0 && sec <= lazyfs::index::kMaxTimeSec && stored != sec) __builtin_trap();
  return 0;
}
