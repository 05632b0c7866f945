// The merge of an image's layers into one tree, as the OCI image spec's changeset rules say.
//
// Applied bottom layer first; in each layer its whiteouts and opaque markers first (they act on
// the lower layers only, wherever they stand in the tar), then its other entries in tar order:
// ".wh.NAME" removes NAME (and what is below it) from lower layers; ".wh..wh..opq" hides every
// lower-layer entry of its directory; a non-directory
// replaces whatever was at its path, a directory over a directory keeps the children; a hardlink
// shares its target's inode; parents missing from a tar are created 0755 root:root with mtime 0.
// The result gets dense inode numbers in sorted depth-first order (the root is 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "index/layer_entry.h"
#include "index/tree.h"

namespace lazyfs::index {

struct MergedInode {
  Attr attr;
  std::string link;      // symlink target
  Digest digest;         // regular files: content sha256
  uint32_t layer = 0;    // regular files: index of the layer that holds the content
  std::vector<Xattr> xattrs;
  std::vector<DirEntry> children;  // directories: sorted by name
};

struct MergedTree {
  std::vector<MergedInode> inodes;  // inodes[ino - 1]
  TreeStats stats;
};

// `layers[i]` are the entries of layer i in archive order. Errors name the layer index and the
// entry (a hardlink to a missing entry or to a directory, an entry below a non-directory of the
// same layer).
Result<MergedTree> MergeLayers(const std::vector<std::vector<LayerEntry>>& layers);
// The same over borrowed layers: a layer listed several times in a manifest is held once.
Result<MergedTree> MergeLayers(const std::vector<const std::vector<LayerEntry>*>& layers);

}  // namespace lazyfs::index
