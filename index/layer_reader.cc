#include "index/layer_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/text.h"
#include "index/inflate.h"

namespace lazyfs::index {
namespace {

constexpr size_t kBufSize = 1 << 20;
constexpr size_t kMaxName = 255;
constexpr size_t kMaxPath = 4096;


}  // namespace

Result<std::string> NormaliseEntryPath(std::string_view raw) {
  if (raw.empty()) return InvalidArgumentError("empty entry name");
  // A leading "/" is taken relative to the image root, as Docker, containerd and umoci take it
  // (empty components are dropped below); ".." is still refused, at the root as anywhere.
  if (raw.size() > kMaxPath) {
    return InvalidArgumentError("path of " + std::to_string(raw.size()) +
                                " bytes is longer than " + std::to_string(kMaxPath));
  }
  std::string out;
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t slash = raw.find('/', pos);
    if (slash == std::string_view::npos) slash = raw.size();
    std::string_view comp = raw.substr(pos, slash - pos);
    pos = slash + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") return InvalidArgumentError("path " + QuoteName(raw) + " escapes the root");
    if (comp.size() > kMaxName) {
      return InvalidArgumentError("name of " + std::to_string(comp.size()) + " bytes in " +
                                  QuoteName(raw) + " is longer than 255");
    }
    if (comp.find('\0') != std::string_view::npos) {
      return InvalidArgumentError("NUL byte in path " + QuoteName(raw));
    }
    if (!out.empty()) out += '/';
    out.append(comp);
  }
  return out;
}

struct LayerReader::Impl {
  int fd = -1;
  uint64_t blob_size = 0;
  LayerReadOptions options;
  std::string name;

  // Compressed input.
  // Both buffers are left uninitialised: zero-filling 2 MiB per layer costs more than a small
  // layer's whole read.
  // The input buffer is no larger than the blob.
  std::unique_ptr<char[]> in;
  size_t in_cap = 0;
  size_t in_pos = 0, in_len = 0;
  uint64_t blob_pos = 0;  // next blob offset to read
  bool in_eof = false;
  // Decompressed output handed to libarchive.
  std::unique_ptr<Inflater> inflater;
  std::unique_ptr<char[]> out_buf = std::make_unique_for_overwrite<char[]>(kBufSize);
  std::span<char> out{out_buf.get(), kBufSize};
  uint64_t total_out = 0;
  bool out_eof = false;
  Sha256 diff_hash;
  std::optional<CheckpointRecorder> checkpoints;  // options.record_checkpoints

  archive* ar = nullptr;
  archive_entry* current = nullptr;
  Status error;  // a failure inside the read callback, reported instead of libarchive's text
  uint64_t entries = 0;
  bool current_is_file = false;
  uint64_t current_size = 0;
  std::optional<uint64_t> current_offset;
  std::optional<Extents> current_map;  // a sparse file's data extents, checked

  ~Impl() {
    if (ar) archive_read_free(ar);
  }

  Status Fail(std::string what) { return DataLossError("layer " + name + ": " + what); }

  // The current file's next data block (at its offset in the file); false at its end.
  Result<bool> NextBlock(const char** data, size_t* len, int64_t* offset) {
    const void* buf;
    la_int64_t off;
    const int rc = archive_read_data_block(ar, &buf, len, &off);
    if (rc == ARCHIVE_EOF) return false;
    if (rc < ARCHIVE_WARN) return ArchiveError("while reading file data");
    *data = static_cast<const char*>(buf);
    *offset = off;
    return true;
  }

  Status FillInput() {
    if (in_pos < in_len || in_eof) return Status::Ok();
    const uint64_t want = std::min<uint64_t>(in_cap, blob_size - blob_pos);
    if (want == 0) {
      in_eof = true;
      in_pos = in_len = 0;
      return Status::Ok();
    }
    auto n = PreadFull(fd, in.get(), want, blob_pos);
    if (!n.ok()) return n.status().WithContext("while reading layer " + name);
    if (*n < want) return Fail("blob is shorter than its descriptor says");
    blob_pos += *n;
    in_pos = 0;
    in_len = *n;
    return Status::Ok();
  }

  // The blob offset of the next compressed byte not yet consumed.
  uint64_t InputOffset() const { return blob_pos - in_len + in_pos; }

  // Produces the next piece of the uncompressed stream into `out`; 0 at its end.
  Result<size_t> Produce() {
    if (out_eof) return size_t{0};
    size_t produced = 0;
    while (produced < out.size()) {
      LAZYFS_RETURN_IF_ERROR(FillInput());
      const std::string_view input(in.get() + in_pos, in_len - in_pos);
      auto step = inflater->Inflate(input, out.subspan(produced));
      if (!step.ok()) return Fail(step.status().message());
      in_pos += step->consumed;
      if (step->boundary && checkpoints) {
        checkpoints->AtBoundary(std::string_view(out.data(), out.size()),
                                produced + step->produced, total_out, InputOffset(), step->bits);
      }
      produced += step->produced;
      if (input.empty() && step->produced == 0) {
        if (!inflater->complete()) return Fail("truncated " + std::string(inflater->format()) + " stream");
        break;
      }
    }
    if (produced == 0) {
      out_eof = true;
      return size_t{0};
    }
    if (total_out + produced > options.max_uncompressed_bytes) {
      return Status(StatusCode::kResourceExhausted,
                    "layer " + name + ": decompresses to more than " +
                        std::to_string(options.max_uncompressed_bytes) + " bytes");
    }
    diff_hash.Update(out.data(), produced);
    if (checkpoints) checkpoints->Saw(std::string_view(out.data(), produced));
    total_out += produced;
    return produced;
  }

  static la_ssize_t ReadCallback(archive* a, void* opaque, const void** buf) {
    auto* self = static_cast<Impl*>(opaque);
    auto n = self->Produce();
    if (!n.ok()) {
      self->error = n.status();
      archive_set_error(a, EIO, "%s", n.status().message().c_str());
      return -1;
    }
    *buf = self->out.data();
    return static_cast<la_ssize_t>(*n);
  }

  Status ArchiveError(std::string_view while_doing) {
    if (!error.ok()) return error;
    const char* msg = archive_error_string(ar);
    return DataLossError("layer " + name + ": " + std::string(while_doing) + ": " +
                         (msg ? msg : "malformed tar"));
  }
};

LayerReader::LayerReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LayerReader::~LayerReader() = default;

Result<std::unique_ptr<LayerReader>> LayerReader::Open(int fd, uint64_t blob_size,
                                                       LayerCompression compression,
                                                       const LayerReadOptions& options,
                                                       std::string name) {
  auto impl = std::make_unique<Impl>();
  impl->fd = fd;
  impl->blob_size = blob_size;
  impl->in_cap = static_cast<size_t>(std::clamp<uint64_t>(blob_size, 1, kBufSize));
  impl->in = std::make_unique_for_overwrite<char[]>(impl->in_cap);
  impl->options = options;
  impl->name = std::move(name);
  InflateOptions io;
  io.boundaries = options.record_checkpoints;
  io.boundary_every_uncompressed = options.checkpoint_every_uncompressed;
  io.boundary_every_compressed = options.checkpoint_every_compressed;
  LAZYFS_ASSIGN_OR_RETURN(impl->inflater, Inflater::Open(compression, nullptr, io));
  if (options.record_checkpoints) {
    impl->checkpoints.emplace(options.checkpoint_every_uncompressed,
                              options.checkpoint_every_compressed,
                              compression == LayerCompression::kGzip);
  }
  impl->ar = archive_read_new();
  if (!impl->ar) return InternalError("archive_read_new failed");
  archive_read_support_format_tar(impl->ar);
  // Names are bytes. No "hdrcharset" option: with one, libarchive converts names to the
  // locale's charset and drops those it cannot convert; without, it keeps the header's bytes
  // (a pax UTF-8 name it cannot convert is kept raw, with an ARCHIVE_WARN).
  if (archive_read_open(impl->ar, impl.get(), nullptr, &Impl::ReadCallback, nullptr) !=
      ARCHIVE_OK) {
    return impl->ArchiveError("while opening the tar stream");
  }
  return std::unique_ptr<LayerReader>(new LayerReader(std::move(impl)));
}

Result<EntryName> ClassifyEntryName(const std::string& path, LayerEntry* e) {
  const size_t slash = path.rfind('/');
  const std::string_view base = slash == std::string::npos
                                    ? std::string_view(path)
                                    : std::string_view(path).substr(slash + 1);
  const std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
  if (!base.starts_with(".wh.")) return EntryName::kPlain;
  if (base == ".wh..wh..opq") {
    e->kind = EntryKind::kOpaque;
    e->path = parent;
    return EntryName::kMarker;
  }
  // Other ".wh..wh." names are AUFS bookkeeping (hardlink directories), never content.
  if (base.starts_with(".wh..wh.")) return EntryName::kSkip;
  if (base == ".wh.") return InvalidArgumentError("whiteout without a name");
  const std::string_view target = base.substr(4);
  if (target == "." || target == "..") {
    return InvalidArgumentError("whiteout of \"" + std::string(target) + "\"");
  }
  e->kind = EntryKind::kWhiteout;
  e->path = parent.empty() ? std::string(target) : parent + "/" + std::string(target);
  return EntryName::kMarker;
}

namespace {

// Owner, mode, mtime and xattrs (sorted; a repeated name: the last record wins).
Status ReadFacts(archive_entry* ae, const LayerReadOptions& options, LayerEntry* e) {
  const la_int64_t uid = archive_entry_uid(ae), gid = archive_entry_gid(ae);
  if (uid < 0 || uid > 0xffffffffLL || gid < 0 || gid > 0xffffffffLL) {
    return InvalidArgumentError("uid/gid out of range");
  }
  e->uid = static_cast<uint32_t>(uid);
  e->gid = static_cast<uint32_t>(gid);
  e->mode = archive_entry_perm(ae) & 07777;
  e->mtime_sec = archive_entry_mtime(ae);
  e->mtime_nsec =
      static_cast<uint32_t>(std::clamp<long>(archive_entry_mtime_nsec(ae), 0, 999999999));
  uint64_t xattr_bytes = 0;
  archive_entry_xattr_reset(ae);
  const char* xname;
  const void* xvalue;
  size_t xsize;
  while (archive_entry_xattr_next(ae, &xname, &xvalue, &xsize) == ARCHIVE_OK) {
    xattr_bytes += std::strlen(xname) + xsize;
    if (xattr_bytes > options.max_xattr_bytes_per_entry) {
      return Status(StatusCode::kResourceExhausted,
                    "xattrs larger than " + std::to_string(options.max_xattr_bytes_per_entry) +
                        " bytes");
    }
    if (!*xname || std::strlen(xname) > 255) return InvalidArgumentError("invalid xattr name");
    e->xattrs.push_back({xname, std::string(static_cast<const char*>(xvalue), xsize)});
  }
  std::stable_sort(e->xattrs.begin(), e->xattrs.end(),
                   [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  for (size_t i = 1; i < e->xattrs.size();) {
    if (e->xattrs[i].name == e->xattrs[i - 1].name) {
      e->xattrs.erase(e->xattrs.begin() + static_cast<long>(i) - 1);
    } else {
      ++i;
    }
  }
  return Status::Ok();
}

// The entry's type and what goes with it: a hardlink's target, a symlink's, a device's numbers.
Status ReadType(archive_entry* ae, LayerEntry* e) {
  const char* hl = archive_entry_hardlink(ae);
  if (!hl) hl = archive_entry_hardlink_utf8(ae);
  if (hl) {
    auto target = NormaliseEntryPath(hl);
    if (!target.ok()) return target.status().WithContext("hardlink target");
    if (target->empty()) return InvalidArgumentError("hardlink to the root");
    e->kind = EntryKind::kHardlink;
    e->link = std::move(*target);
    return Status::Ok();
  }
  switch (archive_entry_filetype(ae)) {
    case AE_IFREG: {
      e->kind = EntryKind::kFile;
      const la_int64_t size = archive_entry_size(ae);
      if (size < 0) return InvalidArgumentError("negative size");
      e->size = static_cast<uint64_t>(size);
      break;
    }
    case AE_IFDIR: e->kind = EntryKind::kDir; break;
    case AE_IFLNK: {
      e->kind = EntryKind::kSymlink;
      const char* target = archive_entry_symlink(ae);
      if (!target) target = archive_entry_symlink_utf8(ae);
      if (!target || !*target) return InvalidArgumentError("symlink without a target");
      e->link = target;
      if (e->link.size() > kMaxPath) {
        return InvalidArgumentError("symlink target longer than 4096 bytes");
      }
      break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
      e->kind =
          archive_entry_filetype(ae) == AE_IFCHR ? EntryKind::kCharDev : EntryKind::kBlockDev;
      LAZYFS_RETURN_IF_ERROR(
          CheckDeviceNumbers(archive_entry_rdevmajor(ae), archive_entry_rdevminor(ae)));
      e->rdev_major = static_cast<uint32_t>(archive_entry_rdevmajor(ae));
      e->rdev_minor = static_cast<uint32_t>(archive_entry_rdevminor(ae));
      break;
    case AE_IFIFO: e->kind = EntryKind::kFifo; break;
    default:
      return UnimplementedError("unsupported entry type");
  }
  if (e->path.empty() && e->kind != EntryKind::kDir) {
    return InvalidArgumentError("the root must be a directory");
  }
  return Status::Ok();
}

// The sparse map the entry declares, checked (a claim: the data blocks must then lie in it).
Result<Extents> ReadSparseMap(archive_entry* ae, uint64_t size) {
  Extents map;
  archive_entry_sparse_reset(ae);
  la_int64_t offset, length;
  while (archive_entry_sparse_next(ae, &offset, &length) == ARCHIVE_OK) {
    if (offset < 0 || length < 0) return InvalidArgumentError("negative sparse map entry");
    map.emplace_back(static_cast<uint64_t>(offset), static_cast<uint64_t>(length));
  }
  return CheckSparseMap(std::move(map), size);
}

}  // namespace

Result<bool> LayerReader::Next(LayerEntry* e) {
  Impl& m = *impl_;
  for (;;) {
    archive_entry* ae = nullptr;
    const int rc = archive_read_next_header(m.ar, &ae);
    if (rc == ARCHIVE_EOF) return false;
    if (rc < ARCHIVE_WARN) return m.ArchiveError("while reading a tar header");
    if (++m.entries > m.options.max_entries) {
      return Status(StatusCode::kResourceExhausted,
                    "layer " + m.name + ": more than " + std::to_string(m.options.max_entries) +
                        " entries");
    }
    m.current = ae;
    m.current_is_file = false;
    m.current_offset.reset();
    m.current_map.reset();

    const char* raw = archive_entry_pathname(ae);
    if (!raw) raw = archive_entry_pathname_utf8(ae);
    if (!raw) return m.Fail("entry without a readable name");
    const std::string raw_name = raw;
    auto in_entry = [&](const Status& s) {
      return Status(s.code(), "layer " + m.name + ": entry \"" + raw_name.substr(0, 300) +
                                  "\": " + s.message());
    };
    auto path = NormaliseEntryPath(raw_name);
    if (!path.ok()) return in_entry(path.status());
    *e = LayerEntry{};
    auto kind = ClassifyEntryName(*path, e);
    if (!kind.ok()) return in_entry(kind.status());
    if (*kind == EntryName::kSkip) continue;
    if (*kind == EntryName::kMarker) return true;
    e->path = std::move(*path);
    if (Status s = ReadFacts(ae, m.options, e); !s.ok()) return in_entry(s);
    if (Status s = ReadType(ae, e); !s.ok()) return in_entry(s);
    if (e->kind == EntryKind::kFile) {
      if (e->size > m.options.max_file_size) {
        return in_entry(InvalidArgumentError(
            "declares a size of " + std::to_string(e->size) + " bytes, over the cap of " +
            std::to_string(m.options.max_file_size) + " bytes (max_file_size) for one file"));
      }
      if (archive_entry_sparse_count(ae) > 0) {
        auto map = ReadSparseMap(ae, e->size);
        if (!map.ok()) return in_entry(map.status());
        m.current_map = std::move(*map);
      }
      m.current_is_file = true;
      m.current_size = e->size;
      // The tar reader has consumed the header blocks and none of the data: the bytes it
      // consumed so far are where the content starts. Sparse files keep only their data
      // pieces there, so they have no such offset.
      if (archive_entry_sparse_count(ae) == 0) {
        m.current_offset = static_cast<uint64_t>(archive_filter_bytes(m.ar, 0));
      }
    }
    return true;
  }
}

std::optional<uint64_t> LayerReader::DataOffset() const { return impl_->current_offset; }

std::vector<Checkpoint> LayerReader::TakeCheckpoints() {
  if (!impl_->checkpoints) return {};
  // After the end of the stream, a checkpoint there resumes nothing.
  return impl_->checkpoints->Take(impl_->out_eof ? impl_->total_out : UINT64_MAX);
}

bool LayerReader::CurrentIsSparse() const {
  return impl_->current_is_file && impl_->current_map && impl_->current_size > kContentChunkSize;
}

Result<Digest> LayerReader::ReadSparseData(const SparseChunker::ChunkFn& chunk,
                                           std::vector<Digest>* chunks) {
  Impl& m = *impl_;
  if (!CurrentIsSparse()) return InternalError("ReadSparseData on a file that is not sparse");
  m.current_is_file = false;
  SparseChunker chunker(m.current_size, chunk);
  const Extents& map = *m.current_map;
  size_t extent = 0;
  for (;;) {
    const char* buf = nullptr;
    size_t len = 0;
    int64_t off = 0;
    LAZYFS_ASSIGN_OR_RETURN(bool more, m.NextBlock(&buf, &len, &off));
    if (!more) break;
    if (len == 0) continue;
    // Data only where the map says (the blocks come in map order).
    while (extent < map.size() && map[extent].second <= static_cast<uint64_t>(off)) ++extent;
    if (off < 0 || extent == map.size() || static_cast<uint64_t>(off) < map[extent].first ||
        static_cast<uint64_t>(off) + len > map[extent].second) {
      return m.Fail("sparse file data outside its sparse map");
    }
    Status s = chunker.Data(static_cast<uint64_t>(off),
                            std::string_view(static_cast<const char*>(buf), len));
    if (!s.ok()) return m.Fail(s.message());
  }
  return chunker.Finish(chunks);
}

// A sparse file for a caller that wants every byte: holes as zeros to the sink; the digest from
// the chunks.
Result<Digest> LayerReader::ReadSparseExpanded(const Sink& sink, std::vector<Digest>* chunks) {
  static const char kZeros[64 * 1024] = {};
  uint64_t at = 0;
  auto zeros_to = [&](uint64_t end) -> Status {
    while (at < end) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof(kZeros), end - at));
      LAZYFS_RETURN_IF_ERROR(sink(kZeros, n));
      at += n;
    }
    return Status::Ok();
  };
  const uint64_t size = impl_->current_size;
  auto data = [&](uint64_t index, const Digest&, std::string_view bytes) -> Status {
    if (!sink) return Status::Ok();
    LAZYFS_RETURN_IF_ERROR(zeros_to(index * kContentChunkSize));
    at += bytes.size();
    return sink(bytes.data(), bytes.size());
  };
  LAZYFS_ASSIGN_OR_RETURN(Digest d, ReadSparseData(data, chunks));
  if (sink) LAZYFS_RETURN_IF_ERROR(zeros_to(size));
  return d;
}

Result<Digest> LayerReader::ReadData(const Sink& sink, std::vector<Digest>* out_chunks) {
  std::vector<Digest>* chunks = out_chunks;
  Impl& m = *impl_;
  if (!m.current_is_file) return InternalError("ReadData on a non-file entry");
  if (CurrentIsSparse()) return ReadSparseExpanded(sink, out_chunks);
  m.current_is_file = false;
  static const char kZeros[64 * 1024] = {};
  Sha256 h, chunk_hash;
  uint64_t pos = 0;
  // A file of one chunk is its own chunk: its digest is the file's, hashed once.
  if (m.current_size <= kContentChunkSize) chunks = nullptr;
  auto emit = [&](const char* p, size_t n) -> Status {
    h.Update(p, n);
    if (chunks) {
      for (size_t done = 0; done < n;) {
        const size_t room = static_cast<size_t>(kContentChunkSize - pos % kContentChunkSize);
        const size_t take = std::min(room, n - done);
        chunk_hash.Update(p + done, take);
        done += take;
        if (take == room) chunks->push_back(chunk_hash.Finish());
        pos += take;
      }
    } else {
      pos += n;
    }
    return sink ? sink(p, n) : Status::Ok();
  };
  auto zeros_to = [&](uint64_t end) -> Status {
    while (pos < end) {
      LAZYFS_RETURN_IF_ERROR(emit(kZeros, std::min<uint64_t>(sizeof(kZeros), end - pos)));
    }
    return Status::Ok();
  };
  for (;;) {
    const char* buf = nullptr;
    size_t len = 0;
    int64_t off = 0;
    LAZYFS_ASSIGN_OR_RETURN(bool more, m.NextBlock(&buf, &len, &off));
    if (!more) break;
    if (off < 0 || static_cast<uint64_t>(off) < pos ||
        static_cast<uint64_t>(off) + len > m.current_size) {
      return m.Fail("file data outside its declared size");
    }
    LAZYFS_RETURN_IF_ERROR(zeros_to(static_cast<uint64_t>(off)));
    LAZYFS_RETURN_IF_ERROR(emit(static_cast<const char*>(buf), len));
  }
  LAZYFS_RETURN_IF_ERROR(zeros_to(m.current_size));  // a trailing hole of a sparse file
  if (chunks && pos % kContentChunkSize != 0) chunks->push_back(chunk_hash.Finish());
  if (!chunks && out_chunks) out_chunks->clear();
  return h.Finish();
}

Result<Digest> LayerReader::Finish() {
  Impl& m = *impl_;
  for (;;) {
    LAZYFS_ASSIGN_OR_RETURN(size_t n, m.Produce());
    if (n == 0) break;
  }
  if (m.blob_pos != m.blob_size || m.in_pos != m.in_len) {
    return m.Fail("trailing data after the compressed stream");
  }
  return m.diff_hash.Finish();
}

uint64_t LayerReader::compressed_bytes_read() const { return impl_->blob_pos; }
uint64_t LayerReader::uncompressed_bytes() const { return impl_->total_out; }

}  // namespace lazyfs::index
