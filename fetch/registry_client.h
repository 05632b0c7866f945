// The OCI distribution (Docker registry v2) API for one repository: manifests and blobs by
// digest or tag, with the registry's authentication dance.
//
// The one idea: a request is tried as it is, and a 401 says how to authenticate: a Bearer
// challenge sends us to the token service (anonymously, or with the user's basic credentials),
// a Basic challenge takes the credentials from the docker config file; then the request is
// retried once. Credentials never appear in messages. Thread-safe.
//
// Retries live here and nowhere else: a request that fails in a way that may pass is tried
// again with backoff, within the options' attempts and time budget and, for a read that
// carries one, the reader's Deadline (registry_transfer.cc).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/deadline.h"
#include "base/digest.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "fetch/fetch.h"
#include "fetch/http.h"

namespace lazyfs::fetch {

struct Credentials {
  std::string username;
  std::string password;
};

// Credentials for `registry`/`repository` and where they came from (for messages; never the
// secret itself).
struct FoundCredentials {
  std::optional<Credentials> credentials;
  // "FILE", or "credential helper docker-credential-NAME (FILE)"; when none was found, the
  // list of files searched.
  std::string source;
};

// Searches the auth files in the order container tools do: SourceOptions.docker_config alone
// when set; else $REGISTRY_AUTH_FILE alone when set; else ${XDG_RUNTIME_DIR}/containers/
// auth.json, ~/.config/containers/auth.json, then the docker config ($DOCKER_CONFIG/config.json
// or ~/.docker/config.json). In each: "credHelpers" naming a helper for the registry,
// then "auths" (keys are hosts, URLs, or host/namespace prefixes of the repository; the
// longest match wins), then "credsStore". A helper is run as `docker-credential-NAME get` with
// the registry on stdin; it answers {"Username":..,"Secret":..}. Fails with InvalidArgument on
// a malformed file and Unavailable when a helper fails (its exit status, never its output).
Result<FoundCredentials> FindCredentials(const SourceOptions& options,
                                         const std::string& registry,
                                         const std::string& repository);

// True for Docker Hub's names: docker.io, index.docker.io, registry-1.docker.io.
bool IsDockerHub(std::string_view host);

// True for localhost, 127.0.0.0/8 and ::1 (with or without a port).
bool IsLoopbackHost(std::string_view host_port);

// How long a whole-blob download of `size` bytes may take: the time it takes at
// options.min_rate_bps, plus options.blob_deadline_slack_s; capped at 30 days so that no size a
// manifest declares overflows a clock.
std::chrono::seconds DownloadTimeLimit(uint64_t size, const SourceOptions& options);

class RegistryClient {
 public:
  // registry as in ImageRef ("docker.io", "127.0.0.1:5000"). Reads the credentials file now.
  static Result<std::unique_ptr<RegistryClient>> Create(const std::string& registry,
                                                        const std::string& repository,
                                                        const SourceOptions& options);
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  struct RawManifest {
    std::string bytes;         // exactly as received
    std::string content_type;  // the response's Content-Type
  };
  // GET /v2/<repo>/manifests/<tag or digest>, capped at 4 MiB. NotFound when the registry does
  // not know it; PermissionDenied when credentials are missing or refused; Unavailable for
  // network trouble and 5xx.
  Result<RawManifest> GetManifest(const std::string& reference);

  // GET /v2/<repo>/blobs/<digest>, streaming the body to `sink` (whose error aborts the
  // transfer and is returned). Every byte reaches the sink once, in order: a transfer that
  // breaks is resumed with a Range request from the first byte not yet delivered. The bytes are
  // not verified here. Retries and the transfer stop at `deadline` (Unavailable, as for
  // GetBlobRange).
  Status GetBlob(const Digest& digest, const std::function<Status(std::string_view)>& sink,
                 const Deadline& deadline);

  // The size of a blob (HEAD /v2/<repo>/blobs/<digest>, its Content-Length). Retried within
  // `deadline` as GetBlobRange is.
  Result<uint64_t> BlobSize(const Digest& digest, const Deadline& deadline);

  // Reads up to out.size() bytes of a blob at `offset` with a Range request (retried and
  // resumed like GetBlob). Returns the bytes read: fewer only at the blob's end. Not verified.
  // No attempt starts once `deadline` has passed, no backoff sleeps past it, and the transfer
  // in progress is aborted when it passes or its Canceller is raised: then this fails with
  // Unavailable, "...: gave up at the read deadline" or "...: cancelled" (naming the last
  // failure before it, if any).
  Result<size_t> GetBlobRange(const Digest& digest, uint64_t offset, std::span<std::byte> out,
                              const Deadline& deadline);

  // Pushes (registry_push.cc). Requests that change the repository ask the token service for
  // "repository:REPO:pull,push", whatever scope the registry's challenge names.

  // Whether the registry holds the blob (HEAD: 200 yes, 404 no).
  Result<bool> BlobExists(const Digest& digest);

  // Uploads a blob: POST opens an upload session; bytes up to options.upload_chunk_size go in
  // one PUT ?digest=, larger ones in PATCH chunks (Content-Range) and a closing PUT. Each
  // Location the registry answers (relative or absolute) is followed; the credentials go only
  // to the registry's own origin. A failure that may pass restarts the session, within the
  // time the size takes at the minimum rate (DownloadTimeLimit). The registry checks the digest.
  Status PutBlob(const Digest& digest, std::string_view bytes);

  struct PushedManifest {
    Digest digest;  // the registry's Docker-Content-Digest, equal to our own sha256
    // The registry answered OCI-Subject: it indexes referrers itself (the referrers API).
    bool subject_indexed = false;
  };
  // PUT /v2/<repo>/manifests/<tag or digest> with `media_type` as Content-Type (retried: the PUT
  // is idempotent). DataLoss when the registry reports another digest than the bytes have.
  Result<PushedManifest> PutManifest(const std::string& reference, std::string_view bytes,
                                     std::string_view media_type);

  // GET /v2/<repo>/referrers/<subject>[?artifactType=..], capped at 4 MiB: the image index as
  // received, or nullopt when the registry answers 404 (it has no referrers API).
  Result<std::optional<RawManifest>> GetReferrers(const Digest& subject,
                                                  std::string_view artifact_type);

  // "registry HOST: repository REPO", the prefix of every message.
  std::string Describe() const;

 private:
  // What a request does to the repository, so that a token grants what it needs.
  enum class Access { kPull, kPush };

  RegistryClient(std::string registry, std::string repository, const SourceOptions& options,
                 std::optional<Credentials> credentials, std::string credentials_source);

  // Performs a request against the registry, authenticating on 401 and retrying once.
  // `target` is a path on the registry, or an absolute URL the registry named (a Location).
  Result<HttpResponse> Request(HttpRequest request, const std::string& target,
                               Access access = Access::kPull);
  // "scheme://endpoint" as settled now.
  std::string BaseUrl();
  // One upload session of PutBlob (POST, then PUT or PATCHes and PUT): its final response, or
  // the first that was not what the protocol expects.
  Result<HttpResponse> UploadOnce(const Digest& digest, std::string_view bytes,
                                  const Deadline& deadline);
  // The PATCH requests of a chunked upload from `location`; the location for the closing PUT
  // (in *location), or the first unexpected response.
  Result<std::optional<HttpResponse>> UploadChunks(std::string_view bytes, std::string* location,
                                                   const Deadline& deadline);
  // Runs `attempt` again while it fails in a way that may pass (Unavailable, or HTTP 408, 429,
  // 5xx), with backoff, within the options' attempt and time budget and `deadline` (whichever
  // ends sooner; the attempts should carry `deadline` too). `permanent` (if given) set to an
  // error means a sink failed: no retry. Returns the last outcome, or Unavailable from
  // GaveUpAt when the deadline ended it. Counts each retry in kStatFetchRetries.
  Result<HttpResponse> WithRetries(const std::string& what, const Deadline& deadline,
                                   const std::function<Result<HttpResponse>()>& attempt,
                                   const Status* permanent = nullptr);
  // Unavailable: `what` gave up at the deadline (or was cancelled) after `attempts` attempts.
  Status GaveUpAt(const Deadline& deadline, const std::string& what, int attempts,
                  const std::string& last_error) const;
  // Streams GET `path` with an optional byte range [offset, offset+length) (length 0: to the
  // end) to `sink`, resuming after breaks, within `deadline`. Returns the final response.
  Result<HttpResponse> GetStreamed(const std::string& path, const std::string& what,
                                   uint64_t offset, uint64_t length, const Deadline& deadline,
                                   const std::function<Status(std::string_view)>& sink);
  Status Authenticate(const HttpResponse& challenge, const std::string& used_authorization,
                      const Deadline& deadline, Access access);
  Status FetchToken(const std::string& realm, const std::string& service,
                    const std::string& scope, const Deadline& deadline, Access access);
  Status ErrorFor(const HttpResponse& response, const std::string& what) const;

  const std::string registry_;    // as the user named it
  const std::string endpoint_;    // host[:port] spoken to (registry-1.docker.io for docker.io)
  const std::string repository_;
  const SourceOptions options_;
  const std::optional<Credentials> credentials_;
  const std::string credentials_source_;  // where credentials_ came from, or what was searched
  HttpClient http_;

  Mutex mu_;
  std::string scheme_ LAZYFS_GUARDED_BY(mu_);  // "https" or "http"
  bool scheme_settled_ LAZYFS_GUARDED_BY(mu_) = false;
  std::string authorization_ LAZYFS_GUARDED_BY(mu_);  // "Bearer ..." / "Basic ...", or empty
  // Why the last token request went without the credentials (RealmMayReceiveCredentials), for
  // the message of a refusal; empty when they went or there are none.
  std::string withheld_ LAZYFS_GUARDED_BY(mu_);
  // The bearer token in authorization_ was granted for pushes too.
  bool token_pushes_ LAZYFS_GUARDED_BY(mu_) = false;
  // When a bearer token in authorization_ stops being valid.
  std::chrono::steady_clock::time_point token_expiry_ LAZYFS_GUARDED_BY(mu_) =
      std::chrono::steady_clock::time_point::max();
};

}  // namespace lazyfs::fetch
