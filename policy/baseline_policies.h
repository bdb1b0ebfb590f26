// Two baselines of DESIGN.md besides EPLB, behind the PlacementPolicy interface:
//  - ContiguousPolicy: expert e on rank floor(e * ranks / E) (vLLM's and SGLang's default), no
//    replicas, spare slots left empty.
//  - AffinityPolicy: affinity grouping with equal group sizes and no replication (Occult-style):
//    spectral partition into one group per GPU, improved by affinity swaps. Without affinity it
//    is contiguous.
// Both stateless.
#pragma once

#include "policy/placement_policy.h"

namespace grace {

class ContiguousPolicy : public PlacementPolicy {
 public:
  std::string name() const override { return "contiguous"; }
  StatusOr<LayerPlan> PlanLayer(const LayerStats& stats, const Topology& topology,
                                const CostParams& params) const override;
};

class AffinityPolicy : public PlacementPolicy {
 public:
  std::string name() const override { return "affinity"; }
  StatusOr<LayerPlan> PlanLayer(const LayerStats& stats, const Topology& topology,
                                const CostParams& params) const override;
};

// A placement row from each expert's rank (primaries only, lowest free slots first).
StatusOr<std::vector<ExpertId>> RowFromRanks(std::span<const RankId> rank_of_expert,
                                             const Topology& topology);

}  // namespace grace
