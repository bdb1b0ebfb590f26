// ServingState: what the data-path workers of one agent read each step, published by the
// control thread Envoy-style: an immutable EpochView behind one atomic shared_ptr.
//
// A worker loads the view once per step and serves `current`, or `next` (the staged epoch:
// READY sent, committed or still in doubt) when the ranks' in-band agreement for the step says
// so (agent/epoch_agreement.h). `next`'s expert weights are already in spare physical slots of
// each rank's backend (agent/slot_staging.h, before READY): at its first step on `next` a
// worker only publishes its slot map (ExpertBackend::UseSlotMap; nothing is copied). Every rank
// thus switches at the same step and no step mixes epochs. The control thread publishes a clean
// view (current = next) once every local worker has switched; the old view, and the staged
// buffers with it, are freed when the last worker drops its reference.
//
// Thread contract: the control thread writes `view` and reads the per-rank progress; worker i
// writes only ranks[i] (atomics, relaxed or release/acquire as noted) and reads `view`.
// backends[i] is made before the workers start; worker i runs it, rank i's migration thread
// stages into it (ExpertBackend's thread contract).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "agent/epoch_agreement.h"
#include "agent/live_counters.h"
#include "core/ids.h"
#include "core/routing_table.h"
#include "kernels/expert_backend.h"

namespace grace {

// One expert's weights for one slot: w1 | w3 | w2 back to back (3 x ffn x hidden floats).
struct StagedSlot {
  int layer_index = 0;
  SlotId slot = 0;  // global slot id
  ExpertId expert = 0;
  std::shared_ptr<const std::vector<float>> weights;
};

struct EpochView {
  std::shared_ptr<const RoutingTable> current;
  std::shared_ptr<const RoutingTable> next;  // the staged epoch; null when none
  uint64_t switch_step = kNoSwitchStep;      // its COMMIT's switch step; kNoSwitchStep: in doubt
  std::vector<StagedSlot> staged;            // the slots `next` changes, on this agent's ranks
  // Per local rank: the slot map of `next` in that rank's backend (its new experts staged).
  std::vector<std::shared_ptr<const SlotMap>> slot_maps;
};

// One worker's progress, read by the control thread for heartbeats, reports and flow control.
struct RankProgress {
  std::atomic<uint64_t> next_step{0};    // steps [0, next_step) are done
  std::atomic<Epoch> epoch{0};           // the epoch of its last finished step
  std::atomic<uint64_t> epoch_since{0};  // the first step it served `epoch` with
  // The lowest epoch any rank of the job served its previous step with (from the in-band
  // claims): every rank is past the switch to epoch e once this is >= e.
  std::atomic<Epoch> mesh_epoch{0};
  std::atomic<uint64_t> last_step_us{0};      // compute time of the last step
  std::atomic<uint64_t> baseline_step_us{0};  // slow-moving average of step time
  std::atomic<bool> finished{false};
  // Per (layer, expert) token counts since the last LoadReport; the control thread exchanges
  // them with 0. Sized once at start.
  std::unique_ptr<std::atomic<uint32_t>[]> counts;
  // Sampled co-activation and the dispatch's traffic since the last LoadReport; sized once.
  std::unique_ptr<LiveCounters> live;
};

struct ServingState {
  std::atomic<std::shared_ptr<const EpochView>> view;
  // Workers end before this step (SIGTERM: the control thread sets it one step past the
  // furthest local worker, so every local rank stops at the same step).
  std::atomic<uint64_t> stop_at{kNoSwitchStep};
  std::vector<RankProgress> ranks;  // one per local rank, sized once before workers start
  std::vector<std::unique_ptr<ExpertBackend>> backends;  // one per local rank, likewise
};

}  // namespace grace
