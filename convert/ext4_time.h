// Times as ext4 stores them, private to convert/. The one idea: every time the writer stores
// goes through ClampTime first, so an image's INT64_MAX or INT64_MIN mtime becomes ext4's last
// or first second (2446-05-10, 1901-12-13) instead of overflowing the encoding.
#pragma once

#include <cstdint>

#include "index/tree.h"

namespace lazyfs::convert {

// An inode time: the low 32 bits of the seconds, read as signed, and `extra` holding two epoch
// bits that extend them (ext4's i_*time_extra) and the nanoseconds above them.
struct Ext4InodeTime {
  uint32_t lo = 0;
  uint32_t extra = 0;
};

// `sec` and `nsec` clamped (index::ClampTime) and encoded as the kernel does.
Ext4InodeTime EncodeInodeTime(int64_t sec, uint32_t nsec);

// The time an inode's fields hold, read as the kernel reads them: EncodeInodeTime's inverse.
index::Timestamp DecodeInodeTime(uint32_t lo, uint32_t extra);

// A superblock time: 32 bits and an 8-bit high byte, unsigned. Clamped to 0 .. kMaxTimeSec.
struct Ext4SuperTime {
  uint32_t lo = 0;
  uint8_t hi = 0;
};
Ext4SuperTime EncodeSuperTime(int64_t sec);

}  // namespace lazyfs::convert
