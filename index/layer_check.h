// The whole-layer check of lazily read layers: once reads have fetched every byte of a layer's
// blob, the bytes are checked as a whole against the layer digest and, decompressed, against
// the diff_id.
//
// Every chunk a read serves is verified on its own, against a digest recorded while indexing
// (or, for TOC layers, a TOC the manifest vouches for); this check closes the rest of the chain:
// a layer that passes gets a marker (StoreLayout::verified_layers()/<hex>) and is never checked
// again; one that fails is marked bad for the process (its reads fail with DataLoss), its cached
// chunks are dropped, and the failure is logged as an error. Thread-safe; shared by every tree
// an Index opens.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/digest.h"
#include "base/fd.h"
#include "base/image.h"
#include "base/thread_annotations.h"
#include "index/tree.h"

namespace lazyfs::index {

class LayerCheck {
 public:
  // `verified_dir`: where pass markers live; `options` caps the check's decompression as
  // indexing is capped (a registry serving other bytes may serve a bomb).
  LayerCheck(std::string verified_dir, std::string tmp_dir, const IndexOptions& options);

  // What else a whole layer must agree with, given its complete blob (a TOC's claims about the
  // tar stream, say); empty: nothing else.
  using ClaimsCheck = std::function<Status(int blob_fd)>;
  // Records that blob bytes [offset, offset + bytes.size()) of `layer` were fetched (and
  // produced chunks that matched their digests). When the layer's every byte has been seen, it
  // is checked (digest, diff_id, then `claims`); a failure calls `drop_chunks` to remove what
  // the layer put in the cache. A blob that matched its digest and failed the rest is recorded
  // (StoreLayout::verified_layers()/<hex>.bad) so the layer stays refused in later processes
  // too; bytes that did not match their digest, or a cap, refuse it in this process only.
  void Saw(const LayerDescriptor& layer, const Digest& diff_id, uint64_t offset,
           std::string_view bytes, const std::function<void()>& drop_chunks,
           const ClaimsCheck& claims = nullptr) LAZYFS_EXCLUDES(mu_);
  // Checks `layer` whole from its complete blob at `fd` (already verified against its digest by
  // the blob store), as Saw does once every byte was seen, and records the verdict the same way.
  // Nothing happens for a layer checked before.
  void CheckBlob(const LayerDescriptor& layer, const Digest& diff_id, int fd,
                 const std::function<void()>& drop_chunks, const ClaimsCheck& claims)
      LAZYFS_EXCLUDES(mu_);
  // Refuses `layer` for good (StoreLayout::verified_layers()/<hex>.bad holds `why`): what its
  // index claims was caught false by a read (an index artifact whose chunk digest lies).
  void MarkBad(const Digest& layer, const std::string& why) LAZYFS_EXCLUDES(mu_);
  // Failed its check, in this process or an earlier one.
  bool IsBad(const Digest& layer) LAZYFS_EXCLUDES(mu_);
  // Removes what is recorded of layers `in_use` says no stored image holds (gc): a layer
  // indexed again later is checked again.
  void Forget(const std::function<bool(const Digest&)>& in_use) LAZYFS_EXCLUDES(mu_);
  // Why it failed (the recorded message), for errors.
  std::string WhyBad(const Digest& layer) const;
  // Passed its check, in this process or an earlier one.
  bool Passed(const Digest& layer) LAZYFS_EXCLUDES(mu_);
  // The blob ranges [start, end) of `layer` no fetch has shown yet (none once it was checked):
  // what a caller that wants the layer checked whole must still fetch.
  std::vector<std::pair<uint64_t, uint64_t>> Gaps(const LayerDescriptor& layer)
      LAZYFS_EXCLUDES(mu_);

 private:
  struct Coverage {
    Mutex mu;
    bool done LAZYFS_GUARDED_BY(mu) = false;  // checked (or recorded as passed)
    Fd file LAZYFS_GUARDED_BY(mu);             // the fetched bytes, at their offsets
    std::map<uint64_t, uint64_t> intervals LAZYFS_GUARDED_BY(mu);  // start -> end, disjoint
    uint64_t covered LAZYFS_GUARDED_BY(mu) = 0;
  };

  std::shared_ptr<Coverage> CoverageOf(const Digest& layer) LAZYFS_EXCLUDES(mu_);
  // Adds the bytes; true when the layer is now whole.
  static bool Add(Coverage& c, const LayerDescriptor& layer, uint64_t offset,
                  std::string_view bytes, const std::string& tmp_dir) LAZYFS_REQUIRES(c.mu);
  Status CheckWhole(const LayerDescriptor& layer, const Digest& diff_id, int fd,
                    const ClaimsCheck& claims, bool* of_the_blob);
  // Records the outcome of CheckWhole: a marker and the log line.
  void Verdict(const LayerDescriptor& layer, const Status& s, bool of_the_blob,
               const std::function<void()>& drop_chunks) LAZYFS_EXCLUDES(mu_);
  std::string MarkerPath(const Digest& layer) const;
  std::string BadPath(const Digest& layer) const;

  const std::string verified_dir_, tmp_dir_;
  const IndexOptions options_;
  Mutex mu_;
  std::map<Digest, std::shared_ptr<Coverage>> coverage_ LAZYFS_GUARDED_BY(mu_);
  // Layers whose failure marker was looked for: true when it is there (or they failed here).
  std::map<Digest, bool> bad_ LAZYFS_GUARDED_BY(mu_);
  std::map<Digest, bool> passed_ LAZYFS_GUARDED_BY(mu_);  // likewise for the pass marker
};

}  // namespace lazyfs::index
