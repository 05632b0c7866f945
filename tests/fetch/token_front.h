// A bearer-token front for the real registry in tests (see TokenFront).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/status.h"

namespace lazyfs::fetch::testing {

// An HTTP front for the registry that demands a bearer token, as Docker Hub and most public
// registries do: 401 + challenge unless the request carries the token it issued at /token, and
// forwards everything else (with its body) to the real registry. A token asked for with a scope
// that includes push is another token, and only it lets POST, PUT and PATCH through; the
// challenge always names the pull scope, so a client that pushes must ask for more itself.
class TokenFront {
 public:
  // basic_auth: when not empty, the Authorization header /token requires ("Basic ...").
  // expires_in: the token lifetime the token service states, as JSON ("300", "1e30").
  explicit TokenFront(std::string upstream, std::string basic_auth = "",
                      std::string expires_in = "300")
      : upstream_(std::move(upstream)), basic_auth_(std::move(basic_auth)),
        expires_in_(std::move(expires_in)) {}
  ~TokenFront() { Stop(); }

  // Listens on a free port of `ip` (an address of this machine).
  Status Start(const std::string& ip = "127.0.0.1") {
    listen_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listen_.valid()) return ErrnoError(errno, "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    if (::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
      return InvalidArgumentError("token front: bad address " + ip);
    }
    if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_.get(), 16) != 0) {
      return ErrnoError(errno, "bind/listen " + ip + ":0");
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    host_ = ip + ":" + std::to_string(ntohs(addr.sin_port));
    thread_ = std::thread([this] { Serve(); });
    return Status::Ok();
  }

  // The token service its challenges name (default: its own /token). Another front serves the
  // same tokens, so it can play the token service on another host.
  void set_realm(const std::string& realm) {
    std::lock_guard lock(mu_);
    realm_ = realm;
  }
  // The Authorization header of every token request, in order ("" when there was none).
  std::vector<std::string> token_authorizations() {
    std::lock_guard lock(mu_);
    return token_authorizations_;
  }

  void Stop() {
    if (listen_.valid()) ::shutdown(listen_.get(), SHUT_RDWR);  // wakes accept()
    if (thread_.joinable()) thread_.join();
    listen_.Reset();
  }

  const std::string& host() const { return host_; }
  int token_requests() const { return token_requests_; }
  int authorized() const { return authorized_; }
  int challenged() const { return challenged_; }
  int token_refused() const { return token_refused_; }
  std::string last_token_query() {
    std::lock_guard lock(mu_);
    return last_token_query_;
  }

 private:
  static constexpr const char* kToken = "test-token-42";
  static constexpr const char* kPushToken = "test-token-push-7";

  static bool IsWrite(const std::string& method) {
    return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
  }

  void Serve() {
    for (;;) {
      Fd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) {
        if (errno == EINTR) continue;
        return;
      }
      Handle(conn.get());
    }
  }

  // "/v2/REPO/manifests/..." -> REPO
  static std::string RepoOf(const std::string& target) {
    const size_t end = std::min({target.rfind("/manifests/"), target.rfind("/blobs/"),
                                 target.rfind("/referrers/")});
    return end == std::string::npos || end < 4 ? "" : target.substr(4, end - 4);
  }

  static void Send(int fd, const std::string& s) { WriteAll(fd, s.data(), s.size()).IgnoreError(); }

  void Handle(int fd) {
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
      ssize_t n = ::read(fd, &c, 1);
      if (n <= 0) return;
      // A TLS ClientHello (record type 0x16): this front speaks plain HTTP only, so it answers
      // the way an HTTP server does, and the client falls back to http://.
      if (head.empty() && c == 0x16) {
        Send(fd, "HTTP/1.0 400 Bad Request\r\n\r\n");
        return;
      }
      head += c;
    }
    const size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
    const std::string method = head.substr(0, sp1);
    const std::string target = head.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t content_length = 0;
    std::string rewritten = head.substr(0, head.find("\r\n") + 2);
    std::string authorization;
    size_t pos = head.find("\r\n") + 2;
    while (pos < head.size()) {
      const size_t end = head.find("\r\n", pos);
      if (end == pos) break;
      const std::string line = head.substr(pos, end - pos);
      pos = end + 2;
      std::string lower = line;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (lower.starts_with("authorization:")) {
        authorization = line.substr(line.find(':') + 2);
        continue;
      }
      if (lower.starts_with("connection:")) continue;
      if (lower.starts_with("content-length:")) {
        content_length = std::stoul(line.substr(line.find(':') + 1));
      }
      rewritten += line + "\r\n";
    }
    rewritten += "Connection: close\r\n\r\n";
    std::string body(content_length, '\0');
    for (size_t got = 0; got < content_length;) {
      const ssize_t n = ::read(fd, body.data() + got, content_length - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      got += static_cast<size_t>(n);
    }

    if (target.starts_with("/token")) {
      ++token_requests_;
      {
        std::lock_guard lock(mu_);
        last_token_query_ = target;
        token_authorizations_.push_back(authorization);
      }
      if (!basic_auth_.empty() && authorization != basic_auth_) {
        ++token_refused_;
        Send(fd, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
      // "scope=repository%3Aname%3Apull%2Cpush"
      const bool push = target.find("%2Cpush") != std::string::npos ||
                        target.find(",push") != std::string::npos;
      const std::string answer = std::string("{\"token\":\"") + (push ? kPushToken : kToken) +
                                 "\",\"expires_in\":" + expires_in_ + "}";
      Send(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                   std::to_string(answer.size()) + "\r\nConnection: close\r\n\r\n" + answer);
      return;
    }
    const bool token_ok = authorization == std::string("Bearer ") + kPushToken ||
                          (!IsWrite(method) && authorization == std::string("Bearer ") + kToken);
    if (!token_ok) {
      ++challenged_;
      std::string realm;
      {
        std::lock_guard lock(mu_);
        realm = realm_.empty() ? "http://" + host_ + "/token" : realm_;
      }
      const std::string refusal =
          "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"token\"}]}";
      Send(fd, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"" + realm +
                   "\",service=\"test\",scope=\"repository:" + RepoOf(target) +
                   ":pull\"\r\n"
                   "Content-Type: application/json\r\nContent-Length: " +
                   std::to_string(refusal.size()) + "\r\nConnection: close\r\n\r\n" + refusal);
      return;
    }
    ++authorized_;
    Fd up(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(upstream_.substr(upstream_.find(':') + 1))));
    if (::connect(up.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    Send(up.get(), rewritten + body);
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(up.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (!WriteAll(fd, buf, static_cast<size_t>(n)).ok()) break;
    }
  }

  const std::string upstream_;
  const std::string basic_auth_;
  const std::string expires_in_;
  Fd listen_;
  std::string host_;
  std::thread thread_;
  std::atomic<int> token_requests_{0}, authorized_{0}, challenged_{0}, token_refused_{0};
  std::mutex mu_;
  std::string last_token_query_;
  std::string realm_;
  std::vector<std::string> token_authorizations_;
};

}  // namespace lazyfs::fetch::testing
