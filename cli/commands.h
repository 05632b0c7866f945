// One Register function per subcommand (one source file each); main() only parses and returns
// the exit code the chosen command left in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace lazyfs::cli {

void RegisterMount(CLI::App& app, int& exit_code);        // mount, umount
void RegisterMaterialize(CLI::App& app, int& exit_code);  // materialize
void RegisterInspect(CLI::App& app, int& exit_code);      // inspect
void RegisterGc(CLI::App& app, int& exit_code);           // gc
void RegisterBrowse(CLI::App& app, int& exit_code);       // ls, cat, stat, diff

}  // namespace lazyfs::cli
