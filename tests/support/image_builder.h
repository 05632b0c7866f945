// Declarative test images: layers of entries -> tar -> tar.gz / tar.zst -> OCI image layout, and
// the merged listing the OCI image spec says those layers produce.
//
// Tests describe an image as data (an ImageSpec of Layers of Entries), build real layer tars with
// libarchive (pax, GNU or ustar headers), compress them, and write a standard OCI layout that
// skopeo, a registry push or lazyfs's `oci:` transport can read. ExpectedListing is the oracle: it
// applies the same spec layer by layer with the plain rules of the OCI image spec (whiteouts,
// opaque directories, replacement, hardlinks) and shares no code with index/, so a disagreement
// between it and a mount is a finding, not a tautology.
//
// Hostile inputs: Raw() entries keep their tar name verbatim ("../etc/passwd", "/abs",
// "a//b"), and Layer::raw_blob puts arbitrary bytes (a truncated or mangled tar, a bomb) in place
// of a built layer.
//
// All functions are thread-safe (no shared state). Nothing here throws.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "tests/support/listing.h"

namespace lazyfs::testing {

// ----- Entries ------------------------------------------------------------------------------

enum class EntryType {
  kFile,
  kDir,
  kSymlink,
  kHardlink,
  kCharDev,
  kBlockDev,
  kFifo,
  kWhiteout,  // written as an empty regular file "dir/.wh.name"; path is the deleted path
  kOpaque,    // written as an empty regular file "dir/.wh..wh..opq"; path is the directory
};

inline constexpr int64_t kDefaultMtime = 1700000000;  // 2023-11-14T22:13:20Z

struct Entry {
  EntryType type = EntryType::kFile;
  // Relative path inside the image, "etc/passwd" (for kOpaque: the directory). Written as is,
  // except that directories get a trailing '/'. "" or "." means the root directory (kDir only).
  std::string path{};
  std::string data{};    // regular file content
  std::string target{};  // symlink target, or the path of the hardlink's target ("bin/busybox")
  // Permission bits including setuid/setgid/sticky (07777). 0 = default: 0644 files, whiteouts,
  // devices and fifos; 0755 dirs; 0777 symlinks.
  uint32_t mode = 0;
  uint32_t uid = 0, gid = 0;
  int64_t mtime = kDefaultMtime;
  uint32_t major = 0, minor = 0;                // kCharDev / kBlockDev
  std::map<std::string, std::string> xattrs{};  // SCHILY.xattr.* pax records (kPax only)
  // Write `path` (and `target` for hardlinks) into the tar header exactly as given: no trailing
  // '/' for directories, no ".wh." prefixes (kWhiteout/kOpaque then behave like kFile). For
  // hostile inputs; see Raw().
  bool raw_name = false;
  // kFile: a sparse file of this apparent size (written as a PAX sparse 1.0 entry) holding
  // `sparse_data` (offset -> bytes, in order, not overlapping) and holes elsewhere; `data` is
  // unused. Holes cost nothing to write, so the size may be hundreds of GiB.
  uint64_t sparse_size = 0;
  std::map<uint64_t, std::string> sparse_data{};
};

Entry File(std::string path, std::string data, uint32_t mode = 0, uint32_t uid = 0,
           uint32_t gid = 0);
Entry SparseFile(std::string path, uint64_t size, std::map<uint64_t, std::string> data,
                 uint32_t mode = 0);
Entry Dir(std::string path, uint32_t mode = 0, uint32_t uid = 0, uint32_t gid = 0);
Entry Symlink(std::string path, std::string target, uint32_t uid = 0, uint32_t gid = 0);
// A hardlink named `path` to the earlier entry `target` (same or lower layer).
Entry Hardlink(std::string path, std::string target);
Entry CharDev(std::string path, uint32_t major, uint32_t minor, uint32_t mode = 0);
Entry BlockDev(std::string path, uint32_t major, uint32_t minor, uint32_t mode = 0);
Entry Fifo(std::string path, uint32_t mode = 0);
// Deletes `path` (and everything below it) from the lower layers: writes "dir/.wh.name".
Entry Whiteout(std::string path);
// Hides everything below directory `dir` that comes from lower layers: writes
// "dir/.wh..wh..opq".
Entry Opaque(std::string dir);
// An entry whose tar name is `exact_tar_name` byte for byte ("../etc/passwd", "/abs", "a/../b",
// "", a 5000-byte name). For kHardlink, `target` is written verbatim too.
Entry Raw(std::string exact_tar_name, EntryType type = EntryType::kFile, std::string data = "",
          std::string target = "");

// ----- Layer tars and compression -----------------------------------------------------------

// kPaxLibarchiveXattrs: pax with xattrs as LIBARCHIVE.xattr.* records (bsdtar's spelling)
// instead of SCHILY.xattr.* (docker's, GNU tar's).
enum class TarFormat { kPax, kGnu, kUstar, kPaxLibarchiveXattrs };

// Builds an uncompressed layer tar with libarchive (uname/gname empty, end-of-archive blocks
// included). Fails with InvalidArgument for an entry the format cannot carry (xattrs outside
// kPax, a name too long for ustar) or a bad entry (a hardlink without target, "" path for a
// non-directory).
Result<std::string> BuildLayerTar(const std::vector<Entry>& entries,
                                  TarFormat format = TarFormat::kPax);

enum class Compression { kNone, kGzip, kZstd };

// gzip (one member, zlib deflate, level 6) or zstd (one frame, level 3, content size recorded).
Result<std::string> Compress(std::string_view tar, Compression compression);
// The inverse; accepts multi-member gzip and multi-frame zstd. Fails with DataLoss on corrupt or
// truncated input, ResourceExhausted past max_output bytes.
Result<std::string> Decompress(std::string_view blob, Compression compression,
                               uint64_t max_output = uint64_t{1} << 32);

// "application/vnd.oci.image.layer.v1.tar", "...tar+gzip", "...tar+zstd".
std::string LayerMediaType(Compression compression);

// ----- Images ---------------------------------------------------------------------------------

struct Layer {
  std::vector<Entry> entries{};
  Compression compression = Compression::kGzip;
  TarFormat format = TarFormat::kPax;
  // Use these bytes as the layer blob instead of building one (hostile or pre-built layers).
  // `compression` still picks the media type and how the diff_id is computed (the sha256 of
  // the decompressed bytes, or of the raw bytes when they do not decompress).
  std::optional<std::string> raw_blob{};
  std::string raw_media_type{};     // non-empty: overrides the layer's media type in the manifest
  std::optional<Digest> diff_id{};  // overrides the computed rootfs.diff_ids entry
  std::map<std::string, std::string> annotations{};  // on the layer descriptor
};

// The host's architecture as GOARCH names it: "amd64", "arm64", "arm", "386", "ppc64le",
// "s390x", "riscv64".
std::string HostArchitecture();

struct ImageSpec {
  std::vector<Layer> layers{};  // bottom first
  std::string os = "linux";
  std::string architecture = HostArchitecture();
  std::string variant{};  // "v8" etc.; empty = none
  std::map<std::string, std::string> config_labels{};
};

struct BuiltLayer {
  std::string blob;  // compressed bytes as stored
  Digest digest;     // sha256 of blob
  Digest diff_id;    // sha256 of the uncompressed tar (or the override)
  std::string media_type;
};

// An image in memory, for fakes that serve blobs without a layout on disk.
struct BuiltImage {
  std::string manifest;  // raw bytes (application/vnd.oci.image.manifest.v1+json)
  Digest manifest_digest;
  std::string config;  // raw bytes (application/vnd.oci.image.config.v1+json)
  Digest config_digest;
  std::vector<BuiltLayer> layers;
};

// Builds every blob of an image. Output is deterministic: the same spec gives the same digests.
Result<BuiltImage> BuildImage(const ImageSpec& spec);

// Writes (or extends) an OCI image layout at layout_dir: oci-layout, blobs/sha256/<hex>, and
// index.json with a manifest descriptor annotated "org.opencontainers.image.ref.name": tag. A
// tag already present is re-pointed; other tags are kept. Returns the manifest digest.
Result<Digest> WriteOciLayout(const ImageSpec& spec, const std::string& layout_dir,
                              const std::string& tag);
// A multi-platform image: one manifest per (spec, "os/arch[/variant]") — the platform string
// overrides the spec's os/architecture/variant — gathered in an image index blob
// (application/vnd.oci.image.index.v1+json) that index.json points at under `tag`. Returns the
// image index digest.
Result<Digest> WriteOciLayoutIndex(const std::vector<std::pair<ImageSpec, std::string>>& platforms,
                                   const std::string& layout_dir, const std::string& tag);

// ----- The oracle -------------------------------------------------------------------------

// The merged tree the OCI image spec says these layers produce, keyed "/", "/etc/passwd".
// Rules, applied layer by layer:
// - In each layer, whiteouts (".wh.name": the path and everything below it) and opaque markers
//   (".wh..wh..opq": everything below that directory) remove entries of LOWER layers only; the
//   layer's own entries are then applied in tar order, later entries winning.
// - A non-directory replacing a directory removes its subtree; a directory replacing a
//   directory updates its metadata and keeps its children; a directory replacing a
//   non-directory replaces it.
// - Hardlinks share one node with their target (found in the merged tree so far, so a link to a
//   lower layer's file works); nlink counts the names of a node. Directory nlink = 2 + number of
//   subdirectories.
// - Parent directories missing from the tar (for any entry, whiteouts and opaque markers
//   included) are implicit: mode 0755, 0:0, mtime 0, no xattrs; an existing directory is kept
//   as is, an existing non-directory is replaced. The root is such an implicit directory unless
//   a layer has a "", "." or "./" directory entry.
// - Other ".wh..wh.*" names (AUFS metadata) are ignored.
// Tar names are interpreted after dropping a leading "./" and trailing '/'. Fails with
// InvalidArgument for a name the product must reject (absolute, "..", empty components), a
// hardlink whose target does not exist or is a directory, and Unimplemented for raw_blob layers.
Result<Listing> ExpectedListing(const ImageSpec& spec);

// ----- JSON specs (lazyfs-fixture) ---------------------------------------------------------

// Parses the JSON spec format of packaging/tour/busybox.json:
// {"layers": [{"compression": "gzip|zstd|none", "format": "pax|gnu|ustar",
//   "entries": [{"type": "file|dir|symlink|hardlink|chardev|blockdev|fifo|whiteout|opaque",
//                "path", "data", "from" (a host file whose content is the data; relative to
//                base_dir), "mode" (octal string "04755" or a number), "uid", "gid", "mtime",
//                "major", "minor", "target", "xattrs": {name: value}, "raw": bool}]}],
//  "os", "architecture", "variant", "labels": {k: v}}
// Unknown keys and bad values fail with InvalidArgument naming the place ("layers[1].entries[3]:
// unknown type \"sock\"").
Result<ImageSpec> ParseImageSpecJson(std::string_view json, const std::string& base_dir);

}  // namespace lazyfs::testing
