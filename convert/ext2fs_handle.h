// Private to convert/: libext2fs included once with its warnings silenced, RAII wrappers for its
// handles, and the errcode -> Status mapping.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "base/status.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
// com_err.h has no extern "C" of its own.
extern "C" {
#include <et/com_err.h>
}
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#pragma GCC diagnostic pop

namespace lazyfs::convert {

// "what: <libext2fs message>"; block allocation failures (the image is full) become
// ResourceExhausted, everything else Internal.
inline Status Ext2Error(errcode_t err, std::string_view what) {
  std::string msg = std::string(what) + ": " + error_message(err);
  if (err == EXT2_ET_BLOCK_ALLOC_FAIL || err == EXT2_ET_INODE_ALLOC_FAIL || err == ENOSPC) {
    return Status(StatusCode::kResourceExhausted, std::move(msg));
  }
  return Status(StatusCode::kInternal, std::move(msg));
}

// Returns from the enclosing function with Ext2Error(err, what) when the call failed.
#define LAZYFS_EXT2_CHECK(call, what)                                           \
  do {                                                                          \
    errcode_t lazyfs_ext2_err_ = (call);                                        \
    if (lazyfs_ext2_err_ != 0) return ::lazyfs::convert::Ext2Error(lazyfs_ext2_err_, (what)); \
  } while (0)

// Owns an open ext2_filsys. Destruction without Close() discards unflushed changes
// (ext2fs_free), which is what an aborted write wants. Move-only, not thread-safe.
class Ext2Fs {
 public:
  Ext2Fs() = default;
  explicit Ext2Fs(ext2_filsys fs) : fs_(fs) {}
  ~Ext2Fs() {
    if (fs_ != nullptr) ext2fs_free(fs_);
  }
  Ext2Fs(Ext2Fs&& o) noexcept : fs_(std::exchange(o.fs_, nullptr)) {}
  Ext2Fs& operator=(Ext2Fs&& o) noexcept {
    if (this != &o) {
      if (fs_ != nullptr) ext2fs_free(fs_);
      fs_ = std::exchange(o.fs_, nullptr);
    }
    return *this;
  }
  Ext2Fs(const Ext2Fs&) = delete;
  Ext2Fs& operator=(const Ext2Fs&) = delete;

  ext2_filsys get() const { return fs_; }
  ext2_filsys operator->() const { return fs_; }
  // Flushes superblock, descriptors and bitmaps and releases the handle (even on failure).
  Status Close() {
    ext2_filsys fs = std::exchange(fs_, nullptr);
    if (fs == nullptr) return Status::Ok();
    errcode_t err = ext2fs_close2(fs, 0);
    if (err != 0) {
      ext2fs_free(fs);
      return Ext2Error(err, "while closing the filesystem");
    }
    return Status::Ok();
  }

 private:
  ext2_filsys fs_ = nullptr;
};

// Owns an extent handle (ext2fs_extent_free). Not thread-safe.
class ExtentHandle {
 public:
  ExtentHandle() = default;
  ~ExtentHandle() {
    if (h_ != nullptr) ext2fs_extent_free(h_);
  }
  ExtentHandle(const ExtentHandle&) = delete;
  ExtentHandle& operator=(const ExtentHandle&) = delete;
  ext2_extent_handle_t* out() { return &h_; }
  ext2_extent_handle_t get() const { return h_; }

 private:
  ext2_extent_handle_t h_ = nullptr;
};

// Owns an xattr handle (ext2fs_xattrs_close). Not thread-safe.
class XattrHandle {
 public:
  XattrHandle() = default;
  ~XattrHandle() {
    if (h_ != nullptr) ext2fs_xattrs_close(&h_);
  }
  XattrHandle(const XattrHandle&) = delete;
  XattrHandle& operator=(const XattrHandle&) = delete;
  ext2_xattr_handle** out() { return &h_; }
  ext2_xattr_handle* get() const { return h_; }
  Status Close() {
    if (h_ == nullptr) return Status::Ok();
    errcode_t err = ext2fs_xattrs_close(&h_);
    h_ = nullptr;
    if (err != 0) return Ext2Error(err, "while closing xattrs");
    return Status::Ok();
  }

 private:
  ext2_xattr_handle* h_ = nullptr;
};

}  // namespace lazyfs::convert
