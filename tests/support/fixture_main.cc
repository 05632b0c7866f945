// lazyfs-fixture SPEC.json OUT_LAYOUT_DIR TAG: builds the image a JSON spec describes (the format
// of packaging/tour/busybox.json, see ParseImageSpecJson) into an OCI image layout, tagged TAG,
// and prints its manifest digest. Exit status: 0 done, 1 a bad spec or a failed write, 2 usage.
#include <cstdio>
#include <exception>
#include <string>

#include "base/fd.h"
#include "tests/support/image_builder.h"

namespace {

int Run(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: lazyfs-fixture SPEC.json OUT_LAYOUT_DIR TAG\n");
    return 2;
  }
  const std::string spec_path = argv[1];
  const std::string layout = argv[2];
  const std::string tag = argv[3];
  if (tag.empty()) {
    std::fprintf(stderr, "lazyfs-fixture: TAG must not be empty\n");
    return 2;
  }
  auto text = lazyfs::ReadFileToString(spec_path);
  if (!text.ok()) {
    std::fprintf(stderr, "lazyfs-fixture: %s\n", text.status().ToString().c_str());
    return 1;
  }
  size_t slash = spec_path.rfind('/');
  // Relative "from" paths are relative to the spec's directory.
  const std::string base_dir = slash == std::string::npos ? std::string(".")
                               : slash == 0               ? std::string("/")
                                                          : spec_path.substr(0, slash);
  auto spec = lazyfs::testing::ParseImageSpecJson(*text, base_dir);
  if (!spec.ok()) {
    std::fprintf(stderr, "lazyfs-fixture: %s: %s\n", spec_path.c_str(),
                 spec.status().ToString().c_str());
    return 1;
  }
  auto digest = lazyfs::testing::WriteOciLayout(*spec, layout, tag);
  if (!digest.ok()) {
    std::fprintf(stderr, "lazyfs-fixture: writing %s: %s\n", layout.c_str(),
                 digest.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", digest->ToString().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lazyfs-fixture: %s\n", e.what());
    return 1;
  }
}
