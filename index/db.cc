#include "index/db.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <vector>

#include <rocksdb/options.h>

#include "index/records.h"
#include "index/schema.h"

namespace lazyfs::index {
namespace {

std::string FeatureNames(uint64_t bits) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(bits));
  return buf;
}

Status CheckFormat(const FormatRecord& f, const std::string& path, bool writable) {
  const uint64_t unknown_incompat = f.incompat & ~schema::kIncompatKnown;
  if (unknown_incompat) {
    return FailedPreconditionError(
        "store index " + path + " was written by a newer lazyfs (format " +
        std::to_string(f.version) + ", incompatible features " + FeatureNames(unknown_incompat) +
        " unknown to this version); upgrade lazyfs or use another --store");
  }
  const uint64_t unknown_ro = f.ro_compat & ~schema::kRoCompatKnown;
  if (unknown_ro && writable) {
    return FailedPreconditionError(
        "store index " + path + " was written by a newer lazyfs (format " +
        std::to_string(f.version) + ", read-only-compatible features " +
        FeatureNames(unknown_ro) +
        "): this version can read it but not add images; upgrade lazyfs or use another --store");
  }
  return Status::Ok();
}

Result<std::optional<FormatRecord>> ReadFormat(const Db& db, const std::string& path) {
  LAZYFS_ASSIGN_OR_RETURN(auto value, db.Get(schema::kFormatKey));
  if (!value) return std::optional<FormatRecord>();
  FormatRecord f;
  if (!DecodeFormatRecord(*value, &f)) {
    return DataLossError("store index " + path + " has a damaged format record");
  }
  return std::optional<FormatRecord>(f);
}

// Removes reader directories left by processes that no longer exist (killed readers).
void CleanStaleReaders(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* de = readdir(d)) {
    const long pid = std::strtol(de->d_name, nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      stale.push_back(dir + "/" + de->d_name);
    }
  }
  closedir(d);
  for (const std::string& s : stale) RemoveTree(s).IgnoreError();
}

}  // namespace

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNotFound()) return NotFoundError(std::string(what) + ": not found");
  if (s.IsNoSpace()) return ResourceExhaustedError(std::string(what) + ": " + s.ToString());
  if (s.IsCorruption()) return DataLossError(std::string(what) + ": " + s.ToString());
  return Status(StatusCode::kUnavailable, std::string(what) + ": " + s.ToString(), EIO);
}

Status Corrupt(std::string_view what) {
  return DataLossError("index record " + std::string(what) + " is damaged; run lazyfs fsck");
}

Result<std::unique_ptr<Db>> Db::Open(const StoreLayout& store, bool writable) {
  if (store.root.empty()) return InvalidArgumentError("no store directory given");
  LAZYFS_RETURN_IF_ERROR(MakeDirs(store.root, 0700));
  rocksdb::Options ro;
  ro.max_open_files = -1;  // required by secondary instances; files stay readable once open
  ro.create_if_missing = writable;
  ro.info_log_level = rocksdb::InfoLogLevel::ERROR_LEVEL;
  ro.keep_log_file_num = 2;
  // No preallocation: RocksDB reserves about 1.1x the write buffer (70 MiB) for each WAL with
  // fallocate, which on a small store filesystem took the room a layer blob needed, and an
  // index whose records are written in a few large batches gains nothing from it.
  ro.allow_fallocate = false;
  std::unique_ptr<Db> db(new Db());
  LAZYFS_RETURN_IF_ERROR(writable ? db->OpenPrimary(store, ro) : db->OpenSecondary(store, ro));
  return db;
}

Status Db::OpenPrimary(const StoreLayout& store, const rocksdb::Options& options) {
  const std::string path = store.index();
  LAZYFS_ASSIGN_OR_RETURN(lock_, OpenFile(store.index_lock(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  while (::flock(lock_.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoError(errno, "lock " + store.index_lock());
  }
  rocksdb::DB* raw = nullptr;
  LAZYFS_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, path, &raw), "open index " + path));
  db_.reset(raw);
  LAZYFS_ASSIGN_OR_RETURN(auto format, ReadFormat(*this, path));
  FormatRecord want{schema::kFormatVersion, schema::kCompatKnown, schema::kRoCompatKnown,
                    schema::kIncompatKnown};
  if (format) {
    LAZYFS_RETURN_IF_ERROR(CheckFormat(*format, path, true));
    // Announce the compat features this version writes (layers indexed from now on carry
    // them); images indexed before keep working without them.
    if ((format->compat & schema::kCompatKnown) == schema::kCompatKnown) return Status::Ok();
    want = *format;
    want.compat |= schema::kCompatKnown;
  }
  const std::string rec =
      schema::EncodeFormatRecord(want.version, want.compat, want.ro_compat, want.incompat);
  return FromRocks(db_->Put(rocksdb::WriteOptions(), std::string(schema::kFormatKey), rec),
                   "index write");
}

Status Db::OpenSecondary(const StoreLayout& store, const rocksdb::Options& options) {
  const std::string path = store.index();
  if (::access((path + "/CURRENT").c_str(), F_OK) != 0) {
    return NotFoundError("store " + store.root + " has no index yet");
  }
  const std::string readers = store.index_readers();
  LAZYFS_RETURN_IF_ERROR(MakeDirs(readers, 0700));
  CleanStaleReaders(readers);
  static std::atomic<unsigned> counter{0};
  secondary_dir_ =
      readers + "/" + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  LAZYFS_RETURN_IF_ERROR(MakeDirs(secondary_dir_, 0700));
  rocksdb::DB* raw = nullptr;
  LAZYFS_RETURN_IF_ERROR(FromRocks(
      rocksdb::DB::OpenAsSecondary(options, path, secondary_dir_, &raw), "open index " + path));
  db_.reset(raw);
  LAZYFS_ASSIGN_OR_RETURN(auto format, ReadFormat(*this, path));
  if (format) return CheckFormat(*format, path, false);
  // A writer killed between creating the database and writing its first record leaves an
  // empty index: it holds no image, and the next writer adds the format record. Anything else
  // without one is damage.
  LAZYFS_ASSIGN_OR_RETURN(bool any, Any(""));
  if (any) return DataLossError("store index " + path + " has no format record");
  return Status::Ok();
}

Db::~Db() {
  if (db_) {
    if (secondary_dir_.empty()) db_->Flush(rocksdb::FlushOptions()).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
    db_.reset();
  }
  if (!secondary_dir_.empty()) RemoveTree(secondary_dir_).IgnoreError();
}

Result<std::optional<std::string>> Db::Get(std::string_view key) const {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  LAZYFS_RETURN_IF_ERROR(FromRocks(s, "index read"));
  return std::optional<std::string>(std::move(v));
}

Status Db::Scan(std::string_view prefix, const ScanFn& each, std::string_view from) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const rocksdb::Slice p(prefix.data(), prefix.size());
  const std::string_view start = from.empty() ? prefix : from;
  for (it->Seek(rocksdb::Slice(start.data(), start.size())); it->Valid() && it->key().starts_with(p);
       it->Next()) {
    if (!each(std::string_view(it->key().data(), it->key().size()),
              std::string_view(it->value().data(), it->value().size()))) {
      break;
    }
  }
  return FromRocks(it->status(), "index read");
}

Result<std::optional<Db::Record>> Db::Seek(std::string_view prefix, std::string_view key,
                                           bool before) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const rocksdb::Slice k(key.data(), key.size());
  if (before) {
    it->SeekForPrev(k);
  } else {
    it->Seek(k);
  }
  LAZYFS_RETURN_IF_ERROR(FromRocks(it->status(), "index read"));
  if (!it->Valid() || !it->key().starts_with(rocksdb::Slice(prefix.data(), prefix.size()))) {
    return std::optional<Record>();
  }
  return std::optional<Record>(Record{it->key().ToString(), it->value().ToString()});
}

Result<bool> Db::Any(std::string_view prefix) const {
  bool any = false;
  LAZYFS_RETURN_IF_ERROR(Scan(prefix, [&](std::string_view, std::string_view) {
    any = true;
    return false;
  }));
  return any;
}

Status Db::Write(rocksdb::WriteBatch& batch) {
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "index write");
}

Status Db::Flush() { return FromRocks(db_->Flush(rocksdb::FlushOptions()), "index flush"); }

}  // namespace lazyfs::index
