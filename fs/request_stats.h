// What the FUSE adapter counts of the requests it answers, and which failures are worth a
// warning: FUSE-free, so it is tested without a mount.
#pragma once

#include "base/stats.h"
#include "base/status.h"
#include "fs/fs.h"

namespace lazyfs::fs {

// Requests that reached the daemon, per operation: what the kernel's caches did not absorb.
// Tests read them to prove a cache works; `lazyfs stats` shows them.
struct RequestCounters {
  StatCounter& lookup = Counter(kStatFuseLookups);
  StatCounter& getattr = Counter(kStatFuseGetattrs);
  StatCounter& readlink = Counter(kStatFuseReadlinks);
  StatCounter& opendir = Counter(kStatFuseOpendirs);
  StatCounter& readdir = Counter(kStatFuseReaddirs);
  StatCounter& readdirplus = Counter(kStatFuseReaddirplus);
  StatCounter& large_reads = Counter(kStatFuseLargeReads);
  StatCounter& reads = Counter(kStatReads);
  StatCounter& bytes_served = Counter(kStatBytesServed);
  StatCounter& eio_unavailable = Counter(kStatEioUnavailable);
  StatCounter& eio_data_loss = Counter(kStatEioDataLoss);
  StatCounter& eio_other = Counter(kStatEioOther);
};

// The process's counters (never destroyed: workers may count during exit).
RequestCounters& Requests();

// Counts an EIO a reader sees by what caused it, so `lazyfs stats` can tell a registry outage
// from corrupt data. The one place an EIO is counted.
void CountEio(const Status& status);

// errnos that are ordinary answers (a shell probing names, a tool trying to write) rather than
// trouble worth a warning.
bool IsExpectedErrno(int err);

}  // namespace lazyfs::fs
