// Running independent pieces of work (layers of an image) on a few threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

namespace lazyfs {

// `threads`, or the number of CPUs when 0 (at least 1).
inline unsigned ThreadsOrCpus(unsigned threads) {
  if (threads != 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

// Calls fn(i) for every i in [0, n), on up to `threads` threads (0: the number of CPUs), each
// taking the next index when it is done with one; returns when all calls have returned. With one
// thread (or one item) everything runs on the calling thread, in order. fn must not throw.
inline void ParallelFor(size_t n, unsigned threads, const std::function<void(size_t)>& fn) {
  const size_t workers = std::min<size_t>(n, ThreadsOrCpus(threads));
  if (workers <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (size_t t = 1; t < workers; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
}

}  // namespace lazyfs
