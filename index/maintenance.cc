// Maintenance of a store's index and content cache: gc, removing images, fsck.
#include <set>

#include "index/stored_index.h"

namespace lazyfs::index {

Result<std::set<Digest>> StoredIndex::ReferencedContent() {
  // Everything a stored image can read: its files' digests and their chunks' digests.
  std::set<Digest> layers;
  LAZYFS_RETURN_IF_ERROR(records_.ForEachImage([&](const ImageDescriptor& img, const TreeStats&) {
    for (const LayerDescriptor& l : img.layers) layers.insert(l.digest);
    return Status::Ok();
  }));
  std::set<Digest> referenced;
  for (const Digest& layer : layers) {
    LAZYFS_ASSIGN_OR_RETURN(auto rec, records_.Layer(layer));
    if (!rec) return Corrupt("of layer " + layer.Short() + " (missing)");
    LAZYFS_ASSIGN_OR_RETURN(auto entries, records_.Entries(layer, *rec));
    for (const LayerEntry& e : entries) {
      if (e.kind == EntryKind::kFile) referenced.insert(e.digest);
    }
    LAZYFS_RETURN_IF_ERROR(records_.ForEachLocation(layer, [&](const FileLocation& loc) {
      referenced.insert(loc.chunks.begin(), loc.chunks.end());
    }));
    LAZYFS_RETURN_IF_ERROR(records_.ForEachTocFile(layer, [&](const std::vector<TocChunk>& chunks) {
      for (const TocChunk& c : chunks) referenced.insert(c.digest);
    }));
  }
  return referenced;
}

Result<GcReport> StoredIndex::Gc() {
  LAZYFS_ASSIGN_OR_RETURN(std::set<Digest> referenced, ReferencedContent());
  LAZYFS_ASSIGN_OR_RETURN(
      ContentCache::EvictReport r,
      cache_->Evict(options_.cache_size_bytes,
                    [&](const Digest& d) { return referenced.count(d) == 0; }));
  // What was recorded of whole-layer checks, for layers no stored image holds any more.
  std::set<Digest> layers;
  LAZYFS_RETURN_IF_ERROR(records_.ForEachImage([&](const ImageDescriptor& img, const TreeStats&) {
    for (const LayerDescriptor& l : img.layers) layers.insert(l.digest);
    return Status::Ok();
  }));
  check_->Forget([&](const Digest& d) { return layers.count(d) != 0; });
  return GcReport{r.objects_removed, r.bytes_removed, r.objects_kept, r.bytes_kept};
}

Status StoredIndex::RemoveImage(const Digest& manifest) {
  LAZYFS_RETURN_IF_ERROR(Writable());
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor gone, GetImage(manifest));
  // Layers another stored image still uses keep their records.
  std::set<Digest> shared;
  LAZYFS_RETURN_IF_ERROR(records_.ForEachImage([&](const ImageDescriptor& img, const TreeStats&) {
    if (img.manifest_digest == manifest) return Status::Ok();
    for (const LayerDescriptor& l : img.layers) shared.insert(l.digest);
    return Status::Ok();
  }));
  RecordBatch batch;
  batch.DeleteImage(manifest);
  LAZYFS_RETURN_IF_ERROR(records_.ForEachRef([&](std::string_view ref, const Digest& m) {
    if (m == manifest) batch.DeleteRef(ref);
    return Status::Ok();
  }));
  for (const LayerDescriptor& l : gone.layers) {
    if (!shared.count(l.digest)) batch.DeleteLayer(l.digest);
  }
  return db_->Write(batch.rocks());
}

Result<IndexCheckReport> StoredIndex::Check() {
  IndexCheckReport report;
  std::set<Digest> manifests;
  LAZYFS_RETURN_IF_ERROR(records_.ForEachImage([&](const ImageDescriptor& img,
                                                   const TreeStats& st) -> Status {
    ++report.images;
    manifests.insert(img.manifest_digest);
    const std::string name = "image " + img.manifest_digest.Short() + " (" + img.reference + ")";
    for (const LayerDescriptor& l : img.layers) {
      auto rec = records_.Layer(l.digest);
      if (!rec.ok() || !*rec) {
        report.problems.push_back(name + ": layer " + l.digest.Short() + " is not indexed");
        continue;
      }
      ++report.layers;
      auto entries = records_.Entries(l.digest, **rec);
      if (!entries.ok()) {
        report.problems.push_back(name + ": layer " + l.digest.Short() + ": " +
                                  entries.status().message());
      }
    }
    // The tree: inode records 1..inodes, no more, no fewer.
    uint64_t inodes = 0;
    Status scan = records_.ForEachInode(img.manifest_digest, [&](const InodeRecord& r) {
      if (r.attr.ino != inodes + 1) {
        report.problems.push_back(name + ": inode " + std::to_string(inodes + 1) + " is missing");
        return Result<bool>(false);
      }
      inodes = r.attr.ino;
      return Result<bool>(true);
    });
    if (!scan.ok() && scan.code() != StatusCode::kDataLoss) return scan;
    if (!scan.ok()) report.problems.push_back(name + ": " + scan.message());
    report.inodes += inodes;
    if (inodes != st.inodes) {
      report.problems.push_back(name + ": " + std::to_string(inodes) + " inode records, " +
                                std::to_string(st.inodes) + " expected");
    }
    return Status::Ok();
  }));
  LAZYFS_RETURN_IF_ERROR(records_.ForEachRef([&](std::string_view ref, const Digest& m) {
    ++report.refs;
    if (!manifests.count(m)) {
      report.problems.push_back("reference " + std::string(ref) + " points at " + m.Short() +
                                ", which is not stored");
    }
    return Status::Ok();
  }));
  return report;
}

Result<CasDir::CheckReport> StoredIndex::CheckContent(bool repair) {
  return cache_->cas().Check(repair);
}

}  // namespace lazyfs::index
