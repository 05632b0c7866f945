// ImageSource for docker:// references: manifests and blobs from a registry, kept verified in
// the blob store (STORE/blobs).
#include <sys/stat.h>

#include <unordered_map>

#include "fetch/registry_client.h"
#include "fetch/source.h"

namespace lazyfs::fetch {
namespace {

class RegistrySource final : public ImageSource {
 public:
  RegistrySource(ImageRef ref, SourceOptions options, std::unique_ptr<RegistryClient> client,
                 std::unique_ptr<CasDir> store)
      : ref_(std::move(ref)), options_(std::move(options)), client_(std::move(client)),
        store_(std::move(store)) {}

  Result<ImageDescriptor> Resolve() override;
  Result<std::string> ReadSmallBlob(const Digest& digest, uint64_t max_size) override;
  Result<Fd> OpenBlob(const Digest& digest, uint64_t size) override;
  Result<size_t> ReadBlobRange(const Digest& digest, uint64_t offset,
                               std::span<std::byte> out) override;

 private:
  // Streams a blob from the registry into the store; verified as it arrives.
  Status Download(const Digest& digest, std::optional<uint64_t> size);
  Result<std::string> FetchSmall(const Digest& digest, std::optional<uint64_t> size,
                                 uint64_t max_size);
  std::optional<uint64_t> KnownSize(const Digest& digest);

  const ImageRef ref_;
  const SourceOptions options_;
  const std::unique_ptr<RegistryClient> client_;
  const std::unique_ptr<CasDir> store_;
  SingleFlight downloads_;
  std::mutex mu_;
  std::unordered_map<Digest, uint64_t> sizes_;  // GUARDED_BY(mu_): from resolved manifests
};

Result<ImageDescriptor> RegistrySource::Resolve() {
  const std::string reference = ref_.ToString();
  const std::string wanted = ref_.digest ? ref_.digest->ToString() : ref_.tag;
  LAZYFS_ASSIGN_OR_RETURN(RegistryClient::RawManifest top, client_->GetManifest(wanted));
  const Digest top_digest = Sha256Of(top.bytes);
  if (ref_.digest && top_digest != *ref_.digest) {
    return DataLossError(client_->Describe() + ": manifest " + ref_.digest->ToString() +
                         ": digest mismatch (got " + top_digest.ToString() + ")");
  }
  LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, top_digest, top.bytes));
  auto fetch = [this](const Descriptor& d) -> Result<std::string> {
    if (d.size > kMaxManifestSize) {
      return ResourceExhaustedError(d.digest.Short() + " is larger than 4 MiB (" +
                                    std::to_string(d.size) + " bytes)");
    }
    const bool is_manifest = d.media_type == kOciManifest || d.media_type == kDockerManifest ||
                             d.media_type == kOciIndex || d.media_type == kDockerManifestList;
    auto cached = ReadFromStore(*store_, d.digest, kMaxManifestSize);
    if (cached.ok()) {
      LAZYFS_RETURN_IF_ERROR(VerifyBytes(*cached, d.digest, d.size, client_->Describe()));
      return cached;
    }
    if (is_manifest) {
      LAZYFS_ASSIGN_OR_RETURN(RegistryClient::RawManifest m,
                              client_->GetManifest(d.digest.ToString()));
      LAZYFS_RETURN_IF_ERROR(VerifyBytes(m.bytes, d.digest, d.size, client_->Describe()));
      LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, d.digest, m.bytes));
      return std::move(m.bytes);
    }
    return FetchSmall(d.digest, d.size, kMaxManifestSize);
  };
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor image,
                          ResolveManifest(reference, std::move(top.bytes), top_digest,
                                          top.content_type, options_.platform, fetch));
  std::lock_guard lock(mu_);
  for (const LayerDescriptor& l : image.layers) sizes_[l.digest] = l.size;
  return image;
}

std::optional<uint64_t> RegistrySource::KnownSize(const Digest& digest) {
  std::lock_guard lock(mu_);
  auto it = sizes_.find(digest);
  if (it == sizes_.end()) return std::nullopt;
  return it->second;
}

Result<std::string> RegistrySource::FetchSmall(const Digest& digest, std::optional<uint64_t> size,
                                               uint64_t max_size) {
  std::string bytes;
  const uint64_t cap = size ? std::min(*size, max_size) : max_size;
  Status s = client_->GetBlob(digest, [&](std::string_view chunk) -> Status {
    if (bytes.size() + chunk.size() > cap) {
      return size && *size <= max_size
                 ? DataLossError("blob " + digest.ToString() + ": the registry sent more than " +
                                 std::to_string(*size) + " bytes")
                 : ResourceExhaustedError("blob " + digest.ToString() + " is larger than " +
                                          std::to_string(max_size) + " bytes");
    }
    bytes.append(chunk);
    return Status::Ok();
  });
  if (!s.ok()) return s.WithContext(client_->Describe());
  LAZYFS_RETURN_IF_ERROR(VerifyBytes(bytes, digest, size, client_->Describe()));
  LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, digest, bytes));
  return bytes;
}

Result<std::string> RegistrySource::ReadSmallBlob(const Digest& digest, uint64_t max_size) {
  auto cached = ReadFromStore(*store_, digest, max_size);
  if (cached.ok() || cached.status().code() != StatusCode::kNotFound) return cached;
  return FetchSmall(digest, KnownSize(digest), max_size);
}

Status RegistrySource::Download(const Digest& digest, std::optional<uint64_t> size) {
  if (store_->Contains(digest)) return Status::Ok();  // another process may have fetched it
  LAZYFS_ASSIGN_OR_RETURN(
      std::unique_ptr<CasWriter> writer,
      store_->BeginWrite(digest, size ? static_cast<int64_t>(*size) : int64_t{-1}));
  const std::string where = client_->Describe() + ": blob " + digest.ToString();
  Status s = client_->GetBlob(digest, [&](std::string_view chunk) -> Status {
    if (size && writer->bytes_written() + chunk.size() > *size) {
      return DataLossError(where + ": the registry sent more than the " + std::to_string(*size) +
                           " bytes the manifest states");
    }
    return writer->Write(chunk.data(), chunk.size());
  });
  // On any failure the writer's destructor removes the temporary file: nothing is stored.
  if (!s.ok()) return s;
  Status committed = writer->Commit();
  if (!committed.ok()) {
    if (committed.code() == StatusCode::kDataLoss) return committed.WithContext(where);
    return committed.WithContext("while storing " + digest.Short());
  }
  return Status::Ok();
}

Result<Fd> RegistrySource::OpenBlob(const Digest& digest, uint64_t size) {
  // Twice: a stored copy may be found corrupt (and removed) after the first download raced it.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto fd = store_->OpenVerified(digest);
    if (fd.ok()) {
      struct stat st;
      if (::fstat(fd->get(), &st) == 0 && static_cast<uint64_t>(st.st_size) != size) {
        return DataLossError(client_->Describe() + ": blob " + digest.ToString() + " is " +
                             std::to_string(st.st_size) + " bytes, its descriptor says " +
                             std::to_string(size));
      }
      return fd;
    }
    if (fd.status().code() != StatusCode::kNotFound) return fd.status();
    LAZYFS_RETURN_IF_ERROR(downloads_.Do(digest, [&] { return Download(digest, size); }));
  }
  return UnavailableError(client_->Describe() + ": blob " + digest.ToString() +
                          " vanished from the store right after it was fetched");
}

Result<size_t> RegistrySource::ReadBlobRange(const Digest& digest, uint64_t offset,
                                             std::span<std::byte> out) {
  // A stored blob is read locally; otherwise only the range travels (the caller verifies what
  // it derives from these bytes, as BlobSource says).
  if (store_->Contains(digest)) {
    auto fd = store_->OpenVerified(digest);
    if (fd.ok()) return PreadFull(fd->get(), out.data(), out.size(), offset);
    if (fd.status().code() != StatusCode::kNotFound) return fd.status();
  }
  // Asking past the end earns a 416 whose framing some registries get wrong: stay inside.
  std::optional<uint64_t> size = KnownSize(digest);
  if (!size) {
    LAZYFS_ASSIGN_OR_RETURN(size, client_->BlobSize(digest));
    std::lock_guard lock(mu_);
    sizes_[digest] = *size;
  }
  if (offset >= *size) return size_t{0};
  return client_->GetBlobRange(
      digest, offset, out.first(static_cast<size_t>(std::min<uint64_t>(out.size(), *size - offset))));
}

}  // namespace

Result<std::unique_ptr<ImageSource>> OpenRegistrySource(const ImageRef& ref,
                                                        const SourceOptions& options) {
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<CasDir> store,
                          CasDir::Open(options.store_dir + "/blobs"));
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<RegistryClient> client,
                          RegistryClient::Create(ref.registry, ref.repository, options));
  return std::unique_ptr<ImageSource>(
      new RegistrySource(ref, options, std::move(client), std::move(store)));
}

}  // namespace lazyfs::fetch
