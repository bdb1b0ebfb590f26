#include "policy/placement_policy.h"

#include <cmath>

#include "policy/baseline_policies.h"
#include "policy/eplb.h"
#include "policy/grace_policy.h"

namespace grace {

Status CheckLayerInput(const LayerStats& stats, const Topology& topology) {
  GRACE_RETURN_IF_ERROR(topology.Validate());
  const std::string where = "layer " + std::to_string(stats.layer_id);
  if (stats.num_experts() == 0) return InvalidArgument(where + ": no experts");
  if (stats.num_experts() > topology.total_slots()) {
    return InvalidArgument(where + ": " + std::to_string(stats.num_experts()) +
                           " experts do not fit " + std::to_string(topology.total_slots()) +
                           " slots (" + topology.ToString() + ")");
  }
  for (double x : stats.load) {
    if (!(x >= 0) || !std::isfinite(x)) {
      return InvalidArgument(where + ": negative or non-finite expert load");
    }
  }
  return Status::Ok();
}

StatusOr<PlacementPlan> PlanAllLayers(const PlacementPolicy& policy,
                                      std::span<const LayerStats> layers, const Topology& topology,
                                      const CostParams& params) {
  if (layers.empty()) return InvalidArgument("no layers to plan");
  std::vector<LayerId> ids;
  for (const LayerStats& s : layers) ids.push_back(s.layer_id);
  PlacementPlan plan;
  plan.placement = Placement::Empty(layers[0].num_experts(), ids, topology.total_slots());
  for (size_t li = 0; li < layers.size(); ++li) {
    if (layers[li].num_experts() != plan.placement.num_experts) {
      return InvalidArgument("layer " + std::to_string(layers[li].layer_id) + " has " +
                             std::to_string(layers[li].num_experts()) + " experts, layer " +
                             std::to_string(ids[0]) + " has " +
                             std::to_string(plan.placement.num_experts));
    }
    StatusOr<LayerPlan> layer = policy.PlanLayer(layers[li], topology, params);
    if (!layer.ok()) return layer.status().WithContext(policy.name() + " policy");
    plan.placement.physical_to_logical[li] = std::move(layer->row);
    plan.routings.push_back(std::move(layer->routing));
    plan.choices.push_back(std::move(layer->choice));
  }
  GRACE_RETURN_IF_ERROR(plan.placement.Validate(topology));
  return plan;
}

std::vector<std::string> PlacementPolicyNames() {
  return {"grace", "eplb", "contiguous", "affinity"};
}

StatusOr<std::unique_ptr<PlacementPolicy>> MakePlacementPolicy(std::string_view name) {
  if (name == "grace") return std::unique_ptr<PlacementPolicy>(new GracePolicy());
  if (name == "eplb") return std::unique_ptr<PlacementPolicy>(new EplbPolicy());
  if (name == "contiguous") return std::unique_ptr<PlacementPolicy>(new ContiguousPolicy());
  if (name == "affinity") return std::unique_ptr<PlacementPolicy>(new AffinityPolicy());
  return InvalidArgument("unknown policy '" + std::string(name) +
                         "' (expected grace, eplb, contiguous or affinity)");
}

}  // namespace grace
