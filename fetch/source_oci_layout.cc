// ImageSource for oci:DIR[:TAG]: an OCI image layout directory read in place.
//
// Layer blobs are never copied: OpenBlob hands out the layout's own file (DIR/blobs/sha256/HEX,
// possibly a symlink into a shared blob directory) after hashing it once per process. The file's
// identity (device, inode, size, mtime) is remembered with the verdict, so a blob replaced
// behind our back is hashed again.
#include <fcntl.h>
#include <sys/stat.h>

#include <unordered_map>

#include "base/fd.h"
#include "base/thread_annotations.h"
#include "fetch/source.h"

namespace lazyfs::fetch {
namespace {

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  friend bool operator==(const FileId&, const FileId&) = default;
};

FileId IdOf(const struct stat& st) {
  return FileId{st.st_dev, st.st_ino, st.st_size,
                static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

class OciLayoutSource final : public ImageSource {
 public:
  OciLayoutSource(ImageRef ref, SourceOptions options, std::unique_ptr<CasDir> store)
      : ref_(std::move(ref)), options_(std::move(options)), store_(std::move(store)),
        where_("oci:" + ref_.path) {}

  Result<ImageDescriptor> Resolve() override;
  Result<std::string> ReadSmallBlob(const Digest& digest, uint64_t max_size) override;
  Result<Fd> OpenBlob(const Digest& digest, uint64_t size) override;
  Result<size_t> ReadBlobRange(const Digest& digest, uint64_t offset, std::span<std::byte> out,
                               const Deadline& deadline) override;

 private:
  std::string BlobPath(const Digest& d) const { return ref_.path + "/blobs/sha256/" + d.Hex(); }
  // Opens a layout blob and makes sure it hashes to its name (once per file per process).
  Result<Fd> OpenVerifiedBlob(const Digest& digest, std::optional<uint64_t> size);
  // Reads a small blob (manifest, config) whole and verifies it.
  Result<std::string> ReadSmall(const Digest& digest, std::optional<uint64_t> size,
                                uint64_t max_size);

  const ImageRef ref_;
  const SourceOptions options_;
  const std::unique_ptr<CasDir> store_;
  const std::string where_;  // "oci:DIR", for messages
  SingleFlight<Digest> hashing_;
  Mutex mu_;
  std::unordered_map<Digest, FileId> verified_ LAZYFS_GUARDED_BY(mu_);
};

Result<std::string> OciLayoutSource::ReadSmall(const Digest& digest, std::optional<uint64_t> size,
                                               uint64_t max_size) {
  auto bytes = ReadFileToString(BlobPath(digest), max_size);
  if (!bytes.ok()) {
    if (bytes.status().code() == StatusCode::kNotFound) {
      return NotFoundError(where_ + ": blob " + digest.ToString() + " is missing (" +
                           BlobPath(digest) + ")");
    }
    return bytes.status().WithContext(where_);
  }
  LAZYFS_RETURN_IF_ERROR(VerifyBytes(*bytes, digest, size, where_));
  return bytes;
}

Result<ImageDescriptor> OciLayoutSource::Resolve() {
  const std::string reference = ref_.ToString();
  auto layout = ReadFileToString(ref_.path + "/oci-layout", 64 << 10);
  if (!layout.ok()) {
    if (layout.status().code() == StatusCode::kNotFound) {
      return NotFoundError(where_ + ": not an OCI image layout (no " + ref_.path +
                           "/oci-layout file)");
    }
    return layout.status().WithContext(where_);
  }
  auto index_raw = ReadFileToString(ref_.path + "/index.json", kMaxManifestSize);
  if (!index_raw.ok()) return index_raw.status().WithContext(where_ + ": index.json");
  LAZYFS_ASSIGN_OR_RETURN(
      Descriptor top,
      PickLayoutManifest(*layout, *index_raw, ref_.tag, options_.platform, where_));
  LAZYFS_ASSIGN_OR_RETURN(std::string raw, ReadSmall(top.digest, top.size, kMaxManifestSize));
  LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, top.digest, raw));
  auto fetch = [this](const Descriptor& d) -> Result<std::string> {
    if (d.size > kMaxManifestSize) {
      return ResourceExhaustedError(d.digest.Short() + " is larger than 4 MiB (" +
                                    std::to_string(d.size) + " bytes)");
    }
    LAZYFS_ASSIGN_OR_RETURN(std::string bytes, ReadSmall(d.digest, d.size, kMaxManifestSize));
    LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, d.digest, bytes));
    return bytes;
  };
  return ResolveManifest(reference, std::move(raw), top.digest, top.media_type,
                         options_.platform, fetch);
}

Result<std::string> OciLayoutSource::ReadSmallBlob(const Digest& digest, uint64_t max_size) {
  return ReadSmall(digest, std::nullopt, max_size);
}

Result<Fd> OciLayoutSource::OpenVerifiedBlob(const Digest& digest, std::optional<uint64_t> size) {
  const std::string path = BlobPath(digest);
  auto opened = OpenFile(path, O_RDONLY);
  if (!opened.ok()) {
    if (opened.status().code() == StatusCode::kNotFound) {
      return NotFoundError(where_ + ": blob " + digest.ToString() + " is missing (" + path + ")");
    }
    return opened.status().WithContext(where_);
  }
  Fd fd = std::move(*opened);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError(where_ + ": blob " + digest.ToString() + " is not a regular file");
  }
  if (size && static_cast<uint64_t>(st.st_size) != *size) {
    return DataLossError(where_ + ": blob " + digest.ToString() + " is " +
                         std::to_string(st.st_size) + " bytes, its descriptor says " +
                         std::to_string(*size));
  }
  const FileId id = IdOf(st);
  auto known = [&] {
    MutexLock lock(mu_);
    auto it = verified_.find(digest);
    return it != verified_.end() && it->second == id;
  };
  if (known()) return fd;
  // Hash this very descriptor (not the path again), so what was checked is what is served.
  auto hash = [&]() -> Status {
    if (known()) return Status::Ok();
    LAZYFS_ASSIGN_OR_RETURN(const Digest got, Sha256OfFd(fd.get()));
    if (got != digest) {
      return DataLossError(where_ + ": blob " + digest.ToString() + ": digest mismatch (got " +
                           got.ToString() + ")");
    }
    MutexLock lock(mu_);
    verified_[digest] = id;
    return Status::Ok();
  };
  LAZYFS_RETURN_IF_ERROR(hashing_.Do(digest, hash));
  // A concurrent leader hashed its own descriptor; if that was another file, hash ours.
  if (!known()) LAZYFS_RETURN_IF_ERROR(hash());
  return fd;
}

Result<Fd> OciLayoutSource::OpenBlob(const Digest& digest, uint64_t size) {
  return OpenVerifiedBlob(digest, size);
}

Result<size_t> OciLayoutSource::ReadBlobRange(const Digest& digest, uint64_t offset,
                                              std::span<std::byte> out, const Deadline&) {
  LAZYFS_ASSIGN_OR_RETURN(Fd fd, OpenVerifiedBlob(digest, std::nullopt));
  return PreadFull(fd.get(), out.data(), out.size(), offset);
}

}  // namespace

Result<std::unique_ptr<ImageSource>> OpenOciLayoutSource(const ImageRef& ref,
                                                         const SourceOptions& options) {
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<CasDir> store,
                          CasDir::Open(options.store.blobs()));
  return std::unique_ptr<ImageSource>(new OciLayoutSource(ref, options, std::move(store)));
}

}  // namespace lazyfs::fetch
