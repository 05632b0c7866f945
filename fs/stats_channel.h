// How `lazyfs stats` reads a running daemon's counters: an ioctl on the mount's root directory.
//
// An ioctl was chosen over the alternatives because it cannot collide with anything in an image
// (a reserved xattr name or a hidden file could: image xattr names are arbitrary), it needs no
// socket path or stats file that another user could not reach or that could go stale, and it
// works for every user who can open the mount's root, exactly those who can see the mount. The
// kernel passes unknown ioctls of a FUSE mount to the daemon with the size the command number
// encodes (at most 16 KiB), which bounds the reply. Private to fs/.
#pragma once

#include <sys/ioctl.h>

#include <cstdint>
#include <string>

namespace lazyfs::fs {

// The reply: magic, then `length` bytes of JSON (see StatsJson).
struct StatsIoctlReply {
  uint32_t magic;
  uint32_t length;
  char json[16372];
};
static_assert(sizeof(StatsIoctlReply) < (1u << _IOC_SIZEBITS), "an ioctl carries < 16 KiB");

inline constexpr uint32_t kStatsMagic = 0x4c5a5331;  // "LZS1"
inline constexpr unsigned kStatsIoctl = _IOR('L', 0x5a, StatsIoctlReply);

// This process's stats (base/stats.h) as JSON: {"counters": {NAME: N, ...}, "latencies":
// {NAME: {"count": N, "p50_us": N, "p90_us": N, "p99_us": N, "max_us": N}, ...}}.
std::string StatsJson();

}  // namespace lazyfs::fs
