// Unmount and the mount table: no FUSE library here, only umount2(2) and, for mounts the caller
// may not unmount itself (a user mount), the setuid fusermount3 helper.
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <vector>

#include "base/fd.h"
#include "base/text.h"
#include "fs/fs.h"
#include "fs/mount_table.h"

extern char** environ;

namespace lazyfs::fs {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' &&
        s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Runs `fusermount3 -u [-z] MOUNTPOINT` and waits for it.
Status RunFusermount(const std::string& mountpoint, bool lazy) {
  std::vector<std::string> argv_s = {"fusermount3", "-u"};
  if (lazy) argv_s.push_back("-z");
  argv_s.push_back("--");
  argv_s.push_back(mountpoint);
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, "fusermount3", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return ErrnoError(rc, "running fusermount3 to unmount " + mountpoint);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return ErrnoError(errno, "waiting for fusermount3");
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return Status::Ok();
  return Status(StatusCode::kInternal,
                "fusermount3 -u " + mountpoint + " failed (" +
                    (WIFEXITED(wstatus) ? "exit status " + std::to_string(WEXITSTATUS(wstatus))
                                        : "killed by signal " + std::to_string(WTERMSIG(wstatus))) +
                    ")");
}

}  // namespace

std::string NormalizePath(const std::string& path) {
  std::string abs = path;
  if (abs.empty() || abs[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) != nullptr) abs = std::string(cwd) + "/" + path;
  }
  std::vector<std::string> parts;
  std::stringstream ss(abs);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::optional<MountInfo> FindMountIn(std::string_view mountinfo, std::string_view path) {
  std::optional<MountInfo> found;
  size_t pos = 0;
  while (pos < mountinfo.size()) {
    size_t end = mountinfo.find('\n', pos);
    if (end == std::string_view::npos) end = mountinfo.size();
    std::string_view line = mountinfo.substr(pos, end - pos);
    pos = end + 1;
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    const std::vector<std::string> f = Split(line, ' ');
    if (f.size() < 5 || Unescape(f[4]) != path) continue;
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 2 >= f.size()) continue;
    // Later lines are mounted on top of earlier ones: the last match is what the path shows.
    found = MountInfo{Unescape(f[4]), Unescape(f[dash + 1]), Unescape(f[dash + 2]),
                      std::string(f[2])};
  }
  return found;
}

Result<std::optional<MountInfo>> FindMount(const std::string& path) {
  std::string abs;
  if (char* real = realpath(path.c_str(), nullptr)) {
    abs = real;
    free(real);
  } else {
    abs = NormalizePath(path);
  }
  LAZYFS_ASSIGN_OR_RETURN(std::string table, ReadFileToString("/proc/self/mountinfo"));
  return FindMountIn(table, abs);
}

Status Unmount(const std::string& mountpoint, bool lazy) {
  const std::string what = "cannot unmount " + mountpoint;
  // Only lazyfs mounts: `lazyfs umount /home` must not unmount /home.
  // Without a readable mount table (no /proc), umount2's own errors are all there is.
  Result<std::optional<MountInfo>> info = FindMount(mountpoint);
  std::string target = mountpoint;
  if (info.ok()) {
    if (!info->has_value()) {
      return Status(StatusCode::kInvalidArgument, what + ": not mounted", EINVAL);
    }
    if ((*info)->fstype != kMountType) {
      return Status(StatusCode::kFailedPrecondition,
                    what + ": it is a " + (*info)->fstype + " mount, not a lazyfs mount", EINVAL);
    }
    target = (*info)->mountpoint;
  }
  if (umount2(target.c_str(), lazy ? MNT_DETACH : 0) == 0) return Status::Ok();
  const int err = errno;
  switch (err) {
    case EINVAL:
      return Status(StatusCode::kInvalidArgument, what + ": not mounted", EINVAL);
    case ENOENT:
      return ErrnoError(err, what);
    case EBUSY:
      return Status(StatusCode::kFailedPrecondition,
                    what + ": the filesystem is busy (files are open or a process is inside it; "
                           "--lazy detaches it now and unmounts when it is no longer used)",
                    EBUSY);
    case EPERM:
      // A user mount: the setuid helper may unmount what the caller mounted.
      return RunFusermount(target, lazy).WithContext(what);
    default:
      return ErrnoError(err, what);
  }
}

}  // namespace lazyfs::fs
