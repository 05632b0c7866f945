// The sidecar OUT.json beside a materialized image: what it was made from, the image's identity
// and the dm-verity parameters. Written by Materialize and read by VerifyImage/VerifyFiles here
// and nowhere else, so the two cannot drift apart. Private to convert/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace lazyfs::convert {

struct Sidecar {
  std::string lazyfs_version;
  std::string source;           // the reference as resolved
  std::string manifest_digest;  // "sha256:..."
  struct Image {
    std::string file;  // base name of the image
    uint64_t size = 0;
    std::string uuid;
    std::string label;
    bool read_only_layout = false;
    uint64_t inodes = 0;
    uint64_t content_bytes = 0;
  } image;
  struct Tar {
    std::string file;    // as given on the command line
    std::string sha256;  // of the uncompressed tar
  };
  std::vector<Tar> added_tars;
  struct File {
    std::string guest_path;
    std::string sha256;
    uint64_t size = 0;
    uint32_t uid = 0, gid = 0;
    uint32_t mode = 0;  // permission bits; "0644" in the JSON
  };
  std::vector<File> additions;
  std::optional<int64_t> additions_mtime;  // absent in sidecars of older versions
  struct Verity {
    uint64_t data_size = 0;
    uint64_t data_blocks = 0;
    std::string hash_file;  // base name, beside the image
    uint64_t hash_offset = 0;
    uint64_t hash_size = 0;
    std::string salt;  // hex
    std::string root_hash;
  };
  std::optional<Verity> verity;
};

// The additions as the sidecar writes them, compact: what the seed of an image with --add files
// hashes, so the same files give the same UUID.
std::string AdditionsJson(const std::vector<Sidecar::File>& files);

// Writes path atomically (a temporary sibling renamed into place).
Status WriteSidecar(const std::string& path, const Sidecar& sidecar);

// Reads path. Fails with InvalidArgument naming the file and the field that is missing or bad.
Result<Sidecar> ReadSidecar(const std::string& path);

}  // namespace lazyfs::convert
