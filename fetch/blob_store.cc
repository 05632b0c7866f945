// The blob store's upkeep: pruning the blobs no stored image names, and fsck. Declared in
// fetch.h. The store itself is a CasDir (base/cas_dir.h) at StoreLayout::blobs(); the sources
// fill it (source_registry.cc, source_oci_layout.cc, source_archive.cc).
#include <filesystem>
#include <unordered_set>

#include "fetch/fetch.h"

namespace lazyfs::fetch {

Result<BlobPruneReport> PruneBlobStore(const StoreLayout& store,
                                       const std::vector<ImageDescriptor>& keep) {
  // What a stored image may still read from the blob store: its manifest, config and layers.
  std::unordered_set<Digest> wanted;
  for (const ImageDescriptor& image : keep) {
    wanted.insert(image.manifest_digest);
    wanted.insert(image.config_digest);
    for (const LayerDescriptor& layer : image.layers) wanted.insert(layer.digest);
  }
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<CasDir> blobs, CasDir::Open(store.blobs()));
  BlobPruneReport out;
  namespace fs = std::filesystem;
  std::error_code ec;
  // Best effort, as gc is: a blob that cannot be removed now is left for the next prune.
  for (const auto& entry : fs::directory_iterator(blobs->root() + "/sha256", ec)) {
    auto digest = Digest::Parse("sha256:" + entry.path().filename().string());
    if (!digest.ok() || wanted.count(*digest)) continue;
    std::error_code size_ec;
    const uint64_t size = entry.file_size(size_ec);
    if (size_ec || !blobs->Remove(*digest).ok()) continue;
    ++out.objects;
    out.bytes += size;
  }
  return out;
}

Result<CasDir::CheckReport> CheckBlobStore(const StoreLayout& store, bool repair) {
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<CasDir> blobs, CasDir::Open(store.blobs()));
  return blobs->Check(repair);
}

}  // namespace lazyfs::fetch
