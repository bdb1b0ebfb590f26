#include "policy/policy_comparison.h"

#include <algorithm>
#include <chrono>

namespace grace {

StatusOr<std::vector<PolicyReport>> ComparePolicies(std::span<const LayerStats> layers,
                                                    const Topology& topology,
                                                    const CostParams& params,
                                                    std::span<const std::string> policies,
                                                    const std::string& baseline) {
  std::vector<PolicyReport> reports;
  for (const std::string& name : policies) {
    GRACE_ASSIGN_OR_RETURN(std::unique_ptr<PlacementPolicy> policy, MakePlacementPolicy(name));
    const auto start = std::chrono::steady_clock::now();
    GRACE_ASSIGN_OR_RETURN(PlacementPlan plan, PlanAllLayers(*policy, layers, topology, params));
    PolicyReport r;
    r.policy = name;
    r.plan_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    for (size_t li = 0; li < layers.size(); ++li) {
      LayerCost cost = EvaluateLayer(layers[li], plan.routings[li], topology, params);
      r.layer_ids.push_back(layers[li].layer_id);
      r.remote_sends_per_token += cost.remote_sends_per_token / layers.size();
      r.cross_node_sends_per_token += cost.cross_node_sends_per_token / layers.size();
      r.imbalance += cost.imbalance / layers.size();
      r.worst_imbalance = std::max(r.worst_imbalance, cost.imbalance);
      r.modeled_layer_ms += cost.layer_ms / layers.size();
      r.layers.push_back(std::move(cost));
    }
    reports.push_back(std::move(r));
  }
  auto base = std::find_if(reports.begin(), reports.end(),
                           [&](const PolicyReport& r) { return r.policy == baseline; });
  if (base != reports.end()) {
    const PolicyReport b = *base;
    auto ratio = [](double x, double y) { return y > 0 ? x / y : 0.0; };
    for (PolicyReport& r : reports) {
      r.remote_sends_ratio = ratio(r.remote_sends_per_token, b.remote_sends_per_token);
      r.cross_node_sends_ratio = ratio(r.cross_node_sends_per_token, b.cross_node_sends_per_token);
      r.imbalance_ratio = ratio(r.imbalance, b.imbalance);
      r.speedup = ratio(b.modeled_layer_ms, r.modeled_layer_ms);
    }
  }
  return reports;
}

}  // namespace grace
