#include "fs/mount_options.h"

#include <fcntl.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "base/log.h"
#include "fs/mount_table.h"

namespace lazyfs::fs {
namespace {
constexpr const char* kTag = "fs";
}  // namespace


std::string EscapeOptionValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

namespace {

// The options in `text`, split at the commas libfuse splits at (not at an escaped one).
std::vector<std::string> OptionsIn(std::string_view text) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      out.back() += text.substr(i, 2);
      ++i;
    } else if (text[i] == ',') {
      out.emplace_back();
    } else {
      out.back() += text[i];
    }
  }
  return out;
}

}  // namespace

Result<std::string> MountOptionString(const MountOptions& options) {
  bool others_see = options.allow_other;
  std::string o;
  for (const std::string& given : options.fuse_options) {
    for (const std::string& opt : OptionsIn(given)) {
      if (opt.empty()) continue;
      // However the option is spelled, a mount other users can see enforces the image's modes.
      if (opt == "allow_other" || opt == "allow_root") others_see = true;
      if ((opt == "suid" || opt == "dev") && !options.allow_setuid_and_devices) {
        return InvalidArgumentError("mount option \"" + opt +
                                    "\" would let an image's setuid files or device nodes take "
                                    "effect; ask for it with --allow-setuid-and-devices");
      }
      o += opt + ",";
    }
  }
  // Ours last, so they win over what the extra options say.
  o += "ro,subtype=lazyfs,fsname=" +
       EscapeOptionValue(options.fsname.empty() ? "lazyfs" : options.fsname);
  if (options.allow_other) o += ",allow_other";
  if (others_see) o += ",default_permissions";
  o += options.allow_setuid_and_devices ? ",suid,dev" : ",nosuid,nodev";
  return o;
}

// The kernel sizes buffered reads by the mount's readahead window, 128 KiB by default, which
// would cut a large sequential read into 128 KiB requests whatever max_pages allows. Root may
// widen it through the mount's backing device in sysfs (as `blockdev --setra` does for a disk);
// anyone else keeps the default, which is only slower. `real_mountpoint` must be resolved
// before mounting: resolving it now would stat the mount, which waits for the session loop.
void RaiseReadahead(const std::string& real_mountpoint, unsigned kib) {
  if (kib == 0) return;
  Result<std::string> table = ReadFileToString("/proc/self/mountinfo");
  if (!table.ok()) return;
  std::optional<MountInfo> info = FindMountIn(*table, real_mountpoint);
  if (!info || info->fstype != kMountType || info->device.empty()) return;
  const std::string path = "/sys/class/bdi/" + info->device + "/read_ahead_kb";
  const std::string value = std::to_string(std::min(kib, kReadaheadCeiling >> 10)) + "\n";
  Result<Fd> fd = OpenFile(path, O_WRONLY);
  Status s = fd.ok() ? WriteAll(fd->get(), value.data(), value.size()) : fd.status();
  if (!s.ok()) {
    LAZYFS_DLOG(kTag, "readahead of %s stays the kernel's default: %s", real_mountpoint.c_str(),
                s.ToString().c_str());
  }
}

}  // namespace lazyfs::fs
