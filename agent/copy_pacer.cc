#include "agent/copy_pacer.h"

#include <algorithm>
#include <thread>

namespace grace {

CopyPacer::CopyPacer(double max_bytes_per_s, double step_budget, const RankProgress* progress,
                     const std::atomic<bool>* cancel)
    : max_bytes_per_s_(max_bytes_per_s),
      step_budget_(step_budget),
      progress_(progress),
      cancel_(cancel),
      start_(Clock::now()) {}

Status CopyPacer::BeforeChunk(uint64_t bytes_done, double* paused_s) {
  // At most 50 pauses per chunk: a data path that stays slow must not stall the copy for ever.
  for (int i = 0; i < 50; ++i) {
    if (cancel_ != nullptr && cancel_->load(std::memory_order_relaxed)) {
      return Aborted("migration cancelled");
    }
    if (progress_ == nullptr) break;
    const uint64_t last = progress_->last_step_us.load(std::memory_order_relaxed);
    const uint64_t base = progress_->baseline_step_us.load(std::memory_order_relaxed);
    if (base == 0 || last <= step_budget_ * base) break;
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::microseconds(std::max<uint64_t>(base, 200)));
    *paused_s += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  if (max_bytes_per_s_ > 0) {
    const auto due = start_ + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(bytes_done / max_bytes_per_s_));
    const auto t0 = Clock::now();
    if (due > t0) {
      std::this_thread::sleep_until(due);
      *paused_s += std::chrono::duration<double>(Clock::now() - t0).count();
    }
  }
  return Status::Ok();
}

}  // namespace grace
