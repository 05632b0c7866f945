#include "base/cas_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

namespace lazyfs {

CasWriter::~CasWriter() {
  if (!committed_) ::unlink(tmp_.c_str());
}

Status CasWriter::Write(const void* data, size_t len) {
  if (!caller_hashes_) hash_.Update(data, len);
  written_ += len;
  return WriteAll(fd_.get(), data, len).WithContext("while writing " + tmp_);
}

Status CasWriter::Commit() {
  if (caller_hashes_) return InternalError(tmp_ + ": written unhashed, committed without a digest");
  return Finish(hash_.Finish());
}

Status CasWriter::CommitHashed(const Digest& computed) {
  if (!caller_hashes_) return InternalError(tmp_ + ": hashed here, committed with CommitHashed");
  return Finish(computed);
}

Status CasWriter::Finish(const Digest& got) {
  if (expected_size_ >= 0 && static_cast<uint64_t>(expected_size_) != written_) {
    return DataLossError(expected_.Short() + ": got " + std::to_string(written_) +
                         " bytes, expected " + std::to_string(expected_size_));
  }
  if (got != expected_) {
    return DataLossError("digest mismatch: expected " + expected_.ToString() + ", got " +
                         got.ToString());
  }
  // No fsync: a reader never trusts an object before hashing it (OpenVerified), so an object
  // torn by a crash is found, dropped and fetched again rather than served.
  LAZYFS_RETURN_IF_ERROR(fd_.Close().WithContext("while closing " + tmp_));
  const std::string final_path = dir_->PathFor(expected_);
  if (::rename(tmp_.c_str(), final_path.c_str()) != 0) {
    return ErrnoError(errno, "rename " + tmp_ + " to " + final_path);
  }
  committed_ = true;
  // Stamped after the rename, which changes the file's ctime.
  struct stat st;
  if (::stat(final_path.c_str(), &st) == 0) {
    dir_->MarkVerified(expected_, CasDir::Stamp{st.st_dev, st.st_ino, st.st_size, st.st_ctim});
  }
  return Status::Ok();
}

Result<std::unique_ptr<CasDir>> CasDir::Open(const std::string& root) {
  LAZYFS_RETURN_IF_ERROR(MakeDirs(root + "/sha256", 0700));
  LAZYFS_RETURN_IF_ERROR(MakeDirs(root + "/tmp", 0700));
  return std::unique_ptr<CasDir>(new CasDir(root));
}

std::string CasDir::PathFor(const Digest& d) const { return root_ + "/sha256/" + d.Hex(); }

bool CasDir::Contains(const Digest& d) const {
  return ::access(PathFor(d).c_str(), F_OK) == 0;
}

void CasDir::MarkVerified(const Digest& d, const Stamp& stamp) {
  std::lock_guard lock(mu_);
  verified_[d] = stamp;
}

Result<CasDir::Stamp> CasDir::StampOf(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, "fstat");
  return Stamp{st.st_dev, st.st_ino, st.st_size, st.st_ctim};
}

Result<CasDir::Stamp> CasDir::MarkUsed(const Digest& d, int fd) {
  LAZYFS_ASSIGN_OR_RETURN(Stamp before, StampOf(fd));
  const timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  ::futimens(fd, times);
  LAZYFS_ASSIGN_OR_RETURN(Stamp after, StampOf(fd));
  std::lock_guard lock(mu_);
  if (auto it = verified_.find(d); it != verified_.end() && it->second == before) {
    it->second = after;
  }
  return after;
}

Result<Fd> CasDir::OpenVerified(const Digest& d) {
  const std::string path = PathFor(d);
  LAZYFS_ASSIGN_OR_RETURN(Fd fd, OpenFile(path, O_RDONLY));
  LAZYFS_ASSIGN_OR_RETURN(Stamp stamp, StampOf(fd.get()));
  {
    std::lock_guard lock(mu_);
    if (auto it = verified_.find(d); it != verified_.end() && it->second == stamp) return fd;
  }
  LAZYFS_ASSIGN_OR_RETURN(Digest got, Sha256OfFd(fd.get()));
  if (got != d) {
    ::unlink(path.c_str());
    return NotFoundError("cached object " + d.ToString() + " was corrupt and was removed");
  }
  // Stamped before hashing: a change made while hashing shows on the next open.
  MarkVerified(d, stamp);
  return fd;
}

Result<std::unique_ptr<CasWriter>> CasDir::BeginWrite(const Digest& expected,
                                                      int64_t expected_size, bool caller_hashes) {
  static std::atomic<unsigned> counter{0};
  std::string tmp = root_ + "/tmp/" + expected.Hex() + "." + std::to_string(::getpid()) + "." +
                    std::to_string(counter.fetch_add(1));
  LAZYFS_ASSIGN_OR_RETURN(Fd fd, OpenFile(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600));
  return std::unique_ptr<CasWriter>(
      new CasWriter(this, expected, expected_size, std::move(tmp), std::move(fd), caller_hashes));
}

Status CasDir::Put(const Digest& expected, std::string_view data) {
  LAZYFS_ASSIGN_OR_RETURN(auto w, BeginWrite(expected, static_cast<int64_t>(data.size())));
  LAZYFS_RETURN_IF_ERROR(w->Write(data.data(), data.size()));
  return w->Commit();
}

Status CasDir::PutHashed(const Digest& digest, std::string_view data) {
  LAZYFS_ASSIGN_OR_RETURN(auto w, BeginWrite(digest, static_cast<int64_t>(data.size()), true));
  LAZYFS_RETURN_IF_ERROR(w->Write(data.data(), data.size()));
  return w->CommitHashed(digest);
}

Status CasDir::Remove(const Digest& d) {
  {
    std::lock_guard lock(mu_);
    verified_.erase(d);
  }
  if (::unlink(PathFor(d).c_str()) != 0 && errno != ENOENT) {
    return ErrnoError(errno, "remove " + PathFor(d));
  }
  return Status::Ok();
}

Result<CasDir::CheckReport> CasDir::Check(bool repair) {
  CheckReport report;
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ + "/sha256", ec)) {
    const std::string path = entry.path().string();
    auto digest = Digest::Parse("sha256:" + entry.path().filename().string());
    if (!digest.ok() || !entry.is_regular_file()) {
      report.stray.push_back(path);
      continue;
    }
    LAZYFS_ASSIGN_OR_RETURN(Fd fd, OpenFile(path, O_RDONLY));
    LAZYFS_ASSIGN_OR_RETURN(Stamp stamp, StampOf(fd.get()));
    LAZYFS_ASSIGN_OR_RETURN(Digest got, Sha256OfFd(fd.get()));
    ++report.objects;
    report.bytes += entry.file_size(ec);
    if (got != *digest) {
      report.corrupt.push_back(path);
      if (repair) LAZYFS_RETURN_IF_ERROR(Remove(*digest));
    } else {
      MarkVerified(*digest, stamp);
    }
  }
  if (ec) return ErrnoError(ec.value(), "list " + root_ + "/sha256");
  // Temporaries are named HEX.PID.N (BeginWrite): a live PID may still be writing one.
  for (const auto& entry : fs::directory_iterator(root_ + "/tmp", ec)) {
    const std::string name = entry.path().filename().string();
    const size_t dot = name.find('.');
    const std::string pid = dot == std::string::npos ? "" : name.substr(dot + 1, name.find('.', dot + 1) - dot - 1);
    if (!pid.empty() && ::access(("/proc/" + pid).c_str(), F_OK) == 0) continue;
    report.stale_tmp.push_back(entry.path().string());
    if (repair) fs::remove(entry.path(), ec);
  }
  return report;
}

}  // namespace lazyfs
