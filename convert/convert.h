// convert: freezes an index::Tree into an ext4 image with libext2fs, and reads one back.
//
// No staging directory, no mkfs -d, no root: inodes are written straight into the image file
// from the tree, with the tar headers' owners, modes, times, devices and xattrs, so nothing from
// the image ever touches a host path. The image is written to a temporary name and renamed into
// place only when complete. The pipeline around the writer (additions, seed, dm-verity, the
// sidecar) and its way back (`lazyfs verify`: the image read as a Tree, compared by index's
// differ) live here too, so cli/ only parses options and prints.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/digest.h"
#include "base/image.h"
#include "base/status.h"
#include "index/tree.h"

namespace lazyfs::convert {

struct Ext4Options {
  // Permission bits of the image file and its verity tree, exactly (the umask does not apply to
  // an explicit choice). The image holds the image's root-only files (an /etc/shadow) readable
  // by anyone who can read the file, so by default only its owner may.
  mode_t file_mode = 0600;
  // Image size in bytes; 0 sizes it from the tree (content + metadata + journal + free space).
  uint64_t size_bytes = 0;
  // Free space left over when sizing automatically, as a fraction of the content.
  double free_fraction = 0.2;
  std::string label;
  // Time used for the filesystem's own timestamps (superblock, lost+found, the journal);
  // SOURCE_DATE_EPOCH style. Unset: the newest mtime in the tree (0 for a tree with none), so
  // the image never depends on the clock.
  std::optional<int64_t> fs_time;
  // For images only ever mounted read-only: no journal, no free space or spare inodes beyond a
  // minimal margin (free_fraction is ignored).
  bool read_only = false;
  // Seed of the filesystem UUID and directory hash seed. Empty: derived from a sha256 of the
  // whole tree (names, inode facts, content digests), so the same tree gives the same image.
  std::string seed;
  // Threads reading and hashing file content ahead of the one thread that writes the image
  // (fetches of uncached content then run in parallel). 0: the hardware threads, at least 4 (a
  // reader waiting on the network needs no core) and at most 8; 1: no readers, the writer
  // reads each file itself. The image is the same for any value.
  unsigned read_threads = 0;
  // Content read ahead and not yet written, at most (plus one 4 MiB piece of the file being
  // written, so a file larger than this streams through).
  uint64_t read_window_bytes = uint64_t{64} << 20;
};

struct Ext4Report {
  uint64_t image_bytes = 0;   // size of out.img
  uint64_t inodes = 0;
  uint64_t data_bytes = 0;    // file content written
  uint64_t free_bytes = 0;    // free space left in the filesystem
  std::string uuid;           // filesystem UUID, "xxxxxxxx-xxxx-..." (for root=UUID=...)
};

// Writes `tree` as an ext4 image at out_path (through a temporary sibling renamed into place; no
// file is left behind on failure). Fails with ResourceExhausted when an explicit size is too
// small ("tree needs N bytes, --size gives M"), DataLoss when content does not match its digest
// or ends early, InvalidArgument for what ext4 cannot hold (a bad name, a hardlinked directory,
// an empty or >4095-byte symlink target, a label over 16 bytes), the tree's own errors, and
// Internal for libext2fs failures; messages name the path involved. `progress` (may be empty)
// gets stage "write" with content bytes done/total.
Result<Ext4Report> WriteExt4(const index::Tree& tree, const std::string& out_path,
                             const Ext4Options& options, const ProgressFn& progress);

// The ext4 image at image_path as a read-only Tree (libext2fs, no mount, no root): tree inode
// t is ext4 inode t + 1, ContentDigest hashes the file's bytes as the image holds them, Read
// reads them. Thread-safe (one lock around libext2fs). Fails when the file is not ext4.
Result<std::unique_ptr<index::Tree>> OpenExt4Tree(const std::string& image_path);

// Compares the ext4 image at image_path with `tree` (index::DiffTrees over OpenExt4Tree): names,
// types, modes, owners, sizes, mtimes, devices, link counts, symlink targets, xattrs and each
// regular file's sha256 against tree.ContentDigest (tree content is not read). Returns one line
// per difference ("/etc/passwd: content sha256:.. in the image, sha256:.. in the index"), at
// most max_diffs; empty when they agree. The /lost+found the writer adds is not a difference.
// Fails when the image cannot be read as ext4 or the tree fails.
Result<std::vector<std::string>> CompareExt4(const index::Tree& tree,
                                             const std::string& image_path, size_t max_diffs);

// ----- dm-verity ------------------------------------------------------------------------------
//
// A dm-verity hash tree as `veritysetup format` writes it (format version 1, sha256, 4096-byte
// data and hash blocks, a salt, with the 512-byte superblock), so `veritysetup verify/open
// DATA HASH ROOT` accepts it; `--hash-offset` when it is appended to the data file.

struct VerityReport {
  std::string root_hash;     // hex
  std::string salt;          // hex
  uint64_t data_bytes = 0;   // bytes of data covered (data_blocks * 4096)
  uint64_t data_blocks = 0;
  uint64_t hash_offset = 0;  // where the superblock starts in the hash file
  uint64_t hash_bytes = 0;   // superblock block + hash levels
};

// The salt for a seed (the manifest digest): sha256("lazyfs verity salt\n" + seed), 32 bytes.
std::string VeritySalt(std::string_view seed);

// Hashes the first data_bytes (a multiple of 4096) of data_path and writes superblock and tree
// to hash_path at hash_offset (a multiple of 4096; the file is created 0600 if absent and cut
// after the tree). hash_path may be data_path itself (hash_offset >= data_bytes). Fails with
// InvalidArgument for bad sizes, errno errors naming the file. `progress` gets stage "verity".
Result<VerityReport> WriteVerity(const std::string& data_path, uint64_t data_bytes,
                                 const std::string& hash_path, uint64_t hash_offset,
                                 const std::string& salt, const ProgressFn& progress);

struct VerityCheck {
  std::string root_hash;  // recomputed from the data, hex
  std::string salt;       // from the superblock, hex
  uint64_t data_blocks = 0;
  // Data block ranges [first, end) whose digest differs from the stored bottom level.
  std::vector<std::pair<uint64_t, uint64_t>> bad_ranges;
};

// Recomputes the tree of data_path with the parameters of the superblock at hash_offset in
// hash_path and compares its bottom level with the stored one. The caller compares root_hash
// with the one it trusts. DataLoss when there is no valid superblock or a file is short.
Result<VerityCheck> CheckVerity(const std::string& data_path, const std::string& hash_path,
                                uint64_t hash_offset, const ProgressFn& progress);

// ----- The materialize pipeline -----------------------------------------------------------------
//
// A plan (the image's tree, additions, seed inputs, verity mode, ext4 options, output path) ->
// ext4 -> dm-verity -> the sidecar OUT.json, written last so it exists only for a finished image;
// and the way back: `lazyfs verify` checks an image against its sidecar and, given the tree
// again, every file against it.

enum class VerityMode {
  kSeparate,  // OUT.verity beside the image
  kAppend,    // after the filesystem in OUT itself, at a 4096-aligned offset
  kNone,
};

struct MaterializePlan {
  const index::Tree* tree = nullptr;  // the image's merged tree (borrowed)
  std::string source;                 // the reference as resolved, for the sidecar
  Digest manifest;                    // seeds the UUID, hash seed and verity salt
  // --add-tar files, then --add files. Materialize fills in files_mtime and the tars' sha256.
  index::TreeAdditions additions;
  // SOURCE_DATE_EPOCH: the filesystem's own times and the added files' mtime; unset: the
  // tree's newest mtime for the former, the root mtime of the tree below the files (the image
  // with its tars) for the latter.
  std::optional<int64_t> source_date_epoch;
  VerityMode verity = VerityMode::kSeparate;
  Ext4Options ext4;  // size, label, free space, layout; seed and fs_time are set from the above
  std::string out_path;
};

struct MaterializeReport {
  Ext4Report ext4;
  std::optional<VerityReport> verity;  // unless VerityMode::kNone
  std::string hash_path;               // where the verity tree went
};

// Runs the plan. The same plan gives the same three files byte for byte. On failure nothing is
// left at out_path, OUT.verity or OUT.json (a sidecar of an earlier run is removed first). Errors
// of an added tar carry "--add-tar"; the rest as WriteExt4, WriteVerity and the additions say.
// `progress` gets stages "write" and "verity".
Result<MaterializeReport> Materialize(MaterializePlan& plan, const ProgressFn& progress);

// What `lazyfs verify` found: lines to print (each naming the image or a file in it), and how
// many of them are problems (the rest say what matched).
struct VerifyFindings {
  std::vector<std::string> lines;
  size_t problems = 0;
};

// Checks the image at image_path against its sidecar (image_path + ".json"): its size, and the
// dm-verity root hash recomputed from its bytes (the stored bottom level names the data blocks
// that changed). Fails when the sidecar cannot be read or lacks a field it needs, naming it.
Result<VerifyFindings> VerifyImage(const std::string& image_path, const ProgressFn& progress);

// Compares every file of the image with `tree` (the image `ref` resolved to `manifest`) after
// applying the additions the sidecar records: `add_tars` must be the tars the image was made
// with, in order (the sidecar holds only their digests), the --add files are rebuilt from the
// sidecar. Fails when they cannot be applied (naming what the sidecar records).
Result<VerifyFindings> VerifyFiles(const std::string& image_path, const index::Tree& tree,
                                   const std::string& ref, const Digest& manifest,
                                   const std::vector<std::string>& add_tars);

}  // namespace lazyfs::convert
