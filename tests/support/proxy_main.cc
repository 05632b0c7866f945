// lazyfs-proxy UPSTREAM_HOST:PORT [RTT_MS] [MBIT_PER_S]
// Runs a counting (and optionally shaping) TCP proxy in front of a server on 127.0.0.1, for
// benchmarks: prints "127.0.0.1:PORT" once listening, and on SIGTERM/SIGINT prints the bytes
// the upstream sent and exits.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/support/counting_proxy.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: lazyfs-proxy UPSTREAM_HOST:PORT [RTT_MS] [MBIT_PER_S]\n");
    return 2;
  }
  lazyfs::testing::ProxyShape shape;
  if (argc > 2) shape.rtt_ms = std::atoi(argv[2]);
  if (argc > 3) shape.bytes_per_second = std::strtoull(argv[3], nullptr, 10) * 1'000'000 / 8;
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  auto proxy = lazyfs::testing::CountingProxy::Start(argv[1], shape);
  if (!proxy.ok()) {
    std::fprintf(stderr, "lazyfs-proxy: error: %s\n", proxy.status().message().c_str());
    return 1;
  }
  std::printf("%s\n", (*proxy)->host().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  std::printf("%llu\n", static_cast<unsigned long long>((*proxy)->bytes_down()));
  return 0;
}
