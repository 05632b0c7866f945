// One Register function per subcommand (one source file each); main() only parses and returns
// the exit code the chosen command left in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace lazyfs::cli {

void RegisterMount(CLI::App& app, int& exit_code);        // mount, umount
void RegisterMaterialize(CLI::App& app, int& exit_code);  // materialize
void RegisterInspect(CLI::App& app, int& exit_code);      // inspect
void RegisterBrowse(CLI::App& app, int& exit_code);       // ls, cat, stat, diff
void RegisterVerify(CLI::App& app, int& exit_code);       // verify
void RegisterGc(CLI::App& app, int& exit_code);           // gc
void RegisterStore(CLI::App& app, int& exit_code);        // images, rmi, fsck
void RegisterStats(CLI::App& app, int& exit_code);        // stats
void RegisterIndex(CLI::App& app, int& exit_code);        // index push

}  // namespace lazyfs::cli
