// More layers on top of an existing tree: layer tars given by the user (`materialize --add-tar`)
// applied over an image's merged tree with exactly the rules of the image's own layers.
//
// The base tree is replayed as one layer of entries (hardlinks as hardlink entries) below the
// tars, and MergeLayers (merge.h) does the rest, so whiteouts, opaque directories, replacement
// and hardlinks behave as they do for image layers, and the tars' names go through the same
// LayerReader checks (a "../" name fails the same way). Base file content is read from the base
// tree; the tars' file content is held in memory (these are small: agents, units, keys).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "index/layer_reader.h"
#include "index/tree.h"

namespace lazyfs::index {

struct OverlayTar {
  std::string path;  // a tar file, plain or gzip/zstd compressed (told apart by magic bytes)
  Digest sha256;     // filled in: sha256 of the uncompressed tar (the file's, for a plain tar)
};

// What the CLI lets one added tar hold in memory (uncompressed stream and file content).
inline constexpr uint64_t kAddedTarMaxBytes = uint64_t{1} << 30;

// `base` with the tars applied in order as layers on top. The result borrows `base`. Errors name
// the tar ("FILE.tar: entry \"../x\": ..."); nothing is returned for a bad tar. `options` caps
// each tar (entries, xattr bytes, uncompressed bytes); max_uncompressed_bytes also caps the file
// content held per tar, sparse holes included (ResourceExhausted).
Result<std::unique_ptr<Tree>> WithLayerTars(const Tree& base, std::vector<OverlayTar>& tars,
                                            const LayerReadOptions& options);

}  // namespace lazyfs::index
