// lazyfs-push LAYOUT_DIR LAYOUT_TAG HOST REPO:TAG
// Pushes an image from an OCI layout to a registry (used by the tour and benchmarks, which start
// their own registry on 127.0.0.1).
#include <cstdio>
#include <string>

#include "tests/support/registry.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: lazyfs-push LAYOUT_DIR LAYOUT_TAG HOST REPO:TAG\n");
    return 2;
  }
  std::string target = argv[4];
  size_t colon = target.rfind(':');
  if (colon == std::string::npos || target.find('/', colon) != std::string::npos) {
    std::fprintf(stderr, "lazyfs-push: error: target \"%s\" needs a :TAG\n", target.c_str());
    return 2;
  }
  lazyfs::Status s = lazyfs::testing::PushOciLayout(argv[1], argv[2], argv[3],
                                                    target.substr(0, colon),
                                                    target.substr(colon + 1));
  if (!s.ok()) {
    std::fprintf(stderr, "lazyfs-push: error: %s\n", s.message().c_str());
    return 1;
  }
  return 0;
}
