// The registry's authentication dance (declared in registry_client.h): a 401's challenge sends
// a request to the token service (Bearer) or to the user's credentials (Basic), and the
// Authorization it earns is kept for the repository's later requests.
#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>

#include "base/text.h"
#include "fetch/registry_auth.h"
#include "fetch/registry_client.h"

namespace lazyfs::fetch {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kMaxTokenResponse = 1 << 20;

// The distribution spec's lifetime when a token service states none.
constexpr int64_t kDefaultTokenLifetime = 60;
// A token is asked for again at least this often, however long its service says it lives.
constexpr int64_t kMaxTokenLifetime = 3600;

// A token answer's "expires_in" as a number of seconds in [1, kMaxTokenLifetime]. A service
// states what it likes (1e30, INT64_MAX, -5, "3600"): it is clamped here, before any clock
// arithmetic could overflow. Short lifetimes are honoured; nonsense gets the default.
std::chrono::seconds LifetimeOf(const Json& answer) {
  auto it = answer.find("expires_in");
  if (it == answer.end() || !it->is_number()) return std::chrono::seconds(kDefaultTokenLifetime);
  // Through double: every JSON number converts without overflow, unsigned and huge ones too.
  const double stated = it->get<double>();
  if (!(stated >= 1)) return std::chrono::seconds(kDefaultTokenLifetime);  // NaN, 0, negative
  if (stated >= kMaxTokenLifetime) return std::chrono::seconds(kMaxTokenLifetime);
  return std::chrono::seconds(static_cast<int64_t>(stated));
}

}  // namespace

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

Result<TokenGrant> ParseTokenResponse(std::string_view body, const std::string& peer) {
  Json j = Json::parse(body, nullptr, false);
  TokenGrant grant;
  if (j.is_object()) {
    for (const char* key : {"token", "access_token"}) {
      auto it = j.find(key);
      if (it != j.end() && it->is_string() && !it->get<std::string>().empty()) {
        grant.token = it->get<std::string>();
        break;
      }
    }
  }
  if (grant.token.empty()) return PermissionDeniedError(peer + ": response holds no token");
  grant.lifetime = LifetimeOf(j);
  return grant;
}

std::string HostOnly(std::string_view host_port) {
  std::string host;
  if (host_port.starts_with('[')) {
    const size_t close = host_port.find(']');
    host = host_port.substr(1, close == std::string_view::npos ? close : close - 1);
  } else if (const size_t colon = host_port.find(':');
             colon != std::string_view::npos &&
             host_port.find(':', colon + 1) != std::string_view::npos) {
    host = host_port;  // more than one colon without brackets: a bare IPv6 address
  } else {
    host = host_port.substr(0, colon);
  }
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return host;
}

bool RealmMayReceiveCredentials(const std::string& realm, std::string_view registry,
                                std::string_view registry_scheme) {
  const std::string origin = OriginOf(realm);  // "scheme://host:port", or empty
  const size_t sep = origin.find("://");
  if (sep == std::string::npos) return false;
  const std::string scheme = origin.substr(0, sep);
  const std::string realm_host_port = origin.substr(sep + 3);
  if (IsLoopbackHost(realm_host_port) && IsLoopbackHost(registry)) return true;
  const std::string realm_host = HostOnly(realm_host_port);
  const std::string registry_host = HostOnly(registry);
  if (realm_host == registry_host) return scheme == "https" || scheme == registry_scheme;
  return scheme == "https" && IsDockerHub(registry_host) && realm_host == "auth.docker.io";
}

Status RegistryClient::Authenticate(const HttpResponse& response,
                                    const std::string& used_authorization,
                                    const Deadline& deadline, Access access) {
  {
    // Another thread may have authenticated while this request was in flight.
    MutexLock lock(mu_);
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
    // A push asks for what it needs: a registry's challenge may name only pull.
    std::string scope = access == Access::kPush ? "repository:" + repository_ + ":pull,push"
                        : c.params.count("scope") ? c.params["scope"]
                                                  : "repository:" + repository_ + ":pull";
    return FetchToken(realm->second, c.params["service"], scope, deadline, access);
  }
  if (c.scheme == "basic") {
    if (!credentials_) {
      const bool several = credentials_source_.starts_with("none of ");
      return PermissionDeniedError("registry " + registry_ + " requires credentials and " +
                                   credentials_source_ +
                                   (several ? " holds any for it" : " has none for it"));
    }
    MutexLock lock(mu_);
    authorization_ =
        "Basic " + Base64Encode(credentials_->username + ":" + credentials_->password);
    return Status::Ok();
  }
  return UnimplementedError("registry " + registry_ + ": unsupported authentication scheme " +
                            QuoteName(c.scheme));
}

Status RegistryClient::FetchToken(const std::string& realm, const std::string& service,
                                  const std::string& scope, const Deadline& deadline,
                                  Access access) {
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (!service.empty()) url += "service=" + UrlEscape(service) + "&";
  url += "scope=" + UrlEscape(scope);
  HttpRequest request;
  request.url = url;
  request.peer = "token service " + OriginOf(realm) + " for registry " + registry_;
  request.max_body = kMaxTokenResponse;
  request.deadline = deadline;
  // containerd and podman send the credentials to whatever realm the registry names; lazyfs
  // sends them only where they cannot leak (RealmMayReceiveCredentials). A realm elsewhere gets
  // the anonymous request those tools make when they hold no credentials, rather than an error:
  // a public image still pulls, and a private one fails saying the credentials were withheld.
  std::string scheme;
  {
    MutexLock lock(mu_);
    scheme = scheme_;
  }
  const bool send = credentials_ && RealmMayReceiveCredentials(realm, endpoint_, scheme);
  if (send) {
    request.authorization =
        "Basic " + Base64Encode(credentials_->username + ":" + credentials_->password);
  }
  const std::string withheld =
      credentials_ && !send ? "credentials from " + credentials_source_ +
                                  " were not sent to the token service at " + OriginOf(realm) +
                                  ": it is not " + endpoint_ + " over HTTPS"
                            : std::string();
  {
    MutexLock lock(mu_);
    withheld_ = withheld;
  }
  LAZYFS_ASSIGN_OR_RETURN(HttpResponse response, http_.Perform(request));
  if (response.status == 401 || response.status == 403) {
    return PermissionDeniedError(
        request.peer + ": " +
        (send ? "credentials from " + credentials_source_ + " were rejected"
              : "anonymous access denied" + (withheld.empty() ? "" : " (" + withheld + ")")) +
        " (HTTP " + std::to_string(response.status) + ")");
  }
  if (response.status != 200) {
    Status s = Status(response.status >= 500 ? StatusCode::kUnavailable
                                             : StatusCode::kPermissionDenied,
                      request.peer + ": HTTP " + std::to_string(response.status));
    return s;
  }
  LAZYFS_ASSIGN_OR_RETURN(TokenGrant grant, ParseTokenResponse(response.body, request.peer));
  // Renew a little before the end.
  const long lifetime = static_cast<long>(grant.lifetime.count());
  const long margin = lifetime > 30 ? 10 : 0;
  MutexLock lock(mu_);
  authorization_ = "Bearer " + grant.token;
  token_pushes_ = access == Access::kPush;
  token_expiry_ = std::chrono::steady_clock::now() + std::chrono::seconds(lifetime - margin);
  return Status::Ok();
}

}  // namespace lazyfs::fetch
