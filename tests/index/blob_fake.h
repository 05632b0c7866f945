// An in-process BlobSource over blobs held in memory, counting what is opened: the module-tier
// fake that lets index tests run without a registry.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "base/image.h"
#include "tests/support/image_builder.h"

namespace lazyfs::testing {

class MemoryBlobs : public BlobSource {
 public:
  void Add(const Digest& d, std::string bytes) {
    std::lock_guard lock(mu_);
    blobs_[d] = std::move(bytes);
  }
  void AddImage(const BuiltImage& img) {
    for (const BuiltLayer& l : img.layers) Add(l.digest, l.blob);
  }
  std::string Get(const Digest& d) {
    std::lock_guard lock(mu_);
    auto it = blobs_.find(d);
    return it == blobs_.end() ? std::string() : it->second;
  }
  void Remove(const Digest& d) {
    std::lock_guard lock(mu_);
    blobs_.erase(d);
  }

  Result<Fd> OpenBlob(const Digest& digest, uint64_t size) override {
    opens_++;
    std::string bytes;
    {
      std::lock_guard lock(mu_);
      auto it = blobs_.find(digest);
      if (it == blobs_.end()) return UnavailableError("blob " + digest.Short() + " unavailable");
      bytes = it->second;
    }
    if (bytes.size() != size) return DataLossError("blob size differs from descriptor");
    Fd fd(memfd_create("blob", MFD_CLOEXEC));
    if (!fd.valid()) return ErrnoError(errno, "memfd_create");
    LAZYFS_RETURN_IF_ERROR(WriteAll(fd.get(), bytes.data(), bytes.size()));
    return fd;
  }
  Result<size_t> ReadBlobRange(const Digest& digest, uint64_t offset, std::span<std::byte> out,
                               const Deadline&) override {
    std::lock_guard lock(mu_);
    auto it = blobs_.find(digest);
    if (it == blobs_.end()) return UnavailableError("blob unavailable");
    ranges_++;
    if (offset >= it->second.size()) return size_t{0};
    const size_t n = std::min(out.size(), it->second.size() - offset);
    std::memcpy(out.data(), it->second.data() + offset, n);
    range_bytes_ += n;
    return n;
  }
  int opens() const { return opens_; }
  // Successful range reads, and the bytes they returned.
  int ranges() const { return ranges_; }
  uint64_t range_bytes() const { return range_bytes_; }

 private:
  std::mutex mu_;
  std::map<Digest, std::string> blobs_;
  std::atomic<int> opens_{0};
  std::atomic<int> ranges_{0};
  std::atomic<uint64_t> range_bytes_{0};
};

// The descriptor an ImageSource would resolve for a built image.
inline ImageDescriptor DescriptorOf(const BuiltImage& img, std::string reference = "test") {
  ImageDescriptor d;
  d.reference = std::move(reference);
  d.manifest_digest = img.manifest_digest;
  d.manifest_media_type = "application/vnd.oci.image.manifest.v1+json";
  d.config_digest = img.config_digest;
  d.platform = "linux/amd64";
  for (const BuiltLayer& l : img.layers) {
    LayerDescriptor ld;
    ld.digest = l.digest;
    ld.media_type = l.media_type;
    ld.size = l.blob.size();
    ld.diff_id = l.diff_id;
    d.layers.push_back(ld);
  }
  return d;
}

}  // namespace lazyfs::testing
