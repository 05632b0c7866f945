// Registry credentials from the files and helpers container tools use (containers-auth.json(5),
// docker's config.json with credHelpers/credsStore). Declared in registry_client.h.
//
// Secrets are only ever returned in Credentials: messages name files, keys and helpers, never
// what they hold or print.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/text.h"
#include "fetch/registry_client.h"

extern char** environ;

namespace lazyfs::fetch {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxHelperOutput = 1 << 20;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// An "auths" key ("https://host/v1/", "host", "http://host:5000", "host/namespace") as
// {host[:port] lower-cased, namespace path}. The docker config's "/v1/" suffix is no namespace.
std::pair<std::string, std::string> SplitAuthKey(std::string_view key) {
  const bool url = key.find("://") != std::string_view::npos;
  if (url) key = key.substr(key.find("://") + 3);
  const size_t slash = key.find('/');
  std::string host = Lower(std::string(key.substr(0, slash)));
  std::string path = slash == std::string_view::npos ? "" : std::string(key.substr(slash + 1));
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (url || path == "v1" || path == "v2") path.clear();
  return {std::move(host), std::move(path)};
}

bool HostMatches(const std::string& key_host, const std::string& registry) {
  return key_host == registry || (IsDockerHub(registry) && IsDockerHub(key_host));
}

Result<Credentials> DecodeAuthEntry(const Json& entry, const std::string& path,
                                    const std::string& key) {
  Credentials c;
  auto auth = entry.find("auth");
  if (auth != entry.end() && auth->is_string() && !auth->get<std::string>().empty()) {
    // Some tools wrap long values; base64 itself has no line breaks.
    std::string value = auth->get<std::string>();
    std::erase_if(value, [](char c) { return c == '\n' || c == '\r'; });
    auto decoded = Base64Decode(value);
    const size_t colon = decoded.ok() ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) {
      return InvalidArgumentError("auth file " + path + ": the \"auth\" entry for " + key +
                                  " is not base64 of user:password");
    }
    c.username = decoded->substr(0, colon);
    c.password = decoded->substr(colon + 1);
    return c;
  }
  auto user = entry.find("username");
  auto pass = entry.find("password");
  if (user != entry.end() && user->is_string() && pass != entry.end() && pass->is_string()) {
    c.username = user->get<std::string>();
    c.password = pass->get<std::string>();
    return c;
  }
  return NotFoundError("no credentials in the entry");
}

// Writes to a child's stdin pipe. A child that exits without reading would raise SIGPIPE and
// kill this process: the signal is blocked in this thread for the write, and one it caused is
// consumed before the mask is restored.
Status WriteToChild(int fd, std::string_view data) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  Status s = WriteAll(fd, data.data(), data.size());
  if (!s.ok()) {
    const timespec zero{0, 0};
    while (::sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return s;
}

// Runs `docker-credential-NAME get` with `server` on stdin (the credential helper protocol).
// nullopt when the helper says it has nothing for the server.
Result<std::optional<Credentials>> RunCredentialHelper(const std::string& name,
                                                       const std::string& server) {
  const std::string program = "docker-credential-" + name;
  if (name.empty() || name.find('/') != std::string::npos) {
    return InvalidArgumentError("invalid credential helper name \"" + name + "\"");
  }
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  Fd in_read(in[0]), in_write(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  Fd out_read(out[0]), out_write(out[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_read.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  char* argv[] = {const_cast<char*>(program.c_str()), const_cast<char*>("get"), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return ErrnoError(rc, "cannot run credential helper " + program);
  in_read.Reset();
  out_write.Reset();
  Status wrote = WriteToChild(in_write.get(), server);
  in_write.Reset();
  std::string output;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(out_read.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || output.size() > kMaxHelperOutput) break;
    output.append(buf, static_cast<size_t>(n));
  }
  out_read.Reset();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // The helpers' own way of saying "nothing stored" (docker-credential-helpers).
    if (output.find("credentials not found") != std::string::npos) {
      return std::optional<Credentials>();
    }
    return UnavailableError("credential helper " + program + " failed for " + server + " (" +
                            (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                               : std::string("killed by a signal")) +
                            ")");
  }
  if (!wrote.ok()) return wrote.WithContext("while writing to credential helper " + program);
  Json j = Json::parse(output, nullptr, false);
  if (!j.is_object() || !j.contains("Username") || !j["Username"].is_string() ||
      !j.contains("Secret") || !j["Secret"].is_string()) {
    return InvalidArgumentError("credential helper " + program + " for " + server +
                                " did not answer {\"Username\":..,\"Secret\":..}");
  }
  Credentials c;
  c.username = j["Username"].get<std::string>();
  c.password = j["Secret"].get<std::string>();
  return std::optional<Credentials>(std::move(c));
}

// The server name helpers are asked about: docker stores Docker Hub under its v1 URL.
std::string HelperServer(const std::string& registry) {
  return IsDockerHub(registry) ? "https://index.docker.io/v1/" : registry;
}

// Looks `registry`/`repository` up in one auth file; nullopt source when it has nothing.
Result<std::optional<FoundCredentials>> LookupInFile(const std::string& path,
                                                     const std::string& registry,
                                                     const std::string& repository) {
  auto text = ReadFileToString(path, 4 << 20);
  if (!text.ok()) {
    if (text.status().error_number() == ENOENT || text.status().code() == StatusCode::kNotFound) {
      return std::optional<FoundCredentials>();
    }
    return text.status().WithContext("while reading credentials");
  }
  Json j = Json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgumentError("auth file " + path + " is not a JSON object");
  }
  const std::string want = Lower(registry);
  auto from_helper = [&](const std::string& helper) -> Result<std::optional<FoundCredentials>> {
    LAZYFS_ASSIGN_OR_RETURN(std::optional<Credentials> c,
                            RunCredentialHelper(helper, HelperServer(want)));
    if (!c) return std::optional<FoundCredentials>();
    return std::optional<FoundCredentials>(FoundCredentials{
        std::move(c), "credential helper docker-credential-" + helper + " (" + path + ")"});
  };
  if (auto helpers = j.find("credHelpers"); helpers != j.end() && helpers->is_object()) {
    for (const auto& [key, helper] : helpers->items()) {
      if (HostMatches(SplitAuthKey(key).first, want) && helper.is_string()) {
        return from_helper(helper.get<std::string>());
      }
    }
  }
  if (auto auths = j.find("auths"); auths != j.end() && auths->is_object()) {
    const Json* best = nullptr;
    std::string best_key;
    size_t best_len = 0;
    for (const auto& [key, entry] : auths->items()) {
      auto [host, ns] = SplitAuthKey(key);
      if (!HostMatches(host, want) || !entry.is_object()) continue;
      if (!ns.empty() && repository != ns && !repository.starts_with(ns + "/")) continue;
      if (!best || ns.size() + 1 > best_len) {
        best = &entry;
        best_key = key;
        best_len = ns.size() + 1;
      }
    }
    if (best) {
      auto c = DecodeAuthEntry(*best, path, best_key);
      if (c.ok()) return std::optional<FoundCredentials>(FoundCredentials{std::move(*c), path});
      if (c.status().code() != StatusCode::kNotFound) return c.status();
    }
  }
  if (auto store = j.find("credsStore"); store != j.end() && store->is_string() &&
                                         !store->get<std::string>().empty()) {
    return from_helper(store->get<std::string>());
  }
  return std::optional<FoundCredentials>();
}

// The docker config file: $DOCKER_CONFIG/config.json, or ~/.docker/config.json.
std::string DockerConfigPath() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir && *dir) {
    return std::string(dir) + "/config.json";
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/") + "/.docker/config.json";
}

// The auth files FindCredentials searches, in order.
std::vector<std::string> AuthFilePaths(const SourceOptions& options) {
  if (!options.docker_config.empty()) return {options.docker_config};
  if (const char* file = std::getenv("REGISTRY_AUTH_FILE"); file && *file) return {file};
  std::vector<std::string> out;
  if (const char* run = std::getenv("XDG_RUNTIME_DIR"); run && *run) {
    out.push_back(std::string(run) + "/containers/auth.json");
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    out.push_back(std::string(home) + "/.config/containers/auth.json");
  }
  out.push_back(DockerConfigPath());
  return out;
}

}  // namespace

Result<FoundCredentials> FindCredentials(const SourceOptions& options,
                                         const std::string& registry,
                                         const std::string& repository) {
  const std::vector<std::string> paths = AuthFilePaths(options);
  for (const std::string& path : paths) {
    LAZYFS_ASSIGN_OR_RETURN(std::optional<FoundCredentials> found,
                            LookupInFile(path, registry, repository));
    if (found) return std::move(*found);
  }
  FoundCredentials none;
  for (const std::string& path : paths) none.source += (none.source.empty() ? "" : ", ") + path;
  if (paths.size() > 1) none.source = "none of " + none.source;
  return none;
}

}  // namespace lazyfs::fetch
