#include "base/work_pool.h"

#include <algorithm>

namespace lazyfs {

WorkPool::WorkPool(unsigned max_threads) : max_threads_(std::max(1u, max_threads)) {}

WorkPool::~WorkPool() {
  std::vector<std::thread> threads;
  {
    MutexLock lock(mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  cv_.NotifyAll();
  for (std::thread& t : threads) t.join();
}

void WorkPool::Submit(std::function<void()> job) {
  MutexLock lock(mu_);
  queue_.push_back(std::move(job));
  if (idle_ == 0 && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { Run(); });
  } else {
    cv_.NotifyOne();
  }
}

void WorkPool::Run() {
  MutexLock lock(mu_);
  for (;;) {
    ++idle_;
    cv_.Wait(mu_, [&]() LAZYFS_REQUIRES(mu_) { return !queue_.empty() || stopping_; });
    --idle_;
    // Queued jobs run even while stopping: their callers may be waiting on them.
    if (queue_.empty()) return;
    std::function<void()> job = std::move(queue_.front());
    queue_.pop_front();
    mu_.unlock();
    job();
    mu_.lock();
  }
}

}  // namespace lazyfs
