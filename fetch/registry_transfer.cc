// The request path under every registry call (declared in registry_client.h): the scheme a
// loopback or insecure registry settles on, authentication on 401, retries with backoff, and
// streamed bodies that resume where a broken transfer stopped.
#include <algorithm>
#include <cctype>
#include <random>
#include <thread>

#include "base/stats.h"
#include "base/text.h"
#include "base/thread_annotations.h"
#include "fetch/registry_client.h"

namespace lazyfs::fetch {

std::string RegistryClient::BaseUrl() {
  MutexLock lock(mu_);
  return scheme_ + "://" + endpoint_;
}

Result<HttpResponse> RegistryClient::Request(HttpRequest request, const std::string& target,
                                             Access access) {
  request.peer = "registry " + registry_;
  const bool absolute = target.starts_with("http://") || target.starts_with("https://");
  bool authenticated_now = false;
  for (;;) {
    std::string scheme;
    bool settled;
    {
      MutexLock lock(mu_);
      // An expired token, or one for pulls on a push, would only earn a 401: go straight to
      // the token service.
      if (std::chrono::steady_clock::now() >= token_expiry_ ||
          (access == Access::kPush && authorization_.starts_with("Bearer ") && !token_pushes_)) {
        authorization_.clear();
        token_expiry_ = std::chrono::steady_clock::time_point::max();
      }
      scheme = scheme_;
      settled = scheme_settled_;
      request.authorization = authorization_;
    }
    // The credentials belong to the registry's origin; a URL it named elsewhere goes without.
    request.auth_origin = OriginOf(scheme + "://" + endpoint_);
    request.url = absolute ? target : scheme + "://" + endpoint_ + target;
    auto response = http_.Perform(request);
    if (!settled) {
      // A request the caller gave up on proves nothing about the scheme.
      if (!response.ok() && request.deadline.expired()) return response.status();
      if (!response.ok() && response.status().code() == StatusCode::kUnavailable) {
        MutexLock lock(mu_);
        if (!scheme_settled_) {
          scheme_ = "http";
          scheme_settled_ = true;
        }
        continue;
      }
      MutexLock lock(mu_);
      scheme_settled_ = true;
    }
    if (!response.ok()) return response.status();
    if (response->status != 401) return response;
    if (authenticated_now) {
      std::string withheld;
      {
        MutexLock lock(mu_);
        withheld = withheld_;
      }
      if (!withheld.empty()) {
        return PermissionDeniedError("registry " + registry_ + ": access denied (HTTP 401); " +
                                     withheld);
      }
      if (credentials_) {
        return PermissionDeniedError("registry " + registry_ + ": credentials for " + registry_ +
                                     " from " + credentials_source_ + " were rejected (HTTP 401)");
      }
      return PermissionDeniedError("registry " + registry_ + ": access denied (HTTP 401)");
    }
    LAZYFS_RETURN_IF_ERROR(
        Authenticate(*response, request.authorization, request.deadline, access));
    authenticated_now = true;
  }
}

namespace {

// Backoff with jitter, so that many clients thrown off together do not return together: each
// delay is between half and all of one that doubles from `initial_ms` up to `max_ms`.
class Backoff {
 public:
  Backoff(long initial_ms, long max_ms)
      : delay_ms_(std::max<long>(1, initial_ms)), max_ms_(std::max<long>(1, max_ms)) {}
  std::chrono::milliseconds Next() {
    thread_local std::minstd_rand jitter(std::random_device{}());
    const long wait =
        delay_ms_ / 2 + static_cast<long>(jitter() % static_cast<unsigned long>(delay_ms_ / 2 + 1));
    delay_ms_ = std::min(delay_ms_ * 2, max_ms_);
    return std::chrono::milliseconds(wait);
  }

 private:
  long delay_ms_;
  const long max_ms_;
};

// Sleeps `wait`, or less when `deadline` is cancelled meanwhile: a reader that went away is not
// kept waiting for a retry nobody wants.
void SleepFor(std::chrono::milliseconds wait, const Deadline& deadline) {
  constexpr std::chrono::milliseconds kSlice(50);
  const auto until = Deadline::Clock::now() + wait;
  while (!deadline.cancelled()) {
    const auto now = Deadline::Clock::now();
    if (now >= until) return;
    std::this_thread::sleep_for(std::min<Deadline::Clock::duration>(until - now, kSlice));
  }
}

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

Status RegistryClient::GaveUpAt(const Deadline& deadline, const std::string& what, int attempts,
                                const std::string& last_error) const {
  std::string message = Describe() + ": " + what + ": " +
                        (deadline.cancelled() ? "cancelled" : "gave up at the read deadline");
  if (attempts > 1) message += " after " + std::to_string(attempts) + " attempts";
  if (!last_error.empty()) message += " (last error: " + last_error + ")";
  return UnavailableError(message);
}

Result<HttpResponse> RegistryClient::WithRetries(
    const std::string& what, const Deadline& deadline,
    const std::function<Result<HttpResponse>()>& attempt, const Status* permanent) {
  using Clock = Deadline::Clock;
  // A request nobody waits on has the options' budget; a reader's deadline cuts it shorter.
  const Clock::time_point budget =
      std::min(deadline.at(), Clock::now() + std::chrono::seconds(options_.retry_deadline_s));
  const int attempts = std::max(1, options_.max_attempts);
  Backoff backoff(options_.retry_initial_delay_ms, options_.retry_max_delay_ms);
  std::string last_error;  // of the last attempt that failed before the deadline
  for (int n = 1;; ++n) {
    if (deadline.expired()) return GaveUpAt(deadline, what, n - 1, last_error);
    Result<HttpResponse> outcome = attempt();
    if (!outcome.ok()) {
      if (outcome.status().code() != StatusCode::kUnavailable) return outcome;
      if (permanent && !permanent->ok()) return outcome;
    } else if (!RetryableHttpStatus(outcome->status)) {
      return outcome;
    }
    // A failure once the deadline has passed is most likely the transfer it aborted.
    if (deadline.expired()) return GaveUpAt(deadline, what, n, last_error);
    last_error = outcome.ok() ? "HTTP " + std::to_string(outcome->status)
                              : outcome.status().message();
    std::chrono::milliseconds wait = backoff.Next();
    if (outcome.ok()) {
      if (auto after = ParseRetryAfter(outcome->Header("retry-after"))) {
        wait = std::chrono::seconds(*after);
      }
    }
    // No attempt starts past the budget, and no backoff sleeps past it: a retry that could not
    // start in time is not waited for.
    const Clock::time_point next = Clock::now() + wait;
    if (n < attempts && next >= deadline.at()) return GaveUpAt(deadline, what, n, last_error);
    const bool out_of_time = next > budget;
    if (n >= attempts || out_of_time) {
      // HTTP statuses get their message from the caller.
      if (outcome.ok() || n == 1) return outcome;
      return outcome.status().WithContext(
          Describe() + ": " + what + ": gave up after " + std::to_string(n) + " attempts" +
          (out_of_time && n < attempts ? " (retry deadline reached)" : ""));
    }
    static StatCounter& retries = Counter(kStatFetchRetries);
    retries.Add();
    SleepFor(wait, deadline);
  }
}

Result<HttpResponse> RegistryClient::GetStreamed(
    const std::string& path, const std::string& what, uint64_t offset, uint64_t length,
    const Deadline& deadline, const std::function<Status(std::string_view)>& sink) {
  uint64_t delivered = 0;  // bytes the sink has taken, over all attempts
  Status sink_failure;
  auto attempt = [&]() -> Result<HttpResponse> {
    const uint64_t first = offset + delivered;
    uint64_t skip = 0;  // bytes of a full (200) answer to a range request that we already have
    uint64_t left = length ? length - delivered : UINT64_MAX;
    HttpRequest request;
    request.deadline = deadline;
    if (first > 0 || length > 0) {
      request.headers.push_back("Range: bytes=" + std::to_string(first) + "-" +
                                (length ? std::to_string(offset + length - 1) : std::string()));
    }
    request.on_start = [&](const HttpResponse& r) -> Status {
      if (r.status == 206) {
        const auto start = ContentRangeStart(r.Header("content-range"));
        if (start != first) {
          return sink_failure = DataLossError(what + ": asked for bytes from " +
                                              std::to_string(first) + ", got Content-Range " +
                                              QuoteName(r.Header("content-range")));
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
  LAZYFS_ASSIGN_OR_RETURN(HttpResponse response,
                          WithRetries(what, deadline, attempt, &sink_failure));
  // Asking for bytes past the end (a resume after the last byte arrived, a range read at the
  // end): nothing more to deliver.
  if (response.status == 416 && (delivered > 0 || offset > 0)) response.status = 206;
  return response;
}

}  // namespace lazyfs::fetch
