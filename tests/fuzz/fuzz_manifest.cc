// libFuzzer target: manifest, image index and image config parsing (untrusted registry bytes).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fetch/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  // Every content type a registry may send, and none (sniffed from the body).
  for (std::string_view type : {"", "application/vnd.oci.image.manifest.v1+json",
                                "application/vnd.oci.image.index.v1+json",
                                "application/vnd.docker.distribution.manifest.v2+json",
                                "application/vnd.docker.distribution.manifest.list.v2+json"}) {
    auto m = lazyfs::fetch::ParseManifest(raw, type);
    if (m.ok()) {
      lazyfs::fetch::Platform want;
      want.architecture = "amd64";
      (void)lazyfs::fetch::SelectPlatform(*m, want);
    }
  }
  (void)lazyfs::fetch::ParseImageConfig(raw);
  return 0;
}
