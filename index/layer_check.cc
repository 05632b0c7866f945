#include "index/layer_check.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "base/log.h"
#include "index/layer_indexer.h"
#include "index/layer_reader.h"

namespace lazyfs::index {

LayerCheck::LayerCheck(std::string verified_dir, std::string tmp_dir, const IndexOptions& options)
    : verified_dir_(std::move(verified_dir)), tmp_dir_(std::move(tmp_dir)), options_(options) {}

std::string LayerCheck::MarkerPath(const Digest& layer) const {
  return verified_dir_ + "/" + layer.Hex();
}

std::string LayerCheck::BadPath(const Digest& layer) const {
  return verified_dir_ + "/" + layer.Hex() + ".bad";
}

bool LayerCheck::IsBad(const Digest& layer) {
  MutexLock lock(mu_);
  auto it = bad_.find(layer);
  if (it == bad_.end()) {
    it = bad_.emplace(layer, ::access(BadPath(layer).c_str(), F_OK) == 0).first;
  }
  return it->second;
}

std::string LayerCheck::WhyBad(const Digest& layer) const {
  auto why = ReadFileToString(BadPath(layer), 4096);
  return why.ok() && !why->empty() ? *why : std::string("(no reason recorded)");
}

void LayerCheck::Forget(const std::function<bool(const Digest&)>& in_use) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(verified_dir_, ec)) {
    const std::string name = entry.path().filename().string();
    auto layer = Digest::Parse("sha256:" + name.substr(0, name.find('.')));
    if (!layer.ok() || in_use(*layer)) continue;
    ::unlink((verified_dir_ + "/" + name).c_str());
    MutexLock lock(mu_);
    bad_.erase(*layer);
    passed_.erase(*layer);
  }
}

bool LayerCheck::Passed(const Digest& layer) {
  MutexLock lock(mu_);
  auto it = passed_.find(layer);
  if (it == passed_.end()) {
    it = passed_.emplace(layer, ::access(MarkerPath(layer).c_str(), F_OK) == 0).first;
  }
  return it->second;
}

std::vector<std::pair<uint64_t, uint64_t>> LayerCheck::Gaps(const LayerDescriptor& layer) {
  std::shared_ptr<Coverage> c = CoverageOf(layer.digest);
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  if (!c) return gaps;
  MutexLock lock(c->mu);
  if (c->done) return gaps;
  uint64_t at = 0;
  for (const auto& [start, end] : c->intervals) {
    if (start > at) gaps.emplace_back(at, std::min(start, layer.size));
    at = std::max(at, end);
  }
  if (at < layer.size) gaps.emplace_back(at, layer.size);
  return gaps;
}

std::shared_ptr<LayerCheck::Coverage> LayerCheck::CoverageOf(const Digest& layer) {
  if (IsBad(layer)) return nullptr;
  MutexLock lock(mu_);
  std::shared_ptr<Coverage>& slot = coverage_[layer];
  if (!slot) {
    slot = std::make_shared<Coverage>();
    const bool passed = ::access(MarkerPath(layer).c_str(), F_OK) == 0;
    MutexLock c(slot->mu);
    slot->done = passed;
  }
  return slot;
}

bool LayerCheck::Add(Coverage& c, const LayerDescriptor& layer, uint64_t offset,
                     std::string_view bytes, const std::string& tmp_dir) {
  if (!c.file.valid()) {
    auto fd = OpenFile(tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (!fd.ok()) {
      c.done = true;  // no check possible here; reads still verify every chunk
      return false;
    }
    c.file = std::move(*fd);
  }
  if (::pwrite(c.file.get(), bytes.data(), bytes.size(), static_cast<off_t>(offset)) !=
      static_cast<ssize_t>(bytes.size())) {
    return false;
  }
  // Merge [offset, end) into the disjoint intervals.
  uint64_t start = offset, end = offset + bytes.size();
  auto it = c.intervals.upper_bound(start);
  if (it != c.intervals.begin() && std::prev(it)->second >= start) --it;
  while (it != c.intervals.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    c.covered -= it->second - it->first;
    it = c.intervals.erase(it);
  }
  c.intervals.emplace(start, end);
  c.covered += end - start;
  return c.covered >= layer.size;
}

void LayerCheck::Saw(const LayerDescriptor& layer, const Digest& diff_id, uint64_t offset,
                     std::string_view bytes, const std::function<void()>& drop_chunks,
                     const ClaimsCheck& claims) {
  std::shared_ptr<Coverage> c = CoverageOf(layer.digest);
  if (!c || bytes.empty()) return;
  Status s;
  bool of_the_blob = false;  // the bytes are the blob's: a failure holds for good
  {
    MutexLock lock(c->mu);
    if (c->done || !Add(*c, layer, offset, bytes, tmp_dir_)) return;
    c->done = true;
    s = CheckWhole(layer, diff_id, c->file.get(), claims, &of_the_blob);
    c->file.Reset();
    c->intervals.clear();
  }
  Verdict(layer, s, of_the_blob, drop_chunks);
}

void LayerCheck::CheckBlob(const LayerDescriptor& layer, const Digest& diff_id, int fd,
                           const std::function<void()>& drop_chunks, const ClaimsCheck& claims) {
  std::shared_ptr<Coverage> c = CoverageOf(layer.digest);
  if (!c) return;
  Status s;
  bool of_the_blob = false;
  {
    MutexLock lock(c->mu);
    if (c->done) return;
    c->done = true;
    s = CheckWhole(layer, diff_id, fd, claims, &of_the_blob);
    c->file.Reset();
    c->intervals.clear();
  }
  Verdict(layer, s, of_the_blob, drop_chunks);
}

void LayerCheck::MarkBad(const Digest& layer, const std::string& why) {
  {
    MutexLock lock(mu_);
    bad_[layer] = true;
  }
  auto marker = OpenFile(BadPath(layer), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (marker.ok()) WriteAll(marker->get(), why.data(), why.size()).IgnoreError();
  LAZYFS_LOG(kError, "index", "LAYER %s IS REFUSED FROM NOW ON: %s", layer.ToString().c_str(),
             why.c_str());
}

void LayerCheck::Verdict(const LayerDescriptor& layer, const Status& s, bool of_the_blob,
                         const std::function<void()>& drop_chunks) {
  if (s.ok()) {
    auto marker =
        OpenFile(MarkerPath(layer.digest), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (marker.ok()) WriteAll(marker->get(), "ok\n", 3).IgnoreError();
    {
      MutexLock lock(mu_);
      passed_[layer.digest] = true;
    }
    LAZYFS_LOG(kInfo, "index", "layer %s: every byte fetched; digest and diff_id verified",
               layer.digest.Short().c_str());
    return;
  }
  {
    MutexLock lock(mu_);
    bad_[layer.digest] = true;
  }
  // Bytes that do not match the layer's digest say something of what served them, not of the
  // layer, and a cap is the user's to raise: both refused in this process only. A blob that
  // fails anything else always will.
  if (of_the_blob && s.code() == StatusCode::kDataLoss) {
    auto marker =
        OpenFile(BadPath(layer.digest), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (marker.ok()) {
      WriteAll(marker->get(), s.message().data(), s.message().size()).IgnoreError();
    }
  }
  LAZYFS_LOG(kError, "index",
             "LAYER %s FAILED ITS WHOLE-LAYER CHECK: %s. Its cached content is dropped and "
             "reads from it fail from now on: what the registry serves, or what the layer's "
             "table of contents claims, differs from what the manifest vouches for.",
             layer.digest.ToString().c_str(), s.message().c_str());
  drop_chunks();
}

Status LayerCheck::CheckWhole(const LayerDescriptor& layer, const Digest& diff_id, int fd,
                              const ClaimsCheck& claims, bool* of_the_blob) {
  LAZYFS_ASSIGN_OR_RETURN(Digest got, Sha256OfFd(fd));
  if (got != layer.digest) return DataLossError("its bytes hash to " + got.ToString());
  *of_the_blob = true;
  LAZYFS_ASSIGN_OR_RETURN(LayerCompression compression, CompressionOfMediaType(layer.media_type));
  LAZYFS_ASSIGN_OR_RETURN(auto reader,
                          LayerReader::Open(fd, layer.size, compression,
                                            StreamReadOptions(options_, layer.size),
                                            layer.digest.Short()));
  LAZYFS_ASSIGN_OR_RETURN(Digest uncompressed, reader->Finish());
  if (uncompressed != diff_id) {
    return DataLossError("it decompresses to " + uncompressed.ToString() + ", not diff_id " +
                         diff_id.ToString());
  }
  return claims ? claims(fd) : Status::Ok();
}

}  // namespace lazyfs::index
