// Slot staging: a migration's new expert weights, copied into host buffers
// (agent/migration_executor.h), written into free physical slots of the rank's expert backend
// before READY, and the slot map the switch step publishes (kernels/slot_map.h). (The NCCL
// path, agent/device_migration_executor.h, receives straight into the slots and builds the same
// BackendStaging itself.) The switch
// then copies nothing; the physical slots the old map named return to the pool once every rank
// serves the new epoch (ReleaseSlots).
//
//   GRACE_ASSIGN_OR_RETURN(BackendStaging st,
//                          StageIntoBackend(backend, *current_map, copies.staged, rank, spr));
//   // READY ... the switch step: backend.UseSlotMap(st.map) on the data path
//   ReleaseSlots(backend, st.replaced);   // once every rank is past the switch
//   ReleaseSlots(backend, st.acquired);   // instead, when the migration is dropped
//
// Thread contract: StageIntoBackend runs on the rank's migration thread (the backend's one
// staging thread), concurrently with the data path's Run; ReleaseSlots on any thread.
#pragma once

#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "agent/serving_state.h"
#include "kernels/expert_backend.h"

namespace grace {

using PhysicalSlot = std::pair<int, int>;  // (layer index, physical slot)

struct BackendStaging {
  std::shared_ptr<const SlotMap> map;  // what the switch publishes
  std::vector<PhysicalSlot> acquired;  // the staged slots: released if the migration is dropped
  std::vector<PhysicalSlot> replaced;  // named by the old map: released after the switch
};

// Stages every slot of `staged` on `rank` into a free physical slot and waits until the writes
// have landed. On failure (no spare slot left, a device error) it releases what it took.
StatusOr<BackendStaging> StageIntoBackend(ExpertBackend& backend, const SlotMap& current,
                                          std::span<const StagedSlot> staged, RankId rank,
                                          int slots_per_rank);

// Returns the slots to the backend's pool; a failure (a slot already free) is logged, not
// fatal: it can only leak a spare.
void ReleaseSlots(ExpertBackend& backend, std::span<const PhysicalSlot> slots);

}  // namespace grace
