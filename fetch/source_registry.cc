// ImageSource for docker:// references: manifests and blobs from a registry (or its mirrors,
// from registries.conf), kept verified in the blob store (STORE/blobs).
//
// Endpoints are tried in order (mirrors first, the origin last). The one that answers the
// manifest serves the blobs; when it fails for a blob, the others are tried in order.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "base/stats.h"
#include "base/thread_annotations.h"
#include "fetch/referrers.h"
#include "fetch/registries_conf.h"
#include "fetch/registry_client.h"
#include "fetch/source.h"

namespace lazyfs::fetch {
namespace {

// A whole-blob download ends at the time its declared size takes at the minimum rate, plus
// slack: the low-speed check alone lets a registry that bursts just often enough hold it.
Deadline DownloadDeadline(uint64_t size, const SourceOptions& options) {
  return Deadline::In(DownloadTimeLimit(size, options));
}

// The error of a download that its deadline ended, saying what the limit was and why.
Status PastDownloadDeadline(const std::string& where, uint64_t size,
                            const SourceOptions& options) {
  return UnavailableError(where + ": the download did not finish within " +
                          std::to_string(DownloadTimeLimit(size, options).count()) + " s (" +
                          std::to_string(size) + " bytes at the minimum rate of " +
                          std::to_string(options.min_rate_bps) + " bytes/s, plus " +
                          std::to_string(options.blob_deadline_slack_s) + " s)");
}

class RegistrySource final : public ImageSource {
 public:
  RegistrySource(ImageRef ref, SourceOptions options,
                 std::vector<std::unique_ptr<RegistryClient>> clients,
                 std::unique_ptr<CasDir> store)
      : ref_(std::move(ref)), options_(std::move(options)), clients_(std::move(clients)),
        store_(std::move(store)) {}

  Result<ImageDescriptor> Resolve() override;
  Result<std::string> ReadSmallBlob(const Digest& digest, uint64_t max_size) override;
  Result<Fd> OpenBlob(const Digest& digest, uint64_t size) override;
  Result<size_t> ReadBlobRange(const Digest& digest, uint64_t offset, std::span<std::byte> out,
                               const Deadline& deadline) override;
  // Referrers are asked of, and pushed to, the origin: mirrors copy images, not their
  // referrers, and are never written to.
  Result<std::vector<Descriptor>> Referrers(const Digest& subject,
                                            std::string_view artifact_type) override {
    return ListReferrers(Origin(), subject, artifact_type);
  }
  Result<std::string> ReadManifest(const Digest& digest, uint64_t max_size) override {
    return FetchManifest(digest, std::nullopt, std::min<uint64_t>(max_size, kMaxManifestSize));
  }
  Result<Descriptor> PushReferrer(const Descriptor& subject, std::string_view artifact_type,
                                  const std::vector<BlobToPush>& blobs,
                                  const std::map<std::string, std::string>& annotations) override {
    return PublishReferrer(Origin(), subject, artifact_type, blobs, annotations);
  }

 private:
  // The registry itself: EndpointsFor puts it after the mirrors.
  RegistryClient& Origin() { return *clients_.back(); }
  // A manifest by digest from the store, else from the endpoints in order; verified (and
  // `size` checked when known), stored.
  Result<std::string> FetchManifest(const Digest& digest, std::optional<uint64_t> size,
                                    uint64_t max_size);
  // Streams a blob from the registry into the store; verified as it arrives.
  Status Download(const Digest& digest, std::optional<uint64_t> size);
  Result<std::string> FetchSmall(const Digest& digest, std::optional<uint64_t> size,
                                 uint64_t max_size);
  std::optional<uint64_t> KnownSize(const Digest& digest);
  // The endpoints in the order to try them: the one that served the manifest first.
  std::vector<RegistryClient*> Order();
  // Runs `f` on each endpoint in Order() until one succeeds or `deadline` has passed; the last
  // failure otherwise.
  template <typename T>
  Result<T> OnEndpoints(const Deadline& deadline,
                        const std::function<Result<T>(RegistryClient&)>& f);

  const ImageRef ref_;
  const SourceOptions options_;
  const std::vector<std::unique_ptr<RegistryClient>> clients_;  // mirrors first, origin last
  const std::unique_ptr<CasDir> store_;
  SingleFlight<Digest> downloads_;
  Mutex mu_;
  // Blob sizes, from resolved manifests (and HEAD requests).
  std::unordered_map<Digest, uint64_t> sizes_ LAZYFS_GUARDED_BY(mu_);
  size_t active_ LAZYFS_GUARDED_BY(mu_) = 0;  // the endpoint that served the manifest
};

std::vector<RegistryClient*> RegistrySource::Order() {
  size_t active;
  {
    MutexLock lock(mu_);
    active = active_;
  }
  std::vector<RegistryClient*> out{clients_[active].get()};
  for (size_t i = 0; i < clients_.size(); ++i) {
    if (i != active) out.push_back(clients_[i].get());
  }
  return out;
}

template <typename T>
Result<T> RegistrySource::OnEndpoints(const Deadline& deadline,
                                      const std::function<Result<T>(RegistryClient&)>& f) {
  Result<T> last = InternalError("no registry endpoint");
  for (RegistryClient* c : Order()) {
    last = f(*c);
    if (last.ok() || deadline.expired()) return last;
  }
  return last;
}

Result<ImageDescriptor> RegistrySource::Resolve() {
  const std::string reference = ref_.ToString();
  const std::string wanted = ref_.digest ? ref_.digest->ToString() : ref_.tag;
  // Mirrors first; a mirror that fails (or lacks the image, or serves other bytes for a
  // digest) yields to the next endpoint, the origin last.
  Result<RegistryClient::RawManifest> fetched = InternalError("no registry endpoint");
  for (size_t i = 0; i < clients_.size(); ++i) {
    fetched = clients_[i]->GetManifest(wanted);
    if (fetched.ok() && ref_.digest && Sha256Of(fetched->bytes) != *ref_.digest) {
      fetched = DataLossError(clients_[i]->Describe() + ": manifest " + ref_.digest->ToString() +
                              ": digest mismatch (got " + Sha256Of(fetched->bytes).ToString() +
                              ")");
    }
    if (fetched.ok()) {
      MutexLock lock(mu_);
      active_ = i;
      break;
    }
  }
  if (!fetched.ok()) return fetched.status();
  RegistryClient::RawManifest top = std::move(*fetched);
  const Digest top_digest = Sha256Of(top.bytes);
  LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, top_digest, top.bytes));
  auto fetch = [this](const Descriptor& d) -> Result<std::string> {
    if (d.size > kMaxManifestSize) {
      return ResourceExhaustedError(d.digest.Short() + " is larger than 4 MiB (" +
                                    std::to_string(d.size) + " bytes)");
    }
    const bool is_manifest = d.media_type == kOciManifest || d.media_type == kDockerManifest ||
                             d.media_type == kOciIndex || d.media_type == kDockerManifestList;
    if (is_manifest) return FetchManifest(d.digest, d.size, kMaxManifestSize);
    auto cached = ReadFromStore(*store_, d.digest, kMaxManifestSize);
    if (cached.ok()) {
      LAZYFS_RETURN_IF_ERROR(VerifyBytes(*cached, d.digest, d.size, "blob store"));
      return cached;
    }
    return FetchSmall(d.digest, d.size, kMaxManifestSize);
  };
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor image,
                          ResolveManifest(reference, std::move(top.bytes), top_digest,
                                          top.content_type, options_.platform, fetch));
  MutexLock lock(mu_);
  for (const LayerDescriptor& l : image.layers) sizes_[l.digest] = l.size;
  return image;
}

Result<std::string> RegistrySource::FetchManifest(const Digest& digest,
                                                  std::optional<uint64_t> size,
                                                  uint64_t max_size) {
  auto cached = ReadFromStore(*store_, digest, max_size);
  if (cached.ok()) {
    LAZYFS_RETURN_IF_ERROR(VerifyBytes(*cached, digest, size, "blob store"));
    return cached;
  }
  return OnEndpoints<std::string>(Deadline::Never(), [&](RegistryClient& c) -> Result<std::string> {
    LAZYFS_ASSIGN_OR_RETURN(RegistryClient::RawManifest m, c.GetManifest(digest.ToString()));
    if (m.bytes.size() > max_size) {
      return ResourceExhaustedError(c.Describe() + ": manifest " + digest.ToString() +
                                    " is larger than " + std::to_string(max_size) + " bytes");
    }
    LAZYFS_RETURN_IF_ERROR(VerifyBytes(m.bytes, digest, size, c.Describe()));
    LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, digest, m.bytes));
    return std::move(m.bytes);
  });
}

std::optional<uint64_t> RegistrySource::KnownSize(const Digest& digest) {
  MutexLock lock(mu_);
  auto it = sizes_.find(digest);
  if (it == sizes_.end()) return std::nullopt;
  return it->second;
}

Result<std::string> RegistrySource::FetchSmall(const Digest& digest, std::optional<uint64_t> size,
                                               uint64_t max_size) {
  const uint64_t cap = size ? std::min(*size, max_size) : max_size;
  return OnEndpoints<std::string>(Deadline::Never(), [&](RegistryClient& c) -> Result<std::string> {
    std::string bytes;
    const Deadline deadline = DownloadDeadline(cap, options_);
    Status s = c.GetBlob(digest, [&](std::string_view chunk) -> Status {
      if (bytes.size() + chunk.size() > cap) {
        return size && *size <= max_size
                   ? DataLossError("blob " + digest.ToString() + ": the registry sent more than " +
                                   std::to_string(*size) + " bytes")
                   : ResourceExhaustedError("blob " + digest.ToString() + " is larger than " +
                                            std::to_string(max_size) + " bytes");
      }
      bytes.append(chunk);
      return Status::Ok();
    }, deadline);
    if (!s.ok() && deadline.expired()) {
      return PastDownloadDeadline(c.Describe() + ": blob " + digest.ToString(), cap, options_);
    }
    if (!s.ok()) return s.WithContext(c.Describe());
    LAZYFS_RETURN_IF_ERROR(VerifyBytes(bytes, digest, size, c.Describe()));
    LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, digest, bytes));
    return bytes;
  });
}

Result<std::string> RegistrySource::ReadSmallBlob(const Digest& digest, uint64_t max_size) {
  auto cached = ReadFromStore(*store_, digest, max_size);
  if (cached.ok() || cached.status().code() != StatusCode::kNotFound) return cached;
  return FetchSmall(digest, KnownSize(digest), max_size);
}

Status RegistrySource::Download(const Digest& digest, std::optional<uint64_t> size) {
  if (store_->Contains(digest)) return Status::Ok();  // another process may have fetched it
  // Each endpoint starts a fresh temporary: nothing one of them sent survives its failure.
  Result<bool> done = OnEndpoints<bool>(Deadline::Never(), [&](RegistryClient& c) -> Result<bool> {
    LAZYFS_ASSIGN_OR_RETURN(
        std::unique_ptr<CasWriter> writer,
        store_->BeginWrite(digest, size ? static_cast<int64_t>(*size) : int64_t{-1}));
    const std::string where = c.Describe() + ": blob " + digest.ToString();
    static StatCounter& fetched = Counter(kStatBytesFetched);
    static StatCounter& fetches = Counter(kStatFetches);
    fetches.Add();
    // Without a declared size only the minimum rate bounds it.
    const Deadline deadline = size ? DownloadDeadline(*size, options_) : Deadline::Never();
    Status s = c.GetBlob(digest, [&](std::string_view chunk) -> Status {
      fetched.Add(chunk.size());
      if (size && writer->bytes_written() + chunk.size() > *size) {
        return DataLossError(where + ": the registry sent more than the " +
                             std::to_string(*size) + " bytes the manifest states");
      }
      return writer->Write(chunk.data(), chunk.size());
    }, deadline);
    // On any failure the writer's destructor removes the temporary file: nothing is stored.
    if (!s.ok() && deadline.expired()) return PastDownloadDeadline(where, *size, options_);
    if (!s.ok()) return s;
    Status committed = writer->Commit();
    if (!committed.ok()) {
      if (committed.code() == StatusCode::kDataLoss) return committed.WithContext(where);
      return committed.WithContext("while storing " + digest.Short());
    }
    return true;
  });
  return done.status();
}

Result<Fd> RegistrySource::OpenBlob(const Digest& digest, uint64_t size) {
  // Twice: a stored copy may be found corrupt (and removed) after the first download raced it.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto fd = store_->OpenVerified(digest);
    if (fd.ok()) {
      struct stat st;
      if (::fstat(fd->get(), &st) == 0 && static_cast<uint64_t>(st.st_size) != size) {
        return DataLossError("blob store: blob " + digest.ToString() + " is " +
                             std::to_string(st.st_size) + " bytes, its descriptor says " +
                             std::to_string(size));
      }
      return fd;
    }
    if (fd.status().code() != StatusCode::kNotFound) return fd.status();
    LAZYFS_RETURN_IF_ERROR(downloads_.Do(digest, [&] { return Download(digest, size); }));
  }
  return UnavailableError(Order().front()->Describe() + ": blob " + digest.ToString() +
                          " vanished from the store right after it was fetched");
}

Result<size_t> RegistrySource::ReadBlobRange(const Digest& digest, uint64_t offset,
                                             std::span<std::byte> out,
                                             const Deadline& deadline) {
  // A stored blob is read locally; otherwise only the range travels (the caller verifies what
  // it derives from these bytes, as BlobSource says).
  if (store_->Contains(digest)) {
    auto fd = store_->OpenVerified(digest);
    if (fd.ok()) return PreadFull(fd->get(), out.data(), out.size(), offset);
    if (fd.status().code() != StatusCode::kNotFound) return fd.status();
  }
  return OnEndpoints<size_t>(deadline, [&](RegistryClient& c) -> Result<size_t> {
    // Asking past the end earns a 416 whose framing some registries get wrong: stay inside.
    std::optional<uint64_t> size = KnownSize(digest);
    if (!size) {
      LAZYFS_ASSIGN_OR_RETURN(size, c.BlobSize(digest, deadline));
      MutexLock lock(mu_);
      sizes_[digest] = *size;
    }
    if (offset >= *size) return size_t{0};
    static StatCounter& fetched = Counter(kStatBytesFetched);
    static StatCounter& fetches = Counter(kStatFetches);
    static StatHistogram& latency = Histogram(kStatFetchLatency);
    fetches.Add();
    ScopedLatency timed(latency);
    LAZYFS_ASSIGN_OR_RETURN(
        size_t n, c.GetBlobRange(digest, offset,
                                 out.first(static_cast<size_t>(
                                     std::min<uint64_t>(out.size(), *size - offset))),
                                 deadline));
    fetched.Add(n);
    return n;
  });
}

}  // namespace

Result<std::unique_ptr<ImageSource>> OpenRegistrySource(const ImageRef& ref,
                                                        const SourceOptions& options) {
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<CasDir> store,
                          CasDir::Open(options.store.blobs()));
  LAZYFS_ASSIGN_OR_RETURN(RegistriesConf conf, LoadRegistriesConf(options));
  LAZYFS_ASSIGN_OR_RETURN(std::vector<Endpoint> endpoints,
                          EndpointsFor(conf, ref.registry, ref.repository,
                                       /*by_digest=*/ref.digest.has_value(), options));
  std::vector<std::unique_ptr<RegistryClient>> clients;
  for (const Endpoint& e : endpoints) {
    SourceOptions endpoint_options = options;
    endpoint_options.insecure = e.insecure;
    LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<RegistryClient> client,
                            RegistryClient::Create(e.registry, e.repository, endpoint_options));
    clients.push_back(std::move(client));
  }
  return std::unique_ptr<ImageSource>(
      new RegistrySource(ref, options, std::move(clients), std::move(store)));
}

}  // namespace lazyfs::fetch
