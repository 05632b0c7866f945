#include "cli/index_artifacts.h"

#include <map>
#include <set>
#include <utility>
#include <vector>

#include "base/text.h"

namespace lazyfs::cli {
namespace {

// A layer index blob larger than this is refused before it is downloaded: a layer of a million
// entries makes an index of some tens of MiB.
constexpr uint64_t kMaxLayerIndexBlob = 256ull << 20;
constexpr uint64_t kMaxArtifactManifest = 4 << 20;
// Artifacts tried before the layers are indexed from their blobs: a registry listing thousands
// of referrers that all fail gets a few requests, not thousands.
constexpr size_t kMaxArtifactsTried = 8;

// The artifact's blobs, each with the image layer it names, checked against the image: every
// blob names a layer of the image, once, in the image's order. Fails with InvalidArgument naming
// what does not match.
Result<std::vector<std::pair<fetch::Descriptor, const LayerDescriptor*>>> MatchLayers(
    const fetch::ArtifactManifest& artifact, const ImageDescriptor& image) {
  if (artifact.subject.digest != image.manifest_digest) {
    return InvalidArgumentError("its subject is " + artifact.subject.digest.ToString() +
                                ", not the image's manifest " +
                                image.manifest_digest.ToString());
  }
  std::vector<std::pair<fetch::Descriptor, const LayerDescriptor*>> out;
  std::set<Digest> named;
  size_t next = 0;  // the image layer after the last one matched: the order must be the image's
  for (const fetch::Descriptor& blob : artifact.blobs) {
    if (blob.media_type != index::kLayerIndexMediaType) {
      return InvalidArgumentError("blob " + blob.digest.ToString() + " has media type " +
                                  QuoteName(blob.media_type) + ", not " +
                                  std::string(index::kLayerIndexMediaType));
    }
    auto it = blob.annotations.find(std::string(index::kLayerDigestAnnotation));
    if (it == blob.annotations.end()) {
      return InvalidArgumentError("blob " + blob.digest.ToString() + " names no layer");
    }
    auto layer = Digest::Parse(it->second);
    if (!layer.ok()) {
      return InvalidArgumentError("blob " + blob.digest.ToString() + " names layer " +
                                  QuoteName(it->second) + ": " + layer.status().message());
    }
    if (!named.insert(*layer).second) {
      return InvalidArgumentError("it names layer " + layer->ToString() + " twice");
    }
    while (next < image.layers.size() && image.layers[next].digest != *layer) ++next;
    if (next == image.layers.size()) {
      return InvalidArgumentError("it names layer " + layer->ToString() +
                                  ", which the image does not have (or not in that order)");
    }
    out.emplace_back(blob, &image.layers[next]);
  }
  return out;
}

// Imports one artifact whole: each blob downloaded (verified against its digest, capped) and
// imported; a failure refuses the rest of it.
Status ImportArtifact(index::Index& idx, fetch::ImageSource& source, const ImageDescriptor& image,
                      const fetch::Descriptor& found, size_t* layers) {
  LAZYFS_ASSIGN_OR_RETURN(std::string bytes, source.ReadManifest(found.digest, kMaxArtifactManifest));
  LAZYFS_ASSIGN_OR_RETURN(fetch::ArtifactManifest artifact, fetch::ParseArtifactManifest(bytes));
  if (artifact.artifact_type != index::kIndexArtifactType) {
    return InvalidArgumentError("its artifact type is " + QuoteName(artifact.artifact_type));
  }
  LAZYFS_ASSIGN_OR_RETURN(auto matched, MatchLayers(artifact, image));
  for (const auto& [blob, layer] : matched) {
    if (blob.size > kMaxLayerIndexBlob) {
      return ResourceExhaustedError("the index of layer " + layer->digest.ToString() +
                                    " declares " + std::to_string(blob.size) +
                                    " bytes, over the cap of " +
                                    std::to_string(kMaxLayerIndexBlob));
    }
    LAZYFS_ASSIGN_OR_RETURN(std::string data, source.ReadSmallBlob(blob.digest, blob.size));
    LAZYFS_RETURN_IF_ERROR(idx.ImportLayer(*layer, data).WithContext(
        "the index of layer " + layer->digest.ToString()));
    ++*layers;
  }
  return Status::Ok();
}

}  // namespace

Result<ArtifactImport> ImportIndexArtifacts(index::Index& idx, fetch::ImageSource& source,
                                            const ImageDescriptor& image) {
  ArtifactImport out;
  bool missing = false;
  for (const LayerDescriptor& layer : image.layers) {
    LAZYFS_ASSIGN_OR_RETURN(index::Index::LayerIndexed state, idx.LayerState(layer.digest));
    missing = missing || state == index::Index::LayerIndexed::kNo;
  }
  if (!missing) return out;
  auto referrers = source.Referrers(image.manifest_digest, index::kIndexArtifactType);
  if (!referrers.ok()) {
    // A transport without referrers (a local layout) or a registry that will not list them:
    // the layers are indexed from their blobs, as without artifacts.
    if (referrers.status().code() == StatusCode::kUnimplemented) return out;
    out.refused = referrers.status().message();
    return out;
  }
  size_t tried = 0;
  for (const fetch::Descriptor& found : *referrers) {
    auto version = found.annotations.find(std::string(kVersionAnnotation));
    if (version != found.annotations.end() && version->second != kArtifactVersion) continue;
    if (++tried > kMaxArtifactsTried) break;
    size_t layers = 0;
    Status s = ImportArtifact(idx, source, image, found, &layers);
    if (s.ok()) {
      out.artifact = found.digest;
      out.layers = layers;
      out.refused.clear();
      return out;
    }
    out.refused = "index artifact " + found.digest.ToString() + " refused: " + s.message();
  }
  return out;
}

Result<fetch::Descriptor> PushIndexArtifact(index::Index& idx, fetch::ImageSource& source,
                                            const ImageDescriptor& image) {
  std::vector<fetch::BlobToPush> blobs;
  std::set<Digest> seen;
  for (const LayerDescriptor& layer : image.layers) {
    if (!seen.insert(layer.digest).second) continue;
    LAZYFS_ASSIGN_OR_RETURN(index::Index::LayerIndexed state, idx.LayerState(layer.digest));
    // eStargz, zstd:chunked: the registry holds the layer's TOC already.
    if (state == index::Index::LayerIndexed::kFromToc) continue;
    auto exported = idx.ExportLayer(layer);
    LAZYFS_RETURN_IF_ERROR(exported.status().WithContext("layer " + layer.digest.ToString()));
    fetch::BlobToPush blob;
    blob.digest = Sha256Of(*exported);
    blob.bytes = std::move(*exported);
    blob.media_type = std::string(index::kLayerIndexMediaType);
    blob.annotations[std::string(index::kLayerDigestAnnotation)] = layer.digest.ToString();
    blobs.push_back(std::move(blob));
  }
  if (blobs.empty()) {
    return FailedPreconditionError("every layer of the image is eStargz or zstd:chunked: "
                                   "the registry holds their tables of contents already");
  }
  LAZYFS_ASSIGN_OR_RETURN(std::string manifest, source.ReadSmallBlob(image.manifest_digest, 4 << 20));
  fetch::Descriptor subject;
  subject.media_type = image.manifest_media_type;
  subject.digest = image.manifest_digest;
  subject.size = manifest.size();
  return source.PushReferrer(subject, index::kIndexArtifactType, blobs,
                             {{std::string(kVersionAnnotation), std::string(kArtifactVersion)}});
}

}  // namespace lazyfs::cli
