// Index artifacts in the registry (docs/formats.md, "Index artifacts"): an OCI artifact whose
// subject is an image manifest and whose blobs are the image's layer indexes. `lazyfs index
// push` publishes one; a first index of the image anywhere else imports it instead of
// downloading and decompressing the layers. fetch/ finds and pushes referrers, index/ exports
// and imports one layer's index; this file is the composition of the two.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/image.h"
#include "base/status.h"
#include "fetch/fetch.h"
#include "index/tree.h"

namespace lazyfs::cli {

// The media types and the layer annotation are index/'s (tree.h). On the artifact manifest: the artifact format's major version.
inline constexpr std::string_view kVersionAnnotation = "dev.lazyfs.index.version";
inline constexpr std::string_view kArtifactVersion = "1";

// What a look for an artifact found.
struct ArtifactImport {
  std::optional<Digest> artifact;  // the artifact used, if any
  size_t layers = 0;               // layers imported from it
  std::string refused;             // why an artifact that was found was refused (empty: none)
};

// For an image whose layers `idx` (writable) has not all indexed: looks in the image's registry
// for an index artifact of its manifest and imports the layers it indexes, so that AddImage
// then merges them without reading them. Finding none is not an error. An artifact that does
// not describe this image (another subject, a layer the image does not have, a layer twice) is
// refused before anything of it is imported, and said why in `refused`; a blob that fails its
// import stops the rest of the artifact (the layers imported before it stay, as claims checked
// like any artifact layer's). The caller indexes what is missing from the layers. At most
// kMaxArtifactsTried artifacts are tried. Fails only when the index cannot be read or written.
Result<ArtifactImport> ImportIndexArtifacts(index::Index& idx, fetch::ImageSource& source,
                                            const ImageDescriptor& image);

// Exports every layer of `image` that has an index of its own (eStargz and zstd:chunked layers
// are skipped: their TOC is in the registry already) and publishes them as an index artifact
// of the image's manifest. Returns the artifact's descriptor.
Result<fetch::Descriptor> PushIndexArtifact(index::Index& idx, fetch::ImageSource& source,
                                            const ImageDescriptor& image);

}  // namespace lazyfs::cli
