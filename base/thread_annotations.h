// Clang's thread-safety annotations, and a mutex they can check.
//
// libstdc++'s std::mutex carries no capability attributes, so clang cannot check code that
// locks it. lazyfs::Mutex is a std::mutex with them: members marked LAZYFS_GUARDED_BY(mu_) are
// then checked at compile time by clang's -Wthread-safety (the sanitizer build turns it on).
// With other compilers the macros are empty.
#pragma once

#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define LAZYFS_THREAD_ATTRIBUTE(x) __attribute__((x))
#else
#define LAZYFS_THREAD_ATTRIBUTE(x)
#endif

#define LAZYFS_CAPABILITY(x) LAZYFS_THREAD_ATTRIBUTE(capability(x))
#define LAZYFS_SCOPED_CAPABILITY LAZYFS_THREAD_ATTRIBUTE(scoped_lockable)
#define LAZYFS_GUARDED_BY(x) LAZYFS_THREAD_ATTRIBUTE(guarded_by(x))
#define LAZYFS_PT_GUARDED_BY(x) LAZYFS_THREAD_ATTRIBUTE(pt_guarded_by(x))
#define LAZYFS_ACQUIRED_BEFORE(...) LAZYFS_THREAD_ATTRIBUTE(acquired_before(__VA_ARGS__))
#define LAZYFS_REQUIRES(...) LAZYFS_THREAD_ATTRIBUTE(requires_capability(__VA_ARGS__))
#define LAZYFS_EXCLUDES(...) LAZYFS_THREAD_ATTRIBUTE(locks_excluded(__VA_ARGS__))
#define LAZYFS_ACQUIRE(...) LAZYFS_THREAD_ATTRIBUTE(acquire_capability(__VA_ARGS__))
#define LAZYFS_TRY_ACQUIRE(...) LAZYFS_THREAD_ATTRIBUTE(try_acquire_capability(__VA_ARGS__))
#define LAZYFS_RELEASE(...) LAZYFS_THREAD_ATTRIBUTE(release_capability(__VA_ARGS__))
#define LAZYFS_NO_THREAD_SAFETY_ANALYSIS LAZYFS_THREAD_ATTRIBUTE(no_thread_safety_analysis)

namespace lazyfs {

// std::mutex, annotated. Also BasicLockable, so std::condition_variable_any waits on it.
class LAZYFS_CAPABILITY("mutex") Mutex {
 public:
  void lock() LAZYFS_ACQUIRE() { mu_.lock(); }
  void unlock() LAZYFS_RELEASE() { mu_.unlock(); }
  bool try_lock() LAZYFS_TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class LAZYFS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) LAZYFS_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() LAZYFS_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// A condition variable for Mutex. Wait* must be called with the mutex held (as MutexLock holds
// it); the analysis cannot see the unlock and relock inside, which is what waiting means.
class CondVar {
 public:
  template <typename Pred>
  void Wait(Mutex& mu, Pred pred) LAZYFS_REQUIRES(mu) {
    cv_.wait(mu, pred);
  }
  // False when `pred` still does not hold at `until`.
  template <typename Clock, typename Duration, typename Pred>
  bool WaitUntil(Mutex& mu, const std::chrono::time_point<Clock, Duration>& until, Pred pred)
      LAZYFS_REQUIRES(mu) {
    return cv_.wait_until(mu, until, pred);
  }
  void NotifyAll() { cv_.notify_all(); }
  void NotifyOne() { cv_.notify_one(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace lazyfs
