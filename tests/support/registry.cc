#include "tests/support/registry.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "base/fd.h"

namespace lazyfs::testing {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";
constexpr auto kStartTimeout = std::chrono::seconds(20);
constexpr int kPortAttempts = 5;

class CurlEasy {
 public:
  CurlEasy() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    h_ = curl_easy_init();
  }
  ~CurlEasy() {
    if (h_) curl_easy_cleanup(h_);
  }
  CurlEasy(const CurlEasy&) = delete;
  CurlEasy& operator=(const CurlEasy&) = delete;
  CURL* get() const { return h_; }

 private:
  CURL* h_ = nullptr;
};

class CurlHeaders {
 public:
  CurlHeaders() = default;
  ~CurlHeaders() { curl_slist_free_all(list_); }
  CurlHeaders(const CurlHeaders&) = delete;
  CurlHeaders& operator=(const CurlHeaders&) = delete;
  void Append(const std::string& h) {
    if (curl_slist* next = curl_slist_append(list_, h.c_str())) list_ = next;
  }
  curl_slist* get() const { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

struct Body {
  const std::string* text = nullptr;  // or
  int fd = -1;
  uint64_t size = 0;
  uint64_t pos = 0;
};

size_t ReadBody(char* out, size_t size, size_t n, void* user) {
  auto* b = static_cast<Body*>(user);
  const size_t want = size * n;
  if (b->text) {
    const size_t len = std::min<uint64_t>(want, b->text->size() - b->pos);
    std::memcpy(out, b->text->data() + b->pos, len);
    b->pos += len;
    return len;
  }
  auto got = PreadFull(b->fd, out, want, b->pos);
  if (!got.ok()) return CURL_READFUNC_ABORT;
  b->pos += *got;
  return *got;
}

size_t CollectBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<std::string*>(user);
  if (s->size() < (64 << 10)) s->append(data, size * n);
  return size * n;
}

size_t CollectHeader(char* data, size_t size, size_t n, void* user) {
  auto* location = static_cast<std::string*>(user);
  std::string_view line(data, size * n);
  if (line.size() > 9 && strncasecmp(line.data(), "location:", 9) == 0) {
    line.remove_prefix(9);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n' || line.back() == ' ')) {
      line.remove_suffix(1);
    }
    *location = std::string(line);
  }
  return size * n;
}

struct Response {
  long status = 0;
  std::string body;
  std::string location;
};

struct Auth {
  std::string user;
  std::string password;
};

Result<Response> Http(const std::string& method, const std::string& url,
                      const std::vector<std::string>& headers, Body* body, const Auth& auth,
                      long timeout_s = 60) {
  CurlEasy easy;
  if (!easy.get()) return InternalError("curl_easy_init failed");
  CURL* h = easy.get();
  CurlHeaders list;
  for (const std::string& header : headers) list.Append(header);
  list.Append("Expect:");  // no 100-continue round trip
  Response r;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
  // Test registries with TLS use a self-signed certificate made for the test.
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &CollectBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &CollectHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &r.location);
  if (!auth.user.empty()) {
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(h, CURLOPT_USERNAME, auth.user.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, auth.password.c_str());
  }
  if (method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (method == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
  } else if (method == "PUT") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, &ReadBody);
    curl_easy_setopt(h, CURLOPT_READDATA, body);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body->size));
  } else if (method != "GET") {
    return InternalError("unsupported method " + method);
  }
  const CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    return UnavailableError(method + " " + url + ": " +
                            (errbuf[0] ? errbuf : curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

Status HttpFailure(const std::string& what, const Response& r) {
  return Status(r.status == 401 || r.status == 403 ? StatusCode::kPermissionDenied
                                                    : StatusCode::kInternal,
                what + ": HTTP " + std::to_string(r.status) + " " + r.body);
}

// Runs argv, returns its stdout; fails naming the command when it does not exit 0.
Result<std::string> RunCapture(const std::vector<std::string>& argv) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  Fd read_end(pipefd[0]), write_end(pipefd[1]);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) {
    ::dup2(write_end.get(), STDOUT_FILENO);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  write_end.Reset();
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return InternalError(argv[0] + " failed (exit status " +
                         std::to_string(WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1) +
                         "; is it installed?)");
  }
  return out;
}

Result<int> FreePort() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return ErrnoError(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoError(errno, "bind 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoError(errno, "getsockname");
  }
  return static_cast<int>(ntohs(addr.sin_port));
}

}  // namespace

Result<std::unique_ptr<Registry>> Registry::Start(const RegistryOptions& options) {
  if (::access(kRegistryBinary, X_OK) != 0) {
    return FailedPreconditionError(std::string(kRegistryBinary) +
                                   " is missing: install the docker-registry package "
                                   "(packaging/install-deps.sh)");
  }
  std::unique_ptr<Registry> r(new Registry());
  r->options_ = options;
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/lazyfs-registry-XXXXXX";
  if (!::mkdtemp(templ.data())) return ErrnoError(errno, "mkdtemp " + templ);
  r->work_dir_ = templ;
  r->storage_dir_ = r->work_dir_ + "/storage";
  r->config_path_ = r->work_dir_ + "/config.yml";
  r->log_path_ = r->work_dir_ + "/registry.log";
  LAZYFS_RETURN_IF_ERROR(MakeDirs(r->storage_dir_));
  if (options.tls) {
    LAZYFS_RETURN_IF_ERROR(
        RunCapture({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", r->work_dir_ + "/key.pem", "-out", r->work_dir_ + "/cert.pem"})
            .status()
            .WithContext("while making the test registry's TLS certificate"));
  }
  if (!options.user.empty()) {
    LAZYFS_ASSIGN_OR_RETURN(std::string line,
                            RunCapture({"htpasswd", "-Bbn", options.user, options.password}));
    LAZYFS_RETURN_IF_ERROR(WriteFileAtomic(r->work_dir_ + "/htpasswd", line));
  }
  Status last;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    LAZYFS_ASSIGN_OR_RETURN(r->port_, FreePort());
    r->host_ = "127.0.0.1:" + std::to_string(r->port_);
    last = r->Launch();
    if (last.ok()) return r;
    if (last.code() != StatusCode::kAlreadyExists) return last;  // not a port collision
  }
  return last;
}

Status Registry::Launch() {
  std::string config =
      "version: 0.1\n"
      "log:\n"
      "  level: info\n"
      "  accesslog:\n"
      "    disabled: true\n"
      "storage:\n"
      "  filesystem:\n"
      "    rootdirectory: " + storage_dir_ + "\n"
      "  delete:\n"
      "    enabled: true\n"
      "http:\n"
      "  addr: " + host_ + "\n"
      "  secret: lazyfs-test-registry\n";
  if (options_.tls) {
    config +=
        "  tls:\n"
        "    certificate: " + work_dir_ + "/cert.pem\n"
        "    key: " + work_dir_ + "/key.pem\n";
  }
  if (!options_.user.empty()) {
    config +=
        "auth:\n"
        "  htpasswd:\n"
        "    realm: lazyfs-test\n"
        "    path: " + work_dir_ + "/htpasswd\n";
  }
  LAZYFS_RETURN_IF_ERROR(WriteFileAtomic(config_path_, config));
  LAZYFS_ASSIGN_OR_RETURN(Fd log, OpenFile(log_path_, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  LAZYFS_ASSIGN_OR_RETURN(Fd devnull, OpenFile("/dev/null", O_RDONLY));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) {
    // The registry must not outlive a test binary that crashes.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(1);
    ::dup2(devnull.get(), STDIN_FILENO);
    ::dup2(log.get(), STDOUT_FILENO);
    ::dup2(log.get(), STDERR_FILENO);
    ::execl(kRegistryBinary, "docker-registry", "serve", config_path_.c_str(),
            static_cast<char*>(nullptr));
    _exit(127);
  }
  pid_ = pid;
  const auto deadline = Clock::now() + kStartTimeout;
  const std::string url = std::string(options_.tls ? "https://" : "http://") + host_ + "/v2/";
  while (Clock::now() < deadline) {
    int wstatus = 0;
    if (::waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      const std::string log_text = Log();
      if (log_text.find("address already in use") != std::string::npos) {
        return Status(StatusCode::kAlreadyExists, "port " + std::to_string(port_) + " taken");
      }
      return UnavailableError("docker-registry exited during start-up; its log:\n" + log_text);
    }
    auto r = Http("GET", url, {}, nullptr, {}, 2);
    if (r.ok() && (r->status == 200 || r->status == 401)) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Stop().IgnoreError();
  return UnavailableError("docker-registry on " + host_ + " did not answer GET /v2/ within " +
                          std::to_string(kStartTimeout.count()) + " s; its log:\n" + Log());
}

Registry::~Registry() {
  Stop().IgnoreError();
  if (!work_dir_.empty()) RemoveTree(work_dir_).IgnoreError();
}

std::string Registry::BlobDataPath(const std::string& digest) const {
  const size_t colon = digest.find(':');
  const std::string algo = digest.substr(0, colon);
  const std::string hex = digest.substr(colon + 1);
  return storage_dir_ + "/docker/registry/v2/blobs/" + algo + "/" + hex.substr(0, 2) + "/" + hex +
         "/data";
}

std::string Registry::Log() const {
  auto text = ReadFileToString(log_path_, 1 << 20);
  return text.ok() ? *text : "(no log: " + text.status().message() + ")";
}

Status Registry::Stop() {
  if (pid_ <= 0) return Status::Ok();
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  int wstatus = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid_, &wstatus, WNOHANG);
    if (w == pid_ || (w < 0 && errno == ECHILD)) break;
    if (Clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
  return Status::Ok();
}

Status Registry::Restart() {
  LAZYFS_RETURN_IF_ERROR(Stop());
  // Same port: clients keep their host string. Retry briefly in case the port is in TIME_WAIT.
  Status s;
  for (int attempt = 0; attempt < 20; ++attempt) {
    s = Launch();
    if (s.code() != StatusCode::kAlreadyExists) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return s;
}

namespace {

struct Pusher {
  std::string layout_dir;
  std::string base;  // http://host/v2/repo
  std::string host;
  Auth auth;

  std::string BlobPath(const std::string& digest) const {
    const size_t colon = digest.find(':');
    return layout_dir + "/blobs/" + digest.substr(0, colon) + "/" + digest.substr(colon + 1);
  }

  std::string Absolute(const std::string& location) const {
    if (location.starts_with("http://") || location.starts_with("https://")) return location;
    return base.substr(0, base.find("://") + 3) + host + location;
  }

  Status PushBlob(const std::string& digest) {
    LAZYFS_ASSIGN_OR_RETURN(Response head,
                            Http("HEAD", base + "/blobs/" + digest, {}, nullptr, auth));
    if (head.status == 200) return Status::Ok();
    const std::string path = BlobPath(digest);
    LAZYFS_ASSIGN_OR_RETURN(Fd fd, OpenFile(path, O_RDONLY));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat " + path);
    LAZYFS_ASSIGN_OR_RETURN(Response post,
                            Http("POST", base + "/blobs/uploads/", {}, nullptr, auth));
    if (post.status != 202 || post.location.empty()) {
      return HttpFailure("starting the upload of " + digest, post);
    }
    std::string url = Absolute(post.location);
    url += (url.find('?') == std::string::npos ? "?" : "&");
    url += "digest=" + digest;
    Body body;
    body.fd = fd.get();
    body.size = static_cast<uint64_t>(st.st_size);
    LAZYFS_ASSIGN_OR_RETURN(
        Response put,
        Http("PUT", url, {"Content-Type: application/octet-stream"}, &body, auth, 600));
    if (put.status != 201) return HttpFailure("uploading " + digest, put);
    return Status::Ok();
  }

  // Pushes the manifest `digest` (and everything it refers to) under `reference`.
  Status PushManifest(const std::string& digest, std::string media_type,
                      const std::string& reference, int depth) {
    if (depth > 4) return InvalidArgumentError("image indexes nested too deep");
    LAZYFS_ASSIGN_OR_RETURN(std::string raw, ReadFileToString(BlobPath(digest), 4 << 20));
    Json j = Json::parse(raw, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return InvalidArgumentError("manifest " + digest + " in " + layout_dir + " is not JSON");
    }
    if (j.contains("mediaType") && j["mediaType"].is_string()) {
      media_type = j["mediaType"].get<std::string>();
    }
    try {
      if (j.contains("manifests")) {
        if (media_type.empty()) media_type = "application/vnd.oci.image.index.v1+json";
        for (const Json& child : j["manifests"]) {
          const std::string child_digest = child.at("digest").get<std::string>();
          LAZYFS_RETURN_IF_ERROR(
              PushManifest(child_digest, child.value("mediaType", ""), child_digest, depth + 1));
        }
      } else {
        if (media_type.empty()) media_type = "application/vnd.oci.image.manifest.v1+json";
        LAZYFS_RETURN_IF_ERROR(PushBlob(j.at("config").at("digest").get<std::string>()));
        for (const Json& layer : j.at("layers")) {
          LAZYFS_RETURN_IF_ERROR(PushBlob(layer.at("digest").get<std::string>()));
        }
      }
    } catch (const std::exception& e) {
      return InvalidArgumentError("manifest " + digest + " in " + layout_dir + ": " + e.what());
    }
    Body body;
    body.text = &raw;
    body.size = raw.size();
    LAZYFS_ASSIGN_OR_RETURN(Response put, Http("PUT", base + "/manifests/" + reference,
                                               {"Content-Type: " + media_type}, &body, auth));
    if (put.status != 201) return HttpFailure("putting manifest " + reference, put);
    return Status::Ok();
  }
};

}  // namespace

Status PushOciLayout(const std::string& layout_dir, const std::string& layout_tag,
                     const std::string& host, const std::string& repo, const std::string& tag,
                     const std::string& user, const std::string& password) {
  LAZYFS_ASSIGN_OR_RETURN(std::string index_raw,
                          ReadFileToString(layout_dir + "/index.json", 4 << 20));
  Json index = Json::parse(index_raw, nullptr, false);
  if (index.is_discarded() || !index.is_object() || !index.contains("manifests") ||
      !index["manifests"].is_array()) {
    return InvalidArgumentError(layout_dir + "/index.json is not an image index");
  }
  const Json* chosen = nullptr;
  std::string names;
  for (const Json& m : index["manifests"]) {
    std::string name;
    if (m.contains("annotations") && m["annotations"].is_object()) {
      name = m["annotations"].value("org.opencontainers.image.ref.name", "");
    }
    names += (names.empty() ? "" : ", ") + name;
    if ((layout_tag.empty() && index["manifests"].size() == 1) ||
        (!layout_tag.empty() && name == layout_tag)) {
      chosen = &m;
    }
  }
  if (!chosen) {
    return NotFoundError(layout_dir + ": no image named \"" + layout_tag +
                         "\" (available: " + names + ")");
  }
  // HOST may carry a scheme ("https://127.0.0.1:5000"); plain HTTP otherwise.
  std::string scheme = "http://", bare_host = host;
  if (const size_t sep = host.find("://"); sep != std::string::npos) {
    scheme = host.substr(0, sep + 3);
    bare_host = host.substr(sep + 3);
  }
  Pusher p{layout_dir, scheme + bare_host + "/v2/" + repo, bare_host, Auth{user, password}};
  try {
    return p.PushManifest(chosen->at("digest").get<std::string>(),
                          chosen->value("mediaType", ""), tag, 0)
        .WithContext("while pushing " + layout_dir + " to " + host + "/" + repo + ":" + tag);
  } catch (const std::exception& e) {
    return InvalidArgumentError(layout_dir + "/index.json: " + e.what());
  }
}

}  // namespace lazyfs::testing
