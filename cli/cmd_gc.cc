// lazyfs gc: shrink the content cache. Removes content no stored image refers to, then the least
// recently used content until the cache fits in --cache-size. Running mounts are unaffected:
// they fetch evicted content again when it is read.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"

namespace lazyfs::cli {

void RegisterGc(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ImageOptions>();
  CLI::App* cmd = app.add_subcommand(
      "gc",
      "Remove cached file contents no image needs, and evict to a size limit\n\n"
      "Examples:\n"
      "  lazyfs gc\n"
      "  lazyfs gc --cache-size 2G");
  cmd->alias("prune");
  AddStoreOption(*cmd, options->store);
  cmd->add_option("--cache-size", options->cache_size,
                  "Evict least recently used content until the cache fits (e.g. 2G, 500M)")
      ->transform(CLI::AsSizeValue(false));
  cmd->callback([options, &exit_code] {
    index::IndexOptions io;
    io.store = options->layout();
    io.cache_size_bytes = options->cache_size;
    auto index = index::Index::Open(io);
    if (!index.ok()) {
      exit_code = ReportError(index.status());
      return;
    }
    auto report = (*index)->Gc();
    if (!report.ok()) {
      exit_code = ReportError(report.status());
      return;
    }
    auto blobs = PruneBlobs(io.store, **index);
    if (!blobs.ok()) {
      exit_code = ReportError(blobs.status());
      return;
    }
    std::printf("removed %llu objects (%llu bytes); kept %llu objects (%llu bytes)\n",
                static_cast<unsigned long long>(report->objects_removed),
                static_cast<unsigned long long>(report->bytes_removed),
                static_cast<unsigned long long>(report->objects_kept),
                static_cast<unsigned long long>(report->bytes_kept));
    std::printf("removed %llu blobs no stored image uses (%llu bytes)\n",
                static_cast<unsigned long long>(blobs->objects),
                static_cast<unsigned long long>(blobs->bytes));
    exit_code = 0;
  });
}

}  // namespace lazyfs::cli
