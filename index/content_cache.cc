#include "index/content_cache.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/stats.h"

namespace lazyfs::index {

ContentCache::ContentCache(std::unique_ptr<CasDir> cas, uint64_t size_limit)
    : cas_(std::move(cas)), size_limit_(size_limit) {}

Result<std::shared_ptr<Fd>> ContentCache::Open(const Digest& d) {
  const auto now = std::chrono::steady_clock::now();
  {
    MutexLock lock(mu_);
    if (auto it = fds_.find(d); it != fds_.end()) {
      auto stamp = CasDir::StampOf(it->second.fd->get());
      if (stamp.ok() && *stamp == it->second.stamp) {
        // Mark the use for LRU eviction, at most once a minute per object.
        if (now - it->second.touched > std::chrono::minutes(1)) {
          auto used = cas_->MarkUsed(d, it->second.fd->get());
          if (used.ok()) it->second.stamp = *used;
          it->second.touched = now;
        }
        return it->second.fd;
      }
      // Changed since it was verified: open and verify again (below).
      fds_.erase(it);
    }
  }
  const bool existed = cas_->Contains(d);
  auto fd = cas_->OpenVerified(d);
  if (!fd.ok()) {
    if (fd.status().code() == StatusCode::kNotFound && existed && !cas_->Contains(d)) {
      static StatCounter& corrupt = Counter(kStatCacheCorrupt);
      corrupt.Add();
    }
    return fd.status();
  }
  LAZYFS_ASSIGN_OR_RETURN(CasDir::Stamp stamp, cas_->MarkUsed(d, fd->get()));
  auto shared = std::make_shared<Fd>(std::move(*fd));
  MutexLock lock(mu_);
  if (fds_.size() >= kMaxOpen) fds_.erase(fds_.begin());
  fds_[d] = OpenObject{shared, stamp, now};
  return shared;
}

Result<size_t> ContentCache::Read(const Digest& d, uint64_t offset, std::span<std::byte> out) {
  LAZYFS_ASSIGN_OR_RETURN(std::shared_ptr<Fd> fd, Open(d));
  LAZYFS_ASSIGN_OR_RETURN(size_t n, PreadFull(fd->get(), out.data(), out.size(), offset));
  if (n != out.size()) return DataLossError("cached content " + d.Short() + " is short");
  return n;
}

Status ContentCache::Put(const Digest& d, std::string_view bytes) { return Store(d, bytes, false); }

Status ContentCache::PutHashed(const Digest& d, std::string_view bytes) {
  return Store(d, bytes, true);
}

Status ContentCache::Store(const Digest& d, std::string_view bytes, bool hashed) {
  if (!cas_->Contains(d)) {
    LAZYFS_RETURN_IF_ERROR(hashed ? cas_->PutHashed(d, bytes) : cas_->Put(d, bytes));
    MaybeEvict(bytes.size());
  }
  return Status::Ok();
}

Status ContentCache::Remove(const Digest& d) {
  {
    MutexLock lock(mu_);
    fds_.erase(d);
  }
  return cas_->Remove(d);
}

void ContentCache::MaybeEvict(uint64_t added) {
  if (size_limit_ == 0) return;
  {
    MutexLock lock(mu_);
    added_since_evict_ += added;
    // Scanning the cache costs a stat per object: do it after each eighth of the limit.
    if (added_since_evict_ < std::max<uint64_t>(size_limit_ / 8, 1)) return;
    added_since_evict_ = 0;
  }
  Evict(size_limit_, nullptr).IgnoreError();
}

Result<ContentCache::EvictReport> ContentCache::Evict(
    uint64_t limit, const std::function<bool(const Digest&)>& drop) {
  if (!evict_mu_.try_lock()) return EvictReport{};  // another thread is at it
  Result<EvictReport> r = EvictLocked(limit, drop);
  evict_mu_.unlock();
  return r;
}

Result<ContentCache::EvictReport> ContentCache::EvictLocked(
    uint64_t limit, const std::function<bool(const Digest&)>& drop) {
  struct Object {
    Digest digest;
    uint64_t bytes;
    timespec used;
  };
  std::vector<Object> objects;
  const std::string dir = cas_->root() + "/sha256";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return ErrnoError(errno, "open " + dir);
  while (dirent* de = ::readdir(d)) {
    if (de->d_name[0] == '.') continue;
    auto digest = Digest::Parse(std::string("sha256:") + de->d_name);
    struct stat st;
    if (!digest.ok() || ::stat((dir + "/" + de->d_name).c_str(), &st) != 0) continue;
    objects.push_back({*digest, static_cast<uint64_t>(st.st_size), st.st_atim});
  }
  ::closedir(d);
  EvictReport report;
  uint64_t total = 0;
  for (const Object& o : objects) total += o.bytes;
  auto remove = [&](const Object& o) {
    if (Remove(o.digest).ok()) {
      report.objects_removed++;
      report.bytes_removed += o.bytes;
      total -= o.bytes;
    }
  };
  std::vector<Object> kept;
  for (const Object& o : objects) {
    if (drop && drop(o.digest)) {
      remove(o);
    } else {
      kept.push_back(o);
    }
  }
  if (limit > 0 && total > limit) {
    std::sort(kept.begin(), kept.end(), [](const Object& a, const Object& b) {
      return a.used.tv_sec != b.used.tv_sec ? a.used.tv_sec < b.used.tv_sec
                                            : a.used.tv_nsec < b.used.tv_nsec;
    });
    size_t i = 0;
    for (; i < kept.size() && total > limit; ++i) remove(kept[i]);
    kept.erase(kept.begin(), kept.begin() + static_cast<long>(i));
  }
  report.objects_kept = kept.size();
  report.bytes_kept = total;
  return report;
}

Status ContentCache::ExtractLayer(const LayerDescriptor& layer, BlobSource& blobs,
                                  const std::vector<LayerEntry>& indexed,
                                  const LayerReadOptions& options) {
  return extractions_.Do(layer.digest, [&] { return DoExtract(layer, blobs, indexed, options); });
}

// A sparse file: its data chunks stored, each under the digest the reader computed; its holes
// never.
Status ContentCache::ExtractSparse(LayerReader& reader, const LayerEntry& indexed,
                                   const LayerDescriptor& layer) {
  uint64_t stored = 0;
  LAZYFS_ASSIGN_OR_RETURN(
      Digest got, reader.ReadSparseData(
                      [&](uint64_t, const Digest& d, std::string_view bytes) -> Status {
                        if (IsZeroChunk(d, bytes.size()) || cas_->Contains(d)) return Status::Ok();
                        stored += bytes.size();
                        return cas_->PutHashed(d, bytes);
                      },
                      nullptr));
  if (got != indexed.digest) {
    return DataLossError("layer " + layer.digest.Short() + ": sparse file \"" + indexed.path +
                         "\" no longer matches its index");
  }
  MaybeEvict(stored);
  return Status::Ok();
}

Status ContentCache::DoExtract(const LayerDescriptor& layer, BlobSource& blobs,
                               const std::vector<LayerEntry>& indexed,
                               const LayerReadOptions& options) {
  LAZYFS_ASSIGN_OR_RETURN(LayerCompression comp, CompressionOfMediaType(layer.media_type));
  LAZYFS_ASSIGN_OR_RETURN(Fd blob, blobs.OpenBlob(layer.digest, layer.size));
  LAZYFS_ASSIGN_OR_RETURN(auto reader, LayerReader::Open(blob.get(), layer.size, comp, options,
                                                         layer.digest.Short()));
  LayerEntry e;
  for (size_t i = 0;; ++i) {
    LAZYFS_ASSIGN_OR_RETURN(bool more, reader->Next(&e));
    if (!more) break;
    if (i >= indexed.size() || indexed[i].path != e.path || indexed[i].kind != e.kind) {
      return DataLossError("layer " + layer.digest.Short() +
                           " no longer matches its index at entry \"" + e.path + "\"");
    }
    if (e.kind != EntryKind::kFile || e.size == 0 || cas_->Contains(indexed[i].digest)) continue;
    if (reader->CurrentIsSparse()) {
      LAZYFS_RETURN_IF_ERROR(ExtractSparse(*reader, indexed[i], layer));
      continue;
    }
    // The reader hashes the file as it hands it out: the writer need not hash it again.
    LAZYFS_ASSIGN_OR_RETURN(auto writer, cas_->BeginWrite(indexed[i].digest,
                                                          static_cast<int64_t>(e.size), true));
    LAZYFS_ASSIGN_OR_RETURN(Digest got, reader->ReadData([&](const char* p, size_t n) {
      return writer->Write(p, n);
    }));
    LAZYFS_RETURN_IF_ERROR(writer->CommitHashed(got).WithContext(
        "file \"" + e.path + "\" of layer " + layer.digest.Short()));
    MaybeEvict(e.size);
  }
  return Status::Ok();
}

}  // namespace lazyfs::index
