// fs: the FUSE daemon that serves an index::Tree read-only.
//
// The filesystem logic (FileSystem, fs/filesystem.h) has no FUSE in it and is tested without a
// mount; only fs/fuse_adapter.cc includes <fuse_lowlevel.h>, translating each callback into one
// FileSystem call and one reply. Status becomes errno in exactly one function.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::fs {

struct MountOptions {
  std::string mountpoint;
  // Let other users see the mount; implies default_permissions so the kernel enforces the modes
  // the image records.
  bool allow_other = false;
  // Extra "-o" options passed to FUSE as given (e.g. "debug").
  std::vector<std::string> fuse_options;
  // Name shown in /proc/mounts as the source ("lazyfs" if empty).
  std::string fsname;
  // Worker threads for the session loop.
  unsigned max_threads = 8;
  // Give each worker thread its own /dev/fuse descriptor (less contention between workers).
  bool clone_fd = true;
};

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

// Unmounts a lazyfs mount (umount2, falling back to fusermount3 -u). Errors name the mountpoint.
Status Unmount(const std::string& mountpoint, bool lazy = false);

}  // namespace lazyfs::fs
