// The kernel's mount table, as /proc/self/mountinfo shows it: enough to tell whether a path is a
// mountpoint and of what filesystem type, so `lazyfs umount` refuses to unmount anything that is
// not a lazyfs mount. Private to fs/ (and its tests).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace lazyfs::fs {

// The fstype a lazyfs mount has in the mount table ("fuse." + the subtype option).
inline constexpr std::string_view kMountType = "fuse.lazyfs";

struct MountInfo {
  std::string mountpoint;  // absolute, unescaped
  std::string fstype;      // "fuse.lazyfs", "ext4", ...
  std::string source;      // the fsname for FUSE mounts
  std::string device;      // "major:minor" of the mount's device (st_dev)
};

// The last (topmost) mount at `path` in `mountinfo` (the text of a mountinfo file), or nullopt.
// `path` must be absolute and normalised; the table's octal escapes (\040 for a space) are
// decoded before comparing.
std::optional<MountInfo> FindMountIn(std::string_view mountinfo, std::string_view path);

// The same against /proc/self/mountinfo. `path` is made absolute and resolved (realpath) when it
// can be, and only normalised lexically when it cannot (a dead FUSE mount fails stat with
// ENOTCONN). Fails only when the table cannot be read.
Result<std::optional<MountInfo>> FindMount(const std::string& path);

// `path` made absolute against the current directory, with "." and ".." and repeated slashes
// folded away, without touching the filesystem.
std::string NormalizePath(const std::string& path);

}  // namespace lazyfs::fs
