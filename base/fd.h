// File descriptors and the few file operations every module needs, with Status errors.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "base/status.h"

namespace lazyfs {

// Owns one file descriptor; closes it on destruction. Move-only.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1);
  // Closes now and reports the close error (which counts when nothing failed before).
  Status Close();

 private:
  int fd_ = -1;
};

// open(2) with O_CLOEXEC added. Errors name the path.
Result<Fd> OpenFile(const std::string& path, int flags, mode_t mode = 0644);
// Writes all of [data, data+len) (retrying short writes and EINTR).
Status WriteAll(int fd, const void* data, size_t len);
// Reads up to len bytes at offset, retrying short reads; returns fewer only at end of file.
Result<size_t> PreadFull(int fd, void* data, size_t len, uint64_t offset);
// Reads a whole (small) file into a string; fails with ResourceExhausted past max_bytes.
Result<std::string> ReadFileToString(const std::string& path, size_t max_bytes = 64 << 20);
// Writes a file atomically: a temporary sibling, fsync, rename over path.
Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0644);
// mkdir -p with the given mode for directories it creates.
Status MakeDirs(const std::string& path, mode_t mode = 0755);
// rm -rf; a missing path is fine.
Status RemoveTree(const std::string& path);

}  // namespace lazyfs
