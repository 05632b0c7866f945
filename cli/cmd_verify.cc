// lazyfs verify: re-checks a materialized image against its sidecar (OUT.json) and, given a
// reference, against the index (convert::VerifyImage and convert::VerifyFiles).
//
// Against the sidecar: the image's size, and the dm-verity root hash recomputed from the image's
// bytes (the stored bottom level names the data blocks that changed). Against REF: every file's
// metadata and content digest, read from the image with libext2fs (no mount, no root).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/text.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "convert/convert.h"

namespace lazyfs::cli {
namespace {

struct VerifyArgs {
  ImageOptions image;
  std::string img;
  std::string ref;                    // optional
  std::vector<std::string> add_tars;  // the tars the image was materialized with, again
};

// Prints the findings on stdout; returns how many were problems. A finding names paths from
// the image, so it is escaped as the error printer escapes messages.
size_t Print(const convert::VerifyFindings& f) {
  for (const std::string& line : f.lines) {
    std::printf("%s\n", EscapeBytes(line, Escape::kMessage).c_str());
  }
  return f.problems;
}

Status Verify(const VerifyArgs& args) {
  const ProgressFn progress = MakeProgress(args.image.quiet);
  LAZYFS_ASSIGN_OR_RETURN(convert::VerifyFindings image, convert::VerifyImage(args.img, progress));
  size_t problems = Print(image);
  if (!args.ref.empty()) {
    LAZYFS_ASSIGN_OR_RETURN(PreparedImage prepared, PrepareImage(args.ref, args.image));
    LAZYFS_ASSIGN_OR_RETURN(OpenedTree opened, OpenTree(prepared, args.image));
    LAZYFS_ASSIGN_OR_RETURN(
        convert::VerifyFindings files,
        convert::VerifyFiles(args.img, *opened.tree, args.ref, prepared.manifest, args.add_tars));
    problems += Print(files);
  }
  std::fflush(stdout);
  if (problems != 0) {
    return DataLossError(args.img + ": " + std::to_string(problems) +
                         " difference(s), listed above");
  }
  return Status::Ok();
}

}  // namespace

void RegisterVerify(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "verify",
      "Re-check a materialized image against its sidecar and, given REF, the index\n\n"
      "Recomputes the dm-verity root hash from IMAGE (naming the data blocks that changed) and\n"
      "compares it with IMAGE.json; with REF, also compares every file in IMAGE (read with\n"
      "libext2fs, no mount) with the image's index: metadata, xattrs and content digests,\n"
      "after applying the additions IMAGE.json records (give the tars again with --add-tar).\n"
      "Exit status 0 when everything matches, 1 otherwise.\n"
      "Examples:\n"
      "  lazyfs verify app.img\n"
      "  lazyfs verify app.img docker://127.0.0.1:5000/app:1.2\n"
      "  lazyfs verify --add-tar agent.tar vm.img docker://127.0.0.1:5000/app:1.2");
  AddImageOptions(*cmd, args->image);
  cmd->add_option("IMAGE", args->img, "Image written by lazyfs materialize")->required();
  cmd->add_option("REF", args->ref, "Image reference to compare the files with");
  cmd->add_option("--add-tar", args->add_tars,
                  "With REF: the tars IMAGE was materialized with (--add-tar, same order); "
                  "--add files are rebuilt from IMAGE.json")
      ->check(CLI::ExistingFile)
      ->allow_extra_args(false);  // one file per --add-tar: IMAGE/REF stay positional
  cmd->callback([args, &exit_code] {
    Status s = Verify(*args);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace lazyfs::cli
