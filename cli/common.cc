#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "base/fd.h"
#include "base/text.h"
#include "cli/index_artifacts.h"

namespace lazyfs::cli {

void AddStoreOption(CLI::App& cmd, std::string& store) {
  cmd.add_option("--store", store,
                 "Store directory (index, blobs, content cache); default $LAZYFS_STORE, "
                 "/var/lib/lazyfs for root, else $XDG_DATA_HOME/lazyfs");
}

void AddImageOptions(CLI::App& cmd, ImageOptions& options) {
  AddStoreOption(cmd, options.store);
  cmd.add_option("--platform", options.platform,
                 "Platform to pick from a multi-platform image, os/arch[/variant] "
                 "(default: this host's)");
  cmd.add_flag("--insecure", options.insecure,
               "Allow plain HTTP and unverified TLS for registries");
  cmd.add_option("--tls-verify", options.tls_verify,
                 "--tls-verify=false: the same as --insecure (as podman and skopeo spell it)")
      ->default_val(true);
  cmd.add_option("--registries-conf", options.registries_conf,
                 "registries.conf (v2) with mirrors and insecure registries; default "
                 "$CONTAINERS_REGISTRIES_CONF, else /etc/containers/registries.conf");
  ImageOptions* target = &options;
  cmd.add_option_function<std::string>(
         "--pull",
         [target](const std::string& v) {
           target->pull = v == "always" ? PullPolicy::kAlways
                          : v == "never" ? PullPolicy::kNever
                                         : PullPolicy::kMissing;
         },
         "missing: use the stored index of a reference seen before (default); "
         "always: ask the registry again; never: fail unless stored")
      ->check(CLI::IsMember({"missing", "always", "never"}));
  cmd.add_option("--index-artifacts", options.index_artifacts,
                 "--index-artifacts=false: index a new image from its layers even when its "
                 "registry has an index artifact for it (lazyfs index push)")
      ->default_val(true);
  cmd.add_flag("-q,--quiet", options.quiet, "No progress output");
}

namespace {

Result<fetch::SourceOptions> SourceOptionsFor(const ImageOptions& options,
                                              const StoreLayout& store) {
  fetch::SourceOptions so;
  so.store = store;
  so.insecure = options.insecure || !options.tls_verify;
  so.registries_conf = options.registries_conf;
  if (!options.platform.empty()) {
    LAZYFS_ASSIGN_OR_RETURN(so.platform, fetch::Platform::Parse(options.platform));
  }
  return so;
}

// Imports the image's index artifact, if its registry has one; says on stderr what was used, or
// why an artifact found was refused (the layers are then indexed from their blobs).
Status UseIndexArtifact(index::Index& idx, fetch::ImageSource& source,
                        const ImageDescriptor& image, bool quiet) {
  LAZYFS_ASSIGN_OR_RETURN(ArtifactImport found, ImportIndexArtifacts(idx, source, image));
  if (!found.refused.empty()) {
    // Not behind -q: a refused artifact is a warning about the registry's content.
    const std::string message = EscapeBytes(found.refused, Escape::kMessage);
    std::fprintf(stderr, "lazyfs: warning: %s; indexing from the layers\n", message.c_str());
  }
  if (found.artifact && !quiet) {
    std::fprintf(stderr, "lazyfs: index artifact %s: %zu of %zu layers indexed without a download\n",
                 found.artifact->ToString().c_str(), found.layers, image.layers.size());
  }
  return Status::Ok();
}

}  // namespace

Result<PreparedImage> PrepareImage(const std::string& ref_text, const ImageOptions& options) {
  const StoreLayout store = options.layout();
  PreparedImage out;
  LAZYFS_ASSIGN_OR_RETURN(out.ref, fetch::ImageRef::Parse(ref_text));
  LAZYFS_RETURN_IF_ERROR(
      MakeDirs(store.root, 0700).WithContext("while creating store " + store.root));
  LAZYFS_ASSIGN_OR_RETURN(fetch::SourceOptions so, SourceOptionsFor(options, store));
  LAZYFS_ASSIGN_OR_RETURN(out.source, fetch::OpenImageSource(out.ref, so));

  index::IndexOptions io;
  io.store = store;
  io.writable = true;
  io.cache_content_while_indexing = options.cache_content;
  io.cache_size_bytes = options.cache_size;
  // Caps on untrusted layers, lowered (never raised past the defaults' purpose) by sites that
  // index only small images: $LAZYFS_MAX_LAYER_ENTRIES.
  if (const char* cap = std::getenv("LAZYFS_MAX_LAYER_ENTRIES"); cap && *cap) {
    char* end = nullptr;
    const unsigned long long n = std::strtoull(cap, &end, 10);
    if (*end != '\0' || n == 0) {
      return InvalidArgumentError(std::string("LAZYFS_MAX_LAYER_ENTRIES=") + cap +
                                  ": not a positive number");
    }
    io.max_entries_per_layer = n;
  }
  LAZYFS_ASSIGN_OR_RETURN(auto idx, index::Index::Open(io));
  // The reference key includes the platform: the same tag resolves differently per platform.
  const std::string ref_key = out.ref.ToString() + "|" + so.platform.ToString();

  // A local OCI layout is cheap to read and may have changed: always resolve it.
  const bool remote = out.ref.transport == fetch::Transport::kDocker;
  std::optional<Digest> known;
  if (out.ref.digest && remote) {
    LAZYFS_ASSIGN_OR_RETURN(bool has, idx->HasImage(*out.ref.digest));
    if (has) known = *out.ref.digest;
  } else if (remote && options.pull != PullPolicy::kAlways) {
    LAZYFS_ASSIGN_OR_RETURN(known, idx->LookupRef(ref_key));
    if (known) {
      LAZYFS_ASSIGN_OR_RETURN(bool has, idx->HasImage(*known));
      if (!has) known.reset();
    }
  }
  if (known) {
    out.manifest = *known;
    return out;
  }
  if (options.pull == PullPolicy::kNever && remote) {
    return NotFoundError(out.ref.ToString() + " is not in the store " + store.root +
                         " and --pull=never was given");
  }
  LAZYFS_ASSIGN_OR_RETURN(ImageDescriptor image, out.source->Resolve());
  if (options.index_artifacts && remote) {
    LAZYFS_RETURN_IF_ERROR(UseIndexArtifact(*idx, *out.source, image, options.quiet));
  }
  LAZYFS_RETURN_IF_ERROR(
      idx->AddImage(image, *out.source, MakeProgress(options.quiet))
          .WithContext("while indexing " + out.ref.ToString()));
  LAZYFS_RETURN_IF_ERROR(idx->SetRef(ref_key, image.manifest_digest));
  out.manifest = image.manifest_digest;
  return out;
}

Result<OpenedTree> OpenTree(const PreparedImage& image, const ImageOptions& options) {
  index::IndexOptions io;
  io.store = options.layout();
  io.writable = false;
  io.cache_size_bytes = options.cache_size;
  io.read_timeout = std::chrono::milliseconds(static_cast<int64_t>(options.read_timeout_s * 1000));
  io.prefetch = options.prefetch;
  OpenedTree out;
  LAZYFS_ASSIGN_OR_RETURN(out.index, index::Index::Open(io));
  LAZYFS_ASSIGN_OR_RETURN(out.tree, out.index->OpenTree(image.manifest, *image.source));
  return out;
}

Result<fetch::BlobPruneReport> PruneBlobs(const StoreLayout& store, index::Index& idx) {
  LAZYFS_ASSIGN_OR_RETURN(std::vector<index::StoredImage> images, idx.ListImages());
  std::vector<ImageDescriptor> keep;
  keep.reserve(images.size());
  for (index::StoredImage& image : images) keep.push_back(std::move(image.descriptor));
  return fetch::PruneBlobStore(store, keep);
}

std::string HumanBytes(uint64_t n) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[u]);
  return buf;
}

int ReportError(const Status& status) {
  // The one error printer: a message may carry an image's names or a registry's text (an HTTP
  // error body's message), so its control characters are escaped here, once, for every command.
  const std::string message = EscapeBytes(status.message(), Escape::kMessage);
  std::fprintf(stderr, "lazyfs: error: %s\n", message.c_str());
  return 1;
}

ProgressFn MakeProgress(bool quiet) {
  if (quiet || !::isatty(STDERR_FILENO)) return nullptr;
  return [](const Progress& p) {
    if (p.total) {
      std::fprintf(stderr, "\r%-8.*s %-24.*s %3u%%", static_cast<int>(p.stage.size()),
                   p.stage.data(), static_cast<int>(std::min<size_t>(p.item.size(), 24)),
                   p.item.data(), static_cast<unsigned>(p.done * 100 / p.total));
      if (p.done >= p.total) std::fputc('\n', stderr);
    } else {
      std::fprintf(stderr, "\r%-8.*s %-24.*s %llu", static_cast<int>(p.stage.size()),
                   p.stage.data(), static_cast<int>(std::min<size_t>(p.item.size(), 24)),
                   p.item.data(), static_cast<unsigned long long>(p.done));
    }
    std::fflush(stderr);
  };
}

}  // namespace lazyfs::cli
