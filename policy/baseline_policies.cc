#include "policy/baseline_policies.h"

#include <numeric>
#include <string>

#include "policy/locality_routing.h"
#include "policy/spectral_grouping.h"

namespace grace {

StatusOr<std::vector<ExpertId>> RowFromRanks(std::span<const RankId> rank_of_expert,
                                             const Topology& topology) {
  std::vector<ExpertId> row(topology.total_slots(), kEmptySlot);
  std::vector<int> used(topology.ranks(), 0);
  for (ExpertId e = 0; e < static_cast<ExpertId>(rank_of_expert.size()); ++e) {
    const RankId r = rank_of_expert[e];
    if (r < 0 || r >= topology.ranks() || used[r] >= topology.slots_per_gpu) {
      return InvalidArgument("expert " + std::to_string(e) + " does not fit rank " +
                             std::to_string(r) + " (" + topology.ToString() + ")");
    }
    row[r * topology.slots_per_gpu + used[r]++] = e;
  }
  return row;
}

namespace {

// Equal sizes: floor(E / ranks) or one more, the larger ones first.
std::vector<int> EqualSizes(int experts, int parts) {
  std::vector<int> sizes(parts, experts / parts);
  for (int i = 0; i < experts % parts; ++i) ++sizes[i];
  return sizes;
}

StatusOr<LayerPlan> PlanFromRanks(const LayerStats& stats, std::span<const RankId> ranks,
                                  const Topology& topology) {
  GRACE_ASSIGN_OR_RETURN(std::vector<ExpertId> row, RowFromRanks(ranks, topology));
  LayerPlan plan;
  plan.routing = LocalityRouting(row, stats.load, topology);
  plan.row = std::move(row);
  return plan;
}

}  // namespace

StatusOr<LayerPlan> ContiguousPolicy::PlanLayer(const LayerStats& stats, const Topology& topology,
                                                const CostParams& /*params*/) const {
  GRACE_RETURN_IF_ERROR(CheckLayerInput(stats, topology));
  const int experts = stats.num_experts();
  std::vector<RankId> ranks(experts);
  for (ExpertId e = 0; e < experts; ++e) {
    ranks[e] = static_cast<RankId>(static_cast<int64_t>(e) * topology.ranks() / experts);
  }
  return PlanFromRanks(stats, ranks, topology);
}

StatusOr<LayerPlan> AffinityPolicy::PlanLayer(const LayerStats& stats, const Topology& topology,
                                              const CostParams& params) const {
  GRACE_RETURN_IF_ERROR(CheckLayerInput(stats, topology));
  if (!stats.affinity) return ContiguousPolicy().PlanLayer(stats, topology, params);
  const int experts = stats.num_experts();
  std::vector<ExpertId> members(experts);
  std::iota(members.begin(), members.end(), 0);
  const std::vector<int> sizes = EqualSizes(experts, topology.ranks());
  std::vector<int> part = SpectralPartition(*stats.affinity, members, sizes);
  ImproveBySwaps(*stats.affinity, &part);
  return PlanFromRanks(stats, part, topology);
}

}  // namespace grace
