// lazyfs images / rmi / fsck: what the store holds, forgetting images, and checking it all.
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "base/cas_dir.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/output.h"

namespace lazyfs::cli {
namespace {

Result<std::unique_ptr<index::Index>> OpenIndex(const StoreLayout& store, bool writable) {
  index::IndexOptions io;
  io.store = store;
  io.writable = writable;
  return index::Index::Open(io);
}

// "docker://h/r:t|linux/amd64" -> "docker://h/r:t"
std::string RefPart(const std::string& key) { return key.substr(0, key.rfind('|')); }

uint64_t CompressedSize(const ImageDescriptor& d) {
  uint64_t n = 0;
  for (const auto& l : d.layers) n += l.size;
  return n;
}

// ---- images ----

struct ImagesArgs {
  std::string store;
  bool json = false;
};

Status Images(const ImagesArgs& args) {
  LAZYFS_ASSIGN_OR_RETURN(auto idx, OpenIndex(StoreLayout::At(args.store), false));
  LAZYFS_ASSIGN_OR_RETURN(auto images, idx->ListImages());
  if (args.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& img : images) {
      JsonObject o;
      nlohmann::json& j = o.json();
      o.Text("reference", img.descriptor.reference);
      j["manifest_digest"] = img.descriptor.manifest_digest.ToString();
      o.Text("platform", img.descriptor.platform);
      j["layers"] = img.descriptor.layers.size();
      j["compressed_size"] = CompressedSize(img.descriptor);
      j["inodes"] = img.stats.inodes;
      j["regular_files"] = img.stats.regular_files;
      j["content_bytes"] = img.stats.content_bytes;
      std::vector<std::string> refs;
      for (const auto& r : img.refs) refs.push_back(RefPart(r));
      o.TextArray("refs", std::move(refs));
      out.push_back(std::move(o).Take());
    }
    PrintJson(out);
    return Status::Ok();
  }
  std::printf("%-50s %-19s %-12s %6s %10s %8s %10s\n", "REFERENCE", "DIGEST", "PLATFORM", "LAYERS",
              "SIZE", "FILES", "CONTENT");
  for (const auto& img : images) {
    std::printf("%-50s %-19s %-12s %6zu %10s %8" PRIu64 " %10s\n",
                TextName(img.descriptor.reference).c_str(),
                img.descriptor.manifest_digest.Short().c_str(),
                TextName(img.descriptor.platform).c_str(), img.descriptor.layers.size(),
                HumanBytes(CompressedSize(img.descriptor)).c_str(), img.stats.regular_files,
                HumanBytes(img.stats.content_bytes).c_str());
  }
  return Status::Ok();
}

// ---- rmi ----

struct RmiArgs {
  std::string store;
  std::vector<std::string> targets;
};

// The stored images `target` names: a manifest digest (or a prefix of at least 12 hex digits),
// or a reference as `images` prints it or as the user typed it.
std::vector<Digest> Match(const std::vector<index::StoredImage>& images, const std::string& target) {
  std::string normalised = target;
  if (auto ref = fetch::ImageRef::Parse(target); ref.ok()) normalised = ref->ToString();
  std::string hex = target.starts_with("sha256:") ? target.substr(7) : target;
  std::vector<Digest> out;
  for (const auto& img : images) {
    bool hit = img.descriptor.reference == target || img.descriptor.reference == normalised;
    for (const auto& r : img.refs) hit = hit || RefPart(r) == target || RefPart(r) == normalised;
    if (hex.size() >= 12 && img.descriptor.manifest_digest.Hex().starts_with(hex)) hit = true;
    if (hit) out.push_back(img.descriptor.manifest_digest);
  }
  return out;
}

Status Rmi(const RmiArgs& args) {
  const StoreLayout store = StoreLayout::At(args.store);
  LAZYFS_ASSIGN_OR_RETURN(auto idx, OpenIndex(store, true));
  LAZYFS_ASSIGN_OR_RETURN(auto images, idx->ListImages());
  std::set<Digest> remove;
  for (const auto& t : args.targets) {
    auto m = Match(images, t);
    if (m.empty()) return NotFoundError(t + ": no such image in the store (see lazyfs images)");
    remove.insert(m.begin(), m.end());
  }
  for (const Digest& d : remove) {
    LAZYFS_RETURN_IF_ERROR(idx->RemoveImage(d));
    std::printf("removed %s\n", d.ToString().c_str());
  }
  // Free the content only the removed images used, as podman rmi frees their layers.
  LAZYFS_ASSIGN_OR_RETURN(index::GcReport gc, idx->Gc());
  LAZYFS_ASSIGN_OR_RETURN(fetch::BlobPruneReport blobs, PruneBlobs(store, *idx));
  std::printf("freed %s of cached content and %s of blobs\n", HumanBytes(gc.bytes_removed).c_str(),
              HumanBytes(blobs.bytes).c_str());
  return Status::Ok();
}

// ---- fsck ----

struct FsckArgs {
  std::string store;
  bool repair = false;
};

// Prints what a content-addressed directory's check found; returns how many problems.
int PrintCheck(const char* dir, const CasDir::CheckReport& r, bool repair) {
  int problems = 0;
  const std::string fixed = repair ? " (removed)" : "";
  for (const auto& p : r.corrupt) {
    std::printf("%s: %s: content does not match its digest%s\n", dir, p.c_str(), fixed.c_str());
    ++problems;
  }
  for (const auto& p : r.stray) {
    std::printf("%s: %s: not named by a digest\n", dir, p.c_str());
    ++problems;
  }
  // A killed process leaves its temporary behind: junk, never mistaken for an object.
  for (const auto& p : r.stale_tmp) {
    std::printf("%s: note: %s: temporary of a process that is gone%s\n", dir, p.c_str(),
                repair ? " (removed)" : "; --repair removes it");
  }
  std::printf("%s: %" PRIu64 " objects, %s, verified\n", dir, r.objects,
              HumanBytes(r.bytes).c_str());
  return problems;
}

// Exit status: 0 clean, 1 problems found (or an error).
Result<int> Fsck(const FsckArgs& args) {
  const StoreLayout store = StoreLayout::At(args.store);
  if (::access(store.root.c_str(), F_OK) != 0) return ErrnoError(errno, "store " + store.root);
  int problems = 0;
  auto idx = OpenIndex(store, false);
  if (!idx.ok() && idx.status().code() == StatusCode::kNotFound) {
    // A store whose first indexing never got as far as creating the index (killed, or failed
    // early): nothing is indexed, which is consistent.
    std::printf("index: none yet, nothing indexed\n");
  } else {
    if (!idx.ok()) return idx.status();
    LAZYFS_ASSIGN_OR_RETURN(index::IndexCheckReport r, (*idx)->Check());
    for (const auto& p : r.problems) {
      std::printf("index: %s\n", p.c_str());
      ++problems;
    }
    std::printf("index: %" PRIu64 " images, %" PRIu64 " layers, %" PRIu64 " references, %" PRIu64
                " inodes\n",
                r.images, r.layers, r.refs, r.inodes);
  }
  LAZYFS_ASSIGN_OR_RETURN(CasDir::CheckReport blobs, fetch::CheckBlobStore(store, args.repair));
  problems += PrintCheck("blobs", blobs, args.repair);
  // Without an index there is no content cache either: the index creates it after itself.
  CasDir::CheckReport content;
  if (idx.ok()) {
    LAZYFS_ASSIGN_OR_RETURN(content, (*idx)->CheckContent(args.repair));
  }
  problems += PrintCheck("content", content, args.repair);
  if (problems == 0) std::printf("no problems found\n");
  return problems == 0 ? 0 : 1;
}

}  // namespace

void RegisterStore(CLI::App& app, int& exit_code) {
  {
    auto args = std::make_shared<ImagesArgs>();
    CLI::App* cmd = app.add_subcommand(
        "images",
        "List the images the store holds, with their references and sizes\n\n"
        "Examples:\n"
        "  lazyfs images\n"
        "  lazyfs images --json --store /var/lib/lazyfs");
    AddStoreOption(*cmd, args->store);
    cmd->add_flag("--json", args->json, "JSON array");
    cmd->callback([args, &exit_code] {
      Status s = Images(*args);
      exit_code = s.ok() ? 0 : ReportError(s);
    });
  }
  {
    auto args = std::make_shared<RmiArgs>();
    CLI::App* cmd = app.add_subcommand(
        "rmi",
        "Remove images from the store's index and free the content only they used\n\n"
        "Running mounts keep the view they opened.\n"
        "Examples:\n"
        "  lazyfs rmi docker://127.0.0.1:5000/app:1.2\n"
        "  lazyfs rmi sha256:3d9f2889d678");
    AddStoreOption(*cmd, args->store);
    cmd->add_option("IMAGE", args->targets, "Reference, or manifest digest (12+ hex digits)")
        ->required();
    cmd->callback([args, &exit_code] {
      Status s = Rmi(*args);
      exit_code = s.ok() ? 0 : ReportError(s);
    });
  }
  {
    auto args = std::make_shared<FsckArgs>();
    CLI::App* cmd = app.add_subcommand(
        "fsck",
        "Check the store: the index's images, layers and references, and every blob and cached\n"
        "object against its digest. Exit status 0 when clean, 1 when something is wrong.\n\n"
        "Examples:\n"
        "  lazyfs fsck\n"
        "  lazyfs fsck --repair     # remove corrupt objects (fetched again when needed)");
    AddStoreOption(*cmd, args->store);
    cmd->add_flag("--repair", args->repair,
                  "Remove corrupt objects and temporaries of processes that are gone");
    cmd->callback([args, &exit_code] {
      Result<int> r = Fsck(*args);
      exit_code = r.ok() ? *r : ReportError(r.status());
    });
  }
}

}  // namespace lazyfs::cli
