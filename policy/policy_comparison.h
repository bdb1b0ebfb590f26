// ComparePolicies: plans every layer with each named policy and measures the plans with the
// cost model; what `gracectl simulate` and bench/plan_bench print.
//
// Per policy and layer: remote and cross-node sends per token, max/mean GPU load, modeled layer
// time; summaries are means over layers (imbalance also its worst layer), and ratios are to the
// baseline policy's summary (EPLB by default). Pure computation.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "policy/cost_model.h"
#include "policy/layer_stats.h"
#include "policy/placement_policy.h"

namespace grace {

struct PolicyReport {
  std::string policy;
  std::vector<LayerId> layer_ids;
  std::vector<LayerCost> layers;
  double plan_ms = 0;  // wall time of planning all layers
  // Means over layers.
  double remote_sends_per_token = 0;
  double cross_node_sends_per_token = 0;
  double imbalance = 0;
  double worst_imbalance = 0;
  double modeled_layer_ms = 0;
  // This policy's mean over the baseline's (speedup: baseline time over this one's).
  double remote_sends_ratio = 0;
  double cross_node_sends_ratio = 0;
  double imbalance_ratio = 0;
  double speedup = 0;
};

StatusOr<std::vector<PolicyReport>> ComparePolicies(std::span<const LayerStats> layers,
                                                    const Topology& topology,
                                                    const CostParams& params,
                                                    std::span<const std::string> policies,
                                                    const std::string& baseline = "eplb");

}  // namespace grace
