// The EPLB baseline: DeepSeek's expert-parallel load balancer, written from its published
// description. Replicate the expert with the highest load per replica until the slots are
// full, then pack the replicas onto GPUs with an equal number of slots each, heaviest first,
// each onto the least loaded GPU that still has room. Hierarchical when the expert groups
// divide evenly by nodes: groups are packed onto nodes first, then replication and packing
// happen inside each node.
// Pure functions; EplbPolicy is stateless.
#pragma once

#include <span>
#include <vector>

#include "policy/placement_policy.h"

namespace grace {

// Physical-to-logical rows, one per row of `loads` ([layer][expert]). `num_groups` is the
// model's expert-group count (1 when it has none); hierarchical when num_groups % num_nodes == 0
// and the counts divide, else one global replication and packing over all GPUs.
StatusOr<std::vector<std::vector<ExpertId>>> EplbRebalance(
    const std::vector<std::vector<double>>& loads, int num_physical, int num_groups, int num_nodes,
    int num_gpus);

struct EplbOptions {
  int num_groups = 1;
  // false: every replica takes the same share from every rank (vLLM, SGLang);
  // true: grace's locality routing on EPLB's placement.
  bool locality_routing = false;
};

class EplbPolicy : public PlacementPolicy {
 public:
  explicit EplbPolicy(EplbOptions options = {}) : options_(options) {}
  std::string name() const override { return "eplb"; }
  StatusOr<LayerPlan> PlanLayer(const LayerStats& stats, const Topology& topology,
                                const CostParams& params) const override;

 private:
  EplbOptions options_;
};

}  // namespace grace
