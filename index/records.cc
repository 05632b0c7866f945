#include "index/records.h"

#include <sys/stat.h>

#include "index/codec.h"
#include "index/schema.h"

namespace lazyfs::index {
namespace {

// ---- codecs ----------------------------------------------------------------------------------

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

std::string EncodeTocLayer(const TocLayerRecord& r) {
  Encoder e;
  e.U8(1);
  e.U8(static_cast<uint8_t>(r.format));
  e.DigestBytes(r.toc_digest);
  e.Varint(r.first_chunk);
  e.Varint(r.payload_end);
  e.Varint(r.prefetch.size());
  for (const Digest& d : r.prefetch) e.DigestBytes(d);
  return e.Take();
}

bool DecodeTocLayer(std::string_view v, TocLayerRecord* r) {
  Decoder d(v);
  uint8_t version, format;
  uint64_t n;
  if (!d.U8(&version) || version != 1 || !d.U8(&format) || format < 1 || format > 2 ||
      !d.DigestBytes(&r->toc_digest) || !d.Varint(&r->first_chunk) || !d.Varint(&r->payload_end) ||
      !d.Varint(&n) || n > (uint64_t{1} << 32)) {
    return false;
  }
  r->format = static_cast<TocFormat>(format);
  r->prefetch.resize(n);
  for (Digest& x : r->prefetch) {
    if (!d.DigestBytes(&x)) return false;
  }
  return d.done();
}

// A bare digest value ('R', 'Q').
std::string DigestValue(const Digest& d) {
  std::string v;
  schema::AppendDigest(v, d);
  return v;
}
bool DecodeDigestValue(std::string_view v, Digest* out) {
  Decoder d(v);
  return d.DigestBytes(out) && d.done();
}

// The digest that ends a key ('O' and 'T' keys end with the file's).
bool DigestAfter(std::string_view key, size_t prefix, Digest* out) {
  if (key.size() != prefix + 32) return false;
  Decoder d(key.substr(prefix));
  return d.DigestBytes(out);
}

// A directory entry's value ('D'): the child's inode number and st_mode.
bool DecodeChild(std::string_view v, DirEntry* e) {
  if (v.size() < 8) return false;
  e->ino = schema::ReadBe64(v.substr(0, 8));
  Decoder d(v.substr(8));
  return d.VarintAs(&e->mode) && d.done();
}

template <typename T, typename Decode>
Result<std::optional<T>> GetDecoded(const Db& db, const std::string& key, Decode decode,
                                    const std::string& what) {
  LAZYFS_ASSIGN_OR_RETURN(auto v, db.Get(key));
  if (!v) return std::optional<T>();
  T out;
  if (!decode(*v, &out)) return Corrupt(what);
  return std::optional<T>(std::move(out));
}

}  // namespace

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

std::string EncodeLocation(const FileLocation& l) {
  Encoder e;
  e.U8(l.sparse ? 2 : 1);  // 2: sparse
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
  if (!d.U8(&version) || (version != 1 && version != 2) || !d.Varint(&l->offset) ||
      !d.Varint(&l->size) || !d.Varint(&n) || (n != 0 && n != l->chunk_count()) ||
      (n == 0 && l->chunk_count() > 1)) {
    return false;
  }
  l->sparse = version == 2;
  l->chunks.resize(n);
  for (Digest& c : l->chunks) {
    if (!d.DigestBytes(&c)) return false;
  }
  return d.done();
}

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

std::string schema::EncodeFormatRecord(uint64_t version, uint64_t compat, uint64_t ro_compat,
                                       uint64_t incompat) {
  Encoder e;
  e.Varint(version);
  e.Varint(compat);
  e.Varint(ro_compat);
  e.Varint(incompat);
  return e.Take();
}

bool DecodeFormatRecord(std::string_view v, FormatRecord* out) {
  Decoder d(v);
  return d.Varint(&out->version) && d.Varint(&out->compat) && d.Varint(&out->ro_compat) &&
         d.Varint(&out->incompat);
}

std::string EncodeTocChunks(const std::vector<TocChunk>& chunks) {
  Encoder e;
  e.U8(1);
  e.Varint(chunks.size());
  for (const TocChunk& c : chunks) {
    e.Varint(c.size);
    e.Varint(c.compressed_offset);
    e.Varint(c.compressed_end - c.compressed_offset);
    e.Varint(c.inner_offset);
    e.DigestBytes(c.digest);
  }
  return e.Take();
}

bool DecodeTocChunks(std::string_view v, std::vector<TocChunk>* out) {
  Decoder d(v);
  uint8_t version;
  uint64_t n;
  if (!d.U8(&version) || version != 1 || !d.Varint(&n) || n > (uint64_t{1} << 32)) return false;
  out->clear();
  uint64_t offset = 0;
  for (uint64_t i = 0; i < n; ++i) {
    TocChunk c;
    uint64_t len;
    if (!d.Varint(&c.size) || !d.Varint(&c.compressed_offset) || !d.Varint(&len) ||
        !d.Varint(&c.inner_offset) || !d.DigestBytes(&c.digest)) {
      return false;
    }
    c.offset = offset;
    c.compressed_end = c.compressed_offset + len;
    offset += c.size;
    out->push_back(std::move(c));
  }
  return d.done();
}

// ---- reads -----------------------------------------------------------------------------------

Result<std::optional<Digest>> Records::Ref(std::string_view ref) const {
  return GetDecoded<Digest>(db_, schema::RefKey(ref), DecodeDigestValue,
                            "of reference " + std::string(ref));
}

Status Records::ForEachRef(const std::function<Status(std::string_view, const Digest&)>& fn) const {
  Status failed;
  const std::string prefix = schema::RefPrefix();
  LAZYFS_RETURN_IF_ERROR(db_.Scan(prefix, [&](std::string_view key, std::string_view value) {
    const std::string_view ref = key.substr(prefix.size());
    Digest m;
    failed = DecodeDigestValue(value, &m) ? fn(ref, m) : Corrupt("of reference " + std::string(ref));
    return failed.ok();
  }));
  return failed;
}

Result<bool> Records::HasImage(const Digest& manifest) const {
  LAZYFS_ASSIGN_OR_RETURN(auto v, db_.Get(schema::ImageKey(manifest)));
  return v.has_value();
}

Result<ImageDescriptor> Records::Image(const Digest& manifest, TreeStats* stats) const {
  LAZYFS_ASSIGN_OR_RETURN(auto v, db_.Get(schema::ImageKey(manifest)));
  if (!v) return NotFoundError("image " + manifest.ToString() + " is not in the index");
  ImageDescriptor img;
  if (!DecodeImage(*v, &img, stats)) return Corrupt("of image " + manifest.Short());
  return img;
}

Status Records::ForEachImage(
    const std::function<Status(const ImageDescriptor&, const TreeStats&)>& fn) const {
  Status failed;
  LAZYFS_RETURN_IF_ERROR(db_.Scan(schema::ImagePrefix(), [&](std::string_view, std::string_view v) {
    ImageDescriptor img;
    TreeStats st;
    failed = DecodeImage(v, &img, &st) ? fn(img, st) : Corrupt("of an image");
    return failed.ok();
  }));
  return failed;
}

Result<InodeRecord> Records::Inode(const Digest& manifest, uint64_t ino) const {
  LAZYFS_ASSIGN_OR_RETURN(auto v, db_.Get(schema::InodeKey(manifest, ino)));
  if (!v) return Corrupt("of inode " + std::to_string(ino) + " (missing)");
  InodeRecord r;
  if (!DecodeInode(*v, ino, &r)) return Corrupt("of inode " + std::to_string(ino));
  return r;
}

Status Records::ForEachInode(const Digest& manifest,
                             const std::function<Result<bool>(const InodeRecord&)>& fn) const {
  Status failed;
  const std::string prefix = schema::InodePrefix(manifest);
  LAZYFS_RETURN_IF_ERROR(db_.Scan(prefix, [&](std::string_view key, std::string_view value) {
    const uint64_t ino = schema::ReadBe64(key.substr(prefix.size()));
    InodeRecord r;
    if (!DecodeInode(value, ino, &r)) {
      failed = Corrupt("of inode " + std::to_string(ino));
      return false;
    }
    Result<bool> more = fn(r);
    failed = more.status();
    return more.ok() && *more;
  }));
  return failed;
}

Result<std::optional<uint64_t>> Records::Child(const Digest& manifest, uint64_t parent,
                                               std::string_view name) const {
  LAZYFS_ASSIGN_OR_RETURN(auto v, db_.Get(schema::DirEntryKey(manifest, parent, name)));
  if (!v) return std::optional<uint64_t>();
  if (v->size() < 8) return Corrupt("directory entry");
  return std::optional<uint64_t>(schema::ReadBe64(*v));
}

Result<std::vector<DirEntry>> Records::Children(const Digest& manifest, uint64_t parent) const {
  const std::string prefix = schema::DirPrefix(manifest, parent);
  std::vector<DirEntry> out;
  bool damaged = false;
  LAZYFS_RETURN_IF_ERROR(db_.Scan(prefix, [&](std::string_view key, std::string_view value) {
    DirEntry e;
    e.name = std::string(key.substr(prefix.size()));
    damaged = !DecodeChild(value, &e);
    if (!damaged) out.push_back(std::move(e));
    return !damaged;
  }));
  if (damaged) return Corrupt("directory entry");
  return out;
}

Result<std::optional<LayerRecord>> Records::Layer(const Digest& layer) const {
  return GetDecoded<LayerRecord>(db_, schema::LayerKey(layer), DecodeLayer,
                                 "of layer " + layer.Short());
}

Result<std::vector<LayerEntry>> Records::Entries(const Digest& layer,
                                                 const LayerRecord& rec) const {
  std::vector<LayerEntry> out;
  out.reserve(rec.entries);
  for (uint32_t c = 0; c < rec.chunks; ++c) {
    LAZYFS_ASSIGN_OR_RETURN(auto v, db_.Get(schema::ChunkKey(layer, c)));
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

Result<std::optional<LazyLayerRecord>> Records::LazyLayer(const Digest& layer) const {
  return GetDecoded<LazyLayerRecord>(db_, schema::LazyLayerKey(layer), DecodeLazyLayer,
                                     "of layer " + layer.Short() + " (lazy)");
}

Result<std::optional<FileLocation>> Records::Location(const Digest& layer,
                                                      const Digest& file) const {
  return GetDecoded<FileLocation>(
      db_, schema::LocationKey(layer, file),
      [&](std::string_view v, FileLocation* l) { return DecodeLocation(v, file, l); },
      "of file " + file.Short() + " (location)");
}

Status Records::ForEachLocation(const Digest& layer,
                                const std::function<void(const FileLocation&)>& fn) const {
  const std::string prefix = schema::LocationPrefix(layer);
  bool damaged = false;
  LAZYFS_RETURN_IF_ERROR(db_.Scan(prefix, [&](std::string_view key, std::string_view value) {
    Digest file;
    FileLocation loc;
    damaged = !DigestAfter(key, prefix.size(), &file) || !DecodeLocation(value, file, &loc);
    if (!damaged) fn(loc);
    return !damaged;
  }));
  if (damaged) return Corrupt("of a file location in layer " + layer.Short());
  return Status::Ok();
}

Status Records::ForEachFileAt(const Digest& layer, uint64_t from,
                              const std::function<bool(uint64_t, const Digest&)>& fn) const {
  const std::string prefix = schema::FileAtPrefix(layer);
  return db_.Scan(
      prefix,
      [&](std::string_view key, std::string_view value) {
        Digest file;
        if (key.size() != prefix.size() + 8 || !DecodeDigestValue(value, &file)) return false;
        return fn(schema::ReadBe64(key.substr(prefix.size())), file);
      },
      schema::FileAtKey(layer, from));
}

Result<std::optional<Checkpoint>> Records::CheckpointNear(const Digest& layer,
                                                          uint64_t uncompressed,
                                                          bool before) const {
  const std::string prefix = schema::CheckpointPrefix(layer);
  LAZYFS_ASSIGN_OR_RETURN(
      auto rec, db_.Seek(prefix, schema::CheckpointKey(layer, uncompressed), before));
  if (!rec || rec->key.size() != prefix.size() + 8) return std::optional<Checkpoint>();
  const uint64_t at = schema::ReadBe64(std::string_view(rec->key).substr(prefix.size()));
  LAZYFS_ASSIGN_OR_RETURN(Checkpoint cp, DecodeCheckpoint(rec->value, at));
  return std::optional<Checkpoint>(std::move(cp));
}

Result<std::optional<TocLayerRecord>> Records::TocLayer(const Digest& layer) const {
  return GetDecoded<TocLayerRecord>(db_, schema::TocLayerKey(layer), DecodeTocLayer,
                                    "of layer " + layer.Short() + " (TOC)");
}

Result<std::optional<std::vector<TocChunk>>> Records::TocChunks(const Digest& layer,
                                                                const Digest& file) const {
  return GetDecoded<std::vector<TocChunk>>(db_, schema::TocFileKey(layer, file), DecodeTocChunks,
                                           "of file " + file.Short() + " (TOC chunks)");
}

Status Records::ForEachTocFile(const Digest& layer,
                               const std::function<void(const std::vector<TocChunk>&)>& fn) const {
  bool damaged = false;
  LAZYFS_RETURN_IF_ERROR(
      db_.Scan(schema::TocFilePrefix(layer), [&](std::string_view, std::string_view value) {
        std::vector<TocChunk> chunks;
        damaged = !DecodeTocChunks(value, &chunks);
        if (!damaged) fn(chunks);
        return !damaged;
      }));
  if (damaged) return Corrupt("of TOC chunks in layer " + layer.Short());
  return Status::Ok();
}

Result<std::optional<ArtifactProvenance>> Records::Provenance(const Digest& layer) const {
  return GetDecoded<ArtifactProvenance>(
      db_, schema::ProvenanceKey(layer),
      [](std::string_view v, ArtifactProvenance* p) {
        Decoder d(v);
        uint8_t version;
        return d.U8(&version) && version == 1 && d.DigestBytes(&p->artifact) && d.done();
      },
      "of layer " + layer.Short() + " (provenance)");
}

Result<bool> Records::HasTocFiles(const Digest& layer) const {
  return db_.Any(schema::TocFilePrefix(layer));
}

// ---- writes ----------------------------------------------------------------------------------

void RecordBatch::PutRef(std::string_view ref, const Digest& manifest) {
  batch_.Put(schema::RefKey(ref), DigestValue(manifest));
}

void RecordBatch::DeleteRef(std::string_view ref) { batch_.Delete(schema::RefKey(ref)); }

void RecordBatch::PutImage(const ImageDescriptor& image, const TreeStats& stats) {
  batch_.Put(schema::ImageKey(image.manifest_digest), EncodeImage(image, stats));
}

void RecordBatch::PutInode(const Digest& manifest, const MergedInode& inode) {
  batch_.Put(schema::InodeKey(manifest, inode.attr.ino), EncodeInode(inode));
}

void RecordBatch::PutChild(const Digest& manifest, uint64_t parent, const DirEntry& child) {
  std::string v;
  schema::AppendBe(v, child.ino, 8);
  Encoder enc;
  enc.Varint(child.mode);
  v += enc.data();
  batch_.Put(schema::DirEntryKey(manifest, parent, child.name), v);
}

void RecordBatch::DeleteImage(const Digest& manifest) {
  batch_.Delete(schema::ImageKey(manifest));
  for (const std::string& p : {schema::InodePrefix(manifest), schema::DirEntriesPrefix(manifest)}) {
    batch_.DeleteRange(p, schema::PrefixEnd(p));
  }
}

void RecordBatch::PutEntries(const Digest& layer, const std::vector<LayerEntry>& entries,
                             LayerRecord rec) {
  rec.entries = entries.size();
  rec.chunks = 0;
  for (size_t i = 0; i < entries.size(); i += schema::kEntriesPerChunk) {
    Encoder enc;
    for (size_t j = i; j < std::min(entries.size(), i + schema::kEntriesPerChunk); ++j) {
      EncodeLayerEntry(entries[j], enc);
    }
    batch_.Put(schema::ChunkKey(layer, rec.chunks++), enc.data());
  }
  batch_.Put(schema::LayerKey(layer), EncodeLayer(rec));
}

void RecordBatch::PutLazyLayer(const Digest& layer, const LazyLayerRecord& rec) {
  batch_.Put(schema::LazyLayerKey(layer), EncodeLazyLayer(rec));
}

void RecordBatch::PutLocation(const Digest& layer, const FileLocation& loc) {
  batch_.Put(schema::LocationKey(layer, loc.digest), EncodeLocation(loc));
}

void RecordBatch::PutFileAt(const Digest& layer, uint64_t offset, const Digest& file) {
  batch_.Put(schema::FileAtKey(layer, offset), DigestValue(file));
}

void RecordBatch::PutCheckpoint(const Digest& layer, const Checkpoint& cp) {
  batch_.Put(schema::CheckpointKey(layer, cp.uncompressed), EncodeCheckpoint(cp));
}

void RecordBatch::PutTocLayer(const Digest& layer, const TocLayerRecord& rec) {
  batch_.Put(schema::TocLayerKey(layer), EncodeTocLayer(rec));
}

void RecordBatch::PutTocChunks(const Digest& layer, const Digest& file,
                               const std::vector<TocChunk>& chunks) {
  batch_.Put(schema::TocFileKey(layer, file), EncodeTocChunks(chunks));
}

void RecordBatch::PutProvenance(const Digest& layer, const ArtifactProvenance& p) {
  Encoder e;
  e.U8(1);
  e.DigestBytes(p.artifact);
  batch_.Put(schema::ProvenanceKey(layer), e.data());
}

void RecordBatch::DeleteProvenance(const Digest& layer) {
  batch_.Delete(schema::ProvenanceKey(layer));
}

void RecordBatch::DeleteLayer(const Digest& layer) {
  for (const std::string& k : schema::LayerKeys(layer)) batch_.Delete(k);
  for (const std::string& p : schema::LayerPrefixes(layer)) {
    batch_.DeleteRange(p, schema::PrefixEnd(p));
  }
}

Status RecordBatch::Append(rocksdb::WriteBatch& other) {
  // WriteBatch has no public append: replay the other's puts and deletes.
  struct Copy : rocksdb::WriteBatch::Handler {
    rocksdb::WriteBatch* to = nullptr;
    void Put(const rocksdb::Slice& k, const rocksdb::Slice& v) override { to->Put(k, v); }
    void Delete(const rocksdb::Slice& k) override { to->Delete(k); }
  };
  Copy copy;
  copy.to = &batch_;
  return FromRocks(other.Iterate(&copy), "index write");
}

}  // namespace lazyfs::index
