// libFuzzer target: what a registry and its token service say about authentication (untrusted
// bytes): a WWW-Authenticate challenge, the realm it names against the credentials rule, and a
// token answer, whose lifetime must always land within its bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fetch/registry_auth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  lazyfs::fetch::Challenge challenge = lazyfs::fetch::ParseChallenge(raw);
  if (auto realm = challenge.params.find("realm"); realm != challenge.params.end()) {
    for (std::string_view registry : {"reg.example", "127.0.0.1:5000", "[::1]:5000"}) {
      (void)lazyfs::fetch::RealmMayReceiveCredentials(realm->second, registry, "https");
    }
  }
  auto grant = lazyfs::fetch::ParseTokenResponse(raw, "fuzz");
  if (grant.ok() && (grant->lifetime.count() < 1 || grant->lifetime.count() > 3600)) std::abort();
  return 0;
}
