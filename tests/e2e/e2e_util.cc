#include "tests/e2e/e2e_util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace lazyfs::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::string LazyfsBinary() {
  if (const char* dir = std::getenv("LAZYFS_BINARY_DIR"); dir && *dir) {
    return std::string(dir) + "/cli/lazyfs";
  }
  // The test binary lives in BUILD/tests/e2e/.
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  std::string path(exe, n > 0 ? static_cast<size_t>(n) : 0);
  for (int i = 0; i < 3 && !path.empty(); ++i) path.resize(path.rfind('/'));
  return path + "/cli/lazyfs";
}

CommandResult RunCommand(const std::vector<std::string>& argv) {
  const std::string dir = MakeTempDir("lazyfs-run");
  const std::string out_path = dir + "/out", err_path = dir + "/err";
  CommandResult r;
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = Slurp(out_path);
  r.err = Slurp(err_path);
  ::unlink(out_path.c_str());
  ::unlink(err_path.c_str());
  ::rmdir(dir.c_str());
  return r;
}

CommandResult RunLazyfs(const std::vector<std::string>& args) {
  std::vector<std::string> argv{LazyfsBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

bool IsMountpoint(const std::string& path) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ls(line);
    std::string id, parent, dev, root, mp;
    ls >> id >> parent >> dev >> root >> mp;
    if (mp == path) return true;
  }
  return false;
}

void ForceUnmount(const std::string& path) {
  for (int i = 0; i < 3 && IsMountpoint(path); ++i) ::umount2(path.c_str(), MNT_DETACH);
}

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

Result<Listing> ListExt4Image(const std::string& image, const std::string& mountpoint) {
  ::mkdir(mountpoint.c_str(), 0755);
  CommandResult m = RunCommand({"mount", "-o", "loop,ro", image, mountpoint});
  if (m.exit_code != 0) {
    return InternalError("mount -o loop,ro " + image + " (needs root): " + m.err);
  }
  Result<Listing> got = ListDirectory(mountpoint);
  ForceUnmount(mountpoint);
  if (!got.ok()) return got.status();
  if (!got->count("/lost+found")) return InternalError(image + " has no /lost+found");
  got->erase("/lost+found");
  got->at("/").nlink -= 1;
  return got;
}

}  // namespace lazyfs::testing
