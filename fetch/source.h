// Internals shared by the ImageSource transports (source_registry.cc, source_oci_layout.cc,
// source_archive.cc): verifying and storing small blobs, picking a layout's manifest, and
// resolving a manifest (through indexes) into an ImageDescriptor given a way to fetch verified
// child manifests and configs.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/cas_dir.h"
#include "base/digest.h"
#include "base/image.h"
#include "base/single_flight.h"
#include "base/status.h"
#include "fetch/fetch.h"
#include "fetch/manifest.h"

namespace lazyfs::fetch {

// Checks that `bytes` are the blob `d` describes (size and digest); DataLoss naming `where`.
Status VerifyBytes(std::string_view bytes, const Digest& digest, std::optional<uint64_t> size,
                   const std::string& where);

// Reads a whole object from a CasDir (verified) if it is there, capped at max_size.
// NotFound when absent (or when it was corrupt and has been removed).
Result<std::string> ReadFromStore(CasDir& store, const Digest& digest, uint64_t max_size);

// Stores small verified bytes (a manifest or config) unless already there.
Status StoreSmall(CasDir& store, const Digest& digest, std::string_view bytes);

// Picks the top manifest of an OCI layout from its oci-layout and index.json bytes: the index
// entry annotated org.opencontainers.image.ref.name == tag (empty tag: the only entry), choosing
// by platform among several; refuses one over kMaxManifestSize. `where` names the layout in
// errors ("oci:DIR", "oci-archive:FILE").
Result<Descriptor> PickLayoutManifest(std::string_view oci_layout, std::string_view index_json,
                                      const std::string& tag, const Platform& platform,
                                      const std::string& where);

// Fetches the bytes of a child manifest or config by descriptor, verified against it.
using FetchVerified = std::function<Result<std::string>(const Descriptor&)>;

// From a top-level manifest (raw bytes, digest and content type) to the image descriptor:
// follows indexes by platform (up to a small depth), fetches the config, checks diff_ids.
// Errors get `reference` as context.
Result<ImageDescriptor> ResolveManifest(const std::string& reference, std::string raw,
                                        const Digest& digest, std::string content_type,
                                        const Platform& platform, const FetchVerified& fetch);

}  // namespace lazyfs::fetch
