// A content-addressed directory: objects named by their sha256, written atomically, never trusted
// unverified.
//
// The one idea: an object becomes visible under its final name only after its bytes hashed to
// that name (temporary file, fsync, rename), so a process killed at any moment leaves either no
// object or a whole one. Reads still verify (once per object per process) because the disk, or
// another program, may have changed a file since; a mismatching object is deleted and reported as
// NotFound so the caller fetches it again. Used by the blob store (fetch/) and the content cache
// (index/). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <sys/stat.h>

#include <unordered_map>
#include <vector>

#include "base/digest.h"
#include "base/fd.h"
#include "base/status.h"

namespace lazyfs {

class CasDir;

// Receives one object's bytes. Commit() checks the digest and renames it into place; destroying
// an uncommitted writer removes the temporary file. Not thread-safe.
class CasWriter {
 public:
  ~CasWriter();
  CasWriter(const CasWriter&) = delete;
  CasWriter& operator=(const CasWriter&) = delete;

  Status Write(const void* data, size_t len);
  uint64_t bytes_written() const { return written_; }
  // Fails with DataLoss (and removes the temporary) if the bytes do not hash to the expected
  // digest, or if expected_size was given and differs.
  Status Commit();
  // For a writer begun with caller_hashes: the caller hashed exactly the bytes it wrote, to
  // `computed`; fails as Commit if that is not the expected digest.
  Status CommitHashed(const Digest& computed);

 private:
  friend class CasDir;
  CasWriter(CasDir* dir, Digest expected, int64_t expected_size, std::string tmp, Fd fd,
            bool caller_hashes)
      : dir_(dir), expected_(expected), expected_size_(expected_size), tmp_(std::move(tmp)),
        fd_(std::move(fd)), caller_hashes_(caller_hashes) {}
  Status Finish(const Digest& got);
  CasDir* dir_;
  Digest expected_;
  int64_t expected_size_;
  std::string tmp_;
  Fd fd_;
  Sha256 hash_;
  uint64_t written_ = 0;
  bool caller_hashes_ = false;
  bool committed_ = false;
};

class CasDir {
 public:
  // Creates root (and root/sha256, root/tmp) with mode 0700 if missing.
  static Result<std::unique_ptr<CasDir>> Open(const std::string& root);

  const std::string& root() const { return root_; }
  // Where the object lives (whether or not it exists): root/sha256/<hex>.
  std::string PathFor(const Digest& d) const;
  bool Contains(const Digest& d) const;

  // Opens an object for reading. The first open of an object in this process hashes it, and so
  // does any open after the file changed (its size, change time or inode differ from when it
  // was verified: truncated, rewritten or replaced behind the process's back); on a mismatch
  // the file is removed and NotFound is returned ("... was corrupt and was removed").
  Result<Fd> OpenVerified(const Digest& d);

  // What identifies a file's state: any write, truncation or replacement changes it.
  struct Stamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    timespec ctime{};
    friend bool operator==(const Stamp& a, const Stamp& b) {
      return a.dev == b.dev && a.ino == b.ino && a.size == b.size &&
             a.ctime.tv_sec == b.ctime.tv_sec && a.ctime.tv_nsec == b.ctime.tv_nsec;
    }
  };
  static Result<Stamp> StampOf(int fd);
  // Marks a use of an open object for least-recently-used eviction (its atime, set explicitly
  // so relatime mounts do not matter). Setting a time changes the ctime: an object verified
  // before keeps counting as verified. Returns the object's new stamp.
  Result<Stamp> MarkUsed(const Digest& d, int fd);
  // Starts writing an object; expected_size < 0 means unknown. With caller_hashes the writer
  // does not hash what it is given (the caller does, and commits with CommitHashed).
  Result<std::unique_ptr<CasWriter>> BeginWrite(const Digest& expected, int64_t expected_size = -1,
                                                bool caller_hashes = false);
  // Convenience: writes a whole object from memory.
  Status Put(const Digest& expected, std::string_view data);
  // Put for bytes the caller has just hashed to `digest` itself (a layer reader computes every
  // file's digest from the bytes it hands out): stored without hashing them a second time.
  Status PutHashed(const Digest& digest, std::string_view data);
  Status Remove(const Digest& d);

  // fsck: hashes every object, and finds temporaries left by processes that no longer exist.
  // With repair, corrupt objects (fetched again when needed) and such temporaries are removed.
  struct CheckReport {
    uint64_t objects = 0;
    uint64_t bytes = 0;
    std::vector<std::string> corrupt;      // paths of objects whose bytes do not match the name
    std::vector<std::string> stray;        // files in sha256/ not named by a digest
    std::vector<std::string> stale_tmp;    // temporaries of dead processes
    bool clean() const { return corrupt.empty() && stray.empty(); }  // stale_tmp is only junk
  };
  Result<CheckReport> Check(bool repair);

 private:
  friend class CasWriter;
  explicit CasDir(std::string root) : root_(std::move(root)) {}
  void MarkVerified(const Digest& d, const Stamp& stamp);

  const std::string root_;
  std::mutex mu_;
  std::unordered_map<Digest, Stamp> verified_;  // GUARDED_BY(mu_): the state that was hashed
};

}  // namespace lazyfs
