#include "tests/e2e/e2e_util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "base/text.h"

namespace lazyfs::testing {

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

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

Spawned Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  Spawned p;
  p.dir = MakeTempDir("lazyfs-run");
  const std::string out_path = p.dir + "/out", err_path = p.dir + "/err";
  p.pid = ::fork();
  if (p.pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  return p;
}

Spawned SpawnLazyfs(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> argv{LazyfsBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return Spawn(argv, env);
}

CommandResult Wait(Spawned& p) {
  CommandResult r;
  int status = 0;
  while (::waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = Slurp(p.dir + "/out");
  r.err = Slurp(p.dir + "/err");
  ::unlink((p.dir + "/out").c_str());
  ::unlink((p.dir + "/err").c_str());
  ::rmdir(p.dir.c_str());
  p.pid = -1;
  return r;
}

CommandResult RunCommand(const std::vector<std::string>& argv) {
  Spawned p = Spawn(argv);
  return Wait(p);
}

CommandResult RunLazyfs(const std::vector<std::string>& args) {
  Spawned p = SpawnLazyfs(args);
  return Wait(p);
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

bool HasTerminalControls(const std::string& text) {
  // Valid UTF-8 has no bare 0x80..0x9f byte; its C1 controls are 0xc2 then 0x80..0x9f.
  if (!IsUtf8(text)) return true;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n') || c == 0x7f) return true;
    if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) < 0xa0) {
      return true;
    }
  }
  return false;
}

}  // namespace lazyfs::testing
