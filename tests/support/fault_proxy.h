// A fault-injecting HTTP/1.1 proxy for tests, put in front of the real registry on 127.0.0.1.
//
// The one idea: the client talks to the real registry through a front that can misbehave the way
// networks and registries do (a reset mid-body, a 503 or 429 with Retry-After, a stall, a body
// that drips a byte a second, a redirect elsewhere) and that records what it saw: every request's line and headers, and how
// many body bytes it passed on. Tests then prove facts about the traffic (a resumed download
// asked only for what it lacked; credentials never reached another origin) instead of trusting
// the client. Requests are relayed one at a time per connection with keep-alive, so connection
// reuse shows in connections().
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/status.h"

namespace lazyfs::testing {

// What to do to a request whose target contains `path_contains`.
struct FaultRule {
  enum class Action {
    kReset,     // forward, then reset the connection (RST) after `after_bytes` body bytes
    kClose,     // forward, then close the connection cleanly after `after_bytes` body bytes
    kStatus,    // answer `status` (with Retry-After: `retry_after` if not empty) instead
    kStall,     // read the request and never answer (until the client gives up or Stop())
    kRedirect,  // answer 307 to `redirect_to` + the request target
    kDrip,      // forward, then pass the body on one byte every `drip_interval_ms`
  };
  std::string path_contains;
  Action action = Action::kStatus;
  uint64_t after_bytes = 0;
  int status = 503;
  std::string retry_after;
  std::string redirect_to;  // "http://127.0.0.1:PORT"
  // kStatus: the body answered (default: a registry error JSON naming the status), and more
  // header lines ("Name: value", sent as given) — a registry's words, hostile ones included.
  std::string body;
  std::vector<std::string> headers;
  int drip_interval_ms = 1000;  // kDrip: one body byte per interval
  std::string method;       // only requests with this method ("GET", "HEAD"); empty: any
  int times = 1;            // how many matching requests it applies to; -1: all
};

// One request the proxy received.
struct ProxiedRequest {
  std::string method;
  std::string target;
  std::vector<std::string> headers;  // "Name: value" as received
  int status = 0;                    // what the client was answered (0: nothing)
  uint64_t body_bytes = 0;           // response body bytes passed on to the client
  std::string fault;  // "reset", "close", "status", "stall", "redirect", "drip" or empty
  int connection = 0;                // which client connection carried it (1, 2, ...)

  // The value of a header (case-insensitive name), or empty.
  std::string Header(std::string_view name) const;
};

// Thread-safe: rules may be added and requests read while it serves.
class FaultProxy {
 public:
  // Listens on a free port of 127.0.0.1 and relays to `upstream` ("127.0.0.1:PORT", plain HTTP).
  static Result<std::unique_ptr<FaultProxy>> Start(const std::string& upstream);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  // "127.0.0.1:PORT"
  const std::string& host() const { return host_; }
  void AddRule(FaultRule rule);
  void ClearRules();
  std::vector<ProxiedRequest> Requests() const;
  // Requests whose target contains `part`.
  std::vector<ProxiedRequest> RequestsFor(const std::string& part) const;
  // Client connections accepted so far.
  int connections() const { return connections_; }
  // Stops accepting, ends stalls, closes every connection and joins the threads.
  void Stop();

 private:
  FaultProxy() = default;
  void AcceptLoop();
  void Serve(int client, int connection);
  // The first rule matching (and consumes one of its `times`), or nullopt.
  bool TakeRule(const std::string& method, const std::string& target, FaultRule* out);
  size_t Record(ProxiedRequest r);
  void Update(size_t index, int status, uint64_t body_bytes, const std::string& fault);

  std::string upstream_;
  std::string host_;
  Fd listen_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;

  mutable std::mutex mu_;
  std::vector<FaultRule> rules_;           // GUARDED_BY(mu_)
  std::vector<ProxiedRequest> requests_;   // GUARDED_BY(mu_)
  std::vector<std::thread> workers_;       // GUARDED_BY(mu_)
  std::vector<int> client_fds_;            // GUARDED_BY(mu_): open client sockets, for Stop()
};

}  // namespace lazyfs::testing
