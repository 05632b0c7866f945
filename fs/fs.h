// fs: the FUSE daemon that serves an index::Tree read-only.
//
// The filesystem logic (FileSystem, fs/filesystem.h) has no FUSE in it and is tested without a
// mount; only fs/fuse_adapter.cc includes <fuse_lowlevel.h>, translating each callback into one
// FileSystem call and one reply. Status becomes errno in exactly one function.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::fs {

struct MountOptions {
  std::string mountpoint;
  // Let other users see the mount; implies default_permissions so the kernel enforces the modes
  // the image records.
  bool allow_other = false;
  // Extra "-o" options passed to FUSE as given (e.g. "debug"). "allow_other" among them has the
  // effect of `allow_other` above, default_permissions included.
  std::vector<std::string> fuse_options;
  // Let the image's setuid/setgid bits and device nodes take effect (suid,dev). Off: the mount
  // is nosuid,nodev whatever the extra options say, and "suid" or "dev" there is an error.
  bool allow_setuid_and_devices = false;
  // Name shown in /proc/mounts as the source ("lazyfs" if empty).
  std::string fsname;
  // Worker threads for the session loop.
  unsigned max_threads = 8;
  // Give each worker thread its own /dev/fuse descriptor (less contention between workers).
  bool clone_fd = true;
  // Metadata answers (attributes, lookups, listings, symlinks, xattrs) kept in memory in front of
  // the tree, per kind (a listing counts its entries); 0 disables. ~200 bytes each, so at most
  // ~25 MiB per kind, reached only by images of over 100,000 inodes.
  size_t metadata_cache_entries = 1 << 17;
  // Readahead window of the mount in KiB, at most 1024, so sequential reads arrive as requests
  // of up to this size (1 MiB is also the largest request the kernel sends). Needs root
  // (sysfs); otherwise the kernel's 128 KiB. 0 keeps the kernel's default.
  unsigned readahead_kib = 1024;
};

// Names fs/ counts under (base/stats.h), besides kStatBytesServed, kStatReads and kStatEio*:
// the requests that reached the daemon, per operation (what the kernel's caches did not absorb).
inline constexpr std::string_view kStatFuseLookups = "fuse.lookup";
inline constexpr std::string_view kStatFuseGetattrs = "fuse.getattr";
inline constexpr std::string_view kStatFuseReadlinks = "fuse.readlink";
inline constexpr std::string_view kStatFuseOpendirs = "fuse.opendir";
inline constexpr std::string_view kStatFuseReaddirs = "fuse.readdir";
inline constexpr std::string_view kStatFuseReaddirplus = "fuse.readdirplus";
// Read requests of at least kLargeReadBytes.
inline constexpr std::string_view kStatFuseLargeReads = "fuse.read_requests_1mib";
inline constexpr size_t kLargeReadBytes = size_t{1} << 20;

// A mounted filesystem. Created mounted; Run() serves until the mount is unmounted or Exit()
// is called, then unmounts; destruction unmounts too. Not thread-safe except Exit(), which any
// thread but a FUSE worker may call at any time (before, during or after Run()).
//
// Exit() wakes the loop with a thread-directed signal, SIGRTMIN + 2, for which Mount() installs
// an empty handler: lazyfs reserves that signal. Errors name the mountpoint.
class Session {
 public:
  static Result<std::unique_ptr<Session>> Mount(const index::Tree& tree,
                                                const MountOptions& options);
  virtual ~Session() = default;
  // Serves requests with up to max_threads workers until unmounted or Exit(); then unmounts.
  // Call once.
  virtual Status Run() = 0;
  // Makes Run() return promptly (it waits up to a few seconds for the loop to stop).
  virtual void Exit() = 0;
};

// The counters of the daemon serving a lazyfs mount, as JSON ({"counters": {NAME: N, ...},
// "latencies": {NAME: {"count", "p50_us", "p90_us", "p99_us", "max_us"}}}; names in
// base/stats.h and above). Asks the daemon through an ioctl on the mount's root, which any user
// who can open that directory may do. Fails naming the mountpoint when it is not a lazyfs mount
// or the daemon does not answer.
Result<std::string> ReadMountStats(const std::string& mountpoint);

// Unmounts a lazyfs mount (umount2, falling back to fusermount3 -u). Errors name the mountpoint.
Status Unmount(const std::string& mountpoint, bool lazy = false);

}  // namespace lazyfs::fs
