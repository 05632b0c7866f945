#include "tests/support/fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <optional>

namespace lazyfs::testing {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A socket with a read buffer; reads wake every 100 ms to notice `stopping`.
class Conn {
 public:
  Conn(int fd, const std::atomic<bool>* stopping) : fd_(fd), stopping_(stopping) {}

  // Reads more into the buffer; false at EOF, on error or when stopping.
  bool Fill() {
    for (;;) {
      if (stopping_->load()) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, 100);
      if (r < 0 && errno != EINTR) return false;
      if (r <= 0) continue;
      char tmp[65536];
      const ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buf_.append(tmp, static_cast<size_t>(n));
      return true;
    }
  }

  // Up to "\r\n\r\n" inclusive; false when the peer closed first.
  bool ReadHead(std::string* head) {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (buf_.size() > (1 << 20) || !Fill()) return false;
    }
    *head = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    return true;
  }

  // Up to `max` bytes (from the buffer first); empty at EOF.
  std::string ReadSome(size_t max) {
    if (buf_.empty() && !Fill()) return {};
    const size_t n = std::min(max, buf_.size());
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  // A line ending in "\r\n" (inclusive).
  bool ReadLine(std::string* line) {
    size_t end;
    while ((end = buf_.find("\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    *line = buf_.substr(0, end + 2);
    buf_.erase(0, end + 2);
    return true;
  }

  bool starts_with_tls() {
    if (buf_.empty() && !Fill()) return false;
    return !buf_.empty() && buf_[0] == 0x16;
  }

  int fd() const { return fd_; }

 private:
  int fd_;
  const std::atomic<bool>* stopping_;
  std::string buf_;
};

bool Send(int fd, std::string_view s) { return WriteAll(fd, s.data(), s.size()).ok(); }

// Sends `data` a byte every `interval` until done, the client goes away or `stopping`; returns
// the bytes sent. A client that gave up has closed its end: no SIGPIPE for the test process.
size_t Drip(int fd, std::string_view data, std::chrono::milliseconds interval,
            const std::atomic<bool>& stopping) {
  size_t sent = 0;
  for (char c : data) {
    for (auto waited = std::chrono::milliseconds(0); waited < interval;
         waited += std::chrono::milliseconds(50)) {
      if (stopping.load()) return sent;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (::send(fd, &c, 1, MSG_NOSIGNAL) != 1) return sent;
    ++sent;
  }
  return sent;
}

// Splits a head into its first line and header lines.
std::vector<std::string> Lines(const std::string& head) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < head.size()) {
    const size_t end = head.find("\r\n", pos);
    if (end == std::string::npos || end == pos) break;
    out.push_back(head.substr(pos, end - pos));
    pos = end + 2;
  }
  return out;
}

std::string HeaderIn(const std::vector<std::string>& lines, std::string_view name) {
  const std::string want = Lower(name) + ":";
  for (size_t i = 1; i < lines.size(); ++i) {
    if (Lower(lines[i]).starts_with(want)) {
      std::string v = lines[i].substr(want.size());
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      return v;
    }
  }
  return {};
}

std::string ReasonFor(int status) {
  switch (status) {
    case 307: return "Temporary Redirect";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Fault";
  }
}

Result<Fd> ConnectTo(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  if (::inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return InvalidArgumentError("fault proxy: bad upstream " + host_port);
  }
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoError(errno, "connect " + host_port);
  }
  return fd;
}

}  // namespace

std::string ProxiedRequest::Header(std::string_view name) const {
  const std::string want = Lower(name) + ":";
  for (const std::string& h : headers) {
    if (Lower(h).starts_with(want)) {
      std::string v = h.substr(want.size());
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      return v;
    }
  }
  return {};
}

Result<std::unique_ptr<FaultProxy>> FaultProxy::Start(const std::string& upstream) {
  std::unique_ptr<FaultProxy> p(new FaultProxy());
  p->upstream_ = upstream;
  p->listen_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!p->listen_.valid()) return ErrnoError(errno, "fault proxy: socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(p->listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(p->listen_.get(), 64) != 0) {
    return ErrnoError(errno, "fault proxy: bind/listen 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  ::getsockname(p->listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  p->host_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

FaultProxy::~FaultProxy() { Stop(); }

void FaultProxy::Stop() {
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mu_);
    for (int fd : client_fds_) ::shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  for (auto& t : workers) t.join();
}

void FaultProxy::AddRule(FaultRule rule) {
  std::lock_guard lock(mu_);
  rules_.push_back(std::move(rule));
}

void FaultProxy::ClearRules() {
  std::lock_guard lock(mu_);
  rules_.clear();
}

std::vector<ProxiedRequest> FaultProxy::Requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

std::vector<ProxiedRequest> FaultProxy::RequestsFor(const std::string& part) const {
  std::vector<ProxiedRequest> out;
  for (ProxiedRequest& r : Requests()) {
    if (r.target.find(part) != std::string::npos) out.push_back(std::move(r));
  }
  return out;
}

bool FaultProxy::TakeRule(const std::string& method, const std::string& target, FaultRule* out) {
  std::lock_guard lock(mu_);
  for (FaultRule& r : rules_) {
    if (r.times == 0 || target.find(r.path_contains) == std::string::npos) continue;
    if (!r.method.empty() && r.method != method) continue;
    if (r.times > 0) --r.times;
    *out = r;
    return true;
  }
  return false;
}

size_t FaultProxy::Record(ProxiedRequest r) {
  std::lock_guard lock(mu_);
  requests_.push_back(std::move(r));
  return requests_.size() - 1;
}

void FaultProxy::Update(size_t index, int status, uint64_t body_bytes, const std::string& fault) {
  std::lock_guard lock(mu_);
  requests_[index].status = status;
  requests_[index].body_bytes = body_bytes;
  requests_[index].fault = fault;
}

void FaultProxy::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listen_.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int connection = ++connections_;
    std::lock_guard lock(mu_);
    client_fds_.push_back(fd);
    workers_.emplace_back([this, fd, connection] {
      Serve(fd, connection);
      std::lock_guard inner(mu_);
      client_fds_.erase(std::find(client_fds_.begin(), client_fds_.end(), fd));
      ::close(fd);
    });
  }
}

void FaultProxy::Serve(int client_fd, int connection) {
  Conn client(client_fd, &stopping_);
  Fd upstream_fd;
  std::optional<Conn> upstream;
  for (;;) {
    // A TLS ClientHello: this proxy speaks plain HTTP and answers as an HTTP server does, so
    // the client falls back to http:// the way it does for any plain-HTTP registry.
    if (client.starts_with_tls()) {
      Send(client_fd, "HTTP/1.0 400 Bad Request\r\n\r\n");
      return;
    }
    std::string head;
    if (!client.ReadHead(&head)) return;
    const std::vector<std::string> lines = Lines(head);
    if (lines.empty()) return;
    ProxiedRequest req;
    const std::string& first = lines[0];
    const size_t sp1 = first.find(' '), sp2 = first.find(' ', sp1 + 1);
    req.method = first.substr(0, sp1);
    req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    req.headers.assign(lines.begin() + 1, lines.end());
    req.connection = connection;
    const size_t index = Record(req);

    FaultRule rule;
    const bool faulty = TakeRule(req.method, req.target, &rule);
    using Action = FaultRule::Action;
    if (faulty && rule.action == Action::kStatus) {
      const std::string body =
          !rule.body.empty() ? rule.body
                             : "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"injected " +
                                   std::to_string(rule.status) + "\"}]}";
      std::string resp = "HTTP/1.1 " + std::to_string(rule.status) + " " +
                         ReasonFor(rule.status) + "\r\nContent-Type: application/json\r\n";
      if (!rule.retry_after.empty()) resp += "Retry-After: " + rule.retry_after + "\r\n";
      for (const std::string& h : rule.headers) resp += h + "\r\n";
      resp += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
      if (req.method != "HEAD") resp += body;
      Update(index, rule.status, 0, "status");
      if (!Send(client_fd, resp)) return;
      continue;
    }
    if (faulty && rule.action == Action::kRedirect) {
      Update(index, 307, 0, "redirect");
      if (!Send(client_fd, "HTTP/1.1 307 Temporary Redirect\r\nLocation: " + rule.redirect_to +
                               req.target + "\r\nContent-Length: 0\r\n\r\n")) {
        return;
      }
      continue;
    }
    if (faulty && rule.action == Action::kStall) {
      Update(index, 0, 0, "stall");
      // Hold the connection without a byte until the client gives up (or Stop()).
      while (!client.ReadSome(1 << 16).empty()) {
      }
      return;
    }

    if (!upstream) {
      auto fd = ConnectTo(upstream_);
      if (!fd.ok()) {
        Send(client_fd, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        Update(index, 502, 0, "");
        return;
      }
      upstream_fd = std::move(*fd);
      upstream.emplace(upstream_fd.get(), &stopping_);
    }
    if (!Send(upstream_fd.get(), head)) return;
    std::string resp_head;
    if (!upstream->ReadHead(&resp_head)) return;
    const std::vector<std::string> resp_lines = Lines(resp_head);
    const int status = resp_lines.empty() ? 0 : std::atoi(resp_lines[0].c_str() + 9);
    // The record is always updated before the client gets the bytes, so a client that has
    // finished reading sees a record that says so.
    Update(index, status, 0, "");
    if (!Send(client_fd, resp_head)) return;

    const bool cut = faulty && (rule.action == Action::kReset || rule.action == Action::kClose);
    uint64_t passed = 0;
    // Passes `data` on, stopping at the cut point; false once the connection must end.
    auto pass = [&](std::string_view data) -> bool {
      if (cut && passed + data.size() >= rule.after_bytes) {
        const size_t part = static_cast<size_t>(rule.after_bytes - passed);
        passed = rule.after_bytes;
        Update(index, status, passed, rule.action == Action::kReset ? "reset" : "close");
        Send(client_fd, data.substr(0, part));
        if (rule.action == Action::kReset) {
          // Let the client read what was sent, then reset: an RST, not a clean end.
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          linger l{1, 0};
          ::setsockopt(client_fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        } else {
          ::shutdown(client_fd, SHUT_WR);
        }
        return false;
      }
      if (faulty && rule.action == Action::kDrip) {
        const size_t sent = Drip(client_fd, data,
                                 std::chrono::milliseconds(rule.drip_interval_ms), stopping_);
        passed += sent;
        Update(index, status, passed, "drip");
        return sent == data.size();
      }
      passed += data.size();
      Update(index, status, passed, "");
      return Send(client_fd, data);
    };

    const std::string length = HeaderIn(resp_lines, "content-length");
    const bool chunked = Lower(HeaderIn(resp_lines, "transfer-encoding")).find("chunked") !=
                         std::string::npos;
    const bool no_body = req.method == "HEAD" || status == 204 || status == 304 ||
                         (status >= 100 && status < 200);
    if (no_body) {
    } else if (!length.empty()) {
      uint64_t left = std::stoull(length);
      while (left > 0) {
        std::string data = upstream->ReadSome(static_cast<size_t>(std::min<uint64_t>(left, 65536)));
        if (data.empty()) return;
        left -= data.size();
        if (!pass(data)) return;
      }
    } else if (chunked) {
      for (;;) {
        std::string size_line;
        if (!upstream->ReadLine(&size_line)) return;
        if (!pass(size_line)) return;
        uint64_t n = std::stoull(size_line, nullptr, 16);
        uint64_t left = n + 2;  // the chunk and its CRLF
        while (left > 0) {
          std::string data =
              upstream->ReadSome(static_cast<size_t>(std::min<uint64_t>(left, 65536)));
          if (data.empty()) return;
          left -= data.size();
          if (!pass(data)) return;
        }
        if (n == 0) break;  // (no trailers from the registry)
      }
    } else {
      for (;;) {
        std::string data = upstream->ReadSome(65536);
        if (data.empty()) break;
        if (!pass(data)) return;
      }
      Update(index, status, passed, "");
      return;
    }
    Update(index, status, passed, "");
  }
}

}  // namespace lazyfs::testing
