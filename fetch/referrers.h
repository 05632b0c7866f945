// OCI 1.1 referrers (referrers.cc): artifacts whose `subject` is an image manifest, published
// and found again. Used by the registry transport (source_registry.cc).
//
// The one idea: a registry with the referrers API indexes a pushed artifact by its subject
// itself (and says so with OCI-Subject); for one without it (docker-registry 2.8), the client
// keeps the same list, an image index, under the tag "sha256-<hex of the subject>". Either way
// the list is a registry's claim: every entry is checked and the filter applied here.
// The tag is updated read-modify-write: two publishers racing on one subject can lose one
// entry (the referrers tag schema has no compare-and-swap).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "fetch/fetch.h"

namespace lazyfs::fetch {

class RegistryClient;

// The referrers tag of `subject`: "sha256-<hex>".
std::string ReferrersTag(const Digest& subject);

// The descriptors of a referrers list (an image index, at most 4 MiB), of `artifact_type`
// (empty: all). Fails with InvalidArgument when it is not an index or an entry lacks a media
// type or a valid digest or size; ResourceExhausted past the caps.
Result<std::vector<Descriptor>> ParseReferrers(std::string_view raw, std::string_view content_type,
                                               std::string_view artifact_type);

// The artifact manifest (bytes to push): OCI image manifest with `artifact_type`, the empty
// config, `layers` (the empty descriptor when there are none), `subject` and `annotations`.
// Keys sorted, no whitespace: the same inputs always give the same digest.
std::string ArtifactManifest(const Descriptor& subject, std::string_view artifact_type,
                             const std::vector<Descriptor>& layers,
                             const std::map<std::string, std::string>& annotations);

// The referrers index with `entry` appended unless an entry of its digest is there; `current`
// is the tag's index (nullopt: none yet) and must parse as ParseReferrers says.
Result<std::string> AddReferrer(const std::optional<std::string>& current,
                                const Descriptor& entry);

// The referrers of `subject` in the client's repository (API first, tag on 404).
Result<std::vector<Descriptor>> ListReferrers(RegistryClient& client, const Digest& subject,
                                              std::string_view artifact_type);

// Pushes the blobs the registry lacks, the empty config, the artifact manifest by digest and,
// without OCI-Subject in the registry's answer, the updated referrers tag. Returns the
// artifact's descriptor.
Result<Descriptor> PublishReferrer(RegistryClient& client, const Descriptor& subject,
                                   std::string_view artifact_type,
                                   const std::vector<BlobToPush>& blobs,
                                   const std::map<std::string, std::string>& annotations);

}  // namespace lazyfs::fetch
