#include "index/content_capture.h"

#include <sys/statvfs.h>

#include <algorithm>

#include "base/log.h"

namespace lazyfs::index {

ContentCapture::ContentCapture(ContentCache& cache, std::string layer)
    : cache_(cache), layer_(std::move(layer)) {}

ContentCapture::~ContentCapture() {
  {
    MutexLock lock(mu_);
    closing_ = true;
  }
  cv_.NotifyAll();
  if (worker_.joinable()) worker_.join();
}

bool ContentCapture::Begin(uint64_t size, const std::vector<Digest>* chunks) {
  if (failed_.load()) return false;
  size_ = size;
  chunks_ = chunks;
  next_ = 0;
  buf_.clear();
  buf_.reserve(static_cast<size_t>(std::min<uint64_t>(size, kContentChunkSize)));
  return true;
}

LayerReader::Sink ContentCapture::sink() {
  return [this](const char* p, size_t n) {
    Take(p, n);
    return Status::Ok();
  };
}

void ContentCapture::End(const Digest& file) {
  if (size_ <= kContentChunkSize) {
    Queue(file);
  } else if (!buf_.empty()) {
    QueueChunk();  // the last, partial chunk
  }
}

void ContentCapture::Take(const char* p, size_t n) {
  if (size_ <= kContentChunkSize) {
    buf_.append(p, n);
    return;
  }
  while (n > 0) {
    const size_t take = std::min<size_t>(n, kContentChunkSize - buf_.size());
    buf_.append(p, take);
    p += take;
    n -= take;
    if (buf_.size() == kContentChunkSize) QueueChunk();
  }
}

void ContentCapture::QueueChunk() {
  if (next_ >= chunks_->size()) {
    Fail(InternalError("a chunk's digest is missing"));
    buf_.clear();
    return;
  }
  Queue((*chunks_)[next_++]);
}

void ContentCapture::Queue(const Digest& d) {
  std::string bytes;
  bytes.swap(buf_);
  if (failed_.load()) return;
  MutexLock lock(mu_);
  cv_.Wait(mu_, [&]() LAZYFS_REQUIRES(mu_) {
    return queued_bytes_ < kMaxQueued || failed_.load();
  });
  queued_bytes_ += bytes.size();
  queue_.emplace_back(d, std::move(bytes));
  if (!worker_.joinable()) worker_ = std::thread([this] { Run(); });
  cv_.NotifyAll();
}

void ContentCapture::Run() {
  MutexLock lock(mu_);
  for (;;) {
    cv_.Wait(mu_, [&]() LAZYFS_REQUIRES(mu_) { return !queue_.empty() || closing_; });
    if (queue_.empty()) return;
    auto [d, bytes] = std::move(queue_.front());
    queue_.pop_front();
    mu_.unlock();
    Status s = failed_.load() ? Status::Ok() : RoomFor(bytes.size());
    if (s.ok() && !failed_.load()) s = cache_.PutHashed(d, bytes);
    if (!s.ok()) Fail(s);
    mu_.lock();
    queued_bytes_ -= bytes.size();
    cv_.NotifyAll();
  }
}

// Checks the free space every kCheckEvery bytes stored.
Status ContentCapture::RoomFor(size_t bytes) {
  since_check_ += bytes;
  if (since_check_ < kCheckEvery) return Status::Ok();
  since_check_ = 0;
  struct statvfs fs;
  if (::statvfs(cache_.root().c_str(), &fs) != 0) {
    return ErrnoError(errno, "statvfs " + cache_.root());
  }
  const uint64_t size = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  const uint64_t avail = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  const uint64_t reserve = std::min<uint64_t>(kReserve, std::max<uint64_t>(size / 8, 8 << 20));
  if (avail < reserve + kCheckEvery) {
    return ResourceExhaustedError("the store's filesystem has " + std::to_string(avail >> 20) +
                                  " MiB free, keeping " + std::to_string(reserve >> 20) +
                                  " MiB for the index");
  }
  return Status::Ok();
}

void ContentCapture::Fail(const Status& s) {
  if (failed_.exchange(true)) return;
  LAZYFS_LOG(kWarn, "index", "layer %s: stopped storing content while indexing (%s); reads "
             "fetch what is missing", layer_.c_str(), s.message().c_str());
}

}  // namespace lazyfs::index
