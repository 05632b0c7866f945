#include "fetch/referrers.h"

#include <nlohmann/json.hpp>

#include "fetch/manifest.h"
#include "fetch/registry_client.h"

namespace lazyfs::fetch {
namespace {

using Json = nlohmann::json;

// The bytes of an OCI artifact's empty config.
constexpr std::string_view kEmptyJson = "{}";

Json DescriptorJson(const Descriptor& d) {
  Json j = {{"mediaType", d.media_type}, {"digest", d.digest.ToString()}, {"size", d.size}};
  if (!d.artifact_type.empty()) j["artifactType"] = d.artifact_type;
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  return j;
}

Descriptor EmptyDescriptor() {
  Descriptor d;
  d.media_type = std::string(kOciEmptyMediaType);
  d.digest = Sha256Of(kEmptyJson);
  d.size = kEmptyJson.size();
  return d;
}

// The blobs of an artifact as its manifest lists them, each checked against its bytes.
Result<std::vector<Descriptor>> LayersOf(const std::vector<BlobToPush>& blobs) {
  std::vector<Descriptor> layers;
  for (const BlobToPush& b : blobs) {
    if (b.media_type.empty()) {
      return InvalidArgumentError("blob " + b.digest.ToString() + " to push has no media type");
    }
    if (Sha256Of(b.bytes) != b.digest) {
      return InvalidArgumentError("blob to push: its bytes are " +
                                  Sha256Of(b.bytes).ToString() + ", not " +
                                  b.digest.ToString());
    }
    layers.push_back(Descriptor{b.media_type, b.digest, b.bytes.size(), "", b.annotations, {}});
  }
  return layers;
}

// Uploads what the registry lacks: a referrer published again costs a HEAD per blob.
Status PushMissing(RegistryClient& client, const Digest& digest, std::string_view bytes) {
  LAZYFS_ASSIGN_OR_RETURN(bool present, client.BlobExists(digest));
  if (present) return Status::Ok();
  return client.PutBlob(digest, bytes);
}

// The referrers tag's index, nullopt when there is none yet.
Result<std::optional<std::string>> ReadReferrersTag(RegistryClient& client,
                                                    const Digest& subject) {
  auto tagged = client.GetManifest(ReferrersTag(subject));
  if (!tagged.ok() && tagged.status().code() == StatusCode::kNotFound) {
    return std::optional<std::string>();
  }
  if (!tagged.ok()) return tagged.status();
  return std::optional<std::string>(std::move(tagged->bytes));
}

}  // namespace

std::string ReferrersTag(const Digest& subject) { return "sha256-" + subject.Hex(); }

Result<std::vector<Descriptor>> ParseReferrers(std::string_view raw, std::string_view content_type,
                                               std::string_view artifact_type) {
  auto parsed = ParseManifest(raw, content_type);
  if (!parsed.ok()) return parsed.status().WithContext("referrers list");
  if (parsed->kind != Manifest::Kind::kIndex) {
    return InvalidArgumentError("referrers list is not an image index (" +
                                parsed->media_type + ")");
  }
  std::vector<Descriptor> out;
  for (size_t i = 0; i < parsed->manifests.size(); ++i) {
    Descriptor& d = parsed->manifests[i];
    if (d.media_type.empty()) {
      return InvalidArgumentError("referrers list: manifests[" + std::to_string(i) + "] (" +
                                  d.digest.Short() + ") has no media type");
    }
    if (artifact_type.empty() || d.artifact_type == artifact_type) out.push_back(std::move(d));
  }
  return out;
}

std::string ArtifactManifest(const Descriptor& subject, std::string_view artifact_type,
                             const std::vector<Descriptor>& layers,
                             const std::map<std::string, std::string>& annotations) {
  Json j = {{"schemaVersion", 2},
            {"mediaType", kOciManifest},
            {"artifactType", artifact_type},
            {"config", DescriptorJson(EmptyDescriptor())},
            {"layers", Json::array()},
            {"subject", DescriptorJson(Descriptor{subject.media_type, subject.digest,
                                                  subject.size, "", {}, {}})}};
  for (const Descriptor& l : layers) j["layers"].push_back(DescriptorJson(l));
  if (layers.empty()) j["layers"].push_back(DescriptorJson(EmptyDescriptor()));
  if (!annotations.empty()) j["annotations"] = annotations;
  return j.dump();
}

Result<std::string> AddReferrer(const std::optional<std::string>& current,
                                const Descriptor& entry) {
  std::vector<Descriptor> entries;
  if (current) {
    LAZYFS_ASSIGN_OR_RETURN(entries, ParseReferrers(*current, kOciIndex, ""));
  }
  Json j = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", Json::array()}};
  bool present = false;
  for (const Descriptor& d : entries) {
    present = present || d.digest == entry.digest;
    j["manifests"].push_back(DescriptorJson(d));
  }
  if (!present) j["manifests"].push_back(DescriptorJson(entry));
  return j.dump();
}

Result<std::vector<Descriptor>> ListReferrers(RegistryClient& client, const Digest& subject,
                                              std::string_view artifact_type) {
  LAZYFS_ASSIGN_OR_RETURN(std::optional<RegistryClient::RawManifest> api,
                          client.GetReferrers(subject, artifact_type));
  std::string raw;
  std::string content_type;
  if (api) {
    raw = std::move(api->bytes);
    content_type = std::move(api->content_type);
  } else {
    LAZYFS_ASSIGN_OR_RETURN(std::optional<std::string> tagged, ReadReferrersTag(client, subject));
    if (!tagged) return std::vector<Descriptor>();
    raw = std::move(*tagged);
  }
  auto referrers = ParseReferrers(raw, content_type, artifact_type);
  if (!referrers.ok()) {
    return referrers.status().WithContext(
        client.Describe() + ": " +
        (api ? "referrers API" : "referrers tag " + ReferrersTag(subject)));
  }
  return referrers;
}

Result<Descriptor> PublishReferrer(RegistryClient& client, const Descriptor& subject,
                                   std::string_view artifact_type,
                                   const std::vector<BlobToPush>& blobs,
                                   const std::map<std::string, std::string>& annotations) {
  if (artifact_type.empty() || subject.media_type.empty() || !subject.digest.valid()) {
    return InvalidArgumentError(
        "a referrer needs an artifact type and a subject with a media type and a digest");
  }
  LAZYFS_ASSIGN_OR_RETURN(std::vector<Descriptor> layers, LayersOf(blobs));
  LAZYFS_RETURN_IF_ERROR(PushMissing(client, Sha256Of(kEmptyJson), kEmptyJson));
  for (const BlobToPush& b : blobs) LAZYFS_RETURN_IF_ERROR(PushMissing(client, b.digest, b.bytes));
  const std::string manifest = ArtifactManifest(subject, artifact_type, layers, annotations);
  LAZYFS_ASSIGN_OR_RETURN(
      RegistryClient::PushedManifest pushed,
      client.PutManifest(Sha256Of(manifest).ToString(), manifest, kOciManifest));
  Descriptor out{std::string(kOciManifest), pushed.digest, manifest.size(),
                 std::string(artifact_type), annotations, {}};
  if (pushed.subject_indexed) return out;
  // No referrers API: the list lives under the subject's tag, kept by its publishers.
  LAZYFS_ASSIGN_OR_RETURN(std::optional<std::string> current,
                          ReadReferrersTag(client, subject.digest));
  auto index = AddReferrer(current, out);
  if (!index.ok()) {
    return index.status().WithContext(client.Describe() + ": referrers tag " +
                                      ReferrersTag(subject.digest));
  }
  if (current && *index == *current) return out;
  LAZYFS_RETURN_IF_ERROR(
      client.PutManifest(ReferrersTag(subject.digest), *index, kOciIndex).status());
  return out;
}

}  // namespace lazyfs::fetch
