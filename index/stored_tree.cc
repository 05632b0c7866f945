#include "index/stored_tree.h"

#include "base/stats.h"

namespace lazyfs::index {

StoredTree::StoredTree(std::shared_ptr<Db> db, ImageDescriptor image, TreeStats stats,
                       BlobSource& blobs, std::shared_ptr<ContentCache> cache,
                       std::shared_ptr<LayerCheck> check, const IndexOptions& options)
    : db_(std::move(db)), records_(*db_), image_(std::move(image)), stats_(stats), blobs_(blobs),
      cache_(std::move(cache)), check_(std::move(check)), options_(options) {
  {
    MutexLock lock(sources_mu_);
    sources_.resize(image_.layers.size());
  }
  prefetch_ = std::make_unique<Prefetcher>(
      options_.prefetch, *this, image_, [this](size_t layer) { return SourceOf(layer); },
      options_.read_timeout);
}

StoredTree::~StoredTree() {
  prefetch_.reset();
  cancel_.Cancel();
}

Result<InodeRecord> StoredTree::Inode(uint64_t ino) const {
  if (ino == 0 || ino > stats_.inodes) return NotFoundError("no inode " + std::to_string(ino));
  return records_.Inode(image_.manifest_digest, ino);
}

Result<Attr> StoredTree::GetAttr(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
  return r.attr;
}

Result<Attr> StoredTree::Lookup(uint64_t parent, std::string_view name) const {
  LAZYFS_ASSIGN_OR_RETURN(auto child, records_.Child(image_.manifest_digest, parent, name));
  if (!child) {
    LAZYFS_ASSIGN_OR_RETURN(InodeRecord p, Inode(parent));
    if (!p.attr.is_dir()) return NotADirectoryError("inode " + std::to_string(parent));
    return NotFoundError("no entry \"" + std::string(name) + "\"");
  }
  return GetAttr(*child);
}

Result<std::vector<DirEntry>> StoredTree::ReadDir(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
  if (!r.attr.is_dir()) return NotADirectoryError("inode " + std::to_string(ino));
  return records_.Children(image_.manifest_digest, ino);
}

Result<std::string> StoredTree::ReadLink(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
  if (!r.attr.is_symlink()) return NotASymlinkError("inode " + std::to_string(ino));
  return r.link;
}

Result<std::vector<Xattr>> StoredTree::ListXattrs(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
  return r.xattrs;
}

Result<Digest> StoredTree::ContentDigest(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
  if (!r.attr.is_reg()) return NotARegularFileError("inode " + std::to_string(ino));
  return r.digest;
}

Result<Tree::ContentLayout> StoredTree::Layout(uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
  if (!r.attr.is_reg()) return NotARegularFileError("inode " + std::to_string(ino));
  ContentLayout l;
  if (r.attr.size > kContentChunkSize && r.layer < image_.layers.size()) {
    LAZYFS_ASSIGN_OR_RETURN(auto loc, records_.Location(image_.layers[r.layer].digest, r.digest));
    if (loc && loc->sparse) {
      l.sparse = true;
      l.data = DataOfChunks(loc->size, loc->chunks);
      return l;
    }
  }
  if (r.attr.size > 0) l.data.emplace_back(0, r.attr.size);
  return l;
}

Result<size_t> StoredTree::Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const {
  LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
  if (r.attr.is_dir()) return IsADirectoryError("inode " + std::to_string(ino));
  if (!r.attr.is_reg()) return NotARegularFileError("inode " + std::to_string(ino));
  if (offset >= r.attr.size || out.empty()) return size_t{0};
  const size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), r.attr.size - offset));
  Prefetcher::Foreground foreground(prefetch_.get());
  bool fetched = false;
  auto n = ReadContent(r, offset, out.first(want), &fetched);
  static StatCounter& hits = Counter(kStatCacheHits);
  static StatCounter& misses = Counter(kStatCacheMisses);
  (fetched ? misses : hits).Add();
  return n;
}

Result<size_t> StoredTree::ReadContent(const InodeRecord& r, uint64_t offset,
                                       std::span<std::byte> out, bool* fetched) const {
  if (r.layer >= image_.layers.size()) return Corrupt("of inode " + std::to_string(r.attr.ino));
  const LayerDescriptor& layer = image_.layers[r.layer];
  if (check_->IsBad(layer.digest)) {
    return DataLossError("layer " + layer.digest.Short() +
                         " failed its whole-layer check: " + check_->WhyBad(layer.digest));
  }
  LAZYFS_ASSIGN_OR_RETURN(ContentSource * source, SourceOf(r.layer));
  // A whole-file object: a file of one chunk, or one stored with its whole layer.
  if (source->TrustsCached(r.digest)) {
    auto n = cache_->Read(r.digest, offset, out);
    if (n.ok() || n.status().code() != StatusCode::kNotFound) return n;
  }
  return source->Read(r.digest, r.attr.size, offset, out,
                      cancel_.In(options_.read_timeout), fetched);
}

Result<ContentSource*> StoredTree::SourceOf(size_t layer) const {
  MutexLock lock(sources_mu_);
  std::unique_ptr<ContentSource>& slot = sources_.at(layer);
  if (!slot) {
    const SourceContext ctx{&records_, cache_.get(), &blobs_, check_.get(), &flights_, &pool_,
                            &options_};
    LAZYFS_ASSIGN_OR_RETURN(slot, OpenContentSource(image_.layers[layer], ctx));
  }
  return slot.get();
}

}  // namespace lazyfs::index
