// SingleFlight, WorkPool and Deadline: one piece of work per key, callers that give up at their
// deadline while the work goes on in the pool, and a pool that never leaves a job behind.
#include "base/single_flight.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace lazyfs {
namespace {

using namespace std::chrono_literals;

TEST(DeadlineTest, NeverExpiresAndInDoes) {
  EXPECT_FALSE(Deadline::Never().expired());
  EXPECT_GT(Deadline::Never().remaining(), std::chrono::hours(24 * 365));
  const Deadline soon = Deadline::In(20ms);
  EXPECT_FALSE(soon.expired());
  EXPECT_LE(soon.remaining(), 20ms);
  std::this_thread::sleep_for(30ms);
  EXPECT_TRUE(soon.expired());
  EXPECT_EQ(soon.remaining(), 0ms);
}

TEST(DeadlineTest, ACancellerEndsEveryDeadlineItMade) {
  Canceller c;
  const Deadline a = c.Never(), b = c.In(std::chrono::hours(1));
  EXPECT_FALSE(a.expired());
  EXPECT_FALSE(b.expired());
  c.Cancel();
  EXPECT_TRUE(a.expired());
  EXPECT_TRUE(b.cancelled());
  EXPECT_EQ(b.remaining(), 0ms);
  // Sooner keeps the flag.
  EXPECT_TRUE(a.Sooner(Deadline::Clock::time_point::max()).expired());
}

TEST(WorkPoolTest, RunsEveryJobAndTheDestructorWaitsForThem) {
  std::atomic<int> ran{0};
  {
    WorkPool pool(3);
    for (int i = 0; i < 50; ++i) {
      pool.Submit([&] {
        std::this_thread::sleep_for(1ms);
        ran.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(ran.load(), 50);
}

TEST(WorkPoolTest, NeverRunsMoreThanItsThreads) {
  std::atomic<int> running{0}, most{0};
  {
    WorkPool pool(2);
    for (int i = 0; i < 20; ++i) {
      pool.Submit([&] {
        const int now = running.fetch_add(1) + 1;
        for (int m = most.load(); now > m && !most.compare_exchange_weak(m, now);) {
        }
        std::this_thread::sleep_for(2ms);
        running.fetch_sub(1);
      });
    }
  }
  EXPECT_LE(most.load(), 2);
  EXPECT_GE(most.load(), 1);
}

TEST(SingleFlightTest, DoRunsOnceForCallersThatOverlap) {
  SingleFlight<int> flight;
  std::atomic<int> runs{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> callers;
  std::vector<Status> got(4);
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&, i] {
      got[i] = flight.Do(7, [&] {
        runs.fetch_add(1);
        while (!release.load()) std::this_thread::sleep_for(1ms);
        return DataLossError("shared outcome");
      });
    });
  }
  std::this_thread::sleep_for(50ms);
  release = true;
  for (auto& t : callers) t.join();
  EXPECT_EQ(runs.load(), 1);
  for (const Status& s : got) EXPECT_EQ(s.message(), "shared outcome");
  // Nothing is remembered: the next caller runs the work again.
  EXPECT_TRUE(flight.Do(7, [&] {
    runs.fetch_add(1);
    return Status::Ok();
  }).ok());
  EXPECT_EQ(runs.load(), 2);
}

TEST(SingleFlightTest, DoAllClaimsOnlyKeysNobodyWorksOnAndSkipsDoneOnes) {
  std::atomic<bool> release{false};
  std::vector<int> first_claim, second_claim;
  SingleFlight<int> flight;
  WorkPool pool(4);  // destroyed first: its work uses what is above
  std::thread first([&] {
    EXPECT_TRUE(flight
                    .DoAll({1, 2, 3}, nullptr,
                           [&](const std::vector<int>& keys) {
                             first_claim = keys;
                             while (!release.load()) std::this_thread::sleep_for(1ms);
                             return Status::Ok();
                           },
                           pool, Deadline::In(10s), "keys")
                    .ok());
  });
  std::this_thread::sleep_for(50ms);
  std::thread second([&] {
    EXPECT_TRUE(flight
                    .DoAll({0, 2, 3, 4, 5}, [](int k) { return k == 5; },
                           [&](const std::vector<int>& keys) {
                             second_claim = keys;
                             return Status::Ok();
                           },
                           pool, Deadline::In(10s), "keys")
                    .ok());
  });
  std::this_thread::sleep_for(50ms);
  release = true;
  first.join();
  second.join();
  EXPECT_EQ(first_claim, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(second_claim, (std::vector<int>{0, 4}));
}

TEST(SingleFlightTest, ACallerGivesUpAtItsDeadlineWhileTheWorkGoesOn) {
  std::atomic<bool> release{false}, finished{false};
  {
    SingleFlight<int> flight;
    WorkPool pool(2);  // destroyed first: its work uses `flight`
    const auto start = std::chrono::steady_clock::now();
    Status s = flight.DoAll({1}, nullptr,
                            [&](const std::vector<int>&) {
                              while (!release.load()) std::this_thread::sleep_for(1ms);
                              finished = true;
                              return Status::Ok();
                            },
                            pool, Deadline::In(100ms), "key 1");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    EXPECT_TRUE(s.message().starts_with("key 1: no answer within")) << s.message();
    EXPECT_FALSE(finished.load());
    release = true;
  }
  // The pool's destructor waited for the work.
  EXPECT_TRUE(finished.load());
}

TEST(SingleFlightTest, ACancelledCallerStopsWaitingWithoutANotification) {
  std::atomic<bool> release{false};
  SingleFlight<int> flight;
  WorkPool pool(1);  // destroyed first: its work uses `flight` and `release`
  Canceller cancel;
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    cancel.Cancel();
  });
  Status s = flight.DoAll({1}, nullptr,
                          [&](const std::vector<int>&) {
                            while (!release.load()) std::this_thread::sleep_for(1ms);
                            return Status::Ok();
                          },
                          pool, cancel.Never(), "key 1");
  later.join();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "key 1: cancelled");
  release = true;
}

}  // namespace
}  // namespace lazyfs
