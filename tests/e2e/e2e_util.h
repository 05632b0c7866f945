// Running the lazyfs binary and managing mounts from end-to-end tests.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "tests/support/listing.h"

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
// The whole content of a file (empty when it cannot be read).
std::string Slurp(const std::string& path);
// True when `text` holds what a terminal would obey rather than show: a C0 control other than
// the newline, DEL, a C1 control (as UTF-8, U+0080..U+009F, or as a bare byte 0x80..0x9f an
// 8-bit terminal takes), or anything that is not UTF-8.
bool HasTerminalControls(const std::string& text);
// Loop-mounts an ext4 image written by lazyfs read-only at mountpoint (created if absent), lists
// it and unmounts. The writer's /lost+found, the one expected difference from the image's tree,
// is removed along with the link it adds to the root; an image without one is an error.
Result<Listing> ListExt4Image(const std::string& image, const std::string& mountpoint);

}  // namespace lazyfs::testing
