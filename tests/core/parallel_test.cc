#include "core/parallel.h"

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace grace {
namespace {

TEST(ParallelFor, RunsEveryIndexOnceOnSeveralThreads) {
  for (int threads : {1, 3, 16}) {
    std::vector<std::atomic<int>> calls(100);
    std::mutex m;
    std::vector<std::thread::id> ids;
    ParallelFor(100, threads, [&](int i) {
      calls[i].fetch_add(1);
      const std::lock_guard<std::mutex> lock(m);
      ids.push_back(std::this_thread::get_id());
    });
    for (int i = 0; i < 100; ++i) EXPECT_EQ(calls[i].load(), 1) << i << " on " << threads;
    EXPECT_EQ(ids.size(), 100u);
  }
  int ran = 0;
  ParallelFor(0, 4, [&](int) { ++ran; });
  EXPECT_EQ(ran, 0);
}

TEST(ParallelFor, RethrowsTheFirstFailureAfterEveryThreadStops) {
  std::atomic<int> running{0};
  EXPECT_THROW(ParallelFor(50, 4,
                           [&](int i) {
                             running.fetch_add(1);
                             if (i == 7) throw std::runtime_error("layer 7");
                             running.fetch_sub(1);
                           }),
               std::runtime_error);
  // Only the throwing call is left counted: every other one finished before ParallelFor returned.
  EXPECT_EQ(running.load(), 1);
}

TEST(ParallelFor, DefaultsToTheHardwareAtMostEight) {
  EXPECT_EQ(ParallelThreads(3), 3);
  EXPECT_GE(ParallelThreads(0), 1);
  EXPECT_LE(ParallelThreads(0), kDefaultParallelThreads);
}

}  // namespace
}  // namespace grace
