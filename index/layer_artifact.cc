// The layer index artifact's codec (layer_artifact.h): reading a layer's records, the blob's
// encoding, and decoding an untrusted blob with every claim checked.
#include "index/layer_artifact.h"

#include <zstd.h>

#include <map>
#include <memory>

#include "base/text.h"
#include "index/codec.h"
#include "index/layer_indexer.h"
#include "index/layer_reader.h"
#include "index/schema.h"

namespace lazyfs::index {
namespace {

constexpr std::string_view kMagic = "LZFSLIDX";
// magic, major, minor, layer digest, compressed size, compression, diff_id.
constexpr size_t kHeaderSize = 8 + 2 + 2 + 32 + 8 + 1 + 32;
// The sections, in the order they must appear; a tag with kOptional set is skipped by a reader
// that does not know it, any other unknown tag refuses the blob.
constexpr uint8_t kSections[] = {'L', 'M', 'E', 'O', 'Q', 'K'};
constexpr uint8_t kOptional = 0x80;

struct DCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};
using DCtx = std::unique_ptr<ZSTD_DCtx, DCtxFree>;

Status Bad(std::string_view what) {
  return InvalidArgumentError("index artifact: " + std::string(what));
}

// ---- reading a layer's records -----------------------------------------------------------------

// Adds one stored record of the layer (key and value as the Db holds them) to `art`.
Status AddRecord(std::string_view key, std::string_view value, LayerArtifact* art) {
  if (key.size() < 33) return Corrupt("of a layer (key)");
  const std::string_view rest = key.substr(33);
  const std::string what = "of layer record '" + std::string(1, key[0]) + "'";
  switch (key[0]) {
    case 'E': {
      Decoder d(value);
      while (!d.done()) {
        LayerEntry e;
        if (!DecodeLayerEntry(d, &e)) return Corrupt(what);
        art->entries.push_back(std::move(e));
      }
      return Status::Ok();
    }
    case 'O': {
      Decoder kd(rest);
      Digest file;
      FileLocation loc;
      if (rest.size() != 32 || !kd.DigestBytes(&file) || !DecodeLocation(value, file, &loc)) {
        return Corrupt(what);
      }
      art->locations.push_back(std::move(loc));
      return Status::Ok();
    }
    case 'Q': {
      Decoder vd(value);
      Digest file;
      if (rest.size() != 8 || !vd.DigestBytes(&file) || !vd.done()) return Corrupt(what);
      art->files_at.emplace_back(schema::ReadBe64(rest), file);
      return Status::Ok();
    }
    case 'K': {
      if (rest.size() != 8) return Corrupt(what);
      LAZYFS_ASSIGN_OR_RETURN(Checkpoint cp, DecodeCheckpoint(value, schema::ReadBe64(rest)));
      art->checkpoints.push_back(std::move(cp));
      return Status::Ok();
    }
    case 'L':
      return DecodeLayer(value, &art->record) ? Status::Ok() : Corrupt(what);
    case 'M':
      return DecodeLazyLayer(value, &art->lazy) ? Status::Ok() : Corrupt(what);
    default:
      return Status::Ok();  // 'P', 'S', 'T': not part of an artifact
  }
}

// ---- the blob's encoding -------------------------------------------------------------------

void Section(Encoder& out, uint8_t tag, const Encoder& payload) {
  out.U8(tag);
  out.Bytes(payload.data());
}

std::string EncodeBody(const LayerDescriptor& layer, const LayerArtifact& art) {
  std::string header(kMagic);
  schema::AppendBe(header, kArtifactMajor, 2);
  schema::AppendBe(header, kArtifactMinor, 2);
  schema::AppendDigest(header, layer.digest);
  schema::AppendBe(header, layer.size, 8);
  header.push_back(static_cast<char>(art.lazy.compression));
  schema::AppendDigest(header, art.record.diff_id);
  Encoder out;
  out.Raw(header);
  Encoder l, m, e, o, q, k;
  l.Raw(EncodeLayer(art.record));
  m.Raw(EncodeLazyLayer(art.lazy));
  e.Varint(art.entries.size());
  for (const LayerEntry& x : art.entries) EncodeLayerEntry(x, e);
  o.Varint(art.locations.size());
  for (const FileLocation& x : art.locations) {
    o.DigestBytes(x.digest);
    o.Bytes(EncodeLocation(x));
  }
  q.Varint(art.files_at.size());
  for (const auto& [offset, file] : art.files_at) {
    q.Varint(offset);
    q.DigestBytes(file);
  }
  k.Varint(art.checkpoints.size());
  for (const Checkpoint& x : art.checkpoints) {
    k.Varint(x.uncompressed);
    k.Bytes(EncodeCheckpoint(x));
  }
  Section(out, 'L', l);
  Section(out, 'M', m);
  Section(out, 'E', e);
  Section(out, 'O', o);
  Section(out, 'Q', q);
  Section(out, 'K', k);
  return out.Take();
}

// ---- decoding an untrusted blob ----------------------------------------------------------------

// The blob decompressed, never past its cap: the frame's declared size is checked before any
// output is made, and the output is counted as it streams (a frame may not declare its size).
Result<std::string> Decompress(std::string_view blob) {
  const uint64_t cap = std::min(
      kArtifactMaxBytes, std::max(kArtifactMinCap, blob.size() * kArtifactMaxExpansion));
  const auto too_big = [&] {
    return ResourceExhaustedError("index artifact: decompresses to more than " +
                                  std::to_string(cap) + " bytes");
  };
  const unsigned long long declared = ZSTD_getFrameContentSize(blob.data(), blob.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return Bad("not a zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > cap) return too_big();
  DCtx ctx(ZSTD_createDCtx());
  if (!ctx) return ResourceExhaustedError("index artifact: no memory for zstd");
  // 128 MiB windows at most: a hostile frame cannot ask for more memory than that.
  ZSTD_DCtx_setParameter(ctx.get(), ZSTD_d_windowLogMax, 27);
  std::string out;
  ZSTD_inBuffer in{blob.data(), blob.size(), 0};
  size_t ret = 1;
  while (in.pos < in.size || ret != 0) {
    const size_t at = out.size();
    out.resize(at + (1 << 20));
    ZSTD_outBuffer o{out.data() + at, out.size() - at, 0};
    ret = ZSTD_decompressStream(ctx.get(), &o, &in);
    out.resize(at + o.pos);
    if (ZSTD_isError(ret)) return Bad(std::string("zstd: ") + ZSTD_getErrorName(ret));
    if (out.size() > cap) return too_big();
    if (in.pos == in.size && o.pos == 0 && ret != 0) return Bad("truncated");
  }
  return out;
}

Status CheckHeader(std::string_view h, const LayerDescriptor& layer, LayerCompression* comp,
                   Digest* diff_id) {
  if (h.size() < kHeaderSize || h.substr(0, 8) != kMagic) return Bad("no lazyfs header");
  const uint64_t major = static_cast<uint64_t>(static_cast<uint8_t>(h[8])) << 8 |
                         static_cast<uint8_t>(h[9]);
  if (major != kArtifactMajor) {
    return Bad("format version " + std::to_string(major) + " is not one this lazyfs reads (" +
               std::to_string(kArtifactMajor) + ")");
  }
  Decoder d(h.substr(12, 32));
  Digest digest;
  d.DigestBytes(&digest);
  if (digest != layer.digest) {
    return Bad("it indexes layer " + digest.ToString() + ", not " + layer.digest.ToString());
  }
  if (schema::ReadBe64(h.substr(44, 8)) != layer.size) {
    return Bad("it says the layer is " + std::to_string(schema::ReadBe64(h.substr(44, 8))) +
               " bytes, the manifest " + std::to_string(layer.size));
  }
  LAZYFS_ASSIGN_OR_RETURN(*comp, CompressionOfMediaType(layer.media_type));
  if (static_cast<uint8_t>(h[52]) != static_cast<uint8_t>(*comp)) {
    return Bad("its compression is not the layer's media type " + layer.media_type);
  }
  Decoder dd(h.substr(53, 32));
  dd.DigestBytes(diff_id);
  if (layer.diff_id && *layer.diff_id != *diff_id) {
    return Bad("its diff_id " + diff_id->ToString() + " is not the config's " +
               layer.diff_id->ToString());
  }
  return Status::Ok();
}

// The required sections in order (optional ones skipped), each a whole payload.
Result<std::map<uint8_t, std::string>> SplitSections(std::string_view body) {
  std::map<uint8_t, std::string> out;
  Decoder d(body);
  size_t next = 0;
  while (!d.done()) {
    uint8_t tag;
    std::string payload;
    if (!d.U8(&tag) || !d.Bytes(&payload)) return Bad("a section is cut short (truncated?)");
    if (tag & kOptional) continue;
    if (next >= std::size(kSections) || tag != kSections[next]) {
      return Bad("unexpected section '" + std::string(1, static_cast<char>(tag & 0x7f)) + "'");
    }
    out[tag] = std::move(payload);
    ++next;
  }
  if (next != std::size(kSections)) return Bad("sections missing (truncated?)");
  return out;
}

// An entry as the stream indexer records it: a normalised name that is not a whiteout marker
// (those are their own kinds), a normalised hardlink target, and the indexer's caps.
Status CheckEntry(const LayerEntry& e, const IndexOptions& options) {
  const std::string name = QuoteName(e.path);
  if (e.path.empty()) {
    if (e.kind != EntryKind::kDir) return Bad("entry with an empty name");
  } else {
    auto norm = NormaliseEntryPath(e.path);
    if (!norm.ok()) return Bad("entry " + name + ": " + norm.status().message());
    if (*norm != e.path) return Bad("entry " + name + " is not a normalised name");
    LayerEntry probe;
    auto kind = ClassifyEntryName(e.path, &probe);
    if (!kind.ok() || *kind != EntryName::kPlain) return Bad("entry " + name + ": a whiteout name");
  }
  if (e.kind == EntryKind::kHardlink) {
    auto target = NormaliseEntryPath(e.link);
    if (!target.ok() || *target != e.link) return Bad("entry " + name + ": bad hardlink target");
  }
  if (e.mode > 07777) return Bad("entry " + name + ": mode has type bits");
  if (e.size > options.max_file_size) return Bad("entry " + name + ": size over the cap");
  if (e.mtime_nsec > kMaxTimeNsec) return Bad("entry " + name + ": nanoseconds out of range");
  if (!CheckDeviceNumbers(e.rdev_major, e.rdev_minor).ok()) {
    return Bad("entry " + name + ": device number out of range");
  }
  uint64_t xattr_bytes = 0;
  for (size_t i = 0; i < e.xattrs.size(); ++i) {
    xattr_bytes += e.xattrs[i].name.size() + e.xattrs[i].value.size();
    if (i > 0 && !(e.xattrs[i - 1].name < e.xattrs[i].name)) {
      return Bad("entry " + name + ": xattrs not sorted");
    }
  }
  if (xattr_bytes > options.max_xattr_bytes_per_entry) {
    return Bad("entry " + name + ": xattrs over the cap");
  }
  return Status::Ok();
}

Status DecodeEntries(std::string_view payload, const IndexOptions& options, LayerArtifact* art) {
  Decoder d(payload);
  uint64_t n;
  if (!d.Varint(&n) || n != art->record.entries) return Bad("entry count is not the layer's");
  if (n > options.max_entries_per_layer) {
    return ResourceExhaustedError("index artifact: " + std::to_string(n) +
                                  " entries, more than " +
                                  std::to_string(options.max_entries_per_layer));
  }
  for (uint64_t i = 0; i < n; ++i) {
    LayerEntry e;
    if (!DecodeLayerEntry(d, &e)) return Bad("entry " + std::to_string(i) + " does not decode");
    LAZYFS_RETURN_IF_ERROR(CheckEntry(e, options));
    art->entries.push_back(std::move(e));
  }
  return d.done() ? Status::Ok() : Bad("bytes after the entries");
}

// Locations: one per file digest the entries name, with that file's size, within the tar.
Status DecodeLocations(std::string_view payload, LayerArtifact* art) {
  std::map<Digest, uint64_t> files;
  for (const LayerEntry& e : art->entries) {
    if (e.kind == EntryKind::kFile) files[e.digest] = e.size;
  }
  Decoder d(payload);
  uint64_t n;
  if (!d.Varint(&n) || n > files.size()) return Bad("more file locations than files");
  for (uint64_t i = 0; i < n; ++i) {
    Digest file;
    std::string value;
    FileLocation loc;
    if (!d.DigestBytes(&file) || !d.Bytes(&value) || !DecodeLocation(value, file, &loc)) {
      return Bad("file location " + std::to_string(i) + " does not decode");
    }
    if (!art->locations.empty() && !(art->locations.back().digest < file)) {
      return Bad("file locations not in order");
    }
    auto it = files.find(file);
    if (it == files.end() || it->second != loc.size || loc.size == 0) {
      return Bad("file location " + file.Short() + " names no file of its size");
    }
    const uint64_t end = art->record.uncompressed;
    if (loc.sparse ? loc.offset != 0 : (loc.offset > end || loc.size > end - loc.offset)) {
      return Bad("file " + file.Short() + " lies outside the layer's " + std::to_string(end) +
                 " uncompressed bytes");
    }
    art->locations.push_back(std::move(loc));
  }
  return d.done() ? Status::Ok() : Bad("bytes after the file locations");
}

// File offsets: one per regular file with data (files of the same content share one location
// but each has its offset), strictly increasing, each the start of a file of that content that
// fits in the layer.
Status DecodeFilesAt(std::string_view payload, LayerArtifact* art) {
  std::map<Digest, const FileLocation*> by_digest;
  for (const FileLocation& l : art->locations) by_digest[l.digest] = &l;
  Decoder d(payload);
  uint64_t n;
  if (!d.Varint(&n) || n > art->entries.size()) return Bad("more file offsets than entries");
  const uint64_t end = art->record.uncompressed;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t offset;
    Digest file;
    if (!d.Varint(&offset) || !d.DigestBytes(&file)) return Bad("file offsets cut short");
    if (!art->files_at.empty() && offset <= art->files_at.back().first) {
      return Bad("file offsets not strictly increasing");
    }
    auto it = by_digest.find(file);
    if (it == by_digest.end() || it->second->sparse || offset > end ||
        it->second->size > end - offset) {
      return Bad("file offset " + std::to_string(offset) + " is not a file of the layer");
    }
    art->files_at.emplace_back(offset, file);
  }
  return d.done() ? Status::Ok() : Bad("bytes after the file offsets");
}

// Checkpoints: as many as the lazy record says, strictly increasing on both sides, within the
// layer's compressed and uncompressed sizes.
Status DecodeCheckpoints(std::string_view payload, const LayerDescriptor& layer,
                         LayerArtifact* art) {
  Decoder d(payload);
  uint64_t n;
  if (!d.Varint(&n) || n != art->lazy.checkpoints) return Bad("checkpoint count is not the layer's");
  if (art->lazy.compression == LayerCompression::kNone && n != 0) {
    return Bad("checkpoints in an uncompressed layer");
  }
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t at;
    std::string value;
    if (!d.Varint(&at) || !d.Bytes(&value)) return Bad("checkpoints cut short");
    auto cp = DecodeCheckpoint(value, at);
    if (!cp.ok()) return Bad("checkpoint " + std::to_string(i) + " does not decode");
    if (cp->uncompressed >= art->record.uncompressed || cp->compressed >= layer.size ||
        cp->compressed == 0) {
      return Bad("checkpoint " + std::to_string(i) + " lies outside the layer");
    }
    if (!art->checkpoints.empty() &&
        (cp->uncompressed <= art->checkpoints.back().uncompressed ||
         cp->compressed <= art->checkpoints.back().compressed)) {
      return Bad("checkpoints not strictly increasing");
    }
    art->checkpoints.push_back(std::move(*cp));
  }
  return d.done() ? Status::Ok() : Bad("bytes after the checkpoints");
}

Status DecodeRecords(const std::map<uint8_t, std::string>& s, const LayerDescriptor& layer,
                     LayerCompression comp, const Digest& diff_id, const IndexOptions& options,
                     LayerArtifact* art) {
  if (!DecodeLayer(s.at('L'), &art->record)) return Bad("the layer record does not decode");
  if (art->record.diff_id != diff_id) return Bad("the layer record's diff_id is not the header's");
  const uint64_t cap = StreamReadOptions(options, layer.size).max_uncompressed_bytes;
  if (art->record.uncompressed > cap) {
    return ResourceExhaustedError("index artifact: the layer would decompress to " +
                                  std::to_string(art->record.uncompressed) +
                                  " bytes, more than " + std::to_string(cap));
  }
  if (!DecodeLazyLayer(s.at('M'), &art->lazy) || art->lazy.compression != comp) {
    return Bad("the lazy record does not decode or names another compression");
  }
  LAZYFS_RETURN_IF_ERROR(DecodeEntries(s.at('E'), options, art));
  const uint64_t chunks = (art->record.entries + schema::kEntriesPerChunk - 1) /
                          schema::kEntriesPerChunk;
  if (art->record.chunks != chunks) return Bad("the layer record's chunk count is wrong");
  LAZYFS_RETURN_IF_ERROR(DecodeLocations(s.at('O'), art));
  LAZYFS_RETURN_IF_ERROR(DecodeFilesAt(s.at('Q'), art));
  return DecodeCheckpoints(s.at('K'), layer, art);
}

}  // namespace

Result<LayerArtifact> ReadLayerArtifact(const Db& db, const LayerDescriptor& layer) {
  const Digest& l = layer.digest;
  LAZYFS_ASSIGN_OR_RETURN(auto toc, db.Get(schema::TocLayerKey(l)));
  if (toc) {
    return FailedPreconditionError("layer " + l.Short() +
                                   " is indexed from its table of contents (eStargz or "
                                   "zstd:chunked), which the registry holds: no index artifact");
  }
  LayerArtifact art;
  for (const std::string& key : {schema::LayerKey(l), schema::LazyLayerKey(l)}) {
    LAZYFS_ASSIGN_OR_RETURN(auto v, db.Get(key));
    if (!v) {
      return FailedPreconditionError("layer " + l.Short() +
                                     (key[0] == 'L' ? " is not indexed"
                                                    : " was indexed without file locations "
                                                      "(by an older lazyfs)"));
    }
    LAZYFS_RETURN_IF_ERROR(AddRecord(key, *v, &art));
  }
  for (const std::string& prefix : {schema::ChunkPrefix(l), schema::LocationPrefix(l),
                                    schema::FileAtPrefix(l), schema::CheckpointPrefix(l)}) {
    Status failed;
    LAZYFS_RETURN_IF_ERROR(db.Scan(prefix, [&](std::string_view k, std::string_view v) {
      failed = AddRecord(k, v, &art);
      return failed.ok();
    }));
    LAZYFS_RETURN_IF_ERROR(failed);
  }
  if (art.entries.size() != art.record.entries) return Corrupt("of layer " + l.Short());
  return art;
}

Result<std::string> EncodeLayerArtifact(const LayerDescriptor& layer, const LayerArtifact& art) {
  const std::string body = EncodeBody(layer, art);
  std::string out(ZSTD_compressBound(body.size()), '\0');
  // One-shot ZSTD_compress runs on this thread only and records the content size, so the bytes
  // depend on the body, the level and the libzstd version alone.
  const size_t n =
      ZSTD_compress(out.data(), out.size(), body.data(), body.size(), kArtifactZstdLevel);
  if (ZSTD_isError(n)) return InternalError(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

Result<LayerArtifact> DecodeLayerArtifact(const LayerDescriptor& layer, std::string_view blob,
                                          const IndexOptions& options) {
  LAZYFS_ASSIGN_OR_RETURN(std::string body, Decompress(blob));
  LayerCompression comp;
  Digest diff_id;
  LAZYFS_RETURN_IF_ERROR(CheckHeader(body, layer, &comp, &diff_id));
  LAZYFS_ASSIGN_OR_RETURN(auto sections,
                          SplitSections(std::string_view(body).substr(kHeaderSize)));
  LayerArtifact art;
  LAZYFS_RETURN_IF_ERROR(DecodeRecords(sections, layer, comp, diff_id, options, &art));
  return art;
}

void PutLayerArtifact(RecordBatch& batch, const Digest& layer, const LayerArtifact& art,
                      const Digest& artifact_digest) {
  for (const Checkpoint& cp : art.checkpoints) batch.PutCheckpoint(layer, cp);
  for (const FileLocation& loc : art.locations) batch.PutLocation(layer, loc);
  for (const auto& [offset, file] : art.files_at) batch.PutFileAt(layer, offset, file);
  batch.PutLazyLayer(layer, art.lazy);
  batch.PutProvenance(layer, ArtifactProvenance{artifact_digest});
  batch.PutEntries(layer, art.entries, art.record);
}

std::string ArtifactLieMessage(const Digest& artifact, const Digest& layer,
                               std::string_view what) {
  return "index artifact " + artifact.ToString() + " of layer " + layer.ToString() + " lies: " +
         std::string(what);
}

// Used by the whole-layer check (layer_artifact_check.cc) to read records out of a batch.
Status AddLayerArtifactRecord(std::string_view key, std::string_view value, LayerArtifact* art) {
  return AddRecord(key, value, art);
}

}  // namespace lazyfs::index
