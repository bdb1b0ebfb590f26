// ParallelFor: fn(0), ..., fn(n - 1) on up to `threads` threads, the calling one among them,
// each thread taking the next index not yet taken; returns when every call has returned. For
// independent per-item work (one MoE layer each) whose results the caller combines in index
// order afterwards, so that the outcome does not depend on the thread count.
//
//   std::vector<Result> out(n);
//   ParallelFor(n, threads, [&](int i) { out[i] = Work(i); });
//
// threads <= 0: the hardware's threads, at most kDefaultParallelThreads. fn must be safe to run
// concurrently for distinct indices. The first exception fn throws is rethrown to the caller
// once every thread has stopped (the indices not yet taken are skipped).
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace grace {

inline constexpr int kDefaultParallelThreads = 8;

inline int ParallelThreads(int threads) {
  if (threads > 0) return threads;
  const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(hardware, 1, kDefaultParallelThreads);
}

template <typename Fn>
void ParallelFor(int n, int threads, Fn&& fn) {
  const int workers = std::min(ParallelThreads(threads), n);
  if (workers <= 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      try {
        fn(i);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(n);
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int t = 1; t < workers; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace grace
