// Background prefetch (prefetch.h).
#include "index/prefetch.h"

#include <chrono>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/stats.h"
#include "index/layer_seek.h"

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
                       TocReader& toc)
    : mode_(mode), tree_(tree), image_(image), toc_(toc) {
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
  for (const LayerDescriptor& layer : image_.layers) {
    auto rec = toc_.Layer(layer.digest);
    if (!rec.ok()) {
      Failed("layer " + layer.digest.Short(), rec.status());
      continue;
    }
    if (!*rec) continue;
    for (const Digest& file : (*rec)->prefetch) {
      if (!Yield()) return;
      auto n = toc_.FetchFile(layer, file);
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
  for (const LayerDescriptor& layer : image_.layers) {
    if (!Yield()) return;
    auto n = toc_.FetchLayer(layer);
    if (!n.ok()) {
      Failed("layer " + layer.digest.Short(), n.status());
    } else {
      Bytes().Add(*n);
    }
  }
}

}  // namespace lazyfs::index
