// The RocksDB-backed Index and Tree (schema.h), and the content cache behind Tree::Read.
//
// Sharing one store between processes: indexing takes an exclusive flock on STORE/index.lock
// and opens RocksDB as its primary; everything that only reads (a mount, materialize) opens a
// RocksDB secondary instance in a private directory under STORE/index.readers, which never
// takes RocksDB's lock. Readers see the index as it was when they opened it; images are only
// ever added, so that is all they need. File contents live in STORE/content, a CasDir keyed by
// the file's sha256: every object is written to a temporary name and renamed once its digest
// matches, so a killed process never leaves a partial file where a reader looks.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <unordered_map>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "base/cas_dir.h"
#include "base/fd.h"
#include "base/log.h"
#include "index/codec.h"
#include "index/layer_reader.h"
#include "index/merge.h"
#include "index/schema.h"
#include "index/tree.h"

namespace lazyfs::index {
namespace {

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNotFound()) return NotFoundError(std::string(what) + ": not found");
  if (s.IsNoSpace()) return ResourceExhaustedError(std::string(what) + ": " + s.ToString());
  if (s.IsCorruption()) return DataLossError(std::string(what) + ": " + s.ToString());
  return Status(StatusCode::kUnavailable, std::string(what) + ": " + s.ToString(), EIO);
}

Status Corrupt(std::string_view what) {
  return DataLossError("index record " + std::string(what) + " is damaged; run lazyfs fsck");
}

// ---- records -------------------------------------------------------------------------------

struct InodeRecord {
  Attr attr;
  std::string link;
  Digest digest;
  uint32_t layer = 0;
  std::vector<Xattr> xattrs;
};

std::string EncodeInode(const MergedInode& m) {
  Encoder e;
  e.Varint(m.attr.mode);
  e.Varint(m.attr.uid);
  e.Varint(m.attr.gid);
  e.Varint(m.attr.size);
  e.Varint(m.attr.nlink);
  e.Signed(m.attr.mtime_sec);
  e.Varint(m.attr.mtime_nsec);
  e.Varint(m.attr.rdev_major);
  e.Varint(m.attr.rdev_minor);
  e.Bytes(m.link);
  if (S_ISREG(m.attr.mode)) {
    e.DigestBytes(m.digest);
    e.Varint(m.layer);
  }
  e.Varint(m.xattrs.size());
  for (const Xattr& x : m.xattrs) {
    e.Bytes(x.name);
    e.Bytes(x.value);
  }
  return e.Take();
}

bool DecodeInode(std::string_view v, uint64_t ino, InodeRecord* r) {
  Decoder d(v);
  r->attr.ino = ino;
  uint64_t nx;
  if (!d.VarintAs(&r->attr.mode) || !d.VarintAs(&r->attr.uid) || !d.VarintAs(&r->attr.gid) ||
      !d.Varint(&r->attr.size) || !d.VarintAs(&r->attr.nlink) || !d.Signed(&r->attr.mtime_sec) ||
      !d.VarintAs(&r->attr.mtime_nsec) || !d.VarintAs(&r->attr.rdev_major) ||
      !d.VarintAs(&r->attr.rdev_minor) || !d.Bytes(&r->link)) {
    return false;
  }
  if (S_ISREG(r->attr.mode) && (!d.DigestBytes(&r->digest) || !d.VarintAs(&r->layer))) {
    return false;
  }
  if (!d.Varint(&nx) || nx > (1u << 16)) return false;
  r->xattrs.resize(nx);
  for (Xattr& x : r->xattrs) {
    if (!d.Bytes(&x.name) || !d.Bytes(&x.value)) return false;
  }
  return d.done();
}

void EncodeDigestOpt(Encoder& e, const std::optional<Digest>& d) {
  e.U8(d ? 1 : 0);
  if (d) e.DigestBytes(*d);
}
bool DecodeDigestOpt(Decoder& d, std::optional<Digest>* out) {
  uint8_t has;
  if (!d.U8(&has)) return false;
  if (!has) {
    out->reset();
    return true;
  }
  Digest x;
  if (!d.DigestBytes(&x)) return false;
  *out = x;
  return true;
}

std::string EncodeImage(const ImageDescriptor& img, const TreeStats& st) {
  Encoder e;
  e.U8(1);
  e.Bytes(img.reference);
  e.DigestBytes(img.manifest_digest);
  e.Bytes(img.manifest_media_type);
  e.DigestBytes(img.config_digest);
  e.Bytes(img.platform);
  e.Varint(img.layers.size());
  for (const LayerDescriptor& l : img.layers) {
    e.DigestBytes(l.digest);
    e.Bytes(l.media_type);
    e.Varint(l.size);
    EncodeDigestOpt(e, l.diff_id);
    e.Varint(l.annotations.size());
    for (const auto& [k, v] : l.annotations) {
      e.Bytes(k);
      e.Bytes(v);
    }
  }
  e.Varint(st.inodes);
  e.Varint(st.directories);
  e.Varint(st.regular_files);
  e.Varint(st.content_bytes);
  e.Varint(st.xattr_bytes);
  return e.Take();
}

bool DecodeImage(std::string_view v, ImageDescriptor* img, TreeStats* st) {
  Decoder d(v);
  uint8_t version;
  uint64_t nlayers;
  if (!d.U8(&version) || version != 1 || !d.Bytes(&img->reference) ||
      !d.DigestBytes(&img->manifest_digest) || !d.Bytes(&img->manifest_media_type) ||
      !d.DigestBytes(&img->config_digest) || !d.Bytes(&img->platform) || !d.Varint(&nlayers) ||
      nlayers > 100000) {
    return false;
  }
  img->layers.resize(nlayers);
  for (LayerDescriptor& l : img->layers) {
    uint64_t na;
    if (!d.DigestBytes(&l.digest) || !d.Bytes(&l.media_type) || !d.Varint(&l.size) ||
        !DecodeDigestOpt(d, &l.diff_id) || !d.Varint(&na) || na > 100000) {
      return false;
    }
    for (uint64_t i = 0; i < na; ++i) {
      std::string k, val;
      if (!d.Bytes(&k) || !d.Bytes(&val)) return false;
      l.annotations[k] = val;
    }
  }
  return d.Varint(&st->inodes) && d.Varint(&st->directories) && d.Varint(&st->regular_files) &&
         d.Varint(&st->content_bytes) && d.Varint(&st->xattr_bytes) && d.done();
}

struct LayerRecord {
  Digest diff_id;
  uint64_t entries = 0;
  uint32_t chunks = 0;
  uint64_t uncompressed = 0;
};

std::string EncodeLayer(const LayerRecord& r) {
  Encoder e;
  e.U8(1);
  e.DigestBytes(r.diff_id);
  e.Varint(r.entries);
  e.Varint(r.chunks);
  e.Varint(r.uncompressed);
  return e.Take();
}

bool DecodeLayer(std::string_view v, LayerRecord* r) {
  Decoder d(v);
  uint8_t version;
  return d.U8(&version) && version == 1 && d.DigestBytes(&r->diff_id) && d.Varint(&r->entries) &&
         d.VarintAs(&r->chunks) && d.Varint(&r->uncompressed) && d.done();
}

// ---- the database handle shared by an Index and the Trees it opened --------------------------

struct Db {
  std::unique_ptr<rocksdb::DB> db;
  std::string secondary_dir;  // removed on close
  Fd lock;                    // the writer's flock

  ~Db() {
    if (db) {
      if (secondary_dir.empty()) db->Flush(rocksdb::FlushOptions()).PermitUncheckedError();
      db->Close().PermitUncheckedError();
      db.reset();
    }
    if (!secondary_dir.empty()) RemoveTree(secondary_dir).IgnoreError();
  }

  Result<std::optional<std::string>> Get(std::string_view key) const {
    std::string v;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &v);
    if (s.IsNotFound()) return std::optional<std::string>();
    LAZYFS_RETURN_IF_ERROR(FromRocks(s, "index read"));
    return std::optional<std::string>(std::move(v));
  }
};

// ---- the content cache and layer extraction ---------------------------------------------------

// Extracts layers into the content cache, one extraction per layer at a time (concurrent misses
// on the same layer wait for the one in flight). Thread-safe.
class ContentCache {
 public:
  ContentCache(std::unique_ptr<CasDir> cas, LayerReadOptions read_options)
      : cas_(std::move(cas)), read_options_(read_options) {}

  // An open, verified content object, or NotFound.
  Result<std::shared_ptr<Fd>> Open(const Digest& d) {
    {
      std::lock_guard lock(mu_);
      if (auto it = fds_.find(d); it != fds_.end()) return it->second;
    }
    LAZYFS_ASSIGN_OR_RETURN(Fd fd, cas_->OpenVerified(d));
    auto shared = std::make_shared<Fd>(std::move(fd));
    std::lock_guard lock(mu_);
    if (fds_.size() >= kMaxOpen) fds_.erase(fds_.begin());
    fds_.emplace(d, shared);
    return shared;
  }

  bool Contains(const Digest& d) const { return cas_->Contains(d); }

  // Re-reads a layer and stores every regular file in it that the cache lacks. `indexed` is
  // the layer's entry list from the index, in archive order: each file's bytes must match the
  // digest recorded there, so what lands in the cache chains up to the manifest.
  Status ExtractLayer(const LayerDescriptor& layer, BlobSource& blobs,
                      const std::vector<LayerEntry>& indexed) {
    std::shared_future<Status> wait;
    std::promise<Status> mine;
    {
      std::lock_guard lock(mu_);
      auto it = inflight_.find(layer.digest);
      if (it != inflight_.end()) {
        wait = it->second;
      } else {
        inflight_.emplace(layer.digest, mine.get_future().share());
      }
    }
    if (wait.valid()) return wait.get();
    Status s = DoExtract(layer, blobs, indexed);
    mine.set_value(s);
    std::lock_guard lock(mu_);
    inflight_.erase(layer.digest);
    return s;
  }

 private:
  static constexpr size_t kMaxOpen = 512;

  Status DoExtract(const LayerDescriptor& layer, BlobSource& blobs,
                   const std::vector<LayerEntry>& indexed) {
    LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
    LAZYFS_ASSIGN_OR_RETURN(Fd blob, blobs.OpenBlob(layer.digest, layer.size));
    LAZYFS_ASSIGN_OR_RETURN(auto reader, LayerReader::Open(blob.get(), layer.size, comp,
                                                           read_options_, layer.digest.Short()));
    LayerEntry e;
    for (size_t i = 0;; ++i) {
      LAZYFS_ASSIGN_OR_RETURN(bool more, reader->Next(&e));
      if (!more) break;
      if (i >= indexed.size() || indexed[i].path != e.path || indexed[i].kind != e.kind) {
        return DataLossError("layer " + layer.digest.Short() +
                             " no longer matches its index at entry \"" + e.path + "\"");
      }
      if (e.kind != EntryKind::kFile || e.size == 0 || cas_->Contains(indexed[i].digest)) continue;
      LAZYFS_ASSIGN_OR_RETURN(auto writer,
                              cas_->BeginWrite(indexed[i].digest, static_cast<int64_t>(e.size)));
      LAZYFS_ASSIGN_OR_RETURN(Digest got, reader->ReadData([&](const char* p, size_t n) {
        return writer->Write(p, n);
      }));
      (void)got;
      LAZYFS_RETURN_IF_ERROR(writer->Commit().WithContext("file \"" + e.path + "\" of layer " +
                                                          layer.digest.Short()));
    }
    return Status::Ok();
  }

  std::unique_ptr<CasDir> cas_;
  LayerReadOptions read_options_;
  std::mutex mu_;
  std::map<Digest, std::shared_ptr<Fd>> fds_;                    // GUARDED_BY(mu_)
  std::map<Digest, std::shared_future<Status>> inflight_;       // GUARDED_BY(mu_)
};


Result<std::vector<LayerEntry>> LoadLayerEntries(const Db& db, const Digest& layer,
                                                 const LayerRecord& rec) {
  std::vector<LayerEntry> out;
  out.reserve(rec.entries);
  for (uint32_t c = 0; c < rec.chunks; ++c) {
    LAZYFS_ASSIGN_OR_RETURN(auto v, db.Get(schema::ChunkKey(layer, c)));
    if (!v) return Corrupt("of layer " + layer.Short() + " (missing chunk)");
    Decoder d(*v);
    while (!d.done()) {
      LayerEntry e;
      if (!DecodeLayerEntry(d, &e)) return Corrupt("of layer " + layer.Short());
      out.push_back(std::move(e));
    }
  }
  if (out.size() != rec.entries) return Corrupt("of layer " + layer.Short() + " (entry count)");
  return out;
}

Result<std::optional<LayerRecord>> GetLayerRecord(const Db& db, const Digest& layer) {
  LAZYFS_ASSIGN_OR_RETURN(auto v, db.Get(schema::LayerKey(layer)));
  if (!v) return std::optional<LayerRecord>();
  LayerRecord r;
  if (!DecodeLayer(*v, &r)) return Corrupt("of layer " + layer.Short());
  return std::optional<LayerRecord>(r);
}

// ---- Tree -------------------------------------------------------------------------------------

Status Errno(StatusCode code, int err, std::string msg) { return Status(code, std::move(msg), err); }

class StoredTree final : public Tree {
 public:
  StoredTree(std::shared_ptr<Db> db, ImageDescriptor image, TreeStats stats, BlobSource& blobs,
             std::shared_ptr<ContentCache> cache)
      : db_(std::move(db)), image_(std::move(image)), stats_(stats), blobs_(blobs),
        cache_(std::move(cache)) {}

  Result<Attr> GetAttr(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
    return r.attr;
  }

  Result<Attr> Lookup(uint64_t parent, std::string_view name) const override {
    std::string key = schema::DirPrefix(image_.manifest_digest, parent);
    key.append(name);
    LAZYFS_ASSIGN_OR_RETURN(auto v, db_->Get(key));
    if (!v) {
      LAZYFS_ASSIGN_OR_RETURN(InodeRecord p, Inode(parent));
      if (!p.attr.is_dir()) return Errno(StatusCode::kFailedPrecondition, ENOTDIR, "not a directory");
      return NotFoundError("no entry \"" + std::string(name) + "\"");
    }
    if (v->size() < 8) return Corrupt("directory entry");
    return GetAttr(schema::ReadBe64(*v));
  }

  Result<std::vector<DirEntry>> ReadDir(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
    if (!r.attr.is_dir()) return Errno(StatusCode::kFailedPrecondition, ENOTDIR, "not a directory");
    const std::string prefix = schema::DirPrefix(image_.manifest_digest, ino);
    std::vector<DirEntry> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      DirEntry e;
      e.name = it->key().ToString().substr(prefix.size());
      const rocksdb::Slice v = it->value();
      if (v.size() < 8) return Corrupt("directory entry");
      e.ino = schema::ReadBe64(std::string_view(v.data(), 8));
      Decoder d(std::string_view(v.data() + 8, v.size() - 8));
      if (!d.VarintAs(&e.mode)) return Corrupt("directory entry");
      out.push_back(std::move(e));
    }
    LAZYFS_RETURN_IF_ERROR(FromRocks(it->status(), "index read"));
    return out;
  }

  Result<std::string> ReadLink(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
    if (!r.attr.is_symlink()) return Errno(StatusCode::kFailedPrecondition, EINVAL, "not a symlink");
    return r.link;
  }

  Result<std::vector<Xattr>> ListXattrs(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
    return r.xattrs;
  }

  Result<Digest> ContentDigest(uint64_t ino) const override {
    LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
    if (!r.attr.is_reg()) return Errno(StatusCode::kFailedPrecondition, EINVAL, "not a file");
    return r.digest;
  }

  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const override {
    LAZYFS_ASSIGN_OR_RETURN(InodeRecord r, Inode(ino));
    if (r.attr.is_dir()) return Errno(StatusCode::kFailedPrecondition, EISDIR, "is a directory");
    if (!r.attr.is_reg()) return Errno(StatusCode::kFailedPrecondition, EINVAL, "not a file");
    if (offset >= r.attr.size || out.empty()) return size_t{0};
    const size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), r.attr.size - offset));
    auto fd = cache_->Open(r.digest);
    if (!fd.ok() && fd.status().code() == StatusCode::kNotFound) {
      LAZYFS_RETURN_IF_ERROR(Fill(r));
      fd = cache_->Open(r.digest);
    }
    if (!fd.ok()) return fd.status();
    LAZYFS_ASSIGN_OR_RETURN(size_t n, PreadFull((*fd)->get(), out.data(), want, offset));
    if (n != want) return DataLossError("cached content " + r.digest.Short() + " is short");
    return n;
  }

  TreeStats Stats() const override { return stats_; }

 private:
  Result<InodeRecord> Inode(uint64_t ino) const {
    if (ino == 0 || ino > stats_.inodes) return NotFoundError("no inode " + std::to_string(ino));
    LAZYFS_ASSIGN_OR_RETURN(auto v, db_->Get(schema::InodeKey(image_.manifest_digest, ino)));
    if (!v) return Corrupt("of inode " + std::to_string(ino) + " (missing)");
    InodeRecord r;
    if (!DecodeInode(*v, ino, &r)) return Corrupt("of inode " + std::to_string(ino));
    return r;
  }

  // Brings a file's content into the cache: for now by extracting the layer that holds it.
  Status Fill(const InodeRecord& r) const {
    if (r.layer >= image_.layers.size()) return Corrupt("of inode " + std::to_string(r.attr.ino));
    const LayerDescriptor& layer = image_.layers[r.layer];
    LAZYFS_ASSIGN_OR_RETURN(auto rec, GetLayerRecord(*db_, layer.digest));
    if (!rec) return Corrupt("of layer " + layer.digest.Short() + " (missing)");
    LAZYFS_ASSIGN_OR_RETURN(auto entries, LoadLayerEntries(*db_, layer.digest, *rec));
    LAZYFS_RETURN_IF_ERROR(cache_->ExtractLayer(layer, blobs_, entries));
    if (!cache_->Contains(r.digest)) {
      return DataLossError("layer " + layer.digest.Short() + " does not hold content " +
                           r.digest.Short());
    }
    return Status::Ok();
  }

  std::shared_ptr<Db> db_;
  const ImageDescriptor image_;
  const TreeStats stats_;
  BlobSource& blobs_;
  std::shared_ptr<ContentCache> cache_;
};

// ---- Index ------------------------------------------------------------------------------------

class StoredIndex final : public Index {
 public:
  StoredIndex(IndexOptions options, std::shared_ptr<Db> db, std::shared_ptr<ContentCache> cache)
      : options_(std::move(options)), db_(std::move(db)), cache_(std::move(cache)) {}

  Result<bool> HasImage(const Digest& manifest) override {
    LAZYFS_ASSIGN_OR_RETURN(auto v, db_->Get(schema::ImageKey(manifest)));
    return v.has_value();
  }

  Status AddImage(const ImageDescriptor& image, BlobSource& blobs,
                  const ProgressFn& progress) override {
    if (!options_.writable) return FailedPreconditionError("index opened read-only");
    LAZYFS_ASSIGN_OR_RETURN(bool has, HasImage(image.manifest_digest));
    if (has) return Status::Ok();
    // New layer records are written together with the tree, so a failed image (a hostile
    // entry in its third layer, say) leaves the index exactly as it was.
    rocksdb::WriteBatch layer_records;
    std::vector<std::vector<LayerEntry>> layers;
    for (const LayerDescriptor& layer : image.layers) {
      LAZYFS_ASSIGN_OR_RETURN(auto entries, LayerEntries(layer, blobs, progress, layer_records));
      layers.push_back(std::move(entries));
    }
    auto merged = MergeLayers(layers);
    if (!merged.ok()) return merged.status();
    LAZYFS_RETURN_IF_ERROR(FromRocks(db_->db->Write(WriteOptions(), &layer_records), "index write"));
    return StoreTree(image, *merged);
  }

  Status SetRef(std::string_view ref, const Digest& manifest) override {
    if (!options_.writable) return FailedPreconditionError("index opened read-only");
    const std::string v(reinterpret_cast<const char*>(manifest.bytes().data()), 32);
    return FromRocks(db_->db->Put(WriteOptions(), schema::RefKey(ref), v), "index write");
  }

  Result<std::optional<Digest>> LookupRef(std::string_view ref) override {
    LAZYFS_ASSIGN_OR_RETURN(auto v, db_->Get(schema::RefKey(ref)));
    if (!v) return std::optional<Digest>();
    Decoder d(*v);
    Digest m;
    if (!d.DigestBytes(&m) || !d.done()) return Corrupt("of reference " + std::string(ref));
    return std::optional<Digest>(m);
  }

  Result<ImageDescriptor> GetImage(const Digest& manifest) override {
    TreeStats st;
    return GetImageAndStats(manifest, &st);
  }

  Result<std::unique_ptr<Tree>> OpenTree(const Digest& manifest, BlobSource& blobs) override {
    TreeStats st;
    LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor img, GetImageAndStats(manifest, &st));
    return std::unique_ptr<Tree>(new StoredTree(db_, std::move(img), st, blobs, cache_));
  }

 private:
  static rocksdb::WriteOptions WriteOptions() { return rocksdb::WriteOptions(); }

  Result<ImageDescriptor> GetImageAndStats(const Digest& manifest, TreeStats* st) {
    LAZYFS_ASSIGN_OR_RETURN(auto v, db_->Get(schema::ImageKey(manifest)));
    if (!v) return NotFoundError("image " + manifest.ToString() + " is not in the index");
    ImageDescriptor img;
    if (!DecodeImage(*v, &img, st)) return Corrupt("of image " + manifest.Short());
    return img;
  }

  Result<std::vector<LayerEntry>> LayerEntries(const LayerDescriptor& layer, BlobSource& blobs,
                                               const ProgressFn& progress,
                                               rocksdb::WriteBatch& batch) {
    LAZYFS_ASSIGN_OR_RETURN(auto rec, GetLayerRecord(*db_, layer.digest));
    if (rec) return LoadLayerEntries(*db_, layer.digest, *rec);

    const std::string name = layer.digest.Short();
    LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
    LAZYFS_ASSIGN_OR_RETURN(Fd blob, blobs.OpenBlob(layer.digest, layer.size));
    LayerReadOptions ro;
    ro.max_entries = options_.max_entries_per_layer;
    ro.max_xattr_bytes_per_entry = options_.max_xattr_bytes_per_entry;
    LAZYFS_ASSIGN_OR_RETURN(auto reader, LayerReader::Open(blob.get(), layer.size, comp, ro, name));
    std::vector<LayerEntry> entries;
    uint64_t last_report = 0;
    for (;;) {
      LayerEntry e;
      LAZYFS_ASSIGN_OR_RETURN(bool more, reader->Next(&e));
      if (!more) break;
      if (e.kind == EntryKind::kFile) {
        auto digest = reader->ReadData(nullptr);
        if (!digest.ok()) {
          return Status(digest.status().code(),
                        digest.status().message() + " (in entry \"" + e.path + "\")");
        }
        e.digest = *digest;
      }
      entries.push_back(std::move(e));
      if (progress && reader->compressed_bytes_read() - last_report >= (4 << 20)) {
        last_report = reader->compressed_bytes_read();
        progress({"index", name, last_report, layer.size});
      }
    }
    LAZYFS_ASSIGN_OR_RETURN(Digest diff_id, reader->Finish());
    if (layer.diff_id && *layer.diff_id != diff_id) {
      return DataLossError("layer " + name + ": uncompressed content is " + diff_id.ToString() +
                           " but the image config says diff_id " + layer.diff_id->ToString());
    }
    if (progress) progress({"index", name, layer.size, layer.size});

    LayerRecord r;
    r.diff_id = diff_id;
    r.entries = entries.size();
    r.uncompressed = reader->uncompressed_bytes();
    for (size_t i = 0; i < entries.size(); i += schema::kEntriesPerChunk) {
      Encoder enc;
      for (size_t j = i; j < std::min(entries.size(), i + schema::kEntriesPerChunk); ++j) {
        EncodeLayerEntry(entries[j], enc);
      }
      batch.Put(schema::ChunkKey(layer.digest, r.chunks++), enc.data());
    }
    batch.Put(schema::LayerKey(layer.digest), EncodeLayer(r));
    return entries;
  }

  Status StoreTree(const ImageDescriptor& image, const MergedTree& tree) {
    const Digest& m = image.manifest_digest;
    rocksdb::WriteBatch batch;
    auto flush = [&]() -> Status {
      LAZYFS_RETURN_IF_ERROR(FromRocks(db_->db->Write(WriteOptions(), &batch), "index write"));
      batch.Clear();
      return Status::Ok();
    };
    for (const MergedInode& in : tree.inodes) {
      batch.Put(schema::InodeKey(m, in.attr.ino), EncodeInode(in));
      for (const DirEntry& c : in.children) {
        std::string key = schema::DirPrefix(m, in.attr.ino);
        key += c.name;
        std::string v;
        schema::AppendBe(v, c.ino, 8);
        Encoder enc;
        enc.Varint(c.mode);
        v += enc.data();
        batch.Put(key, v);
      }
      if (batch.GetDataSize() > (32u << 20)) LAZYFS_RETURN_IF_ERROR(flush());
    }
    // The image record goes last: until it is written, the image does not exist.
    batch.Put(schema::ImageKey(m), EncodeImage(image, tree.stats));
    LAZYFS_RETURN_IF_ERROR(flush());
    return FromRocks(db_->db->Flush(rocksdb::FlushOptions()), "index flush");
  }

  const IndexOptions options_;
  std::shared_ptr<Db> db_;
  std::shared_ptr<ContentCache> cache_;
};

std::string FeatureNames(uint64_t bits) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(bits));
  return buf;
}

Status CheckFormat(const std::string& value, const std::string& path, bool writable) {
  Decoder d(value);
  uint64_t version, compat, ro_compat, incompat;
  if (!d.Varint(&version) || !d.Varint(&compat) || !d.Varint(&ro_compat) ||
      !d.Varint(&incompat)) {
    return DataLossError("store index " + path + " has a damaged format record");
  }
  const uint64_t unknown_incompat = incompat & ~schema::kIncompatKnown;
  if (unknown_incompat) {
    return FailedPreconditionError(
        "store index " + path + " was written by a newer lazyfs (format " +
        std::to_string(version) + ", incompatible features " + FeatureNames(unknown_incompat) +
        " unknown to this version); upgrade lazyfs or use another --store");
  }
  const uint64_t unknown_ro = ro_compat & ~schema::kRoCompatKnown;
  if (unknown_ro && writable) {
    return FailedPreconditionError(
        "store index " + path + " was written by a newer lazyfs (format " +
        std::to_string(version) + ", read-only-compatible features " + FeatureNames(unknown_ro) +
        "): this version can read it but not add images; upgrade lazyfs or use another --store");
  }
  return Status::Ok();
}

// Removes reader directories left by processes that no longer exist (killed readers).
void CleanStaleReaders(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* de = readdir(d)) {
    const long pid = std::strtol(de->d_name, nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      stale.push_back(dir + "/" + de->d_name);
    }
  }
  closedir(d);
  for (const std::string& s : stale) RemoveTree(s).IgnoreError();
}

}  // namespace

std::string schema::EncodeFormatRecord(uint64_t version, uint64_t compat, uint64_t ro_compat,
                               uint64_t incompat) {
  Encoder e;
  e.Varint(version);
  e.Varint(compat);
  e.Varint(ro_compat);
  e.Varint(incompat);
  return e.Take();
}

Result<std::unique_ptr<Index>> Index::Open(const IndexOptions& options) {
  if (options.store_dir.empty()) return InvalidArgumentError("no store directory given");
  const std::string path = options.store_dir + "/index";
  LAZYFS_RETURN_IF_ERROR(MakeDirs(options.store_dir, 0700));
  auto db = std::make_shared<Db>();
  rocksdb::Options ro;
  ro.max_open_files = -1;  // required by secondary instances; files stay readable once open
  ro.create_if_missing = options.writable;
  ro.info_log_level = rocksdb::InfoLogLevel::ERROR_LEVEL;
  ro.keep_log_file_num = 2;
  rocksdb::DB* raw = nullptr;
  if (options.writable) {
    LAZYFS_ASSIGN_OR_RETURN(db->lock, OpenFile(options.store_dir + "/index.lock",
                                               O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    while (::flock(db->lock.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return ErrnoError(errno, "lock " + options.store_dir + "/index.lock");
    }
    LAZYFS_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(ro, path, &raw), "open index " + path));
    db->db.reset(raw);
    LAZYFS_ASSIGN_OR_RETURN(auto format, db->Get(schema::kFormatKey));
    if (!format) {
      const std::string rec = schema::EncodeFormatRecord(schema::kFormatVersion, schema::kCompatKnown,
                                                 schema::kRoCompatKnown, schema::kIncompatKnown);
      LAZYFS_RETURN_IF_ERROR(FromRocks(
          db->db->Put(rocksdb::WriteOptions(), std::string(schema::kFormatKey), rec),
          "index write"));
    } else {
      LAZYFS_RETURN_IF_ERROR(CheckFormat(*format, path, true));
    }
  } else {
    if (::access((path + "/CURRENT").c_str(), F_OK) != 0) {
      return NotFoundError("store " + options.store_dir + " has no index yet");
    }
    const std::string readers = options.store_dir + "/index.readers";
    LAZYFS_RETURN_IF_ERROR(MakeDirs(readers, 0700));
    CleanStaleReaders(readers);
    static std::atomic<unsigned> counter{0};
    db->secondary_dir =
        readers + "/" + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
    LAZYFS_RETURN_IF_ERROR(MakeDirs(db->secondary_dir, 0700));
    LAZYFS_RETURN_IF_ERROR(FromRocks(rocksdb::DB::OpenAsSecondary(ro, path, db->secondary_dir, &raw),
                                     "open index " + path));
    db->db.reset(raw);
    LAZYFS_ASSIGN_OR_RETURN(auto format, db->Get(schema::kFormatKey));
    if (!format) return DataLossError("store index " + path + " has no format record");
    LAZYFS_RETURN_IF_ERROR(CheckFormat(*format, path, false));
  }
  LAZYFS_ASSIGN_OR_RETURN(auto cas, CasDir::Open(options.store_dir + "/content"));
  LayerReadOptions lro;
  lro.max_entries = options.max_entries_per_layer;
  lro.max_xattr_bytes_per_entry = options.max_xattr_bytes_per_entry;
  auto cache = std::make_shared<ContentCache>(std::move(cas), lro);
  return std::unique_ptr<Index>(new StoredIndex(options, std::move(db), std::move(cache)));
}

}  // namespace lazyfs::index
