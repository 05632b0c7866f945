#include "fetch/manifest.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/text.h"

namespace lazyfs::fetch {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kDockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json";
constexpr std::string_view kDockerSchema1Signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";

Status Schema1Error() {
  return UnimplementedError(
      "Docker schema 1 manifests are not supported (a deprecated format; re-push the image with "
      "a current tool)");
}

// The JSON parser turns the bytes into a tree; nothing here throws past this file.
Result<Json> ParseJson(std::string_view raw, std::string_view what) {
  if (raw.size() > kMaxManifestSize) {
    return ResourceExhaustedError(std::string(what) + " is larger than 4 MiB (" +
                                  std::to_string(raw.size()) + " bytes)");
  }
  Json j = Json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgumentError(std::string(what) + " is not valid JSON");
  if (!j.is_object()) return InvalidArgumentError(std::string(what) + " is not a JSON object");
  return j;
}

Result<std::string> OptString(const Json& j, const char* key, std::string_view what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return InvalidArgumentError(std::string(what) + ": \"" + key + "\" is not a string");
  }
  return it->get<std::string>();
}

Result<std::map<std::string, std::string>> ParseAnnotations(const Json& j, std::string_view what) {
  std::map<std::string, std::string> out;
  auto it = j.find("annotations");
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_object()) {
    return InvalidArgumentError(std::string(what) + ": \"annotations\" is not an object");
  }
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) {
      return InvalidArgumentError(std::string(what) + ": annotation " + QuoteName(k) +
                                  " is not a string");
    }
    out[k] = v.get<std::string>();
  }
  return out;
}

Result<Descriptor> ParseDescriptor(const Json& j, const std::string& what) {
  if (!j.is_object()) return InvalidArgumentError(what + " is not an object");
  Descriptor d;
  LAZYFS_ASSIGN_OR_RETURN(d.media_type, OptString(j, "mediaType", what));
  LAZYFS_ASSIGN_OR_RETURN(std::string digest, OptString(j, "digest", what));
  if (digest.empty()) return InvalidArgumentError(what + " has no digest");
  auto parsed = Digest::Parse(digest);
  if (!parsed.ok()) return parsed.status().WithContext(what);
  d.digest = *parsed;
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() ||
      (size->is_number_integer() && !size->is_number_unsigned() && size->get<int64_t>() < 0)) {
    return InvalidArgumentError(what + " (" + d.digest.Short() +
                                ") has no valid \"size\" (a non-negative integer)");
  }
  d.size = size->get<uint64_t>();
  LAZYFS_ASSIGN_OR_RETURN(d.artifact_type, OptString(j, "artifactType", what));
  LAZYFS_ASSIGN_OR_RETURN(d.annotations, ParseAnnotations(j, what));
  if (auto p = j.find("platform"); p != j.end() && !p->is_null()) {
    if (!p->is_object()) return InvalidArgumentError(what + ": \"platform\" is not an object");
    PlatformSpec ps;
    LAZYFS_ASSIGN_OR_RETURN(ps.os, OptString(*p, "os", what + " platform"));
    LAZYFS_ASSIGN_OR_RETURN(ps.architecture, OptString(*p, "architecture", what + " platform"));
    LAZYFS_ASSIGN_OR_RETURN(ps.variant, OptString(*p, "variant", what + " platform"));
    d.platform = std::move(ps);
  }
  return d;
}

Result<std::vector<Descriptor>> ParseDescriptorArray(const Json& j, const char* key,
                                                     size_t max_entries) {
  std::vector<Descriptor> out;
  auto it = j.find(key);
  if (it == j.end()) return InvalidArgumentError(std::string("manifest has no \"") + key + "\"");
  if (!it->is_array()) {
    return InvalidArgumentError(std::string("manifest: \"") + key + "\" is not an array");
  }
  if (it->size() > max_entries) {
    return ResourceExhaustedError(std::string("manifest: more than ") +
                                  std::to_string(max_entries) + " entries in \"" + key + "\"");
  }
  for (size_t i = 0; i < it->size(); ++i) {
    LAZYFS_ASSIGN_OR_RETURN(
        Descriptor d, ParseDescriptor((*it)[i], std::string(key) + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(d));
  }
  return out;
}

bool IsIndexType(std::string_view mt) { return mt == kOciIndex || mt == kDockerManifestList; }
bool IsImageType(std::string_view mt) { return mt == kOciManifest || mt == kDockerManifest; }

// Strips parameters ("; charset=utf-8") and whitespace from a Content-Type.
std::string_view BareMediaType(std::string_view ct) {
  ct = ct.substr(0, ct.find(';'));
  while (!ct.empty() && (ct.back() == ' ' || ct.back() == '\t')) ct.remove_suffix(1);
  while (!ct.empty() && (ct.front() == ' ' || ct.front() == '\t')) ct.remove_prefix(1);
  return ct;
}

Result<Manifest> ParseManifestJson(std::string_view raw, std::string_view content_type) {
  LAZYFS_ASSIGN_OR_RETURN(Json j, ParseJson(raw, "manifest"));
  auto sv = j.find("schemaVersion");
  if (sv != j.end() && sv->is_number_integer() && sv->get<int64_t>() == 1) return Schema1Error();
  LAZYFS_ASSIGN_OR_RETURN(std::string media_type, OptString(j, "mediaType", "manifest"));
  content_type = BareMediaType(content_type);
  if (media_type == kDockerSchema1 || media_type == kDockerSchema1Signed ||
      (media_type.empty() &&
       (content_type == kDockerSchema1 || content_type == kDockerSchema1Signed))) {
    return Schema1Error();
  }
  if (sv == j.end() || !sv->is_number_integer() || sv->get<int64_t>() != 2) {
    return InvalidArgumentError("manifest has no valid \"schemaVersion\" (expected 2)");
  }
  if (media_type.empty() && (IsIndexType(content_type) || IsImageType(content_type))) {
    media_type = std::string(content_type);
  }
  if (media_type.empty()) {
    // OCI allows omitting mediaType; the fields say what it is.
    if (j.contains("manifests")) {
      media_type = std::string(kOciIndex);
    } else if (j.contains("config") && j.contains("layers")) {
      media_type = std::string(kOciManifest);
    } else {
      return InvalidArgumentError("manifest has no mediaType and is neither an image nor an index");
    }
  }

  Manifest m;
  m.media_type = media_type;
  LAZYFS_ASSIGN_OR_RETURN(m.annotations, ParseAnnotations(j, "manifest"));
  if (IsIndexType(media_type)) {
    m.kind = Manifest::Kind::kIndex;
    LAZYFS_ASSIGN_OR_RETURN(m.manifests, ParseDescriptorArray(j, "manifests", kMaxIndexEntries));
    return m;
  }
  if (!IsImageType(media_type)) {
    return UnimplementedError("unsupported manifest media type " + QuoteName(media_type));
  }
  m.kind = Manifest::Kind::kImage;
  auto config = j.find("config");
  if (config == j.end()) return InvalidArgumentError("manifest has no \"config\"");
  LAZYFS_ASSIGN_OR_RETURN(m.config, ParseDescriptor(*config, "config"));
  LAZYFS_ASSIGN_OR_RETURN(m.layers, ParseDescriptorArray(j, "layers", kMaxLayers));
  for (const Descriptor& layer : m.layers) {
    auto compression = CompressionOfMediaType(layer.media_type);
    if (!compression.ok()) {
      return compression.status().WithContext("layer " + layer.digest.Short());
    }
  }
  return m;
}

// How well an index entry fits the wanted platform; nullopt when it does not run there.
std::optional<int> PlatformScore(const PlatformSpec& have, const Platform& want) {
  if (have.os != want.os || have.architecture != want.architecture) return std::nullopt;
  std::string hv = have.variant, wv = want.variant;
  if (want.architecture == "arm64") {
    if (hv == "v8") hv.clear();
    if (wv == "v8") wv.clear();
  }
  if (hv == wv) return 100;
  if (wv.empty()) return 50;  // nothing asked: any variant will do
  if (want.architecture == "arm" && hv.size() == 2 && wv.size() == 2 && hv[0] == 'v' &&
      wv[0] == 'v' && hv[1] < wv[1]) {
    return 10 + (hv[1] - '0');  // an older arm variant runs on a newer CPU; newest wins
  }
  if (hv.empty()) return 5;  // the image does not say which variant it needs
  return std::nullopt;
}

}  // namespace

std::string PlatformSpec::ToString() const {
  std::string out = (os.empty() ? "?" : os) + "/" + (architecture.empty() ? "?" : architecture);
  if (!variant.empty()) out += "/" + variant;
  return out;
}

Result<Manifest> ParseManifest(std::string_view raw, std::string_view content_type) {
  try {
    return ParseManifestJson(raw, content_type);
  } catch (const std::exception& e) {
    // nlohmann reports type errors by exception; a manifest that trips one is malformed.
    return InvalidArgumentError(std::string("malformed manifest: ") + e.what());
  }
}

Result<ArtifactManifest> ParseArtifactManifestJson(std::string_view raw) {
  if (raw.size() > kMaxManifestSize) {
    return ResourceExhaustedError("artifact manifest of " + std::to_string(raw.size()) +
                                  " bytes is larger than " + std::to_string(kMaxManifestSize));
  }
  LAZYFS_ASSIGN_OR_RETURN(Json j, ParseJson(raw, "artifact manifest"));
  auto sv = j.find("schemaVersion");
  if (sv == j.end() || !sv->is_number_integer() || sv->get<int64_t>() != 2) {
    return InvalidArgumentError("artifact manifest has no valid \"schemaVersion\" (expected 2)");
  }
  LAZYFS_ASSIGN_OR_RETURN(std::string media_type, OptString(j, "mediaType", "artifact manifest"));
  if (media_type != kOciManifest) {
    return InvalidArgumentError("artifact manifest has media type " + QuoteName(media_type) +
                                ", not " + std::string(kOciManifest));
  }
  ArtifactManifest m;
  auto subject = j.find("subject");
  if (subject == j.end()) return InvalidArgumentError("artifact manifest has no \"subject\"");
  LAZYFS_ASSIGN_OR_RETURN(m.subject, ParseDescriptor(*subject, "subject"));
  auto config = j.find("config");
  if (config == j.end()) return InvalidArgumentError("artifact manifest has no \"config\"");
  LAZYFS_ASSIGN_OR_RETURN(Descriptor config_desc, ParseDescriptor(*config, "config"));
  LAZYFS_ASSIGN_OR_RETURN(m.artifact_type, OptString(j, "artifactType", "artifact manifest"));
  if (m.artifact_type.empty()) m.artifact_type = config_desc.media_type;
  LAZYFS_ASSIGN_OR_RETURN(m.blobs, ParseDescriptorArray(j, "layers", kMaxLayers));
  LAZYFS_ASSIGN_OR_RETURN(m.annotations, ParseAnnotations(j, "artifact manifest"));
  return m;
}

Result<ArtifactManifest> ParseArtifactManifest(std::string_view raw) {
  try {
    return ParseArtifactManifestJson(raw);
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("malformed artifact manifest: ") + e.what());
  }
}

Result<Descriptor> SelectPlatform(const Manifest& index, const Platform& want) {
  const Descriptor* best = nullptr;
  int best_score = -1;
  std::vector<std::string> available;
  for (const Descriptor& d : index.manifests) {
    if (!d.platform) continue;
    available.push_back(d.platform->ToString());
    auto score = PlatformScore(*d.platform, want);
    if (score && *score > best_score) {
      best = &d;
      best_score = *score;
    }
  }
  if (best) return *best;
  std::string list;
  for (const std::string& p : available) list += (list.empty() ? "" : ", ") + p;
  if (available.empty()) {
    // An index without platforms holding exactly one manifest is unambiguous.
    if (index.manifests.size() == 1) return index.manifests[0];
    list = "none stated";
  }
  return NotFoundError("no image for platform " + want.ToString() + " (available: " + list + ")");
}

Result<ImageConfig> ParseImageConfig(std::string_view raw) {
  try {
    LAZYFS_ASSIGN_OR_RETURN(Json j, ParseJson(raw, "image config"));
    ImageConfig c;
    LAZYFS_ASSIGN_OR_RETURN(c.os, OptString(j, "os", "image config"));
    LAZYFS_ASSIGN_OR_RETURN(c.architecture, OptString(j, "architecture", "image config"));
    LAZYFS_ASSIGN_OR_RETURN(c.variant, OptString(j, "variant", "image config"));
    auto rootfs = j.find("rootfs");
    if (rootfs == j.end() || !rootfs->is_object()) {
      return InvalidArgumentError("image config has no \"rootfs\" object");
    }
    auto ids = rootfs->find("diff_ids");
    if (ids == rootfs->end() || !ids->is_array()) {
      return InvalidArgumentError("image config has no \"rootfs.diff_ids\" array");
    }
    if (ids->size() > kMaxLayers) {
      return ResourceExhaustedError("image config lists more than " +
                                    std::to_string(kMaxLayers) + " diff_ids");
    }
    for (const Json& id : *ids) {
      if (!id.is_string()) return InvalidArgumentError("image config: a diff_id is not a string");
      auto d = Digest::Parse(id.get<std::string>());
      if (!d.ok()) return d.status().WithContext("image config diff_id");
      c.diff_ids.push_back(*d);
    }
    return c;
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("malformed image config: ") + e.what());
  }
}

Result<ImageDescriptor> MakeImageDescriptor(std::string reference, const Digest& manifest_digest,
                                            const Manifest& manifest,
                                            std::string_view raw_config) {
  if (manifest.kind != Manifest::Kind::kImage) {
    return InternalError("MakeImageDescriptor called with an index");
  }
  const std::string& cmt = manifest.config.media_type;
  if (!cmt.empty() && cmt != kOciConfig && cmt != kDockerConfig) {
    return UnimplementedError("not a container image: config media type " + QuoteName(cmt));
  }
  LAZYFS_ASSIGN_OR_RETURN(ImageConfig config, ParseImageConfig(raw_config));
  if (config.diff_ids.size() != manifest.layers.size()) {
    return InvalidArgumentError("image config lists " + std::to_string(config.diff_ids.size()) +
                                " diff_ids for " + std::to_string(manifest.layers.size()) +
                                " layers");
  }
  ImageDescriptor out;
  out.reference = std::move(reference);
  out.manifest_digest = manifest_digest;
  out.manifest_media_type = manifest.media_type;
  out.config_digest = manifest.config.digest;
  PlatformSpec ps{config.os, config.architecture, config.variant};
  out.platform = ps.ToString();
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const Descriptor& d = manifest.layers[i];
    LayerDescriptor l;
    l.digest = d.digest;
    l.media_type = d.media_type;
    l.size = d.size;
    l.diff_id = config.diff_ids[i];
    l.annotations = d.annotations;
    out.layers.push_back(std::move(l));
  }
  return out;
}

}  // namespace lazyfs::fetch
