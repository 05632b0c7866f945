#include "fetch/http.h"

#include <strings.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>

#include "base/text.h"

namespace lazyfs::fetch {
namespace {

constexpr size_t kMaxErrorBody = 64 << 10;
constexpr size_t kMaxIdleHandles = 16;

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using CurlUrl = std::unique_ptr<CURLU, CurlUrlDeleter>;

struct CurlStringDeleter {
  void operator()(char* s) const { curl_free(s); }
};
using CurlString = std::unique_ptr<char, CurlStringDeleter>;

std::string UrlPart(CURLU* u, CURLUPart part, unsigned flags = 0) {
  char* out = nullptr;
  if (curl_url_get(u, part, &out, flags) != CURLUE_OK) return {};
  CurlString owned(out);
  return owned ? std::string(owned.get()) : std::string();
}

// "host:port" as the user wrote it, for messages.
std::string HostPortOf(const std::string& url) {
  CurlUrl u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return url;
  std::string host = UrlPart(u.get(), CURLUPART_HOST);
  std::string port = UrlPart(u.get(), CURLUPART_PORT);
  return port.empty() ? host : host + ":" + port;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

struct Transfer {
  CURL* easy;
  const HttpRequest* request;
  const std::string* url;  // of this hop
  HttpResponse* response;
  Status abort;  // why a callback stopped the transfer
  uint64_t collected = 0;
  bool started = false;  // on_start has been called
};

// Calls request.on_start once, for a final 2xx response.
Status StartBody(Transfer* t, long code) {
  if (t->started || !t->request->on_start || code < 200 || code >= 300) return Status::Ok();
  t->started = true;
  t->response->status = code;
  return t->request->on_start(*t->response);
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    t->response->headers.clear();  // a new response (after 100 Continue, a proxy...)
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    t->response->headers.emplace_back(std::move(name), Trim(line.substr(colon + 1)));
  }
  return size * n;
}

size_t OnWrite(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 300 && code < 400) return len;  // a redirect's body is of no interest
  const bool success = code >= 200 && code < 300;
  if (Status s = StartBody(t, code); !s.ok()) {
    t->abort = std::move(s);
    return 0;
  }
  if (success && t->request->on_body) {
    Status s = t->request->on_body(std::string_view(data, len));
    if (!s.ok()) {
      t->abort = std::move(s);
      return 0;
    }
    return len;
  }
  const uint64_t cap = success ? t->request->max_body : kMaxErrorBody;
  if (t->collected + len > cap) {
    if (!success) {  // keep the start of an error body, drop the rest
      t->response->body.append(data, static_cast<size_t>(cap - t->collected));
      t->collected = cap;
      return len;
    }
    t->abort = ResourceExhaustedError("response body from " + HostPortOf(*t->url) +
                                      " is larger than " + std::to_string(cap) + " bytes");
    return 0;
  }
  t->response->body.append(data, len);
  t->collected += len;
  return len;
}

bool IsUpload(const std::string& method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

std::string PeerOf(const HttpRequest& request, const std::string& url) {
  return request.peer.empty() ? HostPortOf(url) : request.peer;
}

// What a request that its deadline ended fails with.
Status DeadlineError(const HttpRequest& request, const std::string& url) {
  return UnavailableError(PeerOf(request, url) + ": " + request.deadline.Why());
}

// libcurl calls this often during a transfer, and about once a second while it waits for a
// silent server: the place to notice a deadline that passed or a Canceller that was raised.
int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->request->deadline.expired()) return 0;
  t->abort = DeadlineError(*t->request, *t->url);
  return 1;
}

Status CurlError(CURLcode rc, CURL* easy, const char* errbuf, const std::string& peer) {
  std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == '.')) detail.pop_back();
  switch (rc) {
    case CURLE_COULDNT_CONNECT: {
      long os_errno = 0;
      curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
      std::string reason = os_errno ? std::strerror(static_cast<int>(os_errno)) : detail;
      if (!reason.empty()) reason[0] = static_cast<char>(std::tolower(reason[0]));
      return UnavailableError("cannot reach " + peer + " (" + reason + ")");
    }
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return UnavailableError("cannot reach " + peer + " (cannot resolve host: " + detail + ")");
    case CURLE_OPERATION_TIMEDOUT:
      return UnavailableError(peer + ": timed out (" + detail + ")");
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
      return UnavailableError(peer + ": TLS error (" + detail + ")");
    case CURLE_OUT_OF_MEMORY:
      return ResourceExhaustedError(peer + ": out of memory");
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return InvalidArgumentError(peer + ": bad URL (" + detail + ")");
    default:
      return UnavailableError(peer + ": transfer failed (" + detail + ")");
  }
}

// Sets up `easy` for one hop of t's request; the callbacks are given `t`.
Status SetOptions(CURL* easy, const HttpOptions& options, CURLSH* share, Transfer* t,
                  curl_slist* headers, char* errbuf) {
  const HttpRequest& request = *t->request;
  const std::string& url = *t->url;
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  // Redirects are followed by hand (Perform) so the Authorization header stays home; should
  // libcurl ever follow one itself, it must not take credentials to another host either.
  curl_easy_setopt(easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, std::max(1L, options.low_speed_limit_bps));
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, options.low_speed_timeout_s);
  // The deadline bounds the whole transfer; the progress callback also sees a Canceller. Rounded
  // up past the deadline (remaining() is truncated): a timeout that fired a moment before it
  // would pass for the network's, and the error would not say that the deadline ended it.
  if (const auto left = request.deadline.remaining(); left != std::chrono::milliseconds::max()) {
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(left.count() + 1));
  }
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, t);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "lazyfs/" LAZYFS_VERSION);
  // HTTP/2 when the TLS server offers it. (No CURLOPT_PIPEWAIT: with the easy interface in
  // several threads a transfer could wait forever for another thread's connection.)
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  if (share) curl_easy_setopt(easy, CURLOPT_SHARE, share);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &OnWrite);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
  if (request.method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (IsUpload(request.method)) {
    // POSTFIELDS sends the bytes as they are, with a Content-Length; CUSTOMREQUEST names the
    // method for PUT and PATCH.
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS,
                     request.upload.empty() ? "" : request.upload.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.upload.size()));
    if (request.method != "POST") {
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
  } else if (request.method != "GET") {
    return InternalError("HttpClient: unsupported method " + request.method);
  }
  return Status::Ok();
}

}  // namespace

Status CurlHeaders::Append(const std::string& header) {
  curl_slist* next = curl_slist_append(list_, header.c_str());
  if (!next) return ResourceExhaustedError("out of memory building HTTP headers");
  list_ = next;
  return Status::Ok();
}

std::string HttpResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

// A curl share handle with one lock per shared data kind, so that the handles of one client
// reuse each other's DNS answers and TLS sessions. Connections are not shared: each pooled
// handle keeps its own (a handle returns to the pool with its connection alive), because a
// connection cache shared by easy handles in several threads let transfers wait on each other
// without any timeout firing.
struct HttpClient::Share {
  CURLSH* sh = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];

  Share() {
    sh = curl_share_init();
    if (!sh) return;
    curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, &Lock);
    curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, &Unlock);
    curl_share_setopt(sh, CURLSHOPT_USERDATA, this);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  ~Share() {
    if (sh) curl_share_cleanup(sh);
  }
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Share*>(user)->locks[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Share*>(user)->locks[data].unlock();
  }
};

HttpClient::HttpClient(HttpOptions options) : options_(options) {
  // curl_global_init is not thread-safe; do it once before any handle exists.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  share_ = std::make_unique<Share>();
}

// The handles go before the share they use.
HttpClient::~HttpClient() { idle_.clear(); }

CurlEasy HttpClient::Acquire() {
  MutexLock lock(mu_);
  if (idle_.empty()) return CurlEasy();
  CurlEasy easy = std::move(idle_.back());
  idle_.pop_back();
  return easy;
}

void HttpClient::Release(CurlEasy easy) {
  MutexLock lock(mu_);
  if (idle_.size() < kMaxIdleHandles) idle_.push_back(std::move(easy));
}

Result<HttpResponse> HttpClient::Perform(const HttpRequest& request) {
  CurlEasy easy = Acquire();
  if (!easy.get()) return ResourceExhaustedError("curl_easy_init failed");
  const std::string origin =
      request.auth_origin.empty() ? OriginOf(request.url) : request.auth_origin;
  std::string url = request.url;
  for (int hop = 0;; ++hop) {
    // Credentials stay with the origin they were issued for.
    const bool send_auth = !request.authorization.empty() && OriginOf(url) == origin;
    auto response = PerformOnce(easy.get(), request, url, send_auth);
    if (!response.ok()) return response.status();  // the handle may be in a bad state: drop it
    const long code = response->status;
    // 301-303 would turn an upload into a GET without its body: the caller sees those.
    const bool keeps_body = code == 307 || code == 308;
    const bool redirect =
        keeps_body || (!IsUpload(request.method) && (code == 301 || code == 302 || code == 303));
    if (!redirect) {
      Release(std::move(easy));
      return response;
    }
    char* location = nullptr;
    curl_easy_getinfo(easy.get(), CURLINFO_REDIRECT_URL, &location);
    if (!location) {
      return UnavailableError(PeerOf(request, url) + ": HTTP " +
                              std::to_string(code) + " redirect without a Location");
    }
    if (hop >= request.max_redirects) {
      return UnavailableError(PeerOf(request, url) +
                              ": too many redirects");
    }
    url = location;
  }
}

Result<HttpResponse> HttpClient::PerformOnce(CURL* easy, const HttpRequest& request,
                                             const std::string& url, bool send_auth) {
  if (request.deadline.expired()) return DeadlineError(request, url);
  curl_easy_reset(easy);
  HttpResponse response;
  Transfer t{easy, &request, &url, &response, Status::Ok()};
  CurlHeaders headers;
  for (const std::string& h : request.headers) LAZYFS_RETURN_IF_ERROR(headers.Append(h));
  // No "Expect: 100-continue" pause before a body, and no form Content-Type a caller did not ask
  // for.
  if (IsUpload(request.method)) {
    LAZYFS_RETURN_IF_ERROR(headers.Append("Expect:"));
    const bool typed = std::any_of(request.headers.begin(), request.headers.end(),
                                   [](const std::string& h) {
                                     return h.size() >= 13 &&
                                            strncasecmp(h.c_str(), "content-type:", 13) == 0;
                                   });
    if (!typed) LAZYFS_RETURN_IF_ERROR(headers.Append("Content-Type:"));
  }
  if (send_auth) LAZYFS_RETURN_IF_ERROR(headers.Append("Authorization: " + request.authorization));
  char errbuf[CURL_ERROR_SIZE] = {0};
  LAZYFS_RETURN_IF_ERROR(SetOptions(easy, options_, share_->sh, &t, headers.get(), errbuf));

  const CURLcode rc = curl_easy_perform(easy);
  // Nothing may keep pointing at this frame once we return.
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);
  if (rc != CURLE_OK) {
    if (!t.abort.ok()) return t.abort;
    // CURLOPT_TIMEOUT_MS is the deadline's doing.
    if (rc == CURLE_OPERATION_TIMEDOUT && request.deadline.expired()) {
      return DeadlineError(request, url);
    }
    return CurlError(rc, easy, errbuf, PeerOf(request, url));
  }
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &response.status);
  // A 2xx without a body never reached OnWrite.
  LAZYFS_RETURN_IF_ERROR(StartBody(&t, response.status));
  return response;
}

std::optional<long> ParseRetryAfter(const std::string& value) {
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); })) {
    if (value.size() > 9) return std::nullopt;
    return std::stol(value);
  }
  const time_t when = curl_getdate(value.c_str(), nullptr);
  if (when < 0) return std::nullopt;
  return std::max<long>(0, static_cast<long>(when - std::time(nullptr)));
}

std::string OriginOf(const std::string& url) {
  CurlUrl u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return {};
  std::string scheme = UrlPart(u.get(), CURLUPART_SCHEME);
  std::string host = UrlPart(u.get(), CURLUPART_HOST);
  std::string port = UrlPart(u.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return scheme + "://" + host + ":" + port;
}

Result<std::string> ResolveUrl(const std::string& base, const std::string& reference) {
  CurlUrl u(curl_url());
  if (!u) return ResourceExhaustedError("out of memory parsing a URL");
  if (curl_url_set(u.get(), CURLUPART_URL, base.c_str(), 0) != CURLUE_OK ||
      curl_url_set(u.get(), CURLUPART_URL, reference.c_str(), 0) != CURLUE_OK) {
    return InvalidArgumentError("cannot resolve URL " + QuoteName(reference) + " against " +
                                QuoteName(base));
  }
  std::string out = UrlPart(u.get(), CURLUPART_URL);
  if (out.empty()) return InvalidArgumentError("cannot resolve URL " + QuoteName(reference));
  return out;
}

std::string UrlEscape(std::string_view s) {
  // libcurl escapes all but RFC 3986's unreserved characters; the handle argument is unused.
  CurlString escaped(curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size())));
  return escaped ? std::string(escaped.get()) : std::string();
}

}  // namespace lazyfs::fetch
