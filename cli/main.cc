// lazyfs: mount OCI images lazily over FUSE, or freeze them into verified ext4 images.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "lazyfs: OCI container images as read-only filesystems, fetched on demand.\n\n"
      "Examples:\n"
      "  lazyfs mount docker://127.0.0.1:5000/demo:latest /mnt/demo\n"
      "  lazyfs materialize oci:./layout:demo demo.img\n"
      "  lazyfs umount /mnt/demo",
      "lazyfs"};
  app.set_version_flag("--version", "lazyfs " LAZYFS_VERSION);
  app.require_subcommand(1);
  int exit_code = 0;
  lazyfs::cli::RegisterMount(app, exit_code);
  lazyfs::cli::RegisterMaterialize(app, exit_code);
  lazyfs::cli::RegisterInspect(app, exit_code);
  lazyfs::cli::RegisterBrowse(app, exit_code);
  lazyfs::cli::RegisterVerify(app, exit_code);
  lazyfs::cli::RegisterGc(app, exit_code);
  lazyfs::cli::RegisterStore(app, exit_code);
  lazyfs::cli::RegisterStats(app, exit_code);
  lazyfs::cli::RegisterIndex(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    // Usage errors exit 2, as other tools do; --help and --version exit 0.
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
