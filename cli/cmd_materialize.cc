// lazyfs materialize: the image's merged tree as an ext4 file a VM can boot.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include "cli/commands.h"
#include "cli/common.h"
#include "convert/convert.h"

namespace lazyfs::cli {
namespace {

struct MaterializeArgs {
  ImageOptions image;
  std::string ref;
  std::string out;
  std::string size;  // bytes, or with a K/M/G/T suffix; empty or "auto"
  std::string label;
  double free_percent = 20;  // --free: free space as a percentage of the content (auto size)
  bool read_only = false;    // --read-only: no journal, no spare space
};

// SOURCE_DATE_EPOCH as reproducible-builds.org defines it: decimal seconds since the epoch.
Result<std::optional<int64_t>> SourceDateEpoch() {
  const char* sde = std::getenv("SOURCE_DATE_EPOCH");
  if (sde == nullptr || *sde == '\0') return std::optional<int64_t>{};
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(sde, &end, 10);
  if (errno != 0 || *end != '\0') {
    return InvalidArgumentError(std::string("SOURCE_DATE_EPOCH=\"") + sde +
                                "\" is not a number of seconds");
  }
  return std::optional<int64_t>{v};
}

Result<uint64_t> ParseSize(const std::string& text) {
  if (text.empty() || text == "auto") return uint64_t{0};
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str()) {
    return InvalidArgumentError("bad --size \"" + text + "\": expected auto or N[K|M|G|T]");
  }
  uint64_t mult = 1;
  std::string suffix(end);
  if (suffix == "K" || suffix == "k") mult = 1ull << 10;
  else if (suffix == "M" || suffix == "m") mult = 1ull << 20;
  else if (suffix == "G" || suffix == "g") mult = 1ull << 30;
  else if (suffix == "T" || suffix == "t") mult = 1ull << 40;
  else if (!suffix.empty()) {
    return InvalidArgumentError("bad --size \"" + text + "\": expected auto or N[K|M|G|T]");
  }
  return static_cast<uint64_t>(v) * mult;
}

Status Materialize(const MaterializeArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(uint64_t size, ParseSize(args.size));
  LAZYFS_ASSIGN_OR_RETURN(PreparedImage image, PrepareImage(args.ref, args.image));
  LAZYFS_ASSIGN_OR_RETURN(OpenedTree opened, OpenTree(image, args.image));
  convert::Ext4Options eo;
  eo.size_bytes = size;
  eo.label = args.label;
  eo.free_fraction = args.free_percent / 100.0;
  eo.read_only = args.read_only;
  // The same manifest gives the same UUID and hash seed, and times from SOURCE_DATE_EPOCH or
  // the tree: the same image digest and lazyfs version give a byte-identical file.
  eo.seed = image.manifest.ToString();
  LAZYFS_ASSIGN_OR_RETURN(eo.fs_time, SourceDateEpoch());
  LAZYFS_ASSIGN_OR_RETURN(
      convert::Ext4Report report,
      convert::WriteExt4(*opened.tree, args.out, eo, MakeProgress(args.image.quiet)));
  if (!args.image.quiet) {
    std::printf("%s: ext4, %llu bytes, %llu inodes, %llu bytes of content, from %s (%s)\n",
                args.out.c_str(), static_cast<unsigned long long>(report.image_bytes),
                static_cast<unsigned long long>(report.inodes),
                static_cast<unsigned long long>(report.data_bytes),
                image.ref.ToString().c_str(), image.manifest.ToString().c_str());
  }
  return Status::Ok();
}

}  // namespace

void RegisterMaterialize(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<MaterializeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "materialize",
      "Write the image's merged tree as an ext4 image\n\n"
      "Written directly with libext2fs (no staging directory, no root), with the owners,\n"
      "modes, times, devices and xattrs the layers record. The file appears only when complete.\n"
      "Examples:\n"
      "  lazyfs materialize docker://127.0.0.1:5000/app:1.2 app.img\n"
      "  lazyfs materialize --size 2G --label rootfs oci:./layout:demo rootfs.img");
  AddImageOptions(*cmd, args->image);
  cmd->add_option("REF", args->ref, "Image reference")->required();
  cmd->add_option("OUT", args->out, "Output image file")->required();
  cmd->add_option("--size", args->size, "Image size: auto (default) or N[K|M|G|T]");
  cmd->add_option("--label", args->label, "Filesystem label (up to 16 bytes)");
  cmd->add_option("--free", args->free_percent,
                  "With --size auto: free space as a percentage of the content (default 20)")
      ->check(CLI::Range(0.0, 1000.0));
  cmd->add_flag("--read-only", args->read_only,
                "Layout for read-only use: no journal, minimal free space and inodes");
  cmd->callback([args, &exit_code] {
    Status s = Materialize(*args);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace lazyfs::cli
