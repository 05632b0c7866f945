// Background prefetch (prefetch.h).
#include "index/prefetch.h"

#include <chrono>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/stats.h"
#include "index/layer_entry.h"

namespace lazyfs::index {
namespace {

thread_local bool in_prefetch = false;

StatCounter& Files() {
  static StatCounter& c = Counter(kStatPrefetchFiles);
  return c;
}
StatCounter& Bytes() {
  static StatCounter& c = Counter(kStatPrefetchBytes);
  return c;
}
void Failed(const std::string& what, const Status& s) {
  static StatCounter& errors = Counter(kStatPrefetchErrors);
  errors.Add();
  LAZYFS_LOG(kWarn, "prefetch", "%s: %s", what.c_str(), s.message().c_str());
}

}  // namespace

Prefetcher::Prefetcher(PrefetchMode mode, const Tree& tree, const ImageDescriptor& image,
                       SourceOf source_of, std::chrono::milliseconds read_timeout)
    : mode_(mode), tree_(tree), image_(image), source_of_(std::move(source_of)),
      read_timeout_(read_timeout) {
  if (mode_ != PrefetchMode::kNone) thread_ = std::thread([this] { Run(); });
}

Prefetcher::~Prefetcher() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

Prefetcher::Foreground::Foreground(Prefetcher* p) : p_(in_prefetch ? nullptr : p) {
  if (p_) p_->foreground_.fetch_add(1);
}
Prefetcher::Foreground::~Foreground() {
  if (p_) p_->foreground_.fetch_sub(1);
}

bool Prefetcher::Yield() {
  while (foreground_.load() > 0 && !stop_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return !stop_.load();
}

void Prefetcher::Run() {
  in_prefetch = true;
  if (mode_ == PrefetchMode::kLandmark) Landmarks();
  if (mode_ == PrefetchMode::kAll) Everything();
  LAZYFS_LOG(kDebug, "prefetch", "done");
}

void Prefetcher::Landmarks() {
  for (size_t i = 0; i < image_.layers.size(); ++i) {
    const LayerDescriptor& layer = image_.layers[i];
    auto source = source_of_(i);
    if (!source.ok()) {
      Failed("layer " + layer.digest.Short(), source.status());
      continue;
    }
    for (const Digest& file : (*source)->LandmarkFiles()) {
      if (!Yield()) return;
      auto n = (*source)->FetchFile(file, Deadline::In(read_timeout_));
      if (!n.ok()) {
        Failed("layer " + layer.digest.Short() + ": file " + file.Short(), n.status());
        continue;
      }
      if (*n) {
        Files().Add();
        Bytes().Add(*n);
      }
    }
  }
}

void Prefetcher::Everything() {
  std::vector<std::byte> buf(kContentChunkSize);
  const uint64_t inodes = tree_.Stats().inodes;
  for (uint64_t ino = 1; ino <= inodes; ++ino) {
    if (!Yield()) return;
    auto attr = tree_.GetAttr(ino);
    if (!attr.ok() || !attr->is_reg() || attr->size == 0) continue;
    uint64_t offset = 0;
    for (; offset < attr->size; offset += buf.size()) {
      if (!Yield()) return;
      auto n = tree_.Read(ino, offset, buf);
      if (!n.ok()) {
        Failed("inode " + std::to_string(ino), n.status());
        break;
      }
    }
    if (offset >= attr->size) {
      Files().Add();
      Bytes().Add(attr->size);
    }
  }
  // What the merged tree hides (files whited out or replaced by upper layers) is still part
  // of a TOC layer: fetched too, so every layer can be checked whole.
  for (size_t i = 0; i < image_.layers.size(); ++i) {
    const LayerDescriptor& layer = image_.layers[i];
    if (!Yield()) return;
    auto source = source_of_(i);
    Result<uint64_t> n = source.ok() ? (*source)->FetchRest(Deadline::In(read_timeout_))
                                     : Result<uint64_t>(source.status());
    if (!n.ok()) {
      Failed("layer " + layer.digest.Short(), n.status());
    } else {
      Bytes().Add(*n);
    }
  }
}

}  // namespace lazyfs::index
