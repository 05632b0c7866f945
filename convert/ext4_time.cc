#include "convert/ext4_time.h"

#include <algorithm>

namespace lazyfs::convert {

Ext4InodeTime EncodeInodeTime(int64_t sec, uint32_t nsec) {
  const index::Timestamp t = index::ClampTime(sec, nsec);
  static_assert(index::kMinTimeSec == INT32_MIN, "ext4's first second is -2^31");
  static_assert(index::kMaxTimeSec - INT32_MIN < (int64_t{1} << 34), "two epoch bits reach it");
  // The epoch counts the 2^32-second spans above the signed low word: t.sec - (int32_t)lo is a
  // multiple of 2^32 in 0 .. 3 * 2^32, and it cannot overflow once clamped.
  Ext4InodeTime out;
  out.lo = static_cast<uint32_t>(t.sec);
  const int64_t base = static_cast<int32_t>(out.lo);
  const uint32_t epoch = static_cast<uint32_t>((t.sec - base) >> 32) & 3;
  out.extra = epoch | (t.nsec << 2);
  return out;
}

index::Timestamp DecodeInodeTime(uint32_t lo, uint32_t extra) {
  return {static_cast<int32_t>(lo) + (static_cast<int64_t>(extra & 3) << 32), extra >> 2};
}

Ext4SuperTime EncodeSuperTime(int64_t sec) {
  const int64_t t = std::clamp<int64_t>(sec, 0, index::kMaxTimeSec);
  return {static_cast<uint32_t>(t), static_cast<uint8_t>(t >> 32)};
}

}  // namespace lazyfs::convert
