#include "index/stored_index.h"

#include <algorithm>
#include <atomic>
#include <map>

#include "base/log.h"
#include "base/parallel.h"
#include "base/thread_annotations.h"
#include "index/layer_artifact.h"
#include "index/merge.h"
#include "index/stored_tree.h"

namespace lazyfs::index {

StoredIndex::StoredIndex(IndexOptions options, std::shared_ptr<Db> db,
                         std::shared_ptr<ContentCache> cache, std::shared_ptr<LayerCheck> check)
    : options_(std::move(options)), db_(std::move(db)), records_(*db_), cache_(std::move(cache)),
      check_(std::move(check)) {
  indexers_.push_back(MakeTocIndexer(options_));
  indexers_.push_back(MakeStreamIndexer(options_, *cache_));
}

Status StoredIndex::Writable() const {
  return options_.writable ? Status::Ok() : FailedPreconditionError("index opened read-only");
}

Result<bool> StoredIndex::HasImage(const Digest& manifest) { return records_.HasImage(manifest); }

Status StoredIndex::AddImage(const ImageDescriptor& image, BlobSource& blobs,
                             const ProgressFn& progress) {
  LAZYFS_RETURN_IF_ERROR(Writable());
  LAZYFS_RETURN_IF_ERROR(SettleArtifactLayers(image));
  LAZYFS_ASSIGN_OR_RETURN(bool has, HasImage(image.manifest_digest));
  if (has) return Status::Ok();
  RecordBatch layer_records;
  IndexedLayers layers;
  LAZYFS_RETURN_IF_ERROR(IndexLayers(image, blobs, progress, layer_records, &layers));
  LAZYFS_ASSIGN_OR_RETURN(MergedTree merged, MergeLayers(layers.listed));
  // New layer records are written together, before the tree, so a failed image (a hostile
  // entry in its third layer, say) leaves the index exactly as it was.
  LAZYFS_RETURN_IF_ERROR(db_->Write(layer_records.rocks()));
  return StoreTree(image, merged);
}

Status StoredIndex::IndexLayers(const ImageDescriptor& image, BlobSource& blobs,
                                const ProgressFn& progress, RecordBatch& records,
                                IndexedLayers* out) {
  // A layer listed several times (a manifest may list one blob a thousand times) is indexed,
  // and held, once.
  std::vector<size_t> distinct;  // index in image.layers of each layer's first listing
  std::map<Digest, size_t> slot;
  std::vector<size_t> slot_of(image.layers.size());
  for (size_t i = 0; i < image.layers.size(); ++i) {
    auto [it, fresh] = slot.emplace(image.layers[i].digest, distinct.size());
    if (fresh) distinct.push_back(i);
    slot_of[i] = it->second;
  }
  // Layers are independent until they are merged: each is indexed on its own thread into a
  // batch of its own. The error reported is that of the first failing layer in layer order: a
  // failure stops the layers after it early, never those before it (one of them may fail too,
  // and its error wins).
  const size_t n = distinct.size();
  std::vector<RecordBatch> batches(n);
  std::vector<std::optional<Result<std::vector<LayerEntry>>>> results(n);
  std::atomic<size_t> first_failed{n};
  Mutex progress_mu;
  const ProgressFn serial_progress =
      progress ? ProgressFn([&](const Progress& p) {
        MutexLock lock(progress_mu);
        progress(p);
      })
               : ProgressFn();
  ParallelFor(n, options_.index_threads, [&](size_t k) {
    auto stopped = [&] { return first_failed.load() < k; };
    if (stopped()) return;
    results[k] =
        LayerEntries(image.layers[distinct[k]], blobs, serial_progress, batches[k], stopped);
    // Lower first_failed to k. A layer that stopped is after first_failed: no change.
    if (!results[k]->ok()) {
      for (size_t f = first_failed.load(); k < f && !first_failed.compare_exchange_weak(f, k);) {
      }
    }
  });
  if (first_failed.load() < n) return results[first_failed.load()]->status();
  out->distinct.clear();
  for (size_t k = 0; k < n; ++k) {
    out->distinct.push_back(std::move(**results[k]));
    LAZYFS_RETURN_IF_ERROR(records.Append(batches[k].rocks()));
  }
  // The whole image is capped too: what the merge will walk, every listing counted.
  uint64_t total = 0;
  for (size_t i = 0; i < image.layers.size(); ++i) {
    out->listed.push_back(&out->distinct[slot_of[i]]);
    total += out->listed.back()->size();
  }
  if (total > options_.max_entries_per_image) {
    return ResourceExhaustedError("image " + image.manifest_digest.Short() + " lists " +
                                  std::to_string(total) + " entries over its " +
                                  std::to_string(image.layers.size()) + " layers, more than " +
                                  std::to_string(options_.max_entries_per_image));
  }
  return Status::Ok();
}

Result<std::vector<LayerEntry>> StoredIndex::LayerEntries(const LayerDescriptor& layer,
                                                          BlobSource& blobs,
                                                          const ProgressFn& progress,
                                                          RecordBatch& batch,
                                                          const std::function<bool()>& stopped) {
  LAZYFS_ASSIGN_OR_RETURN(auto rec, records_.Layer(layer.digest));
  if (rec) return records_.Entries(layer.digest, *rec);
  for (size_t k = 0; k < indexers_.size(); ++k) {
    LAZYFS_ASSIGN_OR_RETURN(bool takes, indexers_[k]->Takes(layer));
    if (!takes) continue;
    auto entries = indexers_[k]->Index(layer, blobs, batch, progress, stopped);
    if (entries.ok() || entries.status().code() != StatusCode::kUnimplemented ||
        k + 1 == indexers_.size()) {
      return entries;
    }
    LAZYFS_LOG(kInfo, "index", "%s; indexing the layer as a stream instead",
               entries.status().message().c_str());
    batch.Clear();
  }
  return UnimplementedError("layer " + layer.digest.Short() + ": unsupported media type " +
                            layer.media_type);
}

Status StoredIndex::StoreTree(const ImageDescriptor& image, const MergedTree& tree) {
  const Digest& m = image.manifest_digest;
  RecordBatch batch;
  for (const MergedInode& in : tree.inodes) {
    batch.PutInode(m, in);
    for (const DirEntry& c : in.children) batch.PutChild(m, in.attr.ino, c);
    if (batch.bytes() > (32u << 20)) {
      LAZYFS_RETURN_IF_ERROR(db_->Write(batch.rocks()));
      batch.Clear();
    }
  }
  // The image record goes last: until it is written, the image does not exist.
  batch.PutImage(image, tree.stats);
  LAZYFS_RETURN_IF_ERROR(db_->Write(batch.rocks()));
  return db_->Flush();
}

Status StoredIndex::SetRef(std::string_view ref, const Digest& manifest) {
  LAZYFS_RETURN_IF_ERROR(Writable());
  RecordBatch batch;
  batch.PutRef(ref, manifest);
  return db_->Write(batch.rocks());
}

Result<std::optional<Digest>> StoredIndex::LookupRef(std::string_view ref) {
  return records_.Ref(ref);
}

Result<ImageDescriptor> StoredIndex::GetImage(const Digest& manifest) {
  TreeStats st;
  return records_.Image(manifest, &st);
}

Result<std::unique_ptr<Tree>> StoredIndex::OpenTree(const Digest& manifest, BlobSource& blobs) {
  TreeStats st;
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor img, records_.Image(manifest, &st));
  return std::unique_ptr<Tree>(
      new StoredTree(db_, std::move(img), st, blobs, cache_, check_, options_));
}

Result<std::vector<StoredImage>> StoredIndex::ListImages() {
  std::map<Digest, StoredImage> images;
  LAZYFS_RETURN_IF_ERROR(records_.ForEachImage([&](const ImageDescriptor& img, const TreeStats& st) {
    images[img.manifest_digest] = StoredImage{img, st, {}};
    return Status::Ok();
  }));
  LAZYFS_RETURN_IF_ERROR(records_.ForEachRef([&](std::string_view ref, const Digest& m) {
    if (auto it = images.find(m); it != images.end()) it->second.refs.emplace_back(ref);
    return Status::Ok();
  }));
  std::vector<StoredImage> out;
  for (auto& [digest, image] : images) out.push_back(std::move(image));
  std::sort(out.begin(), out.end(), [](const StoredImage& a, const StoredImage& b) {
    return a.descriptor.reference < b.descriptor.reference;
  });
  return out;
}

Result<std::string> StoredIndex::ExportLayer(const LayerDescriptor& layer) {
  LAZYFS_ASSIGN_OR_RETURN(auto provenance, records_.Provenance(layer.digest));
  if (provenance && !check_->Passed(layer.digest)) {
    return FailedPreconditionError("layer " + layer.digest.Short() +
                                   " was imported from index artifact " +
                                   provenance->artifact.ToString() +
                                   " and is not checked against its bytes yet");
  }
  LAZYFS_ASSIGN_OR_RETURN(LayerArtifact art, ReadLayerArtifact(*db_, layer));
  return EncodeLayerArtifact(layer, art);
}

Result<Index::LayerIndexed> StoredIndex::LayerState(const Digest& layer) {
  LAZYFS_ASSIGN_OR_RETURN(auto rec, records_.Layer(layer));
  if (!rec) return LayerIndexed::kNo;
  LAZYFS_ASSIGN_OR_RETURN(auto toc, records_.TocLayer(layer));
  return toc ? LayerIndexed::kFromToc : LayerIndexed::kFromStream;
}

Status StoredIndex::ImportLayer(const LayerDescriptor& layer, std::string_view blob) {
  LAZYFS_RETURN_IF_ERROR(Writable());
  LAZYFS_ASSIGN_OR_RETURN(auto rec, records_.Layer(layer.digest));
  if (rec) return Status::Ok();  // indexed here already: its own index wins
  const Digest artifact = Sha256Of(blob);
  if (check_->IsBad(layer.digest)) {
    return DataLossError("layer " + layer.digest.Short() + " is refused: " +
                         check_->WhyBad(layer.digest));
  }
  auto art = DecodeLayerArtifact(layer, blob, options_);
  if (!art.ok()) {
    return art.status().WithContext("while importing index artifact " + artifact.ToString() +
                                    " of layer " + layer.digest.Short());
  }
  RecordBatch batch;
  PutLayerArtifact(batch, layer.digest, *art, artifact);
  return db_->Write(batch.rocks());
}

Status StoredIndex::SettleArtifactLayers(const ImageDescriptor& image) {
  RecordBatch batch;
  for (const LayerDescriptor& layer : image.layers) {
    LAZYFS_ASSIGN_OR_RETURN(auto provenance, records_.Provenance(layer.digest));
    if (provenance && check_->Passed(layer.digest)) batch.DeleteProvenance(layer.digest);
  }
  return batch.bytes() > 0 ? db_->Write(batch.rocks()) : Status::Ok();
}

Result<std::unique_ptr<Index>> Index::Open(const IndexOptions& options) {
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<Db> db, Db::Open(options.store, options.writable));
  LAZYFS_ASSIGN_OR_RETURN(auto cas, CasDir::Open(options.store.content()));
  LAZYFS_RETURN_IF_ERROR(MakeDirs(options.store.verified_layers(), 0700));
  auto cache = std::make_shared<ContentCache>(std::move(cas), options.cache_size_bytes);
  auto check = std::make_shared<LayerCheck>(options.store.verified_layers(),
                                            options.store.content() + "/tmp", options);
  return std::unique_ptr<Index>(
      new StoredIndex(options, std::move(db), std::move(cache), std::move(check)));
}

}  // namespace lazyfs::index
