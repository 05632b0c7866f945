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
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <mutex>
#include <unordered_map>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "base/cas_dir.h"
#include "base/fd.h"
#include "base/log.h"
#include "base/parallel.h"
#include "base/stats.h"
#include "index/codec.h"
#include "index/content_cache.h"
#include "index/layer_reader.h"
#include "index/layer_seek.h"
#include "index/merge.h"
#include "index/prefetch.h"
#include "index/schema.h"
#include "index/toc_index.h"
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

// Where a regular file's content lies in a layer indexed with kCompatLazyContent ('O').
struct FileLocation {
  uint64_t offset = 0;  // in the uncompressed tar
  uint64_t size = 0;
  Digest digest;               // of the whole content (the key)
  std::vector<Digest> chunks;  // kContentChunkSize pieces; empty when the file is one chunk

  uint64_t chunk_count() const { return (size + kContentChunkSize - 1) / kContentChunkSize; }
  const Digest& chunk(uint64_t i) const { return chunks.empty() ? digest : chunks[i]; }
};

std::string EncodeLocation(const FileLocation& l) {
  Encoder e;
  e.U8(1);
  e.Varint(l.offset);
  e.Varint(l.size);
  e.Varint(l.chunks.size());
  for (const Digest& d : l.chunks) e.DigestBytes(d);
  return e.Take();
}

bool DecodeLocation(std::string_view v, const Digest& digest, FileLocation* l) {
  Decoder d(v);
  uint8_t version;
  uint64_t n;
  l->digest = digest;
  if (!d.U8(&version) || version != 1 || !d.Varint(&l->offset) || !d.Varint(&l->size) ||
      !d.Varint(&n) || (n != 0 && n != l->chunk_count()) || (n == 0 && l->chunk_count() > 1)) {
    return false;
  }
  l->chunks.resize(n);
  for (Digest& c : l->chunks) {
    if (!d.DigestBytes(&c)) return false;
  }
  return d.done();
}

// 'M': the layer can be read with ranges.
struct LazyLayerRecord {
  LayerCompression compression = LayerCompression::kNone;
  uint64_t checkpoints = 0;
};

std::string EncodeLazyLayer(const LazyLayerRecord& r) {
  Encoder e;
  e.U8(1);
  e.U8(static_cast<uint8_t>(r.compression));
  e.Varint(r.checkpoints);
  return e.Take();
}

bool DecodeLazyLayer(std::string_view v, LazyLayerRecord* r) {
  Decoder d(v);
  uint8_t version, comp;
  if (!d.U8(&version) || version != 1 || !d.U8(&comp) || comp > 2) return false;
  r->compression = static_cast<LayerCompression>(comp);
  return d.Varint(&r->checkpoints) && d.done();
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

// The lazy-read record of a stream-indexed layer (none for one indexed from its TOC, or before
// lazy reads existed).
Result<std::optional<LazyLayerRecord>> GetLazyLayerRecord(const Db& db, const Digest& layer) {
  LAZYFS_ASSIGN_OR_RETURN(auto v, db.Get(schema::LazyLayerKey(layer)));
  if (!v) return std::optional<LazyLayerRecord>();
  LazyLayerRecord rec;
  if (!DecodeLazyLayer(*v, &rec)) return Corrupt("of layer " + layer.Short() + " (lazy)");
  return std::optional<LazyLayerRecord>(rec);
}

// Where a file's bytes lie in a stream-indexed layer.
Result<std::optional<FileLocation>> GetFileLocation(const Db& db, const Digest& layer,
                                                    const Digest& file) {
  LAZYFS_ASSIGN_OR_RETURN(auto v, db.Get(schema::LocationKey(layer, file)));
  if (!v) return std::optional<FileLocation>();
  FileLocation loc;
  if (!DecodeLocation(*v, file, &loc)) return Corrupt("of file " + file.Short() + " (location)");
  return std::optional<FileLocation>(std::move(loc));
}

Status AddCompatFeatures(Db& db, const std::string& value) {
  Decoder d(value);
  uint64_t version, compat, ro_compat, incompat;
  if (!d.Varint(&version) || !d.Varint(&compat) || !d.Varint(&ro_compat) ||
      !d.Varint(&incompat)) {
    return DataLossError("the store index has a damaged format record");
  }
  if ((compat & schema::kCompatKnown) == schema::kCompatKnown) return Status::Ok();
  const std::string rec =
      schema::EncodeFormatRecord(version, compat | schema::kCompatKnown, ro_compat, incompat);
  return FromRocks(db.db->Put(rocksdb::WriteOptions(), std::string(schema::kFormatKey), rec),
                   "index write");
}

LayerReadOptions ReadOptionsOf(const IndexOptions& options) {
  LayerReadOptions ro;
  ro.max_entries = options.max_entries_per_layer;
  ro.max_xattr_bytes_per_entry = options.max_xattr_bytes_per_entry;
  ro.checkpoint_every_uncompressed = options.checkpoint_every_uncompressed;
  ro.checkpoint_every_compressed = options.checkpoint_every_compressed;
  return ro;
}

// ---- lazy reads: single flight, and the whole-layer check ---------------------------------------

// What every tree of one Index shares for range reads: the chunks being fetched (so concurrent
// misses share one request) and, per layer, the compressed bytes fetched so far, so the layer is
// checked as a whole once they cover it. Thread-safe.
class LazyReads {
 public:
  explicit LazyReads(std::string content_dir) : content_dir_(std::move(content_dir)) {}

  std::mutex mu;
  std::map<Digest, std::shared_future<Status>> inflight;  // GUARDED_BY(mu), by chunk digest

  // Records that blob bytes [offset, offset + bytes.size()) of `layer` were fetched (and
  // produced chunks that matched their digests). When the layer's every byte has been seen, it
  // is checked against its digest and diff_id: a pass is recorded in
  // STORE/content/verified/<hex>; a failure marks the layer bad (its reads fail with DataLoss
  // from then on), removes its cached chunks through `drop_chunks`, and is logged as an error.
  void Saw(const LayerDescriptor& layer, LayerCompression compression, const Digest& diff_id,
           uint64_t offset, std::string_view bytes,
           const std::function<void()>& drop_chunks) {
    std::shared_ptr<Coverage> c;
    {
      std::lock_guard lock(mu);
      if (bad_.count(layer.digest)) return;
      auto& slot = coverage_[layer.digest];
      if (!slot) {
        slot = std::make_shared<Coverage>();
        slot->done = ::access(MarkerPath(layer.digest).c_str(), F_OK) == 0;
      }
      c = slot;
    }
    std::lock_guard lock(c->mu);
    if (c->done || bytes.empty()) return;
    if (!c->file.valid()) {
      auto fd = OpenFile(content_dir_ + "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
      if (!fd.ok()) {
        c->done = true;  // no check possible here; reads still verify every chunk
        return;
      }
      c->file = std::move(*fd);
    }
    if (::pwrite(c->file.get(), bytes.data(), bytes.size(), static_cast<off_t>(offset)) !=
        static_cast<ssize_t>(bytes.size())) {
      return;
    }
    // Merge [offset, end) into the disjoint intervals.
    uint64_t start = offset, end = offset + bytes.size();
    auto it = c->intervals.upper_bound(start);
    if (it != c->intervals.begin() && std::prev(it)->second >= start) --it;
    while (it != c->intervals.end() && it->first <= end) {
      start = std::min(start, it->first);
      end = std::max(end, it->second);
      c->covered -= it->second - it->first;
      it = c->intervals.erase(it);
    }
    c->intervals.emplace(start, end);
    c->covered += end - start;
    if (c->covered < layer.size) return;
    c->done = true;
    Status s = CheckWhole(layer, compression, diff_id, c->file.get());
    c->file.Reset();
    c->intervals.clear();
    if (s.ok()) {
      auto marker =
          OpenFile(MarkerPath(layer.digest), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (marker.ok()) WriteAll(marker->get(), "ok\n", 3).IgnoreError();
      LAZYFS_LOG(kInfo, "index", "layer %s: every byte fetched; digest and diff_id verified",
                 layer.digest.Short().c_str());
      return;
    }
    {
      std::lock_guard lock2(mu);
      bad_.insert(layer.digest);
    }
    LAZYFS_LOG(kError, "index",
               "LAYER %s FAILED ITS WHOLE-LAYER CHECK: %s. Its cached content is dropped and "
               "reads from it fail until lazyfs restarts; the registry serves bytes that differ "
               "from what was indexed.",
               layer.digest.ToString().c_str(), s.message().c_str());
    drop_chunks();
  }

  bool IsBad(const Digest& layer) {
    std::lock_guard lock(mu);
    return bad_.count(layer) != 0;
  }

 private:
  struct Coverage {
    std::mutex mu;
    bool done = false;                   // GUARDED_BY(mu): checked (or recorded as passed)
    Fd file;                             // GUARDED_BY(mu): the fetched bytes, at their offsets
    std::map<uint64_t, uint64_t> intervals;  // GUARDED_BY(mu): start -> end, disjoint
    uint64_t covered = 0;                // GUARDED_BY(mu)
  };

  std::string MarkerPath(const Digest& layer) const {
    return content_dir_ + "/verified/" + layer.Hex();  // StoreLayout::verified_layers()
  }

  Status CheckWhole(const LayerDescriptor& layer, LayerCompression compression,
                    const Digest& diff_id, int fd) {
    LAZYFS_ASSIGN_OR_RETURN(Digest got, Sha256OfFd(fd));
    if (got != layer.digest) return DataLossError("its bytes hash to " + got.ToString());
    LAZYFS_ASSIGN_OR_RETURN(auto reader, LayerReader::Open(fd, layer.size, compression,
                                                           LayerReadOptions{}, layer.digest.Short()));
    LAZYFS_ASSIGN_OR_RETURN(Digest uncompressed, reader->Finish());
    if (uncompressed != diff_id) {
      return DataLossError("it decompresses to " + uncompressed.ToString() + ", not diff_id " +
                           diff_id.ToString());
    }
    return Status::Ok();
  }

  const std::string content_dir_;
  std::map<Digest, std::shared_ptr<Coverage>> coverage_;  // GUARDED_BY(mu)
  std::set<Digest> bad_;                                  // GUARDED_BY(mu)
};

// ---- Tree -------------------------------------------------------------------------------------

Status Errno(StatusCode code, int err, std::string msg) { return Status(code, std::move(msg), err); }

// Chunks fetched ahead of a sequential reader (8 MiB), in the same range request.
constexpr uint64_t kReadaheadChunks = 8;

class StoredTree final : public Tree {
 public:
  // Decoded bytes kept around the wanted chunks, to cache the files they hold.
  static constexpr uint64_t kNeighbourBytes = 8 << 20;
  // With no checkpoint after the wanted bytes (single-frame zstd, the end of a layer), requests
  // start at this size and double up to the next, until the bytes are decoded.
  static constexpr uint64_t kFirstProbe = 1 << 20;
  static constexpr uint64_t kMaxProbe = 16 << 20;

  StoredTree(std::shared_ptr<Db> db, ImageDescriptor image, TreeStats stats, BlobSource& blobs,
             std::shared_ptr<ContentCache> cache, std::shared_ptr<LazyReads> lazy,
             std::chrono::milliseconds read_timeout, PrefetchMode prefetch = PrefetchMode::kNone)
      : db_(std::move(db)), image_(std::move(image)), stats_(stats), blobs_(blobs),
        cache_(std::move(cache)), lazy_(std::move(lazy)), read_timeout_(read_timeout) {
    // eStargz / zstd:chunked layers indexed from their TOCs (toc_index.h); what they fetch
    // counts towards the whole-layer check like any range.
    toc_ = std::make_unique<TocReader>(
        [db = db_](std::string_view key) { return db->Get(key); },
        [db = db_](std::string_view prefix,
                   const std::function<void(std::string_view, std::string_view)>& each) {
          std::unique_ptr<rocksdb::Iterator> it(db->db->NewIterator(rocksdb::ReadOptions()));
          const rocksdb::Slice p(prefix.data(), prefix.size());
          for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
            each(std::string_view(it->key().data(), it->key().size()),
                 std::string_view(it->value().data(), it->value().size()));
          }
          return FromRocks(it->status(), "index read");
        },
        cache_, blobs_, read_timeout_,
        [this](const LayerDescriptor& layer, uint64_t offset, std::string_view bytes) {
          auto comp = CompressionOfMediaType(layer.media_type);
          if (comp.ok()) NoteFetched(layer, LazyLayerRecord{*comp, 0}, offset, bytes);
        });
    prefetch_ = std::make_unique<Prefetcher>(prefetch, *this, image_, *toc_);
  }

  // Fetches still running (their readers gave up at the deadline) use this tree's BlobSource.
  ~StoredTree() override {
    prefetch_.reset();
    std::unique_lock lock(workers_mu_);
    workers_cv_.wait(lock, [&] { return workers_ == 0; });
  }

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
    Prefetcher::Foreground foreground(prefetch_.get());
    bool fetched = false;
    auto n = ReadContent(r, offset, out.first(want), &fetched);
    static StatCounter& hits = Counter(kStatCacheHits);
    static StatCounter& misses = Counter(kStatCacheMisses);
    (fetched ? misses : hits).Add();
    if (!n.ok()) {
      static StatCounter& unavailable = Counter(kStatEioUnavailable);
      static StatCounter& data_loss = Counter(kStatEioDataLoss);
      if (n.status().code() == StatusCode::kUnavailable) unavailable.Add();
      if (n.status().code() == StatusCode::kDataLoss) data_loss.Add();
    }
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

  Result<size_t> ReadContent(const InodeRecord& r, uint64_t offset, std::span<std::byte> out,
                             bool* fetched) const {
    if (r.layer >= image_.layers.size()) return Corrupt("of inode " + std::to_string(r.attr.ino));
    const LayerDescriptor& layer = image_.layers[r.layer];
    if (lazy_->IsBad(layer.digest)) {
      return DataLossError("layer " + layer.digest.Short() + " failed its whole-layer check");
    }
    // A whole-file object: a file of one chunk, or one extracted with its whole layer.
    auto fd = cache_->Open(r.digest);
    if (fd.ok()) return PreadExact(**fd, r.digest, offset, out);
    if (fd.status().code() != StatusCode::kNotFound) return fd.status();
    LAZYFS_ASSIGN_OR_RETURN(auto from_toc, toc_->Read(layer, r.digest, offset, out, fetched));
    if (from_toc) return *from_toc;
    LAZYFS_ASSIGN_OR_RETURN(auto lazy, GetLazyLayerRecord(*db_, layer.digest));
    std::optional<FileLocation> loc;
    if (lazy) {
      LAZYFS_ASSIGN_OR_RETURN(loc, GetFileLocation(*db_, layer.digest, r.digest));
    }
    if (!loc) {
      // Indexed before kCompatLazyContent, or a sparse file: the whole layer, once.
      *fetched = true;
      LAZYFS_RETURN_IF_ERROR(Fill(r));
      LAZYFS_ASSIGN_OR_RETURN(auto filled, cache_->Open(r.digest));
      return PreadExact(*filled, r.digest, offset, out);
    }
    if (loc->size != r.attr.size) return Corrupt("of file " + r.digest.Short() + " (size)");
    return ReadChunks(layer, *lazy, *loc, offset, out, fetched);
  }

  static Result<size_t> PreadExact(const Fd& fd, const Digest& d, uint64_t offset,
                                   std::span<std::byte> out) {
    LAZYFS_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), out.data(), out.size(), offset));
    if (n != out.size()) return DataLossError("cached content " + d.Short() + " is short");
    return n;
  }

  // The checkpoint at or before (`before`) or at or after an uncompressed offset of a layer.
  Result<std::optional<Checkpoint>> FindCheckpoint(const Digest& layer, uint64_t uncompressed,
                                                   bool before) const {
    const std::string prefix = schema::CheckpointPrefix(layer);
    const std::string key = schema::CheckpointKey(layer, uncompressed);
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
    if (before) {
      it->SeekForPrev(key);
    } else {
      it->Seek(key);
    }
    LAZYFS_RETURN_IF_ERROR(FromRocks(it->status(), "index read"));
    if (!it->Valid() || !it->key().starts_with(prefix) ||
        it->key().size() != prefix.size() + 8) {
      return std::optional<Checkpoint>();
    }
    const uint64_t at = schema::ReadBe64(std::string_view(it->key().data() + prefix.size(), 8));
    LAZYFS_ASSIGN_OR_RETURN(Checkpoint cp,
                            DecodeCheckpoint(std::string_view(it->value().data(),
                                                              it->value().size()), at));
    return std::optional<Checkpoint>(std::move(cp));
  }

  // Serves [offset, offset + out.size()) of a located file from its chunks, fetching the
  // missing ones first.
  Result<size_t> ReadChunks(const LayerDescriptor& layer, const LazyLayerRecord& lazy,
                            const FileLocation& loc, uint64_t offset, std::span<std::byte> out,
                            bool* fetched) const {
    const auto deadline = std::chrono::steady_clock::now() + read_timeout_;
    const uint64_t first = offset / kContentChunkSize;
    const uint64_t last = (offset + out.size() - 1) / kContentChunkSize;
    // Sequential readahead: a read at the start of a file, or right after a chunk already
    // cached, fetches the following chunks in the same request. Without it each 1 MiB chunk of
    // a file read front to back is a request of its own, starting at the checkpoint before it,
    // and those spans overlap.
    const bool sequential = first == 0 || cache_->Contains(loc.chunk(first - 1));
    const uint64_t fetch_last =
        sequential ? std::min(loc.chunk_count() - 1, last + kReadaheadChunks) : last;
    for (int attempt = 0;; ++attempt) {
      std::vector<uint64_t> missing;
      for (uint64_t c = first; c <= fetch_last; ++c) {
        if (!cache_->Contains(loc.chunk(c))) missing.push_back(c);
      }
      if (!missing.empty()) {
        *fetched = true;
        LAZYFS_RETURN_IF_ERROR(FetchChunks(layer, lazy, loc, missing, deadline));
      }
      size_t done = 0;
      bool lost = false;
      for (uint64_t c = first; c <= last && !lost; ++c) {
        auto fd = cache_->Open(loc.chunk(c));
        if (!fd.ok()) {
          // Evicted, or found corrupt and dropped, since it was fetched: fetch it again.
          if (fd.status().code() != StatusCode::kNotFound) return fd.status();
          lost = true;
          break;
        }
        const uint64_t chunk_start = c * kContentChunkSize;
        const uint64_t from = std::max(offset, chunk_start);
        const uint64_t to = std::min(offset + out.size(), chunk_start + kContentChunkSize);
        LAZYFS_RETURN_IF_ERROR(PreadExact(**fd, loc.chunk(c), from - chunk_start,
                                          out.subspan(done, static_cast<size_t>(to - from)))
                                   .status());
        done += static_cast<size_t>(to - from);
      }
      if (!lost) return done;
      if (attempt >= 3) {
        return UnavailableError("file " + loc.digest.Short() +
                                ": its chunks are evicted as fast as they are fetched; the "
                                "content cache is too small");
      }
    }
  }

  // Fetches the missing chunks of a file: chunks another read is already fetching are waited
  // for; the rest are fetched by one request in a worker thread, so a reader gives up at its
  // deadline even when a connection hangs.
  Status FetchChunks(const LayerDescriptor& layer, const LazyLayerRecord& lazy,
                     const FileLocation& loc, const std::vector<uint64_t>& missing,
                     std::chrono::steady_clock::time_point deadline) const {
    std::vector<std::shared_future<Status>> waits;
    std::vector<uint64_t> mine;
    auto promise = std::make_shared<std::promise<Status>>();
    std::shared_future<Status> mine_done = promise->get_future().share();
    {
      std::lock_guard lock(lazy_->mu);
      for (uint64_t c : missing) {
        // A fetch stores its chunks before it leaves `inflight`: checked under the lock, a
        // chunk is either cached or in flight, never fetched twice.
        if (cache_->Contains(loc.chunk(c))) continue;
        auto [it, inserted] = lazy_->inflight.emplace(loc.chunk(c), mine_done);
        if (inserted) {
          mine.push_back(c);
        } else if (it->second.valid()) {
          waits.push_back(it->second);
        }
      }
    }
    if (!mine.empty()) {
      waits.push_back(mine_done);
      {
        std::lock_guard lock(workers_mu_);
        ++workers_;
      }
      std::thread([this, layer, lazy, loc, mine, promise, deadline] {
        Status s = FetchSpan(layer, lazy, loc, mine.front(), mine.back(), deadline);
        {
          // No memory of failures: the next read of these chunks tries again.
          std::lock_guard lock(lazy_->mu);
          for (uint64_t c : mine) lazy_->inflight.erase(loc.chunk(c));
        }
        promise->set_value(s);
        std::lock_guard lock(workers_mu_);
        --workers_;
        workers_cv_.notify_all();
      }).detach();
    }
    for (const auto& w : waits) {
      if (w.wait_until(deadline) == std::future_status::timeout) {
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.1f", static_cast<double>(read_timeout_.count()) / 1000);
        return UnavailableError("layer " + layer.digest.Short() + ": no answer within " + secs +
                                " s (the read deadline)");
      }
      LAZYFS_RETURN_IF_ERROR(w.get());
    }
    return Status::Ok();
  }

  // Fetches chunks c0..c1 of a file: one range request from the checkpoint before them to the
  // one after (or, with no checkpoint after, growing requests until the bytes are decoded);
  // each chunk is checked against its digest and stored. Whole files and chunks of other files
  // that the decoded span happens to hold are cached too (CacheNeighbours).
  Status FetchSpan(const LayerDescriptor& layer, const LazyLayerRecord& lazy,
                   const FileLocation& loc, uint64_t c0, uint64_t c1,
                   std::chrono::steady_clock::time_point deadline) const {
    const uint64_t u0 = loc.offset + c0 * kContentChunkSize;
    const uint64_t u1 = loc.offset + std::min((c1 + 1) * kContentChunkSize, loc.size);
    std::optional<Checkpoint> before;
    std::optional<uint64_t> end;  // where the span ends in the blob, when a checkpoint says
    uint64_t start = u0, region_start = u0;
    if (lazy.compression == LayerCompression::kNone) {
      end = u1;
    } else {
      LAZYFS_ASSIGN_OR_RETURN(before, FindCheckpoint(layer.digest, u0, true));
      LAZYFS_ASSIGN_OR_RETURN(auto after, FindCheckpoint(layer.digest, u1, false));
      start = SpanStart(before ? &*before : nullptr);
      region_start = before ? before->uncompressed : 0;
      if (after) end = after->compressed;
    }
    const uint64_t limit = end.value_or(layer.size);
    if (limit > layer.size || start > limit) return Corrupt("of layer " + layer.digest.Short());
    const std::string what = "layer " + layer.digest.Short() + ": file " + loc.digest.Short();

    // Decoded bytes kept: the chunks wanted and up to kNeighbourBytes on either side of them.
    const uint64_t keep_from = std::max(region_start, u0 > kNeighbourBytes ? u0 - kNeighbourBytes : 0);
    const uint64_t keep_to = u1 + kNeighbourBytes;
    std::string kept;
    uint64_t decoded = region_start;
    auto sink = [&](const char* p, size_t n) {
      const uint64_t from = std::max(decoded, keep_from), to = std::min(decoded + n, keep_to);
      if (from < to) kept.append(p + (from - decoded), to - from);
      decoded += n;
    };
    LAZYFS_ASSIGN_OR_RETURN(auto inflater,
                            SpanInflater::Start(lazy.compression, before ? &*before : nullptr));
    uint64_t piece = end ? limit - start : kFirstProbe;
    for (uint64_t pos = start; decoded < u1 && pos < limit;) {
      const uint64_t len = std::min(piece, limit - pos);
      LAZYFS_ASSIGN_OR_RETURN(std::string bytes, FetchRange(layer.digest, pos, len, deadline));
      if (bytes.size() != len) {
        return DataLossError(what + ": the blob ends before byte " + std::to_string(pos + len));
      }
      LAZYFS_RETURN_IF_ERROR(inflater->Feed(bytes, sink).WithContext(what));
      NoteFetched(layer, lazy, pos, bytes);
      if (lazy_->IsBad(layer.digest)) {
        return DataLossError("layer " + layer.digest.Short() + " failed its whole-layer check");
      }
      pos += len;
      piece = std::min(piece * 2, kMaxProbe);
    }
    if (decoded < u1) return DataLossError(what + ": the layer ends before the file does");
    for (uint64_t c = c0; c <= c1; ++c) {
      const uint64_t c_start = loc.offset + c * kContentChunkSize;
      const uint64_t c_end = loc.offset + std::min((c + 1) * kContentChunkSize, loc.size);
      Status s = cache_->Put(loc.chunk(c), std::string_view(kept).substr(c_start - keep_from,
                                                                         c_end - c_start));
      if (!s.ok()) {
        if (s.code() != StatusCode::kDataLoss) return s;
        return DataLossError(what + ": chunk " + std::to_string(c) +
                             " does not match the digest recorded when the layer was indexed");
      }
    }
    CacheNeighbours(layer.digest, keep_from, kept);
    return Status::Ok();
  }

  // Caches every chunk of every file that lies wholly inside decoded bytes [from, from +
  // bytes.size()) of a layer and is not cached yet: the bytes were fetched anyway, and a
  // directory's files sit together in a tar (reading /etc file by file then costs one fetch per
  // span, not one per file). Best effort: a chunk that does not match is simply not cached.
  void CacheNeighbours(const Digest& layer, uint64_t from, std::string_view bytes) const {
    const uint64_t to = from + bytes.size();
    const std::string prefix = schema::DigestKey('Q', layer);
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(schema::FileAtKey(layer, from)); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      if (it->key().size() != prefix.size() + 8 || it->value().size() != 32) break;
      const uint64_t offset =
          schema::ReadBe64(std::string_view(it->key().data() + prefix.size(), 8));
      if (offset >= to) break;
      Digest file;
      Decoder d(std::string_view(it->value().data(), 32));
      if (!d.DigestBytes(&file)) break;
      auto loc = GetFileLocation(*db_, layer, file);
      if (!loc.ok() || !*loc) continue;
      for (uint64_t c = 0; c < (*loc)->chunk_count(); ++c) {
        const uint64_t c_start = offset + c * kContentChunkSize;
        const uint64_t c_end = offset + std::min((c + 1) * kContentChunkSize, (*loc)->size);
        if (c_end > to) break;
        if (cache_->Contains((*loc)->chunk(c))) continue;
        cache_->Put((*loc)->chunk(c), bytes.substr(c_start - from, c_end - c_start)).IgnoreError();
      }
    }
  }

  // Reads a blob range, retrying network failures with backoff until the deadline.
  Result<std::string> FetchRange(const Digest& blob, uint64_t offset, uint64_t length,
                                 std::chrono::steady_clock::time_point deadline) const {
    return FetchBlobRange(blobs_, blob, offset, length, deadline);
  }

  void NoteFetched(const LayerDescriptor& layer, const LazyLayerRecord& lazy, uint64_t offset,
                   std::string_view bytes) const {
    auto rec = GetLayerRecord(*db_, layer.digest);
    if (!rec.ok() || !*rec) return;
    lazy_->Saw(layer, lazy.compression, (*rec)->diff_id, offset, bytes, [&] {
      // Drop every cached chunk of the layer: they matched digests, but the layer as a whole
      // did not, so nothing from it is trusted any more.
      const std::string prefix = schema::DigestKey('O', layer.digest);
      std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        Digest file;
        Decoder d(std::string_view(it->key().data() + prefix.size(), 32));
        FileLocation loc;
        if (!d.DigestBytes(&file) ||
            !DecodeLocation(std::string_view(it->value().data(), it->value().size()), file,
                            &loc)) {
          continue;
        }
        for (uint64_t c = 0; c < loc.chunk_count(); ++c) cache_->Remove(loc.chunk(c)).IgnoreError();
      }
    });
  }

  std::shared_ptr<Db> db_;
  const ImageDescriptor image_;
  const TreeStats stats_;
  BlobSource& blobs_;
  std::shared_ptr<ContentCache> cache_;
  std::shared_ptr<LazyReads> lazy_;
  const std::chrono::milliseconds read_timeout_;
  mutable std::mutex workers_mu_;
  mutable std::condition_variable workers_cv_;
  mutable int workers_ = 0;  // GUARDED_BY(workers_mu_): fetch threads still running
  std::unique_ptr<TocReader> toc_;
  std::unique_ptr<Prefetcher> prefetch_;  // stopped first: it reads through this tree
};

// ---- Index ------------------------------------------------------------------------------------

// Stores a file's content in the content cache while stream indexing decompresses it
// (IndexOptions::cache_content_while_indexing): a file of one chunk whole, a larger one chunk by
// chunk, each under the digest the reader computed from the same bytes. The stores run on a
// thread of their own, so writing the cache overlaps decompressing the layer; what waits for
// that thread is bounded (kMaxQueued bytes). Best effort: the first failure to store (a full
// disk, say) ends capturing for the layer, and what was not stored is read lazily later. So does
// the store's filesystem running low: capturing stops while kReserve (or an eighth of the
// filesystem, if less) is still free, so the index's own write never finds the disk full.
class ContentCapture {
 public:
  ContentCapture(ContentCache& cache, std::string layer) : cache_(cache), layer_(std::move(layer)) {}
  ~ContentCapture() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  // Starts a file of `size` bytes whose chunk digests the reader appends to `chunks` (files over
  // one chunk) as each chunk completes, before it hands the chunk's last bytes to sink().
  // False when capturing has ended.
  bool Begin(uint64_t size, const std::vector<Digest>* chunks) {
    if (failed_.load()) return false;
    size_ = size;
    chunks_ = chunks;
    next_ = 0;
    buf_.clear();
    buf_.reserve(static_cast<size_t>(std::min<uint64_t>(size, kContentChunkSize)));
    return true;
  }
  LayerReader::Sink sink() {
    return [this](const char* p, size_t n) {
      Take(p, n);
      return Status::Ok();
    };
  }
  // The file's content ended; `file` is its digest.
  void End(const Digest& file) {
    if (size_ <= kContentChunkSize) {
      Queue(file);
    } else if (!buf_.empty()) {
      QueueChunk();  // the last, partial chunk
    }
  }

 private:
  static constexpr size_t kMaxQueued = 64 << 20;
  static constexpr uint64_t kReserve = uint64_t{256} << 20;
  static constexpr uint64_t kCheckEvery = 8 << 20;

  void Take(const char* p, size_t n) {
    if (size_ <= kContentChunkSize) {
      buf_.append(p, n);
      return;
    }
    while (n > 0) {
      const size_t take = std::min<size_t>(n, kContentChunkSize - buf_.size());
      buf_.append(p, take);
      p += take;
      n -= take;
      if (buf_.size() == kContentChunkSize) QueueChunk();
    }
  }
  void QueueChunk() {
    if (next_ >= chunks_->size()) {
      Fail(InternalError("a chunk's digest is missing"));
      buf_.clear();
      return;
    }
    Queue((*chunks_)[next_++]);
  }
  void Queue(const Digest& d) {
    std::string bytes;
    bytes.swap(buf_);
    if (failed_.load()) return;
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return queued_bytes_ < kMaxQueued || failed_.load(); });
    queued_bytes_ += bytes.size();
    queue_.emplace_back(d, std::move(bytes));
    if (!worker_.joinable()) worker_ = std::thread([this] { Run(); });
    cv_.notify_all();
  }
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !queue_.empty() || closing_; });
      if (queue_.empty()) return;
      auto [d, bytes] = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      Status s = failed_.load() ? Status::Ok() : RoomFor(bytes.size());
      if (s.ok() && !failed_.load()) s = cache_.PutHashed(d, bytes);
      if (!s.ok()) Fail(s);
      lock.lock();
      queued_bytes_ -= bytes.size();
      cv_.notify_all();
    }
  }
  // Checks the free space every kCheckEvery bytes stored.
  Status RoomFor(size_t bytes) {
    since_check_ += bytes;
    if (since_check_ < kCheckEvery) return Status::Ok();
    since_check_ = 0;
    struct statvfs fs;
    if (::statvfs(cache_.root().c_str(), &fs) != 0) return ErrnoError(errno, "statvfs " + cache_.root());
    const uint64_t size = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
    const uint64_t avail = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    const uint64_t reserve = std::min<uint64_t>(kReserve, std::max<uint64_t>(size / 8, 8 << 20));
    if (avail < reserve + kCheckEvery) {
      return ResourceExhaustedError("the store's filesystem has " + std::to_string(avail >> 20) +
                                    " MiB free, keeping " + std::to_string(reserve >> 20) +
                                    " MiB for the index");
    }
    return Status::Ok();
  }
  void Fail(const Status& s) {
    if (failed_.exchange(true)) return;
    LAZYFS_LOG(kWarn, "index", "layer %s: stopped storing content while indexing (%s); reads "
               "fetch what is missing", layer_.c_str(), s.message().c_str());
  }

  ContentCache& cache_;
  const std::string layer_;
  // The indexing thread's file in progress.
  uint64_t size_ = 0;
  const std::vector<Digest>* chunks_ = nullptr;
  size_t next_ = 0;
  std::string buf_;
  std::atomic<bool> failed_{false};
  uint64_t since_check_ = kCheckEvery;  // the worker's: the first store checks
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Digest, std::string>> queue_;  // GUARDED_BY(mu_)
  size_t queued_bytes_ = 0;                           // GUARDED_BY(mu_)
  bool closing_ = false;                              // GUARDED_BY(mu_)
  std::thread worker_;
};

class StoredIndex final : public Index {
 public:
  StoredIndex(IndexOptions options, std::shared_ptr<Db> db, std::shared_ptr<ContentCache> cache,
              std::shared_ptr<LazyReads> lazy)
      : options_(std::move(options)), db_(std::move(db)), cache_(std::move(cache)),
        lazy_(std::move(lazy)) {}

  Result<bool> HasImage(const Digest& manifest) override {
    LAZYFS_ASSIGN_OR_RETURN(auto v, db_->Get(schema::ImageKey(manifest)));
    return v.has_value();
  }

  Status AddImage(const ImageDescriptor& image, BlobSource& blobs,
                  const ProgressFn& progress) override {
    if (!options_.writable) return FailedPreconditionError("index opened read-only");
    LAZYFS_ASSIGN_OR_RETURN(bool has, HasImage(image.manifest_digest));
    if (has) return Status::Ok();
    // Layers are independent until they are merged: each is indexed on its own thread into a
    // batch of its own. New layer records are written together with the tree, so a failed image
    // (a hostile entry in its third layer, say) leaves the index exactly as it was. The error
    // reported is that of the first failing layer in layer order: a failure stops the layers
    // after it early, never those before it (one of them may fail too, and its error wins).
    const size_t n = image.layers.size();
    std::vector<rocksdb::WriteBatch> batches(n);
    std::vector<std::optional<Result<std::vector<LayerEntry>>>> results(n);
    std::atomic<size_t> first_failed{n};
    std::mutex progress_mu;
    const ProgressFn serial_progress =
        progress ? ProgressFn([&](const Progress& p) {
          std::lock_guard lock(progress_mu);
          progress(p);
        })
                 : ProgressFn();
    ParallelFor(n, options_.index_threads, [&](size_t i) {
      auto stopped = [&] { return first_failed.load() < i; };
      if (stopped()) return;
      results[i] = LayerEntries(image.layers[i], blobs, serial_progress, batches[i], stopped);
      // Lower first_failed to i. A layer that stopped is after first_failed: no change.
      if (!results[i]->ok()) {
        for (size_t f = first_failed.load(); i < f && !first_failed.compare_exchange_weak(f, i);) {
        }
      }
    });
    if (first_failed.load() < n) return results[first_failed.load()]->status();
    std::vector<std::vector<LayerEntry>> layers;
    for (auto& r : results) layers.push_back(std::move(**r));
    auto merged = MergeLayers(layers);
    if (!merged.ok()) return merged.status();
    // One atomic write of every layer's records (WriteBatch has no public append: copy them).
    struct Copy : rocksdb::WriteBatch::Handler {
      rocksdb::WriteBatch* to;
      void Put(const rocksdb::Slice& k, const rocksdb::Slice& v) override { to->Put(k, v); }
    };
    rocksdb::WriteBatch layer_records;
    Copy copy;
    copy.to = &layer_records;
    for (rocksdb::WriteBatch& b : batches) {
      LAZYFS_RETURN_IF_ERROR(FromRocks(b.Iterate(&copy), "index write"));
    }
    LAZYFS_RETURN_IF_ERROR(FromRocks(db_->db->Write(WriteOptions(), &layer_records), "index write"));
    return StoreTree(image, *merged);
  }

  Status WarmContent(const Digest& manifest, BlobSource& blobs, unsigned threads,
                     const ProgressFn& progress) override {
    TreeStats st;
    LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor img, GetImageAndStats(manifest, &st));
    const size_t n = img.layers.size();
    // What each layer's files in the merged tree miss in the cache.
    struct Missing {
      uint64_t files = 0, bytes = 0;
    };
    std::vector<Missing> missing(n);
    const std::string prefix = schema::DigestKey('A', manifest);
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      const uint64_t ino = schema::ReadBe64(
          std::string_view(it->key().data() + prefix.size(), it->key().size() - prefix.size()));
      InodeRecord r;
      if (!DecodeInode(std::string_view(it->value().data(), it->value().size()), ino, &r) ||
          (r.attr.is_reg() && r.layer >= n)) {
        return Corrupt("of inode " + std::to_string(ino));
      }
      if (!r.attr.is_reg() || r.attr.size == 0 || cache_->Contains(r.digest)) continue;
      if (r.attr.size > kContentChunkSize) {
        // Read lazily before: it may be cached as chunks.
        LAZYFS_ASSIGN_OR_RETURN(auto loc, GetFileLocation(*db_, img.layers[r.layer].digest, r.digest));
        bool all = loc.has_value() && loc->chunk_count() > 0;
        for (uint64_t c = 0; all && c < loc->chunk_count(); ++c) all = cache_->Contains(loc->chunk(c));
        if (all) continue;
      }
      missing[r.layer].files++;
      missing[r.layer].bytes += r.attr.size;
    }
    LAZYFS_RETURN_IF_ERROR(FromRocks(it->status(), "index read"));
    // A layer is worth one pass when reading its missing files one by one would decompress
    // about as much: each lazy read decompresses from the checkpoint before the file, up to
    // checkpoint_every_uncompressed bytes away. Layers indexed from a TOC (eStargz,
    // zstd:chunked) fetch exactly their chunks and are left to reads; layers indexed before
    // lazy reads existed are extracted whole on their first miss anyway.
    struct Pick {
      size_t layer;
      LayerRecord record;
    };
    std::vector<Pick> pick;
    for (size_t i = 0; i < n; ++i) {
      if (missing[i].files == 0) continue;
      const Digest& layer = img.layers[i].digest;
      LAZYFS_ASSIGN_OR_RETURN(auto rec, GetLayerRecord(*db_, layer));
      if (!rec) return Corrupt("of layer " + layer.Short() + " (missing)");
      LAZYFS_ASSIGN_OR_RETURN(auto lazy, GetLazyLayerRecord(*db_, layer));
      if (lazy) {
        const uint64_t whole = rec->uncompressed;
        if (missing[i].files * options_.checkpoint_every_uncompressed < whole &&
            missing[i].bytes * 2 < whole) {
          continue;
        }
      } else {
        std::unique_ptr<rocksdb::Iterator> toc(db_->db->NewIterator(rocksdb::ReadOptions()));
        const std::string toc_prefix = schema::DigestKey('T', layer);
        toc->Seek(toc_prefix);
        LAZYFS_RETURN_IF_ERROR(FromRocks(toc->status(), "index read"));
        if (toc->Valid() && toc->key().starts_with(toc_prefix)) continue;
      }
      // One layer blob twice in an image is read once.
      bool again = false;
      for (const Pick& p : pick) again = again || img.layers[p.layer].digest == layer;
      if (!again) pick.push_back({i, *rec});
    }
    std::vector<Status> results(pick.size());
    std::mutex progress_mu;
    uint64_t done = 0;
    ParallelFor(pick.size(), threads, [&](size_t k) {
      const LayerDescriptor& layer = img.layers[pick[k].layer];
      results[k] = [&]() -> Status {
        LAZYFS_ASSIGN_OR_RETURN(auto entries, LoadLayerEntries(*db_, layer.digest, pick[k].record));
        return cache_->ExtractLayer(layer, blobs, entries);
      }();
      std::lock_guard lock(progress_mu);
      ++done;
      if (progress) progress({"fetch", layer.digest.Short(), done, pick.size()});
    });
    for (size_t k = 0; k < pick.size(); ++k) {
      LAZYFS_RETURN_IF_ERROR(results[k].WithContext("while reading layer " +
                                                    img.layers[pick[k].layer].digest.Short()));
    }
    return Status::Ok();
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
    return std::unique_ptr<Tree>(
        new StoredTree(db_, std::move(img), st, blobs, cache_, lazy_, options_.read_timeout,
                       options_.prefetch));
  }

  Result<GcReport> Gc() override {
    // Everything a stored image can read: its files' digests and their chunks' digests.
    std::set<Digest> referenced;
    std::set<Digest> layers;
    LAZYFS_RETURN_IF_ERROR(ForEachImage([&](const ImageDescriptor& img, const TreeStats&) {
      for (const LayerDescriptor& l : img.layers) layers.insert(l.digest);
      return Status::Ok();
    }));
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
    for (const Digest& layer : layers) {
      LAZYFS_ASSIGN_OR_RETURN(auto rec, GetLayerRecord(*db_, layer));
      if (!rec) return Corrupt("of layer " + layer.Short() + " (missing)");
      LAZYFS_ASSIGN_OR_RETURN(auto entries, LoadLayerEntries(*db_, layer, *rec));
      for (const LayerEntry& e : entries) {
        if (e.kind == EntryKind::kFile) referenced.insert(e.digest);
      }
      const std::string prefix = schema::DigestKey('O', layer);
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        Digest file;
        Decoder d(std::string_view(it->key().data() + prefix.size(), it->key().size() - prefix.size()));
        FileLocation loc;
        if (!d.DigestBytes(&file) ||
            !DecodeLocation(std::string_view(it->value().data(), it->value().size()), file, &loc)) {
          return Corrupt("of a file location in layer " + layer.Short());
        }
        for (const Digest& c : loc.chunks) referenced.insert(c);
      }
      LAZYFS_RETURN_IF_ERROR(FromRocks(it->status(), "index read"));
      const std::string toc_prefix = schema::DigestKey('T', layer);
      for (it->Seek(toc_prefix); it->Valid() && it->key().starts_with(toc_prefix); it->Next()) {
        std::vector<TocChunk> chunks;
        if (!DecodeTocChunks(std::string_view(it->value().data(), it->value().size()), &chunks)) {
          return Corrupt("of TOC chunks in layer " + layer.Short());
        }
        for (const TocChunk& c : chunks) referenced.insert(c.digest);
      }
      LAZYFS_RETURN_IF_ERROR(FromRocks(it->status(), "index read"));
    }
    LAZYFS_ASSIGN_OR_RETURN(
        ContentCache::EvictReport r,
        cache_->Evict(options_.cache_size_bytes,
                      [&](const Digest& d) { return referenced.count(d) == 0; }));
    return GcReport{r.objects_removed, r.bytes_removed, r.objects_kept, r.bytes_kept};
  }

  Result<std::vector<StoredImage>> ListImages() override {
    std::map<Digest, StoredImage> images;
    LAZYFS_RETURN_IF_ERROR(ForEachImage([&](const ImageDescriptor& img, const TreeStats& st) {
      images[img.manifest_digest] = StoredImage{img, st, {}};
      return Status::Ok();
    }));
    LAZYFS_RETURN_IF_ERROR(ForEachRef([&](std::string_view ref, const Digest& m) {
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

  Status RemoveImage(const Digest& manifest) override {
    if (!options_.writable) return FailedPreconditionError("index opened read-only");
    LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor gone, GetImage(manifest));
    // Layers another stored image still uses keep their records.
    std::set<Digest> shared;
    LAZYFS_RETURN_IF_ERROR(ForEachImage([&](const ImageDescriptor& img, const TreeStats&) {
      if (img.manifest_digest == manifest) return Status::Ok();
      for (const LayerDescriptor& l : img.layers) shared.insert(l.digest);
      return Status::Ok();
    }));
    rocksdb::WriteBatch batch;
    auto drop_prefix = [&](const std::string& prefix) {
      // Every key under `prefix`: [prefix, prefix + 0xff...) as digest-led keys have it.
      batch.DeleteRange(prefix, prefix + std::string(16, '\xff'));
    };
    batch.Delete(schema::ImageKey(manifest));
    drop_prefix(schema::DigestKey('A', manifest));
    drop_prefix(schema::DigestKey('D', manifest));
    LAZYFS_RETURN_IF_ERROR(ForEachRef([&](std::string_view ref, const Digest& m) {
      if (m == manifest) batch.Delete(schema::RefKey(ref));
      return Status::Ok();
    }));
    for (const LayerDescriptor& l : gone.layers) {
      if (shared.count(l.digest)) continue;
      batch.Delete(schema::LayerKey(l.digest));
      batch.Delete(schema::LazyLayerKey(l.digest));
      for (char tag : {'E', 'O', 'K', 'Q'}) drop_prefix(schema::DigestKey(tag, l.digest));
    }
    return FromRocks(db_->db->Write(WriteOptions(), &batch), "index write");
  }

  Result<CasDir::CheckReport> CheckContent(bool repair) override {
    return cache_->cas().Check(repair);
  }

  Result<IndexCheckReport> Check() override {
    IndexCheckReport report;
    std::set<Digest> manifests;
    LAZYFS_RETURN_IF_ERROR(ForEachImage([&](const ImageDescriptor& img, const TreeStats& st) {
      ++report.images;
      manifests.insert(img.manifest_digest);
      const std::string name = "image " + img.manifest_digest.Short() + " (" + img.reference + ")";
      for (const LayerDescriptor& l : img.layers) {
        auto rec = GetLayerRecord(*db_, l.digest);
        if (!rec.ok() || !*rec) {
          report.problems.push_back(name + ": layer " + l.digest.Short() + " is not indexed");
          continue;
        }
        ++report.layers;
        auto entries = LoadLayerEntries(*db_, l.digest, **rec);
        if (!entries.ok()) {
          report.problems.push_back(name + ": layer " + l.digest.Short() + ": " +
                                    entries.status().message());
        }
      }
      // The tree: inode records 1..inodes, no more, no fewer.
      uint64_t inodes = 0;
      const std::string prefix = schema::DigestKey('A', img.manifest_digest);
      std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        const uint64_t ino = schema::ReadBe64(
            std::string_view(it->key().data() + prefix.size(), it->key().size() - prefix.size()));
        if (ino != inodes + 1) {
          report.problems.push_back(name + ": inode " + std::to_string(inodes + 1) + " is missing");
          break;
        }
        inodes = ino;
      }
      LAZYFS_RETURN_IF_ERROR(FromRocks(it->status(), "index read"));
      report.inodes += inodes;
      if (inodes != st.inodes) {
        report.problems.push_back(name + ": " + std::to_string(inodes) + " inode records, " +
                                  std::to_string(st.inodes) + " expected");
      }
      return Status::Ok();
    }));
    LAZYFS_RETURN_IF_ERROR(ForEachRef([&](std::string_view ref, const Digest& m) {
      ++report.refs;
      if (!manifests.count(m)) {
        report.problems.push_back("reference " + std::string(ref) + " points at " + m.Short() +
                                  ", which is not stored");
      }
      return Status::Ok();
    }));
    return report;
  }

 private:
  static rocksdb::WriteOptions WriteOptions() { return rocksdb::WriteOptions(); }

  Status ForEachImage(const std::function<Status(const ImageDescriptor&, const TreeStats&)>& fn) {
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek("I"); it->Valid() && it->key().starts_with("I"); it->Next()) {
      ImageDescriptor img;
      TreeStats st;
      if (!DecodeImage(std::string_view(it->value().data(), it->value().size()), &img, &st)) {
        return Corrupt("of an image");
      }
      LAZYFS_RETURN_IF_ERROR(fn(img, st));
    }
    return FromRocks(it->status(), "index read");
  }

  Status ForEachRef(const std::function<Status(std::string_view, const Digest&)>& fn) {
    std::unique_ptr<rocksdb::Iterator> it(db_->db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek("R"); it->Valid() && it->key().starts_with("R"); it->Next()) {
      Decoder d(std::string_view(it->value().data(), it->value().size()));
      Digest m;
      const std::string_view ref(it->key().data() + 1, it->key().size() - 1);
      if (!d.DigestBytes(&m) || !d.done()) return Corrupt("of reference " + std::string(ref));
      LAZYFS_RETURN_IF_ERROR(fn(ref, m));
    }
    return FromRocks(it->status(), "index read");
  }

  Result<ImageDescriptor> GetImageAndStats(const Digest& manifest, TreeStats* st) {
    LAZYFS_ASSIGN_OR_RETURN(auto v, db_->Get(schema::ImageKey(manifest)));
    if (!v) return NotFoundError("image " + manifest.ToString() + " is not in the index");
    ImageDescriptor img;
    if (!DecodeImage(*v, &img, st)) return Corrupt("of image " + manifest.Short());
    return img;
  }

  // The message of the error a layer's indexing stops with when another layer failed.
  static constexpr std::string_view kStopped = "stopped: another layer of the image failed";

  Result<std::vector<LayerEntry>> LayerEntries(const LayerDescriptor& layer, BlobSource& blobs,
                                               const ProgressFn& progress,
                                               rocksdb::WriteBatch& batch,
                                               const std::function<bool()>& stopped) {
    LAZYFS_ASSIGN_OR_RETURN(auto rec, GetLayerRecord(*db_, layer.digest));
    if (rec) return LoadLayerEntries(*db_, layer.digest, *rec);
    LAZYFS_ASSIGN_OR_RETURN(auto toc_digest, TocDigestOf(layer));
    if (toc_digest && layer.diff_id) {
      auto entries = TocLayerEntries(layer, *toc_digest, progress, blobs, batch);
      if (entries.ok() || entries.status().code() != StatusCode::kUnimplemented) return entries;
      LAZYFS_LOG(kInfo, "index", "%s; indexing the layer as a stream instead",
                 entries.status().message().c_str());
    }

    const std::string name = layer.digest.Short();
    LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
    LAZYFS_ASSIGN_OR_RETURN(Fd blob, blobs.OpenBlob(layer.digest, layer.size));
    LayerReadOptions ro = ReadOptionsOf(options_);
    // Capped against the size the manifest declares for the layer (the bytes just verified).
    const uint64_t declared = layer.size > UINT64_MAX / options_.max_expansion
                                  ? UINT64_MAX
                                  : layer.size * options_.max_expansion;
    ro.max_uncompressed_bytes =
        std::min(ro.max_uncompressed_bytes, std::max(declared, options_.min_expansion_cap));
    ro.record_checkpoints = true;
    LAZYFS_ASSIGN_OR_RETURN(auto reader, LayerReader::Open(blob.get(), layer.size, comp, ro, name));
    std::map<Digest, FileLocation> locations;
    std::vector<std::pair<uint64_t, Digest>> files_at;
    std::vector<LayerEntry> entries;
    uint64_t last_report = 0;
    ContentCapture capture(*cache_, name);
    for (;;) {
      if (stopped()) return UnavailableError(std::string(kStopped));
      LayerEntry e;
      LAZYFS_ASSIGN_OR_RETURN(bool more, reader->Next(&e));
      if (!more) break;
      if (e.kind == EntryKind::kFile) {
        const std::optional<uint64_t> offset = reader->DataOffset();
        FileLocation loc;
        const bool capturing = options_.cache_content_while_indexing && e.size > 0 &&
                               capture.Begin(e.size, &loc.chunks);
        auto digest = reader->ReadData(capturing ? capture.sink() : LayerReader::Sink(),
                                       &loc.chunks);
        if (!digest.ok()) {
          return Status(digest.status().code(),
                        digest.status().message() + " (in entry \"" + e.path + "\")");
        }
        if (capturing) capture.End(*digest);
        e.digest = *digest;
        // Where the bytes lie, for range reads; each chunk's digest is computed from the same
        // bytes as the file's, so it chains to the layer's digest and diff_id checked below.
        if (offset && e.size > 0) {
          loc.offset = *offset;
          loc.size = e.size;
          if (loc.chunks.size() <= 1) loc.chunks.clear();
          files_at.emplace_back(loc.offset, e.digest);
          locations.emplace(e.digest, std::move(loc));
        }
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
    const std::vector<Checkpoint> checkpoints = reader->TakeCheckpoints();
    for (const Checkpoint& cp : checkpoints) {
      batch.Put(schema::CheckpointKey(layer.digest, cp.uncompressed), EncodeCheckpoint(cp));
    }
    for (const auto& [digest, loc] : locations) {
      batch.Put(schema::LocationKey(layer.digest, digest), EncodeLocation(loc));
    }
    for (const auto& [offset, digest] : files_at) {
      batch.Put(schema::FileAtKey(layer.digest, offset),
                std::string(reinterpret_cast<const char*>(digest.bytes().data()), 32));
    }
    batch.Put(schema::LazyLayerKey(layer.digest),
              EncodeLazyLayer(LazyLayerRecord{comp, checkpoints.size()}));
    PutEntries(layer.digest, entries, r, batch);
    return entries;
  }

  // The layer's entries ('E') and then its record ('L').
  static void PutEntries(const Digest& layer, const std::vector<LayerEntry>& entries,
                         LayerRecord& r, rocksdb::WriteBatch& batch) {
    for (size_t i = 0; i < entries.size(); i += schema::kEntriesPerChunk) {
      Encoder enc;
      for (size_t j = i; j < std::min(entries.size(), i + schema::kEntriesPerChunk); ++j) {
        EncodeLayerEntry(entries[j], enc);
      }
      batch.Put(schema::ChunkKey(layer, r.chunks++), enc.data());
    }
    batch.Put(schema::LayerKey(layer), EncodeLayer(r));
  }

  // An eStargz or zstd:chunked layer with an annotated TOC: indexed from the footer and TOC
  // alone (toc_index.h). Its diff_id cannot be computed without every byte: the config's is
  // recorded, and the whole-layer check verifies it once reads (or prefetch) fetched them all.
  Result<std::vector<LayerEntry>> TocLayerEntries(const LayerDescriptor& layer,
                                                  const Digest& toc_digest,
                                                  const ProgressFn& progress, BlobSource& blobs,
                                                  rocksdb::WriteBatch& batch) {
    TocLimits limits;
    limits.max_entries = options_.max_entries_per_layer;
    limits.max_xattr_bytes_per_entry = options_.max_xattr_bytes_per_entry;
    LAZYFS_ASSIGN_OR_RETURN(TocIndexed toc, IndexFromToc(layer, toc_digest, blobs, limits));
    for (const auto& [key, value] : toc.records) batch.Put(key, value);
    LayerRecord r;
    r.diff_id = *layer.diff_id;
    r.entries = toc.entries.size();
    PutEntries(layer.digest, toc.entries, r, batch);
    if (progress) progress({"index", layer.digest.Short(), layer.size, layer.size});
    return std::move(toc.entries);
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
  std::shared_ptr<LazyReads> lazy_;
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
  if (options.store.root.empty()) return InvalidArgumentError("no store directory given");
  const std::string path = options.store.index();
  LAZYFS_RETURN_IF_ERROR(MakeDirs(options.store.root, 0700));
  auto db = std::make_shared<Db>();
  rocksdb::Options ro;
  ro.max_open_files = -1;  // required by secondary instances; files stay readable once open
  ro.create_if_missing = options.writable;
  ro.info_log_level = rocksdb::InfoLogLevel::ERROR_LEVEL;
  ro.keep_log_file_num = 2;
  // No preallocation: RocksDB reserves about 1.1x the write buffer (70 MiB) for each WAL with
  // fallocate, which on a small store filesystem took the room a layer blob needed, and an
  // index whose records are written in a few large batches gains nothing from it.
  ro.allow_fallocate = false;
  rocksdb::DB* raw = nullptr;
  if (options.writable) {
    LAZYFS_ASSIGN_OR_RETURN(db->lock, OpenFile(options.store.index_lock(),
                                               O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    while (::flock(db->lock.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return ErrnoError(errno, "lock " + options.store.index_lock());
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
      // Announce the compat features this version writes (layers indexed from now on carry
      // them); images indexed before keep working without them.
      LAZYFS_RETURN_IF_ERROR(AddCompatFeatures(*db, *format));
    }
  } else {
    if (::access((path + "/CURRENT").c_str(), F_OK) != 0) {
      return NotFoundError("store " + options.store.root + " has no index yet");
    }
    const std::string readers = options.store.index_readers();
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
    if (format) {
      LAZYFS_RETURN_IF_ERROR(CheckFormat(*format, path, false));
    } else {
      // A writer killed between creating the database and writing its first record leaves an
      // empty index: it holds no image, and the next writer adds the format record. Anything
      // else without one is damage.
      std::unique_ptr<rocksdb::Iterator> it(db->db->NewIterator(rocksdb::ReadOptions()));
      it->SeekToFirst();
      LAZYFS_RETURN_IF_ERROR(FromRocks(it->status(), "index read"));
      if (it->Valid()) return DataLossError("store index " + path + " has no format record");
    }
  }
  const std::string content = options.store.content();
  LAZYFS_ASSIGN_OR_RETURN(auto cas, CasDir::Open(content));
  LAZYFS_RETURN_IF_ERROR(MakeDirs(options.store.verified_layers(), 0700));
  auto cache =
      std::make_shared<ContentCache>(std::move(cas), ReadOptionsOf(options), options.cache_size_bytes);
  auto lazy = std::make_shared<LazyReads>(content);
  return std::unique_ptr<Index>(
      new StoredIndex(options, std::move(db), std::move(cache), std::move(lazy)));
}

}  // namespace lazyfs::index
