// registries.conf (v2), the file containers tools (podman, skopeo, buildah) read to learn about
// mirrors, insecure registries and blocked ones: containers-registries.conf(5).
//
// The one idea: a reference is matched against `[[registry]]` prefixes (the longest wins), and
// the matching entry turns it into an ordered list of endpoints to pull from: its mirrors first,
// then its location (the origin, or its replacement). Only the subset lazyfs acts on is read:
// prefix, location, insecure, blocked, mirror-by-digest-only and mirrors' location, insecure
// and pull-from-mirror; other keys (unqualified-search-registries, short names, v1 tables) are
// ignored. Pure functions, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "fetch/fetch.h"

namespace lazyfs::fetch {

// Which pulls a mirror serves ("pull-from-mirror").
enum class MirrorPulls { kAll, kDigestOnly, kTagOnly };

struct RegistryMirror {
  std::string location;  // host[:port][/namespace]
  bool insecure = false;
  MirrorPulls pulls = MirrorPulls::kAll;
};

struct RegistryEntry {
  std::string prefix;    // host[:port][/namespace], or *.domain; defaults to location
  std::string location;  // where the prefix really lives; defaults to prefix
  bool insecure = false;
  bool blocked = false;
  // "mirror-by-digest-only": the mirrors serve pulls by digest only; a tag is resolved at the
  // location alone (a mirror's tags may be stale or forged; a digest is checked). Overrides
  // each mirror's `pulls`.
  bool mirror_by_digest_only = false;
  std::vector<RegistryMirror> mirrors;
};

struct RegistriesConf {
  std::string path;  // where it was read from (for messages); empty when there was no file
  std::vector<RegistryEntry> registries;
};

// One place to pull a repository from.
struct Endpoint {
  std::string registry;    // host[:port]
  std::string repository;  // the repository there
  bool insecure = false;   // plain HTTP and unverified TLS allowed
  bool mirror = false;     // a mirror (else the origin)
};

// Parses the TOML text. InvalidArgument naming `path` and the line for bad TOML or fields of
// the wrong type, or an entry with neither prefix nor location.
Result<RegistriesConf> ParseRegistriesConf(std::string_view text, const std::string& path);

// Reads SourceOptions.registries_conf, else $CONTAINERS_REGISTRIES_CONF, else
// /etc/containers/registries.conf. A missing default file is an empty configuration; a missing
// file the user named is NotFound.
Result<RegistriesConf> LoadRegistriesConf(const SourceOptions& options);

// The endpoints for registry/repository, mirrors first: only the mirrors that serve this kind
// of pull (by digest when `by_digest`, else by tag). No matching entry: the registry itself
// (insecure when options.insecure). A blocked entry fails with PermissionDenied.
Result<std::vector<Endpoint>> EndpointsFor(const RegistriesConf& conf,
                                           const std::string& registry,
                                           const std::string& repository, bool by_digest,
                                           const SourceOptions& options);

}  // namespace lazyfs::fetch
