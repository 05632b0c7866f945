// lazyfs materialize: the image's merged tree as an ext4 file a VM can boot.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <vector>

#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "cli/common.h"
#include "base/digest.h"
#include "base/fd.h"
#include "convert/convert.h"
#include "index/layer_overlay.h"

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
  std::string verity = "separate";  // --verity: separate (OUT.verity), append, none
  std::vector<std::string> adds;    // --add HOSTPATH:GUESTPATH[:uid:gid:mode]
  std::vector<std::string> add_tars;  // --add-tar FILE.tar, applied before the --add files
};

// Parses one --add and reads the host file.
Result<convert::GuestFile> ParseAdd(const std::string& spec) {
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
  if (f[0].empty() || f[1].empty() || f[1][0] != '/') return bad("paths must be given, GUESTPATH absolute");
  convert::GuestFile g;
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

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Writes text to path through a temporary sibling renamed into place.
Status WriteSidecar(const std::string& path, const std::string& text) {
  return WriteFileAtomic(path, text).WithContext("while writing " + path);
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
    const double eta = rate > 0 && p.total > p.done ? static_cast<double>(p.total - p.done) / rate : 0;
    std::fprintf(stderr, "\r%-7s %9.1f / %.1f MiB  %7.1f MiB/s  ETA %2d:%02d ", st->stage.c_str(),
                 static_cast<double>(p.done) / mib, static_cast<double>(p.total) / mib, rate / mib,
                 static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
    if (done) std::fputc('\n', stderr);
    std::fflush(stderr);
  };
}

// Removes what a failed materialize left (best effort: the error being reported matters more).
void RemoveOutputs(const std::string& out) {
  for (const std::string& p : {out, out + ".verity", out + ".json"}) ::unlink(p.c_str());
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
  // Every file is read: an image indexed now keeps what indexing decompressed, and one indexed
  // before gets its missing content a layer at a time, layers in parallel, before writing.
  ImageOptions reads_all = args.image;
  reads_all.cache_content = true;
  LAZYFS_ASSIGN_OR_RETURN(PreparedImage image, PrepareImage(args.ref, reads_all));
  LAZYFS_ASSIGN_OR_RETURN(OpenedTree opened, OpenTree(image, args.image));
  LAZYFS_RETURN_IF_ERROR(opened.index->WarmContent(image.manifest, *image.source, 0,
                                                   MakeProgress(args.image.quiet)));
  LAZYFS_ASSIGN_OR_RETURN(std::optional<int64_t> sde, SourceDateEpoch());
  // Guest additions: one more layer, recorded in the sidecar and mixed into the seed.
  std::vector<convert::GuestFile> adds;
  nlohmann::ordered_json additions = nlohmann::ordered_json::array();
  for (const std::string& spec : args.adds) {
    LAZYFS_ASSIGN_OR_RETURN(convert::GuestFile g, ParseAdd(spec));
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", g.mode);
    additions.push_back({{"guest_path", g.guest_path},
                         {"sha256", Sha256Of(g.content).ToString()},
                         {"size", g.content.size()},
                         {"uid", g.uid},
                         {"gid", g.gid},
                         {"mode", mode}});
    adds.push_back(std::move(g));
  }
  const index::Tree* tree = opened.tree.get();
  // Added tars: more layers over the image's, in command-line order, with the image layers'
  // rules (whiteouts, opaque directories, hardlinks, every file type). Recorded by sha256; the
  // seed takes only the digests, so renaming a tar does not change the image.
  std::unique_ptr<index::Tree> layered;
  nlohmann::ordered_json added_tars = nlohmann::ordered_json::array();
  std::string tar_digests;
  if (!args.add_tars.empty()) {
    std::vector<index::OverlayTar> tars;
    for (const std::string& path : args.add_tars) tars.push_back({path, {}});
    index::LayerReadOptions ro;
    ro.max_uncompressed_bytes = index::kAddedTarMaxBytes;  // tar content is held in memory
    Result<std::unique_ptr<index::Tree>> t = index::WithLayerTars(*tree, tars, ro);
    if (!t.ok()) return t.status().WithContext("--add-tar");
    layered = std::move(*t);
    tree = layered.get();
    for (const index::OverlayTar& tar : tars) {
      added_tars.push_back({{"file", tar.path}, {"sha256", tar.sha256.ToString()}});
      tar_digests += tar.sha256.ToString() + "\n";
    }
  }
  std::unique_ptr<index::Tree> overlay;
  int64_t adds_mtime = 0;
  if (!adds.empty()) {
    // Added files get SOURCE_DATE_EPOCH, else the image root's mtime: never the host's clock.
    LAZYFS_ASSIGN_OR_RETURN(index::Attr root, tree->GetAttr(index::kRootIno));
    adds_mtime = sde.value_or(root.mtime_sec);
    LAZYFS_ASSIGN_OR_RETURN(overlay, convert::WithGuestFiles(*tree, adds, adds_mtime));
    tree = overlay.get();
  }
  std::string seed =
      adds.empty() ? image.manifest.ToString()
                   : image.manifest.ToString() + "\nadditions " + Sha256Of(additions.dump()).ToString();
  if (!tar_digests.empty()) seed += "\nadded tars " + Sha256Of(tar_digests).ToString();
  convert::Ext4Options eo;
  eo.size_bytes = size;
  eo.label = args.label;
  eo.free_fraction = args.free_percent / 100.0;
  eo.read_only = args.read_only;
  // The same manifest gives the same UUID and hash seed, and times from SOURCE_DATE_EPOCH or
  // the tree: the same image digest and lazyfs version give a byte-identical file.
  eo.seed = seed;
  eo.fs_time = sde;
  if (args.verity != "separate" && args.verity != "append" && args.verity != "none") {
    return InvalidArgumentError("bad --verity \"" + args.verity +
                                "\": expected separate, append or none");
  }
  const ProgressFn progress = RateProgress(args.image.quiet);
  // A sidecar from an earlier run must not describe the new image if this one fails.
  ::unlink((args.out + ".json").c_str());
  LAZYFS_ASSIGN_OR_RETURN(convert::Ext4Report report,
                          convert::WriteExt4(*tree, args.out, eo, progress));
  nlohmann::ordered_json side;
  side["lazyfs_version"] = LAZYFS_VERSION;
  side["source"] = image.ref.ToString();
  side["manifest_digest"] = image.manifest.ToString();
  side["image"] = {{"file", BaseName(args.out)},
                   {"size", report.image_bytes},
                   {"filesystem", "ext4"},
                   {"uuid", report.uuid},
                   {"label", args.label},
                   {"read_only_layout", args.read_only},
                   {"inodes", report.inodes},
                   {"content_bytes", report.data_bytes}};
  if (!added_tars.empty()) side["added_tars"] = added_tars;
  if (!adds.empty()) {
    side["additions"] = additions;
    side["additions_mtime"] = adds_mtime;  // so lazyfs verify can rebuild them
  }
  if (args.verity != "none") {
    const bool append = args.verity == "append";
    const std::string hash_path = append ? args.out : args.out + ".verity";
    Result<convert::VerityReport> v = convert::WriteVerity(
        args.out, report.image_bytes, hash_path, append ? report.image_bytes : 0,
        convert::VeritySalt(seed), progress);
    if (!v.ok()) {
      RemoveOutputs(args.out);
      return v.status().WithContext("while writing the dm-verity tree of " + args.out);
    }
    side["verity"] = {{"format_version", 1},
                      {"hash_algorithm", "sha256"},
                      {"data_block_size", 4096},
                      {"hash_block_size", 4096},
                      {"data_size", v->data_bytes},
                      {"data_blocks", v->data_blocks},
                      {"hash_file", BaseName(hash_path)},
                      {"hash_offset", v->hash_offset},
                      {"hash_size", v->hash_bytes},
                      {"salt", v->salt},
                      {"root_hash", v->root_hash}};
    if (!args.image.quiet) {
      std::printf("%s: dm-verity root hash %s (salt %s, %s%s)\n", args.out.c_str(),
                  v->root_hash.c_str(), v->salt.c_str(), append ? "appended at offset " : "in ",
                  append ? std::to_string(v->hash_offset).c_str() : hash_path.c_str());
    }
  }
  if (Status s = WriteSidecar(args.out + ".json", side.dump(2) + "\n"); !s.ok()) {
    RemoveOutputs(args.out);
    return s;
  }
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
      "Beside it: OUT.verity (dm-verity hash tree) and OUT.json (source, digests, root hash).\n"
      "Examples:\n"
      "  lazyfs materialize docker://127.0.0.1:5000/app:1.2 app.img\n"
      "  lazyfs materialize --size 2G --label rootfs oci:./layout:demo rootfs.img\n"
      "  lazyfs materialize --add-tar agent.tar --add key.pub:/root/.ssh/authorized_keys:0:0:600 \\\n"
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
  cmd->add_flag("--read-only", args->read_only,
                "Layout for read-only use: no journal, minimal free space and inodes");
  cmd->callback([args, &exit_code] {
    Status s = Materialize(*args);
    exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace lazyfs::cli
