// A bounded pool of threads for work a caller may stop waiting for.
//
// A reader that gives up at its deadline leaves its fetch running: the fetch finishes in the
// pool (its outcome is shared with whoever asks next through SingleFlight) or ends at its own
// Deadline. Nothing is detached: the destructor runs what is queued and joins every thread, so
// an owner that destroys its pool first knows no job still uses it. Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "base/thread_annotations.h"

namespace lazyfs {

class WorkPool {
 public:
  // Threads start when jobs are queued and none is idle, up to max_threads (at least 1).
  explicit WorkPool(unsigned max_threads);
  // Waits for the queued and running jobs, then joins the threads.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `job`; it runs on a pool thread. Jobs must not throw.
  void Submit(std::function<void()> job) LAZYFS_EXCLUDES(mu_);

 private:
  void Run() LAZYFS_EXCLUDES(mu_);

  const unsigned max_threads_;
  Mutex mu_;
  CondVar cv_;
  std::deque<std::function<void()>> queue_ LAZYFS_GUARDED_BY(mu_);
  unsigned idle_ LAZYFS_GUARDED_BY(mu_) = 0;
  bool stopping_ LAZYFS_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ LAZYFS_GUARDED_BY(mu_);
};

}  // namespace lazyfs
