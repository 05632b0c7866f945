// The registry client's calls (manifests, blobs, sizes) and how HTTP answers become Status.
// Authentication is in registry_auth.cc, the request path (scheme, retries, resumed streams) in
// registry_transfer.cc.
#include "fetch/registry_client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>

#include "fetch/manifest.h"
#include "fetch/registry_auth.h"

namespace lazyfs::fetch {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kDockerHubEndpoint = "registry-1.docker.io";

// The registry's own explanation from an error body ({"errors":[{"code":..,"message":..}]}).
std::pair<std::string, std::string> RegistryErrorOf(const std::string& body) {
  Json j = Json::parse(body, nullptr, false);
  try {
    if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
      const Json& e = j["errors"][0];
      std::string code = e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>()
                                                                      : "";
      std::string msg = e.contains("message") && e["message"].is_string()
                            ? e["message"].get<std::string>()
                            : "";
      return {code, msg};
    }
  } catch (const std::exception&) {
  }
  return {};
}

}  // namespace

bool IsDockerHub(std::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

bool IsLoopbackHost(std::string_view host_port) {
  const std::string host = HostOnly(host_port);
  if (host == "localhost") return true;
  in_addr v4;
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    static const in6_addr kLoopback = IN6ADDR_LOOPBACK_INIT;
    return std::memcmp(&v6, &kLoopback, sizeof v6) == 0;
  }
  return false;
}

std::chrono::seconds DownloadTimeLimit(uint64_t size, const SourceOptions& options) {
  constexpr uint64_t kMax = 30ull * 24 * 3600;
  const uint64_t rate = static_cast<uint64_t>(std::max(1L, options.min_rate_bps));
  const uint64_t slack = static_cast<uint64_t>(std::max(0L, options.blob_deadline_slack_s));
  const uint64_t at_min_rate = size / rate + (size % rate != 0);
  return std::chrono::seconds(std::min(kMax, std::min(kMax, at_min_rate) + std::min(kMax, slack)));
}

Result<std::unique_ptr<RegistryClient>> RegistryClient::Create(const std::string& registry,
                                                               const std::string& repository,
                                                               const SourceOptions& options) {
  LAZYFS_ASSIGN_OR_RETURN(FoundCredentials found,
                          FindCredentials(options, registry, repository));
  return std::unique_ptr<RegistryClient>(new RegistryClient(
      registry, repository, options, std::move(found.credentials), std::move(found.source)));
}

RegistryClient::RegistryClient(std::string registry, std::string repository,
                               const SourceOptions& options,
                               std::optional<Credentials> credentials,
                               std::string credentials_source)
    : registry_(std::move(registry)),
      endpoint_(IsDockerHub(registry_) ? std::string(kDockerHubEndpoint) : registry_),
      repository_(std::move(repository)),
      options_(options),
      credentials_(std::move(credentials)),
      credentials_source_(std::move(credentials_source)),
      http_(HttpOptions{options.connect_timeout_s, options.min_rate_bps,
                        options.low_speed_timeout_s,
                        /*verify_tls=*/!(options.insecure || IsLoopbackHost(endpoint_))}) {
  // HTTPS first. Loopback registries are insecure registries (as docker and podman treat
  // 127.0.0.0/8 and localhost): their certificate is not verified and, like every registry
  // when --insecure is given, they fall back to plain HTTP when the first HTTPS request fails.
  scheme_ = "https";
  scheme_settled_ = !(options.insecure || IsLoopbackHost(endpoint_));
}

std::string RegistryClient::Describe() const {
  return "registry " + registry_ + ": repository " + repository_;
}

Status RegistryClient::ErrorFor(const HttpResponse& response, const std::string& what) const {
  auto [code, message] = RegistryErrorOf(response.body);
  const std::string prefix = Describe() + ": " + what + ": ";
  const std::string detail = message.empty() ? "" : " (" + message + ")";
  const std::string http = "HTTP " + std::to_string(response.status);
  switch (response.status) {
    case 404:
      if (code == "NAME_UNKNOWN") return NotFoundError(Describe() + ": repository not found");
      return NotFoundError(prefix + "not found");
    case 403:
      return PermissionDeniedError(prefix + "access denied (" + http + ")" + detail);
    case 408:
    case 429:
      return UnavailableError(prefix + http + detail);
    default:
      if (response.status >= 500) return UnavailableError(prefix + http + detail);
      return InvalidArgumentError(prefix + "unexpected " + http + detail);
  }
}

Result<RegistryClient::RawManifest> RegistryClient::GetManifest(const std::string& reference) {
  HttpRequest request;
  request.headers.push_back("Accept: " + std::string(kManifestAccept));
  request.max_body = kMaxManifestSize;
  const std::string what = "manifest \"" + reference + "\"";
  auto response = WithRetries(what, Deadline::Never(), [&] {
    return Request(request, "/v2/" + repository_ + "/manifests/" + reference);
  });
  if (!response.ok()) {
    if (response.status().code() == StatusCode::kResourceExhausted) {
      return ResourceExhaustedError(Describe() + ": " + what + " is larger than 4 MiB");
    }
    return response.status();
  }
  if (response->status != 200) return ErrorFor(*response, what);
  RawManifest out;
  out.bytes = std::move(response->body);
  out.content_type = response->Header("content-type");
  return out;
}

Status RegistryClient::GetBlob(const Digest& digest,
                               const std::function<Status(std::string_view)>& sink,
                               const Deadline& deadline) {
  const std::string what = "blob " + digest.ToString();
  LAZYFS_ASSIGN_OR_RETURN(
      HttpResponse response,
      GetStreamed("/v2/" + repository_ + "/blobs/" + digest.ToString(), what, 0, 0, deadline,
                  sink));
  if (response.status != 200 && response.status != 206) return ErrorFor(response, what);
  return Status::Ok();
}

Result<uint64_t> RegistryClient::BlobSize(const Digest& digest, const Deadline& deadline) {
  const std::string what = "blob " + digest.ToString();
  HttpRequest request;
  request.method = "HEAD";
  request.deadline = deadline;
  LAZYFS_ASSIGN_OR_RETURN(
      HttpResponse response,
      WithRetries(what, deadline, [&] {
        return Request(request, "/v2/" + repository_ + "/blobs/" + digest.ToString());
      }));
  if (response.status != 200) return ErrorFor(response, what);
  const std::string length = response.Header("content-length");
  if (length.empty() || length.size() > 19 ||
      !std::all_of(length.begin(), length.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return InvalidArgumentError(Describe() + ": " + what + ": HEAD gave no usable Content-Length");
  }
  return std::stoull(length);
}

Result<size_t> RegistryClient::GetBlobRange(const Digest& digest, uint64_t offset,
                                            std::span<std::byte> out, const Deadline& deadline) {
  if (out.empty()) return size_t{0};
  const std::string what = "blob " + digest.ToString() + " bytes " + std::to_string(offset) +
                           "+" + std::to_string(out.size());
  size_t got = 0;
  LAZYFS_ASSIGN_OR_RETURN(
      HttpResponse response,
      GetStreamed("/v2/" + repository_ + "/blobs/" + digest.ToString(), what, offset, out.size(),
                  deadline, [&](std::string_view chunk) -> Status {
                    std::memcpy(out.data() + got, chunk.data(), chunk.size());
                    got += chunk.size();
                    return Status::Ok();
                  }));
  if (response.status != 200 && response.status != 206) return ErrorFor(response, what);
  return got;
}

}  // namespace lazyfs::fetch
