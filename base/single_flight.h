// At most one piece of work per key at a time; everyone else who wants that key shares it.
//
// Two shapes of the one mechanism:
// - Do(key, work): the first caller runs `work` on its own thread; callers arriving meanwhile
//   wait for it and get its Status (a blob download, a layer read whole).
// - DoAll(keys, ...): for a set of keys (the chunks a read needs), the keys someone is already
//   working on are waited for, and the rest are claimed by one new piece of work that runs in a
//   WorkPool, so the caller can give up at its Deadline while that work goes on (and ends at
//   the same Deadline, or is shared with the next caller).
// Nothing is remembered of an outcome: a key whose work failed is tried again by the next
// caller. Work that makes a key "done" (stores a chunk, say) must do so before it returns, so a
// key checked under the lock is either done or in flight, never worked on twice.
// Thread-safe. Work running in a pool uses this object: destroy the pool first.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/deadline.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "base/work_pool.h"

namespace lazyfs {

template <typename Key, typename Less = std::less<Key>>
class SingleFlight {
 public:
  // Runs work() on the calling thread unless work for `key` is under way; then waits for that
  // and returns its Status. An exception from work() becomes Internal (waiters never hang).
  Status Do(const Key& key, const std::function<Status()>& work) LAZYFS_EXCLUDES(mu_) {
    std::shared_ptr<Flight> flight;
    bool leader = false;
    {
      MutexLock lock(mu_);
      std::shared_ptr<Flight>& slot = flights_[key];
      if (!slot) {
        slot = std::make_shared<Flight>();
        leader = true;
      }
      flight = slot;
    }
    if (!leader) {
      MutexLock lock(mu_);
      cv_.Wait(mu_, [&] { return flight->finished; });
      return flight->status;
    }
    Status status;
    try {
      status = work();
    } catch (const std::exception& e) {
      status = InternalError(std::string("unexpected failure: ") + e.what());
    }
    Finish({key}, flight, status);
    return status;
  }

  // For every key not `done` (asked under the lock): waits for the work already under way for
  // it, and gives the keys nobody works on to one new `work(claimed)` queued on `pool`. Returns
  // the first failure among the work waited for; Unavailable "WHAT: no answer within N s" when
  // the deadline passes first (or "WHAT: cancelled"), the work going on in the pool.
  Status DoAll(const std::vector<Key>& keys, const std::function<bool(const Key&)>& done,
               std::function<Status(const std::vector<Key>&)> work, WorkPool& pool,
               const Deadline& deadline, std::string_view what) LAZYFS_EXCLUDES(mu_) {
    const auto started = Deadline::Clock::now();
    std::vector<std::shared_ptr<Flight>> waits;
    std::vector<Key> claimed;
    auto mine = std::make_shared<Flight>();
    {
      MutexLock lock(mu_);
      std::set<Flight*> seen;
      for (const Key& k : keys) {
        if (done && done(k)) continue;
        std::shared_ptr<Flight>& slot = flights_[k];
        if (!slot) {
          slot = mine;
          claimed.push_back(k);
        } else if (slot != mine && seen.insert(slot.get()).second) {
          waits.push_back(slot);
        }
      }
    }
    if (!claimed.empty()) {
      waits.push_back(mine);
      pool.Submit([this, claimed, mine, work = std::move(work)] {
        Status status;
        try {
          status = work(claimed);
        } catch (const std::exception& e) {
          status = InternalError(std::string("unexpected failure: ") + e.what());
        }
        Finish(claimed, mine, status);
      });
    }
    MutexLock lock(mu_);
    for (const std::shared_ptr<Flight>& f : waits) {
      // In slices, so a raised cancellation flag is seen without a notification.
      while (!f->finished) {
        if (deadline.expired()) return Expired(deadline, started).WithContext(what);
        const auto slice = Deadline::Clock::now() + std::chrono::milliseconds(100);
        cv_.WaitUntil(mu_, std::min(slice, deadline.at()), [&] { return f->finished; });
      }
      if (!f->status.ok()) return f->status;
    }
    return Status::Ok();
  }

 private:
  struct Flight {
    bool finished = false;  // guarded by the SingleFlight's mu_
    Status status;
  };

  void Finish(const std::vector<Key>& keys, const std::shared_ptr<Flight>& flight,
              const Status& status) LAZYFS_EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      for (const Key& k : keys) {
        auto it = flights_.find(k);
        if (it != flights_.end() && it->second == flight) flights_.erase(it);
      }
      flight->status = status;
      flight->finished = true;
    }
    cv_.NotifyAll();
  }

  static Status Expired(const Deadline& deadline, Deadline::Clock::time_point started) {
    if (deadline.cancelled()) return UnavailableError("cancelled");
    const double secs =
        std::chrono::duration<double>(deadline.at() - started).count();
    char text[32];
    std::snprintf(text, sizeof text, "%.1f", secs);
    return UnavailableError(std::string("no answer within ") + text + " s (the read deadline)");
  }

  Mutex mu_;
  CondVar cv_;
  std::map<Key, std::shared_ptr<Flight>, Less> flights_ LAZYFS_GUARDED_BY(mu_);
};

}  // namespace lazyfs
