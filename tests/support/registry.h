// A real registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with
// filesystem storage in a temporary directory, and a pusher for OCI layouts (the v2 upload API
// over libcurl).
//
// The one idea: tests talk to the same server software users do, never to a fake; the storage
// directory is exposed so a test can corrupt a blob on disk and watch the client notice.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "base/status.h"

namespace lazyfs::testing {

struct RegistryOptions {
  // When set, the registry requires HTTP basic authentication with this user (an htpasswd
  // file made with `htpasswd -Bbn`, from apache2-utils).
  std::string user;
  std::string password;
  // Serve HTTPS with a self-signed certificate for 127.0.0.1 (made with openssl at start).
  bool tls = false;
};

// One registry process. Not thread-safe (start and stop from one thread; talk to it from any).
class Registry {
 public:
  // Starts the registry on a free port and waits (up to ~20 s) until GET /v2/ answers. Fails
  // with Unavailable including the registry's log when it does not come up.
  static Result<std::unique_ptr<Registry>> Start(const RegistryOptions& options = {});
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // "127.0.0.1:PORT"
  const std::string& host() const { return host_; }
  // The filesystem driver's root (blobs live under docker/registry/v2/blobs/sha256/XX/HEX/data).
  const std::string& storage_dir() const { return storage_dir_; }
  // The path of the data file of a blob ("sha256:..." digest) in storage_dir().
  std::string BlobDataPath(const std::string& digest) const;
  // The registry's combined stdout/stderr so far.
  std::string Log() const;

  // Kills (SIGTERM, then SIGKILL after 5 s) and reaps the process. Idempotent.
  Status Stop();
  // Stops and starts again on the same port with the same storage.
  Status Restart();

 private:
  Registry() = default;
  Status Launch();

  RegistryOptions options_;
  std::string work_dir_;     // temporary; removed by the destructor
  std::string storage_dir_;
  std::string config_path_;
  std::string log_path_;
  int port_ = 0;
  std::string host_;
  pid_t pid_ = -1;
};

// Pushes the image that `layout_tag` names in an OCI layout (the only one when empty) to
// host/repo:tag over plain HTTP, or HTTPS when host is given as "https://HOST": blobs first (HEAD to skip existing ones; POST an upload, then
// PUT its location with ?digest=), child manifests of an index by digest, then the top manifest
// under `tag` with its media type as Content-Type. user/password: basic credentials, if any.
Status PushOciLayout(const std::string& layout_dir, const std::string& layout_tag,
                     const std::string& host, const std::string& repo, const std::string& tag,
                     const std::string& user = "", const std::string& password = "");

}  // namespace lazyfs::testing
