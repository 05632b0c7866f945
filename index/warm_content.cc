// Index::WarmContent: an image's missing content brought into the cache a layer at a time,
// ahead of a reader that reads every file (materialize).
#include <mutex>

#include "base/parallel.h"
#include "base/single_flight.h"
#include "base/thread_annotations.h"
#include "base/work_pool.h"
#include "index/content_source.h"
#include "index/layer_artifact.h"
#include "index/stored_index.h"
#include "index/stored_tree.h"

namespace lazyfs::index {

Result<std::vector<size_t>> StoredIndex::LayersToWarm(const ImageDescriptor& img) {
  const size_t n = img.layers.size();
  // What each layer's files in the merged tree miss in the cache.
  struct Missing {
    uint64_t files = 0, bytes = 0;
  };
  std::vector<Missing> missing(n);
  LAZYFS_RETURN_IF_ERROR(records_.ForEachInode(
      img.manifest_digest, [&](const InodeRecord& r) -> Result<bool> {
        if (r.attr.is_reg() && r.layer >= n) return Corrupt("of inode " + std::to_string(r.attr.ino));
        if (!r.attr.is_reg() || r.attr.size == 0 || cache_->Contains(r.digest)) return true;
        if (r.attr.size > kContentChunkSize) {
          // Read lazily before: it may be cached as chunks.
          LAZYFS_ASSIGN_OR_RETURN(auto loc, records_.Location(img.layers[r.layer].digest, r.digest));
          bool all = loc.has_value() && loc->chunk_count() > 0;
          for (uint64_t c = 0; all && c < loc->chunk_count(); ++c) {
            const uint64_t len = std::min(kContentChunkSize, loc->size - c * kContentChunkSize);
            all = IsZeroChunk(loc->chunk(c), len) || cache_->Contains(loc->chunk(c));
          }
          if (all) return true;
        }
        missing[r.layer].files++;
        missing[r.layer].bytes += r.attr.size;
        return true;
      }));
  // A layer is worth one pass when reading its missing files one by one would decompress about
  // as much: each lazy read decompresses from the checkpoint before the file, up to
  // checkpoint_every_uncompressed bytes away. Layers indexed from a TOC (eStargz, zstd:chunked)
  // fetch exactly their chunks and are left to reads; layers indexed before lazy reads existed
  // are extracted whole on their first miss anyway.
  std::vector<size_t> pick;
  for (size_t i = 0; i < n; ++i) {
    if (missing[i].files == 0) continue;
    const Digest& layer = img.layers[i].digest;
    LAZYFS_ASSIGN_OR_RETURN(auto rec, records_.Layer(layer));
    if (!rec) return Corrupt("of layer " + layer.Short() + " (missing)");
    LAZYFS_ASSIGN_OR_RETURN(auto lazy, records_.LazyLayer(layer));
    if (lazy) {
      const uint64_t whole = rec->uncompressed;
      if (missing[i].files * options_.checkpoint_every_uncompressed < whole &&
          missing[i].bytes * 2 < whole) {
        continue;
      }
    } else {
      LAZYFS_ASSIGN_OR_RETURN(bool toc, records_.HasTocFiles(layer));
      if (toc) continue;
    }
    // One layer blob twice in an image is read once.
    bool again = false;
    for (size_t p : pick) again = again || img.layers[p].digest == layer;
    if (!again) pick.push_back(i);
  }
  return pick;
}

// The image's distinct layers that have not passed their whole-layer check and that `needs`
// says need one, in image order.
Result<std::vector<const LayerDescriptor*>> StoredIndex::UncheckedLayers(
    const ImageDescriptor& img, const std::function<Result<bool>(const Digest&)>& needs) {
  std::vector<const LayerDescriptor*> todo;
  for (const LayerDescriptor& layer : img.layers) {
    bool again = false;
    for (const LayerDescriptor* t : todo) again = again || t->digest == layer.digest;
    if (again || check_->Passed(layer.digest)) continue;
    LAZYFS_ASSIGN_OR_RETURN(bool need, needs(layer.digest));
    if (need) todo.push_back(&layer);
  }
  return todo;
}

// A TOC layer's files are read chunk by chunk, each chunk checked against the TOC; but the TOC
// itself is checked against the tar stream only once every byte of the layer was seen. A reader
// that writes the whole image out (materialize) must not write what a TOC claims before that:
// each TOC layer not checked yet is fetched whole here (which also brings in every chunk its
// files need), and one that fails is an error naming it.
Status StoredIndex::CheckTocLayers(const ImageDescriptor& img, BlobSource& blobs,
                                   unsigned threads) {
  LAZYFS_ASSIGN_OR_RETURN(
      std::vector<const LayerDescriptor*> todo,
      UncheckedLayers(img, [&](const Digest& l) { return records_.HasTocFiles(l); }));
  if (todo.empty()) return Status::Ok();
  SingleFlight<Digest> flights;
  WorkPool pool(StoredTree::kFetchThreads);
  const SourceContext ctx{&records_, cache_.get(), &blobs, check_.get(),
                          &flights,  &pool,        &options_};
  std::vector<Status> results(todo.size());
  ParallelFor(todo.size(), threads, [&](size_t k) {
    const LayerDescriptor& layer = *todo[k];
    results[k] = [&]() -> Status {
      if (!check_->IsBad(layer.digest)) {
        LAZYFS_ASSIGN_OR_RETURN(auto source, OpenContentSource(layer, ctx));
        LAZYFS_RETURN_IF_ERROR(source->FetchRest(Deadline::Never()).status());
      }
      if (check_->IsBad(layer.digest)) {
        return DataLossError("layer " + layer.digest.Short() +
                             " failed its whole-layer check: " + check_->WhyBad(layer.digest));
      }
      if (!check_->Passed(layer.digest)) {
        return InternalError("layer " + layer.digest.Short() +
                             " was fetched whole but not checked");
      }
      return Status::Ok();
    }();
  });
  for (const Status& s : results) LAZYFS_RETURN_IF_ERROR(s);
  return Status::Ok();
}

// An artifact-indexed layer's records are claims until its tar stream says the same: before a
// reader writes the image out, each such layer is read whole (the blob verified against its
// digest by the BlobSource, which keeps it for the extraction that follows) and compared.
Status StoredIndex::CheckArtifactLayers(const ImageDescriptor& img, BlobSource& blobs,
                                        unsigned threads) {
  LAZYFS_ASSIGN_OR_RETURN(
      std::vector<const LayerDescriptor*> todo,
      UncheckedLayers(img, [&](const Digest& l) -> Result<bool> {
        LAZYFS_ASSIGN_OR_RETURN(auto provenance, records_.Provenance(l));
        return provenance.has_value();
      }));
  std::vector<Status> results(todo.size());
  ParallelFor(todo.size(), threads, [&](size_t k) {
    const LayerDescriptor& layer = *todo[k];
    results[k] = [&]() -> Status {
      if (!check_->IsBad(layer.digest)) {
        LAZYFS_ASSIGN_OR_RETURN(auto rec, records_.Layer(layer.digest));
        if (!rec) return Corrupt("of layer " + layer.digest.Short() + " (missing)");
        LAZYFS_ASSIGN_OR_RETURN(Fd blob, blobs.OpenBlob(layer.digest, layer.size));
        check_->CheckBlob(
            layer, rec->diff_id, blob.get(),
            [&] { DropLayerChunks(records_, *cache_, layer.digest); },
            [&](int fd) {
              return CheckArtifactAgainstStream(fd, layer, records_, options_, *cache_);
            });
      }
      if (check_->IsBad(layer.digest)) {
        return DataLossError("layer " + layer.digest.Short() + " is refused: " +
                             check_->WhyBad(layer.digest));
      }
      if (!check_->Passed(layer.digest)) {
        return UnavailableError("layer " + layer.digest.Short() +
                                " could not be checked against its index artifact");
      }
      return Status::Ok();
    }();
  });
  for (const Status& s : results) LAZYFS_RETURN_IF_ERROR(s);
  return Status::Ok();
}

Status StoredIndex::WarmContent(const Digest& manifest, BlobSource& blobs, unsigned threads,
                                const ProgressFn& progress) {
  TreeStats st;
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor img, records_.Image(manifest, &st));
  LAZYFS_RETURN_IF_ERROR(CheckTocLayers(img, blobs, threads));
  LAZYFS_RETURN_IF_ERROR(CheckArtifactLayers(img, blobs, threads));
  if (options_.writable) LAZYFS_RETURN_IF_ERROR(SettleArtifactLayers(img));
  LAZYFS_ASSIGN_OR_RETURN(std::vector<size_t> pick, LayersToWarm(img));
  std::vector<Status> results(pick.size());
  Mutex progress_mu;
  uint64_t done = 0;
  ParallelFor(pick.size(), threads, [&](size_t k) {
    const LayerDescriptor& layer = img.layers[pick[k]];
    results[k] = [&]() -> Status {
      LAZYFS_ASSIGN_OR_RETURN(auto rec, records_.Layer(layer.digest));
      if (!rec) return Corrupt("of layer " + layer.digest.Short() + " (missing)");
      LAZYFS_ASSIGN_OR_RETURN(auto entries, records_.Entries(layer.digest, *rec));
      return cache_->ExtractLayer(layer, blobs, entries, StreamReadOptions(options_, layer.size));
    }();
    MutexLock lock(progress_mu);
    ++done;
    if (progress) progress({"fetch", layer.digest.Short(), done, pick.size()});
  });
  for (size_t k = 0; k < pick.size(); ++k) {
    LAZYFS_RETURN_IF_ERROR(
        results[k].WithContext("while reading layer " + img.layers[pick[k]].digest.Short()));
  }
  return Status::Ok();
}

}  // namespace lazyfs::index
