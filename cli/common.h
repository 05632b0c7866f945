// What every subcommand shares: the store location, opening an image's source, and making sure
// the image is indexed before it is served or converted.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "base/status.h"
#include "base/store_layout.h"
#include "fetch/fetch.h"
#include "index/tree.h"

namespace lazyfs::cli {

// When to ask the registry for the manifest, as container tools' --pull.
enum class PullPolicy { kMissing, kAlways, kNever };

// Options common to every subcommand that reads an image.
struct ImageOptions {
  std::string store;        // --store; empty: StoreLayout::DefaultRoot()
  std::string platform;     // --platform os/arch[/variant]; empty: the host's
  bool insecure = false;    // --insecure: allow plain HTTP / unverified TLS
  bool tls_verify = true;   // --tls-verify=false: the same as --insecure
  std::string registries_conf;  // --registries-conf FILE (mirrors, insecure registries)
  PullPolicy pull = PullPolicy::kMissing;  // --pull
  bool quiet = false;       // -q
  uint64_t cache_size = 0;  // --cache-size: content cache limit in bytes (0: none)
  double read_timeout_s = 30;  // --read-timeout: a failing read gives up after this (seconds)
  index::PrefetchMode prefetch = index::PrefetchMode::kNone;  // --prefetch (mount)
  // Not a flag: set by commands that read every file (materialize), so indexing stores the
  // content it decompresses (IndexOptions::cache_content_while_indexing).
  bool cache_content = false;
  // --index-artifacts: before indexing an image from its layers, look in its registry for an
  // index artifact (`lazyfs index push`) and import it (cli/index_artifacts.h).
  bool index_artifacts = true;

  // The store --store names, or the default one.
  StoreLayout layout() const { return StoreLayout::At(store); }
};

void AddImageOptions(CLI::App& cmd, ImageOptions& options);

// --store DIR, for the commands that take nothing else of ImageOptions (images, rmi, fsck, gc).
// Empty when not given: StoreLayout::At then picks the default root.
void AddStoreOption(CLI::App& cmd, std::string& store);

// An image that is in the index, with the source its content is read from.
struct PreparedImage {
  fetch::ImageRef ref;
  Digest manifest;
  std::unique_ptr<fetch::ImageSource> source;
};

// Parses ref_text, and unless the store already has the image (by digest, or by a reference
// seen before and --pull=missing), resolves it and indexes it. Leaves the index closed, so the
// caller opens it read-only for serving.
Result<PreparedImage> PrepareImage(const std::string& ref_text, const ImageOptions& options);

// Opens the store's index read-only and the stored tree of an image.
struct OpenedTree {
  std::unique_ptr<index::Index> index;
  std::unique_ptr<index::Tree> tree;
};
Result<OpenedTree> OpenTree(const PreparedImage& image, const ImageOptions& options);

// Removes from the blob store what no image `idx` holds refers to (fetch::PruneBlobStore).
Result<fetch::BlobPruneReport> PruneBlobs(const StoreLayout& store, index::Index& idx);

// "0 B", "1.5 KiB", ... "2.0 TiB": a size for people.
std::string HumanBytes(uint64_t n);

// Prints "lazyfs: error: MESSAGE" and returns the exit code for it (1).
int ReportError(const Status& status);

// Progress lines on a terminal; nothing when stderr is not a TTY or quiet.
ProgressFn MakeProgress(bool quiet);

}  // namespace lazyfs::cli
