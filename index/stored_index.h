// The Index of a store (tree.h): the write path that indexes and merges images
// (stored_index.cc), the content warm-up before a full read (warm_content.cc), and maintenance:
// gc, removal and fsck (maintenance.cc).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "index/content_cache.h"
#include "index/db.h"
#include "index/layer_check.h"
#include "index/layer_indexer.h"
#include "index/records.h"
#include "index/tree.h"

namespace lazyfs::index {

// Thread-safe.
class StoredIndex final : public Index {
 public:
  StoredIndex(IndexOptions options, std::shared_ptr<Db> db, std::shared_ptr<ContentCache> cache,
              std::shared_ptr<LayerCheck> check);

  Result<bool> HasImage(const Digest& manifest) override;
  Status AddImage(const ImageDescriptor& image, BlobSource& blobs,
                  const ProgressFn& progress) override;
  Status SetRef(std::string_view ref, const Digest& manifest) override;
  Result<std::optional<Digest>> LookupRef(std::string_view ref) override;
  Result<ImageDescriptor> GetImage(const Digest& manifest) override;
  Result<std::unique_ptr<Tree>> OpenTree(const Digest& manifest, BlobSource& blobs) override;
  Result<std::vector<StoredImage>> ListImages() override;
  Status WarmContent(const Digest& manifest, BlobSource& blobs, unsigned threads,
                     const ProgressFn& progress) override;
  Result<GcReport> Gc() override;
  Status RemoveImage(const Digest& manifest) override;
  Result<std::string> ExportLayer(const LayerDescriptor& layer) override;
  Result<LayerIndexed> LayerState(const Digest& layer) override;
  Status ImportLayer(const LayerDescriptor& layer, std::string_view blob) override;
  Result<IndexCheckReport> Check() override;
  Result<CasDir::CheckReport> CheckContent(bool repair) override;

 private:
  Status Writable() const;
  // The entries of a layer: from its record when indexed before, else by the first indexer
  // that takes it, its records added to `batch`.
  Result<std::vector<LayerEntry>> LayerEntries(const LayerDescriptor& layer, BlobSource& blobs,
                                               const ProgressFn& progress, RecordBatch& batch,
                                               const std::function<bool()>& stopped);
  // The entries of each distinct layer of an image, and of each listing (borrowed from the
  // former, in manifest order).
  struct IndexedLayers {
    std::vector<std::vector<LayerEntry>> distinct;
    std::vector<const std::vector<LayerEntry>*> listed;
  };
  // Every distinct layer indexed (in parallel, each into a batch of its own, appended to
  // `records`); the error of the first failing layer in layer order. ResourceExhausted when the
  // listings hold more than max_entries_per_image entries in all.
  Status IndexLayers(const ImageDescriptor& image, BlobSource& blobs, const ProgressFn& progress,
                     RecordBatch& records, IndexedLayers* out);
  Status StoreTree(const ImageDescriptor& image, const MergedTree& tree);
  // Every content object a stored image can read (gc).
  Result<std::set<Digest>> ReferencedContent();
  // Layers whose missing files are worth reading the layer whole (WarmContent).
  Result<std::vector<size_t>> LayersToWarm(const ImageDescriptor& image);
  // Every TOC layer of an image fetched whole and checked (WarmContent).
  Status CheckTocLayers(const ImageDescriptor& image, BlobSource& blobs, unsigned threads);
  // The image's distinct layers not checked whole yet for which `needs` says yes.
  Result<std::vector<const LayerDescriptor*>> UncheckedLayers(
      const ImageDescriptor& image, const std::function<Result<bool>(const Digest&)>& needs);
  // Every layer of an image imported from an index artifact and not checked yet: read whole
  // and compared with what the artifact claimed (WarmContent).
  Status CheckArtifactLayers(const ImageDescriptor& image, BlobSource& blobs, unsigned threads);
  // Drops the provenance records of the image's layers that passed their check since they were
  // imported (the writer's part of a check a reader may have made).
  Status SettleArtifactLayers(const ImageDescriptor& image);

  const IndexOptions options_;
  const std::shared_ptr<Db> db_;
  const Records records_;
  const std::shared_ptr<ContentCache> cache_;
  const std::shared_ptr<LayerCheck> check_;
  // Tried in order: the TOC indexer, then the stream indexer.
  std::vector<std::unique_ptr<LayerIndexer>> indexers_;
};

}  // namespace lazyfs::index
