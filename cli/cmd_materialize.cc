// lazyfs materialize: the image's merged tree as an ext4 file a VM can boot. Parses the options
// and hands a plan to convert::Materialize.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "convert/convert.h"
#include "index/tree.h"

namespace lazyfs::cli {
namespace {

struct MaterializeArgs {
  ImageOptions image;
  std::string ref;
  std::string out;
  std::string size;  // bytes, or with a K/M/G/T suffix; empty or "auto"
  std::string label;
  double free_percent = 20;         // --free: free space as a percentage of the content (auto size)
  bool read_only = false;           // --read-only: no journal, no spare space
  std::string verity = "separate";  // --verity: separate (OUT.verity), append, none
  std::vector<std::string> adds;    // --add HOSTPATH:GUESTPATH[:uid:gid:mode]
  std::vector<std::string> add_tars;  // --add-tar FILE.tar, applied before the --add files
  std::string file_mode = "0600";     // --file-mode: of OUT and OUT.verity, octal
};

Result<mode_t> ParseFileMode(const std::string& text) {
  char* end = nullptr;
  const unsigned long mode = std::strtoul(text.c_str(), &end, 8);
  if (text.empty() || *end != '\0' || mode > 0777) {
    return InvalidArgumentError("bad --file-mode \"" + text + "\": expected octal 0000..0777");
  }
  return static_cast<mode_t>(mode);
}

// Parses one --add and reads the host file.
Result<index::AddedFile> ParseAdd(const std::string& spec) {
  std::vector<std::string> f;
  size_t at = 0;
  for (;;) {
    const size_t colon = spec.find(':', at);
    f.push_back(spec.substr(at, colon == std::string::npos ? std::string::npos : colon - at));
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  const auto bad = [&spec](const std::string& why) {
    return InvalidArgumentError("bad --add \"" + spec + "\": " + why +
                                " (expected HOSTPATH:GUESTPATH[:uid:gid:mode])");
  };
  if (f.size() != 2 && f.size() != 5) return bad("wrong number of fields");
  if (f[0].empty() || f[1].empty() || f[1][0] != '/') {
    return bad("paths must be given, GUESTPATH absolute");
  }
  index::AddedFile g;
  g.guest_path = f[1];
  if (f.size() == 5) {
    try {
      size_t used = 0;
      g.uid = static_cast<uint32_t>(std::stoul(f[2], &used, 10));
      if (used != f[2].size()) return bad("uid is not a number");
      g.gid = static_cast<uint32_t>(std::stoul(f[3], &used, 10));
      if (used != f[3].size()) return bad("gid is not a number");
      g.mode = static_cast<uint32_t>(std::stoul(f[4], &used, 8));
      if (used != f[4].size() || g.mode > 07777) return bad("mode is not octal 0..7777");
    } catch (const std::exception&) {
      return bad("uid, gid and mode must be numbers");
    }
  }
  struct stat st;
  if (::stat(f[0].c_str(), &st) != 0) return ErrnoError(errno, "--add: stat " + f[0]);
  if (!S_ISREG(st.st_mode)) return bad(f[0] + " is not a regular file");
  if (f.size() == 2) g.mode = st.st_mode & 07777;
  LAZYFS_ASSIGN_OR_RETURN(g.content, ReadFileToString(f[0], size_t{1} << 30));
  return g;
}

// Progress on a terminal: stage, bytes done of total, rate and ETA, one line rewritten in place.
// Nothing when stderr is not a TTY or -q. Rate and ETA are per stage (write, then verity).
ProgressFn RateProgress(bool quiet) {
  if (quiet || !::isatty(STDERR_FILENO)) return nullptr;
  struct State {
    std::string stage;
    std::chrono::steady_clock::time_point start, last;
  };
  auto st = std::make_shared<State>();
  return [st](const Progress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (p.stage != st->stage) {
      st->stage = std::string(p.stage);
      st->start = now;
      st->last = {};
    }
    const bool done = p.total != 0 && p.done >= p.total;
    if (!done && now - st->last < std::chrono::milliseconds(200)) return;
    st->last = now;
    const double secs = std::chrono::duration<double>(now - st->start).count();
    const double mib = 1024.0 * 1024.0;
    const double rate = secs > 0 ? static_cast<double>(p.done) / secs : 0;
    const double eta =
        rate > 0 && p.total > p.done ? static_cast<double>(p.total - p.done) / rate : 0;
    std::fprintf(stderr, "\r%-7s %9.1f / %.1f MiB  %7.1f MiB/s  ETA %2d:%02d ", st->stage.c_str(),
                 static_cast<double>(p.done) / mib, static_cast<double>(p.total) / mib, rate / mib,
                 static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
    if (done) std::fputc('\n', stderr);
    std::fflush(stderr);
  };
}

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

// --size: auto, or a size CLI11 reads (N, NK, NM, NG, NT, also KiB/MB forms; K = 1024).
Result<uint64_t> ParseSize(const std::string& text) {
  if (text.empty() || text == "auto") return uint64_t{0};
  const Status bad =
      InvalidArgumentError("bad --size \"" + text + "\": expected auto or N[K|M|G|T]");
  std::string value = text;
  try {
    // The validator reports some bad values in its result and throws for others.
    if (!CLI::AsSizeValue(/*kb_is_1000=*/false)(value).empty()) return bad;
    return static_cast<uint64_t>(std::stoull(value));
  } catch (const std::exception&) {  // CLI::ValidationError, std::stoull
    return bad;
  }
}

Result<convert::VerityMode> ParseVerity(const std::string& text) {
  if (text == "separate") return convert::VerityMode::kSeparate;
  if (text == "append") return convert::VerityMode::kAppend;
  if (text == "none") return convert::VerityMode::kNone;
  return InvalidArgumentError("bad --verity \"" + text + "\": expected separate, append or none");
}

Status Materialize(const MaterializeArgs& args) {
  convert::MaterializePlan plan;
  LAZYFS_ASSIGN_OR_RETURN(plan.ext4.size_bytes, ParseSize(args.size));
  LAZYFS_ASSIGN_OR_RETURN(plan.verity, ParseVerity(args.verity));
  // Every file is read: an image indexed now keeps what indexing decompressed, and one indexed
  // before gets its missing content a layer at a time, layers in parallel, before writing.
  ImageOptions reads_all = args.image;
  reads_all.cache_content = true;
  LAZYFS_ASSIGN_OR_RETURN(PreparedImage image, PrepareImage(args.ref, reads_all));
  LAZYFS_ASSIGN_OR_RETURN(OpenedTree opened, OpenTree(image, args.image));
  LAZYFS_RETURN_IF_ERROR(
      opened.index->WarmContent(image.manifest, *image.source, 0, MakeProgress(args.image.quiet)));
  LAZYFS_ASSIGN_OR_RETURN(plan.source_date_epoch, SourceDateEpoch());
  for (const std::string& spec : args.adds) {
    LAZYFS_ASSIGN_OR_RETURN(index::AddedFile g, ParseAdd(spec));
    plan.additions.files.push_back(std::move(g));
  }
  for (const std::string& path : args.add_tars) plan.additions.tars.push_back({path, {}});
  plan.tree = opened.tree.get();
  plan.source = image.ref.ToString();
  plan.manifest = image.manifest;
  plan.ext4.label = args.label;
  plan.ext4.free_fraction = args.free_percent / 100.0;
  plan.ext4.read_only = args.read_only;
  LAZYFS_ASSIGN_OR_RETURN(plan.ext4.file_mode, ParseFileMode(args.file_mode));
  plan.out_path = args.out;
  LAZYFS_ASSIGN_OR_RETURN(convert::MaterializeReport report,
                          convert::Materialize(plan, RateProgress(args.image.quiet)));
  if (args.image.quiet) return Status::Ok();
  if (report.verity) {
    const bool append = plan.verity == convert::VerityMode::kAppend;
    std::printf(
        "%s: dm-verity root hash %s (salt %s, %s%s)\n", args.out.c_str(),
        report.verity->root_hash.c_str(), report.verity->salt.c_str(),
        append ? "appended at offset " : "in ",
        append ? std::to_string(report.verity->hash_offset).c_str() : report.hash_path.c_str());
  }
  std::printf("%s: ext4, %llu bytes, %llu inodes, %llu bytes of content, from %s (%s)\n",
              args.out.c_str(), static_cast<unsigned long long>(report.ext4.image_bytes),
              static_cast<unsigned long long>(report.ext4.inodes),
              static_cast<unsigned long long>(report.ext4.data_bytes), image.ref.ToString().c_str(),
              image.manifest.ToString().c_str());
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
      "Beside it: OUT.verity (dm-verity hash tree) and OUT.json (source, digests, root hash).\n"
      "Examples:\n"
      "  lazyfs materialize docker://127.0.0.1:5000/app:1.2 app.img\n"
      "  lazyfs materialize --size 2G --label rootfs oci:./layout:demo rootfs.img\n"
      "  lazyfs materialize --add-tar agent.tar --add key.pub:/root/.ssh/authorized_keys:0:0:600 "
      "\\\n"
      "      docker://127.0.0.1:5000/app:1.2 vm.img");
  AddImageOptions(*cmd, args->image);
  cmd->add_option("REF", args->ref, "Image reference")->required();
  cmd->add_option("OUT", args->out, "Output image file")->required();
  cmd->add_option("--size", args->size, "Image size: auto (default) or N[K|M|G|T]");
  cmd->add_option("--label", args->label, "Filesystem label (up to 16 bytes)");
  cmd->add_option("--free", args->free_percent,
                  "With --size auto: free space as a percentage of the content (default 20)")
      ->check(CLI::Range(0.0, 1000.0));
  cmd->add_option("--verity", args->verity,
                  "dm-verity hash tree: separate (OUT.verity, default), append (after the "
                  "filesystem, see OUT.json for the offset) or none");
  cmd->add_option("--add", args->adds,
                  "Add a host file to the guest: HOSTPATH:GUESTPATH[:uid:gid:mode] (repeatable; "
                  "mode octal; default owner 0:0 and the host file's mode)");
  cmd->add_option("--add-tar", args->add_tars,
                  "Apply a tar (plain, gzip or zstd) as one more layer over the image's, with "
                  "OCI whiteouts and opaque directories (repeatable, in order; before any --add)")
      ->check(CLI::ExistingFile)
      ->allow_extra_args(false);  // one file per --add-tar: IMAGE/REF stay positional
  cmd->add_option("--file-mode", args->file_mode,
                  "Permissions of OUT and OUT.verity, octal (default 0600: the image holds the "
                  "image's root-only files)");
  cmd->add_flag("--read-only", args->read_only,
                "Layout for read-only use: no journal, minimal free space and inodes");
  cmd->callback([args, &exit_code] {
    Status s = Materialize(*args);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace lazyfs::cli
