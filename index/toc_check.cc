#include "index/toc_check.h"

#include <cstdio>
#include <deque>
#include <map>

#include "base/text.h"
#include "index/toc.h"

namespace lazyfs::index {
namespace {

// The tar entries that are part of the format rather than of the image.
bool IsFormatEntry(const std::string& path) {
  return path == kPrefetchLandmark || path == kNoPrefetchLandmark || path == "stargz.index.json";
}

// Hashes a file's content piece by piece at the TOC's chunk boundaries.
class ChunkHasher {
 public:
  explicit ChunkHasher(const std::vector<TocChunk>& chunks) : chunks_(chunks) {}
  Status Take(const char* p, size_t n) {
    while (n > 0) {
      if (next_ >= chunks_.size()) return DataLossError("content past its TOC chunks");
      const TocChunk& c = chunks_[next_];
      const size_t take = static_cast<size_t>(std::min<uint64_t>(n, c.offset + c.size - at_));
      hash_.Update(p, take);
      p += take;
      n -= take;
      at_ += take;
      if (at_ == c.offset + c.size) {
        if (hash_.Finish() != c.digest) {
          return DataLossError("its chunk at offset " + std::to_string(c.offset) +
                               " does not match the TOC's chunkDigest " + c.digest.ToString());
        }
        ++next_;
      }
    }
    return Status::Ok();
  }
  bool complete() const { return next_ == chunks_.size(); }

 private:
  const std::vector<TocChunk>& chunks_;
  size_t next_ = 0;
  uint64_t at_ = 0;
  Sha256 hash_;
};

}  // namespace

std::string EntryDisagreement(const LayerEntry& tar, const LayerEntry& toc,
                              std::string_view claimant) {
  auto differ = [&](const char* what, const std::string& a, const std::string& b) {
    return std::string(what) + " " + a + " in the tar stream, " + b + " in " +
           std::string(claimant);
  };
  auto octal = [](uint32_t m) {
    char b[16];
    std::snprintf(b, sizeof(b), "0%o", m);
    return std::string(b);
  };
  if (tar.kind != toc.kind) {
    return differ("type", std::to_string(static_cast<int>(tar.kind)),
                  std::to_string(static_cast<int>(toc.kind)));
  }
  if (tar.mode != toc.mode) return differ("mode", octal(tar.mode), octal(toc.mode));
  if (tar.uid != toc.uid || tar.gid != toc.gid) {
    return differ("owner", std::to_string(tar.uid) + ":" + std::to_string(tar.gid),
                  std::to_string(toc.uid) + ":" + std::to_string(toc.gid));
  }
  if (tar.link != toc.link) return differ("link target", QuoteName(tar.link), QuoteName(toc.link));
  if (tar.rdev_major != toc.rdev_major || tar.rdev_minor != toc.rdev_minor) {
    return differ("device", std::to_string(tar.rdev_major) + "," + std::to_string(tar.rdev_minor),
                  std::to_string(toc.rdev_major) + "," + std::to_string(toc.rdev_minor));
  }
  if (tar.size != toc.size)
    return differ("size", std::to_string(tar.size), std::to_string(toc.size));
  auto xattr_names = [](const LayerEntry& e) {
    std::string out;
    for (const Xattr& x : e.xattrs) out += (out.empty() ? "" : ",") + x.name;
    return "[" + out + "]";
  };
  bool same_xattrs = tar.xattrs.size() == toc.xattrs.size();
  for (size_t i = 0; same_xattrs && i < tar.xattrs.size(); ++i) {
    same_xattrs =
        tar.xattrs[i].name == toc.xattrs[i].name && tar.xattrs[i].value == toc.xattrs[i].value;
  }
  if (!same_xattrs) return differ("xattrs", xattr_names(tar), xattr_names(toc));
  return "";
}

Status CheckTocAgainstStream(int fd, const LayerDescriptor& layer, const Records& records,
                             const LayerReadOptions& options) {
  const std::string name = "layer " + layer.digest.Short();
  LAZYFS_ASSIGN_OR_RETURN(auto rec, records.Layer(layer.digest));
  if (!rec) return Corrupt("of " + name + " (missing)");
  LAZYFS_ASSIGN_OR_RETURN(std::vector<LayerEntry> toc_entries, records.Entries(layer.digest, *rec));
  // The TOC's entries by path, in TOC order (a path may be listed more than once).
  std::map<std::string, std::deque<const LayerEntry*>> claimed;
  for (const LayerEntry& e : toc_entries) claimed[e.path].push_back(&e);
  LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
  LAZYFS_ASSIGN_OR_RETURN(auto reader,
                          LayerReader::Open(fd, layer.size, comp, options, layer.digest.Short()));
  auto lie = [&](const std::string& path, const std::string& what) {
    return DataLossError(name + ": its TOC lies about " + QuoteName(path) + ": " + what);
  };
  LayerEntry e;
  for (;;) {
    LAZYFS_ASSIGN_OR_RETURN(bool more, reader->Next(&e));
    if (!more) break;
    if (IsFormatEntry(e.path)) continue;
    auto it = claimed.find(e.path);
    if (it == claimed.end() || it->second.empty()) {
      return lie(e.path, "the tar stream holds this entry, the TOC does not list it");
    }
    const LayerEntry& said = *it->second.front();
    it->second.pop_front();
    if (std::string d = EntryDisagreement(e, said, "the TOC"); !d.empty()) return lie(e.path, d);
    if (e.kind != EntryKind::kFile) continue;
    std::vector<TocChunk> chunks;
    if (e.size > 0) {
      LAZYFS_ASSIGN_OR_RETURN(auto found, records.TocChunks(layer.digest, said.digest));
      if (!found) return Corrupt("of " + name + " (TOC chunks of " + said.digest.Short() + ")");
      chunks = std::move(*found);
    }
    ChunkHasher hasher(chunks);
    auto digest = reader->ReadData([&](const char* p, size_t n) { return hasher.Take(p, n); });
    if (!digest.ok()) return lie(e.path, digest.status().message());
    if (*digest != said.digest) {
      return lie(e.path, "content " + digest->ToString() + " in the tar stream, " +
                             said.digest.ToString() + " in the TOC");
    }
    if (!hasher.complete()) return lie(e.path, "its TOC chunks run past its content");
  }
  for (const auto& [path, left] : claimed) {
    if (!left.empty())
      return lie(path, "the TOC lists this entry, the tar stream does not hold it");
  }
  return Status::Ok();
}

}  // namespace lazyfs::index
