// The pure parts of the registry's authentication dance (registry_auth.cc): reading a 401's
// challenge, reading a token service's answer, and deciding where the user's basic credentials
// may go. No I/O, so they are unit-tested and fuzzed alone.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>

#include "base/status.h"

namespace lazyfs::fetch {

// One challenge of a WWW-Authenticate header: the scheme and its parameters.
struct Challenge {
  std::string scheme;  // lower-cased
  std::map<std::string, std::string> params;  // keys lower-cased
};

// Parses `Bearer realm="...",service="...",scope="..."` (the first challenge only). Never fails:
// what does not parse is left out.
Challenge ParseChallenge(std::string_view header);

// What a token service granted.
struct TokenGrant {
  std::string token;
  // How long it may be used: what the service states ("expires_in") within [1 s, 1 h]; 60 s
  // when it states none or nonsense.
  std::chrono::seconds lifetime{60};
};

// Parses a token service's JSON answer ({"token":..} or {"access_token":..}, "expires_in").
// Fails with PermissionDenied "PEER: response holds no token".
Result<TokenGrant> ParseTokenResponse(std::string_view body, const std::string& peer);

// Whether the user's basic credentials for the registry spoken to at `registry` (host[:port],
// over `registry_scheme`, "https" or "http") may go with a token request to `realm` (the URL a
// Bearer challenge names). Only where they cannot leak: the registry's own host over HTTPS (or
// over plain HTTP when the registry itself is spoken to that way), a loopback realm of a
// loopback registry (this machine to itself), and Docker Hub's token service (auth.docker.io over
// HTTPS) for Docker Hub. Never in plain HTTP to another host, never to another host at all; a
// remote registry that names a loopback realm would hand them to whatever listens on that port.
bool RealmMayReceiveCredentials(const std::string& realm, std::string_view registry,
                                std::string_view registry_scheme);

// The host of "host[:port]" or "[v6]:port", lower-cased, without brackets.
std::string HostOnly(std::string_view host_port);

}  // namespace lazyfs::fetch
