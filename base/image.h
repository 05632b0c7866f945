// What an image is, as the modules exchange it: descriptors resolved from a manifest, and the
// BlobSource through which layer bytes are read.
//
// fetch/ produces these (it parses manifests and talks to registries); index/ consumes them
// without knowing where the bytes come from. Neither includes the other: they meet here.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/deadline.h"
#include "base/digest.h"
#include "base/fd.h"
#include "base/status.h"

namespace lazyfs {

enum class LayerCompression { kNone, kGzip, kZstd };

// The compression of a layer media type: OCI (application/vnd.oci.image.layer.v1.tar[+gzip|+zstd])
// and Docker (application/vnd.docker.image.rootfs.diff.tar.gzip); foreign/non-distributable
// variants too. Anything else fails with Unimplemented naming the media type.
Result<LayerCompression> CompressionOfMediaType(std::string_view media_type);

struct LayerDescriptor {
  Digest digest;               // of the blob as stored in the registry (compressed)
  std::string media_type;
  uint64_t size = 0;           // compressed size, from the manifest
  std::optional<Digest> diff_id;  // of the uncompressed tar, from the config's rootfs.diff_ids
  std::map<std::string, std::string> annotations;
};

struct ImageDescriptor {
  std::string reference;           // the normalised reference it was resolved from
  Digest manifest_digest;          // sha256 of the raw manifest bytes as received
  std::string manifest_media_type;
  Digest config_digest;
  std::string platform;            // "linux/amd64" etc., as selected from an index
  std::vector<LayerDescriptor> layers;  // bottom first
};

// Reads blobs by digest. Implementations fetch and cache as needed and verify what they return.
// Thread-safe.
class BlobSource {
 public:
  virtual ~BlobSource() = default;
  // Opens the complete blob as a local read-only file whose content has been verified against
  // `digest` (fetching it first if needed). size is the descriptor's size (a bound on what is
  // accepted). Fails with NotFound, Unavailable (network), DataLoss (digest mismatch).
  virtual Result<Fd> OpenBlob(const Digest& digest, uint64_t size) = 0;
  // Reads up to out.size() bytes at `offset` of the blob (a range request for remote blobs).
  // The bytes are NOT verified: callers verify what they derive from them. Returns fewer bytes
  // only at the end of the blob. Retries of network failures happen behind this call and stop
  // at `deadline` (Unavailable naming what failed last); so does the transfer itself.
  virtual Result<size_t> ReadBlobRange(const Digest& digest, uint64_t offset,
                                       std::span<std::byte> out, const Deadline& deadline) = 0;
};

// Progress of a long operation, for the CLI to render. `done`/`total` are in `unit`s; total is 0
// when unknown.
struct Progress {
  std::string_view stage;   // "index", "fetch", "write", ...
  std::string_view item;    // what is being worked on (a layer digest, a path)
  uint64_t done = 0;
  uint64_t total = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

}  // namespace lazyfs
