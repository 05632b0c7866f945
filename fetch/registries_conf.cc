#include "fetch/registries_conf.h"

#include <cstdlib>
#include <toml++/toml.h>

#include "base/fd.h"

namespace lazyfs::fetch {
namespace {

constexpr const char* kDefaultPath = "/etc/containers/registries.conf";

// A string field, or "" when absent; InvalidArgument when it has another type.
Result<std::string> StringField(const toml::table& t, const char* key, const std::string& where) {
  const toml::node* n = t.get(key);
  if (!n) return std::string();
  if (auto v = n->value<std::string>()) return *v;
  return InvalidArgumentError(where + ": \"" + key + "\" must be a string");
}

Result<bool> BoolField(const toml::table& t, const char* key, const std::string& where) {
  const toml::node* n = t.get(key);
  if (!n) return false;
  if (auto v = n->value<bool>()) return *v;
  return InvalidArgumentError(where + ": \"" + key + "\" must be true or false");
}

// "pull-from-mirror": "all" (or absent), "digest-only" or "tag-only".
Result<MirrorPulls> PullsField(const toml::table& t, const std::string& where) {
  LAZYFS_ASSIGN_OR_RETURN(std::string v, StringField(t, "pull-from-mirror", where));
  if (v.empty() || v == "all") return MirrorPulls::kAll;
  if (v == "digest-only") return MirrorPulls::kDigestOnly;
  if (v == "tag-only") return MirrorPulls::kTagOnly;
  return InvalidArgumentError(where + ": \"pull-from-mirror\" must be \"all\", \"digest-only\" "
                              "or \"tag-only\", not \"" + v + "\"");
}

// Whether a mirror of `entry` serves a pull by digest (else by tag).
bool Serves(const RegistryEntry& entry, const RegistryMirror& m, bool by_digest) {
  if (entry.mirror_by_digest_only) return by_digest;
  switch (m.pulls) {
    case MirrorPulls::kDigestOnly: return by_digest;
    case MirrorPulls::kTagOnly: return !by_digest;
    case MirrorPulls::kAll: return true;
  }
  return true;
}

std::string LineOf(const toml::node& n) {
  return "line " + std::to_string(n.source().begin.line);
}

// Whether "host/repo" falls under `prefix` (host[/ns] or *.domain[/ns]), and how specific the
// match is (longer wins).
bool PrefixMatches(const std::string& prefix, const std::string& name) {
  if (prefix.starts_with("*.")) {
    // *.example.com matches any subdomain host (not example.com itself).
    const size_t slash = name.find('/');
    const std::string host = name.substr(0, slash);
    const std::string suffix = prefix.substr(1);
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return name == prefix || name.starts_with(prefix + "/");
}

// "host[:port]/path" -> {host[:port], path}
std::pair<std::string, std::string> SplitLocation(const std::string& location) {
  const size_t slash = location.find('/');
  if (slash == std::string::npos) return {location, ""};
  return {location.substr(0, slash), location.substr(slash + 1)};
}

// Rewrites name (host/repo) under `prefix` to the same place under `location`.
Endpoint Rewrite(const std::string& prefix, const std::string& location, const std::string& name,
                 bool insecure, bool mirror) {
  std::string rest;
  if (!prefix.starts_with("*.")) rest = name.substr(prefix.size());  // "" or "/..."
  else rest = name.substr(name.find('/'));  // a wildcard keeps the whole repository
  auto [host, path] = SplitLocation(location + rest);
  return Endpoint{host, path, insecure, mirror};
}

}  // namespace

Result<RegistriesConf> ParseRegistriesConf(std::string_view text, const std::string& path) {
  RegistriesConf conf;
  conf.path = path;
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return InvalidArgumentError(path + ": line " + std::to_string(e.source().begin.line) + ": " +
                                std::string(e.description()));
  }
  const toml::node* registries = root.get("registry");
  if (!registries) return conf;
  const toml::array* list = registries->as_array();
  if (!list) {
    return InvalidArgumentError(path + ": " + LineOf(*registries) +
                                ": \"registry\" must be an array of tables ([[registry]])");
  }
  for (const toml::node& node : *list) {
    const std::string where = path + ": [[registry]] at " + LineOf(node);
    const toml::table* t = node.as_table();
    if (!t) return InvalidArgumentError(where + ": not a table");
    RegistryEntry e;
    LAZYFS_ASSIGN_OR_RETURN(e.prefix, StringField(*t, "prefix", where));
    LAZYFS_ASSIGN_OR_RETURN(e.location, StringField(*t, "location", where));
    LAZYFS_ASSIGN_OR_RETURN(e.insecure, BoolField(*t, "insecure", where));
    LAZYFS_ASSIGN_OR_RETURN(e.blocked, BoolField(*t, "blocked", where));
    LAZYFS_ASSIGN_OR_RETURN(e.mirror_by_digest_only,
                            BoolField(*t, "mirror-by-digest-only", where));
    if (e.prefix.empty() && e.location.empty()) {
      return InvalidArgumentError(where + ": needs a prefix or a location");
    }
    if (e.prefix.empty()) e.prefix = e.location;
    if (e.location.empty() && !e.prefix.starts_with("*.")) e.location = e.prefix;
    if (const toml::node* mirrors = t->get("mirror")) {
      const toml::array* ms = mirrors->as_array();
      if (!ms) return InvalidArgumentError(where + ": \"mirror\" must be [[registry.mirror]]");
      for (const toml::node& m : *ms) {
        const std::string mwhere = path + ": [[registry.mirror]] at " + LineOf(m);
        const toml::table* mt = m.as_table();
        if (!mt) return InvalidArgumentError(mwhere + ": not a table");
        RegistryMirror mirror;
        LAZYFS_ASSIGN_OR_RETURN(mirror.location, StringField(*mt, "location", mwhere));
        LAZYFS_ASSIGN_OR_RETURN(mirror.insecure, BoolField(*mt, "insecure", mwhere));
        LAZYFS_ASSIGN_OR_RETURN(mirror.pulls, PullsField(*mt, mwhere));
        if (mirror.location.empty()) return InvalidArgumentError(mwhere + ": needs a location");
        e.mirrors.push_back(std::move(mirror));
      }
    }
    conf.registries.push_back(std::move(e));
  }
  return conf;
}

Result<RegistriesConf> LoadRegistriesConf(const SourceOptions& options) {
  std::string path = options.registries_conf;
  bool named = !path.empty();
  if (!named) {
    if (const char* env = std::getenv("CONTAINERS_REGISTRIES_CONF"); env && *env) {
      path = env;
      named = true;
    } else {
      path = kDefaultPath;
    }
  }
  auto text = ReadFileToString(path, 4 << 20);
  if (!text.ok()) {
    const bool missing =
        text.status().error_number() == ENOENT || text.status().code() == StatusCode::kNotFound;
    if (missing && !named) return RegistriesConf{};
    return text.status().WithContext("while reading registries configuration");
  }
  return ParseRegistriesConf(*text, path);
}

Result<std::vector<Endpoint>> EndpointsFor(const RegistriesConf& conf,
                                           const std::string& registry,
                                           const std::string& repository, bool by_digest,
                                           const SourceOptions& options) {
  const std::string name = registry + "/" + repository;
  const RegistryEntry* best = nullptr;
  for (const RegistryEntry& e : conf.registries) {
    if (!PrefixMatches(e.prefix, name)) continue;
    // Exact prefixes beat wildcards; then the longer one wins.
    auto rank = [](const RegistryEntry& r) {
      return std::make_pair(!r.prefix.starts_with("*."), r.prefix.size());
    };
    if (!best || rank(e) > rank(*best)) best = &e;
  }
  std::vector<Endpoint> out;
  if (!best) {
    out.push_back(Endpoint{registry, repository, options.insecure, false});
    return out;
  }
  if (best->blocked) {
    return PermissionDeniedError("registry " + registry + " is blocked by " + conf.path +
                                 " (prefix \"" + best->prefix + "\")");
  }
  for (const RegistryMirror& m : best->mirrors) {
    if (!Serves(*best, m, by_digest)) continue;
    out.push_back(Rewrite(best->prefix, m.location, name, options.insecure || m.insecure, true));
  }
  const std::string location = best->location.empty() ? registry : best->location;
  const std::string prefix = best->location.empty() ? registry : best->prefix;
  out.push_back(Rewrite(prefix, location, name, options.insecure || best->insecure, false));
  return out;
}

}  // namespace lazyfs::fetch
