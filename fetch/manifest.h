// Manifests, image indexes and image configs: parsing the JSON that registries and OCI layouts
// hand out, and choosing a platform from an index.
//
// The one idea: the raw bytes are the truth. Digests are always computed over the bytes as
// received; these parsers only read them (with caps) and never re-serialise anything that gets
// hashed. OCI and Docker schema 2 spellings are accepted alike; schema 1 fails with
// Unimplemented. Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/image.h"
#include "base/status.h"
#include "fetch/fetch.h"

namespace lazyfs::fetch {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
// Accept header value naming every manifest type lazyfs reads.
inline constexpr std::string_view kManifestAccept =
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

// Manifests, indexes and configs larger than this are refused.
inline constexpr uint64_t kMaxManifestSize = 4 << 20;
// More layers than this is not an image anyone can run (overlayfs stops at 128 or so).
inline constexpr size_t kMaxLayers = 4096;
// Entries in an image index.
inline constexpr size_t kMaxIndexEntries = 4096;

struct Manifest {
  enum class Kind { kImage, kIndex };
  Kind kind = Kind::kImage;
  // The effective media type (the JSON's mediaType, else the transport's Content-Type, else
  // inferred from the fields present).
  std::string media_type;
  // kImage:
  Descriptor config;
  std::vector<Descriptor> layers;
  // kIndex:
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

// Parses a manifest or index. content_type is the HTTP Content-Type when there is one (may be
// empty). Fails with Unimplemented for schema 1 and unknown media types (manifest or layer),
// InvalidArgument for malformed JSON or fields, ResourceExhausted past the caps.
Result<Manifest> ParseManifest(std::string_view raw, std::string_view content_type = {});

// Picks the index entry for `want`: os and architecture must match; arm64 "v8" and no variant
// are the same; an arm vN host also runs older arm variants (the newest one wins); no wanted
// variant accepts any. Fails with NotFound listing the platforms the index offers.
Result<Descriptor> SelectPlatform(const Manifest& index, const Platform& want);

struct ImageConfig {
  std::string os;
  std::string architecture;
  std::string variant;
  std::vector<Digest> diff_ids;  // rootfs.diff_ids, bottom layer first
};

// Parses the parts of an image config lazyfs needs. Fails with InvalidArgument when malformed.
Result<ImageConfig> ParseImageConfig(std::string_view raw);

// Puts together the descriptor of an image manifest and its config: checks that the config is
// a container image config and that diff_ids match the layers.
Result<ImageDescriptor> MakeImageDescriptor(std::string reference, const Digest& manifest_digest,
                                            const Manifest& manifest,
                                            std::string_view raw_config);

}  // namespace lazyfs::fetch
