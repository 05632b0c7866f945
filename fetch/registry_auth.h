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

}  // namespace lazyfs::fetch
