// Where a store keeps what: one type, so fetch/, index/ and cli/ agree on the layout.
//
//   ROOT/blobs/           fetch/'s blob store (a CasDir): manifests, configs, layer blobs
//   ROOT/index/           index/'s RocksDB (one writer, under ROOT/index.lock)
//   ROOT/index.readers/   private directories of RocksDB secondary instances (readers)
//   ROOT/content/         index/'s content cache (a CasDir of files and 1 MiB chunks)
//   ROOT/content/verified/  one marker per layer whose every byte passed the whole-layer check
//
// The default root is $LAZYFS_STORE, else /var/lib/lazyfs for root, else
// $XDG_DATA_HOME/lazyfs (~/.local/share/lazyfs). Value type.
#pragma once

#include <string>

namespace lazyfs {

struct StoreLayout {
  std::string root;

  // The layout at `root`, or at the default root when `root` is empty.
  static StoreLayout At(const std::string& root);
  // $LAZYFS_STORE, else /var/lib/lazyfs for root, else $XDG_DATA_HOME/lazyfs.
  static std::string DefaultRoot();

  std::string blobs() const { return root + "/blobs"; }
  std::string index() const { return root + "/index"; }
  std::string index_lock() const { return root + "/index.lock"; }
  std::string index_readers() const { return root + "/index.readers"; }
  std::string content() const { return root + "/content"; }
  std::string verified_layers() const { return content() + "/verified"; }
};

}  // namespace lazyfs
