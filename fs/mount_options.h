// What the FUSE session is mounted with, apart from libfuse itself: the -o option string and
// the mount's readahead window. Kept out of fuse_adapter.cc (the only file that includes
// <fuse_lowlevel.h>) so it is tested without a mount.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "fs/fs.h"

namespace lazyfs::fs {

// The readahead the daemon asks for at INIT, and the most it sets through sysfs: the kernel's
// request size limit (max_pages).
inline constexpr unsigned kReadaheadCeiling = 1u << 20;

// A value inside one -o option: the option parser splits on ',' and unescapes '\'.
std::string EscapeOptionValue(std::string_view v);

// The -o string for libfuse: the user's extra options first, so ours win (the mount is
// read-only and nosuid,nodev whatever they say). The safety rules hold however an option is
// spelled: allow_other (or allow_root) among the extra options turns on default_permissions as
// MountOptions::allow_other does, and "suid" or "dev" there is refused (InvalidArgument) unless
// MountOptions::allow_setuid_and_devices.
Result<std::string> MountOptionString(const MountOptions& options);

// Widens the readahead window of the lazyfs mount at `real_mountpoint` (resolved before
// mounting) to `kib` through its backing device in sysfs; best effort.
void RaiseReadahead(const std::string& real_mountpoint, unsigned kib);

}  // namespace lazyfs::fs
