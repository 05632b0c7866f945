// The store's RocksDB, opened as the one writer or as a reader, with the few operations the
// index needs: point reads, prefix scans, seeks, atomic batches.
//
// Sharing one store between processes: indexing takes an exclusive flock on STORE/index.lock
// and opens RocksDB as its primary; everything that only reads (a mount, materialize) opens a
// RocksDB secondary instance in a private directory under STORE/index.readers, which never
// takes RocksDB's lock. Readers see the index as it was when they opened it; images are only
// ever added, so that is all they need. Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "base/fd.h"
#include "base/status.h"
#include "base/store_layout.h"

namespace lazyfs::index {

// A RocksDB status as a Status: NotFound, ResourceExhausted (no space), DataLoss (corruption),
// else Unavailable with EIO. `what` prefixes the message ("index read").
Status FromRocks(const rocksdb::Status& s, std::string_view what);

// DataLoss "index record WHAT is damaged; run lazyfs fsck".
Status Corrupt(std::string_view what);

class Db {
 public:
  // Opens STORE/index: as the primary (writable; creating it, waiting for the writer lock,
  // writing or checking the format record) or as a secondary in a private directory. Fails
  // with NotFound when a reader finds no index yet, FailedPrecondition when a newer lazyfs wrote
  // the store with features this one does not know (naming them).
  static Result<std::unique_ptr<Db>> Open(const StoreLayout& store, bool writable);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // The value under `key`, or nullopt.
  Result<std::optional<std::string>> Get(std::string_view key) const;
  // Calls `each(key, value)` for every record whose key starts with `prefix`, in key order,
  // from `from` (a key at or after `prefix`; empty: the prefix itself) until `each` returns
  // false or the prefix ends.
  using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;
  Status Scan(std::string_view prefix, const ScanFn& each, std::string_view from = {}) const;
  // The last record at or before `key` (before=true), or the first at or after it, whose key
  // starts with `prefix`; nullopt when there is none.
  struct Record {
    std::string key, value;
  };
  Result<std::optional<Record>> Seek(std::string_view prefix, std::string_view key,
                                     bool before) const;
  // Whether any key starts with `prefix`.
  Result<bool> Any(std::string_view prefix) const;
  Status Write(rocksdb::WriteBatch& batch);
  Status Flush();

 private:
  Db() = default;
  Status OpenPrimary(const StoreLayout& store, const rocksdb::Options& options);
  Status OpenSecondary(const StoreLayout& store, const rocksdb::Options& options);

  std::unique_ptr<rocksdb::DB> db_;
  std::string secondary_dir_;  // removed on close
  Fd lock_;                    // the writer's flock
};

}  // namespace lazyfs::index
