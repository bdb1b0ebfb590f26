// MigrationPlan: the minimal set of expert-weight copies that turns one placement into another.
//
// A slot whose expert stays is not touched. A slot that must hold expert e in the new placement
// and does not hold it now receives one copy of e from a slot that holds e in the old placement
// (the weights live there while epoch n keeps serving). The source is the nearest one: the same
// GPU, else the same node, else a remote node; among equally near sources, the one whose rank has
// been given the fewest bytes to send so far, so the work spreads over senders. Slots that become
// empty cost nothing. Copies land in staging buffers and the slot map switches at COMMIT
// (DESIGN.md, "Migration"), so a source slot may itself be overwritten in the same plan.
//
// Pure computation; thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ids.h"
#include "core/placement.h"
#include "core/routing_table.h"
#include "core/status.h"
#include "core/topology.h"

namespace grace {

struct ExpertTransfer {
  int layer_index = 0;  // row of the placement
  ExpertId expert = 0;
  SlotId src_slot = 0;
  RankId src_rank = 0;
  SlotId dst_slot = 0;
  RankId dst_rank = 0;
  Tier link = Tier::kRemote;  // kLocal: a copy inside one GPU
  uint64_t bytes = 0;
};

struct MigrationPlan {
  std::vector<ExpertTransfer> transfers;
  uint64_t total_bytes = 0;
  uint64_t local_bytes = 0;       // same-GPU copies
  uint64_t intra_node_bytes = 0;  // across GPUs of one node
  uint64_t inter_node_bytes = 0;  // across nodes
  std::vector<uint64_t> send_bytes_per_rank;
  std::vector<uint64_t> recv_bytes_per_rank;

  bool empty() const { return transfers.empty(); }
};

// Plans the copies from `from` to `to` (same topology, experts and layers). `bytes_per_expert`
// is the size of one expert's weights. Fails, naming the layer and expert, if the shapes differ
// or `to` needs an expert that `from` does not hold anywhere.
StatusOr<MigrationPlan> PlanMigration(const Topology& topology, const Placement& from,
                                      const Placement& to, uint64_t bytes_per_expert);

// Bytes PlanMigration would move, without building the list: the number of (layer, slot) pairs
// whose expert changes to a non-empty one, times bytes_per_expert. The decision logic uses it as
// the migration cost; it always equals PlanMigration(...).total_bytes.
uint64_t MigrationBytes(const Placement& from, const Placement& to, uint64_t bytes_per_expert);

}  // namespace grace
