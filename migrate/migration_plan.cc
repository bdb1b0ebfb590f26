#include "migrate/migration_plan.h"

#include <limits>
#include <string>

namespace grace {
namespace {

Tier LinkBetween(const Topology& topology, RankId a, RankId b) {
  if (a == b) return Tier::kLocal;
  return topology.NodeOfRank(a) == topology.NodeOfRank(b) ? Tier::kSameNode : Tier::kRemote;
}

Status CheckSameShape(const Topology& topology, const Placement& from, const Placement& to) {
  GRACE_RETURN_IF_ERROR(from.Validate(topology).WithContext("current placement"));
  GRACE_RETURN_IF_ERROR(to.Validate(topology).WithContext("new placement"));
  if (from.num_experts != to.num_experts || from.layer_ids != to.layer_ids) {
    return InvalidArgument(
        "placements differ in experts or layers: " + std::to_string(from.num_experts) + " vs " +
        std::to_string(to.num_experts) + " experts, " + std::to_string(from.num_layers()) + " vs " +
        std::to_string(to.num_layers()) + " layers");
  }
  return Status::Ok();
}

}  // namespace

uint64_t MigrationBytes(const Placement& from, const Placement& to, uint64_t bytes_per_expert) {
  uint64_t copies = 0;
  for (int li = 0; li < to.num_layers() && li < from.num_layers(); ++li) {
    const auto& a = from.physical_to_logical[li];
    const auto& b = to.physical_to_logical[li];
    for (size_t s = 0; s < b.size() && s < a.size(); ++s) {
      if (b[s] != kEmptySlot && b[s] != a[s]) ++copies;
    }
  }
  return copies * bytes_per_expert;
}

StatusOr<MigrationPlan> PlanMigration(const Topology& topology, const Placement& from,
                                      const Placement& to, uint64_t bytes_per_expert) {
  GRACE_RETURN_IF_ERROR(CheckSameShape(topology, from, to));
  MigrationPlan plan;
  plan.send_bytes_per_rank.assign(topology.ranks(), 0);
  plan.recv_bytes_per_rank.assign(topology.ranks(), 0);
  for (int li = 0; li < to.num_layers(); ++li) {
    const auto& old_row = from.physical_to_logical[li];
    const auto& new_row = to.physical_to_logical[li];
    for (SlotId dst = 0; dst < static_cast<SlotId>(new_row.size()); ++dst) {
      const ExpertId e = new_row[dst];
      if (e == kEmptySlot || e == old_row[dst]) continue;
      const RankId dst_rank = topology.RankOfSlot(dst);
      SlotId best = -1;
      Tier best_tier = Tier::kRemote;
      uint64_t best_load = std::numeric_limits<uint64_t>::max();
      for (SlotId src = 0; src < static_cast<SlotId>(old_row.size()); ++src) {
        if (old_row[src] != e) continue;
        const RankId src_rank = topology.RankOfSlot(src);
        const Tier tier = LinkBetween(topology, src_rank, dst_rank);
        const uint64_t load = plan.send_bytes_per_rank[src_rank];
        if (best < 0 || tier < best_tier || (tier == best_tier && load < best_load)) {
          best = src;
          best_tier = tier;
          best_load = load;
        }
      }
      if (best < 0) {
        return InvalidArgument("layer " + std::to_string(to.layer_ids[li]) + ": expert " +
                               std::to_string(e) + " has no copy in the current placement");
      }
      ExpertTransfer t;
      t.layer_index = li;
      t.expert = e;
      t.src_slot = best;
      t.src_rank = topology.RankOfSlot(best);
      t.dst_slot = dst;
      t.dst_rank = dst_rank;
      t.link = best_tier;
      t.bytes = bytes_per_expert;
      plan.send_bytes_per_rank[t.src_rank] += t.bytes;
      plan.recv_bytes_per_rank[t.dst_rank] += t.bytes;
      plan.total_bytes += t.bytes;
      switch (best_tier) {
        case Tier::kLocal: plan.local_bytes += t.bytes; break;
        case Tier::kSameNode: plan.intra_node_bytes += t.bytes; break;
        case Tier::kRemote: plan.inter_node_bytes += t.bytes; break;
      }
      plan.transfers.push_back(t);
    }
  }
  return plan;
}

}  // namespace grace
