// index: layers indexed once, merged into a read-only tree, stored in RocksDB.
//
// The one idea: everything a filesystem needs to answer lookup, getattr, readdir, readlink and
// xattrs is computed once per image from the layer tar headers (whiteouts and opaque directories
// applied as the OCI image spec says) and kept in RocksDB under the manifest digest, so mounting
// an image again reads nothing from the registry. File contents are not stored in the index: a
// read goes to a content cache keyed by the file's (or 1 MiB chunk's) sha256 and, on a miss, to
// the layer bytes through a BlobSource: one range request from the decompression checkpoint
// before the bytes needed, every chunk checked against the digest recorded while indexing. Both fs/ (FUSE) and convert/ (ext4) read the same Tree.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/cas_dir.h"
#include "base/digest.h"
#include "base/image.h"
#include "base/status.h"
#include "base/store_layout.h"
#include "index/sparse.h"

namespace lazyfs::index {

// Inode numbers are dense, 1..Stats().inodes, assigned in sorted depth-first order; 1 is the root.
inline constexpr uint64_t kRootIno = 1;

// The times lazyfs presents and writes: ext4's range (signed 32-bit seconds and two epoch bits),
// 1901-12-13T20:45:52Z .. 2446-05-10T22:38:55Z, with nanoseconds up to 999999999. A tar header
// or a TOC may record any int64 of seconds; the tree keeps what it records, and every output
// (FUSE attributes, ls/stat, ext4 inodes, diff --times) clamps to this range, so none of them
// overflows a conversion and the mount, the listing and the materialized image agree.
inline constexpr int64_t kMinTimeSec = -(int64_t{1} << 31);
inline constexpr int64_t kMaxTimeSec = (int64_t{1} << 34) - (int64_t{1} << 31) - 1;
inline constexpr uint32_t kMaxTimeNsec = 999'999'999;

struct Timestamp {
  int64_t sec = 0;
  uint32_t nsec = 0;
  bool operator==(const Timestamp&) const = default;
};

// `sec` and `nsec` clamped to the range above.
inline Timestamp ClampTime(int64_t sec, uint32_t nsec) {
  return {std::clamp(sec, kMinTimeSec, kMaxTimeSec), std::min(nsec, kMaxTimeNsec)};
}

struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;   // st_mode: type bits | setuid/setgid/sticky | permissions, as in the tar header
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;   // regular files: content size; symlinks: target length; others 0
  uint32_t nlink = 1;  // hardlink count for files; 2 + subdirectories for directories
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint32_t rdev_major = 0;  // character and block devices
  uint32_t rdev_minor = 0;

  bool is_dir() const { return S_ISDIR(mode); }
  bool is_reg() const { return S_ISREG(mode); }
  bool is_symlink() const { return S_ISLNK(mode); }
  // The mtime as every output gives it (ClampTime).
  Timestamp mtime() const { return ClampTime(mtime_sec, mtime_nsec); }
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t mode = 0;  // st_mode of the child (type bits at least)
};

struct Xattr {
  std::string name;   // full name, "user.foo", "security.capability"
  std::string value;  // raw bytes
};

struct TreeStats {
  uint64_t inodes = 0;         // == the highest inode number
  uint64_t directories = 0;
  uint64_t regular_files = 0;  // inodes, so hardlinks count once
  uint64_t content_bytes = 0;  // sum of regular file sizes (each inode once)
  uint64_t xattr_bytes = 0;
};

// A merged, read-only image tree. Thread-safe: every method may be called concurrently.
// Errors: NotFound for a missing inode or name, FailedPrecondition with ENOTDIR/EINVAL-style
// errno for the wrong file type, Unavailable/DataLoss from content reads.
class Tree {
 public:
  virtual ~Tree() = default;
  virtual Result<Attr> GetAttr(uint64_t ino) const = 0;
  virtual Result<Attr> Lookup(uint64_t parent, std::string_view name) const = 0;
  // Children sorted by name (bytewise), without "." and "..".
  virtual Result<std::vector<DirEntry>> ReadDir(uint64_t ino) const = 0;
  virtual Result<std::string> ReadLink(uint64_t ino) const = 0;
  // Sorted by name.
  virtual Result<std::vector<Xattr>> ListXattrs(uint64_t ino) const = 0;
  // sha256 of a regular file's content (recorded while indexing); for a sparse file, its
  // SparseFileDigest (sparse.h, and see Layout).
  virtual Result<Digest> ContentDigest(uint64_t ino) const = 0;
  // Where a regular file's bytes may be other than zero, for readers that skip holes (the ext4
  // writer, verify): `data` in order; the rest reads as zeros. `sparse`: ContentDigest is a
  // SparseFileDigest. By default, the whole file and a sha256.
  struct ContentLayout {
    bool sparse = false;
    Extents data;
  };
  virtual Result<ContentLayout> Layout(uint64_t ino) const {
    LAZYFS_ASSIGN_OR_RETURN(Attr a, GetAttr(ino));
    ContentLayout l;
    if (a.size > 0) l.data.emplace_back(0, a.size);
    return l;
  }
  // Reads up to out.size() bytes at offset; fewer only at end of file. Every byte returned has
  // been verified against the file's sha256 (or a digest that chains to it).
  virtual Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) const = 0;
  virtual TreeStats Stats() const = 0;
  // Ends the reads in flight and the fetches behind them now (they fail with Unavailable,
  // "cancelled"), and every later read that needs a fetch: for a server that is going away and
  // must not wait for a registry that stalls. Trees that never fetch have nothing to cancel.
  virtual void CancelReads() const {}
};

// A regular file's digest computed from its bytes in `tree`: their sha256, or when `sparse` the
// SparseFileDigest, reading only what tree.Layout says may be data. For comparing a file of one
// tree with another tree's ContentDigest of the same kind (verify).
Result<Digest> DigestOfFile(const Tree& tree, uint64_t ino, uint64_t size, bool sparse);

// What a tree fetches in the background, at low priority (one thread that waits while reads
// run): nothing; the files before the prefetch landmark of eStargz layers (none when a layer
// has ".no.prefetch.landmark"); every file of the image.
enum class PrefetchMode { kNone, kLandmark, kAll };

// Options for the RocksDB-backed index.
struct IndexOptions {
  // The store: the index lives in its index(), the content cache in its content().
  StoreLayout store;
  // Open for writing (indexing). Only one writer at a time per store: Open waits for the store's
  // writer lock. Readers (mounts) open read-only and never block writers.
  bool writable = false;
  // Caps applied while indexing untrusted layers.
  uint64_t max_entries_per_layer = 1'000'000;
  // Entries of the whole image, every listing of a layer counted (a manifest may list one small
  // layer thousands of times): what the merge walks.
  uint64_t max_entries_per_image = 4'000'000;
  uint64_t max_xattr_bytes_per_entry = 64 * 1024;
  // A regular file's apparent size, holes of sparse files included: past it the layer is
  // refused at once, naming the cap.
  uint64_t max_file_size = kDefaultMaxFileSize;
  // A decompression bomb stops here: a layer may decompress to at most max_expansion times the
  // compressed size its descriptor declares, or min_expansion_cap bytes if that is more. gzip
  // cannot pass 1032:1; zstd can pass 40000:1 with runs of zeros.
  uint64_t max_expansion = 10000;
  uint64_t min_expansion_cap = uint64_t{256} << 20;
  // Content cache (STORE/content) size limit in bytes: past it, the least recently used objects
  // are evicted. 0: no limit.
  uint64_t cache_size_bytes = 0;
  // A read whose fetch keeps failing (registry gone, network down) retries until this much time
  // has passed since the read started, then fails with Unavailable (EIO through FUSE). Nothing
  // is remembered of the failure: the next read tries again.
  std::chrono::milliseconds read_timeout{30'000};
  // Decompression checkpoints taken while indexing gzip/zstd layers (see index/checkpoint.h):
  // after this much output or this much input since the last one. The input distance bounds
  // what one read fetches beyond the bytes it needs.
  uint64_t checkpoint_every_uncompressed = 4 << 20;
  uint64_t checkpoint_every_compressed = 512 << 10;
  // Background fetch started by each tree OpenTree returns (stopped when it is destroyed).
  PrefetchMode prefetch = PrefetchMode::kNone;
  // Stream indexing also stores every file's content in the content cache as it is
  // decompressed (whole files, and the chunks of larger ones), so a caller about to read every
  // file (materialize) never decompresses a byte twice. Costs cache space for the layers'
  // content; best effort (a cache that cannot take more, a full disk say, only ends capturing).
  bool cache_content_while_indexing = false;
  // Layers of one image indexed at once, each on its own thread. 0: the number of CPUs.
  unsigned index_threads = 0;
};

struct GcReport {
  uint64_t objects_removed = 0;
  uint64_t bytes_removed = 0;
  uint64_t objects_kept = 0;
  uint64_t bytes_kept = 0;
};

// An image the index holds, for `lazyfs images`.
struct StoredImage {
  ImageDescriptor descriptor;
  TreeStats stats;
  std::vector<std::string> refs;  // references that resolved to it ("docker://h/r:t|linux/amd64")
};

// What Index::Check found (fsck). Empty `problems` and a clean content report: all is well.
struct IndexCheckReport {
  uint64_t images = 0, layers = 0, refs = 0, inodes = 0;
  std::vector<std::string> problems;  // one line each, naming the record
};

// The store's index. Thread-safe.
// Index artifacts (docs/formats.md): the media type of one layer's index blob, the artifact
// type of the manifest that carries them, and the annotation on each blob naming its layer.
inline constexpr std::string_view kLayerIndexMediaType =
    "application/vnd.lazyfs.layer.index.v1+zstd";
inline constexpr std::string_view kIndexArtifactType = "application/vnd.lazyfs.index.v1";
inline constexpr std::string_view kLayerDigestAnnotation = "dev.lazyfs.layer.digest";

class Index {
 public:
  // Opens (creating if writable and absent) STORE/index. Fails with FailedPrecondition when the
  // store was written by a newer lazyfs with incompatible features (or read-only-compatible ones
  // and writable is set), naming them.
  static Result<std::unique_ptr<Index>> Open(const IndexOptions& options);
  virtual ~Index() = default;

  // Whether the merged tree of this manifest is stored.
  virtual Result<bool> HasImage(const Digest& manifest) = 0;
  // Indexes every layer not yet indexed (reading them through `blobs`), then merges and stores
  // the image's tree. Idempotent. Errors name the layer and the entry: "layer sha256:ab12..:
  // entry \"../etc/passwd\": path escapes the root". Nothing is stored for a failed image.
  virtual Status AddImage(const ImageDescriptor& image, BlobSource& blobs,
                          const ProgressFn& progress) = 0;
  // Reference bookkeeping, so a tag mounted before resolves without the registry.
  virtual Status SetRef(std::string_view ref, const Digest& manifest) = 0;
  virtual Result<std::optional<Digest>> LookupRef(std::string_view ref) = 0;
  virtual Result<ImageDescriptor> GetImage(const Digest& manifest) = 0;
  // Opens the stored tree of an image. Content misses read layer bytes through `blobs`, which
  // must outlive the tree.
  virtual Result<std::unique_ptr<Tree>> OpenTree(const Digest& manifest, BlobSource& blobs) = 0;
  // Removes from the content cache every object no stored image refers to, then the least
  // recently used ones until the cache fits in cache_size_bytes (when set). Safe while mounts
  // run: they fetch an evicted object again.
  virtual Result<GcReport> Gc() = 0;
  // Every stored image with the references that resolved to it, sorted by reference.
  virtual Result<std::vector<StoredImage>> ListImages() = 0;
  // Forgets an image: its tree, the references to it, and the records of layers no other
  // stored image uses, in one atomic write. Its content stays in the cache until Gc. Running
  // mounts keep the view they opened. NotFound if the index does not hold it.
  virtual Status RemoveImage(const Digest& manifest) = 0;
  // Brings the content of an image's files into the content cache ahead of a reader that
  // will read them all (materialize): every stream-indexed layer whose files miss enough
  // content that one pass over the layer costs less than reading them one by one is read
  // whole, `threads` layers at a time (0: the number of CPUs). What it leaves out is fetched by
  // reads as usual. Every eStargz or zstd:chunked layer not checked whole before is fetched
  // whole and checked (digest, diff_id, and its TOC against its tar stream): DataLoss naming
  // the layer when it fails, so nothing a TOC merely claims is written out. Errors name the
  // layer; the cache keeps what was stored before a failure.
  virtual Status WarmContent(const Digest& manifest, BlobSource& blobs, unsigned threads,
                             const ProgressFn& progress) = 0;
  // The layer's index artifact (docs/formats.md, "Index artifacts"): its entries, file
  // locations with chunk digests and decompression checkpoints as one zstd blob, the same bytes
  // for the same layer indexed anywhere with the same options. FailedPrecondition when the layer
  // is not indexed here, is an eStargz or zstd:chunked layer (the registry holds its TOC: no
  // artifact needed; callers skip it), was indexed without file locations, or was itself
  // imported from an artifact not yet checked against its bytes.
  virtual Result<std::string> ExportLayer(const LayerDescriptor& layer) = 0;
  // How a layer is indexed here, if it is.
  enum class LayerIndexed { kNo, kFromStream, kFromToc };
  virtual Result<LayerIndexed> LayerState(const Digest& layer) = 0;
  // Imports an index artifact of `layer` so that AddImage merges it without reading the layer.
  // Every field is a claim: the blob is capped, the header must name exactly this layer, every
  // record is decoded and checked (InvalidArgument or ResourceExhausted naming what is wrong,
  // nothing written). The records stay claims until the layer's whole-layer check compares them
  // with its tar stream; a read or check that catches a lie refuses the layer for good. A layer
  // indexed already is left as it is. Needs a writable index.
  virtual Status ImportLayer(const LayerDescriptor& layer, std::string_view blob) = 0;
  // fsck of the index: every image's tree is complete (root, inode count, every layer indexed),
  // every reference points at a stored image, every layer record's entries decode.
  virtual Result<IndexCheckReport> Check() = 0;
  // fsck of the content cache: every object against its digest (CasDir::Check); `repair`
  // removes corrupt objects and the temporaries of processes that are gone.
  virtual Result<CasDir::CheckReport> CheckContent(bool repair) = 0;
};

}  // namespace lazyfs::index

// ----- Walking, comparing and stacking trees ----------------------------------------------------
//
// What convert/ and cli/ need beyond the Tree calls, written once: the depth-first walk every
// reader of a whole tree uses, the differ behind `lazyfs diff` and `lazyfs verify`, and additions
// (tars and single files) stacked over a tree as more layers through the image layers' own merge.

#include <functional>

namespace lazyfs::index {

// One name in a tree, as a walk meets it.
struct TreeEntry {
  std::string path;  // absolute: "/" for the root, "/etc/passwd"
  std::string name;  // as the directory lists it ("" for the root): checked, never re-split
  Attr attr;         // of the inode the name refers to
};

// The entries of directory `dir` with their attributes, sorted by name (bytewise).
Result<std::vector<TreeEntry>> ReadDirEntries(const Tree& tree, const TreeEntry& dir);

// The root as a TreeEntry.
Result<TreeEntry> RootEntry(const Tree& tree);

// Called once per directory a walk reaches, with all of its entries (sorted by name).
using TreeDirVisitor =
    std::function<Status(const TreeEntry& dir, const std::vector<TreeEntry>& entries)>;

// Depth-first from the directory `start`, names sorted: each directory is visited with all its
// entries before any of its subdirectories, which follow in name order (ls -R's order, and the
// order the ext4 writer lays the image out in). A directory inode is descended into once, at its
// first name, so a tree with a hardlinked directory cannot loop. Stops at the first error, the
// tree's or the visitor's.
Status WalkTree(const Tree& tree, const TreeEntry& start, const TreeDirVisitor& visit);
// From the root.
Status WalkTree(const Tree& tree, const TreeDirVisitor& visit);

// A fact DiffTrees compares, in the order differences list them. A fact only one side has (a
// content digest, a symlink target, device numbers) differs when the other side lacks it.
enum class TreeField : uint8_t {
  kType,    // the file type
  kMode,    // permission bits with setuid/setgid/sticky
  kUid,
  kGid,
  kSize,
  kDigest,  // sha256 of a regular file's content
  kTarget,  // symlink target
  kRdev,    // device numbers
  kXattrs,
  kNlink,
  kMtime,   // seconds and nanoseconds
  kInode,   // (TreeDiffOptions::hardlinks) a name of an inode of `a` names another inode in `b`
};

enum class TreeChange : uint8_t {
  kRemoved,   // only in `a`
  kAdded,     // only in `b`
  kModified,  // in both, with different facts
};

struct TreeDifference {
  TreeChange change = TreeChange::kModified;
  std::string path;
  Attr a, b;  // the entry in each tree (kRemoved: `a` only, kAdded: `b` only)
  std::vector<TreeField> fields;  // kModified: what differs, in TreeField order
  // kModified: the facts behind kDigest, kTarget and kXattrs, for each side that has them.
  std::optional<Digest> digest_a, digest_b;
  std::optional<std::string> target_a, target_b;
  std::vector<Xattr> xattrs_a, xattrs_b;

  bool Has(TreeField f) const;
};

struct TreeDiffOptions {
  bool compare_mtime = true;
  // Directories' link counts (which count their subdirectories).
  bool compare_directory_nlink = true;
  // Names that share an inode in `a` must share one in `b` (kInode otherwise); a later name of
  // an inode is then not compared again.
  bool hardlinks = false;
  // A path only one side has is followed by everything under it; false: by nothing.
  bool list_subtrees = true;
  // Paths only `b` has that are not differences (the /lost+found the ext4 writer adds).
  std::vector<std::string> ignore_added;
  // The diff stops after this many differences (TreeDiff::truncated).
  size_t max_differences = SIZE_MAX;
};

struct TreeDiff {
  std::vector<TreeDifference> differences;  // each path before the paths under it, names sorted
  bool truncated = false;
};

// Compares tree `a` with tree `b` path by path from their roots. What only one side has is one
// difference per entry, its whole subtree included (unless !list_subtrees); a directory replaced
// by a non-directory (or the reverse) is one kModified and its entries come or go. Content is
// compared by ContentDigest, never read. Errors are the trees'.
Result<TreeDiff> DiffTrees(const Tree& a, const Tree& b, const TreeDiffOptions& options = {});

// A regular file put over a tree (`materialize --add`): it replaces a non-directory at its path;
// a directory there, or a non-directory where a parent should be, is an error.
struct AddedFile {
  std::string guest_path;  // absolute; missing parents are created 0755 root:root
  std::string content;
  uint32_t uid = 0, gid = 0;
  uint32_t mode = 0644;  // permission bits (07777)
  // For comparing only (`lazyfs verify` rebuilds additions from the sidecar, without the host
  // files): the content's sha256 and size instead of `content`. Reading such a file fails with
  // FailedPrecondition, so a tree with one cannot be written.
  std::optional<Digest> digest;
  uint64_t size = 0;
};

// A tar applied as one more layer (`materialize --add-tar`), with the image layers' rules.
struct AddedTar {
  std::string path;  // plain, gzip or zstd (told apart by magic bytes)
  Digest sha256;     // filled in: sha256 of the uncompressed tar (the file's, for a plain tar)
};

// What one added tar may hold in memory (uncompressed stream and file content).
inline constexpr uint64_t kAddedTarMaxBytes = uint64_t{1} << 30;

struct TreeAdditions {
  std::vector<AddedTar> tars;     // applied first, in order, one layer each
  std::vector<AddedFile> files;   // then one more layer, in order (a later file wins)
  int64_t files_mtime = 0;        // mtime of the files and of the directories made for them
  uint64_t max_tar_bytes = kAddedTarMaxBytes;  // per tar, sparse holes included
};

// `base` with the additions on top, merged by the merge of image layers (whiteouts, opaque
// directories, replacement, hardlinks, link counts). The result borrows `base` and is
// thread-safe. Fills in each tar's sha256. Errors name the tar and its entry ("FILE.tar: entry
// \"../x\": ...") or the file's guest path; nothing is returned for a bad addition, and
// InvalidArgument when there is nothing to add. The files
// keep the inode numbers of the tree below them and take new ones after its highest, so an
// image made with them does not move every inode after the first added name.
Result<std::unique_ptr<Tree>> WithAdditions(const Tree& base, TreeAdditions& additions);

}  // namespace lazyfs::index
