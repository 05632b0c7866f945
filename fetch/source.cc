#include "fetch/source.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "base/fd.h"

namespace lazyfs::fetch {

// Defined in source_registry.cc, source_oci_layout.cc and source_archive.cc.
Result<std::unique_ptr<ImageSource>> OpenRegistrySource(const ImageRef& ref,
                                                        const SourceOptions& options);
Result<std::unique_ptr<ImageSource>> OpenOciLayoutSource(const ImageRef& ref,
                                                         const SourceOptions& options);

Result<std::unique_ptr<ImageSource>> OpenArchiveSource(const ImageRef& ref,
                                                       const SourceOptions& options);

namespace {
// Index -> index -> manifest is already unusual; deeper nesting is refused.
constexpr int kMaxIndexDepth = 4;
constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";
}  // namespace

Status VerifyBytes(std::string_view bytes, const Digest& digest, std::optional<uint64_t> size,
                   const std::string& where) {
  if (size && bytes.size() != *size) {
    return DataLossError(where + ": blob " + digest.ToString() + " is " +
                         std::to_string(bytes.size()) + " bytes, its descriptor says " +
                         std::to_string(*size));
  }
  const Digest got = Sha256Of(bytes);
  if (got != digest) {
    return DataLossError(where + ": blob " + digest.ToString() + ": digest mismatch (got " +
                         got.ToString() + ")");
  }
  return Status::Ok();
}

Result<std::string> ReadFromStore(CasDir& store, const Digest& digest, uint64_t max_size) {
  LAZYFS_ASSIGN_OR_RETURN(Fd fd, store.OpenVerified(digest));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat " + store.PathFor(digest));
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    return ResourceExhaustedError("blob " + digest.ToString() + " is larger than " +
                                  std::to_string(max_size) + " bytes");
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  LAZYFS_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), out.data(), out.size(), 0));
  out.resize(n);
  return out;
}

Status StoreSmall(CasDir& store, const Digest& digest, std::string_view bytes) {
  if (store.Contains(digest)) return Status::Ok();
  return store.Put(digest, bytes).WithContext("while storing " + digest.Short());
}

namespace {

Result<Descriptor> PickFromIndex(const Manifest& index, const std::string& tag,
                                 const Platform& platform, const std::string& where) {
  std::vector<std::string> names;
  Manifest matches;
  matches.kind = Manifest::Kind::kIndex;
  for (const Descriptor& d : index.manifests) {
    auto name = d.annotations.find(std::string(kRefNameAnnotation));
    const std::string n = name == d.annotations.end() ? "" : name->second;
    if (!n.empty()) names.push_back(n);
    if (!tag.empty() && n == tag) matches.manifests.push_back(d);
  }
  if (tag.empty()) {
    if (index.manifests.size() == 1) return index.manifests[0];
    matches.manifests = index.manifests;
  }
  if (matches.manifests.size() == 1) return matches.manifests[0];
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  if (list.empty()) list = "none";
  if (matches.manifests.empty()) {
    if (index.manifests.empty()) return NotFoundError(where + ": index.json lists no images");
    return NotFoundError(where + ": no image named \"" + tag + "\" (available: " + list + ")");
  }
  // Several entries under one name (or no name given): one per platform, as some tools write.
  auto chosen = SelectPlatform(matches, platform);
  if (chosen.ok()) return chosen;
  if (tag.empty()) {
    return InvalidArgumentError(where + ": index.json lists " +
                                std::to_string(index.manifests.size()) + " images; name one with " +
                                where + ":NAME (available: " + list + ")");
  }
  return chosen.status().WithContext(where);
}

}  // namespace

Result<Descriptor> PickLayoutManifest(std::string_view oci_layout, std::string_view index_json,
                                      const std::string& tag, const Platform& platform,
                                      const std::string& where) {
  if (oci_layout.find("imageLayoutVersion") == std::string_view::npos) {
    return InvalidArgumentError(where + ": oci-layout has no imageLayoutVersion");
  }
  auto index = ParseManifest(index_json, kOciIndex);
  if (!index.ok()) return index.status().WithContext(where + ": index.json");
  if (index->kind != Manifest::Kind::kIndex) {
    return InvalidArgumentError(where + ": index.json is not an image index");
  }
  LAZYFS_ASSIGN_OR_RETURN(Descriptor top, PickFromIndex(*index, tag, platform, where));
  if (top.size > kMaxManifestSize) {
    return ResourceExhaustedError(where + ": manifest " + top.digest.Short() +
                                  " is larger than 4 MiB");
  }
  return top;
}

Result<ImageDescriptor> ResolveManifest(const std::string& reference, std::string raw,
                                        const Digest& digest, std::string content_type,
                                        const Platform& platform, const FetchVerified& fetch) {
  Digest current = digest;
  for (int depth = 0; depth <= kMaxIndexDepth; ++depth) {
    const std::string where = reference + ": manifest " + current.Short();
    auto manifest = ParseManifest(raw, content_type);
    if (!manifest.ok()) return manifest.status().WithContext(where);
    if (manifest->kind == Manifest::Kind::kImage) {
      auto config = fetch(manifest->config);
      if (!config.ok()) return config.status().WithContext(where + ": config");
      auto image = MakeImageDescriptor(reference, current, *manifest, *config);
      if (!image.ok()) return image.status().WithContext(where);
      return image;
    }
    auto chosen = SelectPlatform(*manifest, platform);
    if (!chosen.ok()) return chosen.status().WithContext(reference);
    auto child = fetch(*chosen);
    if (!child.ok()) return child.status().WithContext(where);
    raw = std::move(*child);
    current = chosen->digest;
    content_type = chosen->media_type;
  }
  return InvalidArgumentError(reference + ": image indexes nested more than " +
                              std::to_string(kMaxIndexDepth) + " deep");
}

Result<std::vector<Descriptor>> ImageSource::Referrers(const Digest&, std::string_view) {
  return UnimplementedError("referrers are found only in registries");
}

Result<std::string> ImageSource::ReadManifest(const Digest& digest, uint64_t) {
  return UnimplementedError("manifest " + digest.ToString() +
                            ": only registries serve artifact manifests");
}

Result<Descriptor> ImageSource::PushReferrer(const Descriptor&, std::string_view,
                                             const std::vector<BlobToPush>&,
                                             const std::map<std::string, std::string>&) {
  return UnimplementedError("only registries take pushes");
}

Result<std::unique_ptr<ImageSource>> OpenImageSource(const ImageRef& ref,
                                                     const SourceOptions& options) {
  if (options.store.root.empty()) {
    return InvalidArgumentError("OpenImageSource: SourceOptions.store has no root");
  }
  switch (ref.transport) {
    case Transport::kDocker:
      return OpenRegistrySource(ref, options);
    case Transport::kOciLayout:
      return OpenOciLayoutSource(ref, options);
    case Transport::kOciArchive:
    case Transport::kDockerArchive:
      return OpenArchiveSource(ref, options);
  }
  return InternalError("unknown transport");
}

}  // namespace lazyfs::fetch
