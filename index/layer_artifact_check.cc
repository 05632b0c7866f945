// The whole-layer check of an artifact-indexed layer (layer_artifact.h): the layer indexed again
// from its own bytes, by the stream indexer itself, and compared with what the artifact claimed.
#include <unistd.h>

#include <cstring>
#include <map>

#include "base/text.h"
#include "index/layer_artifact.h"
#include "index/layer_indexer.h"
#include "index/schema.h"
#include "index/toc_check.h"

namespace lazyfs::index {
namespace {

// The complete blob, already in a local file, as the BlobSource the stream indexer reads.
class FileBlob final : public BlobSource {
 public:
  explicit FileBlob(int fd) : fd_(fd) {}
  Result<Fd> OpenBlob(const Digest&, uint64_t) override {
    Fd fd(::dup(fd_));
    if (!fd.valid()) return ErrnoError(errno, "dup");
    return fd;
  }
  Result<size_t> ReadBlobRange(const Digest&, uint64_t offset, std::span<std::byte> out,
                               const Deadline&) override {
    const ssize_t n = ::pread(fd_, out.data(), out.size(), static_cast<off_t>(offset));
    if (n < 0) return ErrnoError(errno, "pread");
    return static_cast<size_t>(n);
  }

 private:
  const int fd_;
};

// The records a stream indexer put in a batch, for this layer.
Result<LayerArtifact> FromBatch(rocksdb::WriteBatch& batch) {
  struct Collect : rocksdb::WriteBatch::Handler {
    LayerArtifact art;
    Status failed;
    void Put(const rocksdb::Slice& k, const rocksdb::Slice& v) override {
      if (failed.ok()) failed = AddLayerArtifactRecord(std::string_view(k.data(), k.size()),
                                        std::string_view(v.data(), v.size()), &art);
    }
  };
  Collect collect;
  LAZYFS_RETURN_IF_ERROR(FromRocks(batch.Iterate(&collect), "index batch"));
  LAZYFS_RETURN_IF_ERROR(collect.failed);
  return std::move(collect.art);
}

// What the claimed records say that the layer's own do not, or "" when they agree.
std::string Difference(const LayerArtifact& tar, const LayerArtifact& claimed) {
  if (tar.entries.size() != claimed.entries.size()) {
    return std::to_string(tar.entries.size()) + " entries in the tar stream, " +
           std::to_string(claimed.entries.size()) + " in the artifact";
  }
  for (size_t i = 0; i < tar.entries.size(); ++i) {
    const LayerEntry &a = tar.entries[i], &b = claimed.entries[i];
    const std::string about = "entry " + std::to_string(i) + " " + QuoteName(a.path) + ": ";
    if (a.path != b.path) return about + "named " + QuoteName(b.path) + " in the artifact";
    if (std::string d = EntryDisagreement(a, b, "the artifact"); !d.empty()) return about + d;
    if (a.mtime_sec != b.mtime_sec || a.mtime_nsec != b.mtime_nsec) return about + "mtime differs";
    if (a.kind == EntryKind::kFile && a.digest != b.digest) {
      return about + "content " + a.digest.ToString() + " in the tar stream, " +
             b.digest.ToString() + " in the artifact";
    }
  }
  if (tar.locations.size() != claimed.locations.size()) return "file locations differ in number";
  for (size_t i = 0; i < tar.locations.size(); ++i) {
    const FileLocation &a = tar.locations[i], &b = claimed.locations[i];
    if (a.digest != b.digest || a.offset != b.offset || a.size != b.size ||
        a.sparse != b.sparse || a.chunks != b.chunks) {
      return "the location or chunk digests of file " + a.digest.Short() + " differ";
    }
  }
  if (tar.files_at != claimed.files_at) return "the file offsets differ";
  if (tar.record.uncompressed != claimed.record.uncompressed) return "the uncompressed size differs";
  return "";
}

}  // namespace

Status CheckArtifactAgainstStream(int fd, const LayerDescriptor& layer, const Records& records,
                                  const IndexOptions& options, ContentCache& cache) {
  LAZYFS_ASSIGN_OR_RETURN(auto provenance, records.Provenance(layer.digest));
  if (!provenance) return Status::Ok();  // indexed from its own bytes
  LAZYFS_ASSIGN_OR_RETURN(LayerArtifact claimed, ReadLayerArtifact(records.db(), layer));
  IndexOptions own = options;
  own.cache_content_while_indexing = false;
  // The layer's own index, as a store that never saw the artifact would record it. The
  // descriptor's diff_id is left out: the whole-layer check compared the stream with it already.
  LayerDescriptor plain = layer;
  plain.diff_id.reset();
  FileBlob blob(fd);
  RecordBatch batch;
  LAZYFS_RETURN_IF_ERROR(
      MakeStreamIndexer(own, cache)->Index(plain, blob, batch, nullptr, [] { return false; })
          .status()
          .WithContext("while indexing layer " + layer.digest.Short() + " to check its artifact"));
  LAZYFS_ASSIGN_OR_RETURN(LayerArtifact tar, FromBatch(batch.rocks()));
  if (std::string d = Difference(tar, claimed); !d.empty()) {
    return DataLossError(ArtifactLieMessage(provenance->artifact, layer.digest, d));
  }
  return Status::Ok();
}

}  // namespace lazyfs::index
