// A TCP proxy on 127.0.0.1 in front of a real server that counts the bytes the server sends:
// how end-to-end tests measure what a lazy read cost, at the wire, without trusting lazyfs's
// own counters. Each accepted connection opens one to the upstream; bytes are copied both ways.
// When the upstream refuses, the client's connection is closed. Optionally it shapes the link
// (a round-trip delay and a downstream rate per connection), for benchmarks on a kernel without
// tc netem. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <mutex>

#include "base/status.h"

namespace lazyfs::testing {

struct ProxyShape {
  int rtt_ms = 0;                 // added once per request/response turn
  uint64_t bytes_per_second = 0;  // downstream rate per connection; 0: unlimited
};

class CountingProxy {
 public:
  // Listens on a free port of 127.0.0.1, forwarding to upstream "127.0.0.1:PORT".
  static Result<std::unique_ptr<CountingProxy>> Start(const std::string& upstream,
                                                      ProxyShape shape = ProxyShape());
  ~CountingProxy();
  CountingProxy(const CountingProxy&) = delete;
  CountingProxy& operator=(const CountingProxy&) = delete;

  // "127.0.0.1:PORT"
  const std::string& host() const { return host_; }
  // Bytes sent by the upstream to clients, and connections accepted, since start or Reset.
  uint64_t bytes_down() const { return bytes_down_.load(); }
  uint64_t connections() const { return connections_.load(); }
  void Reset() {
    bytes_down_ = 0;
    connections_ = 0;
  }

 private:
  CountingProxy() = default;
  void AcceptLoop();
  void Pump(int client);

  std::string host_;
  ProxyShape shape_;
  int upstream_port_ = 0;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> pumps_;  // GUARDED_BY(mu_)
  std::atomic<uint64_t> bytes_down_{0};
  std::atomic<uint64_t> connections_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace lazyfs::testing
