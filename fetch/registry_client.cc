#include "fetch/registry_client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <thread>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/fd.h"
#include "base/stats.h"
#include "fetch/manifest.h"

namespace lazyfs::fetch {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kDockerHubEndpoint = "registry-1.docker.io";
constexpr uint64_t kMaxTokenResponse = 1 << 20;

std::string HostOnly(std::string_view host_port) {
  if (host_port.starts_with('[')) {
    const size_t close = host_port.find(']');
    return std::string(host_port.substr(1, close == std::string_view::npos ? close : close - 1));
  }
  const size_t colon = host_port.find(':');
  // More than one colon without brackets: a bare IPv6 address.
  if (colon != std::string_view::npos && host_port.find(':', colon + 1) != std::string_view::npos) {
    return std::string(host_port);
  }
  return std::string(host_port.substr(0, colon));
}

// One challenge of a WWW-Authenticate header: the scheme and its parameters.
struct Challenge {
  std::string scheme;  // lower-cased
  std::map<std::string, std::string> params;
};

// Parses `Bearer realm="...",service="...",scope="..."` (the first challenge only).
Challenge ParseChallenge(std::string_view header) {
  Challenge c;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < header.size() && (header[i] == ' ' || header[i] == '\t')) ++i;
  };
  skip_space();
  while (i < header.size() && header[i] != ' ') {
    c.scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(header[i++])));
  }
  for (;;) {
    skip_space();
    if (i < header.size() && header[i] == ',') {
      ++i;
      continue;
    }
    size_t eq = header.find('=', i);
    if (eq == std::string_view::npos) break;
    std::string key(header.substr(i, eq - i));
    while (!key.empty() && key.back() == ' ') key.pop_back();
    for (char& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (key.find_first_of(" ,") != std::string::npos) break;  // the next challenge starts
    i = eq + 1;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      ++i;
      while (i < header.size() && header[i] != '"') {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value += header[i++];
      }
      ++i;  // closing quote
    } else {
      while (i < header.size() && header[i] != ',') value += header[i++];
      while (!value.empty() && value.back() == ' ') value.pop_back();
    }
    c.params[key] = value;
  }
  return c;
}

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
      insecure_(options.insecure),
      options_(options),
      credentials_(std::move(credentials)),
      credentials_source_(std::move(credentials_source)),
      http_(HttpOptions{options.connect_timeout_s, options.low_speed_timeout_s,
                        /*verify_tls=*/!(options.insecure || IsLoopbackHost(endpoint_))}) {
  // HTTPS first. Loopback registries are insecure registries (as docker and podman treat
  // 127.0.0.0/8 and localhost): their certificate is not verified and, like every registry
  // when --insecure is given, they fall back to plain HTTP when the first HTTPS request fails.
  scheme_ = "https";
  scheme_settled_ = !(insecure_ || IsLoopbackHost(endpoint_));
}

std::string RegistryClient::Describe() const {
  return "registry " + registry_ + ": repository " + repository_;
}

Result<HttpResponse> RegistryClient::Request(HttpRequest request, const std::string& path) {
  request.peer = "registry " + registry_;
  bool authenticated_now = false;
  for (;;) {
    std::string scheme;
    bool settled;
    {
      std::lock_guard lock(mu_);
      if (std::chrono::steady_clock::now() >= token_expiry_) {
        // An expired token would only earn a 401: go straight to the token service.
        authorization_.clear();
        token_expiry_ = std::chrono::steady_clock::time_point::max();
      }
      scheme = scheme_;
      settled = scheme_settled_;
      request.authorization = authorization_;
    }
    request.url = scheme + "://" + endpoint_ + path;
    auto response = http_.Perform(request);
    if (!settled) {
      if (!response.ok() && response.status().code() == StatusCode::kUnavailable) {
        std::lock_guard lock(mu_);
        if (!scheme_settled_) {
          scheme_ = "http";
          scheme_settled_ = true;
        }
        continue;
      }
      std::lock_guard lock(mu_);
      scheme_settled_ = true;
    }
    if (!response.ok()) return response.status();
    if (response->status != 401) return response;
    if (authenticated_now) {
      if (credentials_) {
        return PermissionDeniedError("registry " + registry_ + ": credentials for " + registry_ +
                                     " from " + credentials_source_ + " were rejected (HTTP 401)");
      }
      return PermissionDeniedError("registry " + registry_ + ": access denied (HTTP 401)");
    }
    LAZYFS_RETURN_IF_ERROR(Authenticate(*response, request.authorization));
    authenticated_now = true;
  }
}

Status RegistryClient::Authenticate(const HttpResponse& response,
                                    const std::string& used_authorization) {
  {
    // Another thread may have authenticated while this request was in flight.
    std::lock_guard lock(mu_);
    if (authorization_ != used_authorization) return Status::Ok();
  }
  const std::string header = response.Header("www-authenticate");
  if (header.empty()) {
    return PermissionDeniedError("registry " + registry_ +
                                 ": HTTP 401 without a WWW-Authenticate challenge");
  }
  Challenge c = ParseChallenge(header);
  if (c.scheme == "bearer") {
    auto realm = c.params.find("realm");
    if (realm == c.params.end() || realm->second.empty()) {
      return PermissionDeniedError("registry " + registry_ + ": Bearer challenge without a realm");
    }
    std::string scope = c.params.count("scope") ? c.params["scope"]
                                                : "repository:" + repository_ + ":pull";
    return FetchToken(realm->second, c.params["service"], scope);
  }
  if (c.scheme == "basic") {
    if (!credentials_) {
      const bool several = credentials_source_.starts_with("none of ");
      return PermissionDeniedError("registry " + registry_ + " requires credentials and " +
                                   credentials_source_ +
                                   (several ? " holds any for it" : " has none for it"));
    }
    std::lock_guard lock(mu_);
    authorization_ =
        "Basic " + Base64Encode(credentials_->username + ":" + credentials_->password);
    return Status::Ok();
  }
  return UnimplementedError("registry " + registry_ + ": unsupported authentication scheme \"" +
                            c.scheme + "\"");
}

Status RegistryClient::FetchToken(const std::string& realm, const std::string& service,
                                  const std::string& scope) {
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (!service.empty()) url += "service=" + UrlEscape(service) + "&";
  url += "scope=" + UrlEscape(scope);
  HttpRequest request;
  request.url = url;
  request.peer = "token service " + OriginOf(realm) + " for registry " + registry_;
  request.max_body = kMaxTokenResponse;
  if (credentials_) {
    request.authorization =
        "Basic " + Base64Encode(credentials_->username + ":" + credentials_->password);
  }
  LAZYFS_ASSIGN_OR_RETURN(HttpResponse response, http_.Perform(request));
  if (response.status == 401 || response.status == 403) {
    return PermissionDeniedError(
        request.peer + ": " +
        (credentials_ ? "credentials from " + credentials_source_ + " were rejected"
                      : std::string("anonymous access denied")) +
        " (HTTP " + std::to_string(response.status) + ")");
  }
  if (response.status != 200) {
    Status s = Status(response.status >= 500 ? StatusCode::kUnavailable
                                             : StatusCode::kPermissionDenied,
                      request.peer + ": HTTP " + std::to_string(response.status));
    return s;
  }
  Json j = Json::parse(response.body, nullptr, false);
  std::string token;
  if (j.is_object()) {
    for (const char* key : {"token", "access_token"}) {
      auto it = j.find(key);
      if (it != j.end() && it->is_string() && !it->get<std::string>().empty()) {
        token = it->get<std::string>();
        break;
      }
    }
  }
  if (token.empty()) return PermissionDeniedError(request.peer + ": response holds no token");
  // The distribution spec's default lifetime is 60 s; renew a little before the end.
  long lifetime = 60;
  if (auto it = j.find("expires_in"); it != j.end() && it->is_number_integer()) {
    lifetime = std::max<long>(1, it->get<long>());
  }
  const long margin = lifetime > 30 ? 10 : 0;
  std::lock_guard lock(mu_);
  authorization_ = "Bearer " + token;
  token_expiry_ = std::chrono::steady_clock::now() + std::chrono::seconds(lifetime - margin);
  return Status::Ok();
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
  auto response = WithRetries(
      what, [&] { return Request(request, "/v2/" + repository_ + "/manifests/" + reference); });
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

namespace {

bool RetryableHttpStatus(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

// The first byte position of a "Content-Range: bytes FIRST-LAST/TOTAL" header.
std::optional<uint64_t> ContentRangeStart(const std::string& value) {
  if (!value.starts_with("bytes ")) return std::nullopt;
  uint64_t first = 0;
  size_t i = 6;
  if (i >= value.size() || !std::isdigit(static_cast<unsigned char>(value[i]))) return std::nullopt;
  for (; i < value.size() && std::isdigit(static_cast<unsigned char>(value[i])); ++i) {
    if (first > (UINT64_MAX - 9) / 10) return std::nullopt;
    first = first * 10 + static_cast<uint64_t>(value[i] - '0');
  }
  if (i >= value.size() || value[i] != '-') return std::nullopt;
  return first;
}

}  // namespace

Result<HttpResponse> RegistryClient::WithRetries(
    const std::string& what, const std::function<Result<HttpResponse>()>& attempt,
    const Status* permanent) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(options_.retry_deadline_s);
  const int attempts = std::max(1, options_.max_attempts);
  long delay_ms = std::max<long>(1, options_.retry_initial_delay_ms);
  thread_local std::minstd_rand jitter(std::random_device{}());
  for (int n = 1;; ++n) {
    Result<HttpResponse> outcome = attempt();
    long wait_ms;
    if (!outcome.ok()) {
      if (outcome.status().code() != StatusCode::kUnavailable) return outcome;
      if (permanent && !permanent->ok()) return outcome;
    } else if (!RetryableHttpStatus(outcome->status)) {
      return outcome;
    }
    // Backoff with jitter, so that many clients thrown off together do not return together.
    wait_ms = delay_ms / 2 + static_cast<long>(jitter() % static_cast<unsigned long>(delay_ms / 2 + 1));
    delay_ms = std::min(delay_ms * 2, std::max<long>(1, options_.retry_max_delay_ms));
    if (outcome.ok()) {
      if (auto after = ParseRetryAfter(outcome->Header("retry-after"))) wait_ms = *after * 1000;
    }
    const bool out_of_time = Clock::now() + std::chrono::milliseconds(wait_ms) > deadline;
    if (n >= attempts || out_of_time) {
      if (outcome.ok() || n == 1) return outcome;  // HTTP statuses get their message from the caller
      return outcome.status().WithContext(
          Describe() + ": " + what + ": gave up after " + std::to_string(n) + " attempts" +
          (out_of_time && n < attempts ? " (retry deadline reached)" : ""));
    }
    static StatCounter& retries = Counter(kStatFetchRetries);
    retries.Add();
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  }
}

Result<HttpResponse> RegistryClient::GetStreamed(
    const std::string& path, const std::string& what, uint64_t offset, uint64_t length,
    const std::function<Status(std::string_view)>& sink) {
  uint64_t delivered = 0;  // bytes the sink has taken, over all attempts
  Status sink_failure;
  auto attempt = [&]() -> Result<HttpResponse> {
    const uint64_t first = offset + delivered;
    uint64_t skip = 0;  // bytes of a full (200) answer to a range request that we already have
    uint64_t left = length ? length - delivered : UINT64_MAX;
    HttpRequest request;
    if (first > 0 || length > 0) {
      request.headers.push_back("Range: bytes=" + std::to_string(first) + "-" +
                                (length ? std::to_string(offset + length - 1) : std::string()));
    }
    request.on_start = [&](const HttpResponse& r) -> Status {
      if (r.status == 206) {
        const auto start = ContentRangeStart(r.Header("content-range"));
        if (start != first) {
          return sink_failure = DataLossError(what + ": asked for bytes from " +
                                              std::to_string(first) + ", got Content-Range \"" +
                                              r.Header("content-range") + "\"");
        }
      } else {
        skip = first;  // the server ignored the Range header and sends the whole blob
      }
      return Status::Ok();
    };
    request.on_body = [&](std::string_view chunk) -> Status {
      const size_t drop = static_cast<size_t>(std::min<uint64_t>(skip, chunk.size()));
      chunk.remove_prefix(drop);
      skip -= drop;
      if (chunk.size() > left) chunk = chunk.substr(0, static_cast<size_t>(left));
      if (chunk.empty()) return Status::Ok();
      if (Status s = sink(chunk); !s.ok()) return sink_failure = std::move(s);
      delivered += chunk.size();
      left -= chunk.size();
      return Status::Ok();
    };
    return Request(std::move(request), path);
  };
  LAZYFS_ASSIGN_OR_RETURN(HttpResponse response, WithRetries(what, attempt, &sink_failure));
  // Asking for bytes past the end (a resume after the last byte arrived, a range read at the
  // end): nothing more to deliver.
  if (response.status == 416 && (delivered > 0 || offset > 0)) response.status = 206;
  return response;
}

Status RegistryClient::GetBlob(const Digest& digest,
                               const std::function<Status(std::string_view)>& sink) {
  const std::string what = "blob " + digest.ToString();
  LAZYFS_ASSIGN_OR_RETURN(
      HttpResponse response,
      GetStreamed("/v2/" + repository_ + "/blobs/" + digest.ToString(), what, 0, 0, sink));
  if (response.status != 200 && response.status != 206) return ErrorFor(response, what);
  return Status::Ok();
}

Result<uint64_t> RegistryClient::BlobSize(const Digest& digest) {
  const std::string what = "blob " + digest.ToString();
  HttpRequest request;
  request.method = "HEAD";
  LAZYFS_ASSIGN_OR_RETURN(
      HttpResponse response,
      WithRetries(what, [&] {
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
                                            std::span<std::byte> out) {
  if (out.empty()) return size_t{0};
  const std::string what = "blob " + digest.ToString() + " bytes " + std::to_string(offset) +
                           "+" + std::to_string(out.size());
  size_t got = 0;
  LAZYFS_ASSIGN_OR_RETURN(
      HttpResponse response,
      GetStreamed("/v2/" + repository_ + "/blobs/" + digest.ToString(), what, offset, out.size(),
                  [&](std::string_view chunk) -> Status {
                    std::memcpy(out.data() + got, chunk.data(), chunk.size());
                    got += chunk.size();
                    return Status::Ok();
                  }));
  if (response.status != 200 && response.status != 206) return ErrorFor(response, what);
  return got;
}

}  // namespace lazyfs::fetch
