// When work must give up: a point in time, and a flag that ends it early.
//
// A Deadline travels with a read from where it starts (a FUSE request, a materialize) down to
// the registry client. Waits on another reader's fetch, retries and the transfer itself all stop
// at it, so nothing waits past its reader's patience, and work nobody waits for any more ends.
// A Deadline may carry a Canceller's flag (a mount that is going away): once raised, the
// Deadline counts as expired. Value type; copies share the flag. Thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace lazyfs {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  // Never expires (unless cancelled).
  Deadline() = default;
  static Deadline Never() { return Deadline(); }
  static Deadline At(Clock::time_point at) { return Deadline(at, nullptr); }
  static Deadline In(std::chrono::milliseconds d) { return At(Clock::now() + d); }

  Clock::time_point at() const { return at_; }
  bool cancelled() const { return cancel_ && cancel_->load(std::memory_order_relaxed); }
  // Past `at`, or cancelled.
  bool expired() const { return cancelled() || Clock::now() >= at_; }
  // Time left (0 once expired); a very large value for Never().
  std::chrono::milliseconds remaining() const {
    if (cancelled()) return std::chrono::milliseconds(0);
    if (at_ == Clock::time_point::max()) return std::chrono::milliseconds::max();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - Clock::now());
    return std::max(left, std::chrono::milliseconds(0));
  }
  // The sooner of the two times, keeping this one's flag (or the other's, when this has none).
  Deadline Sooner(Clock::time_point at) const {
    return Deadline(std::min(at_, at), cancel_);
  }
  // "deadline reached" or "cancelled", for messages.
  std::string Why() const { return cancelled() ? "cancelled" : "deadline reached"; }

 private:
  friend class Canceller;
  Deadline(Clock::time_point at, std::shared_ptr<const std::atomic<bool>> cancel)
      : at_(at), cancel_(std::move(cancel)) {}

  Clock::time_point at_ = Clock::time_point::max();
  std::shared_ptr<const std::atomic<bool>> cancel_;
};

// Raises one flag for every Deadline it made. Thread-safe.
class Canceller {
 public:
  Canceller() : flag_(std::make_shared<std::atomic<bool>>(false)) {}
  // A deadline at `at` that Cancel() also ends.
  Deadline At(Deadline::Clock::time_point at) const { return Deadline(at, flag_); }
  Deadline In(std::chrono::milliseconds d) const { return At(Deadline::Clock::now() + d); }
  Deadline Never() const { return At(Deadline::Clock::time_point::max()); }
  void Cancel() { flag_->store(true, std::memory_order_relaxed); }
  bool cancelled() const { return flag_->load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<std::atomic<bool>> flag_;
};

}  // namespace lazyfs
