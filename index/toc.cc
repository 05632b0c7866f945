// Footers, TOC decompression and TOC parsing for eStargz and zstd:chunked (toc.h).
#include "index/toc.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "index/layer_reader.h"
#include "base/text.h"
#include "index/inflate.h"

namespace lazyfs::index {
namespace {

constexpr size_t kEstargzFooter = 51;
constexpr size_t kLegacyFooter = 47;
constexpr size_t kZstdFooter = 48;  // an 8-byte skippable frame header and 40 bytes
constexpr std::string_view kTocTarName = "stargz.index.json";

uint64_t Le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// "%016x" as the estargz writer prints the TOC offset.
bool ParseHex16(std::string_view s, uint64_t* out) {
  if (s.size() != 16) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 16);
  return ec == std::errc() && end == s.data() + s.size();
}

// The TOC offset from an eStargz (or legacy stargz) footer: a gzip header (RFC 1952) with FEXTRA.
bool ParseGzipFooter(std::string_view f, bool legacy, uint64_t* toc_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(f.data());
  if (p[0] != 0x1f || p[1] != 0x8b || p[2] != 8 || !(p[3] & 4)) return false;
  const size_t xlen = p[10] | (p[11] << 8);
  std::string_view extra = f.substr(12);
  if (legacy) {
    if (xlen != 22) return false;
    extra = extra.substr(0, 22);
  } else {
    if (xlen != 26 || p[12] != 'S' || p[13] != 'G' || (p[14] | (p[15] << 8)) != 22) return false;
    extra = extra.substr(4, 22);
  }
  return extra.substr(16) == "STARGZ" && ParseHex16(extra.substr(0, 16), toc_offset);
}

Status Bad(std::string msg) { return InvalidArgumentError(std::move(msg)); }

// RFC 3339 as Go writes it: "2006-01-02T15:04:05Z", maybe with a fraction or a numeric zone.
bool ParseRfc3339(const std::string& s, int64_t* sec, uint32_t* nsec) {
  std::tm tm{};
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return false;
  *nsec = 0;
  if (*rest == '.') {
    uint32_t scale = 100000000;
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest) {
      *nsec += static_cast<uint32_t>(*rest - '0') * scale;
      scale /= 10;
    }
  }
  int64_t offset = 0;
  if (*rest == '+' || *rest == '-') {
    int hh = 0, mm = 0;
    if (std::sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2) return false;
    offset = (*rest == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
    rest += 6;
  } else if (*rest == 'Z') {
    ++rest;
  }
  if (*rest) return false;
  *sec = static_cast<int64_t>(timegm(&tm)) - offset;
  return true;
}

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

using Json = nlohmann::json;

// Field accessors that treat a missing field as its zero value (the estargz writer omits zeros).
Result<std::string> Str(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Bad(std::string("\"") + key + "\" is not a string");
  return it->get<std::string>();
}
Result<uint64_t> Num(const Json& j, const char* key, uint64_t max) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return uint64_t{0};
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0)) {
    return Bad(std::string("\"") + key + "\" is not a non-negative integer");
  }
  const uint64_t v = it->get<uint64_t>();
  if (v > max) return Bad(std::string("\"") + key + "\" is out of range");
  return v;
}

constexpr uint64_t kMaxU32 = 0xffffffffu;
constexpr uint64_t kMaxOffset = uint64_t{1} << 62;

// What ParseToc builds while it walks the entries.
class TocBuilder {
 public:
  TocBuilder(const TocFooter& footer, const TocLimits& limits) : footer_(footer), limits_(limits) {}

  Status Add(const Json& j) {
    if (!j.is_object()) return Bad("an entry is not an object");
    LAZYFS_ASSIGN_OR_RETURN(std::string name, Str(j, "name"));
    LAZYFS_ASSIGN_OR_RETURN(std::string type, Str(j, "type"));
    Status s = AddEntry(j, name, type);
    if (!s.ok()) return Status(s.code(), "entry \"" + name.substr(0, 300) + "\": " + s.message());
    return s;
  }

  Result<Toc> Finish() {
    LAZYFS_RETURN_IF_ERROR(EndFile());
    // A chunk's member (frame) runs until the next one starts, or the TOC. That span is what a
    // read of the chunk fetches: one a TOC stretches far past the chunk's own bytes is refused
    // (Unimplemented: the layer is then indexed as a plain stream).
    std::vector<uint64_t> starts(starts_.begin(), starts_.end());
    for (auto& [digest, chunks] : toc_.files) {
      for (TocChunk& c : chunks) {
        auto next = std::upper_bound(starts.begin(), starts.end(), c.compressed_offset);
        c.compressed_end = next == starts.end() ? footer_.payload_end : *next;
        const uint64_t span = c.compressed_end - c.compressed_offset;
        if (span > c.inner_offset + c.size + limits_.max_chunk_span_slack) {
          return Status(StatusCode::kUnimplemented,
                        "chunk " + c.digest.Short() + " at blob offset " +
                            std::to_string(c.compressed_offset) + " spans " +
                            std::to_string(span) + " compressed bytes for " +
                            std::to_string(c.size) + " (more than " +
                            std::to_string(limits_.max_chunk_span_slack) + " over)");
        }
      }
    }
    if (landmark_) toc_.prefetch = std::move(before_landmark_);
    return std::move(toc_);
  }

 private:
  Status AddEntry(const Json& j, const std::string& name, const std::string& type) {
    if (type == "chunk") return AddChunk(j, name);
    LAZYFS_RETURN_IF_ERROR(EndFile());
    if (++entries_ > limits_.max_entries) {
      return Status(StatusCode::kResourceExhausted,
                    "more than " + std::to_string(limits_.max_entries) + " entries");
    }
    LAZYFS_ASSIGN_OR_RETURN(std::string path, NormaliseEntryPath(name));
    if (path == kPrefetchLandmark || path == kNoPrefetchLandmark) {
      if (!landmark_ && path == kPrefetchLandmark) landmark_ = true;
      if (path == kNoPrefetchLandmark) before_landmark_.clear();
      seen_landmark_ = true;
      if (type == "reg") return OpenFile(j, nullptr);  // its chunk still delimits its neighbours
      return Status::Ok();
    }
    LayerEntry e;
    LAZYFS_ASSIGN_OR_RETURN(EntryName what, ClassifyEntryName(path, &e));
    if (what == EntryName::kSkip) return Status::Ok();
    if (what == EntryName::kMarker) {
      toc_.entries.push_back(std::move(e));
      return Status::Ok();
    }
    e.path = std::move(path);
    LAZYFS_ASSIGN_OR_RETURN(uint64_t mode, Num(j, "mode", kMaxOffset));
    e.mode = static_cast<uint32_t>(mode & 07777);
    LAZYFS_ASSIGN_OR_RETURN(uint64_t uid, Num(j, "uid", kMaxU32));
    LAZYFS_ASSIGN_OR_RETURN(uint64_t gid, Num(j, "gid", kMaxU32));
    e.uid = static_cast<uint32_t>(uid);
    e.gid = static_cast<uint32_t>(gid);
    LAZYFS_ASSIGN_OR_RETURN(std::string mtime, Str(j, "modtime"));
    if (!mtime.empty() && !ParseRfc3339(mtime, &e.mtime_sec, &e.mtime_nsec)) {
      return Bad("invalid modtime \"" + mtime.substr(0, 64) + "\"");
    }
    LAZYFS_RETURN_IF_ERROR(Xattrs(j, &e));
    LAZYFS_RETURN_IF_ERROR(TypeOf(j, type, &e));
    if (e.path.empty() && e.kind != EntryKind::kDir) return Bad("the root must be a directory");
    toc_.entries.push_back(std::move(e));
    if (type == "reg") return OpenFile(j, &toc_.entries.back());
    return Status::Ok();
  }

  // The entry's type and what goes with it: a link's target, a device's numbers.
  Status TypeOf(const Json& j, const std::string& type, LayerEntry* e) {
    LAZYFS_ASSIGN_OR_RETURN(std::string link, Str(j, "linkName"));
    if (type == "dir") {
      e->kind = EntryKind::kDir;
    } else if (type == "reg") {
      e->kind = EntryKind::kFile;
    } else if (type == "symlink") {
      e->kind = EntryKind::kSymlink;
      if (link.empty()) return Bad("symlink without a target");
      if (link.size() > 4096) return Bad("symlink target longer than 4096 bytes");
      e->link = std::move(link);
    } else if (type == "hardlink") {
      auto target = NormaliseEntryPath(link);
      if (!target.ok()) return target.status().WithContext("hardlink target");
      if (target->empty()) return Bad("hardlink to the root");
      e->kind = EntryKind::kHardlink;
      e->link = std::move(*target);
    } else if (type == "char" || type == "block") {
      e->kind = type == "char" ? EntryKind::kCharDev : EntryKind::kBlockDev;
      LAZYFS_ASSIGN_OR_RETURN(uint64_t major, Num(j, "devMajor", kMaxU32));
      LAZYFS_ASSIGN_OR_RETURN(uint64_t minor, Num(j, "devMinor", kMaxU32));
      LAZYFS_RETURN_IF_ERROR(CheckDeviceNumbers(major, minor));
      e->rdev_major = static_cast<uint32_t>(major);
      e->rdev_minor = static_cast<uint32_t>(minor);
    } else if (type == "fifo") {
      e->kind = EntryKind::kFifo;
    } else {
      return Status(StatusCode::kUnimplemented,
                    "unsupported entry type \"" + type.substr(0, 32) + "\"");
    }
    return Status::Ok();
  }

  Status Xattrs(const Json& j, LayerEntry* e) {
    auto it = j.find("xattrs");
    if (it == j.end() || it->is_null()) return Status::Ok();
    if (!it->is_object()) return Bad("\"xattrs\" is not an object");
    uint64_t bytes = 0;
    for (auto x = it->begin(); x != it->end(); ++x) {
      if (!x.value().is_string()) return Bad("xattr \"" + x.key() + "\" is not base64");
      LAZYFS_ASSIGN_OR_RETURN(std::string value, Base64Decode(x.value().get<std::string>()));
      if (x.key().empty() || x.key().size() > 255) return Bad("invalid xattr name");
      bytes += x.key().size() + value.size();
      if (bytes > limits_.max_xattr_bytes_per_entry) {
        return Status(
            StatusCode::kResourceExhausted,
            "xattrs larger than " + std::to_string(limits_.max_xattr_bytes_per_entry) + " bytes");
      }
      e->xattrs.push_back({x.key(), std::move(value)});
    }
    // JSON object keys are unique and nlohmann keeps them sorted; sort anyway, by bytes.
    std::sort(e->xattrs.begin(), e->xattrs.end(),
              [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
    return Status::Ok();
  }

  // A regular file starts: its "reg" entry is its first chunk. `e` is null for a landmark.
  Status OpenFile(const Json& j, LayerEntry* e) {
    LAZYFS_ASSIGN_OR_RETURN(uint64_t size, Num(j, "size", kMaxOffset));
    LAZYFS_ASSIGN_OR_RETURN(std::string digest, Str(j, "digest"));
    file_ = File{};
    file_.entry = e ? toc_.entries.size() - 1 : SIZE_MAX;
    file_.size = size;
    if (e) e->size = size;
    if (!digest.empty()) {
      LAZYFS_ASSIGN_OR_RETURN(file_.digest, Digest::Parse(digest));
    } else if (size == 0) {
      file_.digest = Sha256Of("");
    } else {
      return Bad("regular file without a digest");
    }
    if (e) e->digest = file_.digest;
    open_ = true;
    if (size == 0) return Status::Ok();
    return AddChunk(j, "");
  }

  Status AddChunk(const Json& j, const std::string& name) {
    if (!open_ || file_.size == 0) return Bad("chunk without a regular file before it");
    (void)name;
    LAZYFS_ASSIGN_OR_RETURN(uint64_t offset, Num(j, "offset", kMaxOffset));
    LAZYFS_ASSIGN_OR_RETURN(uint64_t chunk_offset, Num(j, "chunkOffset", kMaxOffset));
    LAZYFS_ASSIGN_OR_RETURN(uint64_t chunk_size, Num(j, "chunkSize", kMaxOffset));
    LAZYFS_ASSIGN_OR_RETURN(uint64_t inner, Num(j, "innerOffset", kMaxOffset));
    LAZYFS_ASSIGN_OR_RETURN(std::string digest, Str(j, "chunkDigest"));
    if (chunk_offset != file_.next) {
      return Bad("chunk at offset " + std::to_string(chunk_offset) + " where " +
                 std::to_string(file_.next) + " was expected");
    }
    // Zero size: the rest of the file (the writer omits the size of a file's last chunk).
    if (chunk_size == 0) chunk_size = file_.size - chunk_offset;
    if (chunk_size > file_.size - chunk_offset) {
      return Bad("chunk at offset " + std::to_string(chunk_offset) + " ends past the file");
    }
    if (chunk_size > limits_.max_chunk_bytes) {
      return Status(StatusCode::kUnimplemented, "chunk of " + std::to_string(chunk_size) +
                                                    " bytes (more than " +
                                                    std::to_string(limits_.max_chunk_bytes) + ")");
    }
    if (offset >= footer_.payload_end) {
      return Bad("chunk data at blob offset " + std::to_string(offset) + ", past the TOC");
    }
    TocChunk c;
    c.offset = chunk_offset;
    c.size = chunk_size;
    c.compressed_offset = offset;
    c.inner_offset = inner;
    if (!digest.empty()) {
      LAZYFS_ASSIGN_OR_RETURN(c.digest, Digest::Parse(digest));
    } else if (chunk_offset == 0 && chunk_size == file_.size) {
      c.digest = file_.digest;  // one chunk: the file's own digest covers it
    } else {
      return Status(StatusCode::kUnimplemented, "chunk without a chunkDigest (legacy stargz)");
    }
    starts_.insert(offset);
    file_.next += chunk_size;
    file_.chunks.push_back(std::move(c));
    return Status::Ok();
  }

  // Closes the open regular file: its chunks must cover it.
  Status EndFile() {
    if (!open_) return Status::Ok();
    open_ = false;
    if (file_.next != file_.size) {
      return Bad("file of " + std::to_string(file_.size) + " bytes has chunks for " +
                 std::to_string(file_.next));
    }
    if (file_.entry == SIZE_MAX || file_.size == 0) return Status::Ok();
    if (!seen_landmark_) before_landmark_.push_back(file_.digest);
    toc_.files.emplace(file_.digest, std::move(file_.chunks));
    return Status::Ok();
  }

  struct File {
    size_t entry = SIZE_MAX;
    uint64_t size = 0, next = 0;
    Digest digest;
    std::vector<TocChunk> chunks;
  };

  const TocFooter footer_;
  const TocLimits limits_;
  Toc toc_;
  File file_;
  bool open_ = false;
  uint64_t entries_ = 0;
  std::set<uint64_t> starts_;
  bool landmark_ = false, seen_landmark_ = false;
  std::vector<Digest> before_landmark_;
};

}  // namespace

Result<TocFooter> ParseTocFooter(LayerCompression compression, std::string_view tail,
                                 uint64_t blob_size) {
  TocFooter f;
  if (compression == LayerCompression::kGzip) {
    for (const bool legacy : {false, true}) {
      const size_t n = legacy ? kLegacyFooter : kEstargzFooter;
      if (tail.size() < n || blob_size < n) continue;
      uint64_t off = 0;
      if (!ParseGzipFooter(tail.substr(tail.size() - n), legacy, &off)) continue;
      if (off >= blob_size - n) return Bad("eStargz footer: TOC offset past the end of the blob");
      f.format = TocFormat::kEstargz;
      f.toc_offset = off;
      f.toc_size = blob_size - n - off;
      f.payload_end = off;
      return f;
    }
    return Bad("no eStargz footer at the end of the blob");
  }
  if (compression == LayerCompression::kZstd) {
    if (tail.size() < kZstdFooter || blob_size < kZstdFooter) {
      return Bad("no zstd:chunked footer: the blob is too short");
    }
    const auto* p = reinterpret_cast<const unsigned char*>(tail.data() + tail.size() - kZstdFooter);
    static constexpr unsigned char kSkippable[] = {0x50, 0x2a, 0x4d, 0x18, 40, 0, 0, 0};
    if (std::memcmp(p, kSkippable, 8) != 0 || std::memcmp(p + 40, "GnUlInUx", 8) != 0) {
      return Bad("no zstd:chunked footer at the end of the blob");
    }
    f.format = TocFormat::kZstdChunked;
    f.toc_offset = Le64(p + 8);
    f.toc_size = Le64(p + 16);
    // The TOC is a zstd frame inside a skippable frame that ends where the footer begins.
    if (f.toc_offset < 8 || f.toc_offset > blob_size - kZstdFooter ||
        f.toc_size != blob_size - kZstdFooter - f.toc_offset) {
      return Bad("zstd:chunked footer: the TOC does not end where the footer begins");
    }
    f.payload_end = f.toc_offset - 8;
    return f;
  }
  return Bad("an uncompressed layer has no TOC");
}

Result<std::string> DecompressToc(const TocFooter& footer, std::string_view compressed,
                                  const TocLimits& limits) {
  if (compressed.size() > limits.max_toc_bytes) {
    return Status(StatusCode::kResourceExhausted, "TOC of " + std::to_string(compressed.size()) +
                                                      " bytes (more than " +
                                                      std::to_string(limits.max_toc_bytes) + ")");
  }
  std::string out;
  if (footer.format == TocFormat::kZstdChunked) {
    LAZYFS_ASSIGN_OR_RETURN(auto z, Inflater::Open(LayerCompression::kZstd, nullptr, false));
    bool over = false;
    // Decompression stops at the cap: a TOC frame may claim any size.
    LAZYFS_RETURN_IF_ERROR(InflateAll(*z, compressed, [&](const char* p, size_t n) {
                              if (out.size() + n > limits.max_toc_bytes) over = true;
                              if (!over) out.append(p, n);
                              return !over;
                            }).WithContext("TOC"));
    if (over)
      return Status(
          StatusCode::kResourceExhausted,
          "TOC larger than " + std::to_string(limits.max_toc_bytes) + " bytes uncompressed");
    return out;
  }
  // eStargz: a tar of one entry, stargz.index.json, in one gzip member.
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  if (!a) return InternalError("archive_read_new failed");
  archive_read_support_filter_gzip(a.get());
  archive_read_support_format_tar(a.get());
  auto fail = [&](std::string_view what) {
    const char* msg = archive_error_string(a.get());
    return DataLossError("TOC: " + std::string(what) + (msg ? std::string(": ") + msg : ""));
  };
  if (archive_read_open_memory(a.get(), compressed.data(), compressed.size()) != ARCHIVE_OK) {
    return fail("not a gzip-compressed tar");
  }
  archive_entry* e = nullptr;
  if (archive_read_next_header(a.get(), &e) != ARCHIVE_OK) return fail("no tar header");
  const char* name = archive_entry_pathname(e);
  if (!name || name != kTocTarName) {
    return DataLossError("TOC: the tar holds \"" + std::string(name ? name : "") + "\", not " +
                         std::string(kTocTarName));
  }
  const la_int64_t size = archive_entry_size(e);
  if (size < 0 || static_cast<uint64_t>(size) > limits.max_toc_bytes) {
    return Status(
        StatusCode::kResourceExhausted,
        "TOC larger than " + std::to_string(limits.max_toc_bytes) + " bytes uncompressed");
  }
  out.resize(static_cast<size_t>(size));
  size_t got = 0;
  while (got < out.size()) {
    const la_ssize_t n = archive_read_data(a.get(), out.data() + got, out.size() - got);
    if (n < 0) return fail("corrupt");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got != out.size()) return DataLossError("TOC: " + std::string(kTocTarName) + " is short");
  return out;
}

Result<Toc> ParseToc(std::string_view json, const TocFooter& footer, const TocLimits& limits) {
  Json j = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad("TOC is not a JSON object");
  auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer() || version->get<int64_t>() != 1) {
    return Bad("TOC version is not 1");
  }
  auto entries = j.find("entries");
  if (entries == j.end() || !entries->is_array()) return Bad("TOC has no \"entries\" array");
  TocBuilder b(footer, limits);
  for (const Json& e : *entries) LAZYFS_RETURN_IF_ERROR(b.Add(e));
  return b.Finish();
}

}  // namespace lazyfs::index
