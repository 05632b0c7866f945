// More layers on top of an existing tree: what `materialize --add-tar` and `--add` put over an
// image's merged tree, applied with exactly the rules of the image's own layers.
//
// The base tree is replayed as one layer of entries (hardlinks as hardlink entries) below the
// added layers, and MergeLayers (merge.h) does the rest, so whiteouts, opaque directories,
// replacement, hardlinks and link counts behave as they do for image layers, and the tars' names
// go through the same LayerReader checks (a "../" name fails the same way). Base file content is
// read from the base tree; the added content is held in memory (these are small: agents, units,
// keys). WithAdditions (tree.h) stacks the tars, then the files, with these two.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/status.h"
#include "index/layer_reader.h"
#include "index/tree.h"

namespace lazyfs::index {

// `base` with the tars applied in order as layers on top, inode numbers dense in sorted
// depth-first order. The result borrows `base`. Errors name the tar ("FILE.tar: entry \"../x\":
// ..."); nothing is returned for a bad tar. `options` caps each tar (entries, xattr bytes,
// uncompressed bytes); max_uncompressed_bytes also caps the file content held per tar, sparse
// holes included (ResourceExhausted).
Result<std::unique_ptr<Tree>> WithLayerTars(const Tree& base, std::vector<AddedTar>& tars,
                                            const LayerReadOptions& options);

// `base` with `files` applied on top as one layer (AddedFile says how), the files and the
// directories made for them with mtime `mtime`. Inodes of `base` keep their numbers; the new
// ones are numbered after base.Stats().inodes in the order the files create them. Fails with
// InvalidArgument naming the guest path for a bad path or a directory in the way.
Result<std::unique_ptr<Tree>> WithGuestFiles(const Tree& base, const std::vector<AddedFile>& files,
                                             int64_t mtime);

}  // namespace lazyfs::index
