// The materialize pipeline: additions over the image's tree, the seed, ext4, dm-verity, and the
// sidecar last, with every output removed again when a later step fails.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/digest.h"
#include "convert/convert.h"
#include "convert/sidecar.h"

namespace lazyfs::convert {
namespace {

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

template <typename... Args>
std::string Format(const char* format, Args... args) {
  std::string line(static_cast<size_t>(std::snprintf(nullptr, 0, format, args...)), '\0');
  std::snprintf(line.data(), line.size() + 1, format, args...);
  return line;
}

// Removes what a failed materialize left (best effort: the error being reported matters more).
void RemoveOutputs(const std::string& out) {
  for (const std::string& p : {out, out + ".verity", out + ".json"}) ::unlink(p.c_str());
}

// The trees the image is written from: the tars over the image's tree, then the --add files.
struct Stack {
  std::unique_ptr<index::Tree> tarred, added;
  const index::Tree* top = nullptr;
};

// Applies `adds` over `base`: the tars, then the files with mtime `files_mtime`, else the root
// mtime of the tree they go over. Two steps, so a tar's error says it came from --add-tar.
Status ApplyAdditions(const index::Tree& base, index::TreeAdditions& adds,
                      std::optional<int64_t> files_mtime, Stack* stack) {
  stack->top = &base;
  if (!adds.tars.empty()) {
    index::TreeAdditions tars;
    tars.tars = std::move(adds.tars);
    tars.max_tar_bytes = adds.max_tar_bytes;
    Result<std::unique_ptr<index::Tree>> t = index::WithAdditions(base, tars);
    adds.tars = std::move(tars.tars);  // with their sha256 filled in
    if (!t.ok()) return t.status().WithContext("--add-tar");
    stack->tarred = std::move(*t);
    stack->top = stack->tarred.get();
  }
  if (adds.files.empty()) return Status::Ok();
  LAZYFS_ASSIGN_OR_RETURN(index::Attr root, stack->top->GetAttr(index::kRootIno));
  adds.files_mtime = files_mtime.value_or(root.mtime_sec);
  index::TreeAdditions files;
  files.files = std::move(adds.files);
  files.files_mtime = adds.files_mtime;
  Result<std::unique_ptr<index::Tree>> t = index::WithAdditions(*stack->top, files);
  adds.files = std::move(files.files);
  LAZYFS_RETURN_IF_ERROR(t.status());
  stack->added = std::move(*t);
  stack->top = stack->added.get();
  return Status::Ok();
}

// The additions as the sidecar records them.
void RecordAdditions(const index::TreeAdditions& additions, Sidecar& side) {
  for (const index::AddedTar& t : additions.tars) {
    side.added_tars.push_back({t.path, t.sha256.ToString()});
  }
  for (const index::AddedFile& f : additions.files) {
    side.additions.push_back(
        {f.guest_path, Sha256Of(f.content).ToString(), f.content.size(), f.uid, f.gid, f.mode});
  }
  if (!additions.files.empty()) side.additions_mtime = additions.files_mtime;
}

// The seed of the UUID, hash seed and verity salt: the manifest digest, and what was added (the
// tars by digest only, so renaming a tar does not change the image).
std::string Seed(const Digest& manifest, const Sidecar& side) {
  std::string seed = manifest.ToString();
  if (!side.additions.empty()) {
    seed += "\nadditions " + Sha256Of(AdditionsJson(side.additions)).ToString();
  }
  std::string tar_digests;
  for (const Sidecar::Tar& t : side.added_tars) tar_digests += t.sha256 + "\n";
  if (!tar_digests.empty()) seed += "\nadded tars " + Sha256Of(tar_digests).ToString();
  return seed;
}

// The verity tree of the finished image, where the plan says; its parameters go to the sidecar.
Status AddVerity(const MaterializePlan& plan, const std::string& seed, const ProgressFn& progress,
                 MaterializeReport& report, Sidecar& side) {
  const bool append = plan.verity == VerityMode::kAppend;
  report.hash_path = append ? plan.out_path : plan.out_path + ".verity";
  const uint64_t bytes = report.ext4.image_bytes;
  Result<VerityReport> v = WriteVerity(plan.out_path, bytes, report.hash_path, append ? bytes : 0,
                                       VeritySalt(seed), progress);
  if (!v.ok()) {
    return v.status().WithContext("while writing the dm-verity tree of " + plan.out_path);
  }
  // The hash tree reveals nothing of the content, but goes with the image: the same mode.
  if (!append && ::chmod(report.hash_path.c_str(), plan.ext4.file_mode) != 0) {
    return ErrnoError(errno, "chmod " + report.hash_path);
  }
  side.verity = Sidecar::Verity{v->data_bytes,  v->data_blocks, BaseName(report.hash_path),
                                v->hash_offset, v->hash_bytes,  v->salt,
                                v->root_hash};
  report.verity = std::move(*v);
  return Status::Ok();
}

}  // namespace

Result<MaterializeReport> Materialize(MaterializePlan& plan, const ProgressFn& progress) {
  if (plan.tree == nullptr) return InvalidArgumentError("materialize: no tree to write");
  Stack stack;
  // Added files get SOURCE_DATE_EPOCH, else the root mtime of the tree they go over: never the
  // host's clock or the host file's mtime.
  LAZYFS_RETURN_IF_ERROR(
      ApplyAdditions(*plan.tree, plan.additions, plan.source_date_epoch, &stack));
  Sidecar side;
  side.lazyfs_version = LAZYFS_VERSION;
  side.source = plan.source;
  side.manifest_digest = plan.manifest.ToString();
  RecordAdditions(plan.additions, side);
  const std::string seed = Seed(plan.manifest, side);
  // The same manifest and additions give the same UUID and hash seed, and times come from
  // SOURCE_DATE_EPOCH or the tree: the same inputs and lazyfs version give the same bytes.
  plan.ext4.seed = seed;
  plan.ext4.fs_time = plan.source_date_epoch;
  // A sidecar from an earlier run must not describe the new image if this one fails.
  ::unlink((plan.out_path + ".json").c_str());
  MaterializeReport report;
  LAZYFS_ASSIGN_OR_RETURN(report.ext4, WriteExt4(*stack.top, plan.out_path, plan.ext4, progress));
  side.image = {BaseName(plan.out_path), report.ext4.image_bytes, report.ext4.uuid,
                plan.ext4.label,         plan.ext4.read_only,     report.ext4.inodes,
                report.ext4.data_bytes};
  Status s = plan.verity == VerityMode::kNone ? Status::Ok()
                                              : AddVerity(plan, seed, progress, report, side);
  if (s.ok()) s = WriteSidecar(plan.out_path + ".json", side);
  if (!s.ok()) {
    RemoveOutputs(plan.out_path);
    return s;
  }
  return report;
}

Result<VerifyFindings> VerifyImage(const std::string& image_path, const ProgressFn& progress) {
  const std::string sidecar = image_path + ".json";
  LAZYFS_ASSIGN_OR_RETURN(Sidecar side, ReadSidecar(sidecar));
  struct stat st;
  if (::stat(image_path.c_str(), &st) != 0) return ErrnoError(errno, "stat " + image_path);
  VerifyFindings f;
  const char* img = image_path.c_str();
  auto problem = [&f](std::string line) {
    f.lines.push_back(std::move(line));
    ++f.problems;
  };
  if (!side.verity) {
    f.lines.push_back(
        Format("%s: the sidecar has no dm-verity tree; only the size is checked", img));
  } else {
    const Sidecar::Verity& v = *side.verity;
    const std::string hash_path = DirName(image_path) + v.hash_file;
    LAZYFS_ASSIGN_OR_RETURN(VerityCheck c,
                            CheckVerity(image_path, hash_path, v.hash_offset, progress));
    if (c.salt != v.salt) {
      problem(Format("%s: the hash tree's salt %s is not the sidecar's %s", hash_path.c_str(),
                     c.salt.c_str(), v.salt.c_str()));
    }
    for (const auto& [first, end] : c.bad_ranges) {
      problem(Format("%s: data blocks %llu-%llu (bytes %llu-%llu) differ from the hash tree", img,
                     static_cast<unsigned long long>(first),
                     static_cast<unsigned long long>(end - 1),
                     static_cast<unsigned long long>(first * 4096),
                     static_cast<unsigned long long>(end * 4096 - 1)));
    }
    if (c.root_hash != v.root_hash) {
      problem(Format("%s: dm-verity root hash %s, the sidecar says %s", img, c.root_hash.c_str(),
                     v.root_hash.c_str()));
    } else {
      f.lines.push_back(
          Format("%s: dm-verity root hash %s matches the sidecar", img, v.root_hash.c_str()));
    }
  }
  const uint64_t have = static_cast<uint64_t>(st.st_size);
  const bool appended = side.verity && side.verity->hash_offset != 0;
  if (appended ? have < side.image.size : have != side.image.size) {
    problem(Format("%s: %llu bytes, the sidecar says %llu", img,
                   static_cast<unsigned long long>(have),
                   static_cast<unsigned long long>(side.image.size)));
  }
  return f;
}

namespace {

// The additions the sidecar records, with the tars given again (each must have the recorded
// sha256); the --add files are rebuilt from their recorded path, owner, mode, size and sha256
// (CompareExt4 reads only digests, so the host files are not needed).
Status ReapplyAdditions(const index::Tree& base, const Sidecar& side, const std::string& sidecar,
                        const std::vector<std::string>& add_tars, Stack* stack) {
  if (side.added_tars.size() != add_tars.size()) {
    std::string recorded;
    for (const Sidecar::Tar& t : side.added_tars) recorded += " " + t.file + " (" + t.sha256 + ")";
    return InvalidArgumentError(sidecar + " records " + std::to_string(side.added_tars.size()) +
                                " tar(s) added with --add-tar" + (recorded.empty() ? "" : ":") +
                                recorded + "; " + std::to_string(add_tars.size()) +
                                " given: pass the same tars, in order, with --add-tar");
  }
  if (!side.additions.empty() && !side.additions_mtime) {
    return InvalidArgumentError(sidecar +
                                " records --add files but not their mtime (written by "
                                "an older lazyfs): they cannot be compared");
  }
  index::TreeAdditions adds;
  for (const std::string& path : add_tars) adds.tars.push_back({path, {}});
  for (const Sidecar::File& a : side.additions) {
    index::AddedFile g;
    g.guest_path = a.guest_path;
    g.uid = a.uid;
    g.gid = a.gid;
    g.mode = a.mode;
    g.size = a.size;
    LAZYFS_ASSIGN_OR_RETURN(g.digest, Digest::Parse(a.sha256));
    adds.files.push_back(std::move(g));
  }
  LAZYFS_RETURN_IF_ERROR(ApplyAdditions(base, adds, side.additions_mtime, stack));
  for (size_t i = 0; i < adds.tars.size(); ++i) {
    const std::string got = adds.tars[i].sha256.ToString();
    if (got != side.added_tars[i].sha256) {
      return InvalidArgumentError("--add-tar " + adds.tars[i].path + " is " + got +
                                  ", but the image was made with " + side.added_tars[i].file + " " +
                                  side.added_tars[i].sha256);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<VerifyFindings> VerifyFiles(const std::string& image_path, const index::Tree& tree,
                                   const std::string& ref, const Digest& manifest,
                                   const std::vector<std::string>& add_tars) {
  const std::string sidecar = image_path + ".json";
  LAZYFS_ASSIGN_OR_RETURN(Sidecar side, ReadSidecar(sidecar));
  VerifyFindings f;
  const char* img = image_path.c_str();
  if (side.manifest_digest != manifest.ToString()) {
    f.lines.push_back(Format("%s: made from %s, %s is %s", img, side.manifest_digest.c_str(),
                             ref.c_str(), manifest.ToString().c_str()));
    ++f.problems;
  }
  Stack stack;
  LAZYFS_RETURN_IF_ERROR(ReapplyAdditions(tree, side, sidecar, add_tars, &stack));
  LAZYFS_ASSIGN_OR_RETURN(std::vector<std::string> diffs,
                          CompareExt4(*stack.top, image_path, 1000));
  for (const std::string& d : diffs) f.lines.push_back(image_path + ": " + d);
  f.problems += diffs.size();
  if (diffs.empty()) {
    f.lines.push_back(
        Format("%s: every file matches %s (%s)", img, ref.c_str(), manifest.ToString().c_str()));
  }
  return f;
}

}  // namespace lazyfs::convert
