#include "agent/slot_staging.h"

#include <cstdio>

namespace grace {

StatusOr<BackendStaging> StageIntoBackend(ExpertBackend& backend, const SlotMap& current,
                                          std::span<const StagedSlot> staged, RankId rank,
                                          int slots_per_rank) {
  BackendStaging out;
  SlotMap next = current;
  Status failed;
  for (const StagedSlot& s : staged) {
    if (s.slot / slots_per_rank != rank) continue;
    const int local = s.slot % slots_per_rank;
    StatusOr<int> p = backend.StageSlot(s.layer_index, s.weights);
    if (!p.ok()) {
      failed =
          p.status().WithContext("rank " + std::to_string(rank) + " layer " +
                                 std::to_string(s.layer_index) + " slot " + std::to_string(s.slot));
      break;
    }
    out.acquired.emplace_back(s.layer_index, *p);
    out.replaced.emplace_back(s.layer_index, next.physical(s.layer_index, local));
    next = next.With(s.layer_index, local, *p);
  }
  if (failed.ok()) failed = backend.FinishStaging();
  if (!failed.ok()) {
    // Wait for what was queued before the slots go back to the pool.
    (void)backend.FinishStaging();
    ReleaseSlots(backend, out.acquired);
    return failed;
  }
  out.map = std::make_shared<const SlotMap>(std::move(next));
  return out;
}

void ReleaseSlots(ExpertBackend& backend, std::span<const PhysicalSlot> slots) {
  for (const auto& [layer, physical] : slots) {
    if (Status s = backend.ReleaseSlot(layer, physical); !s.ok()) {
      std::fprintf(stderr, "grace-agent: %s\n", s.ToString().c_str());
    }
  }
}

}  // namespace grace
