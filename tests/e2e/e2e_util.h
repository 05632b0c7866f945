// Running the lazyfs binary and managing mounts from end-to-end tests.
#pragma once

#include <string>
#include <vector>

namespace lazyfs::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Path of the built lazyfs binary: $LAZYFS_BINARY_DIR/cli/lazyfs, else the build tree's.
std::string LazyfsBinary();
// Runs argv (argv[0] is searched in PATH unless it has a '/'), capturing stdout and stderr.
CommandResult RunCommand(const std::vector<std::string>& argv);
// Runs the lazyfs binary with args.
CommandResult RunLazyfs(const std::vector<std::string>& args);

// A process started without waiting for it (to race it against others, or to kill it).
struct Spawned {
  int pid = -1;
  std::string dir;  // holds its stdout and stderr
};
// Starts argv (extra environment entries "K=V" in env) with stdout/stderr captured.
Spawned Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});
Spawned SpawnLazyfs(const std::vector<std::string>& args, const std::vector<std::string>& env = {});
// Waits for it; exit_code is 128+N when it died of signal N.
CommandResult Wait(Spawned& p);
bool IsMountpoint(const std::string& path);
// Best effort: unmount if mounted (used in TearDown).
void ForceUnmount(const std::string& path);
std::string MakeTempDir(const std::string& prefix);

}  // namespace lazyfs::testing
