#include "tests/support/mkstargz.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>

namespace lazyfs::testing {
namespace {

// Runs a shell command line; its output (both streams) goes to *out.
int Run(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string TempDir() {
  char tmpl[] = "/tmp/lazyfs-mkstargz-XXXXXX";
  return ::mkdtemp(tmpl) ? std::string(tmpl) : std::string();
}

}  // namespace

Result<std::string> MkstargzBinary() {
  static std::mutex mu;
  static std::string path;
  std::lock_guard lock(mu);
  if (!path.empty()) return path;
  const char* src = std::getenv("LAZYFS_SOURCE_DIR");
  const std::string source = src && *src ? src : LAZYFS_TEST_SOURCE_DIR;
  const std::string dir = TempDir();
  if (dir.empty()) return InternalError("mkdtemp failed");
  std::string out;
  if (Run("command -v go", &out) != 0) {
    return FailedPreconditionError(
        "no Go toolchain: install golang-go and golang-github-containerd-stargz-snapshotter-dev "
        "(packaging/install-deps.sh) to build tests/support/mkstargz");
  }
  out.clear();
  const std::string cmd = "cd '" + source +
                          "' && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE='" + dir +
                          "/gocache' go build -o '" + dir + "/mkstargz' ./tests/support/mkstargz";
  if (Run(cmd, &out) != 0) {
    return FailedPreconditionError(
        "building tests/support/mkstargz failed (is "
        "golang-github-containerd-stargz-snapshotter-dev installed?): " +
        out);
  }
  path = dir + "/mkstargz";
  return path;
}

Result<StargzLayer> MakeStargz(std::string_view tar, StargzFormat format,
                               const std::string& prioritized, const std::string& toc_lie) {
  LAZYFS_ASSIGN_OR_RETURN(std::string tool, MkstargzBinary());
  const std::string dir = TempDir();
  if (dir.empty()) return InternalError("mkdtemp failed");
  {
    std::ofstream f(dir + "/in.tar", std::ios::binary);
    f.write(tar.data(), static_cast<std::streamsize>(tar.size()));
    if (!f) return InternalError("cannot write " + dir + "/in.tar");
  }
  std::string out;
  const int rc =
      Run(tool + (format == StargzFormat::kEstargz ? " estargz " : " zstdchunked ") + dir +
              "/in.tar " + dir + "/out '" + prioritized + "' '" + toc_lie + "'",
          &out);
  StargzLayer layer;
  std::ifstream f(dir + "/out", std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  layer.blob = ss.str();
  std::string ignored;
  Run("rm -rf '" + dir + "'", &ignored);
  if (rc != 0) return InternalError("mkstargz failed: " + out);
  const size_t space = out.find(' ');
  if (space == std::string::npos) return InternalError("mkstargz printed: " + out);
  std::string diff = out.substr(space + 1);
  while (!diff.empty() && (diff.back() == '\n' || diff.back() == '\r')) diff.pop_back();
  LAZYFS_ASSIGN_OR_RETURN(layer.toc_digest, Digest::Parse(out.substr(0, space)));
  LAZYFS_ASSIGN_OR_RETURN(layer.diff_id, Digest::Parse(diff));
  return layer;
}

}  // namespace lazyfs::testing
