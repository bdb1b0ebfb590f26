// The placement graced serves when it starts, and the check of a placement an agent brings.
//
// StartingPlacement: the history's current epoch (refused when the history was written for
// another model or topology); else epoch 1 from [daemon].initial_placement; else epoch 1 as
// EPLB's packing on uniform load (nothing is known yet, so there is no affinity to exploit:
// grace takes over once load arrives). A new epoch 1 is committed to the store before it is
// returned, so a restart finds it.
#pragma once

#include <cstdint>
#include <string>

#include "core/placement.h"
#include "core/status.h"
#include "daemon/daemon_config.h"
#include "daemon/history_store.h"
#include "policy/cost_model.h"

namespace grace {

struct StartingPlacementResult {
  PlacementRecord record;
  std::string source;  // for the log: "the history", the initial placement's path, "EPLB ..."
};

StatusOr<StartingPlacementResult> StartingPlacement(const DaemonConfig& config,
                                                    const CostParams& params, HistoryStore& store,
                                                    int64_t now_ms);

// A placement from `json` (an agent's Hello), checked against the configured model and topology.
StatusOr<Placement> CheckedPlacement(const DaemonConfig& config, const std::string& json,
                                     const std::string& where);

}  // namespace grace
