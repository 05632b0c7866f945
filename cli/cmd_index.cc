// lazyfs index push: publish an image's layer indexes to its registry, so that a first mount
// anywhere else is lazy at once.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/index_artifacts.h"

namespace lazyfs::cli {
namespace {

struct PushArgs {
  ImageOptions image;
  std::string ref;
};

Status Push(PushArgs args) {
  // What is published must come from the layers themselves, never from another artifact.
  args.image.index_artifacts = false;
  LAZYFS_ASSIGN_OR_RETURN(PreparedImage image, PrepareImage(args.ref, args.image));
  if (image.ref.transport != fetch::Transport::kDocker) {
    return InvalidArgumentError(image.ref.ToString() +
                                ": index artifacts are published to a registry (docker://)");
  }
  index::IndexOptions io;
  io.store = args.image.layout();
  LAZYFS_ASSIGN_OR_RETURN(auto idx, index::Index::Open(io));
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor d, idx->GetImage(image.manifest));
  LAZYFS_ASSIGN_OR_RETURN(fetch::Descriptor pushed, PushIndexArtifact(*idx, *image.source, d));
  std::printf("%s\n", pushed.digest.ToString().c_str());
  if (!args.image.quiet) {
    std::fprintf(stderr, "lazyfs: index artifact %s (%llu bytes) published for %s\n",
                 pushed.digest.ToString().c_str(), static_cast<unsigned long long>(pushed.size),
                 d.manifest_digest.ToString().c_str());
  }
  return Status::Ok();
}

}  // namespace

void RegisterIndex(CLI::App& app, int& exit_code) {
  CLI::App* cmd = app.add_subcommand(
      "index", "Index artifacts: an image's layer indexes, shared through its registry");
  cmd->require_subcommand(1);
  auto args = std::make_shared<PushArgs>();
  CLI::App* push = cmd->add_subcommand(
      "push",
      "Index the image (from its layers) if needed and publish its layer indexes to its\n"
      "registry as an OCI artifact referring to the image; prints the artifact's digest.\n"
      "A first mount, materialize or ls of the image elsewhere then reads no layer to index it.\n\n"
      "Example:\n"
      "  lazyfs index push docker://registry.example:5000/app:1.2");
  AddImageOptions(*push, args->image);
  push->add_option("REF", args->ref, "Image reference (docker://)")->required();
  push->callback([args, &exit_code] {
    Status s = Push(*args);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace lazyfs::cli
