// CopyPacer: the flow control of a migration's weight copies, shared by the TCP path
// (agent/migration_executor.h) and the NCCL path (agent/device_migration_executor.h). Before
// each chunk the copy sleeps while it runs ahead of max_bytes_per_s, and pauses while the rank's
// last step took longer than step_budget x the step baseline (the data path is slow); it stops
// with Aborted once `cancel` is set.
//
//   CopyPacer pacer(o.max_bytes_per_s, o.step_budget, o.progress, o.cancel);
//   for (each chunk) { GRACE_RETURN_IF_ERROR(pacer.BeforeChunk(bytes_done, &paused_s)); ... }
//
// Thread contract: the one migration thread that copies; reads `progress` (atomics) and
// `cancel`, which other threads write.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "agent/serving_state.h"
#include "core/status.h"

namespace grace {

class CopyPacer {
 public:
  // max_bytes_per_s 0: no cap. `progress` and `cancel` may be null (no flow control, no cancel).
  CopyPacer(double max_bytes_per_s, double step_budget, const RankProgress* progress,
            const std::atomic<bool>* cancel);

  // Returns when the chunk after `bytes_done` bytes may go; adds the time it waited to
  // *paused_s.
  Status BeforeChunk(uint64_t bytes_done, double* paused_s);

 private:
  using Clock = std::chrono::steady_clock;
  const double max_bytes_per_s_;
  const double step_budget_;
  const RankProgress* const progress_;
  const std::atomic<bool>* const cancel_;
  const Clock::time_point start_;
};

}  // namespace grace
