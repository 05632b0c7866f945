// ImageSource for image archives: oci-archive:FILE[:TAG] (the tar of an OCI image layout, as
// `skopeo copy ... oci-archive:` writes) and docker-archive:FILE[:REPO:TAG] (the tarball
// `docker save` writes).
//
// The one idea: a tar has no index and cannot be read at an offset cheaply, so Resolve copies the
// blobs out of the archive into the blob store (a CasDir: each blob is verified against its
// digest as it is written) and from then on the image is served from the store, like a pulled
// registry image. Blobs already in the store are not copied again.
//
// oci-archive: blobs/sha256/HEX members are named by their digest; index.json is then resolved as
// for an OCI layout directory.
// docker-archive: manifest.json names a config and layer tars by path; their digests are not
// recorded anywhere, so a first pass hashes every member (the layer digest is the sha256 of the
// member's bytes, which for an uncompressed layer is also its diff_id), a second pass copies the
// image's members into the store, and an OCI manifest pointing at them is synthesised (and kept
// in the store, so the same archive always gives the same manifest digest).
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "base/fd.h"
#include "base/text.h"
#include "fetch/source.h"

namespace lazyfs::fetch {
namespace {

constexpr uint64_t kMaxLayoutFile = 64 << 10;
constexpr size_t kReadChunk = 256 << 10;
// Symlink hops followed when a docker-archive member is a link to another (older docker save
// links a layer shared by two images to the first copy).
constexpr int kMaxLinkHops = 8;

struct Member {
  std::string name;      // normalised: no leading "./", no trailing '/'
  mode_t type = 0;       // AE_IFREG, AE_IFDIR, AE_IFLNK...
  std::string symlink;   // AE_IFLNK: the target as written
  std::string hardlink;  // a hard link: the (normalised) member it names
  int64_t size = 0;
};

using Sink = std::function<Status(const void* data, size_t len)>;
// Visits one member; `read` streams its data to a sink (at most once); not calling it skips it.
using Visit =
    std::function<Status(const Member& m, const std::function<Status(const Sink&)>& read)>;

// Resolves `path` lexically against the directory components in `parts` (appending to it):
// empty and "." components are dropped, ".." goes up. False when ".." would leave the archive's
// root, or when `dotdot` is false and there is a ".." at all.
bool Walk(std::string_view path, bool dotdot, std::vector<std::string>* parts) {
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view part = path.substr(start, end - start);
    if (part == "..") {
      if (!dotdot || parts->empty()) return false;
      parts->pop_back();
    } else if (!part.empty() && part != ".") {
      parts->emplace_back(part);
    }
    start = end + 1;
  }
  return true;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

// A member path without "./" prefixes and empty components; fails on absolute paths and ".." (a
// layout or docker save never writes them, a hostile archive does).
Result<std::string> NormaliseMemberName(std::string_view raw, const std::string& where) {
  if (raw.starts_with('/')) {
    return InvalidArgumentError(where + ": member " + QuoteName(raw) + " has an absolute path");
  }
  std::vector<std::string> parts;
  if (!Walk(raw, /*dotdot=*/false, &parts)) {
    return InvalidArgumentError(where + ": member " + QuoteName(raw) +
                                " has a \"..\" component");
  }
  return Join(parts);
}

// Where the symlink member `name` -> `target` points inside the archive, resolved lexically
// relative to the link's directory as a file system would; nullopt when it leaves the archive.
std::optional<std::string> ResolveSymlink(const std::string& name, std::string_view target) {
  if (target.starts_with('/')) return std::nullopt;
  std::vector<std::string> parts;
  const size_t slash = name.rfind('/');
  if (slash != std::string::npos) Walk(std::string_view(name).substr(0, slash), false, &parts);
  if (!Walk(target, /*dotdot=*/true, &parts)) return std::nullopt;
  return Join(parts);
}

// Reads every member of the tar (optionally compressed) FILE in order with libarchive.
Status ForEachMember(const std::string& file, const std::string& where, const Visit& visit) {
  std::unique_ptr<struct archive, int (*)(struct archive*)> a(archive_read_new(),
                                                              archive_read_free);
  if (!a) return ResourceExhaustedError(where + ": archive_read_new failed");
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_all(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), kReadChunk) != ARCHIVE_OK) {
    const int err = archive_errno(a.get());
    const std::string why = archive_error_string(a.get()) ? archive_error_string(a.get()) : "";
    if (err == ENOENT) return NotFoundError(where + ": no such file " + file);
    return InvalidArgumentError(where + ": cannot read " + file + ": " + why);
  }
  std::vector<char> buf(kReadChunk);
  bool any = false;
  while (true) {
    struct archive_entry* e = nullptr;
    const int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      return InvalidArgumentError(where + ": not a readable tar archive" +
                                  (any ? " (after some members)" : "") + ": " +
                                  archive_error_string(a.get()));
    }
    any = true;
    Member m;
    const char* path = archive_entry_pathname(e);
    LAZYFS_ASSIGN_OR_RETURN(m.name, NormaliseMemberName(path ? path : "", where));
    m.type = archive_entry_filetype(e);
    m.size = archive_entry_size(e);
    if (const char* s = archive_entry_symlink(e)) m.symlink = s;
    if (const char* h = archive_entry_hardlink(e)) {
      LAZYFS_ASSIGN_OR_RETURN(m.hardlink, NormaliseMemberName(h, where));
    }
    bool consumed = false;
    auto read = [&](const Sink& sink) -> Status {
      if (consumed) return InternalError(where + ": member " + m.name + " read twice");
      consumed = true;
      while (true) {
        const la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
        if (n == 0) return Status::Ok();
        if (n < 0) {
          return DataLossError(where + ": member " + QuoteName(m.name) +
                               " is truncated or unreadable: " + archive_error_string(a.get()));
        }
        LAZYFS_RETURN_IF_ERROR(sink(buf.data(), static_cast<size_t>(n)));
      }
    };
    LAZYFS_RETURN_IF_ERROR(visit(m, read));
  }
  if (!any) return InvalidArgumentError(where + ": the archive " + file + " is empty");
  return Status::Ok();
}

// Reads a member whole, refusing one larger than max.
Result<std::string> ReadMember(const Member& m, const std::function<Status(const Sink&)>& read,
                               uint64_t max, const std::string& where) {
  if (m.size < 0 || static_cast<uint64_t>(m.size) > max) {
    return ResourceExhaustedError(where + ": member " + QuoteName(m.name) + " is " +
                                  std::to_string(m.size) + " bytes, more than the " +
                                  std::to_string(max) + " allowed");
  }
  std::string out;
  out.reserve(static_cast<size_t>(m.size));
  LAZYFS_RETURN_IF_ERROR(read([&](const void* data, size_t len) -> Status {
    if (out.size() + len > max) {
      return ResourceExhaustedError(where + ": member " + QuoteName(m.name) + " is larger than " +
                                    std::to_string(max) + " bytes");
    }
    out.append(static_cast<const char*>(data), len);
    return Status::Ok();
  }));
  return out;
}

// Streams a member into the store under `digest`; DataLoss naming the member on a mismatch.
Status CopyMemberToStore(CasDir& store, const Member& m,
                         const std::function<Status(const Sink&)>& read, const Digest& digest,
                         const std::string& where) {
  const std::string what = where + ": member " + QuoteName(m.name);
  LAZYFS_ASSIGN_OR_RETURN(auto writer, store.BeginWrite(digest, m.size));
  LAZYFS_RETURN_IF_ERROR(read([&](const void* data, size_t len) {
                           return writer->Write(data, len);
                         }).WithContext(what));
  return writer->Commit().WithContext(what);
}

// A docker-archive member as pass 1 found it.
struct Hashed {
  Digest digest;
  uint64_t size = 0;
  LayerCompression compression = LayerCompression::kNone;
};

class ArchiveSource final : public ImageSource {
 public:
  ArchiveSource(ImageRef ref, SourceOptions options, std::unique_ptr<CasDir> store)
      : ref_(std::move(ref)),
        options_(std::move(options)),
        store_(std::move(store)),
        where_((ref_.transport == Transport::kOciArchive ? "oci-archive:" : "docker-archive:") +
               ref_.path) {}

  Result<ImageDescriptor> Resolve() override {
    return ref_.transport == Transport::kOciArchive ? ResolveOciArchive() : ResolveDockerArchive();
  }
  Result<std::string> ReadSmallBlob(const Digest& digest, uint64_t max_size) override {
    auto bytes = ReadFromStore(*store_, digest, max_size);
    if (!bytes.ok()) return bytes.status().WithContext(where_);
    return bytes;
  }
  Result<Fd> OpenBlob(const Digest& digest, uint64_t size) override;
  Result<size_t> ReadBlobRange(const Digest& digest, uint64_t offset, std::span<std::byte> out,
                               const Deadline&) override {
    LAZYFS_ASSIGN_OR_RETURN(Fd fd, OpenBlob(digest, UINT64_MAX));
    return PreadFull(fd.get(), out.data(), out.size(), offset);
  }

 private:
  Result<ImageDescriptor> ResolveOciArchive();
  Result<ImageDescriptor> ResolveDockerArchive();
  // Pass 2 of a docker-archive: copies the members of `needed` the store lacks into it.
  Status CopyMissing(const std::map<std::string, Hashed>& needed);
  // Resolves a top manifest already in the store, its children and config read from the store.
  Result<ImageDescriptor> ResolveStored(std::string raw, const Digest& digest,
                                        const std::string& media_type);

  const ImageRef ref_;
  const SourceOptions options_;
  const std::unique_ptr<CasDir> store_;
  const std::string where_;  // "oci-archive:FILE", for messages
};

Result<Fd> ArchiveSource::OpenBlob(const Digest& digest, uint64_t size) {
  auto fd = store_->OpenVerified(digest);
  if (!fd.ok()) {
    if (fd.status().code() == StatusCode::kNotFound) {
      return NotFoundError(where_ + ": blob " + digest.ToString() +
                           " is not in the blob store (resolve the image from the archive first)");
    }
    return fd.status().WithContext(where_);
  }
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) return ErrnoError(errno, "stat " + store_->PathFor(digest));
  if (size != UINT64_MAX && static_cast<uint64_t>(st.st_size) != size) {
    return DataLossError(where_ + ": blob " + digest.ToString() + " is " +
                         std::to_string(st.st_size) + " bytes, its descriptor says " +
                         std::to_string(size));
  }
  return fd;
}

Result<ImageDescriptor> ArchiveSource::ResolveStored(std::string raw, const Digest& digest,
                                                     const std::string& media_type) {
  auto fetch = [this](const Descriptor& d) -> Result<std::string> {
    if (d.size > kMaxManifestSize) {
      return ResourceExhaustedError(d.digest.Short() + " is larger than 4 MiB (" +
                                    std::to_string(d.size) + " bytes)");
    }
    auto bytes = ReadFromStore(*store_, d.digest, kMaxManifestSize);
    if (!bytes.ok()) {
      if (bytes.status().code() == StatusCode::kNotFound) {
        return NotFoundError(where_ + ": blob " + d.digest.ToString() + " is not in the archive");
      }
      return bytes.status();
    }
    LAZYFS_RETURN_IF_ERROR(VerifyBytes(*bytes, d.digest, d.size, where_));
    return bytes;
  };
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor image,
                          ResolveManifest(ref_.ToString(), std::move(raw), digest, media_type,
                                          options_.platform, fetch));
  // Nothing partial: every layer must have come out of the archive (or be in the store already).
  for (const LayerDescriptor& layer : image.layers) {
    if (!store_->Contains(layer.digest)) {
      return NotFoundError(where_ + ": layer " + layer.digest.ToString() +
                           " is not in the archive");
    }
  }
  return image;
}

Result<ImageDescriptor> ArchiveSource::ResolveOciArchive() {
  std::optional<std::string> layout;
  std::optional<std::string> index_raw;
  auto visit = [&](const Member& m, const std::function<Status(const Sink&)>& read) -> Status {
    if (m.name == "oci-layout") {
      LAZYFS_ASSIGN_OR_RETURN(layout, ReadMember(m, read, kMaxLayoutFile, where_));
    } else if (m.name == "index.json") {
      LAZYFS_ASSIGN_OR_RETURN(index_raw, ReadMember(m, read, kMaxManifestSize, where_));
    } else if (m.name.starts_with("blobs/sha256/")) {
      auto digest = Digest::Parse("sha256:" + m.name.substr(13));
      if (!digest.ok()) {
        return digest.status().WithContext(where_ + ": member " + QuoteName(m.name));
      }
      if (m.type != AE_IFREG || !m.hardlink.empty()) {
        return InvalidArgumentError(where_ + ": member " + QuoteName(m.name) +
                                    " is not a regular file");
      }
      if (store_->Contains(*digest)) return Status::Ok();
      return CopyMemberToStore(*store_, m, read, *digest, where_);
    }
    // Directories, blobs of other algorithms and anything else are not needed.
    return Status::Ok();
  };
  LAZYFS_RETURN_IF_ERROR(ForEachMember(ref_.path, where_, visit));
  if (!layout) {
    return NotFoundError(where_ + ": not an OCI image layout archive (no oci-layout member)");
  }
  if (!index_raw) return NotFoundError(where_ + ": the archive has no index.json member");
  LAZYFS_ASSIGN_OR_RETURN(
      Descriptor top,
      PickLayoutManifest(*layout, *index_raw, ref_.tag, options_.platform, where_));
  auto raw = ReadFromStore(*store_, top.digest, kMaxManifestSize);
  if (!raw.ok()) {
    if (raw.status().code() == StatusCode::kNotFound) {
      return NotFoundError(where_ + ": index.json names manifest " + top.digest.ToString() +
                           ", which is not in the archive");
    }
    return raw.status().WithContext(where_);
  }
  LAZYFS_RETURN_IF_ERROR(VerifyBytes(*raw, top.digest, top.size, where_));
  return ResolveStored(std::move(*raw), top.digest, top.media_type);
}

// ----- docker-archive -----

struct SavedImage {
  std::string config;
  std::vector<std::string> repo_tags;
  std::vector<std::string> layers;
};

Result<std::vector<SavedImage>> ParseSaveManifest(const std::string& raw,
                                                  const std::string& where) {
  const std::string what = where + ": manifest.json";
  auto json = nlohmann::json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return InvalidArgumentError(what + " is not valid JSON");
  if (!json.is_array()) return InvalidArgumentError(what + " is not a JSON array");
  std::vector<SavedImage> out;
  for (const auto& entry : json) {
    if (!entry.is_object()) return InvalidArgumentError(what + ": an entry is not an object");
    SavedImage image;
    auto config = entry.find("Config");
    if (config == entry.end() || !config->is_string() || config->get<std::string>().empty()) {
      return InvalidArgumentError(what + ": an entry has no Config path");
    }
    image.config = config->get<std::string>();
    if (auto tags = entry.find("RepoTags"); tags != entry.end() && !tags->is_null()) {
      if (!tags->is_array()) return InvalidArgumentError(what + ": RepoTags is not an array");
      for (const auto& t : *tags) {
        if (!t.is_string())
          return InvalidArgumentError(what + ": a RepoTags entry is not a string");
        image.repo_tags.push_back(t.get<std::string>());
      }
    }
    auto layers = entry.find("Layers");
    if (layers == entry.end() || !layers->is_array()) {
      return InvalidArgumentError(what + ": an entry has no Layers array");
    }
    if (layers->size() > kMaxLayers) {
      return ResourceExhaustedError(what + ": more than " + std::to_string(kMaxLayers) + " layers");
    }
    for (const auto& l : *layers) {
      if (!l.is_string()) return InvalidArgumentError(what + ": a Layers entry is not a string");
      image.layers.push_back(l.get<std::string>());
    }
    out.push_back(std::move(image));
  }
  if (out.empty()) return InvalidArgumentError(what + " lists no images");
  return out;
}

// Whether a RepoTags entry names the same image as `wanted` (both normalised as references, so
// "busybox:1.36" matches "docker.io/library/busybox:1.36").
bool SameName(const std::string& repo_tag, const std::string& wanted) {
  if (repo_tag == wanted) return true;
  auto a = ImageRef::Parse(repo_tag);
  auto b = ImageRef::Parse(wanted);
  return a.ok() && b.ok() && a->ToString() == b->ToString();
}

LayerCompression SniffCompression(const unsigned char* p, size_t n) {
  if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b) return LayerCompression::kGzip;
  if (n >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd) {
    return LayerCompression::kZstd;
  }
  return LayerCompression::kNone;
}

std::string LayerMediaTypeFor(LayerCompression c) {
  switch (c) {
    case LayerCompression::kGzip:
      return "application/vnd.oci.image.layer.v1.tar+gzip";
    case LayerCompression::kZstd:
      return "application/vnd.oci.image.layer.v1.tar+zstd";
    case LayerCompression::kNone:
      break;
  }
  return "application/vnd.oci.image.layer.v1.tar";
}

// Pass 1 over a docker-archive: every regular member hashed, the links between members noted,
// manifest.json kept.
struct SaveArchive {
  std::map<std::string, Hashed> hashed;
  std::map<std::string, std::string> links;  // member -> the member it stands for
  std::optional<std::string> manifest_raw;

  // The hashed member a manifest.json path stands for, following links; adds it to `needed`
  // (real member name -> hash).
  Result<Hashed> Locate(const std::string& path, const std::string& where,
                        std::map<std::string, Hashed>* needed) const {
    auto normalised = NormaliseMemberName(path, where);
    if (!normalised.ok()) {
      return InvalidArgumentError(where + ": manifest.json names " + QuoteName(path) +
                                  ", a path outside the archive");
    }
    std::string name = *normalised;
    for (int hop = 0; hop <= kMaxLinkHops; ++hop) {
      if (auto h = hashed.find(name); h != hashed.end()) {
        (*needed)[name] = h->second;
        return h->second;
      }
      auto link = links.find(name);
      if (link == links.end()) break;
      name = link->second;
    }
    return NotFoundError(where + ": manifest.json names member " + QuoteName(path) +
                         ", which is not in the archive (or is not a regular file)");
  }
};

// The digest, size and compression of a member's bytes.
Result<Hashed> HashMember(const std::function<Status(const Sink&)>& read) {
  Sha256 sha;
  Hashed h;
  unsigned char head[4];
  size_t head_len = 0;
  LAZYFS_RETURN_IF_ERROR(read([&](const void* data, size_t len) -> Status {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < len && head_len < sizeof(head); ++i) head[head_len++] = p[i];
    sha.Update(data, len);
    h.size += len;
    return Status::Ok();
  }));
  h.digest = sha.Finish();
  h.compression = SniffCompression(head, head_len);
  return h;
}

Result<SaveArchive> ReadSaveArchive(const std::string& file, const std::string& where) {
  SaveArchive out;
  auto visit = [&](const Member& m, const std::function<Status(const Sink&)>& read) -> Status {
    if (!m.hardlink.empty()) {
      out.links[m.name] = m.hardlink;
      return Status::Ok();
    }
    if (m.type == AE_IFLNK) {
      auto target = ResolveSymlink(m.name, m.symlink);
      if (!target) {
        return InvalidArgumentError(where + ": member " + QuoteName(m.name) +
                                    " is a symlink to " + QuoteName(m.symlink) +
                                    ", outside the archive");
      }
      out.links[m.name] = *target;
      return Status::Ok();
    }
    if (m.type != AE_IFREG) return Status::Ok();
    if (m.name == "manifest.json") {
      LAZYFS_ASSIGN_OR_RETURN(out.manifest_raw, ReadMember(m, read, kMaxManifestSize, where));
      out.hashed[m.name] = Hashed{Sha256Of(*out.manifest_raw), out.manifest_raw->size()};
      return Status::Ok();
    }
    LAZYFS_ASSIGN_OR_RETURN(out.hashed[m.name], HashMember(read));
    return Status::Ok();
  };
  LAZYFS_RETURN_IF_ERROR(ForEachMember(file, where, visit));
  if (!out.manifest_raw) {
    return NotFoundError(where + ": not a docker save archive (no manifest.json member)");
  }
  return out;
}

// The image of manifest.json tagged `tag` (empty: the first one).
Result<const SavedImage*> ChooseSavedImage(const std::vector<SavedImage>& images,
                                           const std::string& tag, const std::string& where) {
  if (tag.empty()) return &images[0];
  std::string available;
  const SavedImage* chosen = nullptr;
  for (const SavedImage& image : images) {
    for (const std::string& t : image.repo_tags) {
      available += (available.empty() ? "" : ", ") + t;
      if (!chosen && SameName(t, tag)) chosen = &image;
    }
  }
  if (!chosen) {
    return NotFoundError(where + ": no image tagged " + QuoteName(tag) +
                         " (available: " + (available.empty() ? "none" : available) + ")");
  }
  return chosen;
}

// The OCI manifest of a saved image. nlohmann::json objects keep their keys sorted, so the same
// archive always gives the same bytes and therefore the same manifest digest.
std::string SynthesiseManifest(const Hashed& config, const std::vector<Hashed>& layers) {
  nlohmann::json layer_list = nlohmann::json::array();
  for (const Hashed& layer : layers) {
    layer_list.push_back({{"mediaType", LayerMediaTypeFor(layer.compression)},
                          {"digest", layer.digest.ToString()},
                          {"size", layer.size}});
  }
  const nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kOciManifest},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"},
        {"digest", config.digest.ToString()},
        {"size", config.size}}},
      {"layers", layer_list},
  };
  return manifest.dump();
}

Status ArchiveSource::CopyMissing(const std::map<std::string, Hashed>& needed) {
  std::map<std::string, Hashed> missing;
  for (const auto& [name, h] : needed) {
    if (!store_->Contains(h.digest)) missing[name] = h;
  }
  if (missing.empty()) return Status::Ok();
  auto copy = [&](const Member& m, const std::function<Status(const Sink&)>& read) -> Status {
    auto it = missing.find(m.name);
    if (it == missing.end() || m.type != AE_IFREG || !m.hardlink.empty()) return Status::Ok();
    if (store_->Contains(it->second.digest)) return Status::Ok();
    // The digest is the one pass 1 computed: an archive changed in between fails here.
    return CopyMemberToStore(*store_, m, read, it->second.digest, where_);
  };
  LAZYFS_RETURN_IF_ERROR(ForEachMember(ref_.path, where_, copy));
  for (const auto& [name, h] : missing) {
    if (!store_->Contains(h.digest)) {
      return DataLossError(where_ + ": member " + QuoteName(name) + " vanished from the archive");
    }
  }
  return Status::Ok();
}

Result<ImageDescriptor> ArchiveSource::ResolveDockerArchive() {
  LAZYFS_ASSIGN_OR_RETURN(SaveArchive archive, ReadSaveArchive(ref_.path, where_));
  LAZYFS_ASSIGN_OR_RETURN(std::vector<SavedImage> images,
                          ParseSaveManifest(*archive.manifest_raw, where_));
  LAZYFS_ASSIGN_OR_RETURN(const SavedImage* chosen, ChooseSavedImage(images, ref_.tag, where_));
  std::map<std::string, Hashed> needed;
  LAZYFS_ASSIGN_OR_RETURN(Hashed config, archive.Locate(chosen->config, where_, &needed));
  if (config.size > kMaxManifestSize) {
    return ResourceExhaustedError(where_ + ": config " + QuoteName(chosen->config) +
                                  " is larger than 4 MiB");
  }
  std::vector<Hashed> layers;
  for (const std::string& path : chosen->layers) {
    LAZYFS_ASSIGN_OR_RETURN(Hashed layer, archive.Locate(path, where_, &needed));
    layers.push_back(layer);
  }
  // Pass 2: copy the members this image needs into the store (skipped when all are there).
  LAZYFS_RETURN_IF_ERROR(CopyMissing(needed));
  std::string raw = SynthesiseManifest(config, layers);
  const Digest digest = Sha256Of(raw);
  LAZYFS_RETURN_IF_ERROR(StoreSmall(*store_, digest, raw));
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor image,
                          ResolveStored(std::move(raw), digest, std::string(kOciManifest)));
  // An uncompressed layer's digest is its diff_id: a layer member that is not the one the config
  // describes is caught here rather than while indexing.
  for (size_t i = 0; i < image.layers.size(); ++i) {
    const LayerDescriptor& layer = image.layers[i];
    if (layer.media_type == LayerMediaTypeFor(LayerCompression::kNone) && layer.diff_id &&
        *layer.diff_id != layer.digest) {
      return DataLossError(where_ + ": member " + QuoteName(chosen->layers[i]) + " hashes to " +
                           layer.digest.ToString() + ", but the config's diff_id for it is " +
                           layer.diff_id->ToString());
    }
  }
  return image;
}

}  // namespace

Result<std::unique_ptr<ImageSource>> OpenArchiveSource(const ImageRef& ref,
                                                       const SourceOptions& options) {
  LAZYFS_ASSIGN_OR_RETURN(std::unique_ptr<CasDir> store,
                          CasDir::Open(options.store.blobs()));
  return std::unique_ptr<ImageSource>(new ArchiveSource(ref, options, std::move(store)));
}

}  // namespace lazyfs::fetch
