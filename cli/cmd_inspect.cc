// lazyfs inspect: what an image reference resolves to.
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/output.h"

namespace lazyfs::cli {
namespace {

struct InspectArgs {
  ImageOptions image;
  std::string ref;
  bool raw = false;
  bool json = false;  // the output is JSON either way
};

Status Inspect(const InspectArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(PreparedImage image, PrepareImage(args.ref, args.image));
  if (args.raw) {
    LAZYFS_ASSIGN_OR_RETURN(std::string raw,
                            image.source->ReadSmallBlob(image.manifest, 4 << 20));
    std::fwrite(raw.data(), 1, raw.size(), stdout);
    return Status::Ok();
  }
  index::IndexOptions io;
  io.store = args.image.layout();
  LAZYFS_ASSIGN_OR_RETURN(auto idx, index::Index::Open(io));
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor d, idx->GetImage(image.manifest));
  LAZYFS_ASSIGN_OR_RETURN(auto tree, idx->OpenTree(image.manifest, *image.source));
  const index::TreeStats st = tree->Stats();
  // The reference may name a host path (oci:DIR), media types and the platform come from the
  // registry: outside strings, escaped as cli/output.h says.
  JsonObject o;
  nlohmann::json& j = o.json();
  o.Text("reference", image.ref.ToString());
  j["manifest_digest"] = d.manifest_digest.ToString();
  o.Text("manifest_media_type", d.manifest_media_type);
  j["config_digest"] = d.config_digest.ToString();
  o.Text("platform", d.platform);
  uint64_t total = 0;
  j["layers"] = nlohmann::json::array();
  for (const auto& l : d.layers) {
    JsonObject lo;
    lo.json()["digest"] = l.digest.ToString();
    lo.Text("media_type", l.media_type);
    lo.json()["size"] = l.size;
    if (l.diff_id) lo.json()["diff_id"] = l.diff_id->ToString();
    j["layers"].push_back(std::move(lo).Take());
    total += l.size;
  }
  j["compressed_size"] = total;
  j["tree"] = {{"inodes", st.inodes},
               {"directories", st.directories},
               {"regular_files", st.regular_files},
               {"content_bytes", st.content_bytes}};
  PrintJson(std::move(o).Take());
  return Status::Ok();
}

}  // namespace

void RegisterInspect(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Show an image's manifest digest, platform, layers and tree size as JSON\n\n"
      "Examples:\n"
      "  lazyfs inspect docker://127.0.0.1:5000/app:1.2\n"
      "  lazyfs inspect --raw oci:./layout:demo     # the manifest bytes as stored");
  AddImageOptions(*cmd, args->image);
  cmd->add_option("REF", args->ref, "Image reference")->required();
  cmd->add_flag("--raw", args->raw, "Print the raw manifest bytes");
  // Accepted as ls, stat and diff take it, so scripts can pass --json to every command.
  cmd->add_flag("--json", args->json, "JSON (the default output; there is no other)");
  cmd->callback([args, &exit_code] {
    Status s = Inspect(*args);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace lazyfs::cli
