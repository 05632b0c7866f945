// lazyfs verify: re-checks a materialized image against its sidecar (OUT.json) and, given a
// reference, against the index.
//
// Against the sidecar: the image's size, and the dm-verity root hash recomputed from the image's
// bytes (the stored bottom level names the data blocks that changed). Against REF: every file's
// metadata and content digest, read from the image with libext2fs (no mount, no root).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "convert/convert.h"
#include "index/layer_overlay.h"

namespace lazyfs::cli {
namespace {

struct VerifyArgs {
  ImageOptions image;
  std::string img;
  std::string ref;  // optional
  std::vector<std::string> add_tars;  // the tars the image was materialized with, again
};

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

// Reads a field of the sidecar, failing with a message naming it.
template <typename T>
Result<T> Field(const nlohmann::json& j, const char* section, const char* key,
                const std::string& sidecar) {
  try {
    return j.at(section).at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    return InvalidArgumentError(sidecar + ": missing or bad \"" + section + "." + key + "\"");
  }
}

// Prints each problem on stdout; returns how many there were.
Result<size_t> CheckSidecar(const VerifyArgs& args, const nlohmann::json& side,
                            const std::string& sidecar, const ProgressFn& progress) {
  size_t problems = 0;
  LAZYFS_ASSIGN_OR_RETURN(uint64_t size, Field<uint64_t>(side, "image", "size", sidecar));
  struct stat st;
  if (::stat(args.img.c_str(), &st) != 0) return ErrnoError(errno, "stat " + args.img);
  if (!side.contains("verity")) {
    std::printf("%s: the sidecar has no dm-verity tree; only the size is checked\n",
                args.img.c_str());
  } else {
    LAZYFS_ASSIGN_OR_RETURN(std::string hash_file,
                            Field<std::string>(side, "verity", "hash_file", sidecar));
    LAZYFS_ASSIGN_OR_RETURN(uint64_t offset, Field<uint64_t>(side, "verity", "hash_offset", sidecar));
    LAZYFS_ASSIGN_OR_RETURN(std::string root, Field<std::string>(side, "verity", "root_hash", sidecar));
    LAZYFS_ASSIGN_OR_RETURN(std::string salt, Field<std::string>(side, "verity", "salt", sidecar));
    const std::string hash_path = DirName(args.img) + hash_file;
    LAZYFS_ASSIGN_OR_RETURN(convert::VerityCheck c,
                            convert::CheckVerity(args.img, hash_path, offset, progress));
    if (c.salt != salt) {
      std::printf("%s: the hash tree's salt %s is not the sidecar's %s\n", hash_path.c_str(),
                  c.salt.c_str(), salt.c_str());
      ++problems;
    }
    for (const auto& [first, end] : c.bad_ranges) {
      std::printf("%s: data blocks %llu-%llu (bytes %llu-%llu) differ from the hash tree\n",
                  args.img.c_str(), static_cast<unsigned long long>(first),
                  static_cast<unsigned long long>(end - 1),
                  static_cast<unsigned long long>(first * 4096),
                  static_cast<unsigned long long>(end * 4096 - 1));
      ++problems;
    }
    if (c.root_hash != root) {
      std::printf("%s: dm-verity root hash %s, the sidecar says %s\n", args.img.c_str(),
                  c.root_hash.c_str(), root.c_str());
      ++problems;
    } else {
      std::printf("%s: dm-verity root hash %s matches the sidecar\n", args.img.c_str(),
                  root.c_str());
    }
  }
  const uint64_t have = static_cast<uint64_t>(st.st_size);
  const bool appended = side.contains("verity") && side["verity"].value("hash_offset", 0) != 0;
  if (appended ? have < size : have != size) {
    std::printf("%s: %llu bytes, the sidecar says %llu\n", args.img.c_str(),
                static_cast<unsigned long long>(have), static_cast<unsigned long long>(size));
    ++problems;
  }
  return problems;
}

// The trees an image with guest additions was written from, over the index's tree.
struct WithAdditions {
  std::unique_ptr<index::Tree> layered, overlay;
  const index::Tree* top = nullptr;
};

// Re-applies what the sidecar says materialize added: the tars (given again with --add-tar,
// since the sidecar holds only their digests; each must have the recorded sha256), then the
// --add files, rebuilt from their recorded path, owner, mode, size and sha256 (CompareExt4 reads
// only digests, so the host files are not needed).
Status ApplyAdditions(const index::Tree& base, const nlohmann::json& side,
                      const std::string& sidecar, const VerifyArgs& args, WithAdditions* out) {
  out->top = &base;
  try {
    const nlohmann::json tars = side.value("added_tars", nlohmann::json::array());
    if (tars.size() != args.add_tars.size()) {
      std::string recorded;
      for (const auto& t : tars) {
        recorded += " " + t.at("file").get<std::string>() + " (" + t.at("sha256").get<std::string>() + ")";
      }
      return InvalidArgumentError(sidecar + " records " + std::to_string(tars.size()) +
                                  " tar(s) added with --add-tar" + (recorded.empty() ? "" : ":") +
                                  recorded + "; " + std::to_string(args.add_tars.size()) +
                                  " given: pass the same tars, in order, with --add-tar");
    }
    if (!tars.empty()) {
      std::vector<index::OverlayTar> given;
      for (const std::string& path : args.add_tars) given.push_back({path, {}});
      index::LayerReadOptions ro;
      ro.max_uncompressed_bytes = index::kAddedTarMaxBytes;  // as materialize: content held in memory
      Result<std::unique_ptr<index::Tree>> t = index::WithLayerTars(base, given, ro);
      if (!t.ok()) return t.status().WithContext("--add-tar");
      for (size_t i = 0; i < given.size(); ++i) {
        const std::string want = tars[i].at("sha256").get<std::string>();
        if (given[i].sha256.ToString() != want) {
          return InvalidArgumentError("--add-tar " + given[i].path + " is " +
                                      given[i].sha256.ToString() + ", but the image was made with " +
                                      tars[i].at("file").get<std::string>() + " " + want);
        }
      }
      out->layered = std::move(*t);
      out->top = out->layered.get();
    }
    const nlohmann::json adds = side.value("additions", nlohmann::json::array());
    if (adds.empty()) return Status::Ok();
    if (!side.contains("additions_mtime")) {
      return InvalidArgumentError(sidecar + " records --add files but not their mtime (written by "
                                  "an older lazyfs): they cannot be compared");
    }
    std::vector<convert::GuestFile> files;
    for (const auto& a : adds) {
      convert::GuestFile g;
      g.guest_path = a.at("guest_path").get<std::string>();
      g.uid = a.at("uid").get<uint32_t>();
      g.gid = a.at("gid").get<uint32_t>();
      g.mode = static_cast<uint32_t>(std::stoul(a.at("mode").get<std::string>(), nullptr, 8));
      g.size = a.at("size").get<uint64_t>();
      LAZYFS_ASSIGN_OR_RETURN(g.digest, Digest::Parse(a.at("sha256").get<std::string>()));
      files.push_back(std::move(g));
    }
    LAZYFS_ASSIGN_OR_RETURN(out->overlay,
                            convert::WithGuestFiles(*out->top, files,
                                                    side.at("additions_mtime").get<int64_t>()));
    out->top = out->overlay.get();
    return Status::Ok();
  } catch (const std::exception& e) {  // nlohmann::json and std::stoul
    return InvalidArgumentError(sidecar + ": bad \"added_tars\" or \"additions\": " + e.what());
  }
}

Status Verify(const VerifyArgs& args) {
  const std::string sidecar = args.img + ".json";
  LAZYFS_ASSIGN_OR_RETURN(std::string text, ReadFileToString(sidecar));
  nlohmann::json side = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (side.is_discarded() || !side.is_object()) {
    return InvalidArgumentError(sidecar + " is not a lazyfs sidecar (not a JSON object)");
  }
  const ProgressFn progress = MakeProgress(args.image.quiet);
  LAZYFS_ASSIGN_OR_RETURN(size_t problems, CheckSidecar(args, side, sidecar, progress));
  if (!args.ref.empty()) {
    LAZYFS_ASSIGN_OR_RETURN(PreparedImage image, PrepareImage(args.ref, args.image));
    LAZYFS_ASSIGN_OR_RETURN(OpenedTree opened, OpenTree(image, args.image));
    const std::string recorded = side.value("manifest_digest", "");
    if (recorded != image.manifest.ToString()) {
      std::printf("%s: made from %s, %s is %s\n", args.img.c_str(), recorded.c_str(),
                  args.ref.c_str(), image.manifest.ToString().c_str());
      ++problems;
    }
    WithAdditions tree;
    LAZYFS_RETURN_IF_ERROR(ApplyAdditions(*opened.tree, side, sidecar, args, &tree));
    LAZYFS_ASSIGN_OR_RETURN(std::vector<std::string> diffs,
                            convert::CompareExt4(*tree.top, args.img, 1000));
    for (const std::string& d : diffs) std::printf("%s: %s\n", args.img.c_str(), d.c_str());
    problems += diffs.size();
    if (diffs.empty()) {
      std::printf("%s: every file matches %s (%s)\n", args.img.c_str(), args.ref.c_str(),
                  image.manifest.ToString().c_str());
    }
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
