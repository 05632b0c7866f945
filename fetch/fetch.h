// fetch: from an image reference to verified blobs.
//
// Parses references (docker://, bare names, oci:, oci-archive:, docker-archive:), talks to
// OCI/Docker v2 registries with libcurl (bearer tokens, basic credentials from auth.json, the
// docker config and credential helpers; mirrors and insecure registries from registries.conf;
// retries, resumed and ranged blob reads), reads OCI layout directories and image archives (tars
// of layouts, docker save tarballs), resolves image indexes by platform, and keeps blobs in a
// content-addressed, verified store. It never looks inside layers: what it hands on is an
// ImageDescriptor and a BlobSource (base/image.h). Toward a registry it also publishes: an OCI
// artifact whose `subject` is an image manifest (lazyfs's per-layer indexes) is pushed with its
// blobs and found again through the referrers API or, where a registry has none, the referrers
// tag ("sha256-<hex of the subject>").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/cas_dir.h"
#include "base/digest.h"
#include "base/image.h"
#include "base/status.h"
#include "base/store_layout.h"

namespace lazyfs::fetch {

// New transports are appended: the values are never renumbered.
enum class Transport { kDocker, kOciLayout, kOciArchive, kDockerArchive };

// A parsed image reference. Value type.
struct ImageRef {
  Transport transport = Transport::kDocker;
  // kDocker: registry host[:port] as written after normalisation ("docker.io" for Docker Hub),
  // repository ("library/alpine"), tag (defaults to "latest" when no digest is given) and/or digest.
  std::string registry;
  std::string repository;
  std::string tag;
  std::optional<Digest> digest;
  // kOciLayout: the layout directory; `tag` is the org.opencontainers.image.ref.name to pick
  // (empty: the index must hold exactly one manifest).
  // kOciArchive: the tar of such a layout (as `skopeo copy ... oci-archive:` writes); `tag` as
  // for kOciLayout.
  // kDockerArchive: the tarball `docker save` writes; `tag` is the RepoTags entry to pick
  // ("busybox:1.36", empty: the only or first image in manifest.json).
  std::string path;

  // Accepts: docker://HOST[:PORT]/REPO[:TAG][@DIGEST]; bare NAME[:TAG][@DIGEST] ("alpine",
  // "library/alpine:3.20", "ghcr.io/o/r:t") normalised as other container tools do (no dot, colon
  // or "localhost" in the first component means docker.io, and a one-component docker.io name
  // gets "library/"); oci:DIR[:TAG]; oci-archive:FILE[:TAG]; docker-archive:FILE[:REPO:TAG]
  // (FILE ends at the first ':'). Fails with InvalidArgument naming what is malformed.
  static Result<ImageRef> Parse(std::string_view text);
  // Canonical text: "docker://HOST/REPO:TAG", "docker://HOST/REPO@sha256:..", "oci:DIR:TAG",
  // "oci-archive:FILE:TAG", "docker-archive:FILE:REPO:TAG".
  std::string ToString() const;
};

struct Platform {
  std::string os = "linux";
  std::string architecture;  // GOARCH names: amd64, arm64, arm, 386, ppc64le, s390x, riscv64
  std::string variant;       // "v7", "v8", or empty
  // "os/arch[/variant]".
  static Result<Platform> Parse(std::string_view text);
  static Platform Host();
  std::string ToString() const;
};

// A platform as an index entry states it.
struct PlatformSpec {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string ToString() const;
};

// A content descriptor: what a manifest or index says about a blob or a child manifest.
struct Descriptor {
  std::string media_type;
  Digest digest;
  uint64_t size = 0;
  // An artifact manifest's type (referrers lists and artifact manifests); empty otherwise.
  std::string artifact_type;
  std::map<std::string, std::string> annotations;
  std::optional<PlatformSpec> platform;  // index entries only
};

// A blob of an artifact to publish: its bytes and how the artifact manifest describes it.
struct BlobToPush {
  Digest digest;  // must be the sha256 of `bytes`
  std::string bytes;
  std::string media_type;
  std::map<std::string, std::string> annotations;
};

// An OCI 1.1 artifact manifest, as a referrer is: its type, the manifest it refers to, its
// blobs (its "layers") and annotations.
struct ArtifactManifest {
  std::string artifact_type;  // artifactType, else the config's media type (as OCI 1.1 says)
  Descriptor subject;
  std::vector<Descriptor> blobs;
  std::map<std::string, std::string> annotations;
};

// Parses an artifact manifest (at most 4 MiB, as ImageSource::ReadManifest returns it). Fails
// with InvalidArgument when it is not an OCI image manifest with a subject, or a descriptor is
// malformed; ResourceExhausted past the manifest caps. The blobs' media types are the
// artifact's business: any is accepted.
Result<ArtifactManifest> ParseArtifactManifest(std::string_view raw);

// The media type of an OCI 1.1 artifact's empty config ("{}").
inline constexpr std::string_view kOciEmptyMediaType = "application/vnd.oci.empty.v1+json";

struct SourceOptions {
  // The store; blobs are kept in its blobs() directory (a CasDir).
  StoreLayout store;
  // Which manifest to pick from an image index.
  Platform platform = Platform::Host();
  // Allow plain HTTP (and unverified TLS) for every registry. Loopback registries
  // (localhost, 127.0.0.0/8, ::1) fall back to HTTP without it, as other container tools do.
  bool insecure = false;
  // registries.conf (v2) naming mirrors, insecure and blocked registries; empty means
  // $CONTAINERS_REGISTRIES_CONF, else /etc/containers/registries.conf (absent: no configuration).
  std::string registries_conf;
  // Docker credentials file; empty means $DOCKER_CONFIG/config.json or ~/.docker/config.json.
  std::string docker_config;
  // Overall timeout (seconds) for a connection attempt.
  long connect_timeout_s = 30;
  // The minimum rate: a transfer that moves fewer than min_rate_bps bytes a second for
  // low_speed_timeout_s seconds fails (and is retried, resuming where it stopped), so a registry
  // that drips a byte now and then cannot hold a request.
  long min_rate_bps = 1024;
  long low_speed_timeout_s = 60;
  // The overall cap on a whole-blob download (a layer indexed from its stream, a config): the
  // time its declared size takes at min_rate_bps, plus this many seconds. It bounds a registry
  // that keeps just above the minimum rate in bursts.
  long blob_deadline_slack_s = 300;
  // Retries of a registry request that failed for a reason that may pass: connection errors,
  // resets and timeouts, HTTP 408, 429 and 5xx. Attempts count the first one; 1 disables
  // retries. A broken blob download resumes where it stopped (a Range request).
  int max_attempts = 5;
  // The delay before the second attempt; doubled for each further one, capped at
  // retry_max_delay_ms, with random jitter (each delay is between half and all of it). A 429 or
  // 503 with Retry-After waits what the server asks instead.
  long retry_initial_delay_ms = 500;
  long retry_max_delay_ms = 20000;
  // No new attempt starts later than this many seconds after a request's first attempt.
  long retry_deadline_s = 300;
  // Pushes: a blob up to this size goes in one PUT; a larger one in PATCH requests of this
  // size, then a closing PUT. Registries and the proxies before them cap request bodies.
  uint64_t upload_chunk_size = 8 << 20;
};

// One image's source: resolves the reference and serves its blobs (caching them, verified, in
// the blob store). Thread-safe.
class ImageSource : public BlobSource {
 public:
  // Fetches (or reads) the manifest, resolving an index by platform, and the config; returns the
  // descriptors. The raw manifest and config bytes are stored in the blob store under their
  // digests exactly as received. Errors name the reference and what was wrong (unknown media
  // type, schema 1, digest mismatch, unreachable registry...).
  virtual Result<ImageDescriptor> Resolve() = 0;
  // Raw bytes of a manifest or config blob previously stored by Resolve (or fetched now).
  virtual Result<std::string> ReadSmallBlob(const Digest& digest, uint64_t max_size) = 0;

  // The rest is for registries; other transports fail with Unimplemented.

  // The manifests that name `subject` as their subject, of `artifact_type` (empty: any): from
  // the referrers API, or from the referrers tag where the registry answers 404 for it. Every
  // descriptor is checked (digest syntax, media type present; the list capped like a manifest)
  // and filtered here, whatever the registry did with the filter. Fails with InvalidArgument or
  // ResourceExhausted, naming the registry, when the list is malformed or too large.
  virtual Result<std::vector<Descriptor>> Referrers(const Digest& subject,
                                                    std::string_view artifact_type);
  // A manifest's bytes by digest, verified against it and kept in the blob store; fails with
  // ResourceExhausted past max_size (at most 4 MiB), DataLoss when the registry sends other bytes.
  virtual Result<std::string> ReadManifest(const Digest& digest, uint64_t max_size);
  // Publishes an OCI artifact of `artifact_type` for `subject` (media type, digest and size of
  // an image manifest in this repository): pushes the blobs the registry lacks, then the
  // artifact manifest (the empty config, the blobs as layers, `annotations`) by digest; where
  // the registry has no referrers API (no OCI-Subject in its answer), adds it to the referrers
  // tag's index. Returns the artifact's descriptor as Referrers lists it. Fails with
  // InvalidArgument for a blob whose bytes do not match its digest, PermissionDenied when the
  // registry refuses the push.
  virtual Result<Descriptor> PushReferrer(const Descriptor& subject,
                                          std::string_view artifact_type,
                                          const std::vector<BlobToPush>& blobs,
                                          const std::map<std::string, std::string>& annotations);
};

// Fails with InvalidArgument when options.store has no root.
Result<std::unique_ptr<ImageSource>> OpenImageSource(const ImageRef& ref,
                                                     const SourceOptions& options);

// The blob store's upkeep (lazyfs rmi, gc, fsck). Blobs are a cache: lazy reads fetch ranges
// again when a layer blob is gone, and Resolve fetches manifests and configs again.

struct BlobPruneReport {
  uint64_t objects = 0;  // blobs removed
  uint64_t bytes = 0;    // their size
};

// Removes from store.blobs() every blob that is neither the manifest, the config nor a layer of
// one of `keep` (the images the index still holds). Safe beside running processes: one that
// needs a removed blob fetches it again. Fails only when the blob store cannot be opened.
Result<BlobPruneReport> PruneBlobStore(const StoreLayout& store,
                                       const std::vector<ImageDescriptor>& keep);

// fsck of store.blobs(): every blob against its digest (CasDir::Check); `repair` removes
// corrupt blobs and the temporaries of processes that are gone.
Result<CasDir::CheckReport> CheckBlobStore(const StoreLayout& store, bool repair);

}  // namespace lazyfs::fetch
