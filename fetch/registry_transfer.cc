// The request path under every registry call (declared in registry_client.h): the scheme a
// loopback or insecure registry settles on, authentication on 401, retries with backoff, and
// streamed bodies that resume where a broken transfer stopped.
#include <algorithm>
#include <cctype>
#include <random>
#include <thread>

#include "base/stats.h"
#include "fetch/registry_client.h"

namespace lazyfs::fetch {

Result<HttpResponse> RegistryClient::Request(HttpRequest request, const std::string& path) {
  request.peer = "registry " + registry_;
  bool authenticated_now = false;
  for (;;) {
    std::string scheme;
    bool settled;
    {
      std::lock_guard lock(mu_);
      if (std::chrono::steady_clock::now() >= token_expiry_) {
        // An expired token would only earn a 401: go straight to the token service.
        authorization_.clear();
        token_expiry_ = std::chrono::steady_clock::time_point::max();
      }
      scheme = scheme_;
      settled = scheme_settled_;
      request.authorization = authorization_;
    }
    request.url = scheme + "://" + endpoint_ + path;
    auto response = http_.Perform(request);
    if (!settled) {
      if (!response.ok() && response.status().code() == StatusCode::kUnavailable) {
        std::lock_guard lock(mu_);
        if (!scheme_settled_) {
          scheme_ = "http";
          scheme_settled_ = true;
        }
        continue;
      }
      std::lock_guard lock(mu_);
      scheme_settled_ = true;
    }
    if (!response.ok()) return response.status();
    if (response->status != 401) return response;
    if (authenticated_now) {
      if (credentials_) {
        return PermissionDeniedError("registry " + registry_ + ": credentials for " + registry_ +
                                     " from " + credentials_source_ + " were rejected (HTTP 401)");
      }
      return PermissionDeniedError("registry " + registry_ + ": access denied (HTTP 401)");
    }
    LAZYFS_RETURN_IF_ERROR(Authenticate(*response, request.authorization));
    authenticated_now = true;
  }
}

namespace {

bool RetryableHttpStatus(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

// The first byte position of a "Content-Range: bytes FIRST-LAST/TOTAL" header.
std::optional<uint64_t> ContentRangeStart(const std::string& value) {
  if (!value.starts_with("bytes ")) return std::nullopt;
  uint64_t first = 0;
  size_t i = 6;
  if (i >= value.size() || !std::isdigit(static_cast<unsigned char>(value[i]))) return std::nullopt;
  for (; i < value.size() && std::isdigit(static_cast<unsigned char>(value[i])); ++i) {
    if (first > (UINT64_MAX - 9) / 10) return std::nullopt;
    first = first * 10 + static_cast<uint64_t>(value[i] - '0');
  }
  if (i >= value.size() || value[i] != '-') return std::nullopt;
  return first;
}

}  // namespace

Result<HttpResponse> RegistryClient::WithRetries(
    const std::string& what, const std::function<Result<HttpResponse>()>& attempt,
    const Status* permanent) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(options_.retry_deadline_s);
  const int attempts = std::max(1, options_.max_attempts);
  long delay_ms = std::max<long>(1, options_.retry_initial_delay_ms);
  thread_local std::minstd_rand jitter(std::random_device{}());
  for (int n = 1;; ++n) {
    Result<HttpResponse> outcome = attempt();
    long wait_ms;
    if (!outcome.ok()) {
      if (outcome.status().code() != StatusCode::kUnavailable) return outcome;
      if (permanent && !permanent->ok()) return outcome;
    } else if (!RetryableHttpStatus(outcome->status)) {
      return outcome;
    }
    // Backoff with jitter, so that many clients thrown off together do not return together.
    wait_ms = delay_ms / 2 + static_cast<long>(jitter() % static_cast<unsigned long>(delay_ms / 2 + 1));
    delay_ms = std::min(delay_ms * 2, std::max<long>(1, options_.retry_max_delay_ms));
    if (outcome.ok()) {
      if (auto after = ParseRetryAfter(outcome->Header("retry-after"))) wait_ms = *after * 1000;
    }
    const bool out_of_time = Clock::now() + std::chrono::milliseconds(wait_ms) > deadline;
    if (n >= attempts || out_of_time) {
      if (outcome.ok() || n == 1) return outcome;  // HTTP statuses get their message from the caller
      return outcome.status().WithContext(
          Describe() + ": " + what + ": gave up after " + std::to_string(n) + " attempts" +
          (out_of_time && n < attempts ? " (retry deadline reached)" : ""));
    }
    static StatCounter& retries = Counter(kStatFetchRetries);
    retries.Add();
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  }
}

Result<HttpResponse> RegistryClient::GetStreamed(
    const std::string& path, const std::string& what, uint64_t offset, uint64_t length,
    const std::function<Status(std::string_view)>& sink) {
  uint64_t delivered = 0;  // bytes the sink has taken, over all attempts
  Status sink_failure;
  auto attempt = [&]() -> Result<HttpResponse> {
    const uint64_t first = offset + delivered;
    uint64_t skip = 0;  // bytes of a full (200) answer to a range request that we already have
    uint64_t left = length ? length - delivered : UINT64_MAX;
    HttpRequest request;
    if (first > 0 || length > 0) {
      request.headers.push_back("Range: bytes=" + std::to_string(first) + "-" +
                                (length ? std::to_string(offset + length - 1) : std::string()));
    }
    request.on_start = [&](const HttpResponse& r) -> Status {
      if (r.status == 206) {
        const auto start = ContentRangeStart(r.Header("content-range"));
        if (start != first) {
          return sink_failure = DataLossError(what + ": asked for bytes from " +
                                              std::to_string(first) + ", got Content-Range \"" +
                                              r.Header("content-range") + "\"");
        }
      } else {
        skip = first;  // the server ignored the Range header and sends the whole blob
      }
      return Status::Ok();
    };
    request.on_body = [&](std::string_view chunk) -> Status {
      const size_t drop = static_cast<size_t>(std::min<uint64_t>(skip, chunk.size()));
      chunk.remove_prefix(drop);
      skip -= drop;
      if (chunk.size() > left) chunk = chunk.substr(0, static_cast<size_t>(left));
      if (chunk.empty()) return Status::Ok();
      if (Status s = sink(chunk); !s.ok()) return sink_failure = std::move(s);
      delivered += chunk.size();
      left -= chunk.size();
      return Status::Ok();
    };
    return Request(std::move(request), path);
  };
  LAZYFS_ASSIGN_OR_RETURN(HttpResponse response, WithRetries(what, attempt, &sink_failure));
  // Asking for bytes past the end (a resume after the last byte arrived, a range read at the
  // end): nothing more to deliver.
  if (response.status == 416 && (delivered > 0 || offset > 0)) response.status = 206;
  return response;
}

}  // namespace lazyfs::fetch
