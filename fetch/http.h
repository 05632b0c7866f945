// HTTP over libcurl: one request at a time per handle, bodies streamed to a callback.
//
// The one idea: redirects are followed here, not by libcurl, so that an Authorization header
// never travels to a host (or port, or scheme) other than the one it was meant for; registries
// routinely redirect blob downloads to a storage service. Error bodies (4xx/5xx) are collected
// (capped) for the message instead of being streamed to the caller.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/deadline.h"
#include "base/status.h"
#include "base/thread_annotations.h"

namespace lazyfs::fetch {

// Owns one CURL easy handle. Move-only.
class CurlEasy {
 public:
  CurlEasy() : h_(curl_easy_init()) {}
  ~CurlEasy() { if (h_) curl_easy_cleanup(h_); }
  CurlEasy(CurlEasy&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CurlEasy& operator=(CurlEasy&&) = delete;
  CurlEasy(const CurlEasy&) = delete;
  CurlEasy& operator=(const CurlEasy&) = delete;
  CURL* get() const { return h_; }

 private:
  CURL* h_;
};

// Owns a curl_slist of request headers.
class CurlHeaders {
 public:
  CurlHeaders() = default;
  ~CurlHeaders() { curl_slist_free_all(list_); }
  CurlHeaders(const CurlHeaders&) = delete;
  CurlHeaders& operator=(const CurlHeaders&) = delete;
  Status Append(const std::string& header);
  curl_slist* get() const { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

struct HttpOptions {
  long connect_timeout_s = 30;  // per connection attempt
  // A transfer slower than low_speed_limit_bps bytes/s for low_speed_timeout_s fails: a server
  // that drips a byte now and then must not hold a request for as long as it likes.
  long low_speed_limit_bps = 1;
  long low_speed_timeout_s = 60;
  bool verify_tls = true;
};

class HttpResponse;

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, or (with `upload` as the body) POST, PUT, PATCH
  std::string url;
  // "Name: value" lines (Accept, Range), sent to every hop of a redirect chain.
  std::vector<std::string> headers;
  // "Authorization: ..." sent only while the URL is on auth_origin.
  std::string authorization;
  // The scheme://host:port the authorization was issued for (OriginOf); empty: the origin of
  // `url`. A registry names upload URLs itself, possibly on another host: those must not get
  // the registry's credentials.
  std::string auth_origin;
  // The request body of a POST, PUT or PATCH (sent with its Content-Length; the caller keeps
  // the bytes alive). Such requests follow only 307 and 308 redirects, which keep the body.
  std::string_view upload;
  // 2xx bodies go here; returning a non-OK Status aborts the transfer with that Status. When
  // unset, the body is collected into HttpResponse::body up to max_body bytes.
  std::function<Status(std::string_view)> on_body;
  // Called once with the final 2xx response's status and headers, before its first body byte
  // (or at its end when it has no body); its error aborts the transfer like on_body's.
  std::function<Status(const HttpResponse&)> on_start;
  uint64_t max_body = 4 << 20;
  int max_redirects = 10;
  // Who is being talked to, for messages ("registry 127.0.0.1:5000"); default: the URL's host.
  std::string peer;
  // The caller's patience: no hop of the request starts once it has passed, and the transfer
  // in progress is aborted when it passes or its Canceller is raised.
  Deadline deadline;
};

class HttpResponse {
 public:
  long status = 0;
  // Response headers of the final response; names lower-cased, values trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  // The collected body (when no on_body was given), or the start of an error body.
  std::string body;

  // The first header with this (lower-case) name, or empty.
  std::string Header(std::string_view name) const;
};

// Performs requests, reusing connections through a small pool of handles (each keeps its
// connection alive between requests) that share a DNS cache and TLS sessions (a curl share
// handle), speaking HTTP/2 over TLS when the server offers it. Thread-safe.
class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Fails with Unavailable when the server cannot be reached or the transfer breaks (message:
  // "cannot reach HOST (connection refused)") or when request.deadline ends it ("PEER: deadline
  // reached", "PEER: cancelled"), ResourceExhausted when a collected body passes max_body, or
  // with the Status on_body returned. Any HTTP status is a successful Perform.
  Result<HttpResponse> Perform(const HttpRequest& request);

 private:
  CurlEasy Acquire();
  void Release(CurlEasy easy);
  Result<HttpResponse> PerformOnce(CURL* easy, const HttpRequest& request, const std::string& url,
                                   bool send_auth);

  struct Share;

  const HttpOptions options_;
  std::unique_ptr<Share> share_;
  Mutex mu_;
  std::vector<CurlEasy> idle_ LAZYFS_GUARDED_BY(mu_);
};

// The delay a Retry-After header asks for: delta-seconds or an HTTP-date (relative to now, never
// negative); nullopt when absent or unparseable.
std::optional<long> ParseRetryAfter(const std::string& value);

// "scheme://host:port" of a URL (default ports filled in), or empty if it does not parse.
std::string OriginOf(const std::string& url);

// `reference` (a Location header: absolute, or relative like "/v2/r/blobs/uploads/u?x=1")
// resolved against the URL it came from. Fails with InvalidArgument when it does not parse.
Result<std::string> ResolveUrl(const std::string& base, const std::string& reference);

// Percent-encodes a query parameter value.
std::string UrlEscape(std::string_view s);

}  // namespace lazyfs::fetch
