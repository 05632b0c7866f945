#include "tests/support/counting_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace lazyfs::testing {

Result<std::unique_ptr<CountingProxy>> CountingProxy::Start(const std::string& upstream,
                                                            ProxyShape shape) {
  auto p = std::unique_ptr<CountingProxy>(new CountingProxy);
  p->shape_ = shape;
  const size_t colon = upstream.rfind(':');
  if (colon == std::string::npos) return InvalidArgumentError("upstream needs a port");
  p->upstream_port_ = std::stoi(upstream.substr(colon + 1));
  p->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p->listen_fd_ < 0) return ErrnoError(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(p->listen_fd_, 64) != 0 ||
      ::getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoError(errno, "bind/listen on 127.0.0.1");
  }
  if (::pipe2(p->stop_pipe_, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe");
  p->host_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

CountingProxy::~CountingProxy() {
  stopping_ = true;
  if (stop_pipe_[1] >= 0) {
    // Wakes the acceptor and every pump (they all poll the pipe's read end).
    ::close(stop_pipe_[1]);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> pumps;
  {
    std::lock_guard lock(mu_);
    pumps.swap(pumps_);
  }
  for (auto& t : pumps) t.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (stop_pipe_[0] >= 0) ::close(stop_pipe_[0]);
}

void CountingProxy::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (stopping_ || (fds[1].revents & (POLLIN | POLLHUP))) return;
    if (!(fds[0].revents & POLLIN)) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    connections_++;
    std::lock_guard lock(mu_);
    pumps_.emplace_back([this, client] { Pump(client); });
  }
}

void CountingProxy::Pump(int client) {
  const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(upstream_port_));
  if (up < 0 || ::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (up >= 0) ::close(up);
    ::close(client);  // the upstream is gone: so is this connection
    return;
  }
  char buf[64 * 1024];
  // Shaping: a request (client bytes after a response) waits one round trip before it is
  // forwarded; response bytes leave no faster than the rate allows.
  using Clock = std::chrono::steady_clock;
  bool turn = true;  // the next client bytes start a new request
  Clock::time_point next_send = Clock::now();
  for (bool open = true; open;) {
    pollfd fds[3] = {{client, POLLIN, 0}, {up, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0 && errno != EINTR) break;
    if (fds[2].revents) break;
    for (int i = 0; i < 2 && open; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int from = i == 0 ? client : up, to = i == 0 ? up : client;
      const ssize_t n = ::read(from, buf, sizeof buf);
      if (n <= 0) {
        open = false;
        break;
      }
      if (i == 1) bytes_down_ += static_cast<uint64_t>(n);
      if (i == 0 && turn && shape_.rtt_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(shape_.rtt_ms));
      }
      turn = i == 1;
      if (i == 1 && shape_.bytes_per_second > 0) {
        next_send = std::max(next_send, Clock::now()) +
                    std::chrono::nanoseconds(static_cast<uint64_t>(n) * 1'000'000'000 /
                                             shape_.bytes_per_second);
        std::this_thread::sleep_until(next_send);
      }
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = ::send(to, buf + done, static_cast<size_t>(n - done), MSG_NOSIGNAL);
        if (w <= 0) {
          open = false;
          break;
        }
        done += w;
      }
    }
  }
  ::close(up);
  ::close(client);
}

}  // namespace lazyfs::testing
