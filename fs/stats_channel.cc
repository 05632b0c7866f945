// Both ends of the stats channel (fs/stats_channel.h): the daemon's JSON and the client's ioctl.
#include "fs/stats_channel.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/stats.h"
#include "fs/fs.h"
#include "fs/mount_table.h"

namespace lazyfs::fs {

std::string StatsJson() {
  const StatsSnapshot snap = SnapshotStats();
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& [name, value] : snap.counters) counters[name] = value;
  nlohmann::json latencies = nlohmann::json::object();
  for (const auto& h : snap.histograms) {
    latencies[h.name] = {{"count", h.count},   {"p50_us", h.p50_us}, {"p90_us", h.p90_us},
                         {"p99_us", h.p99_us}, {"max_us", h.max_us}};
  }
  return nlohmann::json{{"counters", counters}, {"latencies", latencies}}.dump();
}

Result<std::string> ReadMountStats(const std::string& mountpoint) {
  const std::string what = "cannot read the stats of " + mountpoint;
  LAZYFS_ASSIGN_OR_RETURN(std::optional<MountInfo> info, FindMount(mountpoint));
  if (!info) return Status(StatusCode::kInvalidArgument, what + ": not a mountpoint", EINVAL);
  if (info->fstype != kMountType) {
    return Status(StatusCode::kFailedPrecondition,
                  what + ": it is a " + info->fstype + " mount, not a lazyfs mount", EINVAL);
  }
  Result<Fd> dir = OpenFile(info->mountpoint, O_RDONLY | O_DIRECTORY);
  if (!dir.ok()) return dir.status().WithContext(what);
  // Heap, not stack: 16 KiB.
  auto reply = std::make_unique<StatsIoctlReply>();
  std::memset(reply.get(), 0, sizeof(*reply));
  if (::ioctl(dir->get(), kStatsIoctl, reply.get()) != 0) {
    const int err = errno;
    return Status(StatusCode::kUnavailable,
                  what + ": the daemon did not answer the stats request (" +
                      std::strerror(err) + "; is it an older lazyfs?)",
                  err);
  }
  if (reply->magic != kStatsMagic || reply->length > sizeof(reply->json)) {
    return Status(StatusCode::kDataLoss, what + ": the daemon's reply is not lazyfs stats");
  }
  return std::string(reply->json, reply->length);
}

}  // namespace lazyfs::fs
