// GracePolicy: grace's placement method for one layer (DESIGN.md, "The method").
//
// With token-level stats (exact cost model):
//   1. hierarchical spectral grouping of the affinity: experts to nodes, then to GPUs, sizes
//      E/D (equal) to start;
//   2. local search (moves and swaps) on the modeled layer time, GPU sizes held within
//      E/D +- delta, for each delta of `size_ratios` (delta = max(1, round(E/D * r)));
//   3. greedy replication: each spare slot takes the (expert, GPU) pair that lowers the modeled
//      time most, stopping when none does;
//   4. locality routing weighted by inverse predicted load;
//   the delta with the best modeled time wins (the knee of kept affinity vs size spread).
// With load only (count-only sources, or online forecasts without tokens): replicas go to the
// experts with the highest load per replica, copies of one expert on distinct nodes where the
// balance allows, packed heaviest first, then swapped to lower the hottest GPU; EPLB's packing
// is tried too, and the lower predicted max GPU load wins.
// Stateless; PlanLayer may run on several threads at once.
#pragma once

#include <vector>

#include "policy/placement_policy.h"

namespace grace {

struct GraceOptions {
  double max_imbalance = 1.10;  // tolerated max/mean GPU load (a penalty beyond it)
  std::vector<double> size_ratios = {0.0, 0.1, 0.25};
  int search_passes = 20;
  // Iterated local search: random 3-swap kicks per delta and start, each followed by a full
  // search. Off by default: on Qwen1.5-MoE 20 kicks cut remote sends about 2% for 40x the time.
  int kicks = 0;
  int replica_candidates = 32;  // hottest experts tried for each spare slot
  int routing_iterations = 16;
};

class GracePolicy : public PlacementPolicy {
 public:
  explicit GracePolicy(GraceOptions options = {}) : options_(std::move(options)) {}
  std::string name() const override { return "grace"; }
  StatusOr<LayerPlan> PlanLayer(const LayerStats& stats, const Topology& topology,
                                const CostParams& params) const override;

 private:
  StatusOr<LayerPlan> PlanWithTokens(const LayerStats& stats, const Topology& topology,
                                     const CostParams& params) const;
  StatusOr<LayerPlan> PlanFromLoads(const LayerStats& stats, const Topology& topology) const;

  GraceOptions options_;
};

// Per-rank load the routing predicts, tokens spread evenly over home ranks.
std::vector<double> PredictedRankLoad(const LayerRouting& routing, std::span<const double> load,
                                      const Topology& topology);

}  // namespace grace
